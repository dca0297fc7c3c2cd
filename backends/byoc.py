"""TVM BYOC end to end: ``relax.ext.<codegen>`` for ``RunCodegen``, and the mixed executor.

``backends/partition.py`` leaves ``main`` calling one external function per run of consecutive
offloaded layers (``MergeCompositeFunctions``), with host layers (what the backend has no kernel
for) in between.  This module finishes the BYOC flow for any backend:

1. ``register_codegen(backend)`` registers the global ``relax.ext.<codegen name>`` (for the hls
   backend ``relax.ext.nnforge_hls``) that ``relax.transform.RunCodegen()`` calls with the
   external functions.  For each one it runs the backend's ``codegen`` on the part of the model
   the function holds (``sub_design``) and returns a runtime module: ``CSourceModuleCreate`` of
   the backend's one-file source (``Backend.byoc_source``; the hls backend gives its C++ with
   every header inlined), else ``SourceModuleCreate`` of the files as JSON.
2. ``MixedExecutor`` runs the partitioned model on the Relax VM: ``RunCodegen``, then, to
   simulate instead of linking the sources, the ``external_mods`` attribute is dropped and each
   external function's global symbol is registered as a packed function that runs the
   backend's ``simulate`` on that part's generated project (hls: the C compiled by g++).  Host
   layers run on TVM llvm.  The VM calls them in destination-passing style: inputs, then the
   output buffer.

A backend gets both by implementing ``codegen`` and ``simulate`` (docs/backends.md).  TVM is reached
through ``backends/partition.py`` (globals, runtime modules, ``RunCodegen``) and
``compiler/lower/executor.py`` (the VM).  Each part must have one input and one output tensor (what a
generated top function takes).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.lower import executor
from nnforge.compiler.qgraph import QGraph, QTensor

from .base import Backend, Design
from .partition import c_source_module, json_source_module, register_global, run_codegen_pass

# global symbol -> (backend, part) for the codegens registered below; RunCodegen looks them up
_ACTIVE: dict[str, tuple[Backend, "Part"]] = {}
_REGISTERED: set[str] = set()


@dataclass
class Part:
    """One external function: its symbol, the layers it holds, and their options."""

    symbol: str
    design: Design  # the part alone: its subgraph and its kernels
    options: dict[str, Any]

    @property
    def input(self) -> str:
        return self.design.graph.inputs[0].name

    @property
    def output(self) -> str:
        return self.design.graph.outputs[0]


def symbols(design: Design) -> list[str]:
    """The external functions' global symbols, in call order."""
    out: list[str] = []
    for k in design.kernels:
        if k.symbol not in out:
            out.append(k.symbol)
    return out


def sub_design(design: Design, symbol: str) -> Design:
    """The layers of external function ``symbol`` as a Design of their own: inputs are the
    tensors they read and do not make, outputs those they make and something else reads."""
    graph = design.graph
    kernels = [k for k in design.kernels if k.symbol == symbol]
    if not kernels:
        raise InputError(f"external function must be one of {symbols(design)}, not {symbol!r}")
    made = {k.node.output for k in kernels}
    names = {k.node.name for k in kernels}
    inputs: list[str] = []
    for k in kernels:
        for t in k.node.inputs:
            if t not in made and t not in inputs:
                inputs.append(t)
    read_outside = {t for n in graph.nodes if n.name not in names for t in n.inputs}
    outputs = [k.node.output for k in kernels if k.node.output in read_outside or k.node.output in graph.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise InputError(f"external function {symbol!r} must read one tensor and make one, not "
                         f"{len(inputs)} ({', '.join(inputs)}) and {len(outputs)} ({', '.join(outputs)})")
    tensors = {t: graph.tensors[t] for t in [*inputs, *made]}
    src = graph.tensors[inputs[0]]
    sub = QGraph([QTensor(src.name, src.shape, src.qtype, src.scale)], tensors, [k.node for k in kernels], outputs)
    return Design(design.backend, sub, None, kernels, [], dict(design.idents))


def parts(design: Design, options: dict[str, Any]) -> list[Part]:
    """Every external function as a Part; each gets its own top name (``<top>_p<i>``) when the
    backend has a ``top`` option, so their sources can be linked together."""
    out = []
    for i, sym in enumerate(symbols(design)):
        opts = dict(options)
        if "top" in opts:
            opts["top"] = f"{opts['top']}_p{i}"
        out.append(Part(sym, sub_design(design, sym), opts))
    return out


# -- RunCodegen ---------------------------------------------------------------------------------------

def _runtime_module(backend: Backend, part: Part):
    files = backend.codegen(part.design, part.options)
    source = getattr(backend, "byoc_source", None)
    if source is not None:
        return c_source_module(source(files, part.options), part.symbol)
    doc = {k: v if isinstance(v, str) else v.hex() for k, v in sorted(files.items())}
    return json_source_module(json.dumps(doc))


def register_codegen(backend: Backend) -> str:
    """Register ``relax.ext.<backend.codegen_name>`` (once per name); the name."""
    name = f"relax.ext.{backend.codegen_name}"
    if name in _REGISTERED:
        return name

    def codegen(funcs, options, const_names):  # RunCodegen's contract: a runtime module per function
        mods = []
        for f in funcs:
            sym = str(f.attrs["global_symbol"])
            if sym not in _ACTIVE:
                raise InputError(f"external function {sym!r} must come from a design handed to "
                                 f"nnforge.backends.byoc.run_codegen, not from elsewhere")
            be, part = _ACTIVE[sym]
            mods.append(_runtime_module(be, part))
        return mods

    register_global(name, codegen)
    _REGISTERED.add(name)
    return name


def run_codegen(design: Design, backend: Backend, options: dict[str, Any]):
    """``relax.transform.RunCodegen()`` on the partitioned module: ``main`` calls each external
    function through ``call_dps_packed`` by its symbol, the runtime modules are in the module's
    ``external_mods``; also the Parts."""
    register_codegen(backend)
    ps = parts(design, options)
    for p in ps:
        _ACTIVE[p.symbol] = (backend, p)
    try:
        return run_codegen_pass(design.module), ps
    finally:
        for p in ps:
            _ACTIVE.pop(p.symbol, None)


# -- the mixed executor ------------------------------------------------------------------------------

def _dir_name(i: int, symbol: str) -> str:
    return f"p{i}_" + re.sub(r"[^A-Za-z0-9_]", "_", symbol)[:40]


class MixedExecutor:
    """The partitioned model on the Relax VM: host layers on TVM llvm, every external function
    through the backend's simulation of its generated sources (written under ``workdir``).

    ``run(codes)`` takes input codes ``[n, *shape]`` and gives the output codes; ``calls``
    counts the calls of each external function (proof that the hardware path ran)."""

    def __init__(self, design: Design, backend: Backend, options: dict[str, Any] | None, workdir: str | Path):
        from .options import resolve_options

        self.design, self.backend = design, backend
        opts = resolve_options(backend, options)
        mod, self.parts = run_codegen(design, backend, opts)
        self.runtime_modules = list(mod.attrs["external_mods"])
        self.calls: dict[str, int] = {p.symbol: 0 for p in self.parts}
        root = Path(workdir)
        for i, p in enumerate(self.parts):
            project = root / _dir_name(i, p.symbol)
            for rel, data in backend.codegen(p.design, p.options).items():
                path = project / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data if isinstance(data, bytes) else data.encode())
            register_global(p.symbol, self._packed(p, project))
        host = mod.without_attr("external_mods").without_attr("const_name_to_constant")
        self.vm = executor.build_plain(host)

    def _packed(self, part: Part, project: Path):
        backend, calls = self.backend, self.calls

        def run(*args):  # destination-passing style: the input tensor(s), then the output buffer
            *ins, out = args
            # tensors only: with a symbolic batch the VM may also pass the shape values it used
            codes = [np.asarray(a.numpy(), dtype=np.int64) for a in ins if hasattr(a, "numpy")]
            sim = backend.simulate(project, codes, trace=False)
            y = np.asarray(sim.tensors[part.output])
            want = out.numpy()
            out.copyfrom(np.ascontiguousarray(y.reshape(want.shape)).astype(want.dtype))
            calls[part.symbol] += 1

        return run

    def run(self, codes: np.ndarray) -> np.ndarray:
        t = self.design.graph.inputs[0]
        x = np.ascontiguousarray(codes).astype(t.qtype.storage)
        return executor.call(self.vm, "main", [x])[0]


__all__ = ["MixedExecutor", "Part", "parts", "register_codegen", "run_codegen", "sub_design", "symbols"]
