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


@pytest.mark.parametrize("name", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])  # cnn: 6-8 s on 2 busy cores
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
    ours_w = sorted((n.attrs.weight if n.op == "conv2d" else n.attrs.weight.T for n in nodes),
                    key=lambda a: a.size)
    assert len(ours_w) == len(weights) == 4
    for mine, theirs in zip(ours_w, weights):
        assert mine.shape == theirs.shape and np.array_equal(mine, theirs.astype(np.int64))
    ours_b = sorted((n.attrs.bias for n in nodes), key=lambda a: a.size)
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
        assert a.op == b.op and all(np.array_equal(np.asarray(a.attrs.to_dict()[k]), np.asarray(b.attrs.to_dict()[k]))
                                    for k in ("weight", "bias", "multiplier", "shift") if k in b.attrs.to_dict())
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


# --- coverage: 16-bit QDQ (opset 21), ConvInteger/MatMulInteger, an asymmetric hidden zero point ---------------
@pytest.fixture(scope="session")
def more_models(tmp_path_factory):
    from interop_assets import integer_ops_model, mlp_without_relu

    d = tmp_path_factory.mktemp("more_quantized")
    return {"u16": ort_quantized(d / "mlp_u16.onnx", "mlp", activations="QUInt16", weights="QInt16"),
            "integer": integer_ops_model(d / "integer_ops.onnx"),
            "asymmetric": ort_quantized(d / "mlp_asym.onnx", "mlp", source=mlp_without_relu(d / "mlp_norelu.onnx")),
            "data": {n: digits_npz(d, n) for n in ("mlp", "cnn")}}


def _against_onnxruntime(path, name: str):
    """(QuantizedModel, prequant_compare.compare's figures, test x) with nnforge's top-1 from the numpy reference."""
    from nnforge.compiler.interop.prequant_compare import compare
    from nnforge.compiler.reference import run

    from interop_assets import digits_arrays

    _, x, y = digits_arrays(name)
    qmodel = nnforge.quantize(nnforge.load(path), None)
    codes = qmodel.graph.quantize_inputs([x])
    pred = run(qmodel.graph, codes)[qmodel.graph.outputs[0]].reshape(len(x), -1).argmax(1)
    return qmodel, compare(qmodel, [x], y, pred) | {"accuracy": float(np.mean(pred == y))}, x


def test_int16_qdq_from_quantize_static(more_models):
    """uint16 activations and int16 weights (opset 21): carried exactly; the differences from
    onnxruntime are nnforge's 15-bit multiplier, which moves a 16-bit code by up to 2 steps."""
    from nnforge.compiler.interop.prequant_compare import run_original

    path = more_models["u16"]
    proto = onnx.load(str(path))
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 21
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    qmodel, doc, x = _against_onnxruntime(path, "mlp")
    dense = [n for n in qmodel.graph.nodes if n.op == "dense"]
    theirs = sorted((v for v in inits.values() if v.dtype == np.int16 and v.ndim == 2), key=lambda a: a.size)
    assert [n.attrs.weight_bits for n in dense] == [16, 16, 16]
    for mine, w in zip(sorted((n.attrs.weight.T for n in dense), key=lambda a: a.size), theirs):
        assert np.array_equal(mine, w.astype(np.int64))
    by = {t["tensor"]: t for t in doc["tensors"]}
    assert [by[k]["type"] for k in ("input", "/net/net.0/Gemm", "/net/net.3/Gemm", "logits")] == ["u16", "u16", "u16", "s16"]
    assert by["input"]["codes_identical"] == 1.0 and doc["top1_agreement"] >= 0.99
    assert abs(doc["accuracy"] - doc["runtime_accuracy"]) <= 0.005  # the bar
    first = by["/net/net.0/Gemm"]
    assert first["max_step_difference"] <= 2 and "15-bit multiplier" in doc["note"]
    # the attribution, exactly: onnxruntime's codes are the exact requantization of the same
    # accumulators; nnforge's differ from that by its multiplier, as much as from onnxruntime's
    g = qmodel.graph
    node = dense[0]
    codes = g.quantize_inputs([x])[0].astype(np.int64)
    acc = codes @ node.attrs.weight + node.attrs.bias
    ratio = g.tensors["input"].scale * node.attrs.weight_scale / g.tensors[node.output].scale
    exact = np.clip(np.floor(acc * ratio + 0.5), 0, 65535)
    ours = _reference_codes(qmodel, x)[node.output]
    ort = run_original(qmodel.float_model.prequantized, [x], ["input"], [first["source"]])[first["source"]]
    assert np.mean(ort == exact) > 0.999  # float32 on 16-bit codes: a step's 2^-8 at most
    assert np.mean(ours == exact) == pytest.approx(first["codes_identical"], abs=0.005) and np.mean(ours == exact) < 0.97


def _reference_codes(qmodel, x):
    from nnforge.compiler.reference import run

    return run(qmodel.graph, qmodel.graph.quantize_inputs([x]))


def test_conv_integer_and_matmul_integer(more_models):
    """ConvInteger/MatMulInteger -> Cast -> Mul(c): weights are the int8 codes at scale c / s_x, and
    the runtime's codes differ only within the float bias's rounding (half an accumulator step) of half-way."""
    path = more_models["integer"]
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    qmodel, doc, _ = _against_onnxruntime(path, "cnn")
    assert doc["format"] == "qoperator" and "ORT_DISABLE_ALL" in doc["runtime"]
    conv, fc = [n for n in qmodel.graph.nodes if n.op in ("conv2d", "dense")]
    assert np.array_equal(conv.attrs.weight, inits["w1"]) and np.array_equal(fc.attrs.weight, inits["w2"])
    sx = float(inits["sx"])
    assert np.array_equal(conv.attrs.weight_scale, (inits["c1"].reshape(-1).astype(np.float64) / sx).astype(np.float32))
    s1 = qmodel.graph.tensors[conv.output].scale
    assert s1 == float(inits["s1"]) and str(qmodel.graph.tensors[conv.output].qtype) == "u8"
    assert np.array_equal(fc.attrs.weight_scale, (inits["c2"].astype(np.float64) / s1).astype(np.float32))
    by = {t["tensor"]: t for t in doc["tensors"]}
    assert by["input"]["codes_identical"] == 1.0 and doc["top1_agreement"] >= 0.99
    bound = 0.5 * float(np.max(inits["c1"])) / s1 + by["conv1"]["multiplier_steps"]  # bias rounding + multiplier
    assert by["conv1"]["codes_identical"] >= 0.99 and by["conv1"]["max_step_difference"] == 1
    assert by["conv1"]["boundary_distance"] <= bound  # every differing code's distance from half-way, in steps
    assert "float bias is rounded" in " ".join(doc["import_notes"])


def test_asymmetric_hidden_zero_point_is_recentred_and_measured(more_models):
    """A uint8 hidden tensor with zero point 105: signed int8 at the smallest scale that covers the
    same real range (docs/interop.md), named in a note with its factor; the cost is measured."""
    path = more_models["asymmetric"]
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    name = "/net/net.3/Gemm_output_0"
    zp, s = int(inits[f"{name}_zero_point"]), float(inits[f"{name}_scale"])
    assert zp not in (0, 128)  # asymmetric: neither exact case
    expected = max(zp * s / 128, (255 - zp) * s / 127)  # covers [(0 - zp) s, (255 - zp) s] with int8 codes
    qmodel, doc, _ = _against_onnxruntime(path, "mlp")
    t = qmodel.graph.tensors["/net/net.3/Gemm"]
    assert str(t.qtype) == "s8" and t.scale == pytest.approx(expected, rel=1e-12)
    assert f"tensor {name!r}: uint8 zero point {zp} is asymmetric" in " ".join(doc["import_notes"])
    assert f"{expected / s:.4f} x the imported" in " ".join(doc["import_notes"])
    by = {x["tensor"]: x for x in doc["tensors"]}
    assert by["/net/net.3/Gemm"]["exact"] is False and by["/net/net.3/Gemm"]["max_step_difference"] <= 1
    assert by["/net/net.0/Gemm"]["codes_identical"] > 0.99  # before it, the usual float32 differences only
    assert doc["top1_agreement"] >= 0.99 and f"re-centred asymmetric tensors ({name}" in doc["note"]
    assert abs(doc["accuracy"] - doc["runtime_accuracy"]) <= 0.005
