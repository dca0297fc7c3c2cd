"""The ``hls`` backend: Vitis HLS C++ kernels, and a g++ C simulation bit-exact with the reference.

``codegen`` writes ``src/`` (the top function, one header per kernel family, one constants
header per layer, ``nnf_int.h`` and ``nnf_kernels.h``) and ``csim.json``; see ``codegen.py``
for the steps and ``kernels.py`` / ``weights.py`` for the numbers and the weight storage forms.
``project_files`` adds the testbench, tool scripts, Makefile and README (``project.py``).
``simulate`` compiles the sources with g++ and runs them on codes (``simulation.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QNode

from ..base import Backend, Design, LayerEstimate, Option, Simulation
from ..naming import RESERVED

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# names the generated code defines next to the top function
_TAKEN = {"in_t", "out_t", "IN_SIZE", "OUT_SIZE", "TRACE_SIZE", "in", "out"}


class HLSBackend(Backend):
    name = "hls"
    description = "Vitis HLS C++ (ap_int, DATAFLOW) with a g++ C simulation bit-exact with the reference"
    ops = frozenset({"conv2d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool", "add", "concat", "lut",
                     "requant", "clip", "reshape", "transpose", "pad", "mul", "lrn"})
    options = {
        "top": Option("nnforge_top", "name of the top function (a C identifier)"),
        "reuse_factor": Option(1, "each multiplier is shared by this many MACs: 1 unrolls the inner product fully",
                               minimum=1, maximum=1 << 20, per_layer=True),
        "io": Option("array", "top-level ports: array (ap_memory) or axis (AXI-Stream)", choices=("array", "axis")),
        "part": Option("xcu250-figd2104-2L-e", "the FPGA part, in script.tcl and hls_config.cfg"),
        "clock_ns": Option(5.0, "target clock period in ns, 0.1 to 1000", minimum=0.1, maximum=1000.0),
        "weights": Option("auto", "weight storage: inline (C literals), file (binary files the C simulation loads at "
                                  "run time; `make literals` writes the literals synthesis reads) or auto (file from "
                                  "1,000,000 values)", choices=("auto", "inline", "file")),
    }

    def __init__(self) -> None:
        self._sims: dict[str, Any] = {}  # project path -> its compiled C (simulation.ProjectSim)

    def check_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """The options with defaults filled in; unknown keys and bad values are InputErrors."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise InputError(f"unknown hls option(s) {', '.join(map(repr, unknown))}; "
                             f"valid options: {', '.join(sorted(self.options))}")
        opts = {**self.option_defaults(), **options}
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
        if opts["weights"] not in ("auto", "inline", "file"):
            raise InputError(f"option 'weights' must be 'auto', 'inline' or 'file', not {opts['weights']!r}")
        if not isinstance(opts["part"], str) or not _PART.fullmatch(opts["part"]):
            raise InputError(f"option 'part' must be a part name like 'xcu250-figd2104-2L-e', not {opts['part']!r}")
        clock = opts["clock_ns"]
        if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
            raise InputError(f"option 'clock_ns' must be a positive number of nanoseconds, not {clock!r}")
        return opts

    def check_design(self, design: Design, options: dict[str, Any] | None) -> None:
        """Per-layer option keys must name layers of this design."""
        rf = {**self.option_defaults(), **(options or {})}["reuse_factor"]
        if isinstance(rf, dict):
            names = [n.name for n in design.graph.nodes]
            unknown = sorted(set(rf) - set(names) - {"default"})
            if unknown:
                raise InputError(f"option 'reuse_factor' names no layer of this model: {', '.join(map(repr, unknown))}; "
                                 f"layers: {', '.join(map(repr, names))} (or 'default')")

    def check_layer_options(self, design: Design, options: dict[str, Any] | None) -> dict[str, Any]:
        """``check_options`` and ``check_design``: codegen and estimate also take unchecked options."""
        opts = self.check_options(options)
        self.check_design(design, opts)
        return opts

    def host_reason(self, node: QNode) -> str:
        return f"the hls backend has no kernel for '{node.op}'"

    def codegen(self, design: Design, options: dict[str, Any]) -> dict[str, str | bytes]:
        """``src/<top>.cpp``, ``src/<top>.h``, ``src/nnf_int.h``, ``src/nnf_kernels.h``,
        ``src/nnf_types.h``, ``src/kernels/<family>.h``, ``src/weights/<layer>.h`` and ``csim.json``."""
        from .codegen import generate

        files, _ = generate(design, self.check_layer_options(design, options))
        return dict(files)

    def layer_info(self, design: Design, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Per kernel: name, ident, op, storage form (``form``/``storage``: dense, codebook, sparse or
        None), weight bytes, MACs, shapes."""
        from .codegen import layer_info

        return layer_info(design)

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        from .estimate import estimate

        storage = {row["name"]: row["form"] for row in self.layer_info(design) if row["form"]}
        return estimate(design, self.check_layer_options(design, options), storage=storage)

    def project_files(self, design: Design, options: dict[str, Any], sources: dict[str, str | bytes], golden,
                      report: dict) -> dict[str, str | bytes]:
        """Testbench, script.tcl, hls_config.cfg, Makefile, README.md and report.md (``project.py``)."""
        from .project import project_files

        return project_files(design, options, sources, golden, report)

    def simulate(self, project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        """The output codes of every node (``trace``) or of the graph output, through the generated C
        compiled with g++ (built once per source content; one library per project and backend object)."""
        from .simulation import ProjectSim

        key = str(Path(project).resolve())
        if key not in self._sims:
            self._sims[key] = ProjectSim(project)
        return self._sims[key].simulate(inputs, trace)


__all__ = ["HLSBackend"]
