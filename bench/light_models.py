"""The nine "light" models of the onnx wheel through nnforge, side by side with onnxruntime.

For each model: load + cleanup time, build time, one batch-1 run through nnforge's TVM build
and through onnxruntime on the same random input, the maximum absolute difference of the
outputs, and the inspect totals.  Measurement only; tests/test_light_models.py asserts the
agreement.

    python bench/light_models.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import nnforge

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    args = ap.parse_args()
    rows = []
    cache = tempfile.mkdtemp(prefix="nnforge-light-")
    print(f"{'model':28s} {'load s':>7s} {'build s':>8s} {'run s':>7s} {'ort s':>7s} {'max|diff|':>10s} {'params':>12s} {'MACs':>15s}")
    for path in sorted(LIGHT.glob("light_*.onnx")):
        t0 = time.perf_counter()
        model = nnforge.load(path)
        t1 = time.perf_counter()
        model.compile(cache_dir=cache)
        t2 = time.perf_counter()
        spec = model.inputs[0]
        x = np.random.default_rng(0).random([1 if isinstance(d, str) else d for d in spec.shape]).astype("float32")
        ours = list(model.run(x, cache_dir=cache).values())[0]
        t3 = time.perf_counter()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        t4 = time.perf_counter()
        ref = sess.run(None, {spec.name: x})[0]
        t5 = time.perf_counter()
        s = model.summary()
        row = dict(model=path.stem, load_s=t1 - t0, build_s=t2 - t1, run_s=t3 - t2, ort_s=t5 - t4,
                   max_abs_diff=float(np.abs(ours - ref).max()), params=s.total_params, macs=s.total_macs)
        rows.append(row)
        print(f"{row['model']:28s} {row['load_s']:7.2f} {row['build_s']:8.2f} {row['run_s']:7.3f} {row['ort_s']:7.3f} "
              f"{row['max_abs_diff']:10.2e} {row['params']:12,d} {row['macs']:15,d}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
