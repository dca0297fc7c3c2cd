"""Every example and zoo model through the systolic accelerator's RTL: compile, then verify.

    .venv/bin/python bench/systolic_models.py [--samples 200] [--models digits_cnn,fire] [--configs w8a8,w4a8,share4]

For each model and configuration (w8a8, w4a8, w8a8 with ``--share 4``) on the default 8x8 array:
``compile_model(..., "systolic")``, then ``verify`` on ``--samples`` inputs with every layer traced
through the RTL (cocotb + Verilator) and compared with the numpy reference.  Printed per run:
mismatching codes over all layers, top-1 through the RTL and through the TVM integer build
(``simulate``'s numbers; they must be equal), whether predicted cycles equal measured cycles on
every layer, cycles per inference, MACs per cycle and array utilization, and the wall time.

Data: the digits models use the bundled test set (450 labelled images).  The zoo models are
untrained, so their inputs are seeded normal samples and their labels the float model's own
top-1: "top-1" is then the agreement with float, for the RTL and the TVM build alike.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import nnforge

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"digits_cnn": ROOT / "examples/digits_cnn.onnx", "digits_mlp": ROOT / "examples/digits_mlp.onnx",
          **{m: ROOT / f"tests/models/{m}.onnx" for m in ("dwsep", "residual", "fire", "factorised", "mlp_bn")}}
CONFIGS = {"w8a8": ("w8a8", None), "w4a8": ("w4a8", None), "share4": ("w8a8", {"share_bits": 4})}


def data(name: str, model, samples: int):
    if name.startswith("digits"):
        calib = np.load(ROOT / "examples/digits_calib.npz")["x"]
        test = np.load(ROOT / "examples/digits_test.npz")
        x, y = test["x"][:samples], test["y"][:samples]
        if name == "digits_mlp":
            calib, x = calib.reshape(len(calib), -1), x.reshape(len(x), -1)
        return calib, x, y
    shape = [d if isinstance(d, int) else 1 for d in model.inputs[0].shape][1:]
    rng = np.random.default_rng(0)
    calib = rng.standard_normal([128] + shape).astype(np.float32)
    x = rng.standard_normal([samples] + shape).astype(np.float32)
    y = model.predict([x])[model.output_names[0]].reshape(samples, -1).argmax(1)
    return calib, x, y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    from nnforge.hw_sim import rtl

    missing = rtl.simulator_missing()
    if missing:
        print(f"RTL simulation unavailable: {missing}")
        return 1
    rows = []
    print(f"{'model':<11} {'config':<7} {'samples':>7} {'mismatch':>8} {'top1 RTL':>8} {'top1 TVM':>8} "
          f"{'cyc==':>5} {'cycles/inf':>10} {'MAC/cyc':>7} {'util':>6} {'wall s':>7}")
    for name in args.models.split(","):
        model = nnforge.load(MODELS[name])
        calib, x, y = data(name, model, args.samples)
        for cfg in args.configs.split(","):
            bits, compress = CONFIGS[cfg]
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                q = nnforge.quantize(model, [calib], bits, compress=compress)
            with tempfile.TemporaryDirectory() as tmp:
                prj = nnforge.compile_model(q, "systolic", Path(tmp) / "prj", golden_inputs=[x])
                rep = nnforge.verify(prj, [x], y)
            wall = time.perf_counter() - t0
            layers = rep.layers
            exact = all(l.predicted_cycles == l.measured_cycles for l in layers if l.measured_cycles is not None)
            cycles = sum(l.measured_cycles or 0 for l in layers)
            macs = sum(l.macs or 0 for l in layers)
            opts = prj.report["options"]
            util = macs / (cycles * opts["rows"] * opts["cols"]) if cycles else 0.0
            rows.append((name, cfg, rep, exact, cycles, macs))
            print(f"{name:<11} {cfg:<7} {rep.samples:>7} {rep.mismatches:>8} {rep.accuracy:>8.4f} "
                  f"{rep.quant_accuracy if rep.quant_accuracy is not None else float('nan'):>8.4f} "
                  f"{'yes' if exact else 'NO':>5} {cycles:>10,} {macs / cycles if cycles else 0:>7.2f} "
                  f"{util:>6.1%} {wall:>7.1f}", flush=True)
    bad = [r for r in rows if r[2].mismatches or not r[3] or r[2].accuracy != r[2].quant_accuracy]
    print(f"\n{len(rows)} runs; {len(bad)} with mismatches, inexact cycles or top-1 RTL != TVM")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
