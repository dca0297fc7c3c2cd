"""Frontend forms found in real exports: n-ary Sum (ResNet-50's residuals) and opset-9 Softmax,
which TVM imports as reshape -> softmax -> reshape (SqueezeNet's and ResNet-50's last op).

Oracles: onnxruntime for the float model, the numpy reference for the integer codes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.compiler.errors import ModelError
from nnforge.simulate import simulate
from conftest import ort_run


def _conv(name, x, w, out):
    return helper.make_node("Conv", [x, w], [out], name=name, pads=[1, 1, 1, 1])


def _model(opset: int) -> onnx.ModelProto:
    """x -> three 3x3 convs -> Sum(c1, c2, c3) -> Relu -> GlobalAveragePool -> Softmax."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), f"w{i}") for i in range(3)]
    nodes = [_conv(f"conv{i}", "x", f"w{i}", f"c{i}") for i in range(3)]
    nodes += [helper.make_node("Sum", ["c0", "c1", "c2"], ["s"], name="sum3"),
              helper.make_node("Relu", ["s"], ["r"], name="relu"),
              helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
              helper.make_node("Softmax", ["g"], ["y"], name="prob", axis=1)]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def test_sum_and_opset9_softmax_tail():
    proto = _model(9)
    model = nnforge.load(proto)
    x = np.random.default_rng(1).normal(size=(64, 3, 6, 6)).astype(np.float32)
    want = ort_run(proto, {"x": x})[0]
    got = model.run(x)["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float path: rounding order only

    # the integer graph ends at the pre-softmax tensor; softmax and the reshape stay on the host
    qmodel, rep = simulate(model, [x], None, "w8a8", calib=[x[:32]], check=True)
    assert [h.op for h in qmodel.graph.host_ops] == ["softmax", "reshape"]
    assert [n.op for n in qmodel.graph.nodes].count("add") == 2  # Sum(c0, c1, c2) = (c0 + c1) + c2
    assert rep.reference_mismatches == 0
    pred = qmodel.predict([x])["y"]
    assert pred.shape == want.shape
    np.testing.assert_allclose(pred.sum(axis=1), 1.0, rtol=1e-5)  # a softmax over the channels
    agree = (pred.reshape(64, 4).argmax(1) == want.reshape(64, 4).argmax(1)).mean()
    assert agree >= 0.9, agree


def test_softmax_in_the_middle_is_still_refused():
    proto = _model(13)
    g = proto.graph
    g.node.append(helper.make_node("Relu", ["y"], ["z"], name="after"))
    g.output[0].name = "z"
    model = nnforge.load(proto)
    x = np.random.default_rng(1).normal(size=(8, 3, 6, 6)).astype(np.float32)
    with pytest.raises(ModelError, match="softmax is only supported as the model's last op"):
        nnforge.quantize(model, [x], "w8a8")
