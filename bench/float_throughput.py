"""Float inference throughput: nnforge's TVM llvm build vs. onnxruntime, same model, same data.

What is measured
    For each (model, batch) case, samples per second of one forward pass on a single batch:
      * nnforge:  ``nnforge.load(path).compile()`` -- the cleaned Relax module built by
        ``tvm.compile(mod, target="llvm")`` and run in the Relax VM (the callable includes the
        numpy -> TVM tensor conversion and back, as users see it);
      * ORT:      ``onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])``
        with default session options (intra-op threads = onnxruntime's default, usually the
        number of physical cores);
      * ORT 1thr: the same with ``intra_op_num_threads = 1``.
    All three run in this process, on identical input arrays.  The max absolute difference of
    the first output (nnforge vs. ORT) is printed as a sanity check.

How
    Each runner is warmed up (build/load, then a few calls).  The repetition count is calibrated
    so that one trial lasts at least ``--seconds`` (default 1 s); a trial times that many calls
    with ``time.perf_counter``, and the reported figure is the median over ``--trials`` (>= 3).
    No timing is asserted anywhere: this is measurement only.

Models
    digits CNN (examples/digits_cnn.onnx, examples/digits_test.npz, batches 1 and 256), digits MLP
    (examples/digits_mlp.onnx, x.reshape(N, 64), batches 1 and 256), and the onnx wheel's
    light SqueezeNet (batch 1, random input; skipped by ``--quick``).  The light SqueezeNet's
    weights are ConstantOfShape fills (all 0.02), so its softmax output is uniform and its
    max|diff| is trivially 0: it is a compute-size workload, not an accuracy check.

Threads
    ORT default = ``intra_op_num_threads=0``, i.e. onnxruntime picks one thread per physical core.
    TVM's runtime pool size is TVM_NUM_THREADS, else OMP_NUM_THREADS, else hardware threads / 2
    on x86 (TVM assumes hyper-threading).  nnforge's current build has no parallel loops, so it
    runs on the calling thread whatever the pool size.  When TVM's pool starts it pins the calling
    thread to one core (TVM_BIND_THREADS=1), and ORT sessions created later would inherit that
    mask, so this script sets TVM_BIND_THREADS=0 unless it is already set.

    python bench/float_throughput.py [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

os.environ.setdefault("TVM_BIND_THREADS", "0")  # before TVM's thread pool starts (see above)

import nnforge  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SQUEEZENET = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"


def cases(quick: bool):
    """Yield (label, onnx path, batch size, input array)."""
    x = np.load(ROOT / "examples/digits_test.npz")["x"].astype(np.float32)
    for b in (1, 256):
        yield "digits_cnn", ROOT / "examples/digits_cnn.onnx", b, x[:b]
    for b in (1, 256):
        yield "digits_mlp", ROOT / "examples/digits_mlp.onnx", b, x[:b].reshape(b, 64)
    if not quick:
        rng = np.random.default_rng(0)
        yield "squeezenet", SQUEEZENET, 1, rng.standard_normal((1, 3, 224, 224), dtype=np.float32)


def ort_runner(path: Path, threads: int | None):
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def nnforge_runner(path: Path):
    compiled = nnforge.load(path).compile()
    return lambda x: compiled([x])


def throughput(fn, x, batch: int, seconds: float, trials: int) -> float:
    """Median samples/s over ``trials`` timed loops of at least ``seconds`` each."""
    for _ in range(3):
        fn(x)  # warm-up
    t0 = time.perf_counter()
    fn(x)
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(5, math.ceil(seconds / once))
    rates = []
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(x)
        rates.append(reps * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def thread_info() -> dict:
    import tvm

    return {
        "cpu_count": os.cpu_count(),
        "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "TVM_BIND_THREADS": os.environ.get("TVM_BIND_THREADS"),
        "tvm_runtime_num_threads": tvm.runtime.num_threads(),
        "ort_intra_op_num_threads": "0 (default: physical cores) and 1",
        "tvm_version": tvm.__version__,
        "onnxruntime_version": ort.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short trials, skip SqueezeNet")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--seconds", type=float, help="minimum seconds per trial (default 1, quick 0.2)")
    ap.add_argument("--trials", type=int, default=3, help="trials per measurement (median)")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.2 if args.quick else 1.0)
    trials = max(3, args.trials)

    rows = []
    for label, path, batch, x in cases(args.quick):
        runners = {
            "nnforge": nnforge_runner(path),
            "ort": ort_runner(path, None),
            "ort_1thr": ort_runner(path, 1),
        }
        ref = runners["ort"](x)[0]
        diff = float(np.max(np.abs(runners["nnforge"](x)[0] - ref)))
        rate = {k: throughput(fn, x, batch, seconds, trials) for k, fn in runners.items()}
        rows.append({
            "model": label, "batch": batch, "max_abs_diff": diff,
            "nnforge_sps": rate["nnforge"], "ort_sps": rate["ort"], "ort_1thr_sps": rate["ort_1thr"],
            "ratio_vs_ort": rate["nnforge"] / rate["ort"],
            "ratio_vs_ort_1thr": rate["nnforge"] / rate["ort_1thr"],
        })
        print(f"  measured {label} batch {batch}", flush=True)

    threads = thread_info()
    head = f"{'model':<11} {'batch':>5} {'nnforge/s':>11} {'ORT/s':>11} {'ratio':>7} " \
           f"{'ORT1thr/s':>11} {'ratio1':>7} {'max|diff|':>10}"
    print(f"\nfloat throughput, samples/s (median of {trials} trials >= {seconds:g} s each)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:<11} {r['batch']:>5} {r['nnforge_sps']:>11.1f} {r['ort_sps']:>11.1f} "
              f"{r['ratio_vs_ort']:>7.3f} {r['ort_1thr_sps']:>11.1f} {r['ratio_vs_ort_1thr']:>7.3f} "
              f"{r['max_abs_diff']:>10.2e}")
    print("ratio = nnforge / ORT (default threads); ratio1 = nnforge / ORT (intra_op_num_threads=1)")
    print("threads: " + ", ".join(f"{k}={v}" for k, v in threads.items()))

    if args.json:
        Path(args.json).write_text(json.dumps(
            {"seconds": seconds, "trials": trials, "threads": threads, "results": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
