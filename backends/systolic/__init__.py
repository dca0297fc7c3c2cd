"""The systolic backend: a fixed R x C output-stationary int MAC array driven by a per-model program.

The hardware (``hdl/``) does not change per model; ``codegen`` writes its parameters, the
memory images (program, weights, shared-weight indices, per-channel parameters), a listing
and the manifest ``systolic.json`` (``mapping.py`` does the work, ``images.py`` and
``manifest.py`` lay it out).  ``simulate`` runs the written project's RTL under cocotb
(``rtl_sim.py``); ``run_model`` runs the same images through the functional model
(``isa_sim.py``).  docs/systolic.md is the specification.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QNode

from ..base import Backend, Design, LayerEstimate, Simulation
from .mapping import ACCELERATED_OPS, Plan, plan
from .params import OPTIONS, Params, params

HDL_DIR = Path(__file__).parent / "hdl"
HDL_SUFFIXES = (".v", ".sv", ".vh", ".svh", ".vlt")  # .vlt: the Verilator lint waiver
MANIFEST = "systolic.json"
DEFAULT_TOP = "nnf_systolic_top"


def hdl_files() -> dict[str, bytes]:
    """The RTL library, ``rtl/<file>`` -> content, in name order."""
    if not HDL_DIR.is_dir():
        return {}
    return {f"rtl/{p.name}": p.read_bytes() for p in sorted(HDL_DIR.iterdir()) if p.suffix in HDL_SUFFIXES}


def max_cycles(total: int) -> int:
    """The testbench's cycle limit: the predicted total with room for stalls, never tiny."""
    return 2 * total + 10_000


class SystolicBackend(Backend):
    name = "systolic"
    description = ("an R x C output-stationary systolic int MAC array (Verilog) running a per-model program; "
                   "cocotb + Verilator RTL simulation bit-exact with the reference")
    ops = frozenset(ACCELERATED_OPS)
    options = OPTIONS

    def host_reason(self, node: QNode) -> str:
        return f"the systolic array has no instruction for '{node.op}'"

    # -- options and the mapping ---------------------------------------------------------------

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Cross-field checks (``rows <= cols``, the top's name, the part); the options unchanged."""
        params(options)
        return dict(options)

    def plan(self, design: Design, options: dict[str, Any]) -> Plan:
        """The mapped program and memory images (``mapping.plan``)."""
        return plan(design, params(options))

    def check_design(self, design: Design, options: dict[str, Any]) -> None:
        """Map the model (every layer and capacity check); layers that stay on the host after the
        array (trailing layers it cannot take) move from ``design.kernels`` to ``design.host``."""
        p = self.plan(design, options)
        moved = {h.name: h for h in p.host}
        if not moved:
            return
        design.kernels = [k for k in design.kernels if k.node.name not in moved]
        known = {h.name for h in design.host}
        integer = [h for h in design.host if h.name in {n.name for n in design.graph.nodes}]
        floats = [h for h in design.host if h not in integer]
        extra = [moved[n.name] for n in design.graph.nodes if n.name in moved and n.name not in known]
        order = {n.name: i for i, n in enumerate(design.graph.nodes)}
        design.host = sorted(integer + extra, key=lambda h: order[h.name]) + floats

    # -- the project ---------------------------------------------------------------------------

    def codegen(self, design: Design, options: dict[str, Any]) -> dict[str, str | bytes]:
        """``rtl/`` (the hdl library), ``mem/{prog,wmem,imem,pmem}.hex`` (padded to each depth),
        ``program.lst`` and ``systolic.json``."""
        from . import images, manifest, wrapper

        p = self.plan(design, options)
        files: dict[str, str | bytes] = dict(hdl_files())
        files.update(wrapper.files(p.params))
        files.update(images.hex_images(p))
        files["program.lst"] = images.listing(p, design.idents)
        doc = manifest.build(p, design.graph, design.idents, max_cycles(int(sum(p.cycles()))))
        files[MANIFEST] = json.dumps(doc, indent=1) + "\n"
        return files

    def layer_info(self, design: Design, options: dict[str, Any]) -> list[dict[str, Any]]:
        """Per accelerated layer: name, op, storage, weight_bytes (memory words it occupies x word
        width), macs, predicted_cycles (its instructions and SYNC), utilization_bound
        (macs / (cycles x R x C)), layer_id, instructions, notes."""
        p = self.plan(design, options)
        m = p.params.machine
        rows = []
        for l in p.layers:
            s = l.spec
            bits = 0
            if s.wmem is not None:
                bits += len(s.wmem) * m.cols * m.in_bits
            if s.imem is not None:  # indices, and the codebook entries at IN_W bits each
                bits += len(s.imem) * m.cols * m.idx_bits + (1 << l.instrs[0].get("idx_bits")) * m.in_bits
            rows.append({"name": l.node.name, "op": l.node.op, "storage": s.storage, "weight_bytes": (bits + 7) // 8,
                         "macs": s.macs, "predicted_cycles": l.cycles,
                         "utilization_bound": round(s.macs / (l.cycles * m.rows * m.cols), 6),
                         "layer_id": l.ident, "instructions": len(l.instrs) - 1, "notes": "; ".join(s.notes)})
        return rows

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        """Per layer: latency = predicted cycles (exact: the cycle model is the RTL's); the array
        runs one layer at a time, so a layer's interval is its latency."""
        p = self.plan(design, options)
        us = 1.0 / p.params.clock_mhz
        return [LayerEstimate(l.node.name, l.node.op, l.cycles, l.cycles,
                              notes=f"{l.cycles * us:.2f} us at {p.params.clock_mhz:g} MHz") for l in p.layers]

    def project_files(self, design: Design, options: dict[str, Any], sources: dict[str, str | bytes],
                      golden: Any, report: dict) -> dict[str, str | bytes]:
        """``tb/`` (the cocotb program testbench, its runner, packed golden words), ``Makefile``,
        ``README.md`` and ``report.md``."""
        from .project import project_files

        return project_files(params(options), design.graph, json.loads(sources[MANIFEST]), sources, golden, report)

    # -- running a written project -------------------------------------------------------------

    def simulate(self, project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        """The project's RTL under cocotb (Verilator) on input codes: every layer's output (its
        trace region at its SYNC) with ``trace``, the graph outputs always; per-layer
        ``measured_cycles`` (from the SYNC stamps) and ``utilization``."""
        from .rtl_sim import simulate

        return simulate(Path(project), inputs, trace)

    def run_model(self, project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        """Like ``simulate``, through the functional model (``isa_sim``) on the project's images."""
        from .rtl_sim import simulate_model

        return simulate_model(Path(project), inputs, trace)


def read_manifest(project: Path) -> dict:
    path = Path(project) / MANIFEST
    if not path.is_file():
        raise InputError(f"{str(project)!r} must be a systolic project with a {MANIFEST}")
    return json.loads(path.read_text())


__all__ = ["DEFAULT_TOP", "Params", "SystolicBackend", "hdl_files", "read_manifest"]
