"""QONNX test models built with onnx.helper: a float model with ``Quant`` nodes on its input, every
weight and bias, and every activation after a Relu and the logits.

Scales are powers of two (per output channel for weights, from the float model's own ranges on
the calibration data), biases are quantized at ``s_x * s_w``: then every float32 product qonnx
computes is exact, and the only difference from nnforge's integer arithmetic is rounding."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DOMAIN = "qonnx.custom_op.general"


def _pow2(threshold: float, qmax: int) -> float:
    return 2.0 ** math.ceil(math.log2(max(threshold, 1e-12) / qmax))


def _ranges(model: onnx.ModelProto, x: np.ndarray, names: list[str]) -> dict[str, float]:
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        if n not in [o.name for o in m.graph.output]:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {m.graph.input[0].name: x})
    return {n: float(np.abs(o).max()) for n, o in zip(names, outs)}


def to_qonnx(model: onnx.ModelProto, calib: np.ndarray, wbits: int, abits: int, rounding: str = "ROUND",
             narrow_weights: bool = True) -> onnx.ModelProto:
    """``model`` (Conv/Gemm -> Relu chains) with QONNX Quant nodes; ``abits`` for activations
    (unsigned after a Relu, signed 8-bit logits), ``wbits`` signed for weights."""
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    relus = [n.output[0] for n in g.node if n.op_type == "Relu"]
    out = g.output[0].name
    x_name = g.input[0].name
    ranges = _ranges(model, calib, relus + [out])
    ranges[x_name] = float(np.abs(calib).max())
    nodes, new_inits = [], [i for i in g.initializer]
    consts = {}

    def const(name, value):
        key = f"{name}"
        new_inits.append(numpy_helper.from_array(np.asarray(value, np.float32), key))
        return key

    def quant(src, dst, scale, bits, signed, narrow, mode):
        s = const(f"{dst}_scale", scale)
        z = const(f"{dst}_zp", 0.0)
        b = const(f"{dst}_bits", float(bits))
        nodes.append(helper.make_node("Quant", [src, s, z, b], [dst], name=f"{dst}_Quant", domain=DOMAIN,
                                      signed=int(signed), narrow=int(narrow), rounding_mode=mode))

    act_scale = {x_name: _pow2(ranges[x_name], 2 ** abits - 1)}
    # HALF_UP on the (nonnegative) input is nnforge's boundary rounding exactly (RND; the contract rounds inputs so)
    quant(x_name, f"{x_name}_q", act_scale[x_name], abits, False, False, "HALF_UP")
    rename = {x_name: f"{x_name}_q"}
    act_scale[f"{x_name}_q"] = act_scale[x_name]
    for node in g.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for i, n in enumerate(node.input):
            node.input[i] = rename.get(n, n)
        if node.op_type in ("Conv", "Gemm"):
            w = inits[node.input[1].removesuffix("_q")] if node.input[1] in inits else inits[node.input[1]]
            trans = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            axis = 0 if node.op_type == "Conv" or trans else 1
            moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
            qmax = 2 ** (wbits - 1) - 1
            sw = np.array([_pow2(float(np.abs(r).max()), qmax) for r in moved])
            shape = [1] * w.ndim
            shape[axis] = -1
            quant(node.input[1], f"{node.input[1]}_wq", sw.reshape(shape), wbits, True, narrow_weights, "ROUND")
            sx = act_scale[_source_of(node.input[0])]
            if len(node.input) > 2 and node.input[2]:
                quant(node.input[2], f"{node.input[2]}_bq", sx * sw, 24, True, False, "ROUND")
                node.input[2] = f"{node.input[2]}_bq"
            node.input[1] = f"{node.input[1]}_wq"
        nodes.append(node)
        for o in node.output:
            if o in relus or o == out:
                signed = o == out
                bits = 8 if signed else abits
                s = _pow2(ranges[o], 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1)
                dst = f"{o}_q" if o != out else o
                if o == out:
                    node.output[0] = f"{o}_float"
                    src = f"{o}_float"
                else:
                    src = o
                quant(src, dst, s, bits, signed, False, rounding)
                act_scale[dst] = s
                rename[o] = dst
        for o in node.output:  # pass-through ops keep their input's scale
            if o not in rename and node.op_type in ("MaxPool", "Flatten", "Reshape") and node.input[0] in act_scale:
                act_scale[o] = act_scale[node.input[0]]
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), new_inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])
    m.ir_version = model.ir_version
    return m


def _source_of(name: str) -> str:
    return name
