"""Stream stalls on nnf_systolic_top: INPUT and OUTPUT stay correct when s_axis_tvalid and
m_axis_tready drop at random (the cycle model then no longer holds: the counter runs longer).

Steps Python every cycle (a short program only).  Configuration: JSON at env ``NNF_TB_CONFIG``:
``{"inputs": "inputs.npy" ([n_in_words, COLS] lane codes, one sample), "cols": C, "in_bits": IN_W,
"seed": int, "max_cycles": int, "results": "results.npz"}``; ``results.npz`` holds ``outputs``
[n_out_words, C] and ``total_cycles``.  Imports only numpy and cocotb.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from tb_program import pack, reset, unpack


@cocotb.test()
async def stalls(dut):
    path = Path(os.environ["NNF_TB_CONFIG"])
    cfg = json.loads(path.read_text())
    cols, bits = int(cfg["cols"]), int(cfg["in_bits"])
    words = [pack(w, bits) for w in np.load(path.parent / cfg["inputs"])]
    rnd = random.Random(int(cfg["seed"]))
    Clock(dut.clk, 10, unit="ns").start(start_high=False)
    await reset(dut, False)
    dut.start.value = 1
    pos, got, offered = 0, [], False
    for _ in range(int(cfg["max_cycles"])):
        # this cycle's offers (the values cocotb reads at the next edge are these)
        offered = pos < len(words) and rnd.random() < 0.6
        dut.s_axis_tvalid.value = int(offered)
        if offered:
            dut.s_axis_tdata.value = words[pos]
        dut.m_axis_tready.value = int(rnd.random() < 0.5)
        await RisingEdge(dut.clk)
        dut.start.value = 0
        if offered and int(dut.s_axis_tready.value):
            pos += 1
        if int(dut.m_axis_tvalid.value) and int(dut.m_axis_tready.value):
            got.append(unpack(int(dut.m_axis_tdata.value), bits, cols))
        if int(dut.done.value):
            break
    assert int(dut.done.value), "the program did not finish"
    np.savez(path.parent / cfg["results"], outputs=np.array(got, dtype=np.int64).reshape(-1, cols),
             total_cycles=np.array(int(dut.cycle_count.value)))
