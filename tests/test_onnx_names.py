"""ONNX tensors of layers whose node names repeat: the importer records each var's tensor.

TVM renames repeated names in its own scheme (``conv, conv, conv1`` become the Relax vars ``conv,
conv1, conv11``), so rebuilding that scheme from node names maps the second ``conv`` onto the
literal ``conv1`` node's tensor.  Ground truth here is the graph itself: the i-th Conv node's
output is the i-th conv layer's tensor."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.compiler.interop.qdq import onnx_tensor_names


def _three_convs(names: list[str]) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits, nodes, src = [], [], "x"
    for i, name in enumerate(names):
        w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [src, f"w{i}"], [f"t{i}"], name=name, pads=[1, 1, 1, 1]))
        src = f"t{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info(src, TensorProto.FLOAT, [1, 2, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_repeated_node_names_map_each_layer_to_its_own_onnx_tensor():
    model = nnforge.load(_three_convs(["conv", "conv", "conv1"]))
    x = np.random.default_rng(1).standard_normal((4, 2, 6, 6)).astype(np.float32)
    q = nnforge.quantize(model, [x], "w8a8")
    names = onnx_tensor_names(model, q.layers)
    convs = [l.name for l in q.layers if l.op == "conv2d"]
    assert len(convs) == 3
    assert [names[c] for c in convs] == ["t0", "t1", "t2"]


def test_the_importer_records_every_named_vars_tensor():
    model = nnforge.load(_three_convs(["conv", "conv", "conv1"]))
    outputs = model.onnx_names.outputs
    assert sorted(outputs.values()) == ["t0", "t1", "t2"]
    assert {model.onnx_names[v] for v in outputs} == {"conv", "conv1"}
