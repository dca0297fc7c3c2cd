"""The program testbench's two halves (hw_sim/systolic/tb_program.py and nnf_tb_harness.v): the
word files between them, the harness's AXI4-Stream source between samples, its max_cycles stop,
and a batch split over two simulator processes.

Oracles: ``tb_program.pack`` and Python's own hex formatting for the word files; the input words
themselves for a program that copies them out; the numpy reference and the cycle model for the
split batch.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nnforge.backends.systolic import isa
from nnforge.backends.systolic.isa import Instr
from nnforge.hw_sim import rtl
from rtl_program import TB_DIR, Hw, Images, lanes_raw, model_cycles, run_rtl, shared_rtl_cache  # noqa: F401

sys.path.insert(0, str(TB_DIR))
import tb_program  # noqa: E402  (the testbench module itself: numpy and cocotb only)

HW = Hw(rows=2, cols=4)  # test_rtl_top.py's main parameter set: its build is shared


def _needs_verilator(simulator: str = "verilator") -> None:
    missing = rtl.simulator_missing(simulator)
    if missing:
        pytest.skip(f"RTL simulation unavailable: {missing}")


@pytest.mark.parametrize("bits,cols", [(8, 8), (4, 8), (16, 4), (3, 5), (12, 3), (16, 16), (1, 1)])
def test_word_files_are_verilog_hex(bits, cols):
    """words_hex writes what $fwrite("%h") would (full width, lane 0 lowest); hex_words reads it
    back, and also lines without leading zeros, and x/z digits (Icarus: never written) as 0."""
    rng = np.random.default_rng(bits * 100 + cols)
    lanes = rng.integers(0, 1 << bits, size=(37, cols))
    digits = -(-cols * bits // 4)
    want = "".join(f"{tb_program.pack(row, bits):0{digits}x}\n" for row in lanes).encode()
    assert tb_program.words_hex(lanes, bits) == want
    assert np.array_equal(tb_program.hex_words(want, bits, cols), lanes)
    short = "".join(f"{tb_program.pack(row, bits):x}\n" for row in lanes).encode()
    assert np.array_equal(tb_program.hex_words(short, bits, cols), lanes)
    assert tb_program.hex_words(b"", bits, cols).shape == (0, cols)


def test_unknown_digits_read_as_zero():
    assert tb_program.hex_words(b"x0\nzf\n1X\n", 4, 2).tolist() == [[0, 0], [15, 0], [0, 1]]


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_words_a_program_leaves_are_skipped(tmp_path, simulator):
    """A sample carries more words than its INPUT takes: the harness drops the rest, so the next
    sample starts with its own first word (tvalid/tready handshakes, no word lost or repeated)."""
    _needs_verilator(simulator)
    n, extra = 6, 5
    rng = np.random.default_rng(4)
    inputs = rng.integers(0, 256, size=(3, n + extra, HW.cols))
    program = [Instr(isa.OP_INPUT, {"count": n, "out_base": 10}), Instr(isa.OP_SYNC, {"count": 0}),
               Instr(isa.OP_OUTPUT, {"count": n, "in_base": 10}), Instr(isa.OP_SYNC, {"count": 1}),
               Instr(isa.OP_END, {})]
    res = run_rtl(tmp_path, HW, program, Images(), inputs, golden=lanes_raw(inputs[:, :n], HW.in_bits),
                  trace_regions={0: [[10, n]], 1: [[10, 2], [14, 1]]}, simulator=simulator)
    assert np.array_equal(res.outputs, inputs[:, :n])
    assert np.array_equal(res.traces[0], inputs[:, :n])
    assert np.array_equal(res.traces[1], inputs[:, [0, 1, 4]])
    stamps, total = model_cycles(HW, program)
    assert res.stamps.tolist() == [stamps] * 3 and res.total_cycles.tolist() == [total] * 3


@pytest.mark.slow
def test_harness_stops_a_sample_past_max_cycles(tmp_path, capfd):
    _needs_verilator()
    program = [Instr(isa.OP_INPUT, {"count": 40, "out_base": 0}), Instr(isa.OP_END, {})]
    with pytest.raises(rtl.RTLSimError, match="1 of 1 cocotb tests of tb_program failed"):
        run_rtl(tmp_path, HW, program, Images(), np.zeros((2, 40, HW.cols), np.int64), max_cycles=20)
    assert "sample 0 did not finish within max_cycles=20 cycles" in capfd.readouterr().out


@pytest.mark.slow
def test_a_batch_split_over_two_simulators_is_the_same(tmp_path):
    """Two simulator processes at once (rtl_sim.simulate(processes=2)): every layer of every sample
    equals the numpy reference, and every layer's cycles the cycle model's."""
    _needs_verilator()
    import nnforge
    from nnforge.backends.systolic import rtl_sim
    from nnforge.compiler import reference
    from systolic_util import data, quantized

    _, _, test = data("digits_cnn")
    q = quantized("digits_cnn")
    project = nnforge.compile_model(q, "systolic", tmp_path / "prj", golden_inputs=[test[:2]])
    codes = [c.astype(np.int64) for c in q.quantize_inputs([test[:5]])]
    sim = rtl_sim.simulate(project.path, codes, trace=True, processes=2)
    ref = reference.run(q.graph, codes)
    for node in q.graph.nodes:
        assert np.array_equal(sim.tensors[node.output], ref[node.output]), node.name
    rows = {r["name"]: r for r in project.report["kernels"]}
    assert sim.layers and all(sim.layers[k]["measured_cycles"] == rows[k]["predicted_cycles"] for k in sim.layers)
    assert rtl_sim.processes_for(rtl_sim.SPLIT_MIN_SAMPLES - 1) == 1
