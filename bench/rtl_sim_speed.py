"""RTL simulation speed of the systolic accelerator: Verilator builds, and samples/s and cycles/s of
the program testbench on a small CNN-shaped program, side by side with the functional model.

    .venv/bin/python bench/rtl_sim_speed.py [--rows 8 --cols 8] [--samples 200] [--trace]

The program (8x8 input, C channels): INPUT, ``--convs`` convs 3x3 pad 1 (the last with 2 output
words), max pool 2x2/2, dense over the 4x4x2C result, OUTPUT, with a SYNC after each; random
codes and weights (the default, 4 convs, is 3,800 cycles a sample on 8x8).  Times are wall
clock and, because a shared machine's wall clock says little, the simulator process's CPU time.  Builds go to a fresh cache folder (cold), then are repeated (cached).  The golden words
come from isa_sim, so the run also checks RTL == functional model on every sample.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from nnforge.backends.systolic import isa, isa_sim
from nnforge.backends.systolic.isa import Instr
from nnforge.hw_sim import rtl


def program(rows: int, cols: int, rng, convs: int = 4) -> tuple[list[Instr], list[int], list[int], int]:
    C = cols
    sat = {"rnd": 1, "out_signed": 1, "out_bits": 8, "lo": -128, "hi": 127, "a_signed": 1, "w_signed": 1}
    x_base, c1, c2, p1, d1 = 0, 64, 256, 384, 420
    conv = {"kh": 3, "kw": 3, "sh": 1, "sw": 1, "dh": 1, "dw": 1, "pt": 1, "pl": 1, "in_h": 8, "in_w": 8,
            "out_h": 8, "out_w": 8, "k_step": 0, **sat}
    wmem, pmem, w_base, p_base = [], [], 0, 0
    instrs = [Instr(isa.OP_INPUT, {"count": 64, "out_base": x_base}), Instr(isa.OP_SYNC, {"count": 0})]

    def gemm(fields, n_words, k_steps):
        nonlocal w_base, p_base
        w = rng.integers(-8, 8, size=(n_words * k_steps, C))
        wmem.extend(isa.pack_lanes(w, 8))
        ones = np.ones((n_words, C), dtype=np.int64)
        pmem.extend(isa.pack_pmem(rng.integers(-100, 100, size=(n_words, C)), (1 << 14) * ones, 18 * ones, 32))
        instrs.append(Instr(isa.OP_GEMM, {**fields, "n_words": n_words, "w_base": w_base, "p_base": p_base}))
        instrs.append(Instr(isa.OP_SYNC, {"count": len(instrs) // 2}))
        w_base += n_words * k_steps
        p_base += n_words

    src = x_base
    for k in range(convs - 1):  # ping-pong between two 64-word regions
        dst = c1 if k % 2 == 0 else x_base + 64 * 3
        gemm({**conv, "in_base": src, "in_ps": 1, "out_base": dst, "out_ps": 1, "k_words": 1}, 1, 9 * C)
        src = dst
    gemm({**conv, "in_base": src, "in_ps": 1, "out_base": c2, "out_ps": 2, "k_words": 1}, 2, 9 * C)
    instrs += [Instr(isa.OP_WINDOW, {"sub": isa.WIN_MAX, "in_base": c2, "in_h": 8, "in_w": 8, "in_ps": 2,
                                     "out_base": p1, "out_h": 4, "out_w": 4, "out_ps": 2, "n_words": 2, "kh": 2,
                                     "kw": 2, "sh": 2, "sw": 2, "dh": 1, "dw": 1, **sat}),
               Instr(isa.OP_SYNC, {"count": len(instrs) // 2})]
    gemm({"in_base": p1, "in_h": 4, "in_w": 4, "in_ps": 2, "out_base": d1, "out_h": 1, "out_w": 1, "out_ps": 2,
          "kh": 4, "kw": 4, "sh": 1, "sw": 1, "dh": 1, "dw": 1, "k_words": 2, "k_step": 0, **sat}, 2, 16 * 2 * C)
    instrs += [Instr(isa.OP_OUTPUT, {"count": 2, "in_base": d1}), Instr(isa.OP_SYNC, {"count": len(instrs) // 2}),
               Instr(isa.OP_END, {})]
    total = sum(isa.cycles(i, isa.ArrayShape(rows, cols)) for i in instrs)
    return instrs, wmem, pmem, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--convs", type=int, default=4, help="3x3 convolutions before the pool (>= 1)")
    ap.add_argument("--trace", action="store_true", help="stall at every SYNC and read its output region")
    args = ap.parse_args()
    missing = rtl.simulator_missing()
    if missing:
        raise SystemExit(f"RTL simulation unavailable: {missing}")
    R, C = args.rows, args.cols
    params = {"ROWS": R, "COLS": C, "IN_W": 8, "ACC_W": 32, "IDX_W": 4, "SPAD_DEPTH": 512, "WMEM_DEPTH": 2048,
              "IMEM_DEPTH": 16, "PMEM_DEPTH": 16, "PROG_DEPTH": 32}
    rng = np.random.default_rng(0)
    instrs, wmem, pmem, total = program(R, C, rng, args.convs)
    machine = isa_sim.Machine(R, C, 8, 32, 4, 512, 2048, 16, 16, 32)
    inputs = rng.integers(-128, 128, size=(args.samples, 64, C))
    inputs[:, :, 1:] = 0  # one input channel
    regions = {1: [[64, 64]], args.convs: [[256, 128]], args.convs + 2: [[420, 2]]} if args.trace else None

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        build = rtl.build(params)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        rtl.build(params)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = isa_sim.run(machine, instrs, wmem, [], pmem, inputs, regions)
        t_model = time.perf_counter() - t0
        work = Path(tmp) / "run"
        work.mkdir()
        (work / "prog.hex").write_text("".join(isa.hex_line(isa.encode(i)) + "\n" for i in instrs))
        (work / "wmem.hex").write_text(isa.hex_words(wmem, C * 8))
        (work / "imem.hex").write_text(isa.hex_words([0], C * 4))
        (work / "pmem.hex").write_text(isa.hex_words(pmem, C * isa.pmem_lane_bits(32)))
        np.save(work / "inputs.npy", inputs)
        np.save(work / "golden.npy", model.outputs & 0xFF)
        cfg = {"inputs": "inputs.npy", "golden": "golden.npy", "trace": bool(args.trace),
               "trace_regions": {str(k): v for k, v in (regions or {}).items()}, "results": "results.npz",
               "cols": C, "in_bits": 8, "max_cycles": 2 * total}
        (work / "config.json").write_text(json.dumps(cfg))
        runs, cpu = {}, {}
        for n in (1, args.samples):  # one sample: the simulator's start-up cost
            np.save(work / "inputs.npy", inputs[:n])
            np.save(work / "golden.npy", model.outputs[:n] & 0xFF)
            t0 = time.perf_counter()
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            rtl.run(build, "tb_program", work, {"NNF_TB_CONFIG": str(work / "config.json")},
                    [Path(rtl.__file__).parent / "systolic"])
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs[n] = time.perf_counter() - t0
            cpu[n] = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
        with np.load(work / "results.npz") as r:
            assert (r["total_cycles"] == total).all() and r["stamps"][0].tolist() == model.stamps
    per_sample = (runs[args.samples] - runs[1]) / (args.samples - 1)
    cpu_sample = (cpu[args.samples] - cpu[1]) / (args.samples - 1)
    print(f"array {R}x{C}, program of {len(instrs)} instructions, {total} cycles a sample"
          f"{' (trace: stall and read at every SYNC)' if args.trace else ''}")
    print(f"verilator build: {cold:.1f} s cold, {warm:.2f} s cached")
    print(f"RTL (cocotb + Verilator): {runs[1]:.2f} s for 1 sample (start-up), {runs[args.samples]:.2f} s for "
          f"{args.samples}: {1 / per_sample:.0f} samples/s, {total / per_sample / 1e6:.2f} M cycles/s")
    print(f"  per CPU second of the simulator: {1 / cpu_sample:.0f} samples/s, {total / cpu_sample / 1e6:.2f} M cycles/s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"isa_sim (numpy):          {t_model:.2f} s for {args.samples}: {args.samples / t_model:.0f} samples/s "
          f"(RTL / model time: {per_sample * args.samples / t_model:.1f}x)")


if __name__ == "__main__":
    main()
