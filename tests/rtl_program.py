"""Helpers for the top-level RTL tests: lay tensors out as docs/systolic.md says, write the memory
images, run hw_sim/systolic/tb_program.py on a build of nnf_tb_harness (around nnf_systolic_top),
read the results.

Nothing here computes what the hardware computes; the tests' oracles are plain numpy plus
``nnforge.compiler.quant.numerics`` (and, as a second opinion, ``backends/systolic/isa_sim.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from nnforge.backends.systolic import isa, isa_sim
from nnforge.backends.systolic.isa import Instr
from nnforge.hw_sim import rtl

TB_DIR = Path(rtl.__file__).parent / "systolic"


@pytest.fixture(scope="module", autouse=True)
def shared_rtl_cache():
    """Under pytest-xdist, one RTL build cache for all workers of the run (the session cache of
    conftest.py is per worker): a parameter set is built once, the other worker waits on the
    build's lock instead of compiling it again."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        yield
        return
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(Path(tempfile.gettempdir()) / f"nnforge-rtl-tests-{run}")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


@dataclass(frozen=True)
class Hw:
    """A parameter set of nnf_systolic_top (small memories: fast builds)."""

    rows: int = 2
    cols: int = 4
    in_bits: int = 8
    acc_bits: int = 32
    idx_bits: int = 4
    spad_depth: int = 512
    wmem_depth: int = 1024
    imem_depth: int = 256
    pmem_depth: int = 256
    prog_depth: int = 64

    def parameters(self) -> dict[str, int]:
        return {"ROWS": self.rows, "COLS": self.cols, "IN_W": self.in_bits, "ACC_W": self.acc_bits,
                "IDX_W": self.idx_bits, "SPAD_DEPTH": self.spad_depth, "WMEM_DEPTH": self.wmem_depth,
                "IMEM_DEPTH": self.imem_depth, "PMEM_DEPTH": self.pmem_depth, "PROG_DEPTH": self.prog_depth}

    @property
    def shape(self) -> isa.ArrayShape:
        return isa.ArrayShape(self.rows, self.cols)

    def machine(self) -> isa_sim.Machine:
        return isa_sim.Machine(self.rows, self.cols, self.in_bits, self.acc_bits, self.idx_bits, self.spad_depth,
                               self.wmem_depth, self.imem_depth, self.pmem_depth, self.prog_depth)


@dataclass
class Images:
    """The static memories as lists of words (WMEM/IMEM lanes, PMEM {shift, mult, bias} lanes)."""

    wmem: list[int] = field(default_factory=list)
    imem: list[int] = field(default_factory=list)
    pmem: list[int] = field(default_factory=list)


@dataclass
class Run:
    outputs: np.ndarray       # [n, words, C] raw lanes
    stamps: np.ndarray        # [n, n_sync]
    total_cycles: np.ndarray  # [n]
    traces: dict[int, np.ndarray]


def pixel_words(x: np.ndarray, cols: int) -> np.ndarray:
    """A tensor [Ch, H, W] -> its scratchpad words [H*W*ceil(Ch/C), C] (pixel-major, one segment,
    pixel stride = words per pixel), unused lanes 0."""
    ch, h, w = x.shape
    kw_ = -(-ch // cols)
    padded = np.zeros((kw_ * cols, h, w), dtype=np.int64)
    padded[:ch] = x
    return padded.transpose(1, 2, 0).reshape(h * w * kw_, cols)


def write_images(work: Path, hw: Hw, program: list[Instr], images: Images) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "prog.hex").write_text("".join(isa.hex_line(isa.encode(i)) + "\n" for i in program))
    for name, words, width in (("wmem", images.wmem, hw.cols * hw.in_bits), ("imem", images.imem, hw.cols * hw.idx_bits),
                               ("pmem", images.pmem, hw.cols * isa.pmem_lane_bits(hw.acc_bits))):
        (work / f"{name}.hex").write_text(isa.hex_words(words or [0], width))


def run_rtl(work: Path, hw: Hw, program: list[Instr], images: Images, inputs: np.ndarray,
            golden: np.ndarray | None = None, trace_regions: dict | None = None, max_cycles: int = 200_000,
            simulator: str = "verilator") -> Run:
    """Run ``program`` on ``inputs`` ([n, words, C] lane codes) in the RTL; golden, if given, is
    checked by the testbench itself."""
    write_images(work, hw, program, images)
    np.save(work / "inputs.npy", np.asarray(inputs, dtype=np.int64))
    cfg = {"inputs": "inputs.npy", "golden": None, "trace": trace_regions is not None,
           "trace_regions": {str(k): v for k, v in (trace_regions or {}).items()}, "results": "results.npz",
           "cols": hw.cols, "in_bits": hw.in_bits, "max_cycles": max_cycles}
    if golden is not None:
        np.save(work / "golden.npy", np.asarray(golden, dtype=np.int64))
        cfg["golden"] = "golden.npy"
    (work / "config.json").write_text(json.dumps(cfg))
    build = rtl.build_harness(hw.parameters(), simulator=simulator)
    rtl.run(build, "tb_program", work, {"NNF_TB_CONFIG": str(work / "config.json")}, [TB_DIR])
    with np.load(work / "results.npz") as r:
        traces = {int(k[len("trace_"):]): r[k] for k in r.files if k.startswith("trace_")}
        return Run(r["outputs"], r["stamps"], r["total_cycles"], traces)


def model_cycles(hw: Hw, program: list[Instr]) -> tuple[list[int], int]:
    """(the stamp of every SYNC, the total) from isa.cycles, the single cycle model."""
    stamps, total = [], 0
    for ins in program:
        total += isa.cycles(ins, hw.shape)
        if ins.op == isa.OP_SYNC:
            stamps.append(total)
        if ins.op == isa.OP_END:
            break
    return stamps, total


def lanes_raw(values: np.ndarray, bits: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
