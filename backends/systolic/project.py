"""The files of a systolic project around its sources: the standalone testbench and the docs.

=====================  ==================================================================
``tb/tb_program.py``    the cocotb program testbench (a copy of ``hw_sim/systolic``'s)
``tb/nnf_tb_harness.v`` its Verilog half, the simulation's top around the accelerator (a copy)
``tb/run_sim.py``       its runner: ``cocotb_tools.runner`` + Verilator, no nnforge import
``tb/inputs.npy``       the golden samples' input words ``[n, words, C]``
``tb/golden.npy``       the expected output words: the reference's codes in every data lane
                        (the other lanes as the functional model computes them)
``tb/config.json``      the testbench configuration ``run_sim.py`` hands it
``Makefile``            ``make sim`` (RTL simulation against the golden words), ``make clean``
``README.md``           ports, stream word order, control protocol, how to run
``report.md``           layers, cycles, MACs, utilization bounds, memory use, host layers
=====================  ==================================================================

Before writing the golden words the program runs on them through the functional model, and
every data lane must equal the numpy reference (a compiler self-check: a mismatch is a bug,
never a project).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from . import isa, isa_sim
from .layout import pack
from .manifest import pack_inputs, unpack_words
from .params import Params

TB_SOURCE = "tb_program.py"
TB_HARNESS = "nnf_tb_harness.v"
# the standalone runner's Verilator arguments: those of hw_sim/rtl.py's harness build (lint is its
# own step, with the library's one waiver in rtl/nnf_lint.vlt; the harness makes its own clock)
BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--timing"]


def templates() -> jinja2.Environment:
    """The jinja2 environment of ``templates/systolic`` (StrictUndefined, the ``md`` and ``num`` filters)."""
    import nnforge.templates

    root = Path(nnforge.templates.__file__).parent / "systolic"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["md"] = md_escape
    env.filters["num"] = lambda v: "-" if v is None else f"{v:,}"
    return env


def md_escape(text: Any) -> str:
    """Any string (an ONNX name) as inert markdown table text."""
    s = str(text).replace("\\", "\\\\")
    for ch in "`*_[]<>|#":
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ").replace("\r", " ")


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.int64), allow_pickle=False)
    return buf.getvalue()


def model_outputs(manifest: dict, sources: dict[str, str | bytes], words: np.ndarray) -> np.ndarray:
    """The output words of the functional model on ``words``, from the images in ``sources``."""
    text = {name: sources[doc["file"]] for name, doc in manifest["memories"].items()}
    mem = {name: isa_sim.read_words(t if isinstance(t, str) else t.decode())[:manifest["memories"][name]["used"]]
           for name, t in text.items()}
    p = manifest["parameters"]
    machine = isa_sim.Machine(p["ROWS"], p["COLS"], p["IN_W"], p["ACC_W"], p["IDX_W"], p["SPAD_DEPTH"],
                              p["WMEM_DEPTH"], p["IMEM_DEPTH"], p["PMEM_DEPTH"], p["PROG_DEPTH"])
    program = [isa.decode(w) for w in mem["prog"]]
    return isa_sim.run(machine, program, mem["wmem"], mem["imem"], mem["pmem"], words).outputs


def golden_words(graph, manifest: dict, sources: dict[str, str | bytes], golden) -> tuple[np.ndarray, np.ndarray]:
    """(input words, expected output words) of the golden samples; checks the model against the
    reference on every data lane."""
    from nnforge.compiler import reference

    words = pack_inputs(manifest, golden.inputs)
    ref = reference.run(graph, list(golden.inputs))
    out = model_outputs(manifest, sources, words)
    bits = manifest["in_bits"]
    for doc in manifest["outputs"]:
        got = unpack_words(doc["layout"], out, bits)
        if not np.array_equal(got, ref[doc["name"]]):
            bad = int(np.count_nonzero(got != ref[doc["name"]]))
            raise AssertionError(f"systolic compiler bug: the functional model differs from the reference in "
                                 f"{bad} codes of {doc['name']!r} on the golden samples")
        pack(doc["layout"], ref[doc["name"]], out)  # the data lanes from the reference itself
    return words, out & ((1 << bits) - 1)


def _tb_source(name: str = TB_SOURCE) -> bytes | None:
    import nnforge.hw_sim

    path = Path(nnforge.hw_sim.__file__).parent / "systolic" / name
    return path.read_bytes() if path.is_file() else None


def project_files(p: Params, graph, manifest: dict, sources: dict[str, str | bytes], golden, report: dict
                  ) -> dict[str, str | bytes]:
    """The files listed in the module docstring."""
    env = templates()
    words, expected = golden_words(graph, manifest, sources, golden)
    files: dict[str, str | bytes] = {"tb/inputs.npy": _npy(words), "tb/golden.npy": _npy(expected)}
    tb, harness = _tb_source(), _tb_source(TB_HARNESS)
    if tb is not None and harness is not None:  # the two halves of one testbench
        files[f"tb/{TB_SOURCE}"] = tb
        files[f"tb/{TB_HARNESS}"] = harness
    config = {"inputs": "inputs.npy", "golden": "golden.npy", "trace": False, "trace_regions": {},
              "results": "results.npz", "cols": p.cols, "in_bits": p.machine.in_bits,
              "max_cycles": manifest["max_cycles"]}
    files["tb/config.json"] = json.dumps(config, indent=1) + "\n"
    ctx = {"top": p.top, "version": report["nnforge_version"], "m": manifest, "p": p, "report": report,
           "params": p.verilog_parameters(), "samples": golden.samples, "has_tb": tb is not None and harness is not None,
           "layers": manifest["layers"], "host": manifest["host"],
           "us": lambda cycles: f"{cycles / p.clock_mhz:.2f}", "build_args": json.dumps(BUILD_ARGS)}
    files["tb/run_sim.py"] = env.get_template("run_sim.py.j2").render(ctx)
    files["Makefile"] = env.get_template("Makefile.j2").render(ctx)
    files["README.md"] = env.get_template("README.md.j2").render(ctx)
    files["report.md"] = env.get_template("report.md.j2").render(ctx)
    return files


__all__ = ["golden_words", "md_escape", "model_outputs", "project_files"]
