"""The program testbench of the systolic accelerator (nnf_systolic_top): samples in, words out.

The top's memories are loaded by ``$readmemh`` from prog.hex, wmem.hex, imem.hex and pmem.hex in
the simulator's working directory; one build runs any program.  This module imports only numpy
and cocotb (generated projects copy it as their standalone testbench).  Its parts, as in cocotb's
``examples/matrix_multiplier``:

* ``StreamDriver`` (AXI4-Stream in): a sample's words back to back on s_axis, tvalid high from
  before ``start``, so INPUT never stalls; Python steps the clock only while s_axis_tready is high.
* ``StreamMonitor`` (AXI4-Stream out, tready held high): the words of every OUTPUT packet; Python
  steps only while a packet is on the stream.
* ``Model``: the expected output words (precomputed by nnforge's numpy reference: ``golden``).
* ``Checker``: compares a sample's words with the Model's, naming the sample and the word.

Between those, the design runs freely (``await`` on done / layer_done, not on every clock):
free-running simulation is 10-30x faster than stepping Python each cycle.  At each layer_done
the cycle counter is recorded; with ``trace`` the controller stalls there (trace_en), the bench
reads the listed scratchpad regions through the debug port (dbg_addr -> dbg_data, one cycle) and
pulses resume.

Configuration: JSON at env ``NNF_TB_CONFIG`` (paths relative to it)::

    {"inputs": "inputs.npy",        # int64 [n_samples, n_in_words, COLS] lane codes
     "golden": "golden.npy" | null, # int64 [n_samples, n_out_words, COLS]; lanes compared as raw IN_W bits
     "trace": false, "trace_regions": {"<layer_id>": [[base, count], ...]},
     "results": "results.npz", "cols": C, "in_bits": IN_W, "max_cycles": N}

``results.npz``: ``outputs`` [n, n_out_words, C] (raw unsigned lanes), ``stamps`` [n, n_sync]
(cycle_count at each layer_done), ``total_cycles`` [n] (cycle_count at done), and
``trace_<layer_id>`` [n, words, C] for each traced layer.  With golden given, any mismatch fails
the test (results.npz is written first).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer

PERIOD_NS = 10


def pack(lanes, bits: int) -> int:
    """One word from its lanes (lane l at bits [l*bits +: bits])."""
    mask = (1 << bits) - 1
    word = 0
    for lane, v in enumerate(lanes):
        word |= (int(v) & mask) << (lane * bits)
    return word


def value(handle) -> int:
    """A port's value as an unsigned int; X/Z bits (Icarus: a scratchpad word never written) read 0."""
    v = handle.value
    try:
        return int(v)
    except ValueError:
        return int("".join(c if c in "01" else "0" for c in str(v)), 2)


def unpack(word: int, bits: int, cols: int) -> list[int]:
    mask = (1 << bits) - 1
    return [(word >> (lane * bits)) & mask for lane in range(cols)]


class StreamDriver:
    """AXI4-Stream source: drives a list of words, advancing on each handshake."""

    def __init__(self, dut):
        self.dut = dut
        self.words: list[int] = []
        self.pos = 0

    def load(self, words: list[int]) -> None:
        """Present the first word (tvalid high) before the program starts."""
        self.words, self.pos = words, 0
        self._present()

    def _present(self) -> None:
        if self.pos < len(self.words):
            self.dut.s_axis_tdata.value = self.words[self.pos]
            self.dut.s_axis_tvalid.value = 1
        else:
            self.dut.s_axis_tvalid.value = 0

    async def run(self) -> None:
        dut = self.dut
        ready, clk, data = dut.s_axis_tready, dut.clk, dut.s_axis_tdata
        while True:
            if not int(ready.value):
                await RisingEdge(ready)
            while True:  # one word a cycle while INPUT takes them (one read, one write a cycle)
                await RisingEdge(clk)  # cocotb sees the values before the edge: a handshake happened
                if not int(ready.value):
                    break
                if self.pos < len(self.words):
                    self.pos += 1
                    if self.pos < len(self.words):
                        data.value = self.words[self.pos]
                    else:
                        dut.s_axis_tvalid.value = 0


class StreamMonitor:
    """AXI4-Stream sink (tready held high): records every accepted word."""

    def __init__(self, dut, bits: int, cols: int):
        self.dut, self.bits, self.cols = dut, bits, cols
        self.words: list[list[int]] = []

    async def run(self) -> None:
        dut = self.dut
        while True:
            # tvalid falls between packets (the controller fetches between OUTPUTs); after a
            # handshake cocotb still sees the pre-edge tvalid, so always wait for the next rise
            await RisingEdge(dut.m_axis_tvalid)
            last = False
            while not last:
                await RisingEdge(dut.clk)
                if int(dut.m_axis_tvalid.value) and int(dut.m_axis_tready.value):
                    self.words.append(unpack(value(dut.m_axis_tdata), self.bits, self.cols))
                    last = bool(int(dut.m_axis_tlast.value))


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


async def read_spad(dut, regions, bits: int, cols: int) -> list[list[int]]:
    """Scratchpad words through the debug port (data one cycle after the address)."""
    addrs = [int(base) + i for base, count in regions for i in range(int(count))]
    words: list[list[int]] = []
    for k in range(len(addrs) + 1):
        if k < len(addrs):
            dut.dbg_addr.value = addrs[k]
        await RisingEdge(dut.clk)
        if k:
            words.append(unpack(value(dut.dbg_data), bits, cols))
    return words


async def reset(dut, trace: bool) -> None:
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


async def _watchdog(sample: int, max_cycles: int) -> None:
    """Fails the test when a sample runs past max_cycles (one timer a sample, not one a SYNC)."""
    await Timer((max_cycles + 64) * PERIOD_NS, unit="ns")
    assert False, f"sample {sample} did not finish within max_cycles={max_cycles} cycles"


@cocotb.test()
async def program(dut):
    """Run every sample through the program; record outputs, stamps and traces; check golden."""
    path = Path(os.environ["NNF_TB_CONFIG"])
    cfg = json.loads(path.read_text())
    base = path.parent
    cols, bits = int(cfg["cols"]), int(cfg["in_bits"])
    inputs = np.load(base / cfg["inputs"])
    golden = np.load(base / cfg["golden"]) if cfg.get("golden") else None
    trace = bool(cfg.get("trace", False))
    regions = {int(k): v for k, v in (cfg.get("trace_regions") or {}).items()} if trace else {}
    max_cycles = int(cfg["max_cycles"])

    Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
    await reset(dut, trace)
    driver = StreamDriver(dut)
    monitor = StreamMonitor(dut, bits, cols)
    checker = Checker(Model(golden, bits))
    cocotb.start_soon(driver.run())
    cocotb.start_soon(monitor.run())

    outputs, stamps, totals = [], [], []
    traces: dict[int, list] = {k: [] for k in regions}
    for s, sample in enumerate(inputs):
        driver.load([pack(w, bits) for w in sample])
        first_word = len(monitor.words)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        sample_stamps: list[int] = []
        watchdog = cocotb.start_soon(_watchdog(s, max_cycles))
        done, layer_done = RisingEdge(dut.done), RisingEdge(dut.layer_done)
        while True:
            await First(done, layer_done)
            await ReadOnly()
            count = int(dut.cycle_count.value)
            if int(dut.done.value):
                totals.append(count)
                watchdog.cancel()
                break
            sample_stamps.append(count)
            layer = int(dut.layer_id.value)
            if trace:
                await RisingEdge(dut.clk)  # leave the read-only phase; the controller is stalled
                if layer in traces:
                    traces[layer].append(await read_spad(dut, regions[layer], bits, cols))
                dut.resume.value = 1
                await RisingEdge(dut.clk)
                dut.resume.value = 0
        await RisingEdge(dut.clk)
        stamps.append(sample_stamps)
        got = np.array(monitor.words[first_word:], dtype=np.int64).reshape(-1, cols)
        outputs.append(got)
        checker.check(s, got)

    n_words = {o.shape[0] for o in outputs}
    out = {"outputs": np.stack(outputs) if len(n_words) == 1 else np.zeros((0, 0, cols), np.int64),
           "stamps": np.array(stamps, dtype=np.int64).reshape(len(inputs), -1),
           "total_cycles": np.array(totals, dtype=np.int64)}
    for layer, words in traces.items():
        out[f"trace_{layer}"] = np.array(words, dtype=np.int64).reshape(len(inputs), -1, cols)
    np.savez(base / cfg["results"], **out)
    assert len(n_words) <= 1, f"the samples sent different numbers of output words: {sorted(n_words)}"
    assert not checker.errors, f"{len(checker.errors)} output words differ from golden; first: " + \
        "; ".join(checker.errors[:5])
