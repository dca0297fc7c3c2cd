"""The nine full-size "light" models shipped in the onnx wheel: import, clean up, run, and
match onnxruntime.  Their weights are constants made by ConstantOfShape, so this checks
scale and op coverage, not accuracy."""

from __future__ import annotations

import os

import numpy as np
import pytest

import nnforge
from conftest import LIGHT, ort_run

LIGHT_MODELS = sorted(p.stem for p in LIGHT.glob("light_*.onnx"))


def test_all_nine_light_models_are_present():
    assert len(LIGHT_MODELS) == 9


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name, rng):
    model = nnforge.load(LIGHT / f"{name}.onnx")
    spec = model.inputs[0]
    x = rng.random(size=[1 if isinstance(d, str) else d for d in spec.shape]).astype("float32")
    ours = model.run(x)
    ref = ort_run(LIGHT / f"{name}.onnx", {spec.name: x})
    for got, want in zip(ours.values(), ref):
        # float path: different conv algorithms; outputs are softmax probabilities
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    summary = model.summary()
    assert summary.total_params > 1e6 and summary.total_macs > 1e8


@pytest.mark.slow
def test_resnet50_inspect_totals():
    s = nnforge.load(LIGHT / "light_resnet50.onnx").summary()
    # Published ResNet-50 figures (He et al. 2016; torchvision): 25.6 M params, 4.1 G MACs.
    assert abs(s.total_params - 25.6e6) / 25.6e6 < 0.02
    assert abs(s.total_macs - 4.1e9) / 4.1e9 < 0.02
    assert sum(layer.op == "conv2d" for layer in s.layers) == 53
    assert sum(layer.op == "dense" for layer in s.layers) == 1


@pytest.mark.slow
# v2 (seven average pools that exclude their padding) took 241 s of the suite's CPU; its per-position
# pools are covered by tests/test_lrn_avgpool.py and test_bitexact_lrn_avgpool.py on small graphs, and
# its `simulate --check` figure is in docs/numerics.md.  Run it with NNFORGE_LIGHT_V2=1.
@pytest.mark.parametrize("name", ["light_inception_v1"] + (["light_inception_v2"] if os.environ.get("NNFORGE_LIGHT_V2")
                                                           else []))
def test_inception_simulates_bit_exact(name, rng):
    """v1's two LRNs (and v2's seven average pools that exclude their padding) in integer form: the TVM
    integer build equals the numpy reference on every layer of 2 samples (fixed batch 1, one at a time).
    Two TVM builds of a full-size model are most of its time; ``nnforge simulate --check`` on 4 samples,
    the issue's measure, is recorded in docs/numerics.md."""
    from nnforge.simulate import simulate

    model = nnforge.load(LIGHT / f"{name}.onnx")
    x = rng.standard_normal((2, 3, 224, 224)).astype("float32")
    qmodel, report = simulate(model, [x], None, "w8a8", calib=[x], check=True)
    ops = [n.op for n in qmodel.graph.nodes]
    if name == "light_inception_v1":
        assert ops.count("lrn") == 2
    else:
        assert sum(n.op == "avg_pool2d" and np.ndim(n.attrs.multiplier) == 2 for n in qmodel.graph.nodes) == 7
    assert report.samples == 2 and report.reference_mismatches == 0
