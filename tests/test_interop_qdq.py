"""Pre-quantized ONNX models through nnforge.load and the CLI: onnxruntime's QDQ and QOperator forms.

The oracle is onnxruntime itself (its quantizer wrote the models, its runtime runs them with
ORT_DISABLE_ALL) and the integer initializers the models carry (compared code for code)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import nnforge
from nnforge.cli import main

from interop_assets import digits_npz, ort_quantized

pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="session")
def ort_models(tmp_path_factory):
    """{(name, fmt): path} for the digits MLP and CNN, QDQ and QOperator, plus the data files."""
    d = tmp_path_factory.mktemp("ort_quantized")
    out = {(n, f): ort_quantized(d / f"{n}_{f}.onnx", n, f) for n in ("mlp", "cnn") for f in ("QDQ", "QOperator")}
    data = {n: digits_npz(d, n) for n in ("mlp", "cnn")}
    return out, data


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_simulate_json_matches_onnxruntime(ort_models, name, fmt):
    models, data = ort_models
    res = CliRunner().invoke(main, ["simulate", str(models[name, fmt]), "--data", str(data[name][1]), "--json",
                                    "--check"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    pre = doc["prequantized"]
    assert pre["format"] == fmt.lower() and "ORT_DISABLE_ALL" in pre["runtime"]
    assert doc["reference_mismatches"] == 0
    assert abs(doc["quant_accuracy"] - pre["runtime_accuracy"]) <= 0.005  # the bar
    assert pre["top1_agreement"] >= 0.99
    by_tensor = {t["tensor"]: t for t in pre["tensors"]}
    assert by_tensor["input"]["codes_identical"] == 1.0  # float32-exact pixels and scale: same input codes
    exact = [t for t in pre["tensors"] if t["exact"]]
    assert len(exact) >= 3 and all(t["codes_identical"] > 0.97 and t["max_step_difference"] <= 1 for t in exact)
    assert doc["calibration"].startswith("none")
    if pre["top1_agreement"] < 1 or any(t["codes_identical"] < 1 for t in exact):
        assert "codes first differ at" in pre["note"] and "half" in pre["note"]


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_carried_weights_scales_and_biases_are_kept_exactly(ort_models, fmt):
    """Every weight code, weight scale and int32 bias code of the model is in the QGraph; activation
    scales are the model's float32 scales bit for bit (where the zero point maps exactly)."""
    models, _ = ort_models
    path = models["cnn", fmt]
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    qmodel = nnforge.quantize(nnforge.load(path), None)
    weights = sorted((v for k, v in inits.items() if v.dtype == np.int8 and v.ndim >= 2), key=lambda a: a.size)
    biases = sorted((v for k, v in inits.items() if v.dtype == np.int32 and "zero_point" not in k), key=lambda a: a.size)
    nodes = [n for n in qmodel.graph.nodes if n.op in ("conv2d", "dense")]
    ours_w = sorted((n.attrs["weight"] if n.op == "conv2d" else n.attrs["weight"].T for n in nodes),
                    key=lambda a: a.size)
    assert len(ours_w) == len(weights) == 4
    for mine, theirs in zip(ours_w, weights):
        assert mine.shape == theirs.shape and np.array_equal(mine, theirs.astype(np.int64))
    ours_b = sorted((n.attrs["bias"] for n in nodes), key=lambda a: a.size)
    for mine, theirs in zip(ours_b, biases):
        assert np.array_equal(mine, theirs.astype(np.int64))
    pre = qmodel.float_model.prequantized
    for name, t in pre.activations.items():
        if t.exact:
            assert t.scale == t.source_scale == float(np.float32(t.source_scale))


def test_quantize_takes_no_calib(ort_models, tmp_path):
    models, data = ort_models
    out = tmp_path / "q"
    res = CliRunner().invoke(main, ["quantize", str(models["mlp", "QDQ"]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "own quantization" in res.output
    again = nnforge.load_quantized(out)
    direct = nnforge.quantize(nnforge.load(models["mlp", "QDQ"]), None)
    for a, b in zip(again.graph.nodes, direct.graph.nodes):
        assert a.op == b.op and all(np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k]))
                                    for k in ("weight", "bias", "multiplier", "shift") if k in b.attrs)
    from conftest import EXAMPLES

    float_model = CliRunner().invoke(main, ["quantize", str(EXAMPLES / "digits_mlp.onnx"), "-o", str(tmp_path / "r")])
    assert float_model.exit_code == 2 and "--calib must be given" in float_model.output


@pytest.mark.slow
def test_compile_hls_of_an_imported_qdq_model_verifies_bit_exact(ort_models, tmp_path):
    """compile --backend hls takes the QDQ model without --calib; the generated C, under g++, gives
    every layer's codes of the numpy reference on all 450 test images (nnforge verify)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed for the HLS C simulation")
    models, data = ort_models
    prj = tmp_path / "prj"
    res = CliRunner().invoke(main, ["compile", str(models["mlp", "QDQ"]), "--backend", "hls", "-o", str(prj),
                                    "--data", str(data["mlp"][1])])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["verify", str(prj), "--data", str(data["mlp"][1]), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert doc["passed"] and doc["backend"] == "hls" and doc["samples"] == 450
    assert doc["mismatches"] == 0 and doc["golden_mismatches"] == 0 and doc["output_mismatches"] == 0
    assert doc["compared_tensors"] == 3 and doc["not_compared"] == []  # every dense layer's codes
    assert doc["csim_accuracy"] == doc["quant_accuracy"] == pytest.approx(0.9778, abs=5e-5)  # = onnxruntime's (above)


def test_inspect_shows_carried_types_and_scales(ort_models):
    models, _ = ort_models
    res = CliRunner().invoke(main, ["inspect", str(models["cnn", "QDQ"]), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    rows = {r["name"]: r for r in doc["prequantized"]["layers"]}
    proto = onnx.load(str(models["cnn", "QDQ"]))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert rows["input"]["type"] == "u8" and rows["input"]["scale"] == float(inits["input_scale"])
    convs = [r for r in rows.values() if r["op"] == "conv2d"]
    assert len(convs) == 3 and all(r["weight_type"] == "s8" and r["type"] == "u8" for r in convs)
    assert rows["logits"]["exact"] is False  # uint8 zero point 123: re-centred
    text = CliRunner().invoke(main, ["inspect", str(models["cnn", "QDQ"])])
    assert "carried quantization (qdq)" in text.output and "uint8 zp 123" in text.output
