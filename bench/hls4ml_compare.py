"""nnforge's hls backend against hls4ml, side by side in one run, on the same ONNX model.

Both tools start from examples/digits_mlp.onnx (64-128-64-10 MLP, ReLU), which hls4ml's ONNX
converter takes after the usual QONNX clean-up (cleanup, channels-last, Gemm -> MatMul).

* **Build:** hls4ml: clean-up + ``convert_from_onnx_model`` + ``compile()`` (writes the
  project and builds it with g++).  nnforge: ``quantize`` (calibration included) +
  ``compile_model`` + ``nnforge.backends.hls.simulation.build`` (g++).  Both build into fresh directories; nnforge's
  build cache points at an empty temporary folder, so nothing is reused.
* **C-sim throughput:** ``hls_model.predict(x)`` against ``Project.predict(x)`` on the 450
  digits test images, best of ``--repeat`` runs after one warm-up.

Precisions differ and are reported: hls4ml uses its default ``ap_fixed<16,6>`` with no
calibration; nnforge uses w8a8 (8-bit weights and activations, calibrated).  Targets from
issue 5: build time <= 0.5x hls4ml's, throughput >= 10x.  Measurement only, no assertions.

    pip install -e '.[bench]'
    python bench/hls4ml_compare.py [--repeat 3] [--json out.json]
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
MODEL = EXAMPLES / "digits_mlp.onnx"


def _best(f, repeat: int) -> tuple[float, object]:
    f()  # warm-up: first-call costs (ctypes loading, page faults) are not throughput
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def run_hls4ml(work: Path, x: np.ndarray, repeat: int) -> dict:
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # hls4ml prints its topology
        warnings.simplefilter("ignore", UserWarning)  # qonnx: "GemmToMatMul only supports Gemm v9" (v17 works)
        m = cleanup_model(ModelWrapper(str(MODEL)))
        m = m.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul())
        m = cleanup_model(m)
        cfg = hls4ml.utils.config_from_onnx_model(m, granularity="model", backend="Vitis")
        hm = hls4ml.converters.convert_from_onnx_model(m, output_dir=str(work / "hls4ml_prj"), backend="Vitis",
                                                       hls_config=cfg)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        hm.compile()  # write the project + g++
    t2 = time.perf_counter()
    x = np.ascontiguousarray(x, dtype=np.float32)
    secs, y = _best(lambda: hm.predict(x), repeat)
    precision = cfg["Model"]["Precision"]
    return {"version": hls4ml.__version__, "precision": precision.get("default", str(precision)),
            "convert_s": t1 - t0, "write_and_build_s": t2 - t1, "build_total_s": t2 - t0,
            "predict_s": secs, "throughput_per_s": len(x) / secs, "pred": np.asarray(y).reshape(len(x), -1)}


def run_nnforge(work: Path, x: np.ndarray, calib: np.ndarray, repeat: int) -> dict:
    import nnforge
    from nnforge.backends.hls.simulation import build

    t0 = time.perf_counter()
    q = nnforge.quantize(nnforge.load(MODEL), [calib], "w8a8")
    t1 = time.perf_counter()
    project = nnforge.compile_model(q, "hls", work / "nnforge_prj")
    t2 = time.perf_counter()
    build(project.path)  # g++, what the first predict would do
    t3 = time.perf_counter()
    secs, y = _best(lambda: project.predict(x), repeat)
    return {"version": nnforge.__version__, "precision": "w8a8", "quantize_s": t1 - t0, "compile_s": t2 - t1,
            "gpp_build_s": t3 - t2, "build_total_s": t3 - t0, "predict_s": secs,
            "throughput_per_s": len(x) / secs, "pred": next(iter(y.values())).reshape(len(x), -1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed predict runs (best is kept)")
    ap.add_argument("--json", type=Path, help="write the numbers as JSON")
    args = ap.parse_args()
    try:
        import hls4ml  # noqa: F401
        import qonnx  # noqa: F401
    except ImportError as err:
        print(f"hls4ml_compare: skipped, {err.name} is not installed (pip install -e '.[bench]')")
        return 0

    test = np.load(EXAMPLES / "digits_test.npz")
    x, labels = test["x"].reshape(len(test["x"]), -1).astype(np.float32), test["y"]
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64)
    with tempfile.TemporaryDirectory(prefix="nnforge-vs-hls4ml-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # nnforge's g++ build cache: start empty
        h = run_hls4ml(work, x, args.repeat)
        n = run_nnforge(work, x, calib, args.repeat)
    for r in (h, n):
        r["accuracy"] = float((r.pop("pred").argmax(1) == labels).mean())

    print(f"model: {MODEL.name}, {len(x)} test images; hls4ml {h['version']} ({h['precision']}), "
          f"nnforge {n['version']} (w8a8)")
    print(f"{'':10s} {'build s':>8s}   {'phases':38s} {'predict s':>9s} {'img/s':>10s} {'accuracy':>8s}")
    print(f"{'hls4ml':10s} {h['build_total_s']:8.2f}   convert {h['convert_s']:5.2f} + write&g++ "
          f"{h['write_and_build_s']:5.2f}{'':9s} {h['predict_s']:9.4f} {h['throughput_per_s']:10.0f} {h['accuracy']:8.4f}")
    print(f"{'nnforge':10s} {n['build_total_s']:8.2f}   quantize {n['quantize_s']:4.2f} + compile {n['compile_s']:4.2f}"
          f" + g++ {n['gpp_build_s']:5.2f} {n['predict_s']:9.4f} {n['throughput_per_s']:10.0f} {n['accuracy']:8.4f}")
    build_ratio = n["build_total_s"] / h["build_total_s"]
    speedup = n["throughput_per_s"] / h["throughput_per_s"]
    print(f"build time ratio nnforge/hls4ml: {build_ratio:.2f}x (target <= 0.5x) "
          f"{'met' if build_ratio <= 0.5 else 'NOT met'}")
    print(f"C-sim throughput ratio nnforge/hls4ml: {speedup:.1f}x (target >= 10x) "
          f"{'met' if speedup >= 10 else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"hls4ml": h, "nnforge": n, "build_ratio": build_ratio,
                                         "throughput_ratio": speedup}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
