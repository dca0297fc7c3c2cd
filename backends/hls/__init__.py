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
                     "requant", "clip", "reshape", "transpose", "pad", "mul", "lrn", "hard_swish"})
    options = {
        "top": Option("nnforge_top", "name of the top function (a C identifier)"),
        "reuse_factor": Option(1, "each multiplier is shared by this many MACs: 1 unrolls the inner product fully; "
                                  "auto: per-layer factors that fit the part with the smallest worst-layer II",
                               minimum=1, maximum=1 << 20, per_layer=True, keywords=("auto",)),
        "io": Option("array", "top-level ports: array (ap_memory) or axis (AXI-Stream)", choices=("array", "axis")),
        "part": Option("xcu250-figd2104-2L-e", "the FPGA part, in script.tcl and hls_config.cfg"),
        "clock_ns": Option(5.0, "target clock period in ns, 0.1 to 1000", minimum=0.1, maximum=1000.0),
        "weights": Option("auto", "weight storage: inline (C literals), file (binary files the C simulation loads at "
                                  "run time; `make literals` writes the literals synthesis reads) or auto (file from "
                                  "1,000,000 values)", choices=("auto", "inline", "file")),
    }

    def __init__(self) -> None:
        self._auto: dict[str, Any] = {}  # the last reuse_factor=auto choice (its design kept alive: id() stays unique)
        self._info: dict[str, Any] = {}  # the last design's layer_info rows: one computation per compile
        self._sims: dict[tuple, Any] = {}  # (project path, ap_types folder) -> its compiled C (simulation.ProjectSim)

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
        values = list(rf.values()) if isinstance(rf, dict) else [] if rf == "auto" else [rf]
        if (not values and rf != "auto") or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise InputError(f"option 'reuse_factor' must be a positive integer, 'auto' (or {{layer: int, 'default': "
                             f"int}}), not {rf!r}")
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
        """``check_options`` and ``check_design``: codegen and estimate also take unchecked options.
        ``reuse_factor="auto"`` becomes the per-layer factors ``fit.auto_reuse`` chooses for the part."""
        opts = self.check_options(options)
        self.check_design(design, opts)
        if opts["reuse_factor"] == "auto":
            key = (id(design), opts["part"])
            if self._auto.get("key") != key:
                from .fit import auto_reuse, part_resources

                part = part_resources(opts["part"])
                if part is None:
                    from .fit import PARTS

                    raise InputError(f"option 'reuse_factor' auto must be used with a part of the resource table "
                                     f"({', '.join(PARTS)}), not part {opts['part']!r}")
                storage = {row["name"]: row["form"] for row in self.layer_info(design) if row["form"]}
                rf, _ = auto_reuse(design, opts, storage, part)
                self._auto = {"key": key, "design": design, "rf": {**rf, "default": 1}}
            opts = {**opts, "reuse_factor": dict(self._auto["rf"])}
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

        if self._info.get("design") is not design:  # compile_model, estimate, fit_report and auto all read it
            self._info = {"design": design, "rows": layer_info(design)}
        return [dict(row) for row in self._info["rows"]]

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        """Per-kernel estimates (``estimate.py``); a ``FitWarning`` when their sum exceeds the part."""
        import warnings

        from .estimate import estimate
        from .fit import FitWarning, part_resources, utilization

        storage = {row["name"]: row["form"] for row in self.layer_info(design) if row["form"]}
        opts = self.check_layer_options(design, options)
        ests = estimate(design, opts, storage=storage)
        use = utilization(ests, part_resources(opts["part"]))
        if use["fits"] is False:
            over = ", ".join(f"{r.upper()} {use['used'][r]:,} of {use['available'][r]:,} ({use['percent'][r]:.0f}%)"
                             for r in use["used"] if use["used"][r] > use["available"][r])
            warnings.warn(FitWarning(f"the design does not fit part {opts['part']} by the estimates: {over}; "
                                     f"raise reuse_factor, or use --option reuse_factor=auto"), stacklevel=2)
        return ests

    def fit_report(self, design: Design, options: dict[str, Any]) -> dict[str, Any]:
        """report.json's ``fit``: the part, utilization (% of the part), whether it fits, latency and
        throughput at clock_ns, and the reuse factor of each MAC layer."""
        from .estimate import estimate
        from .fit import part_resources, timing, utilization

        storage = {row["name"]: row["form"] for row in self.layer_info(design) if row["form"]}
        opts = self.check_layer_options(design, options)
        ests = estimate(design, opts, storage=storage)
        from .estimate import reuse_factor

        doc = utilization(ests, part_resources(opts["part"]))
        doc["part_option"] = opts["part"]
        doc["reuse_factor_option"] = options.get("reuse_factor", 1) if options else 1
        doc["reuse_factors"] = {k.node.name: reuse_factor(opts, k.node.name) for k in design.kernels
                                if k.node.op in ("dense", "conv2d")}
        doc.update(timing(ests, float(opts["clock_ns"])))
        return doc

    def project_files(self, design: Design, options: dict[str, Any], sources: dict[str, str | bytes], golden,
                      report: dict) -> dict[str, str | bytes]:
        """Testbench, script.tcl, hls_config.cfg, Makefile, README.md and report.md (``project.py``)."""
        from .project import project_files

        report["fit"] = self.fit_report(design, options)  # into report.json too (compile writes it after this)
        return project_files(design, options, sources, golden, report)

    def byoc_source(self, files: dict[str, str | bytes], options: dict[str, Any]) -> str:
        """The generated C++ as one file (``flatten.py``): the runtime module ``relax.ext.nnforge_hls``
        gives ``RunCodegen`` (``backends/byoc.py``)."""
        from .flatten import flatten

        return flatten(files, self.check_options(options)["top"])

    def simulate(self, project: Path, inputs: list[np.ndarray], trace: bool = True,
                 ap_types: str | Path | bool | None = None) -> Simulation:
        """The output codes of every node (``trace``) or of the graph output, through the generated C
        compiled with g++ (built once per source content; one library per project and backend object).

        ``ap_types``: compile against Xilinx's ap_int instead (``True`` or ``""``: the headers in the
        installed hls4ml; a folder: the headers there), after the strict front-end pass
        (``hw_sim/ap_types.py``); the Simulation's notes say what was checked."""
        from nnforge.hw_sim import ap_types as ap

        from .simulation import ProjectSim

        fast = (str(project), ap_types)  # predict calls this per batch: skip resolving the path again
        if fast in self._sims:
            return self._sims[fast].simulate(inputs, trace)
        ap_dir = None if ap_types is None or ap_types is False else ap.find(None if ap_types is True else ap_types)
        key = (str(Path(project).resolve()), None if ap_dir is None else str(ap_dir))
        if key not in self._sims:
            self._sims[key] = ProjectSim(project, ap_dir)
        self._sims[fast] = self._sims[key]
        return self._sims[key].simulate(inputs, trace)


__all__ = ["HLSBackend"]
