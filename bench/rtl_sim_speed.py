"""RTL simulation speed of the systolic accelerator on the digits CNN, side by side with the other
executors of the same integer model, in one run.

    .venv/bin/python bench/rtl_sim_speed.py [--samples 450] [--bits w4a8] [--option rows=8 ...]
                                            [--processes 2] [--cold]

It compiles examples/digits_cnn.onnx for ``--backend systolic`` (calibrated on
examples/digits_calib.npz), then times on the first ``--samples`` test images:

* the RTL (Verilator under cocotb: ``rtl_sim.simulate``, the testbench tb_program.py +
  nnf_tb_harness.v), trace off (outputs only) and on (every layer's region read at its SYNC, as
  ``nnforge verify`` runs it), once on 1 sample (the start-up) and once on all of them; with
  ``--processes 2`` also split over 2 simulator processes;
* the functional model ``isa_sim`` on the same images (the cycle-level Python model, no RTL);
* the TVM integer build (``predict``: outputs; ``trace``: every node) and the numpy reference.

Times are wall clock and CPU (this process and its children: the simulator, TVM's threads); a
shared machine's wall clock says little, so the load average is printed too.  ``inputs/s`` is over
the whole call (start-up included); ``marginal`` is the RTL's rate past the start-up,
``(N - 1) / (t_N - t_1)``.  The ratios are each engine's inputs/s over the RTL's (1 process) with
the same trace setting.  The run also checks the RTL: every traced tensor equals the numpy
reference on every sample, and the measured cycles of every layer equal the cycle model's.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import nnforge
from nnforge.backends.systolic import rtl_sim
from nnforge.compiler import reference
from nnforge.hw_sim import rtl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Timing:
    wall: float
    cpu: float
    result: object = None


def timed(fn, *args, **kwargs) -> Timing:
    c0, t0 = _cpu(), time.perf_counter()
    out = fn(*args, **kwargs)
    return Timing(time.perf_counter() - t0, _cpu() - c0, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=450, help="test images (at most 450)")
    ap.add_argument("--bits", default="w4a8")
    ap.add_argument("--option", action="append", default=[], metavar="K=V", help="systolic backend option")
    ap.add_argument("--processes", type=int, default=1, help="also run the RTL split over this many processes")
    ap.add_argument("--cold", action="store_true", help="build the RTL in a fresh cache (times the build)")
    args = ap.parse_args()
    missing = rtl.simulator_missing()
    if missing:
        raise SystemExit(f"RTL simulation unavailable: {missing}")
    test = np.load(EXAMPLES / "digits_test.npz")
    x = test["x"][:args.samples].astype(np.float32)
    n = len(x)
    if n < 2:
        raise SystemExit(f"--samples must be at least 2, not {args.samples}")

    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        options = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in (o.split("=", 1) for o in args.option)}

        def compile_project():
            model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
            qmodel = nnforge.quantize(model, [np.load(EXAMPLES / "digits_calib.npz")["x"]], args.bits)
            return nnforge.compile_model(qmodel, "systolic", Path(tmp) / "prj", options=options, golden_inputs=[x[:32]])

        t_compile = timed(compile_project)
        project = t_compile.result
        path = project.path
        m = rtl_sim._manifest(path)
        qmodel = project.qmodel
        codes = [c.astype(np.int64) for c in qmodel.quantize_inputs([x])]
        t_build = timed(rtl.build_harness, m["parameters"])

        rows: list[tuple[str, str, Timing, Timing | None]] = []  # engine, trace, all samples, one sample
        sims = {}
        for trace in (False, True):
            label = "on" if trace else "off"
            one = timed(rtl_sim.simulate, path, [c[:1] for c in codes], trace, processes=1)
            full = timed(rtl_sim.simulate, path, codes, trace, processes=1)
            sims[trace] = full.result
            rows.append(("RTL, 1 process", label, full, one))
            if args.processes > 1:
                split = timed(rtl_sim.simulate, path, codes, trace, processes=args.processes)
                rows.append((f"RTL, {args.processes} processes", label, split, None))
            rows.append(("isa_sim (functional model)", label, timed(rtl_sim.simulate_model, path, codes, trace), None))
        qmodel.predict([x[:1]])  # TVM: build (or load from its cache) before timing
        rows.append(("TVM integer build, predict", "off", timed(qmodel.predict, [x]), None))
        stored = [c.astype(t.qtype.storage) for c, t in zip(codes, qmodel.graph.inputs)]  # its input dtype
        rows.append(("TVM integer build, trace", "on", timed(qmodel.trace, stored), None))
        ref = timed(reference.run, qmodel.graph, codes)
        rows.append(("numpy reference", "on", ref, None))

    # the RTL is checked, not only timed
    mismatches = sum(int(np.count_nonzero(sims[True].tensors[t] != ref.result[t]))
                     for t in sims[True].tensors if t in ref.result)
    compared = sum(1 for t in sims[True].tensors if t in ref.result)
    exact = all(sims[True].layers[lay["name"]]["measured_cycles"] == lay["predicted_cycles"] for lay in m["layers"])
    out_name = qmodel.graph.outputs[0]
    assert np.array_equal(sims[False].tensors[out_name], ref.result[out_name]), "RTL outputs differ (trace off)"
    assert mismatches == 0 and exact, f"RTL: {mismatches} mismatching codes, cycles exact: {exact}"

    cycles = m["total_cycles"]
    p = m["parameters"]
    words = sum(int(c) for rs in m["trace_regions"].values() for _, c in rs)
    print(f"digits CNN ({args.bits}), {p['ROWS']}x{p['COLS']} array: {cycles:,} cycles per inference, "
          f"{m['n_sync']} SYNCs, {words} words traced per sample; {n} samples")
    print(f"compile {t_compile.wall:.1f} s; verilator harness build {t_build.wall:.1f} s"
          f"{' (cold)' if args.cold else ' (from the cache when it says < 1 s)'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"RTL checked: {compared} tensors x {n} samples equal the numpy reference (0 mismatches); "
          f"measured cycles = predicted on all {len(m['layers'])} layers")
    base = {r[1]: r[2] for r in rows if r[0] == "RTL, 1 process"}
    print(f"\n{'engine':28} {'trace':5} {'wall s':>7} {'CPU s':>7} {'inputs/s':>9} {'/CPU s':>8} "
          f"{'Mcycles/s':>9} {'x RTL':>7}  start-up, marginal")
    for name, trace, t, one in rows:
        rate, rate_cpu = n / t.wall, n / t.cpu if t.cpu > 0 else float("inf")
        ratio = rate / (n / base[trace].wall)
        cyc = f"{cycles * rate / 1e6:9.2f}" if name.startswith("RTL") else f"{'':9}"
        extra = ""
        if one is not None:
            marginal = (n - 1) / max(t.wall - one.wall, 1e-9)
            marginal_cpu = (n - 1) / max(t.cpu - one.cpu, 1e-9)
            extra = (f"  {one.wall:.2f} s ({one.cpu:.2f} CPU s); {marginal:.0f} inputs/s, {marginal_cpu:.0f}/CPU s, "
                     f"{cycles * marginal / 1e6:.2f} Mcycles/s")
        print(f"{name:28} {trace:5} {t.wall:7.2f} {t.cpu:7.2f} {rate:9.0f} {rate_cpu:8.0f} {cyc} {ratio:7.2f}{extra}")


if __name__ == "__main__":
    main()
