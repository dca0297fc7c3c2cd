"""The QDQ export: a quantized model's float ONNX graph with a QuantizeLinear/DequantizeLinear pair
on every tensor nnforge quantizes, and its weights and biases as DequantizeLinear of integer
initializers, so onnxruntime (or any QDQ consumer) runs nnforge's quantization (``export_qdq``).
``rewrite_linear`` (a conv/dense layer's node pointed at integer weights) is shared with the
QONNX export."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..errors import ModelError
from ..quant.numerics import QType
from .onnx_graph import OnnxGraph, attr, opset_of, set_attr
from .onnx_names import onnx_tensor_names, var_key
from .qdq_params import CONTAINERS, PER_CHANNEL_OPSET, WIDE_OPSET

__all__ = ["export_qdq", "rewrite_linear"]

# ops whose output is clamped by a fused activation (nnforge fuses them into the layer before)
_CLAMP_OPS = {"Relu", "Clip", "Max", "Min"}


@dataclass
class _Exported:
    """How one nnforge tensor is written: container, exported scale, narrower clamp."""

    dtype: str
    scale: float  # float64; written as float32
    lo: int  # code range nnforge allows
    hi: int
    clamp: bool  # whether [lo, hi] is narrower than the container (needs a Clip)
    rescaled: bool  # width clamped to 8 bits (scale widened)


def _container(qtype: QType, wide: bool) -> tuple[str, QType]:
    """The ONNX container for ``qtype`` and the QType the exported codes follow."""
    if qtype.bits <= 8:
        return ("int8" if qtype.signed else "uint8"), qtype
    if wide:
        return ("int16" if qtype.signed else "uint16"), qtype
    return ("int8" if qtype.signed else "uint8"), QType(8, qtype.signed)


def _export_param(qtype: QType, scale: float, wide: bool) -> _Exported:
    dtype, qt = _container(qtype, wide)
    _, bits, signed = CONTAINERS[dtype]
    full = QType(bits, signed)
    if qt.bits == qtype.bits:
        return _Exported(dtype, scale, qtype.lo, qtype.hi, (qtype.lo, qtype.hi) != (full.lo, full.hi), False)
    # width clamped: the same real threshold over 8-bit codes
    return _Exported(dtype, scale * qtype.qmax / qt.qmax, qt.lo, qt.hi, False, True)


def export_qdq(qmodel: Any, path: str | Path | None = None, *, opset: int | None = None
               ) -> onnx.ModelProto:
    """Write ``qmodel`` as an ONNX QDQ model (and return it).

    The graph is ``qmodel.float_model.onnx`` with:

    * a QuantizeLinear/DequantizeLinear pair (per-tensor scale, zero point 0) on every tensor
      in ``qmodel.graph.tensors``: the model inputs and every layer's output; the pair sits on
      the layer's last ONNX tensor (after a fused Relu/Clip);
    * every conv / dense weight as DequantizeLinear of an int8 initializer holding nnforge's
      weight codes with nnforge's per-channel (or per-tensor) scales: axis 0 for Conv, for
      Gemm with ``transB=1`` and for the canonical Gemm written for a folded layer; axis 1 for
      MatMul and Gemm with ``transB=0`` (a Gemm's alpha and beta become 1: nnforge's weights
      and bias include them);
    * every bias as DequantizeLinear of an int32 initializer (nnforge's bias codes) with scale
      ``s_x * s_w`` (per channel), as QDQ consumers expect; codes needing more than 32 bits
      are written as a float initializer ``codes * s_x * s_w``, with a warning.

    A layer whose ONNX form differs from nnforge's (BatchNorm or a per-channel scale folded
    in, a Gemm with ``transA``) is written as one canonical Conv or Gemm/MatMul+Add with
    nnforge's folded parameters; the replaced nodes are dropped.

    Widths: 2..8-bit tensors use (u)int8 containers, with a Clip to ``[lo*s, hi*s]`` before the
    QuantizeLinear when the type is narrower than 8 bits (weights need none: their codes lie in
    range).  9..16-bit tensors use (u)int16 when the model's opset (or ``opset``, to which the
    model is converted) is at least 21; otherwise they are clamped to 8 bits (same real range,
    ``scale * qmax_b / qmax_8``; weights and biases re-quantized from the float parameters) and
    a warning names them.  ``opset`` below 13 is raised to 13 (per-channel ``axis``).
    """
    from onnx import version_converter

    from ..quant.quantize import quantize_weights

    proto = onnx.ModelProto()
    proto.CopyFrom(qmodel.float_model.onnx)
    target = max(opset_of(proto), PER_CHANNEL_OPSET, opset or 0)
    if target != opset_of(proto):
        try:
            proto = version_converter.convert_version(proto, target)
        except Exception as err:  # noqa: BLE001 - the converter raises many types
            raise ModelError(f"the model could not be converted from opset {opset_of(proto)} to "
                             f"{target} for the QDQ export: {err}") from err
        if target >= WIDE_OPSET and proto.ir_version < 10:
            proto.ir_version = 10
    wide = target >= WIDE_OPSET
    graph = qmodel.graph
    names = onnx_tensor_names(qmodel.float_model, qmodel.layers)
    g = OnnxGraph(proto.graph)

    tensors = [t for t in graph.tensors.values() if t.name in names]
    exported = {t.name: _export_param(t.qtype, t.scale, wide) for t in tensors}
    clamped = [t.name for t in tensors if exported[t.name].rescaled]
    wide_bias: list[str] = []  # int32 cannot hold these biases: written as float

    # 1. weights and biases (on the untouched float graph: activations are renamed later)
    layer_of = {l.name: l for l in qmodel.layers}
    for node in graph.nodes:
        if node.op not in ("conv2d", "dense"):
            continue
        layer = layer_of[node.name]
        axis = 0 if node.op == "conv2d" else 1
        nn_lq, nn_codes, nn_scales = _nnforge_weights(layer, node, qmodel.config, axis)
        lq, codes, w_scales = nn_lq, nn_codes, nn_scales
        x_name = node.inputs[0].removesuffix("/requant")
        s_x, nn_s_x = exported[x_name].scale, graph.tensors[x_name].scale
        if lq.weight_bits > 8 and not wide:  # width clamped: re-quantize from the float weights
            clamped.append(f"{layer.name} (weights)")
            lq = dataclasses.replace(lq, weight_bits=8)
            codes, w_scales = quantize_weights(np.asarray(layer.attrs["weight"], np.float64), lq, axis)
        bias_scale = s_x * w_scales
        bias = np.asarray(node.attrs.bias, np.int64)  # nnforge's (with any bias correction)
        if lq is not nn_lq or s_x != nn_s_x:  # the same real bias at the exported scales
            bias = np.floor(bias * (nn_s_x * nn_scales) / bias_scale + 0.5).astype(np.int64)
        if np.abs(bias).max(initial=0) >= 2**31:
            wide_bias.append(layer.name)
        wdtype = "int16" if lq.weight_bits > 8 else "int8"
        if not lq.weight_signed:
            wdtype = "u" + wdtype
        rewrite_linear(g, layer, names, node.inputs, codes, w_scales, bias, bias_scale, wdtype,
                        per_channel=lq.per_channel)

    # 2. activations: Q/DQ pairs
    for t in tensors:
        _insert_qdq(g, names[t.name], exported[t.name])
    g.finish()
    if wide_bias:
        warnings.warn("these layers' bias codes need more than 32 bits, so their biases are float "
                      f"initializers (codes * s_x * s_w) instead of int32 DequantizeLinear: {', '.join(wide_bias)}",
                      stacklevel=2)
    if clamped:
        warnings.warn(f"opset {target} QuantizeLinear/DequantizeLinear have no 16-bit types, so these "
                      f"tensors were clamped to 8 bits (pass opset={WIDE_OPSET} to keep them): "
                      f"{', '.join(clamped)}", stacklevel=2)
    proto.producer_name = "nnforge"
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def _nnforge_weights(layer, node, config, axis: int):
    """(LayerQuant, codes, scales) reproducing the quantized graph's weight codes exactly.

    The config's settings come first; an ``auto`` config chose each layer's width during
    quantization, so the other widths are tried until the codes match.
    """
    from ..quant.quantize import quantize_weights

    lq = config.for_layer(layer.name, layer.op)
    w = np.asarray(layer.attrs["weight"], np.float64)
    for cand in [lq] + [dataclasses.replace(lq, weight_bits=b) for b in range(2, 17) if b != lq.weight_bits]:
        codes, scales = quantize_weights(w, cand, axis)
        if np.array_equal(codes, node.attrs.weight):
            return cand, codes, scales
    raise ModelError(f"layer {layer.name!r}: no weight width reproduces the quantized graph's weight "
                     "codes; was it built with another config?")


def _dq_weight(g: OnnxGraph, base: str, codes: np.ndarray, scales: np.ndarray, axis: int | None,
               dtype: str) -> str:
    """A DequantizeLinear of integer ``codes`` (scales float32, zero point 0); its output."""
    npdtype = np.dtype(dtype)
    q = g.add_init(f"{base}_quantized", codes.astype(npdtype))
    scales = np.asarray(scales, np.float32)
    per = axis is not None and scales.size > 1
    s = g.add_init(f"{base}_scale", scales.reshape(-1) if per else scales.reshape(-1)[:1].reshape(()))
    z = g.add_init(f"{base}_zero_point", np.zeros(scales.size if per else (), npdtype))
    out = g.fresh(f"{base}_DequantizeLinear_Output")
    attrs = {"axis": axis} if per else {}
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], name=g.fresh(f"{base}_DequantizeLinear"),
                                    **attrs))
    return out


def _bias(g: OnnxGraph, base: str, bias: np.ndarray, bias_scale: np.ndarray, per_channel: bool) -> str:
    """int32 DequantizeLinear of the bias codes at ``s_x * s_w``; a float initializer holding
    ``codes * s_x * s_w`` where the codes do not fit in int32."""
    if np.abs(bias).max(initial=0) < 2**31:
        return _dq_weight(g, base, bias, bias_scale, 0 if per_channel else None, "int32")
    return g.add_init(f"{base}_float", (bias * np.broadcast_to(bias_scale, bias.shape)).astype(np.float32))


def rewrite_linear(g: OnnxGraph, layer, names: dict[str, str], in_names: list[str], codes: np.ndarray,
                    w_scales: np.ndarray, bias: np.ndarray, bias_scale: np.ndarray, wdtype: str,
                    per_channel: bool, weight_fn=None, bias_fn=None) -> None:
    """Point a conv/dense layer's ONNX node at DequantizeLinear weights and bias.

    ``weight_fn(g, base, codes, scales, axis, wdtype)`` and ``bias_fn(g, base, bias, bias_scale,
    per_channel)`` write them (default: DequantizeLinear; the QONNX export passes its ``Quant``
    writers) and return the tensor the layer's node reads."""
    write_weight, write_bias = weight_fn or _dq_weight, bias_fn or _bias
    x = names[in_names[0].removesuffix("/requant")]
    out = names[layer.name]
    pre = out
    if layer.act != (None, None):  # the fused Relu/Clip stay float: find the tensor before them
        node = g.producer(pre)
        while node is not None and node.op_type in _CLAMP_OPS:
            pre = node.input[0]
            node = g.producer(pre)
    prod = g.producer(pre)
    base = var_key(layer.name).strip("/").replace("/", "_") or "layer"

    def base_of(tensor: str | None, suffix: str) -> str:
        return tensor if tensor and tensor in g.inits else f"{base}_{suffix}"

    if layer.op == "conv2d":
        if prod is not None and prod.op_type == "Conv" and prod.input[0] == x:
            wb = base_of(prod.input[1], "weight")
            bb = base_of(prod.input[2] if len(prod.input) > 2 else None, "bias")
            w = write_weight(g, wb, codes, w_scales, 0 if per_channel else None, wdtype)
            b = write_bias(g, bb, bias, bias_scale, per_channel)
            del prod.input[1:]
            prod.input.extend([w, b])
            return
        w = write_weight(g, f"{base}_weight", codes, w_scales, 0 if per_channel else None, wdtype)
        b = write_bias(g, f"{base}_bias", bias, bias_scale, per_channel)
        a = layer.attrs
        kh, kw = codes.shape[2:]
        _detach(g, pre)
        g.nodes.append(helper.make_node(
            "Conv", [x, w, b], [pre], name=g.fresh(f"{layer.name}/Conv"), kernel_shape=[int(kh), int(kw)],
            strides=list(a["strides"]), pads=list(a["padding"]), dilations=list(a["dilation"]), group=int(a["groups"])))
        return
    # dense: nnforge's weight is [K, N]; its channel axis is 1
    if (prod is not None and prod.op_type == "Gemm" and prod.input[0] == x and not attr(prod, "transA", 0)):
        trans_b = bool(attr(prod, "transB", 0))
        wb = base_of(prod.input[1], "weight")
        bb = base_of(prod.input[2] if len(prod.input) > 2 else None, "bias")
        w = write_weight(g, wb, codes.T if trans_b else codes, w_scales,
                         (0 if trans_b else 1) if per_channel else None, wdtype)
        b = write_bias(g, bb, bias, bias_scale, per_channel)
        del prod.input[1:]
        prod.input.extend([w, b])
        set_attr(prod, "alpha", 1.0)  # nnforge's weights and bias already include alpha, beta
        set_attr(prod, "beta", 1.0)
        return
    if prod is not None and prod.op_type == "Add":
        mm = next((g.producer(i) for i in prod.input if g.producer(i) is not None
                   and g.producer(i).op_type == "MatMul"), None)
        const = [i for i in prod.input if g.constant(i) is not None]
        if (mm is not None and mm.input[0] == x and len(const) == 1 and len(g.consumers(mm.output[0])) == 1):
            w = write_weight(g, base_of(mm.input[1], "weight"), codes, w_scales, 1 if per_channel else None, wdtype)
            b = write_bias(g, base_of(const[0], "bias"), bias, bias_scale, per_channel)
            mm.input[1] = w
            prod.input[list(prod.input).index(const[0])] = b
            return
    # canonical form: Gemm(transB=1) for 2-D inputs, else MatMul + Add
    _detach(g, pre)
    from ..frontend.relax_utils import static_shape

    rank2 = len(static_shape(layer.inputs[0]) or ()) == 2
    b = write_bias(g, f"{base}_bias", bias, bias_scale, per_channel)
    if rank2:
        w = write_weight(g, f"{base}_weight", codes.T, w_scales, 0 if per_channel else None, wdtype)
        g.nodes.append(helper.make_node("Gemm", [x, w, b], [pre], name=g.fresh(f"{layer.name}/Gemm"), transB=1))
    else:
        w = write_weight(g, f"{base}_weight", codes, w_scales, 1 if per_channel else None, wdtype)
        mid = g.fresh(f"{pre}_MatMul_Output")
        g.nodes.append(helper.make_node("MatMul", [x, w], [mid], name=g.fresh(f"{layer.name}/MatMul")))
        g.nodes.append(helper.make_node("Add", [mid, b], [pre], name=g.fresh(f"{layer.name}/Add")))


def _detach(g: OnnxGraph, tensor: str) -> None:
    """Rename ``tensor`` where it is produced, so a new node can produce it (the old one dies)."""
    node = g.producer(tensor)
    if node is not None:
        node.output[list(node.output).index(tensor)] = g.fresh(f"{tensor}_replaced")


def _insert_qdq(g: OnnxGraph, tensor: str, p: _Exported) -> None:
    """``tensor`` -> [Clip] -> QuantizeLinear -> DequantizeLinear -> (every former consumer)."""
    onnx_type = np.dtype(p.dtype)
    s = g.add_init(f"{tensor}_scale", np.asarray(p.scale, np.float32))
    z = g.add_init(f"{tensor}_zero_point", np.zeros((), onnx_type))
    if tensor in g.inputs:  # a graph input keeps its name: its consumers read the DQ output
        src, out = tensor, g.fresh(f"{tensor}_DequantizeLinear_Output")
        g.redirect(tensor, out)
    else:  # the producer writes a new name; the DQ output takes the tensor's name
        src, out = g.fresh(f"{tensor}_QuantizeLinear_Input"), tensor
        g.reproduce(tensor, src, " has no producer in the ONNX graph")
    if p.clamp:  # a type narrower than its container: clamp to the codes' real range first
        scale32 = float(np.float32(p.scale))
        lo = g.add_init(f"{tensor}_clip_min", np.asarray(p.lo * scale32, np.float32))
        hi = g.add_init(f"{tensor}_clip_max", np.asarray(p.hi * scale32, np.float32))
        clipped = g.fresh(f"{tensor}_Clip_Output")
        g.nodes.append(helper.make_node("Clip", [src, lo, hi], [clipped], name=g.fresh(f"{tensor}_Clip")))
        src = clipped
    q = g.fresh(f"{tensor}_QuantizeLinear_Output")
    g.nodes.append(helper.make_node("QuantizeLinear", [src, s, z], [q], name=g.fresh(f"{tensor}_QuantizeLinear")))
    g.nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [out], name=g.fresh(f"{tensor}_DequantizeLinear")))
