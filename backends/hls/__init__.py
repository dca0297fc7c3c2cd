"""The ``hls`` backend: Vitis HLS C++ kernels, and a g++ C simulation bit-exact with the reference.

``codegen`` writes ``src/`` (the top function, one header per kernel family, one constants
header per layer, ``nnf_int.h`` and ``nnf_kernels.h``) and ``csim.json``; see ``codegen.py``
for the steps and ``kernels.py`` / ``weights.py`` for the numbers and the weight storage forms.
``simulate`` compiles the sources with g++ (``nnforge.hw_sim.csim``) and runs them on codes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QNode

from ..base import Backend, Design, LayerEstimate
from ..naming import RESERVED

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# names the generated code defines next to the top function
_TAKEN = {"in_t", "out_t", "IN_SIZE", "OUT_SIZE", "TRACE_SIZE", "in", "out"}


class HLSBackend(Backend):
    name = "hls"
    description = "Vitis HLS C++ (ap_int, DATAFLOW) with a g++ C simulation bit-exact with the reference"
    ops = frozenset({"conv2d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool", "add", "concat", "lut",
                     "requant", "clip", "reshape", "transpose", "pad", "mul"})
    options = {"top": "nnforge_top", "reuse_factor": 1, "io": "array", "part": "xcu250-figd2104-2L-e",
               "clock_ns": 5.0}

    def check_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """The options with defaults filled in; unknown keys and bad values are InputErrors."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise InputError(f"unknown hls option(s) {', '.join(map(repr, unknown))}; "
                             f"valid options: {', '.join(sorted(self.options))}")
        opts = {**self.options, **options}
        top = opts["top"]
        if (not isinstance(top, str) or not _IDENT.fullmatch(top) or top in RESERVED or top.lower() in RESERVED
                or top in _TAKEN or top.lower() == "nnf" or top.lower().startswith("nnf_") or "__" in top):
            raise InputError(f"option 'top' must be a C identifier (a letter, then letters, digits or _; at most 63; "
                             f"no keyword, no nnf_ prefix), not {top!r}")
        rf = opts["reuse_factor"]
        values = list(rf.values()) if isinstance(rf, dict) else [rf]
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise InputError(f"option 'reuse_factor' must be a positive integer (or {{layer: int, 'default': int}}), "
                             f"not {rf!r}")
        if opts["io"] not in ("array", "axis"):
            raise InputError(f"option 'io' must be 'array' or 'axis', not {opts['io']!r}")
        if not isinstance(opts["part"], str) or not _PART.fullmatch(opts["part"]):
            raise InputError(f"option 'part' must be a part name like 'xcu250-figd2104-2L-e', not {opts['part']!r}")
        clock = opts["clock_ns"]
        if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
            raise InputError(f"option 'clock_ns' must be a positive number of nanoseconds, not {clock!r}")
        return opts

    def check_layer_options(self, design: Design, options: dict[str, Any] | None) -> dict[str, Any]:
        """``check_options``, plus: per-layer keys must name layers of this design."""
        opts = self.check_options(options)
        rf = opts["reuse_factor"]
        if isinstance(rf, dict):
            names = [n.name for n in design.graph.nodes]
            unknown = sorted(set(rf) - set(names) - {"default"})
            if unknown:
                raise InputError(f"option 'reuse_factor' names no layer of this model: {', '.join(map(repr, unknown))}; "
                                 f"layers: {', '.join(map(repr, names))} (or 'default')")
        return opts

    def host_reason(self, node: QNode) -> str:
        return f"the hls backend has no kernel for '{node.op}'"

    def codegen(self, design: Design, options: dict[str, Any]) -> dict[str, str | bytes]:
        """``src/<top>.cpp``, ``src/<top>.h``, ``src/nnf_int.h``, ``src/nnf_kernels.h``,
        ``src/nnf_types.h``, ``src/kernels/<family>.h``, ``src/weights/<layer>.h`` and ``csim.json``."""
        from .codegen import generate

        files, _ = generate(design, self.check_layer_options(design, options))
        return dict(files)

    def layer_info(self, design: Design) -> list[dict[str, Any]]:
        """Per kernel: name, ident, op, storage form (``form``/``storage``: dense, codebook, sparse or
        None), weight bytes, shapes."""
        from .codegen import layer_info

        return layer_info(design)

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        from .estimate import estimate

        storage = {row["name"]: row["form"] for row in self.layer_info(design) if row["form"]}
        return estimate(design, self.check_layer_options(design, options), storage=storage)

    def simulate(self, project: Path, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every node's output codes through the generated C, by tensor name (like ``reference.run``)."""
        from nnforge.hw_sim import csim

        project = Path(project)
        manifest_path = project / "csim.json"
        if not manifest_path.is_file():
            raise InputError(f"{str(project)!r} must be an hls project with a csim.json")
        m = json.loads(manifest_path.read_text())
        if len(inputs) != 1:
            raise InputError(f"the generated top takes one input, not {len(inputs)}")
        codes = np.asarray(inputs[0])
        lo, hi = m["input"]["lo"], m["input"]["hi"]
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise InputError(f"input codes must lie in [{lo}, {hi}] ({m['input']['type']}), "
                             f"not [{codes.min()}, {codes.max()}]")
        so = csim.build(project / "src", m["top"])
        sim = csim.CSim(so, m["top"], m["in_size"], m["out_size"], m["trace_size"],
                        nodes=[(n["name"], n["shape"]) for n in m["nodes"]])
        by_name = sim.trace(codes)
        return {n["output"]: by_name[n["name"]] for n in m["nodes"]}


__all__ = ["HLSBackend"]
