"""nnforge explore on models it was never tuned on: the zoo's MLP (Gemm + BatchNorm1d) and its
depthwise-separable CNN, with random inputs and no labels (so the quality is top-1 agreement with
the float model, the documented fallback).

What would catch a regression: a front exists and obeys the constraint, the chosen point is
cheaper than uncompressed w8a8, and the exported best.toml, simulated by the TVM integer build
(an executor independent of the numpy reference the trials ran on), gives exactly the trial's
agreement, on the searched samples and on the held-out ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnforge
from nnforge.compiler.compress.compression_report import compression_report
from nnforge.compiler.point_config import read_point_config
from nnforge.explore import results
from nnforge.simulate import simulate

pytestmark = [pytest.mark.slow,  # a study plus two TVM builds per model: ~15 s CPU each
              pytest.mark.filterwarnings("ignore:.*codebook:UserWarning")]  # compression fallbacks, recorded

ZOO = Path(__file__).resolve().parent / "models"
MAX_DROP = 0.03
GRID = {"weight_bits": (4, 3), "act_bits": (4,), "prune": (0.5, 0.8), "share": (3,)}


def _check(model, calib, data, tmp_path, holdout: float):
    out = tmp_path / "out"
    result = nnforge.explore(model, [calib], [data], None, max_drop=MAX_DROP, objectives=["bytes", "macs-bits"],
                             trials=14, seed=0, out_dir=out, sensitivity=GRID, uniform=("w8a8",), holdout=holdout)
    assert result.quality == "agreement" and result.float_quality == 1.0
    assert result.pareto and result.best is not None
    for r in result.trials:
        assert r.feasible == (r.values["drop"] <= MAX_DROP)
    for a in result.pareto:
        assert a.feasible and not any(results._dominates(b, a, "agreement", result.costs) for b in result.trials
                                      if b.feasible)
    best = result.best
    assert best.values["drop"] <= MAX_DROP and best.number in [r.number for r in result.pareto]
    assert best.values["bytes"] < result.uniform[0]["bytes"]  # the search compressed beyond plain w8a8
    # best.toml as a user reads it, through the TVM build: the trial's agreement exactly
    quant, comp = read_point_config(out / "best.toml")
    held = result.holdout
    keep = np.setdiff1d(np.arange(len(data)), held["indices"]) if held else np.arange(len(data))
    qmodel, report = simulate(model, [data[keep]], None, quant, [calib], compress=comp, sqnr_samples=0)
    assert report.agreement == best.values["agreement"]
    assert compression_report(qmodel, huffman=True).total_bytes == best.values["bytes"]
    if held:
        _, report = simulate(model, [data[held["indices"]]], None, quant, [calib], compress=comp, sqnr_samples=0)
        assert report.agreement == held["trials"][best.number]
        assert len(held["indices"]) == round(holdout * len(data)) and len(set(held["indices"])) == len(held["indices"])
    return result


def test_unseen_mlp(tmp_path):
    model = nnforge.load(ZOO / "mlp_bn.onnx")
    rng = np.random.default_rng(7)
    calib, data = (rng.standard_normal((n, 64)).astype(np.float32) for n in (64, 160))
    _check(model, calib, data, tmp_path, holdout=0.25)


def test_unseen_cnn(tmp_path):
    model = nnforge.load(ZOO / "dwsep.onnx")
    rng = np.random.default_rng(8)
    calib, data = (rng.standard_normal((n, 3, 16, 16)).astype(np.float32) for n in (48, 128))
    _check(model, calib, data, tmp_path, holdout=0.0)
