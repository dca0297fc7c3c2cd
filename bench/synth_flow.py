"""The open synthesis flow on the digits CNN's accelerator: resources, the model's error, Fmax, times.

For each array size (default 2x2, 4x4, 8x8) the digits CNN is compiled for the systolic
backend, then synthesized for each target, once cold (nnforge's synthesis cache bypassed; the
YoWASP WebAssembly already compiled) and once from the cache.  Printed side by side:

* DSPs and block RAMs from the analytic model against yosys, with the error;
* LUT/FF/carry counts (yosys), and the generic flow's transistor estimate and memory bits;
* with ``--pnr``: nextpnr-ecp5's Fmax on the ECP5-85F, the critical path, and the latency per
  inference from the Fmax and the program's cycles;
* the flow's times, cold and cached.

    .venv/bin/python bench/synth_flow.py [--sizes 2,4,8] [--targets ecp5-85k,xc7,generic] [--pnr]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import nnforge
from nnforge.hw_sim.synth_flow import run_synth

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def compile_digits(out: Path, size: int) -> Path:
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"]
    qmodel = nnforge.quantize(model, [calib])
    nnforge.compile_model(qmodel, "systolic", out, options={"rows": size, "cols": size}, golden_inputs=[calib[:4]])
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,4,8")
    ap.add_argument("--targets", default="ecp5-85k,xc7,generic")
    ap.add_argument("--pnr", action="store_true", help="place and route each size on the ECP5-85F")
    ap.add_argument("--freq", default="100")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    targets = [t for t in args.targets.split(",") if t]
    work = Path(tempfile.mkdtemp(prefix="nnforge-synth-bench-"))
    rows = []
    for size in sizes:
        prj = compile_digits(work / f"digits_{size}x{size}", size)
        for target in targets:
            pnr = args.pnr and target.startswith("ecp5")
            cold, t_cold = timed(lambda: run_synth(prj, target, pnr=pnr, freq=args.freq, use_cache=False))
            _, t_hot = timed(lambda: run_synth(prj, target, pnr=pnr, freq=args.freq))
            rows.append((size, target, cold, t_cold, t_hot))
            print(f"{size}x{size} {target}: cold {t_cold:.1f} s, cached {t_hot:.2f} s", flush=True)

    print("\n## DSPs and block RAMs: analytic model against yosys\n")
    print("| array | target | DSP model | DSP yosys | error | BRAM model | BRAM yosys | error |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, target, run, _c, _h in rows:
        if target == "generic":
            continue
        t = run.entry["model_vs_measured"]["totals"]
        err = lambda v: "-" if v["error_pct"] is None else f"{v['error_pct']:+.1f}%"
        print(f"| {size}x{size} | {target} | {t['dsp']['model']} | {t['dsp']['measured']} | {err(t['dsp'])} | "
              f"{t['bram']['model']} | {t['bram']['measured']} | {err(t['bram'])} |")

    print("\n## Logic (yosys)\n")
    print("| array | target | LUT | FF | carry | DSP | BRAM | LUTRAM |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, target, run, _c, _h in rows:
        if target == "generic":
            continue
        r = run.synth.totals
        print(f"| {size}x{size} | {target} | {r['lut']:,} | {r['ff']:,} | {r['carry']:,} | {r['dsp']} | {r['bram']} | "
              f"{r['lutram']} |")

    gen = [(s, r) for s, t, r, _c, _h in rows if t == "generic"]
    if gen:
        print("\n## The ASIC view (generic: abc -g cmos, stat -tech cmos)\n")
        print("| array | logic transistors | gates | FF | memory bits | 6T SRAM transistors |")
        print("|---|---:|---:|---:|---:|---:|")
        for size, run in gen:
            s = run.synth
            print(f"| {size}x{size} | {s.transistors:,}{'' if s.transistors_complete else '+'} | {s.totals['lut']:,} | "
                  f"{s.totals['ff']:,} | {s.sram_bits:,} | {6 * s.sram_bits:,} |")

    pnrs = [(s, r) for s, t, r, _c, _h in rows if r.pnr is not None]
    if pnrs:
        print("\n## Place and route (nextpnr-ecp5)\n")
        print("| array | device | Fmax MHz | critical path | ns | logic/routing ns | latency us | inferences/s | GOPS |")
        print("|---|---|---:|---|---:|---:|---:|---:|---:|")
        for size, run in pnrs:
            p, cp, perf = run.pnr, run.pnr.critical_path or {}, run.entry["performance"] or {}
            print(f"| {size}x{size} | {p.part}-{p.package} | {p.fmax_mhz:.1f} | {cp.get('start')} -> {cp.get('end')} | "
                  f"{cp.get('delay_ns')} | {cp.get('logic_ns')}/{cp.get('routing_ns')} | {perf.get('latency_us')} | "
                  f"{perf.get('inferences_per_s')} | {perf.get('gops')} |")

    print("\n## Flow times (s)\n")
    print("| array | target | cold | cached | of which yosys | nextpnr |")
    print("|---|---|---:|---:|---:|---:|")
    for size, target, run, t_cold, t_hot in rows:
        print(f"| {size}x{size} | {target} | {t_cold:.1f} | {t_hot:.2f} | {run.times['synth_s']:.1f} | "
              f"{run.times.get('pnr_s', 0):.1f} |")


if __name__ == "__main__":
    main()
