"""Float execution of the bundled examples and the model zoo against onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.cli import main
from nnforge.compiler.lower import executor
from conftest import EXAMPLES, ZOO, ort_run

ZOO_MODELS = ["dwsep", "residual", "fire", "factorised", "mlp_bn"]


def _input_for(model: nnforge.Model, rng, batch: int = 5) -> np.ndarray:
    shape = [batch if isinstance(d, str) else d for d in model.inputs[0].shape]
    return rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("name", ZOO_MODELS + [f"{n}_train" for n in ZOO_MODELS])
def test_zoo_matches_onnxruntime(name, rng):
    model = nnforge.load(ZOO / f"{name}.onnx")
    x = _input_for(model, rng)
    # A training-mode export runs batch statistics in onnxruntime; its oracle is the eval
    # export of the same weights.
    oracle = ZOO / f"{name.removesuffix('_train')}.onnx"
    expected = ort_run(oracle, {"input": x})[0]
    # float path: BN folding and summation order differ from onnxruntime in the last bits
    np.testing.assert_allclose(model.run(x)["logits"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_training_export_cleans_up_to_the_eval_export(name, rng):
    train = nnforge.load(ZOO / f"{name}_train.onnx")
    ops = {b.value.op.name for blk in train.relax["main"].body.blocks for b in blk.bindings
           if hasattr(b.value, "op") and hasattr(b.value.op, "name")}
    assert not ops & {"relax.nn.dropout", "relax.nn.batch_norm"}
    evaluated = nnforge.load(ZOO / f"{name}.onnx")
    x = _input_for(train, rng)
    a, b = train.run(x)["logits"], evaluated.run(x)["logits"]
    # torch folded BN in float32 for the eval export, nnforge folds in float64: the last bit may differ
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert train.summary().total_macs == evaluated.summary().total_macs


@pytest.mark.parametrize("name,reshape", [("digits_cnn", False), ("digits_mlp", True)])
def test_examples_accuracy_matches_onnxruntime(name, reshape):
    data = np.load(EXAMPLES / "digits_test.npz")
    x = data["x"].reshape(len(data["x"]), -1) if reshape else data["x"]
    model = nnforge.load(EXAMPLES / f"{name}.onnx")
    ours = model.predict([x], batch_size=128)["logits"]
    ref = ort_run(EXAMPLES / f"{name}.onnx", {"input": x})[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert np.array_equal(ours.argmax(1), ref.argmax(1))
    assert (ours.argmax(1) == data["y"]).mean() > 0.95


def test_fixed_batch_via_input_shape(rng):
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx", {"input": (2, 1, 8, 8)})
    assert model.inputs[0].shape == (2, 1, 8, 8)
    x = rng.normal(size=(6, 1, 8, 8)).astype("float32")
    ours = model.predict([x])["logits"]
    np.testing.assert_allclose(ours, ort_run(EXAMPLES / "digits_cnn.onnx", {"input": x})[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(nnforge.InputError, match="multiple of 2"):
        model.predict([x[:5]])


def test_build_cache_skips_recompilation(tmp_path, monkeypatch, rng):
    x = _input_for(nnforge.load(EXAMPLES / "digits_mlp.onnx"), rng)
    first = nnforge.load(EXAMPLES / "digits_mlp.onnx").run(x, cache_dir=tmp_path)["logits"]
    assert len(list(tmp_path.glob("*.so"))) == 1

    def no_compile(*_a, **_k):
        raise AssertionError("an unchanged model must not be recompiled")

    monkeypatch.setattr(executor.tvm, "compile", no_compile)
    again = nnforge.load(EXAMPLES / "digits_mlp.onnx").run(x, cache_dir=tmp_path)["logits"]
    assert np.array_equal(first, again)
    # a different input shape is a different build
    with pytest.raises(AssertionError, match="recompiled"):
        nnforge.load(EXAMPLES / "digits_mlp.onnx", {"input": (3, 64)}).run(x[:3], cache_dir=tmp_path)


def test_cli_run_and_inspect_json(tmp_path):
    out = tmp_path / "y.npz"
    r = CliRunner().invoke(main, ["run", str(EXAMPLES / "digits_cnn.onnx"), "-i", str(EXAMPLES / "digits_test.npz"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "top-1 accuracy" in r.output
    logits = np.load(out)["logits"]
    ref = ort_run(EXAMPLES / "digits_cnn.onnx", {"input": np.load(EXAMPLES / "digits_test.npz")["x"]})[0]
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)

    r = CliRunner().invoke(main, ["inspect", str(EXAMPLES / "digits_cnn.onnx"), "--json"])
    doc = json.loads(r.output)
    # hand count of examples/train_digits.py's CNN: convs 1->8, 8->16, 16->16 (3x3), fc 64->10
    assert doc["total_params"] == (8 * 9 + 8) + (16 * 8 * 9 + 16) + (16 * 16 * 9 + 16) + (64 * 10 + 10)
    assert doc["total_macs"] == 8 * 64 * 9 + 16 * 64 * 72 + 16 * 16 * 144 + 640
    assert [layer["op"] for layer in doc["layers"]].count("conv2d") == 3
