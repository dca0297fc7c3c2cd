"""Large models end to end: the light ResNet-50 through every command, side by side with onnxruntime.

Stages (each command in its own process, so peak memory is per command; the onnx wheel's
``light_resnet50.onnx``: fixed batch 1, constant-filled weights, 25.6 M parameters, 4.1 G MACs):

1. ``nnforge quantize MODEL --calib calib.npz -o Q`` (8 random-normal samples, w8a8): seconds and
   peak resident memory (the quantization caches are emptied first, so it calibrates and
   quantizes from scratch; TVM builds come from the build cache, warmed before, unless ``--cold``);
2. ``nnforge compile Q/ --backend hls --data golden.npz -o P`` (from the saved quantized model,
   nothing quantized again; 2 golden samples): seconds and peak memory;
3. the C simulation's build: ``make -C P build/<top>_tb`` (g++ -O2 of the generated sources, the
   weights in files): seconds and the peak memory of the compiler;
4. ``nnforge verify P``: the 2 golden samples through the C simulation, every layer's codes
   against the numpy reference (``make csim`` runs the testbench too);
5. ``nnforge simulate MODEL --data data4.npz --calib calib.npz --check``: 4 samples, the TVM
   integer build against the numpy reference, every layer;
6. batch-1 speed, in this process: ``QuantizedModel.predict(batch_size=1)`` (the bit-accurate
   integer simulation) against onnxruntime (default threads, and 1 thread) and nnforge's float
   build, on the same 16 inputs, median of 5 trials; the ratio integer / onnxruntime.  With
   ``--threads N`` both run on N threads (TVM_NUM_THREADS, intra_op_num_threads);
7. calibration per sample (``calibrate`` with its cache off, 8 samples, batch 1).

Timings are wall-clock on a shared machine: the load average is printed with them.  Measurement
only; tests assert correctness (tests/test_fixed_batch.py, tests/test_hls_weight_files.py, ...).

    python bench/large_models.py [--model light_resnet50] [--cache DIR] [--cold] [--json PATH]

Any light model runs: ``--model light_inception_v1`` (LRN) or ``light_inception_v2`` (average pools
that exclude their padding), figures in docs/quantization.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
ROOT = Path(__file__).resolve().parent.parent


def _command(args: list[str], env: dict, cwd: Path | None = None) -> dict:
    """Run one command; its seconds, peak resident MiB (the largest process of its tree) and output."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {"seconds": round(time.perf_counter() - t, 2), "peak_mib": round(usage.ru_maxrss / 1024, 1),
           "exit": proc.returncode, "output": out}
    if proc.returncode != 0:
        print(out[-3000:], file=sys.stderr)
        raise SystemExit(f"{' '.join(map(str, args))} exited {proc.returncode}")
    return row


def _nnforge(*args) -> list[str]:
    return [sys.executable, "-m", "nnforge", *[str(a) for a in args]]


def _median_rate(fn, samples: int, trials: int = 5) -> float:
    fn()  # warm-up
    rates = []
    for _ in range(trials):
        t = time.perf_counter()
        fn()
        rates.append(samples / (time.perf_counter() - t))
    return statistics.median(rates)


def speed(model_path: Path, calib: np.ndarray, x: np.ndarray, threads: int | None = None) -> dict:
    """Stage 6: batch-1 samples per second, ours against onnxruntime's, in this process."""
    os.environ.setdefault("TVM_BIND_THREADS", "0")  # before TVM's pool starts (bench/float_throughput.py)
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    import onnxruntime as ort

    import nnforge

    model = nnforge.load(model_path)
    q = nnforge.quantize(model, [calib], "w8a8")  # the cache entry stage 1 left
    q.compile()
    fm = model.compile()
    name = model.inputs[0].name
    default = ort.SessionOptions()
    if threads:
        default.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model_path), default, providers=["CPUExecutionProvider"])
    one = ort.SessionOptions()
    one.intra_op_num_threads = 1
    sess1 = ort.InferenceSession(str(model_path), one, providers=["CPUExecutionProvider"])
    n = len(x)
    rates = {
        "int_batch1": _median_rate(lambda: q.predict([x], batch_size=1), n),
        "ort": _median_rate(lambda: [sess.run(None, {name: x[i:i + 1]}) for i in range(n)], n),
        "ort_1thread": _median_rate(lambda: [sess1.run(None, {name: x[i:i + 1]}) for i in range(n)], n),
        "float_batch1": _median_rate(lambda: [fm([x[i:i + 1]]) for i in range(n)], n),
    }
    rates["int_vs_ort"] = rates["int_batch1"] / rates["ort"]
    rates["int_vs_ort_1thread"] = rates["int_batch1"] / rates["ort_1thread"]
    from nnforge.quantized import calibrate

    t = time.perf_counter()
    calibrate(model, [calib], batch_size=1, cache=False)
    rates["calibration_s_per_sample"] = (time.perf_counter() - t) / len(calib)
    return {k: round(v, 3) for k, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="light_resnet50")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/nnforge-bench-large"), help="private XDG_CACHE_HOME")
    ap.add_argument("--cold", action="store_true", help="also empty the TVM and g++ build caches first")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--speed-only", action="store_true", help="stage 6 and 7 only")
    ap.add_argument("--threads", type=int, default=None, help="stage 6 on this many threads, both engines")
    args = ap.parse_args()
    model_path = LIGHT / f"{args.model}.onnx"
    work = args.cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shape = (3, 224, 224)
    calib = rng.normal(size=(8, *shape)).astype(np.float32)
    data = rng.normal(size=(16, *shape)).astype(np.float32)
    np.savez(work / "calib.npz", x=calib)
    np.savez(work / "golden.npz", x=data[:2])
    np.savez(work / "data4.npz", x=data[:4])
    env = dict(os.environ, XDG_CACHE_HOME=str(args.cache), PYTHONPATH=str(ROOT))
    os.environ["XDG_CACHE_HOME"] = str(args.cache)
    cache = args.cache / "nnforge"
    if args.cold:
        shutil.rmtree(cache, ignore_errors=True)
    for kind in ("calib", "quantized"):  # quantize from scratch
        shutil.rmtree(cache / kind, ignore_errors=True)
    rows: dict = {"model": args.model, "load_average_before": os.getloadavg()}
    if not args.speed_only:
        if not args.cold and not cache.exists():  # warm the TVM builds (the trace) once, untimed
            _command(_nnforge("quantize", model_path, "--calib", work / "calib.npz", "-o", work / "warm"), env)
            for kind in ("calib", "quantized"):
                shutil.rmtree(cache / kind, ignore_errors=True)
        rows["quantize"] = _command(_nnforge("quantize", model_path, "--calib", work / "calib.npz", "-o", work / "q"), env)
        rows["compile"] = _command(_nnforge("compile", work / "q", "--backend", "hls", "--data", work / "golden.npz",
                                            "-o", work / "prj"), env)
        report = json.loads((work / "prj" / "report.json").read_text())
        rows["project"] = {"golden_samples": report["golden"]["samples"],
                           "weight_files": sum(1 for f in report["files"] if f.startswith("weights/")),
                           "source_mib": round(sum((work / "prj" / f).stat().st_size for f in report["files"]
                                                   if f.startswith("src/")) / 2**20, 2)}
        top = report["options"]["top"]
        rows["csim_build"] = _command(["make", "-C", str(work / "prj"), f"build/{top}_tb"], env)
        rows["make_csim"] = _command(["make", "-s", "-C", str(work / "prj"), "csim"], env)
        rows["verify"] = _command(_nnforge("verify", work / "prj", "--json"), env)
        verified = json.loads(rows["verify"]["output"].strip().splitlines()[-1])
        rows["verify"].update(passed=verified["passed"], mismatches=verified["mismatches"], samples=verified["samples"])
        rows["simulate_check"] = _command(_nnforge("simulate", model_path, "--data", work / "data4.npz", "--calib",
                                                   work / "calib.npz", "--check", "--json"), env)
        sim = json.loads(rows["simulate_check"]["output"].strip().splitlines()[-1])
        rows["simulate_check"].update(samples=sim["samples"], reference_mismatches=sim["reference_mismatches"])
        for key in ("quantize", "compile", "csim_build", "make_csim", "verify", "simulate_check"):
            rows[key]["output"] = rows[key]["output"].strip().splitlines()[-1][:300]
    rows["speed"] = speed(model_path, calib, data, args.threads)
    rows["threads"] = args.threads or "default"
    rows["load_average_after"] = os.getloadavg()
    if not args.speed_only:
        q, c = rows["quantize"], rows["compile"]
        print(f"quantize {q['seconds']:.1f} s, {q['peak_mib']:.0f} MiB; compile {c['seconds']:.1f} s, "
              f"{c['peak_mib']:.0f} MiB; together {q['seconds'] + c['seconds']:.1f} s, peak "
              f"{max(q['peak_mib'], c['peak_mib']):.0f} MiB")
        b = rows["csim_build"]
        print(f"C-sim build (g++ -O2) {b['seconds']:.1f} s, {b['peak_mib']:.0f} MiB; make csim: {rows['make_csim']['output']}")
        v = rows["verify"]
        print(f"verify: {v['samples']} samples, {v['mismatches']} mismatches, passed={v['passed']} ({v['seconds']:.1f} s, "
              f"{v['peak_mib']:.0f} MiB)")
        s = rows["simulate_check"]
        print(f"simulate --check: {s['samples']} samples, {s['reference_mismatches']} reference mismatches "
              f"({s['seconds']:.1f} s)")
    sp = rows["speed"]
    print(f"batch 1: integer {sp['int_batch1']:.2f}/s, onnxruntime {sp['ort']:.2f}/s (1 thread {sp['ort_1thread']:.2f}/s), "
          f"float {sp['float_batch1']:.2f}/s; integer/onnxruntime {sp['int_vs_ort']:.2f}x "
          f"(vs 1 thread {sp['int_vs_ort_1thread']:.2f}x); calibration {sp['calibration_s_per_sample']:.3f} s/sample")
    print(f"load average before {rows['load_average_before']}, after {rows['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
