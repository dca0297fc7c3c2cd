"""``simulate`` traces only the first ``sqnr_samples`` samples; accuracy still covers all.

Oracles: onnxruntime (float predictions), ``QuantizedModel.predict`` (the integer ``main``,
no tracing) and ``simulate`` itself run with every sample traced on the subset alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from conftest import EXAMPLES, ort_run

import nnforge
from nnforge.quantized import calibrate
from nnforge.simulate import simulate

TEST = np.load(EXAMPLES / "digits_test.npz")
CALIB = np.load(EXAMPLES / "digits_calib.npz")


def test_sqnr_subset_and_full_accuracy():
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    x, y = TEST["x"].astype(np.float32), TEST["y"]
    stats = calibrate(model, [CALIB["x"].astype(np.float32)])
    k = 200  # not a multiple of the batch size: the subset ends inside a batch
    q, rep = simulate(model, [x], y, "w8a8", stats=stats, batch_size=64, sqnr_samples=k)
    assert rep.samples == len(x) and rep.sqnr_samples == k

    # accuracy and agreement over every sample, from untraced runs
    f_pred = ort_run(onnx.load(EXAMPLES / "digits_cnn.onnx"), {"input": x})[0].argmax(1)
    q_pred = next(iter(q.predict([x]).values())).argmax(1)
    assert rep.float_accuracy == float(np.mean(f_pred == y))
    assert rep.quant_accuracy == float(np.mean(q_pred == y))
    assert rep.agreement == float(np.mean(f_pred == q_pred))

    # the per-layer SQNR is that of the first k samples, traced in full
    q2, sub = simulate(model, [x[:k]], y[:k], batch_size=64, sqnr_samples=None, qmodel=q)  # same build
    assert q2 is q
    assert sub.sqnr_samples == k
    assert [(l.name, l.sqnr_db) for l in rep.layers] == [(l.name, l.sqnr_db) for l in sub.layers]


def test_check_traces_every_sample():
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    x = TEST["x"].astype(np.float32)
    _, rep = simulate(model, [x], None, "w4a8", calib=[CALIB["x"].astype(np.float32)], check=True, sqnr_samples=64)
    assert rep.sqnr_samples == len(x) and rep.reference_mismatches == 0
