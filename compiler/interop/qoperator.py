"""The QOperator form, rewritten into the QDQ graph it stands for (before TVM's importer).

TVM's ONNX importer takes neither QLinearConv, QLinearMatMul nor ConvInteger (DESIGN.md), so
each QOperator node becomes DequantizeLinear on its integer inputs, the float op, and a
QuantizeLinear of its output, which keeps the node's output name.  ``qdq.strip_qdq`` then reads
the result like any QDQ model.  Rules (``# before -> after``):

* ``QLinearConv(x, sx, zx, w, sw, zw, sy, zy, B)`` -> ``Q(Conv(DQ(x), DQ(w, axis 0), DQ(B, sx*sw)), sy, zy)``
* ``QLinearMatMul(a, sa, za, b, sb, zb, sy, zy)`` -> ``Q(MatMul(DQ(a), DQ(b, axis -1)), sy, zy)``
* ``QGemm(A, sa, za, B, sb, zb, C, sy, zy)`` (com.microsoft) -> ``Q(Gemm(DQ(A), DQ(B), DQ(C, sa*sb)), sy, zy)``,
  or the float Gemm where it has no output scale
* ``ConvInteger`` / ``MatMulInteger(x, w, zx, zw)`` reading ``QuantizeLinear(_, sx, zx)`` and feeding
  ``Cast(float) -> Mul(c)`` -> ``Conv``/``MatMul(DQ(x, sx), DQ(w, c / sx))`` in place of the Mul:
  the same real result, ``acc * c``

Anything else in the QOperator family (QLinearAdd, DynamicQuantizeLinear, ...) is refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..errors import ModelError
from .prequant import QOPERATOR_OPS, QOPERATOR_REFUSED


def to_qdq(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The QDQ model equivalent to the QOperator model ``proto`` (a new ModelProto)."""
    from .onnx_graph import OnnxGraph

    refused = sorted({f"{n.op_type} ({n.name!r})" for n in proto.graph.node if n.op_type in QOPERATOR_REFUSED})
    if refused:
        raise ModelError(f"the QOperator nodes must be QLinearConv, QLinearMatMul, QGemm, ConvInteger or "
                         f"MatMulInteger, not {', '.join(refused[:6])}: quantize with quant_format=QuantFormat.QDQ "
                         "(static, not dynamic quantization)")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = OnnxGraph(out.graph)
    integer: dict[str, tuple[str, str | None]] = {}  # integer tensor -> (scale, zero point) names
    for node in list(g.nodes):
        if node.op_type in QOPERATOR_OPS:
            _RULES[node.op_type](g, node)
            if node.op_type.startswith("QLinear") or (node.op_type == "QGemm" and len(node.input) > 7 and node.input[7]):
                i = 6 if node.op_type == "QLinearConv" else 6 if node.op_type == "QLinearMatMul" else 7
                integer[node.output[0]] = (node.input[i], node.input[i + 1] if len(node.input) > i + 1 else None)
        elif node.op_type == "QuantizeLinear":
            integer[node.output[0]] = (node.input[1], node.input[2] if len(node.input) > 2 else None)
        elif node.op_type in _PASSTHROUGH and node.input and node.input[0] in integer:
            # onnxruntime runs these on the codes: dequantize, the float op, quantize again (same parameters)
            scale, zp = integer[node.input[0]]
            node.input[0] = _dq(g, node, node.input[0], scale, zp)
            y = node.output[0]
            node.output[0] = g.fresh(f"{y}_float")
            _q(g, node, node.output[0], y, scale, zp)
            integer[y] = (scale, zp)
    g.nodes = [n for n in g.nodes if n.op_type not in QOPERATOR_OPS]
    g.finish()
    del out.opset_import[:]
    out.opset_import.extend(o for o in proto.opset_import if o.domain != "com.microsoft")
    if not any(o.domain in ("", "ai.onnx") for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("", 13))
    return out


_PASSTHROUGH = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "GlobalMaxPool"}


def _const(g, node, i: int, what: str) -> np.ndarray:
    value = g.constant(node.input[i]) if len(node.input) > i and node.input[i] else None
    if value is None:
        raise ModelError(f"node {node.name!r}: its {what} ({node.op_type} input {i}) must be a constant, not "
                         f"{node.input[i] if len(node.input) > i else 'missing'!r}")
    return value


def _dq(g, node, x: str, scale: str, zp: str | None, axis: int | None = None) -> str:
    out = g.fresh(f"{x}_DequantizeLinear_Output")
    attrs = {} if axis is None else {"axis": axis}
    g.nodes.append(helper.make_node("DequantizeLinear", [x, scale] + ([zp] if zp else []), [out],
                                    name=g.fresh(f"{node.name or x}_DequantizeLinear"), **attrs))
    return out


def _q(g, node, y_float: str, y: str, scale: str, zp: str | None) -> None:
    g.nodes.append(helper.make_node("QuantizeLinear", [y_float, scale] + ([zp] if zp else []), [y],
                                    name=g.fresh(f"{node.name or y}_QuantizeLinear")))


def _bias(g, node, b: str, sx: np.ndarray, sw: np.ndarray) -> str:
    """DequantizeLinear of int32 bias codes at ``sx * sw`` (float32, as onnxruntime computes it)."""
    scale = (np.float32(sx.reshape(-1)[0]) * sw.astype(np.float32).reshape(-1)).astype(np.float32)
    s = g.add_init(f"{b}_scale", scale if scale.size > 1 else scale.reshape(()))
    z = g.add_init(f"{b}_zero_point", np.zeros(scale.shape if scale.size > 1 else (), np.int32))
    return _dq(g, node, b, s, z, 0 if scale.size > 1 else None)


def _axis(scale: np.ndarray, axis: int) -> int | None:
    return axis if np.size(scale) > 1 else None


def _qlinear_conv(g, node) -> None:
    sx, sw = _const(g, node, 1, "input scale"), _const(g, node, 4, "weight scale")
    x = _dq(g, node, node.input[0], node.input[1], node.input[2])
    w = _dq(g, node, node.input[3], node.input[4], node.input[5], _axis(sw, 0))
    ins = [x, w] + ([_bias(g, node, node.input[8], sx, sw)] if len(node.input) > 8 and node.input[8] else [])
    y = g.fresh(f"{node.output[0]}_float")
    g.nodes.append(helper.make_node("Conv", ins, [y], name=node.name, **_attrs(node)))
    _q(g, node, y, node.output[0], node.input[6], node.input[7])


def _qlinear_matmul(g, node) -> None:
    sb = _const(g, node, 4, "b scale")
    b = g.constant(node.input[3])
    a = _dq(g, node, node.input[0], node.input[1], node.input[2])
    bf = _dq(g, node, node.input[3], node.input[4], node.input[5],
             _axis(sb, (b.ndim if b is not None else 2) - 1))
    y = g.fresh(f"{node.output[0]}_float")
    g.nodes.append(helper.make_node("MatMul", [a, bf], [y], name=node.name))
    _q(g, node, y, node.output[0], node.input[6], node.input[7])


def _qgemm(g, node) -> None:
    sa, sb = _const(g, node, 1, "A scale"), _const(g, node, 4, "B scale")
    attrs = _attrs(node)
    a = _dq(g, node, node.input[0], node.input[1], node.input[2])
    b = _dq(g, node, node.input[3], node.input[4], node.input[5], _axis(sb, 0 if attrs.get("transB", 0) else 1))
    ins = [a, b] + ([_bias(g, node, node.input[6], sa, sb)] if len(node.input) > 6 and node.input[6] else [])
    has_y = len(node.input) > 7 and node.input[7]
    y = g.fresh(f"{node.output[0]}_float") if has_y else node.output[0]
    g.nodes.append(helper.make_node("Gemm", ins, [y], name=node.name, **attrs))
    if has_y:
        _q(g, node, y, node.output[0], node.input[7], node.input[8] if len(node.input) > 8 else None)


def _integer(g, node) -> None:
    """ConvInteger / MatMulInteger in the static pattern Q -> op -> Cast -> Mul(constant)."""
    q = g.producer(node.input[0])
    users = g.consumers(node.output[0])
    cast = users[0] if len(users) == 1 and users[0].op_type == "Cast" else None
    muls = g.consumers(cast.output[0]) if cast is not None else []
    mul = muls[0] if len(muls) == 1 and muls[0].op_type == "Mul" else None
    c = None
    if mul is not None:
        other = [i for i in mul.input if i != cast.output[0]]
        c = g.constant(other[0]) if other else None
    if q is None or q.op_type != "QuantizeLinear" or c is None or g.constant(q.input[1]) is None:
        raise ModelError(f"node {node.name!r}: {node.op_type} must read a QuantizeLinear output and feed Cast -> Mul "
                         "by a constant (the static pattern), not a dynamic one (DynamicQuantizeLinear or a "
                         "computed scale): quantize with quant_format=QuantFormat.QDQ")
    sx = g.constant(q.input[1]).astype(np.float64).reshape(())
    zx = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zx is not None and q.input[2:3] and not np.array_equal(g.constant(zx), g.constant(q.input[2])):
        raise ModelError(f"node {node.name!r}: its input zero point must be the QuantizeLinear's, not a different one")
    conv = node.op_type == "ConvInteger"
    w = g.constant(node.input[1])
    channels = np.asarray(c, np.float64).reshape(-1)
    axis = (0 if conv else (w.ndim - 1 if w is not None else 1)) if channels.size > 1 else None
    ws = g.add_init(f"{node.input[1]}_scale", (channels / sx).astype(np.float32) if channels.size > 1
                    else np.asarray(channels[0] / sx, np.float32))
    wz = node.input[3] if len(node.input) > 3 and node.input[3] else None
    x = _dq(g, node, node.input[0], q.input[1], q.input[2] if len(q.input) > 2 else None)
    wf = _dq(g, node, node.input[1], ws, wz, axis)
    g.nodes.append(helper.make_node("Conv" if conv else "MatMul", [x, wf], [mul.output[0]], name=node.name,
                                    **(_attrs(node) if conv else {})))
    g.nodes.remove(cast)
    g.nodes.remove(mul)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


_RULES = {"QLinearConv": _qlinear_conv, "QLinearMatMul": _qlinear_matmul, "QGemm": _qgemm,
          "ConvInteger": _integer, "MatMulInteger": _integer}
__all__ = ["to_qdq"]
