"""``systolic.json``: what a written project needs to be run without the compiler.

The manifest holds the Verilog parameters, the memory images (file, depth, width, used words),
the word layout of every input and output on the AXI streams and of every traced tensor (its
layer's trace region), the layer table (id, node, op, predicted cycles, MACs) and the host
layers.  ``pack_inputs`` / ``unpack_words`` turn codes into stream words and back with those
layouts (``layout.pack`` / ``layout.unpack``), so ``simulate`` needs only this file.

Stream word order: the input stream is every graph input's words in graph order, each tensor
``pixel 0 word 0, pixel 0 word 1, ..., pixel 1 word 0, ...`` (``ps`` words a pixel, channel
``c`` of a segment in word ``c // C``, lane ``c % C``, lane 0 in the low bits); the output
stream likewise, for every output tensor in the manifest's order.  Input lanes that hold no channel
must be 0 (``pack_inputs`` writes 0 there): layers rely on zero padding lanes (``Shape.zero_pad``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph

from . import images
from .layout import pack, unpack
from .mapping import Plan

FORMAT = "nnforge-systolic/1"


def _tensor(graph: QGraph, name: str, lay, offset: int, count: int) -> dict[str, Any]:
    t = graph.tensors[name]
    return {"name": name, "type": str(t.qtype), "offset": offset, "count": count,
            "layout": lay.to_json(offset, t.qtype.signed, t.qtype.bits)}


def build(plan: Plan, graph: QGraph, idents: dict[str, str], max_cycles: int) -> dict[str, Any]:
    """The manifest of ``plan`` (deterministic: no paths, no times)."""
    m = plan.params.machine
    w, d, used = images.widths(plan), images.depths(plan), images.words(plan)
    layers = []
    for l in plan.layers:
        lay = plan.layouts[l.node.output]
        t = graph.tensors[l.node.output]
        layers.append({"id": l.ident, "name": l.node.name, "ident": idents.get(l.node.name, ""), "op": l.node.op,
                       "output": l.node.output, "address": l.start, "instructions": len(l.instrs),
                       "predicted_cycles": l.cycles, "macs": l.spec.macs, "storage": l.spec.storage,
                       "trace": [lay.region()], "layout": lay.to_json(0, t.qtype.signed, t.qtype.bits)})
    return {
        "format": FORMAT,
        "top": plan.params.top,
        "part": plan.params.part,
        "clock_mhz": plan.params.clock_mhz,
        "parameters": plan.params.verilog_parameters(),
        "cols": m.cols,
        "rows": m.rows,
        "in_bits": m.in_bits,
        "memories": {name: {"file": f"mem/{name}.hex", "depth": d[name], "width": w[name], "used": len(used[name]),
                            "padded": True} for name in ("prog", "wmem", "imem", "pmem")},
        "inputs": [_tensor(graph, s.name, s.layout, s.offset, s.count) for s in plan.inputs],
        "n_in_words": sum(s.count for s in plan.inputs),
        "outputs": [_tensor(graph, s.name, s.layout, s.offset, s.count) for s in plan.outputs],
        "n_out_words": sum(s.count for s in plan.outputs),
        "layers": layers,
        "trace_regions": plan.trace_regions(),
        "n_sync": len(plan.layers) + 1,
        "total_cycles": int(sum(plan.cycles())),
        "max_cycles": max_cycles,
        "scratchpad_words": plan.allocation.peak,
        "host": [{"name": h.name, "op": h.op, "reason": h.reason} for h in plan.host],
    }


def pack_inputs(manifest: dict, arrays: list[np.ndarray]) -> np.ndarray:
    """Input codes (one ``[n, *shape]`` array per manifest input, in order) -> ``[n, words, C]``."""
    ins = manifest["inputs"]
    if len(arrays) != len(ins):
        raise InputError(f"the accelerator takes {len(ins)} input array(s), not {len(arrays)}")
    n = len(arrays[0])
    out = np.zeros((n, manifest["n_in_words"], manifest["cols"]), dtype=np.int64)
    for doc, a in zip(ins, arrays):
        a = np.asarray(a, dtype=np.int64)
        want = tuple(doc["layout"]["shape"])
        if a.shape[1:] != want or len(a) != n:
            raise InputError(f"input codes for {doc['name']!r} must be [n, {', '.join(map(str, want))}], "
                             f"not {list(a.shape)}")
        bits, signed = doc["layout"]["bits"], doc["layout"]["signed"]
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if a.size and (a.min() < lo or a.max() > hi):
            raise InputError(f"input codes for {doc['name']!r} must lie in [{lo}, {hi}] ({doc['type']}), "
                             f"not [{a.min()}, {a.max()}]")
        pack(doc["layout"], a, out)
    return out


def unpack_words(doc: dict, words: np.ndarray, in_bits: int) -> np.ndarray:
    """One tensor's codes ``[n, *shape]`` from raw lane words (a stream, or a trace region)."""
    return unpack(doc, words, in_bits)


__all__ = ["FORMAT", "build", "pack_inputs", "unpack_words"]
