"""ONNX QDQ interop: export to onnxruntime, import onnxruntime's quantize_static models."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import nnforge
from nnforge.compiler.interop import qdq
from nnforge.compiler.errors import ModelError
from nnforge.compiler.quant.numerics import QType
from nnforge.interop import quantize_with_scales
from nnforge.quantized import quantize

from conftest import EXAMPLES, ZOO, ort_run

ort_quant = pytest.importorskip("onnxruntime.quantization")


@pytest.fixture(scope="module")
def digits():
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"]
    test = np.load(EXAMPLES / "digits_test.npz")
    return calib, test["x"], test["y"]


@pytest.fixture(scope="module")
def cnn():
    return nnforge.load(EXAMPLES / "digits_cnn.onnx")


@pytest.fixture(scope="module")
def qmodel(cnn, digits):
    return quantize(cnn, [digits[0]], "w8a8")


@pytest.fixture(scope="module")
def exported(qmodel, tmp_path_factory):
    path = tmp_path_factory.mktemp("qdq") / "digits_cnn_qdq.onnx"
    proto = qdq.export_qdq(qmodel, path)
    assert path.is_file()
    return proto


class _DigitsReader(ort_quant.CalibrationDataReader):
    """examples/digits_calib.npz in batches of 32."""

    def __init__(self):
        x = np.load(EXAMPLES / "digits_calib.npz")["x"]
        self._batches = iter([{"input": x[i : i + 32]} for i in range(0, len(x), 32)])

    def get_next(self):
        return next(self._batches, None)


def _ort_quantize(tmp_path, activation_type, quant_format=None) -> onnx.ModelProto:
    out = tmp_path / "digits_cnn_ort.onnx"
    ort_quant.quantize_static(
        str(EXAMPLES / "digits_cnn.onnx"), str(out), _DigitsReader(),
        quant_format=quant_format or ort_quant.QuantFormat.QDQ, per_channel=True,
        activation_type=activation_type, weight_type=ort_quant.QuantType.QInt8)
    return onnx.load(str(out))


@pytest.fixture(scope="module", params=["QUInt8", "QInt8"])
def ort_qdq(request, tmp_path_factory):
    return _ort_quantize(tmp_path_factory.mktemp(request.param), getattr(ort_quant.QuantType, request.param))


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if tensor in n.output)


def _attr(node, name, default=None):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def test_export_puts_a_qdq_pair_on_every_quantized_tensor(qmodel, exported):
    onnx.checker.check_model(exported)
    names = qdq.onnx_tensor_names(qmodel.float_model, qmodel.layers)
    inits = _inits(exported)
    expected = {names[k]: t for k, t in qmodel.graph.tensors.items()}
    seen = {}
    for node in exported.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        tensor = node.input[0].removesuffix("_QuantizeLinear_Input")
        scale, zp = inits[node.input[1]], inits[node.input[2]]
        t = expected[tensor]
        assert scale == np.float32(t.scale), tensor
        assert zp == 0 and zp.dtype == np.dtype("int8" if t.qtype.signed else "uint8"), tensor
        seen[tensor] = node
    assert set(seen) == set(expected)
    # consumers read the dequantized tensor under its original name
    assert _producer(exported, "logits").op_type == "DequantizeLinear"


def test_export_weights_and_biases_are_nnforge_codes(qmodel, exported):
    from nnforge.compiler.quant.quantize import quantize_weights

    inits = _inits(exported)
    linear = [n for n in exported.graph.node if n.op_type in ("Conv", "Gemm")]
    qnodes = [n for n in qmodel.graph.nodes if n.op in ("conv2d", "dense")]
    assert [n.op_type for n in linear] == ["Conv", "Conv", "Conv", "Gemm"]
    layers = {l.name: l for l in qmodel.layers}
    for onnx_node, qnode in zip(linear, qnodes):
        w_dq, b_dq = (_producer(exported, i) for i in onnx_node.input[1:3])
        assert w_dq.op_type == b_dq.op_type == "DequantizeLinear"
        codes, w_scale = inits[w_dq.input[0]], inits[w_dq.input[1]]
        assert codes.dtype == np.int8 and not inits[w_dq.input[2]].any()
        layer = layers[qnode.name]
        axis = 0 if qnode.op == "conv2d" else 1
        _, scales = quantize_weights(np.asarray(layer.attrs["weight"], np.float64),
                                      qmodel.config.for_layer(layer.name, layer.op), axis)
        np.testing.assert_array_equal(w_scale, scales.astype(np.float32))
        if qnode.op == "conv2d":
            np.testing.assert_array_equal(codes, qnode.attrs.weight)
            assert _attr(w_dq, "axis") == 0
        else:  # Gemm transB=1: ONNX holds [N, K], nnforge [K, N]; channels on ONNX axis 0
            assert _attr(onnx_node, "transB") == 1
            np.testing.assert_array_equal(codes, qnode.attrs.weight.T)
            assert _attr(w_dq, "axis") == 0
        bias, b_scale = inits[b_dq.input[0]], inits[b_dq.input[1]]
        assert bias.dtype == np.int32
        np.testing.assert_array_equal(bias, qnode.attrs.bias)
        s_x = qmodel.graph.tensors[qnode.inputs[0]].scale
        np.testing.assert_array_equal(b_scale, (s_x * scales).astype(np.float32))


def test_export_agrees_with_onnxruntime(qmodel, exported, digits):
    """Measured on digits (450 test images), docs/interop.md: the reference path (no graph
    optimizations: DequantizeLinear -> float op -> QuantizeLinear) agrees on 100% of argmax,
    84.5% of logit codes, never by more than 1 code; onnxruntime's fused integer kernels
    agree on 99.1% of argmax on an AVX2 CPU without VNNI (u8 x s8 pair sums saturate there,
    see onnxruntime's reduce_range)."""
    x = digits[1]
    ref = qdq.compare_with_onnxruntime(qmodel, exported, [x], optimize=False)["logits"]
    step = qmodel.graph.tensors[qmodel.graph.outputs[0]].scale
    assert ref.samples == len(x)
    assert ref.argmax >= 0.99
    assert ref.codes >= 0.75
    assert ref.max_code_diff <= 2
    assert ref.max_abs_diff <= 2.01 * step
    fused = qdq.compare_with_onnxruntime(qmodel, exported, [x], optimize=True)["logits"]
    assert fused.argmax >= 0.97
    # the exported model keeps the float model's accuracy
    assert np.mean(ort_run(exported, {"input": x})[0].argmax(1) == digits[2]) >= 0.97


def test_export_narrow_and_wide_types(cnn, digits, qmodel):
    layers = qmodel.layers  # named as the quantizer names them
    first = next(l.name for l in layers if l.op == "conv2d")
    last = next(l.name for l in reversed(layers) if l.op == "dense")
    config = {"bits": "w8a8", "layers": {first: {"act_bits": 4, "weight_bits": 4}, last: {"act_bits": 16}}}
    qm = quantize(cnn, [digits[0]], config)
    names = qdq.onnx_tensor_names(cnn, qm.layers)
    s4 = qm.graph.tensors[first].scale
    s16 = qm.graph.tensors[last].scale
    with pytest.warns(UserWarning, match="clamped to 8 bits"):
        narrow = qdq.export_qdq(qm)
    inits = _inits(narrow)
    # a 4-bit activation: uint8 container, clamped to [0, 15] codes by a Clip before the Q
    q4 = next(n for n in narrow.graph.node if n.op_type == "QuantizeLinear"
              and n.input[0].startswith(names[first]))
    clip = _producer(narrow, q4.input[0])
    assert clip.op_type == "Clip"
    assert inits[clip.input[2]] == np.float32(15 * np.float32(s4))
    # 4-bit weights: int8 codes in [-8, 7]
    conv = next(n for n in narrow.graph.node if n.op_type == "Conv")
    w4 = inits[_producer(narrow, conv.input[1]).input[0]]
    assert w4.dtype == np.int8 and w4.min() >= -8 and w4.max() <= 7
    # a 16-bit activation at opset 17: clamped to int8, same real range
    q16 = next(n for n in narrow.graph.node if n.op_type == "QuantizeLinear" and n.input[0].startswith(names[last]))
    assert inits[q16.input[2]].dtype == np.int8
    assert inits[q16.input[1]] == np.float32(s16 * 32767 / 127)
    # opset 21: int16 containers, no warning, onnxruntime agrees
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide = qdq.export_qdq(qm, opset=21)
    inits = _inits(wide)
    q16 = next(n for n in wide.graph.node if n.op_type == "QuantizeLinear" and n.input[0].startswith(names[last]))
    assert inits[q16.input[2]].dtype == np.int16 and inits[q16.input[1]] == np.float32(s16)
    agree = qdq.compare_with_onnxruntime(qm, wide, [digits[1]], optimize=False)["logits"]
    # a code step of the 4-bit layer is worth hundreds of 16-bit logit codes: compare reals
    assert agree.argmax >= 0.99 and agree.max_abs_diff < 1.0


def test_export_auto_widths(cnn, digits):
    """An auto config chose each layer's widths: the export finds them from the codes."""
    qm = quantize(cnn, [digits[0]], "auto")
    exported = qdq.export_qdq(qm)
    agree = qdq.compare_with_onnxruntime(qm, exported, [digits[1]], optimize=False)["logits"]
    assert agree.argmax >= 0.99 and agree.max_code_diff <= 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp_bn", "fire", "residual"])
def test_export_zoo(name, rng):
    """A BatchNorm folded into a Gemm (written as one canonical Gemm), Concat, residual Add."""
    model = nnforge.load(ZOO / f"{name}.onnx")
    x = rng.standard_normal((64,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    qm = quantize(model, [x[:32]], "w8a8")
    exported = qdq.export_qdq(qm)
    assert "BatchNormalization" not in {n.op_type for n in exported.graph.node}
    agree = qdq.compare_with_onnxruntime(qm, exported, [x[32:]], optimize=False)["logits"]
    assert agree.argmax >= 0.9 and agree.max_code_diff <= 4


# ------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------
def _ort_activation_params(model: onnx.ModelProto) -> dict[str, tuple[np.float32, int, str]]:
    """Every QuantizeLinear's (scale, zero point, type), by the name the float tensor keeps."""
    inits = _inits(model)
    dq_out = {n.input[0]: n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            name = node.input[0]
            if name.endswith("_QuantizeLinear_Input"):
                name = dq_out[node.output[0]]
            zp = inits[node.input[2]]
            out[name] = (inits[node.input[1]], int(zp), zp.dtype.name)
    return out


def test_import_recovers_the_float_model(ort_qdq, digits, tmp_path):
    """Measured: top-1 agreement with the original float model 100% on digits test (QUInt8 and
    QInt8), max |logit difference| 0.147."""
    float_model, params = qdq.import_qdq(ort_qdq)
    ops = [n.op_type for n in float_model.graph.node]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops
    # onnxruntime folded the three Relus into the QuantizeLinears (range [0, ...]): put back
    assert ops.count("Relu") == 3
    x = digits[1]
    original = ort_run(EXAMPLES / "digits_cnn.onnx", {"input": x})[0]
    recovered = ort_run(float_model, {"input": x})[0]
    assert np.mean(recovered.argmax(1) == original.argmax(1)) >= 0.97
    # weights: the dequantized int8 codes, within half a step of the original weights
    orig = _inits(onnx.load(str(EXAMPLES / "digits_cnn.onnx")))
    rec = _inits(float_model)
    q = _inits(ort_qdq)
    for name in ("onnx::Conv_35", "onnx::Conv_38", "onnx::Conv_41", "classifier.2.weight"):
        codes, scale = q[f"{name}_quantized"], q[f"{name}_scale"]
        s = scale.reshape((-1,) + (1,) * (codes.ndim - 1))
        np.testing.assert_array_equal(rec[name], (codes.astype(np.float32) * s).astype(np.float32))
        assert np.all(np.abs(rec[name] - orig[name]) <= s / 2 * (1 + 1e-5))
    # and nnforge imports it
    nn = nnforge.load(float_model)
    np.testing.assert_allclose(nn.run(x)["logits"], recovered, rtol=1e-4, atol=1e-4)


def test_import_returns_onnxruntime_scales_exactly(ort_qdq):
    _, params = qdq.import_qdq(ort_qdq)
    expected = _ort_activation_params(ort_qdq)
    assert set(params) == set(expected)
    for name, (scale, zp, dtype) in expected.items():
        p = params[name]
        assert p.scale == float(scale) and np.float32(p.scale) == scale, name
        assert (p.zero_point, p.dtype) == (zp, dtype), name


def test_zero_point_mapping():
    s = 0.05
    # zero point 0: unchanged
    assert qdq.QDQParam(s, 0, "uint8").to_nnforge() == (QType(8, False), s)
    assert qdq.QDQParam(s, 0, "int8").to_nnforge() == (QType(8, True), s)
    # zero point at the bottom (int8 -128) or the middle (uint8 128): same grid, codes shift
    assert qdq.QDQParam(s, -128, "int8").to_nnforge("strict") == (QType(8, False), s)
    assert qdq.QDQParam(s, 128, "uint8").to_nnforge("strict") == (QType(8, True), s)
    assert qdq.QDQParam(s, 32768, "uint16").to_nnforge("strict") == (QType(16, True), s)
    for p in (qdq.QDQParam(s, -128, "int8"), qdq.QDQParam(s, 128, "uint8")):
        qtype, scale = p.to_nnforge()
        lo, hi = p.code_range
        ours = np.arange(qtype.lo, qtype.hi + 1) * scale
        np.testing.assert_array_equal(ours, (np.arange(lo, hi + 1) - p.zero_point) * s)
    # asymmetric: signed, the smallest scale whose codes cover the same real range
    p = qdq.QDQParam(s, 123, "uint8")
    qtype, scale = p.to_nnforge()
    assert qtype == QType(8, True) and scale == pytest.approx(s * max(123 / 128, 132 / 127))
    lo, hi = p.real_range
    assert -128 * scale <= lo + 1e-12 and 127 * scale >= hi - 1e-12
    assert not p.exact
    with pytest.raises(ModelError, match="'logits'.*zero point 123"):
        p.to_nnforge("strict", "logits")


def test_import_strict_names_the_asymmetric_tensor(ort_qdq):
    # onnxruntime's logits are asymmetric (uint8 zero point 123 / int8 -5)
    with pytest.raises(ModelError, match="tensor 'logits': zero point"):
        qdq.import_qdq(ort_qdq, zero_point="strict")
    _, params = qdq.import_qdq(ort_qdq)
    assert not params["logits"].exact
    assert all(p.exact for name, p in params.items() if name != "logits")


def test_import_rejects_qoperator_format(tmp_path):
    model = _ort_quantize(tmp_path, ort_quant.QuantType.QUInt8, ort_quant.QuantFormat.QOperator)
    with pytest.raises(ModelError, match="only the QDQ format"):
        qdq.import_qdq(model)


def test_export_import_round_trip(qmodel, exported):
    float_model, params = qdq.import_qdq(exported)
    names = qdq.onnx_tensor_names(qmodel.float_model, qmodel.layers)
    for name, t in qmodel.graph.tensors.items():
        p = params[names[name]]
        assert np.float32(p.scale) == np.float32(t.scale) and p.zero_point == 0
        assert p.to_nnforge("strict") == (t.qtype, float(np.float32(t.scale)))
    assert {i.name for i in float_model.graph.initializer} == {
        i.name for i in qmodel.float_model.onnx.graph.initializer}


def _has_hook() -> bool:
    return {"fixed_scales", "stats"} <= set(inspect.signature(quantize).parameters)


@pytest.mark.skipif(not _has_hook(), reason="nnforge.quantized.quantize lacks the fixed_scales / stats "
                    "arguments (the compiler/quant/quantize.py hook) that quantize_with_scales needs")
def test_quantize_with_imported_scales(ort_qdq, digits):
    """Measured: argmax agreement with onnxruntime's own QDQ model (reference path) 100%."""
    float_model, params = qdq.import_qdq(ort_qdq)
    model = nnforge.load(float_model)
    qm = quantize_with_scales(model, [digits[0]], params)
    names = qdq.onnx_tensor_names(model, qm.layers)
    for name, t in qm.graph.tensors.items():
        if names.get(name) in params:
            assert (t.qtype, t.scale) == params[names[name]].to_nnforge(), name
    assert qm.graph.tensors[model.inputs[0].name].scale == params["input"].scale
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(ort_qdq.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {"input": digits[1]})[0]
    ours = qm.predict([digits[1]])["logits"]
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.99
    assert np.mean(ours.argmax(1) == digits[2]) >= 0.97
