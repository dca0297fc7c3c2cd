"""A cycle-by-cycle port bench for the accelerator's units (PE, array, requant).

The pytest side (tests/test_rtl_units.py) is the Model and the Checker: it lays out every
input port's value in every cycle, computes the expected outputs with the numpy reference, and
compares.  This bench is the Driver and the Monitor: it drives the inputs one cycle at a time
and records the outputs.  It imports only numpy and cocotb.

Configuration: the JSON file named by env ``NNF_TB_CONFIG``::

    {"cycles": T,
     "inputs": {"<port>": {"file": "<port>.npy", "width": W}},   # int64 [T, lanes]: lane l at bits [l*W +: W]
     "outputs": {"<port>": {"width": W, "lanes": L}},
     "results": "results.npz"}                                    # [T, L] raw unsigned lanes per output

Timing: row t of every input is on its port during cycle t (it is written just after the rising
edge that starts cycle t); row t of every output is read when the edge that ends cycle t fires,
which in cocotb is before that edge's register updates are visible: it is the value during
cycle t.  So an output the RTL documents at cycle t+L for an input at cycle t is in row t+L.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


def _pack(row: np.ndarray, width: int) -> int:
    mask = (1 << width) - 1
    word = 0
    for lane, v in enumerate(row):
        word |= (int(v) & mask) << (lane * width)
    return word


def _unpack(word: int, width: int, lanes: int) -> list[int]:
    mask = (1 << width) - 1
    return [(word >> (lane * width)) & mask for lane in range(lanes)]


class Driver:
    """Puts row t of every input table on its port."""

    def __init__(self, dut, base: Path, inputs: dict):
        self.ports = []
        for name, doc in inputs.items():
            table = np.load(base / doc["file"])
            if table.ndim == 1:
                table = table[:, None]
            words = [_pack(row, int(doc["width"])) for row in table]
            self.ports.append((getattr(dut, name), words))

    def drive(self, t: int) -> None:
        for handle, words in self.ports:
            handle.value = words[t]


class Monitor:
    """Records every output port's lanes in every cycle."""

    def __init__(self, dut, outputs: dict, cycles: int):
        self.ports = [(name, getattr(dut, name), int(d["width"]), int(d["lanes"])) for name, d in outputs.items()]
        self.rows = {name: np.zeros((cycles, lanes), dtype=np.int64) for name, _, _, lanes in self.ports}

    def sample(self, t: int) -> None:
        for name, handle, width, lanes in self.ports:
            self.rows[name][t] = _unpack(int(handle.value), width, lanes)


@cocotb.test()
async def ports(dut):
    """Drive the configured inputs cycle by cycle and record the configured outputs."""
    path = Path(os.environ["NNF_TB_CONFIG"])
    cfg = json.loads(path.read_text())
    base = path.parent
    cycles = int(cfg["cycles"])
    driver = Driver(dut, base, cfg["inputs"])
    monitor = Monitor(dut, cfg["outputs"], cycles)
    driver.drive(0)
    Clock(dut.clk, 10, unit="ns").start()
    for t in range(cycles):
        await RisingEdge(dut.clk)
        monitor.sample(t)
        if t + 1 < cycles:
            driver.drive(t + 1)
    np.savez(base / cfg["results"], **monitor.rows)
