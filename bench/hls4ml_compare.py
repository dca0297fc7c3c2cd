"""nnforge's hls backend against hls4ml, side by side in one run, on the same ONNX models.

Two models, both tools starting from the same ONNX file:

* ``mlp``: examples/digits_mlp.onnx (64-128-64-10, ReLU), on the 450 digits test images;
* ``cnn``: a LeNet-5 (1x28x28: conv 5x5 x6, ReLU, max-pool 2, conv 5x5 x16, ReLU, max-pool 2,
  dense 256-120-84-10; 0.28 M MACs), written by ``lenet5()`` with seeded random weights
  (accuracy is not the point; the throughput is), on the digits test images upsampled to 28x28.

hls4ml's ONNX converter takes both after the usual QONNX clean-up (cleanup, channels-last,
Gemm -> MatMul); the CNN uses ``io_stream``, hls4ml's configuration for CNNs (``io_parallel``
builds 4x slower and predicts slower still on this LeNet).

* **Build:** hls4ml: clean-up + ``convert_from_onnx_model`` + ``compile()`` (writes the
  project and builds it with g++).  nnforge: ``quantize`` (calibration included) +
  ``compile_model`` + ``nnforge.backends.hls.simulation.build`` (g++ -O3 -march=native).  Both build into fresh
  directories; nnforge's build cache points at an empty temporary folder, so nothing is reused.
  Neither counts its Python imports: both are imported first (hls4ml + qonnx; nnforge's quantizer,
  which imports TVM), each timed on its own and printed.
* **C-sim throughput:** ``hls_model.predict(x)`` against ``Project.predict(x)`` (x the test
  images, ``TILE`` times over for nnforge so that a run lasts long enough to time), best of
  ``--repeat`` runs after one warm-up, in wall-clock time and in this process's CPU time (both
  predict single-threaded here; CPU time is what other load on the machine does not distort).

Precisions differ and are reported: hls4ml uses its default ``ap_fixed<16,6>`` with no
calibration; nnforge uses w8a8 (8-bit weights and activations, calibrated).  Targets (issue
14): throughput >= 100x hls4ml's, build time <= 0.5x.  Measurement only, no assertions.

    pip install -e '.[bench]'
    python bench/hls4ml_compare.py [--models mlp,cnn] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MLP = EXAMPLES / "digits_mlp.onnx"
TILE = {"digits_mlp": 200, "lenet5": 20}  # nnforge predicts the test images this many times over per timed run


def lenet5(path: Path, seed: int = 0) -> Path:
    """LeNet-5 for 1x28x28 inputs as ONNX (opset 13), He-initialised from ``seed``."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(seed)

    def w(name, *shape):
        return nh.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32), name)

    def b(name, n):
        return nh.from_array((0.05 * rng.standard_normal(n)).astype(np.float32), name)

    conv = dict(kernel_shape=[5, 5], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    pool = dict(kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    nodes = [oh.make_node("Conv", ["input", "c1w", "c1b"], ["c1"], **conv), oh.make_node("Relu", ["c1"], ["r1"]),
             oh.make_node("MaxPool", ["r1"], ["p1"], **pool),
             oh.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], **conv), oh.make_node("Relu", ["c2"], ["r2"]),
             oh.make_node("MaxPool", ["r2"], ["p2"], **pool), oh.make_node("Flatten", ["p2"], ["flat"], axis=1),
             oh.make_node("Gemm", ["flat", "f1w", "f1b"], ["g1"], transB=1), oh.make_node("Relu", ["g1"], ["h1"]),
             oh.make_node("Gemm", ["h1", "f2w", "f2b"], ["g2"], transB=1), oh.make_node("Relu", ["g2"], ["h2"]),
             oh.make_node("Gemm", ["h2", "f3w", "f3b"], ["logits"], transB=1)]
    inits = [w("c1w", 6, 1, 5, 5), b("c1b", 6), w("c2w", 16, 6, 5, 5), b("c2b", 16), w("f1w", 120, 256), b("f1b", 120),
             w("f2w", 84, 120), b("f2b", 84), w("f3w", 10, 84), b("f3b", 10)]
    graph = oh.make_graph(nodes, "lenet5", [oh.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
                          [oh.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)], producer_name="nnforge-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _to28(x: np.ndarray) -> np.ndarray:
    """8x8 digits -> 1x28x28: each pixel 3x3, a 2-pixel zero border."""
    up = np.kron(x.reshape(len(x), 8, 8), np.ones((3, 3), np.float32))
    return np.pad(up, ((0, 0), (2, 2), (2, 2)))[:, None].astype(np.float32)


def _best(f, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU seconds (this process: both tools predict single-threaded in
    it, so CPU time is what a loaded machine does not distort) over ``repeat`` runs."""
    f()  # warm-up: first-call costs (ctypes loading, page faults) are not throughput
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu), out


def run_hls4ml(work: Path, model: Path, x: np.ndarray, repeat: int, io_type: str) -> dict:
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # hls4ml prints its topology
        warnings.simplefilter("ignore", UserWarning)  # qonnx: "GemmToMatMul only supports Gemm v9" (v17 works)
        m = cleanup_model(ModelWrapper(str(model)))
        m = m.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul())
        m = cleanup_model(m)
        cfg = hls4ml.utils.config_from_onnx_model(m, granularity="model", backend="Vitis")
        hm = hls4ml.converters.convert_from_onnx_model(m, output_dir=str(work / f"hls4ml_{model.stem}"),
                                                       backend="Vitis", hls_config=cfg, io_type=io_type)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        hm.compile()  # write the project + g++
    t2 = time.perf_counter()
    x = np.ascontiguousarray(x if x.ndim == 2 else x.transpose(0, 2, 3, 1), dtype=np.float32)  # channels-last
    secs, cpu, y = _best(lambda: hm.predict(x), repeat)
    precision = cfg["Model"]["Precision"]
    return {"version": hls4ml.__version__, "precision": precision.get("default", str(precision)), "io_type": io_type,
            "convert_s": t1 - t0, "write_and_build_s": t2 - t1, "build_total_s": t2 - t0,
            "predict_s": secs, "throughput_per_s": len(x) / secs, "cpu_throughput_per_s": len(x) / cpu,
            "pred": np.asarray(y).reshape(len(x), -1)}


def run_nnforge(work: Path, model: Path, x: np.ndarray, calib: np.ndarray, repeat: int) -> dict:
    import nnforge
    from nnforge.backends.hls.simulation import build

    t0 = time.perf_counter()
    q = nnforge.quantize(nnforge.load(model), [calib], "w8a8")
    t1 = time.perf_counter()
    project = nnforge.compile_model(q, "hls", work / f"nnforge_{model.stem}")
    t2 = time.perf_counter()
    build(project.path)  # g++, what the first predict would do
    t3 = time.perf_counter()
    # the images TILE times over, so that one timed run lasts long enough to measure (hundreds of ms)
    xs = np.concatenate([x] * TILE[model.stem])
    secs, cpu, y = _best(lambda: project.predict(xs), repeat)
    return {"version": nnforge.__version__, "precision": "w8a8", "quantize_s": t1 - t0, "compile_s": t2 - t1,
            "gpp_build_s": t3 - t2, "build_total_s": t3 - t0, "predict_s": secs,
            "throughput_per_s": len(xs) / secs, "cpu_throughput_per_s": len(xs) / cpu, "tile": TILE[model.stem],
            "pred": next(iter(y.values()))[: len(x)].reshape(len(x), -1)}


def compare(name: str, work: Path, repeat: int) -> dict:
    """One model through both tools; the figures and ratios."""
    test = np.load(EXAMPLES / "digits_test.npz")
    x8, labels = test["x"].reshape(len(test["x"]), -1).astype(np.float32), test["y"]
    calib8 = np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64).astype(np.float32)
    if name == "mlp":
        model, x, calib, io_type = MLP, x8, calib8, "io_parallel"
    else:
        model, x, calib, io_type = lenet5(work / "lenet5.onnx"), _to28(x8), _to28(calib8), "io_stream"
    h = run_hls4ml(work, model, x, repeat, io_type)
    n = run_nnforge(work, model, x, calib, repeat)
    for r in (h, n):
        pred = r.pop("pred").argmax(1)
        r["accuracy"] = float((pred == labels).mean()) if name == "mlp" else None  # random LeNet weights
    return {"model": model.name, "samples": len(x), "hls4ml": h, "nnforge": n,
            "build_ratio": n["build_total_s"] / h["build_total_s"],
            "throughput_ratio": n["throughput_per_s"] / h["throughput_per_s"],
            "cpu_throughput_ratio": n["cpu_throughput_per_s"] / h["cpu_throughput_per_s"]}


def _print_imports(imports: dict[str, float]) -> None:
    print("imports, before any build (not in the build times): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in imports.items()))


def _print(r: dict) -> None:
    h, n = r["hls4ml"], r["nnforge"]
    acc = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"\nmodel: {r['model']}, {r['samples']} images; hls4ml {h['version']} ({h['precision']}, {h['io_type']}), "
          f"nnforge {n['version']} (w8a8)")
    print(f"{'':10s} {'build s':>8s}   {'phases':38s} {'predict s':>9s} {'img/s':>10s} {'accuracy':>8s}")
    print(f"{'hls4ml':10s} {h['build_total_s']:8.2f}   convert {h['convert_s']:5.2f} + write&g++ "
          f"{h['write_and_build_s']:6.2f}{'':8s} {h['predict_s']:9.4f} {h['throughput_per_s']:10.0f} {acc(h['accuracy']):>8s}")
    print(f"{'nnforge':10s} {n['build_total_s']:8.2f}   quantize {n['quantize_s']:4.2f} + compile {n['compile_s']:4.2f}"
          f" + g++ {n['gpp_build_s']:5.2f} {n['predict_s']:9.4f} {n['throughput_per_s']:10.0f} {acc(n['accuracy']):>8s}")
    print(f"build time ratio nnforge/hls4ml: {r['build_ratio']:.3f}x (target <= 0.5x) "
          f"{'met' if r['build_ratio'] <= 0.5 else 'NOT met'}")
    print(f"C-sim throughput ratio nnforge/hls4ml: {r['throughput_ratio']:.1f}x wall-clock, "
          f"{r['cpu_throughput_ratio']:.1f}x in CPU time ({n['cpu_throughput_per_s']:.0f} vs "
          f"{h['cpu_throughput_per_s']:.0f} img/s) (target >= 100x) "
          f"{'met' if min(r['throughput_ratio'], r['cpu_throughput_ratio']) >= 100 else 'NOT met'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn")
    ap.add_argument("--repeat", type=int, default=5, help="timed predict runs (best is kept)")
    ap.add_argument("--json", type=Path, help="write the numbers as JSON")
    args = ap.parse_args()
    imports = {}
    try:
        t = time.perf_counter()
        import hls4ml  # noqa: F401
        import qonnx  # noqa: F401
        imports["hls4ml + qonnx"] = time.perf_counter() - t
    except ImportError as err:
        print(f"hls4ml_compare: skipped, {err.name} is not installed (pip install -e '.[bench]')")
        return 0
    t = time.perf_counter()
    import nnforge.quantized  # noqa: F401  (TVM: the calibration runs the float model on it)
    imports["nnforge (TVM)"] = time.perf_counter() - t
    _print_imports(imports)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in ("mlp", "cnn")]
    if bad or not names:
        ap.error(f"--models must be a comma-separated list of mlp, cnn, not {args.models!r}")
    results = []
    with tempfile.TemporaryDirectory(prefix="nnforge-vs-hls4ml-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # nnforge's g++ build cache: start empty
        for name in names:
            results.append(compare(name, work, args.repeat))
            _print(results[-1])
    if args.json:
        args.json.write_text(json.dumps({"imports_s": imports, "models": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
