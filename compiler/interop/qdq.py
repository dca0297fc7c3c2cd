"""Interop with the ONNX quantization ecosystem: QDQ models (QuantizeLinear/DequantizeLinear).

* ``export_qdq(qmodel, path)`` writes the float ONNX graph of a quantized model with a
  QuantizeLinear/DequantizeLinear pair on every tensor nnforge quantizes and the weights and
  biases as DequantizeLinear of integer initializers, so onnxruntime (or any QDQ consumer)
  runs nnforge's quantization.
* ``import_qdq(model)`` reads a QDQ model (e.g. from ``onnxruntime.quantization.
  quantize_static(..., quant_format=QuantFormat.QDQ)``), strips the pairs to recover the float
  graph (dequantized weights as float initializers) and returns the activations'
  scale / zero point / type.
* ``nnforge_scales`` and ``quantize_with_scales`` map those onto nnforge's contract (zero point
  always 0) and build a quantized model that keeps them.
* ``compare_with_onnxruntime`` measures how closely onnxruntime runs an exported model.

``docs/interop.md`` documents the mapping and where onnxruntime and nnforge differ.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelError
from ..quant.numerics import QType

if TYPE_CHECKING:  # nnforge.quantized imports the compiler; import it lazily at run time
    from nnforge.model import Model
    from nnforge.quantized import QuantizedModel

__all__ = [
    "QDQParam", "Agreement", "export_qdq", "import_qdq", "onnx_tensor_names", "nnforge_scales",
    "quantize_with_scales", "compare_with_onnxruntime", "ZERO_POINT_MODES",
]

# QDQ integer container types: name -> (TensorProto type, bits, signed)
_CONTAINERS = {
    "int8": (TensorProto.INT8, 8, True),
    "uint8": (TensorProto.UINT8, 8, False),
    "int16": (TensorProto.INT16, 16, True),
    "uint16": (TensorProto.UINT16, 16, False),
    "int4": (TensorProto.INT4, 4, True),
    "uint4": (TensorProto.UINT4, 4, False),
}
_NARROW = {"int8", "uint8"}  # every opset; int32 too for a DequantizeLinear (biases)
_WIDE = {"int16", "uint16", "int4", "uint4"}  # from opset 21
_WIDE_OPSET = 21  # first ai.onnx opset whose QuantizeLinear/DequantizeLinear take (u)int16
_PER_CHANNEL_OPSET = 13  # first opset with the ``axis`` attribute
ZERO_POINT_MODES = ("recentre", "strict")

# ops whose output is clamped by a fused activation (nnforge fuses them into the layer before)
_CLAMP_OPS = {"Relu", "Clip", "Max", "Min"}
# ops that keep a nonnegative input nonnegative (for re-inserting ReLUs on import)
_KEEPS_SIGN = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten",
               "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat", "Resize",
               "DepthToSpace", "SpaceToDepth", "Slice", "Gather", "Split"}
_NONNEG_OPS = {"Relu", "Sigmoid", "Softmax", "Abs", "Exp", "Sqrt", "HardSigmoid", "Softplus"}
_QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd",
                  "QLinearMul", "QGemm", "QLinearConcat", "QLinearAveragePool",
                  "QLinearGlobalAveragePool", "DynamicQuantizeLinear"}


# ---------------------------------------------------------------------------------------------
# Quantization parameters of one tensor, and their zero-point-0 form
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QDQParam:
    """The quantization of one activation in a QDQ model: ``real = (q - zero_point) * scale``.

    ``scale`` is the float32 value stored in the model, as a Python float (exactly).
    """

    scale: float
    zero_point: int
    dtype: str  # "int8", "uint8", "int16", "uint16"

    @property
    def bits(self) -> int:
        return _CONTAINERS[self.dtype][1]

    @property
    def signed(self) -> bool:
        return _CONTAINERS[self.dtype][2]

    @property
    def code_range(self) -> tuple[int, int]:
        t = QType(self.bits, self.signed)
        return t.lo, t.hi

    @property
    def real_range(self) -> tuple[float, float]:
        """The real values the codes span: ``((lo - zp) * scale, (hi - zp) * scale)``."""
        lo, hi = self.code_range
        return (lo - self.zero_point) * self.scale, (hi - self.zero_point) * self.scale

    @property
    def exact(self) -> bool:
        """Whether a zero-point-0 type on the same grid exists (zero point 0, at the bottom of
        the container, or in its middle); then ``to_nnforge`` only shifts codes."""
        lo, _ = self.code_range
        return self.zero_point in (0, lo, lo + (1 << (self.bits - 1)))

    def to_nnforge(self, mode: str = "recentre", name: str = "?") -> tuple[QType, float]:
        """The nnforge type and scale (zero point 0) for this tensor.

        * zero point 0: the same type and scale;
        * zero point at the container's bottom (uint8 zp 0 is the case above, int8 zp -128):
          unsigned, same width and scale (codes shift by -zp, the real grid is unchanged);
        * zero point in the middle (uint8 zp 128): signed, same width and scale;
        * any other zero point (asymmetric): with ``mode="recentre"``, signed, same width, with
          the smallest scale whose codes ``[-2^(b-1), 2^(b-1)-1]`` cover the same real range
          ``[lo_real, hi_real]``: ``max(-lo_real / 2^(b-1), hi_real / (2^(b-1) - 1))``; with
          ``mode="strict"``, a ModelError naming the tensor.
        """
        _check_mode(mode)
        lo, _ = self.code_range
        b, half = self.bits, 1 << (self.bits - 1)
        if self.zero_point == 0:
            return QType(b, self.signed), self.scale
        if self.zero_point == lo:
            return QType(b, False), self.scale
        if self.zero_point == lo + half:
            return QType(b, True), self.scale
        if mode == "strict":
            rlo, rhi = self.real_range
            raise ModelError(
                f"tensor {name!r}: zero point {self.zero_point} ({self.dtype}, real range "
                f"[{rlo:.6g}, {rhi:.6g}]) must be one of {sorted({0, lo, lo + half})} to keep its scale with "
                f"nnforge's zero point 0; quantize with symmetric activations "
                f"(extra_options={{'ActivationSymmetric': True}}) or import with zero_point='recentre'")
        rlo, rhi = self.real_range
        scale = max(-rlo / half, rhi / (half - 1))
        return QType(b, True), float(scale)


def _check_mode(mode: str) -> None:
    if mode not in ZERO_POINT_MODES:
        raise ModelError(f"zero_point must be one of {ZERO_POINT_MODES}, not {mode!r}")


# ---------------------------------------------------------------------------------------------
# nnforge tensor names <-> ONNX tensor names
# ---------------------------------------------------------------------------------------------
def _var_key(name: str) -> str:
    """The Relax variable name TVM gives an ONNX node's result (it replaces '.' by '_')."""
    return name.replace(".", "_")


def onnx_tensor_names(model: Model, layers: list) -> dict[str, str]:
    """nnforge tensor name (a model input or a layer name) -> the ONNX tensor holding it.

    ``layers`` are the model's float layers as the quantizer named them (``qmodel.layers``).

    A layer's output is a Relax variable the importer named after an ONNX node (its name, or
    its first output's name; TVM writes '.' as '_' and counts repeated names); that node's
    first output is the ONNX tensor.  ``model.onnx_names`` (Relax name -> ONNX node name),
    where the model has it, is used first.  A layer whose output is the function's result
    maps to the graph output at the same position.
    """
    from ..frontend.relax_import import node_display_name
    from ..frontend.relax_utils import output_exprs

    by_key: dict[str, str] = {}
    by_display: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for node in model.onnx.graph.node:
        if not node.output:
            continue
        display = node_display_name(node)
        by_display[display].append(node.output[0])
        key = _var_key(display)
        n = seen[key]
        seen[key] += 1
        by_key[key if n == 0 else f"{key}{n}"] = node.output[0]
    known = getattr(model, "onnx_names", None) or {}
    results = output_exprs(model.relax["main"])
    names = {s.name: s.name for s in model.inputs}
    outputs = getattr(known, "outputs", {})  # recorded by the importer: exact for repeated names
    for layer in layers:
        var = layer.output
        if var.name in outputs:
            names[layer.name] = outputs[var.name]
            continue
        if len(by_display.get(known.get(var.name, ""), ())) == 1:
            names[layer.name] = by_display[known[var.name]][0]
            continue
        if var.name in by_key:
            names[layer.name] = by_key[var.name]
            continue
        index = next((i for i, r in enumerate(results) if r.same_as(var)), None)
        if index is not None:
            names[layer.name] = model.output_names[index]
            continue
        raise ModelError(f"layer {layer.name!r}: its output (Relax variable {var.name!r}) matches no "
                         "ONNX node name or graph output, so it has no ONNX tensor to carry its scale")
    return names


# ---------------------------------------------------------------------------------------------
# Graph editing helpers
# ---------------------------------------------------------------------------------------------
class _Graph:
    """A mutable view of an ONNX graph: nodes, initializers, fresh names."""

    def __init__(self, graph: onnx.GraphProto):
        self.g = graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.outputs = [o.name for o in graph.output]
        self.inputs = [i.name for i in graph.input if i.name not in self.inits]
        self.used = {n for node in self.nodes for n in (*node.input, *node.output)} | set(self.inits)
        self.used |= {i.name for i in graph.input} | set(self.outputs)
        self.used |= {n.name for n in self.nodes}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def redirect(self, tensor: str, new: str) -> None:
        """Every consumer of ``tensor`` reads ``new`` instead."""
        for node in self.consumers(tensor):
            node.input[:] = [new if name == tensor else name for name in node.input]

    def reproduce(self, tensor: str, new: str, missing: str) -> None:
        """``tensor``'s producer writes ``new`` instead (so an inserted node can produce ``tensor``);
        ModelError "tensor 'T'" + ``missing`` when nothing in the graph produces it."""
        node = self.producer(tensor)
        if node is None:
            raise ModelError(f"tensor {tensor!r}{missing}")
        node.output[list(node.output).index(tensor)] = new

    def add_init(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def constant(self, tensor: str) -> np.ndarray | None:
        if tensor in self.inits:
            return numpy_helper.to_array(self.inits[tensor])
        node = self.producer(tensor)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    return np.asarray(helper.get_attribute_value(a))
        return None

    def finish(self) -> None:
        """Drop dead nodes and unused initializers, sort topologically, write back."""
        live: set[str] = set(self.outputs)
        keep = []
        for node in reversed(_toposort(self.nodes, set(self.inputs) | set(self.inits), strict=False)):
            if any(o in live for o in node.output):
                keep.append(node)
                live.update(i for i in node.input if i)
        nodes = _toposort(list(reversed(keep)), set(self.inputs) | set(self.inits))
        used = {i for n in nodes for i in n.input} | set(self.outputs)
        del self.g.node[:]
        self.g.node.extend(nodes)
        del self.g.initializer[:]
        self.g.initializer.extend(t for name, t in self.inits.items() if name in used)
        kept_inputs = [i for i in self.g.input if i.name not in self.inits or i.name in used]
        del self.g.input[:]
        self.g.input.extend(kept_inputs)
        produced = {o for n in nodes for o in n.output}
        vi = [v for v in self.g.value_info if v.name in produced and v.name not in self.outputs]
        del self.g.value_info[:]
        self.g.value_info.extend(vi)


def _toposort(nodes: list[onnx.NodeProto], available: set[str], strict: bool = True) -> list[onnx.NodeProto]:
    """Nodes in an order where each input is produced first; ``strict=False`` appends nodes
    with unproduced inputs (dead ones, dropped later) instead of raising."""
    ready = set(available) | {""}
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                out.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            if not strict:
                return out + rest
            missing = sorted({i for n in rest for i in n.input if i not in ready})[:5]
            raise ModelError(f"the edited graph has no topological order (unproduced tensors {missing})")
        pending = rest
    return out


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


# ---------------------------------------------------------------------------------------------
# EXPORT
# ---------------------------------------------------------------------------------------------
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
    _, bits, signed = _CONTAINERS[dtype]
    full = QType(bits, signed)
    if qt.bits == qtype.bits:
        return _Exported(dtype, scale, qtype.lo, qtype.hi, (qtype.lo, qtype.hi) != (full.lo, full.hi), False)
    # width clamped: the same real threshold over 8-bit codes
    return _Exported(dtype, scale * qtype.qmax / qt.qmax, qt.lo, qt.hi, False, True)


def export_qdq(qmodel: QuantizedModel, path: str | Path | None = None, *, opset: int | None = None
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

    from ..quant.quantize import _quantize_weights

    proto = onnx.ModelProto()
    proto.CopyFrom(qmodel.float_model.onnx)
    target = max(_opset(proto), _PER_CHANNEL_OPSET, opset or 0)
    if target != _opset(proto):
        try:
            proto = version_converter.convert_version(proto, target)
        except Exception as err:  # noqa: BLE001 - the converter raises many types
            raise ModelError(f"the model could not be converted from opset {_opset(proto)} to "
                             f"{target} for the QDQ export: {err}") from err
        if target >= _WIDE_OPSET and proto.ir_version < 10:
            proto.ir_version = 10
    wide = target >= _WIDE_OPSET
    graph = qmodel.graph
    names = onnx_tensor_names(qmodel.float_model, qmodel.layers)
    g = _Graph(proto.graph)

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
            codes, w_scales = _quantize_weights(np.asarray(layer.attrs["weight"], np.float64), lq, axis)
        bias_scale = s_x * w_scales
        bias = np.asarray(node.attrs["bias"], np.int64)  # nnforge's (with any bias correction)
        if lq is not nn_lq or s_x != nn_s_x:  # the same real bias at the exported scales
            bias = np.floor(bias * (nn_s_x * nn_scales) / bias_scale + 0.5).astype(np.int64)
        if np.abs(bias).max(initial=0) >= 2**31:
            wide_bias.append(layer.name)
        wdtype = "int16" if lq.weight_bits > 8 else "int8"
        if not lq.weight_signed:
            wdtype = "u" + wdtype
        _rewrite_linear(g, layer, names, node.inputs, codes, w_scales, bias, bias_scale, wdtype,
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
                      f"tensors were clamped to 8 bits (pass opset={_WIDE_OPSET} to keep them): "
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
    from ..quant.quantize import _quantize_weights

    lq = config.for_layer(layer.name, layer.op)
    w = np.asarray(layer.attrs["weight"], np.float64)
    for cand in [lq] + [dataclasses.replace(lq, weight_bits=b) for b in range(2, 17) if b != lq.weight_bits]:
        codes, scales = _quantize_weights(w, cand, axis)
        if np.array_equal(codes, node.attrs["weight"]):
            return cand, codes, scales
    raise ModelError(f"layer {layer.name!r}: no weight width reproduces the quantized graph's weight "
                     "codes; was it built with another config?")


def _dq_weight(g: _Graph, base: str, codes: np.ndarray, scales: np.ndarray, axis: int | None,
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


def _bias(g: _Graph, base: str, bias: np.ndarray, bias_scale: np.ndarray, per_channel: bool) -> str:
    """int32 DequantizeLinear of the bias codes at ``s_x * s_w``; a float initializer holding
    ``codes * s_x * s_w`` where the codes do not fit in int32."""
    if np.abs(bias).max(initial=0) < 2**31:
        return _dq_weight(g, base, bias, bias_scale, 0 if per_channel else None, "int32")
    return g.add_init(f"{base}_float", (bias * np.broadcast_to(bias_scale, bias.shape)).astype(np.float32))


def _rewrite_linear(g: _Graph, layer, names: dict[str, str], in_names: list[str], codes: np.ndarray,
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
    base = _var_key(layer.name).strip("/").replace("/", "_") or "layer"

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
    if (prod is not None and prod.op_type == "Gemm" and prod.input[0] == x and not _attr(prod, "transA", 0)):
        trans_b = bool(_attr(prod, "transB", 0))
        wb = base_of(prod.input[1], "weight")
        bb = base_of(prod.input[2] if len(prod.input) > 2 else None, "bias")
        w = write_weight(g, wb, codes.T if trans_b else codes, w_scales,
                         (0 if trans_b else 1) if per_channel else None, wdtype)
        b = write_bias(g, bb, bias, bias_scale, per_channel)
        del prod.input[1:]
        prod.input.extend([w, b])
        _set_attr(prod, "alpha", 1.0)  # nnforge's weights and bias already include alpha, beta
        _set_attr(prod, "beta", 1.0)
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


def _detach(g: _Graph, tensor: str) -> None:
    """Rename ``tensor`` where it is produced, so a new node can produce it (the old one dies)."""
    node = g.producer(tensor)
    if node is not None:
        node.output[list(node.output).index(tensor)] = g.fresh(f"{tensor}_replaced")


def _insert_qdq(g: _Graph, tensor: str, p: _Exported) -> None:
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


# ---------------------------------------------------------------------------------------------
# IMPORT
# ---------------------------------------------------------------------------------------------
def _qparams(g: _Graph, node: onnx.NodeProto, x_dtype: np.dtype | None = None
             ) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(scale float32, zero point, axis, container dtype) of a Q or DQ node."""
    if _attr(node, "block_size", 0):
        raise ModelError(f"node {node.name!r}: blocked quantization (block_size) is not supported")
    scale = g.constant(node.input[1])
    if scale is None:
        raise ModelError(f"node {node.name!r}: the scale {node.input[1]!r} must be a constant")
    zp = g.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zp is not None:
        dtype = zp.dtype
    elif node.op_type == "QuantizeLinear":
        out_type = _attr(node, "output_dtype", 0)
        dtype = helper.tensor_dtype_to_np_dtype(out_type) if out_type else np.dtype(np.uint8)
    else:
        dtype = x_dtype if x_dtype is not None else np.dtype(np.uint8)
    if zp is None:
        zp = np.zeros(scale.shape, dtype)
    elif zp.shape != scale.shape and not (zp.size == scale.size == 1):
        raise ModelError(f"node {node.name!r}: the zero point {node.input[2]!r} must have the scale's shape "
                         f"{list(scale.shape)}, not {list(zp.shape)}")
    return scale.astype(np.float32), zp, int(_attr(node, "axis", 1)), np.dtype(dtype).name


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
    _check_mode(zero_point)
    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    out_model = onnx.ModelProto()
    out_model.CopyFrom(proto)
    g = _Graph(out_model.graph)
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
            _check_dtype(node, dtype, _opset(proto), constant=True)
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
        _check_dtype(node, dtype, _opset(proto))
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
        if dtype not in _CONTAINERS:
            raise ModelError(f"tensor {x!r}: activation type {dtype} is not one of {sorted(_CONTAINERS)}")
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
        _rename(g, src, out)
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
        _rename(g, src, y)
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
    allowed = _NARROW | (_WIDE if opset >= _WIDE_OPSET else set()) | ({"int32"} if constant else set())
    if dtype not in allowed:
        later = "" if opset >= _WIDE_OPSET else f"; int4, uint4, int16, uint16 from opset {_WIDE_OPSET}"
        raise ModelError(f"node {node.name!r}: the {node.op_type} type must be one of {', '.join(sorted(allowed))} "
                         f"at opset {opset}{later}, not {dtype}")


def _check_channel_axis(g: _Graph, node: onnx.NodeProto, axis: int, ndim: int) -> None:
    """A per-axis weight scale must run along the consumer's output channels."""
    for user in g.consumers(node.output[0]):
        if user.op_type not in ("Conv", "Gemm", "MatMul") or list(user.input).index(node.output[0]) != 1:
            continue
        want = {"Conv": 0, "Gemm": 0 if _attr(user, "transB", 0) else 1, "MatMul": ndim - 1}[user.op_type]
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


def _rename(g: _Graph, old: str, new: str) -> None:
    for node in g.nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new
    g.used.add(new)


def _insert_relus(g: _Graph, params: dict[str, QDQParam]) -> None:
    """Put back the Relu that a QuantizeLinear with real range [0, ...] stood for."""
    starts_at_zero = {t for t, p in params.items() if p.zero_point == p.code_range[0]}
    nonneg = {t for t in g.inputs if t in starts_at_zero}
    for node in _toposort(list(g.nodes), set(g.inputs) | set(g.inits) | {""}):
        op = node.op_type
        if op in _NONNEG_OPS:
            ok = True
        elif op == "Clip":
            lo = g.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else _attr(node, "min")
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


def _restore_names(g: _Graph) -> dict[str, str]:
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
        _rename(g, name, new)
        live.add(new)
        renames[name] = new
    return renames


# ---------------------------------------------------------------------------------------------
# Imported scales -> nnforge
# ---------------------------------------------------------------------------------------------
def nnforge_scales(model: Model, scales: dict[str, QDQParam | tuple[QType, float]], layers: list,
                   zero_point: str = "recentre") -> dict[str, tuple[QType, float]]:
    """Imported parameters (by ONNX tensor name) -> ``(QType, scale)`` by nnforge tensor name.

    ``layers`` are the model's float layers as the quantizer names them (``qmodel.layers``).
    Only tensors nnforge quantizes are returned (model inputs and layer outputs); ONNX tensors
    without an nnforge counterpart (inside a fused layer) are left out.
    """
    _check_mode(zero_point)
    names = onnx_tensor_names(model, layers)
    out: dict[str, tuple[QType, float]] = {}
    for nn_name, onnx_name in names.items():
        if onnx_name not in scales:
            continue
        p = scales[onnx_name]
        out[nn_name] = p.to_nnforge(zero_point, onnx_name) if isinstance(p, QDQParam) else (p[0], float(p[1]))
    return out


def quantize_with_scales(model: Model, calib: list[np.ndarray], scales: dict[str, QDQParam | tuple[QType, float]],
                         config=None, zero_point: str = "recentre", batch_size: int = 256) -> QuantizedModel:
    """Quantize ``model`` keeping the given activation types and scales (e.g. from ``import_qdq``).

    ``scales`` is keyed by ONNX tensor name (``QDQParam``, or ``(QType, scale)``).  Every
    requantizing layer whose output has an entry gets that scale (``quantize(...,
    fixed_scales=...)``) and that type (a per-layer ``act_bits``/``act_signed`` override added
    to ``config``); a model input gets the scale, its type comes from the config and the
    calibration data as usual.  Pass-through layers (max pool, reshape, ...) copy their input's
    parameters and a concat's inputs take the concat's, as always.  Weights, biases and the
    requantization multipliers follow from the scales; tensors ``scales`` leaves out are
    calibrated on ``calib``.  An imported parameter that the result does not keep is named in
    a warning.
    """
    from nnforge.quantized import calibrate, quantize

    from ..quant.quant_config import QuantConfig, parse_config

    cfg = parse_config(config)
    stats = calibrate(model, calib, batch_size=batch_size)
    # a first build, only to learn the layers under the names the quantizer gives them
    layers = quantize(model, None, cfg, batch_size=batch_size, stats=stats).layers
    fixed = nnforge_scales(model, scales, layers, zero_point)
    overrides = {name: dict(values) for name, values in cfg.layers.items()}
    for layer in layers:
        if layer.name in fixed:
            qtype, _ = fixed[layer.name]
            overrides.setdefault(layer.name, {}).update(act_bits=qtype.bits, act_signed=qtype.signed)
    cfg = QuantConfig(default=cfg.default, op_types=cfg.op_types, layers=overrides, auto=cfg.auto)
    qmodel = quantize(model, None, cfg, batch_size=batch_size, stats=stats,
                      fixed_scales={name: scale for name, (_, scale) in fixed.items()})
    lost = [f"{name} ({t.qtype}, {t.scale:.6g} instead of {fixed[name][0]}, {fixed[name][1]:.6g})"
            for name, t in qmodel.graph.tensors.items()
            if name in fixed and (t.qtype, t.scale) != fixed[name]]
    if lost:
        warnings.warn("these imported activation parameters were not kept: " + "; ".join(lost), stacklevel=2)
    return qmodel


# ---------------------------------------------------------------------------------------------
# Measuring agreement with onnxruntime
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Agreement:
    """nnforge's integer model vs onnxruntime on a QDQ export, over one output."""

    samples: int
    argmax: float  # fraction of samples with the same argmax
    max_abs_diff: float  # of the dequantized outputs
    codes: float  # fraction of identical output codes (elementwise)
    max_code_diff: int

    def __str__(self) -> str:
        return (f"{self.samples} samples: argmax {self.argmax:.2%} identical, codes {self.codes:.2%} "
                f"identical (max difference {self.max_code_diff}), max |diff| {self.max_abs_diff:.4g}")


def compare_with_onnxruntime(qmodel: QuantizedModel, qdq: onnx.ModelProto | str | Path,
                             arrays: list[np.ndarray], optimize: bool = True,
                             batch_size: int = 256) -> dict[str, Agreement]:
    """Run ``qmodel.predict`` and onnxruntime on the QDQ model; compare every output.

    ``optimize=False`` disables onnxruntime's graph optimizations, so it runs the QDQ graph as
    written (DequantizeLinear -> float op -> QuantizeLinear) instead of its fused integer
    kernels (QLinearConv, QGemm, ...).  Codes are compared on the quantized tensors that feed
    the outputs (before a host softmax).
    """
    import onnxruntime as ort

    proto = onnx.load(str(qdq)) if isinstance(qdq, str | Path) else qdq
    names = onnx_tensor_names(qmodel.float_model, qmodel.layers)
    graph = qmodel.graph
    code_tensors = [names[o] for o in graph.outputs]
    run_proto = onnx.ModelProto()
    run_proto.CopyFrom(proto)
    have = {o.name for o in run_proto.graph.output}
    for t in code_tensors:
        if t not in have:
            run_proto.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(run_proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_names = [s.name for s in qmodel.float_model.inputs]
    out_names = qmodel.float_model.output_names
    ort_outs: dict[str, list[np.ndarray]] = defaultdict(list)
    n = len(arrays[0])
    wanted = list(dict.fromkeys(out_names + code_tensors))
    for start in range(0, n, batch_size):
        feeds = {k: np.asarray(a[start:start + batch_size], np.float32) for k, a in zip(in_names, arrays)}
        for name, value in zip(wanted, sess.run(wanted, feeds)):
            ort_outs[name].append(value)
    ours = qmodel.predict(arrays, batch_size=batch_size)
    if graph.host_ops:
        ref = qmodel.reference(qmodel.quantize_inputs(arrays))
        our_codes = [ref[o] for o in graph.outputs]
    else:
        our_codes = [np.floor(ours[n_] / graph.tensors[o].scale + 0.5).astype(np.int64)
                     for n_, o in zip(out_names, graph.outputs)]
    result = {}
    for i, name in enumerate(out_names):
        theirs = np.concatenate(ort_outs[name])
        mine = ours[name]
        s32 = float(np.float32(graph.tensors[graph.outputs[i]].scale))
        tc = np.floor(np.concatenate(ort_outs[code_tensors[i]]) / s32 + 0.5).astype(np.int64)
        diff = np.abs(tc - our_codes[i])
        same_arg = np.mean(np.argmax(mine.reshape(n, -1), 1) == np.argmax(theirs.reshape(n, -1), 1))
        result[name] = Agreement(n, float(same_arg), float(np.max(np.abs(mine.astype(np.float64) - theirs))),
                                 float(np.mean(diff == 0)), int(diff.max(initial=0)))
    return result
