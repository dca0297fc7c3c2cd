"""Float and quantized-simulation throughput: onnxruntime vs. nnforge's TVM builds vs. numpy.

What is measured
    Samples per second over a whole dataset, per model:
      (a) ORT:        onnxruntime, CPUExecutionProvider, default session options, in batches
                      of 256 (also shown: ORT with intra_op_num_threads=1, "ORT1");
      (b) float:      ``nnforge.load(path).predict([x], batch_size=256)`` (TVM float build);
      (c) quantized:  ``quantize(model, [calib], "w8a8").predict([x], batch_size=256)`` --
                      the bit-accurate integer simulation built by TVM (input quantization,
                      dequantization and host softmax included, as users see it); this runs
                      the CPU simulation form of the integer module (compiler/lower/lower_relax.py);
      (s) simulate:   ``nnforge.simulate.simulate(model, [x], labels, qmodel=q)`` -- the whole
                      accuracy simulation without its builds: float and integer models on
                      every sample, both traced layer by layer (per-layer SQNR) on the first
                      512 samples only;
      (d) reference:  ``q.reference(q.quantize_inputs([x]))`` -- the numpy interpreter of the
                      same quantized graph, in batches of ``--ref-batch`` (default 64).
    Ratios (c)/(a), (s)/(a) and (c)/(d) are printed; the target is (c)/(a) >= 0.5.  Timings are
    never asserted.  Builds (or build-cache loads) and calibration happen before timing; each
    runner is warmed up once, then timed in ``--trials`` interleaved trials of >= ``--seconds``
    each (median).  (d) covers only the first ``--ref-samples`` samples.

Models
    digits_cnn: examples/digits_cnn.onnx on examples/digits_test.npz, calibrated on
        examples/digits_calib.npz;
    mobilenet: a MobileNet-style CNN built here with onnx.helper (3x32x32 input, stem conv +
        3 depthwise-separable blocks with BatchNorm + ReLU6, global average pool, Gemm: 8
        weight layers), seeded random weights, random data and calibration set.

Threads
    ORT uses its default intra-op threads (physical cores); nnforge's builds run images in
    parallel on TVM's pool sized to every core (compiler/lower/cpu_schedule.py).  ORT1 (ORT on one
    thread) is shown too.  TVM_BIND_THREADS=0 is set (see bench/float_throughput.py).

    python bench/simulate_throughput.py [--quick] [--bits w4a8] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

os.environ.setdefault("TVM_BIND_THREADS", "0")  # before TVM's thread pool starts

import nnforge  # noqa: E402
from nnforge.quantized import quantize  # noqa: E402
from nnforge.simulate import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def mobilenet_onnx(seed: int = 0) -> onnx.ModelProto:
    """stem 3x3/2 conv, 3 x (depthwise 3x3 + pointwise 1x1), GAP, Gemm; BN + ReLU6 after convs."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], [numpy_helper.from_array(np.array(0, np.float32), "zero"),
                        numpy_helper.from_array(np.array(6, np.float32), "six")]

    def param(name, arr):
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv_bn_relu6(x, name, cin, cout, k, stride, groups=1):
        fan_in = cin // groups * k * k
        w = param(f"{name}.w", rng.normal(0, np.sqrt(2 / fan_in), (cout, cin // groups, k, k)))
        nodes.append(helper.make_node("Conv", [x, w], [f"{name}.conv"], kernel_shape=[k, k],
                                      strides=[stride] * 2, pads=[k // 2] * 4, group=groups))
        bn = [param(f"{name}.{p}", v) for p, v in (
            ("gamma", rng.uniform(0.5, 1.5, cout)), ("beta", rng.normal(0, 0.1, cout)),
            ("mean", rng.normal(0, 0.1, cout)), ("var", rng.uniform(0.5, 2.0, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [f"{name}.conv", *bn], [f"{name}.bn"]))
        nodes.append(helper.make_node("Clip", [f"{name}.bn", "zero", "six"], [name]))
        return name

    x = conv_bn_relu6("input", "stem", 3, 32, 3, 2)  # 16x16
    for i, (cin, cout, stride) in enumerate([(32, 64, 1), (64, 128, 2), (128, 128, 1)]):
        x = conv_bn_relu6(x, f"b{i}.dw", cin, cin, 3, stride, groups=cin)
        x = conv_bn_relu6(x, f"b{i}.pw", cin, cout, 1, 1)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    w, b = param("fc.w", rng.normal(0, 0.1, (10, 128))), param("fc.b", rng.normal(0, 0.1, 10))
    nodes.append(helper.make_node("Gemm", ["flat", w, b], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes, "mobilenet_mini",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def workloads(quick: bool):
    """Yield (label, onnx.ModelProto, data, calibration data)."""
    d, c = np.load(ROOT / "examples/digits_test.npz"), np.load(ROOT / "examples/digits_calib.npz")
    yield "digits_cnn", onnx.load(ROOT / "examples/digits_cnn.onnx"), \
        d["x"].astype(np.float32), c["x"].astype(np.float32)
    rng = np.random.default_rng(1)
    n, n_cal = (512, 256) if quick else (2048, 512)
    yield "mobilenet", mobilenet_onnx(), rng.standard_normal((n, 3, 32, 32), np.float32), \
        rng.standard_normal((n_cal, 3, 32, 32), np.float32)


def rates(runners: dict, trials: int, min_seconds: float) -> dict[str, float]:
    """Median samples/s per runner ``name -> (fn, samples per call)``.  Trials are interleaved
    (each trial times every runner once) so that a change in machine load hits all alike; a
    trial repeats ``fn`` for at least ``min_seconds``."""
    reps = {}
    for name, (fn, _) in runners.items():  # warm-up, and calibrate the repetitions
        t0 = time.perf_counter()
        fn()
        reps[name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-6)))
    times = {name: [] for name in runners}
    for _ in range(trials):
        for name, (fn, _) in runners.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: n / statistics.median(times[name]) for name, (_, n) in runners.items()}


def ort_runner(proto: onnx.ModelProto, x: np.ndarray, threads: int | None):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda: np.concatenate([sess.run(None, {name: x[i:i + 256]})[0] for i in range(0, len(x), 256)])


def measure(label, proto, x, calib, args) -> dict:
    run_ort, run_ort1 = ort_runner(proto, x, None), ort_runner(proto, x, 1)

    model = nnforge.load(proto)
    t0 = time.perf_counter()
    model.compile()
    build_float = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = quantize(model, [calib], args.bits)
    q.compile()
    build_quant = time.perf_counter() - t0
    xr = x[:args.ref_samples]
    out_key = model.output_names[0]

    def run_ref():
        for i in range(0, len(xr), args.ref_batch):
            q.reference(q.quantize_inputs([xr[i:i + args.ref_batch]]))

    rate = rates({
        "ort": (run_ort, len(x)),
        "ort_1thr": (run_ort1, len(x)),
        "float": (lambda: model.predict([x], batch_size=256), len(x)),
        "quant": (lambda: q.predict([x], batch_size=256), len(x)),
        "simulate": (lambda: simulate(model, [x], None, qmodel=q), len(x)),
        "reference": (run_ref, len(xr)),
    }, args.trials, args.seconds)
    ref_out = run_ort()
    float_diff = float(np.abs(model.predict([x])[out_key] - ref_out).max())
    agree = float((q.predict([x])[out_key].argmax(1) == ref_out.argmax(1)).mean())
    print(f"  measured {label}", flush=True)
    return {"model": label, "samples": len(x), "build_float_s": build_float,
            "build_quant_s": build_quant, "float_max_abs_diff": float_diff, "quant_top1_agree": agree,
            **{f"{k}_sps": v for k, v in rate.items()},
            **{f"quant_vs_{k}": rate["quant"] / rate[k] for k in ("ort", "ort_1thr", "reference")},
            "simulate_vs_ort": rate["simulate"] / rate["ort"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and trials")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--bits", default="w8a8", help="quantization config (default w8a8)")
    ap.add_argument("--trials", type=int, help="timed trials, median (default 5, quick 3)")
    ap.add_argument("--seconds", type=float, help="minimum seconds per trial (default 0.5, quick 0.1)")
    ap.add_argument("--ref-batch", type=int, default=64, help="numpy reference batch size")
    ap.add_argument("--ref-samples", type=int, help="samples run through the numpy reference")
    args = ap.parse_args(argv)
    args.trials = args.trials or (3 if args.quick else 5)
    args.seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 0.5)
    args.ref_samples = args.ref_samples or (64 if args.quick else 256)

    import tvm
    from nnforge.compiler.lower import cpu_schedule

    rows = [measure(*w, args) for w in workloads(args.quick)]
    head = (f"{'model':<11} {'ORT/s':>8} {'ORT1/s':>8} {'float/s':>8} {'quant/s':>8} {'sim/s':>8} "
            f"{'numpy/s':>8} {'q/ORT':>6} {'q/ORT1':>6} {'sim/ORT':>7} {'q/numpy':>7} {'q/ORT>=0.5':>10}")
    print(f"\nsamples/s, median of {args.trials} trials; q = quantized {args.bits} predict (TVM); "
          f"sim = simulate() without builds (SQNR on the first 512 samples); ORT1 = ORT on 1 thread")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['model']:<11} {r['ort_sps']:>8.0f} {r['ort_1thr_sps']:>8.0f} {r['float_sps']:>8.0f} "
              f"{r['quant_sps']:>8.0f} {r['simulate_sps']:>8.0f} {r['reference_sps']:>8.0f} "
              f"{r['quant_vs_ort']:>6.2f} {r['quant_vs_ort_1thr']:>6.2f} {r['simulate_vs_ort']:>7.2f} "
              f"{r['quant_vs_reference']:>7.1f} {'met' if r['quant_vs_ort'] >= 0.5 else 'NOT met':>10}")
    for r in rows:
        print(f"{r['model']}: builds {r['build_float_s']:.1f} s float, {r['build_quant_s']:.1f} s "
              f"calibrate+quantize+build; float max|diff| vs ORT {r['float_max_abs_diff']:.1e}; "
              f"quantized top-1 agreement with ORT {r['quant_top1_agree']:.3f}")
    env = {"cpu_count": os.cpu_count(), "TVM_NUM_THREADS": os.environ.get("TVM_NUM_THREADS"),
           "tvm_runtime_num_threads": tvm.runtime.num_threads(), "tvm_version": tvm.__version__,
           "onnxruntime_version": ort.__version__, "target": str(cpu_schedule.cpu_target()),
           "build_paths": dict(cpu_schedule.stats)}
    print("env: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if args.json:
        out = {"bits": args.bits, "trials": args.trials, "seconds": args.seconds, "env": env, "results": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
