"""The program testbench of the systolic accelerator (nnf_systolic_top): samples in, words out.

The top's memories are loaded by ``$readmemh`` from prog.hex, wmem.hex, imem.hex and pmem.hex in
the simulator's working directory; one build runs any program.  This module imports only numpy
and cocotb (generated projects copy it, with nnf_tb_harness.v, as their standalone testbench).
The simulation's top is ``nnf_tb_harness`` (nnf_tb_harness.v, next to this file), a Verilog
testbench around the accelerator that keeps Python off the per-cycle path: it generates the
clock, streams every sample's words into s_axis, captures m_axis, stamps cycle_count at each
layer_done and, with ``trace``, reads the traced regions through the debug port itself.  Python
writes its input files, raises ``go``, awaits ``finished`` once for the whole batch and reads
the files back.  The parts, as in cocotb's ``examples/matrix_multiplier``:

* ``Driver``: every sample's input words and the plan (samples, trace, regions) as the harness's
  files; the harness is the AXI4-Stream source (tvalid/tready handshakes, words back to back).
* ``Monitor``: the harness's output words, SYNC stamps, totals and trace words, split by sample
  and layer.
* ``Model``: the expected output words (precomputed by nnforge's numpy reference: ``golden``).
* ``Checker``: compares a sample's words with the Model's, naming the sample and the word.

Configuration: JSON at env ``NNF_TB_CONFIG`` (paths relative to it)::

    {"inputs": "inputs.npy",        # int64 [n_samples, n_in_words, COLS] lane codes
     "golden": "golden.npy" | null, # int64 [n_samples, n_out_words, COLS]; lanes compared as raw IN_W bits
     "trace": false, "trace_regions": {"<layer_id>": [[base, count], ...]},
     "results": "results.npz", "cols": C, "in_bits": IN_W, "max_cycles": N}

``results.npz``: ``outputs`` [n, n_out_words, C] (raw unsigned lanes), ``stamps`` [n, n_sync]
(cycle_count at each layer_done), ``total_cycles`` [n] (cycle_count at done), and
``trace_<layer_id>`` [n, words, C] for each traced layer (its regions in order, once per SYNC
of that id).  With golden given, any mismatch fails the test (results.npz is written first).
The harness's own files (``nnf_tb_*.hex``) are in the simulator's working directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import First, RisingEdge, Timer

PERIOD_NS = 10  # nnf_tb_harness's clock (HALF_PERIOD 5, time unit 1 ns)
MAX_REGIONS = 1024  # nnf_tb_harness's MAX_REGIONS
STATUS = {1: "ran past max_cycles", 2: "a harness file did not open, or nnf_tb_plan.hex is short",
          3: f"more than {MAX_REGIONS} trace regions", 4: "nnf_tb_in.hex is short"}
_HEX = np.zeros(256, dtype=np.uint8)  # ASCII -> nibble; x and z (Icarus: never written) read 0
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
    _HEX[bytes([_c]).upper()[0]] = _i


def pack(lanes, bits: int) -> int:
    """One word from its lanes (lane l at bits [l*bits +: bits])."""
    mask = (1 << bits) - 1
    word = 0
    for lane, v in enumerate(lanes):
        word |= (int(v) & mask) << (lane * bits)
    return word


def unpack(word: int, bits: int, cols: int) -> list[int]:
    mask = (1 << bits) - 1
    return [(word >> (lane * bits)) & mask for lane in range(cols)]


def words_hex(lanes: np.ndarray, bits: int) -> bytes:
    """Words [n, C] of lanes as ``%h`` text, one word a line, most significant digit first."""
    lanes = np.asarray(lanes, dtype=np.int64).reshape(-1, np.shape(lanes)[-1])
    n, cols = lanes.shape
    digits = -(-cols * bits // 4)
    bit = ((lanes[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(n, cols * bits)
    bit = np.concatenate([bit, np.zeros((n, 4 * digits - cols * bits), np.uint8)], axis=1)
    nib = (bit.reshape(n, digits, 4) * np.array([1, 2, 4, 8], np.uint8)).sum(axis=2, dtype=np.uint8)
    text = np.frombuffer(b"0123456789abcdef", np.uint8)[nib[:, ::-1]]
    return np.concatenate([text, np.full((n, 1), ord("\n"), np.uint8)], axis=1).tobytes()


def hex_words(data: bytes, bits: int, cols: int) -> np.ndarray:
    """``%h`` lines (one word each) -> lanes [n, C] as raw unsigned IN_W-bit values (IN_W <= 16)."""
    digits = -(-cols * bits // 4)
    raw = np.frombuffer(data, np.uint8)
    if len(raw) % (digits + 1) or (len(raw) and not (raw[digits::digits + 1] == ord("\n")).all()):
        lines = [line.decode().rjust(digits, "0") for line in data.split()]  # not the fixed width
        raw = np.frombuffer("".join(line + "\n" for line in lines).encode(), np.uint8)
    nib = _HEX[raw.reshape(-1, digits + 1)[:, :digits]]
    n = len(nib)
    # little-endian bits of the word, then each lane's bits padded to whole bytes and packed
    bit = np.unpackbits(nib[:, ::-1, None], axis=2, bitorder="little")[:, :, :4].reshape(n, 4 * digits)
    bit = bit[:, :cols * bits].reshape(n, cols, bits)
    bit = np.concatenate([bit, np.zeros((n, cols, -bits % 8), np.uint8)], axis=2)
    packed = np.packbits(bit, axis=2, bitorder="little")
    return (packed[:, :, 0].astype(np.int64) if bits <= 8
            else np.ascontiguousarray(packed).view("<u2")[:, :, 0].astype(np.int64))


class Driver:
    """The harness's inputs: every sample's words (nnf_tb_in.hex) and the plan (nnf_tb_plan.hex)."""

    def __init__(self, run_dir: Path, bits: int):
        self.run_dir, self.bits = run_dir, bits

    def write(self, inputs: np.ndarray, trace: bool, regions: dict[int, list], max_cycles: int) -> None:
        flat = [(layer, int(base), int(count)) for layer, rs in sorted(regions.items()) for base, count in rs]
        assert len(flat) <= MAX_REGIONS, f"trace_regions must list at most {MAX_REGIONS} regions, not {len(flat)}"
        n, n_words = inputs.shape[:2]
        plan = [f"{n:x} {n_words:x} {int(trace):x} {max_cycles:x} {len(flat):x}"]
        plan += [f"{layer:x} {base:x} {count:x}" for layer, base, count in flat]
        (self.run_dir / "nnf_tb_plan.hex").write_text("\n".join(plan) + "\n")
        (self.run_dir / "nnf_tb_in.hex").write_bytes(words_hex(inputs.reshape(n * n_words, -1), self.bits))


class Monitor:
    """The harness's outputs, per sample: output words, SYNC stamps, the total, trace words by layer."""

    def __init__(self, run_dir: Path, bits: int, cols: int):
        self.run_dir, self.bits, self.cols = run_dir, bits, cols

    def read(self, n: int, regions: dict[int, list]) -> tuple[list[np.ndarray], list[list[int]], list[int],
                                                                 dict[int, list[np.ndarray]]]:
        words = hex_words((self.run_dir / "nnf_tb_out.hex").read_bytes(), self.bits, self.cols)
        trace = hex_words((self.run_dir / "nnf_tb_trace.hex").read_bytes(), self.bits, self.cols)
        sizes = {layer: sum(int(c) for _, c in rs) for layer, rs in regions.items()}
        outputs, stamps, totals = [], [], []
        traces: dict[int, list[np.ndarray]] = {layer: [] for layer in regions}
        syncs: list[int] = []
        out_at = trace_at = 0
        per_layer: dict[int, list[np.ndarray]] = {}
        for line in (self.run_dir / "nnf_tb_stamps.hex").read_text().splitlines():
            kind, *fields = line.split()
            if kind == "s":
                syncs.append(int(fields[1], 16))
                layer = int(fields[0], 16)
                if layer in sizes:  # its words follow the previous SYNC's in the trace file
                    per_layer.setdefault(layer, []).append(trace[trace_at:trace_at + sizes[layer]])
                    trace_at += sizes[layer]
                continue
            total, n_out, n_trace = (int(f, 16) for f in fields)
            assert n_trace == trace_at, f"sample {len(totals)}: {n_trace} trace words, expected {trace_at}"
            outputs.append(words[out_at:n_out])
            out_at = n_out
            stamps.append(syncs)
            totals.append(total)
            for layer in traces:
                traces[layer].append(np.concatenate(per_layer.get(layer, [np.zeros((0, self.cols), np.int64)])))
            syncs, per_layer = [], {}
        assert len(totals) == n, f"the harness finished {len(totals)} of {n} samples"
        return outputs, stamps, totals, traces


class Model:
    """The expected output words of each sample (nnforge's numpy reference, precomputed)."""

    def __init__(self, golden: np.ndarray | None, bits: int):
        self.golden = None if golden is None else np.asarray(golden, dtype=np.int64) & ((1 << bits) - 1)

    def expected(self, sample: int) -> np.ndarray | None:
        return None if self.golden is None else self.golden[sample]


class Checker:
    """Compares the words of a sample with the Model's; collects every mismatch."""

    def __init__(self, model: Model):
        self.model = model
        self.errors: list[str] = []

    def check(self, sample: int, got: np.ndarray) -> None:
        want = self.model.expected(sample)
        if want is None:
            return
        if got.shape != want.shape:
            self.errors.append(f"sample {sample}: {got.shape[0]} output words, expected {want.shape[0]}")
            return
        for word in np.flatnonzero((got != want).any(axis=1)):
            self.errors.append(f"sample {sample}, output word {word}: lanes {got[word].tolist()}, "
                               f"expected {want[word].tolist()}")


async def reset(dut, trace: bool) -> None:
    """Reset the bare nnf_systolic_top (tb_stalls.py: Python steps that bench's clock itself)."""
    dut.rst.value = 1
    dut.start.value = 0
    dut.trace_en.value = int(trace)
    dut.resume.value = 0
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tdata.value = 0
    dut.s_axis_tlast.value = 0
    dut.m_axis_tready.value = 1
    dut.dbg_addr.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def program(dut):
    """Run every sample through the program; record outputs, stamps and traces; check golden."""
    path = Path(os.environ["NNF_TB_CONFIG"])
    cfg = json.loads(path.read_text())
    base = path.parent
    run_dir = Path.cwd()  # the harness opens its files in the simulator's working directory
    cols, bits = int(cfg["cols"]), int(cfg["in_bits"])
    inputs = np.asarray(np.load(base / cfg["inputs"]), dtype=np.int64)
    golden = np.load(base / cfg["golden"]) if cfg.get("golden") else None
    trace = bool(cfg.get("trace", False))
    regions = {int(k): v for k, v in (cfg.get("trace_regions") or {}).items()} if trace else {}
    max_cycles = int(cfg["max_cycles"])
    n = len(inputs)
    if inputs.ndim != 3 or inputs.shape[2] != cols:
        inputs = inputs.reshape(n, -1, cols)

    Driver(run_dir, bits).write(inputs, trace, regions, max_cycles)
    checker = Checker(Model(golden, bits))
    dut.go.value = 1
    # a backstop against a harness fault only (the harness stops a sample past max_cycles itself,
    # and stalled cycles are trace reads): generous for 64 SYNCs of each traced layer a sample
    trace_words = sum(int(c) for rs in regions.values() for _, c in rs)
    n_flat = sum(len(rs) for rs in regions.values())
    budget = 64 + n * (max_cycles + 64 + (64 * (trace_words + n_flat + 8) if trace else 0))
    await First(RisingEdge(dut.finished), Timer(budget * PERIOD_NS, unit="ns"))
    assert int(dut.finished.value), f"the harness did not finish within {budget} cycles"
    status, failed = int(dut.status.value), int(dut.sample.value)
    if status == 1:
        assert False, f"sample {failed} did not finish within max_cycles={max_cycles} cycles"
    assert status == 0, f"the harness stopped at sample {failed}: {STATUS.get(status, status)}"
    outputs, stamps, totals, traces = Monitor(run_dir, bits, cols).read(n, regions)
    for s, got in enumerate(outputs):
        checker.check(s, got)

    n_words = {o.shape[0] for o in outputs}
    out = {"outputs": np.stack(outputs) if len(n_words) == 1 else np.zeros((0, 0, cols), np.int64),
           "stamps": np.array(stamps, dtype=np.int64).reshape(n, -1),
           "total_cycles": np.array(totals, dtype=np.int64)}
    for layer, words in traces.items():
        out[f"trace_{layer}"] = np.array(words, dtype=np.int64).reshape(n, -1, cols)
    np.savez(base / cfg["results"], **out)
    assert len(n_words) <= 1, f"the samples sent different numbers of output words: {sorted(n_words)}"
    assert not checker.errors, f"{len(checker.errors)} output words differ from golden; first: " + \
        "; ".join(checker.errors[:5])
