"""The QDQ import: a QDQ model (e.g. from ``onnxruntime.quantization.quantize_static(...,
quant_format=QuantFormat.QDQ)``) stripped back to its float graph, with dequantized weights as
float initializers, and the activations' scale / zero point / type (``import_qdq``,
``strip_qdq``); ``nnforge_scales`` maps those onto nnforge's tensor names and contract."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from ..quant.numerics import QType
from .onnx_graph import OnnxGraph, attr, opset_of, rename, toposort
from .onnx_names import onnx_tensor_names
from .qdq_params import CONTAINERS, NARROW, WIDE, WIDE_OPSET, QDQParam, check_mode

__all__ = ["QDQWeight", "StrippedQDQ", "import_qdq", "nnforge_scales", "strip_qdq"]

# ops that keep a nonnegative input nonnegative (for re-inserting ReLUs on import)
_KEEPS_SIGN = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten",
               "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat", "Resize",
               "DepthToSpace", "SpaceToDepth", "Slice", "Gather", "Split"}
_NONNEG_OPS = {"Relu", "Sigmoid", "Softmax", "Abs", "Exp", "Sqrt", "HardSigmoid", "Softplus"}
_QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd",
                  "QLinearMul", "QGemm", "QLinearConcat", "QLinearAveragePool",
                  "QLinearGlobalAveragePool", "DynamicQuantizeLinear"}


def _qparams(g: OnnxGraph, node: onnx.NodeProto, x_dtype: np.dtype | None = None
             ) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(scale float32, zero point, axis, container dtype) of a Q or DQ node."""
    if attr(node, "block_size", 0):
        raise ModelError(f"node {node.name!r}: blocked quantization (block_size) is not supported")
    scale = g.constant(node.input[1])
    if scale is None:
        raise ModelError(f"node {node.name!r}: the scale {node.input[1]!r} must be a constant")
    zp = g.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zp is not None:
        dtype = zp.dtype
    elif node.op_type == "QuantizeLinear":
        out_type = attr(node, "output_dtype", 0)
        dtype = helper.tensor_dtype_to_np_dtype(out_type) if out_type else np.dtype(np.uint8)
    else:
        dtype = x_dtype if x_dtype is not None else np.dtype(np.uint8)
    if zp is None:
        zp = np.zeros(scale.shape, dtype)
    elif zp.shape != scale.shape and not (zp.size == scale.size == 1):
        raise ModelError(f"node {node.name!r}: the zero point {node.input[2]!r} must have the scale's shape "
                         f"{list(scale.shape)}, not {list(zp.shape)}")
    return scale.astype(np.float32), zp, int(attr(node, "axis", 1)), np.dtype(dtype).name


def _dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    """ONNX DequantizeLinear, in float32 as onnxruntime computes it."""
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[axis % q.ndim] = scale.size
    s = scale.astype(np.float32).reshape(shape if scale.size > 1 else ())
    z = zp.astype(np.int64).reshape(shape if zp.size > 1 else ())
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def _quantize_linear(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int, dtype: str) -> np.ndarray:
    """ONNX QuantizeLinear: round half to even, saturate."""
    shape = [1] * x.ndim
    if scale.size > 1:
        shape[axis % x.ndim] = scale.size
    s = scale.astype(np.float32).reshape(shape if scale.size > 1 else ())
    z = zp.astype(np.int64).reshape(shape if zp.size > 1 else ())
    info = np.iinfo(np.dtype(dtype))
    q = np.rint(x.astype(np.float32) / s).astype(np.int64) + z
    return np.clip(q, info.min, info.max).astype(dtype)


@dataclass(frozen=True)
class QDQWeight:
    """A constant a DequantizeLinear dequantizes: ``real = codes * scale`` (codes are ``q - zp``).

    ``axis`` is the per-channel axis (None: one scale); ``dtype`` the stored container;
    ``node`` the DequantizeLinear's name."""

    codes: np.ndarray  # int64
    scale: np.ndarray  # float32, one value or one per channel
    axis: int | None
    dtype: str
    zero_point: np.ndarray
    node: str


@dataclass
class StrippedQDQ:
    """What ``strip_qdq`` recovers: the float graph and what every pair and constant said.

    ``params`` and ``sources`` are keyed by the float tensor's name in ``model``; ``sources``
    names the QuantizeLinear output (the integer codes) in the model as given, for comparisons.
    ``weights`` is keyed by the float initializer's name in ``model``."""

    model: onnx.ModelProto
    params: dict[str, QDQParam]
    weights: dict[str, QDQWeight]
    sources: dict[str, str]
    unrounded: dict[str, str] = dataclasses.field(default_factory=dict)  # float tensor -> the Q node's input


def import_qdq(model: onnx.ModelProto | str | Path, zero_point: str = "recentre"
               ) -> tuple[onnx.ModelProto, dict[str, QDQParam]]:
    """Strip a QDQ model back to its float graph; return it and the activations' parameters.

    * DequantizeLinear of a constant (weights, int32 biases) becomes a float initializer with
      the dequantized values (float32, as onnxruntime computes them), named after the original
      (``X_DequantizeLinear_Output`` -> ``X``);  Q -> DQ of a float constant folds the same way.
    * Each activation's QuantizeLinear -> DequantizeLinear pair is removed; consumers read the
      float tensor again; its ``QDQParam`` is returned under the float tensor's name.
    * onnxruntime drops a Relu (or Clip) before a QuantizeLinear whose range starts at 0,
      because the saturation does it; so where a stripped pair's real range starts at exactly 0
      and the tensor is not already nonnegative, a Relu is put back (the tensor keeps its name).
    * ``zero_point``: every parameter is checked against nnforge's contract (``QDQParam.
      to_nnforge``): ``"strict"`` raises a ModelError naming the first tensor whose zero point
      cannot keep its scale; ``"recentre"`` (default) accepts it (the mapping widens the scale).

    QOperator-format models (QLinearConv, ...) and integer graph inputs/outputs are rejected.
    """
    stripped = strip_qdq(model, zero_point)
    return stripped.model, stripped.params


def strip_qdq(model: onnx.ModelProto | str | Path, zero_point: str = "recentre") -> StrippedQDQ:
    """``import_qdq``, keeping the dequantized constants' codes and the pairs' integer tensors."""
    check_mode(zero_point)
    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    out_model = onnx.ModelProto()
    out_model.CopyFrom(proto)
    g = OnnxGraph(out_model.graph)
    qop = sorted({n.op_type for n in g.nodes if n.op_type in _QOPERATOR_OPS or n.domain not in ("", "ai.onnx")})
    if qop:
        raise ModelError(f"the model uses {', '.join(qop)}: only the QDQ format (QuantizeLinear/"
                         "DequantizeLinear around float ops, quant_format=QuantFormat.QDQ) can be imported")
    consts = set(g.inits) | {o for n in g.nodes if n.op_type == "Constant" for o in n.output}
    removed: set[int] = set()
    alias: dict[str, str] = {}  # DQ output -> float tensor
    params: dict[str, QDQParam] = {}
    float_inits: dict[str, np.ndarray] = {}
    weights: dict[str, QDQWeight] = {}  # DQ output -> codes (renamed with the initializers below)
    sources: dict[str, str] = {}  # float tensor -> the QuantizeLinear output holding its codes
    unrounded: dict[str, str] = {}  # float tensor -> the QuantizeLinear input (before rounding)

    def consumers(t):
        return [n for n in g.nodes if t in n.input and id(n) not in removed]

    for node in g.nodes:
        if node.op_type == "DequantizeLinear" and node.input[0] in consts:
            q = g.constant(node.input[0])
            scale, zp, axis, dtype = _qparams(g, node, q.dtype)
            _check_dtype(node, dtype, opset_of(proto), constant=True)
            if scale.size > 1:
                _check_channel_axis(g, node, axis, q.ndim)
            float_inits[node.output[0]] = _dequantize(q, scale, zp, axis)
            weights[node.output[0]] = QDQWeight(q.astype(np.int64) - _broadcast_zp(zp, q.ndim, axis), scale,
                                                axis if scale.size > 1 else None, dtype, zp, node.name)
            removed.add(id(node))
    for node in g.nodes:
        if node.op_type != "QuantizeLinear":
            continue
        x, y = node.input[0], node.output[0]
        scale, zp, axis, dtype = _qparams(g, node)
        _check_dtype(node, dtype, opset_of(proto))
        users = consumers(y)
        if y in g.outputs or not users or any(u.op_type != "DequantizeLinear" for u in users):
            other = next((u.op_type for u in users if u.op_type != "DequantizeLinear"), "a graph output")
            raise ModelError(f"tensor {x!r}: its QuantizeLinear output feeds {other}; only "
                             "QuantizeLinear -> DequantizeLinear pairs can be stripped")
        for dq in users:
            s2, z2, _, _ = _qparams(g, dq, np.dtype(dtype))
            if not (np.array_equal(s2, scale) and np.array_equal(z2, zp)):
                raise ModelError(f"tensor {x!r}: its QuantizeLinear and DequantizeLinear "
                                 f"({dq.name!r}) have different scales or zero points")
            removed.add(id(dq))
        removed.add(id(node))
        if x in consts:  # a float weight quantized in the graph: fold Q -> DQ
            value = _dequantize(_quantize_linear(g.constant(x), scale, zp, axis, dtype), scale, zp, axis)
            for dq in users:
                float_inits[dq.output[0]] = value
            continue
        if scale.size != 1:
            raise ModelError(f"tensor {x!r}: activations must have one scale, not {scale.size} (axis {axis})")
        if dtype not in CONTAINERS:
            raise ModelError(f"tensor {x!r}: activation type {dtype} is not one of {sorted(CONTAINERS)}")
        p = QDQParam(float(scale.reshape(())), int(zp.reshape(())), dtype)
        src = alias.get(x, x)
        if src in params and params[src] != p:
            raise ModelError(f"tensor {src!r} is quantized twice with different parameters "
                             f"({params[src]} and {p})")
        params[src] = p
        sources[src] = y
        unrounded[src] = x
        for dq in users:
            alias[dq.output[0]] = src
    for node in g.nodes:
        if node.op_type == "DequantizeLinear" and id(node) not in removed:
            raise ModelError(f"node {node.name!r}: DequantizeLinear of {node.input[0]!r}, which no "
                             "QuantizeLinear produces (an integer graph input is not supported)")
    g.nodes = [n for n in g.nodes if id(n) not in removed]

    def resolve(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    for node in g.nodes:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    # names: a graph output keeps its name; so does the DQ output of a tensor whose float name
    # was made up for the pair ("X_QuantizeLinear_Input", as export_qdq and onnxruntime write)
    renamed: set[str] = set()
    for out in g.outputs:
        src = resolve(out)
        if src == out:
            continue
        if src in renamed or src in g.inputs or src in g.outputs or src in float_inits or src in g.inits:
            g.nodes.append(helper.make_node("Identity", [src], [out], name=g.fresh(f"{out}_Identity")))
            continue
        rename(g, src, out)
        if src in params:
            params[out] = params.pop(src)
            sources[out] = sources.pop(src)
            unrounded[out] = unrounded.pop(src)
        renamed.add(src)
    for y in list(alias):
        src = resolve(y)
        if (src in renamed or src in g.inputs or not src.endswith("_QuantizeLinear_Input")
                or y.endswith("_DequantizeLinear_Output")):
            continue
        rename(g, src, y)
        if src in params:
            params[y] = params.pop(src)
            sources[y] = sources.pop(src)
            unrounded[y] = unrounded.pop(src)
        renamed.add(src)
    for name, value in float_inits.items():
        g.inits[name] = numpy_helper.from_array(value, name)
    _insert_relus(g, params)
    renamed_inits = _restore_names(g)
    weights = {renamed_inits.get(k, k): w for k, w in weights.items()}
    g.finish()
    onnx.checker.check_model(out_model)
    for name, p in params.items():
        p.to_nnforge(zero_point, name)
    return StrippedQDQ(out_model, params, weights, sources, unrounded)


def _check_dtype(node: onnx.NodeProto, dtype: str, opset: int, constant: bool = False) -> None:
    """The integer types nnforge maps: (u)int8 at any opset, (u)int16 and (u)int4 from opset 21,
    int32 for a dequantized constant (a bias)."""
    allowed = NARROW | (WIDE if opset >= WIDE_OPSET else set()) | ({"int32"} if constant else set())
    if dtype not in allowed:
        later = "" if opset >= WIDE_OPSET else f"; int4, uint4, int16, uint16 from opset {WIDE_OPSET}"
        raise ModelError(f"node {node.name!r}: the {node.op_type} type must be one of {', '.join(sorted(allowed))} "
                         f"at opset {opset}{later}, not {dtype}")


def _check_channel_axis(g: OnnxGraph, node: onnx.NodeProto, axis: int, ndim: int) -> None:
    """A per-axis weight scale must run along the consumer's output channels."""
    for user in g.consumers(node.output[0]):
        if user.op_type not in ("Conv", "Gemm", "MatMul") or list(user.input).index(node.output[0]) != 1:
            continue
        want = {"Conv": 0, "Gemm": 0 if attr(user, "transB", 0) else 1, "MatMul": ndim - 1}[user.op_type]
        if axis % ndim != want:
            raise ModelError(f"node {node.name!r}: the per-axis scale of {node.input[0]!r} must be along the output "
                             f"channel (axis {want} for {user.op_type} {user.name!r}), not axis {axis}")


def _broadcast_zp(zp: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    z = zp.astype(np.int64)
    if z.size <= 1:
        return z.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = z.size
    return z.reshape(shape)


def _insert_relus(g: OnnxGraph, params: dict[str, QDQParam]) -> None:
    """Put back the Relu that a QuantizeLinear with real range [0, ...] stood for."""
    starts_at_zero = {t for t, p in params.items() if p.zero_point == p.code_range[0]}
    nonneg = {t for t in g.inputs if t in starts_at_zero}
    for node in toposort(list(g.nodes), set(g.inputs) | set(g.inits) | {""}):
        op = node.op_type
        if op in _NONNEG_OPS:
            ok = True
        elif op == "Clip":
            lo = g.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else attr(node, "min")
            ok = lo is not None and float(np.asarray(lo).reshape(())) >= 0
        elif op in _KEEPS_SIGN:
            data = [i for i in node.input[:1 if op != "Concat" else None] if i]
            ok = all(i in nonneg for i in data)
        else:
            ok = False
        for out in list(node.output):
            if ok:
                nonneg.add(out)
            elif out in starts_at_zero:
                pre = g.fresh(f"{out}_before_Relu")
                node.output[list(node.output).index(out)] = pre
                g.nodes.append(helper.make_node("Relu", [pre], [out], name=g.fresh(f"{out}_Relu")))
                nonneg.add(out)


def _restore_names(g: OnnxGraph) -> dict[str, str]:
    """``W_DequantizeLinear_Output`` -> ``W`` for float initializers, where ``W`` is free; returns
    the renames."""
    renames: dict[str, str] = {}
    live = {n for node in g.nodes for n in (*node.input, *node.output)} | set(g.outputs) | set(g.inputs)
    for name in list(g.inits):
        if not name.endswith("_DequantizeLinear_Output"):
            continue
        new = name.removesuffix("_DequantizeLinear_Output")
        if new in live:
            continue
        g.inits.pop(new, None)  # an unused float original left in the model
        tensor = g.inits.pop(name)
        tensor.name = new
        g.inits[new] = tensor
        rename(g, name, new)
        live.add(new)
        renames[name] = new
    return renames


def nnforge_scales(model: Any, scales: dict[str, QDQParam | tuple[QType, float]], layers: list,
                   zero_point: str = "recentre") -> dict[str, tuple[QType, float]]:
    """Imported parameters (by ONNX tensor name) -> ``(QType, scale)`` by nnforge tensor name.

    ``layers`` are the model's float layers as the quantizer names them (``qmodel.layers``).
    Only tensors nnforge quantizes are returned (model inputs and layer outputs); ONNX tensors
    without an nnforge counterpart (inside a fused layer) are left out.
    """
    check_mode(zero_point)
    names = onnx_tensor_names(model, layers)
    out: dict[str, tuple[QType, float]] = {}
    for nn_name, onnx_name in names.items():
        if onnx_name not in scales:
            continue
        p = scales[onnx_name]
        out[nn_name] = p.to_nnforge(zero_point, onnx_name) if isinstance(p, QDQParam) else (p[0], float(p[1]))
    return out
