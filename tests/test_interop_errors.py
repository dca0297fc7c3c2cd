"""Bad pre-quantized models: each one a clear error that names the node (exit status 2 in the CLI)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.compiler.errors import InputError, ModelError

DOMAIN = "qonnx.custom_op.general"


def _init(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _qdq_gemm(opset=13, zp_type=TP.UINT8, zp_value=(0,), w_axis=0, w_scale_shape=(3,), zp_shape=None,
              weights_dtype=np.int8) -> onnx.ModelProto:
    """x[N,4] -Q/DQ-> Gemm(DQ(W[3,4]), transB=1) -> y."""
    zp = helper.make_tensor("x_zp", zp_type, list(zp_shape or ()), list(zp_value) if zp_shape else [zp_value[0]])
    w = np.arange(12).reshape(3, 4) - 6
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["wd"], name="dqw", axis=w_axis),
             helper.make_node("Gemm", ["xd", "wd"], ["y"], name="fc", transB=1)]
    inits = [_init("x_s", 0.1), zp, _init("w_q", w, weights_dtype), _init("w_s", np.full(w_scale_shape, 0.05)),
             _init("w_zp", np.zeros(w_scale_shape), weights_dtype)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _qonnx_gemm(scale_from_input=False, zp=0.0, bits=4.0, rounding="ROUND", bipolar=False) -> onnx.ModelProto:
    """x -Quant-> Gemm(Quant(W)) -> y, with one thing wrong."""
    x_scale = "s_dyn" if scale_from_input else "s"
    nodes = []
    if scale_from_input:
        nodes.append(helper.make_node("ReduceMax", ["x"], ["s_dyn"], name="dyn_scale", keepdims=0))
    if bipolar:
        nodes.append(helper.make_node("BipolarQuant", ["x", "s"], ["xq"], name="bq", domain=DOMAIN))
    else:
        nodes.append(helper.make_node("Quant", ["x", x_scale, "z", "b"], ["xq"], name="qx", domain=DOMAIN,
                                      signed=1, narrow=0, rounding_mode=rounding))
    nodes += [helper.make_node("Quant", ["w", "sw", "z", "b"], ["wq"], name="qw", domain=DOMAIN, signed=1, narrow=1),
              helper.make_node("Gemm", ["xq", "wq"], ["y"], name="fc", transB=1)]
    inits = [_init("s", 0.125), _init("z", zp), _init("b", bits), _init("sw", 0.25),
             _init("w", np.arange(12).reshape(3, 4) * 0.25 - 1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])


BAD = {
    "float8 QDQ": (lambda: _qdq_gemm(opset=19, zp_type=TP.FLOAT8E4M3FN, zp_value=(0.0,)), "qx",
                   "must be one of int8, uint8 at opset 19"),
    "int4 before opset 21": (lambda: _qdq_gemm(opset=19, zp_type=TP.INT4), "qx", "from opset 21, not int4"),
    "per-axis scale off the channel": (lambda: _qdq_gemm(w_axis=1, w_scale_shape=(4,)), "dqw",
                                       "must be along the output channel (axis 0 for Gemm 'fc'), not axis 1"),
    "scale and zero-point shapes": (lambda: _qdq_gemm(zp_shape=(2,), zp_value=(0, 0)), "qx",
                                    "must have the scale's shape [], not [2]"),
    "dynamic Quant scale": (lambda: _qonnx_gemm(scale_from_input=True), "qx",
                            "scale must be a constant, not the computed tensor 's_dyn'"),
    "dynamic Quant bit width": (None, "qx", "bit width must be a constant"),
    "non-zero QONNX zero point": (lambda: _qonnx_gemm(zp=3.0), "qx", "zero point must be 0"),
    "bipolar": (lambda: _qonnx_gemm(bipolar=True), "bq", "not a BipolarQuant"),
    "1-bit Quant": (lambda: _qonnx_gemm(bits=1.0), "qx", "bit width must be an integer from 2 to 16, not 1"),
    "rounding mode": (lambda: _qonnx_gemm(rounding="CEIL"), "qx", "rounding_mode must be one of"),
}


def _dynamic_bits() -> onnx.ModelProto:
    m = _qonnx_gemm()
    m.graph.node.insert(0, helper.make_node("Identity", ["b"], ["b_dyn"], name="bits_dyn"))
    m.graph.node[1].input[3] = "b_dyn"
    return m


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_prequantized_model_names_the_node(case, tmp_path):
    make, node, text = BAD[case]
    proto = _dynamic_bits() if make is None else make()
    with pytest.raises(ModelError) as err:
        nnforge.load(proto)
    assert f"node {node!r}" in str(err.value) and text in str(err.value), str(err.value)
    path = tmp_path / "bad.onnx"
    onnx.save(proto, path)
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 2 and f"node {node!r}" in res.output and "Traceback" not in res.output


def test_mixed_graph_needs_calib_and_lists_the_float_layers(tmp_path):
    """Only the first of two Gemms is quantized: refused without calibration data, listed; with it,
    the float layer is calibrated and the note says so."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2, 3)).astype(np.float32)
    s1 = np.abs(w1).max(1) / 127
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_zp"], ["w1d"], name="dqw1", axis=0),
             helper.make_node("Gemm", ["xd", "w1d"], ["h"], name="fc1", transB=1),
             helper.make_node("QuantizeLinear", ["h", "h_s", "h_zp"], ["hq"], name="qh"),
             helper.make_node("DequantizeLinear", ["hq", "h_s", "h_zp"], ["hd"], name="dqh"),
             helper.make_node("Gemm", ["hd", "w2"], ["y"], name="fc2", transB=1)]
    inits = [_init("x_s", 0.05), _init("x_zp", 0, np.int8), _init("h_s", 0.1), _init("h_zp", 0, np.int8),
             _init("w1_q", np.round(w1 / s1[:, None]), np.int8), _init("w1_s", s1), _init("w1_zp", np.zeros(3), np.int8),
             _init("w2", w2)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 2])], inits)
    model = nnforge.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    with pytest.raises(InputError) as err:
        nnforge.quantize(model, None)
    assert "layer 'y'" in str(err.value) and "weight is float" in str(err.value) and "--calib" in str(err.value)
    q = nnforge.quantize(model, [rng.normal(size=(64, 4)).astype(np.float32)])
    assert any("calibrated with the config" in n and "'y'" in n for n in model.prequantized.notes)
    fc1 = next(n for n in q.graph.nodes if n.name == "fc1")
    assert np.array_equal(fc1.attrs.weight.T, np.round(w1 / s1[:, None]).astype(np.int64))
