"""A quantized model as QONNX: ``Quant`` nodes (``qonnx.custom_op.general``) that FINN, hls4ml and
qonnx's executor read, and that ``nnforge.load`` reads back into the same ``QGraph``.

``export_qonnx(qmodel, path)`` starts from ``qmodel.float_model.onnx`` (the model as given, or
the float model under a pre-quantized one) and adds:

* **weights**: ``Quant(codes * s, s, 0, b)`` on every conv / dense weight: nnforge's codes and
  per-channel (or per-tensor) scales, broadcast along the output channel of the ONNX layout,
  ``signed`` as the layer's weights, ``narrow = 1`` where the codes never use the lowest code
  (nnforge's symmetric weights: ``[-(2^(b-1) - 1), 2^(b-1) - 1]``), rounding ``ROUND`` (the
  value is on the grid, so any mode gives the code);
* **biases**: ``Quant`` of nnforge's bias codes at ``s_x * s_w`` (per channel), signed, as many
  bits as the codes need (at most 32);
* **activations**: a ``Quant`` on every tensor nnforge quantizes (the model inputs and every
  layer's output, after its fused Relu/Clip): ``bit_width``/``signed`` of its ``QType``, the
  scale, ``narrow = 1`` where the layer's clamp is the narrow range, and ``rounding_mode``
  ``FLOOR`` where nnforge truncates (``TRN``); where it rounds (``RND``, and the model inputs
  always), ``ROUND`` by default, the mode FINN and hls4ml read (hls4ml refuses every other
  but ``FLOOR``), or ``HALF_UP`` (``rounding="HALF_UP"``), the closest to nnforge's.  The float tensor keeps its name; consumers read ``T_Quant_Output``
  (a graph output keeps its name: the producer writes ``T_Quant_Input``), so the import
  restores every name.

Layers whose ONNX form differs from nnforge's (folded BatchNorm, ``transA``, ...) are written
as one canonical Conv / Gemm, as ``qdq.export_qdq`` does (``qdq_export.rewrite_linear``).

**Scales**: a QONNX scale is float32; nnforge's (``scale_mode = float``) are float64.  The
float64 values are also recorded in the model's ``metadata_props`` under ``nnforge.scales``
(``{Quant node name: [float.hex(), ...]}``); ``qonnx_import.strip_qonnx`` uses a recorded
value only where its float32 rounding is the node's scale, so the round trip
export -> ``nnforge.load`` gives the same ``QGraph`` bit for bit, while every other reader
(and an edited scale) sees the float32 model.  ``pow2`` scales are float32 values anyway.

What QONNX cannot say, refused (``InputError`` naming the layer): ``WRAP`` overflow (a
``Quant`` saturates).  Not expressed, and measured in docs/interop.md: nnforge's integer
multiplier ``M / 2^n`` (qonnx computes each layer in float32), and the tie, which nnforge's
``RND`` rounds up: ``ROUND`` rounds it to even (so ties whose floor is even differ), ``HALF_UP``
away from zero (so only negative ties differ).  Lookup tables are written as
the float op they were built from (Sigmoid, Tanh, ...) followed by a ``Quant``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..errors import InputError, ModelError
from ..quant.numerics import QType
from .qonnx_import import SCALES_KEY

DOMAIN = "qonnx.custom_op.general"
EXACT_BIAS = 2**22  # bias codes below this survive float32 (codes * s) and the division by s exactly


ROUNDINGS = ("ROUND", "HALF_UP")  # QONNX modes for nnforge's RND (TRN is FLOOR)


def export_qonnx(qmodel: Any, path: str | Path | None = None, *, rounding: str = "ROUND"
                 ) -> onnx.ModelProto:
    """Write ``qmodel`` as a QONNX model (and return it); ``rounding`` is the mode written for
    nnforge's RND: ``ROUND`` (FINN, hls4ml) or ``HALF_UP``.  See the module doc."""
    from .onnx_graph import OnnxGraph
    from .onnx_names import onnx_tensor_names
    from .qdq_export import rewrite_linear

    if rounding not in ROUNDINGS:
        raise InputError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    graph = qmodel.graph
    wrapped = [n.name for n in graph.nodes if getattr(n.attrs, "overflow", None) == "WRAP"]
    if wrapped:
        raise InputError(f"layer {wrapped[0]!r}: overflow must be SAT to export QONNX (a Quant saturates), not WRAP"
                         + (f" (also {', '.join(map(repr, wrapped[1:]))})" if len(wrapped) > 1 else ""))
    proto = onnx.ModelProto()
    proto.CopyFrom(qmodel.float_model.onnx)
    names = onnx_tensor_names(qmodel.float_model, qmodel.layers)
    g = OnnxGraph(proto.graph)
    recorded: dict[str, list[str]] = {}
    inexact_bias: list[str] = []

    # 1. weights and biases, on the untouched float graph (activations are rewired after)
    layer_of = {l.name: l for l in qmodel.layers}
    for node in graph.nodes:
        if node.op not in ("conv2d", "dense"):
            continue
        layer = layer_of[node.name]
        codes = np.asarray(node.attrs.weight, np.int64)
        axis = 0 if node.op == "conv2d" else 1
        w_scales = _weight_scales(node, codes.shape[axis])
        wtype = _weight_type(qmodel, layer, node, codes)
        per_channel = np.unique(w_scales).size > 1
        s_x = graph.tensors[node.inputs[0]].scale
        bias = np.asarray(node.attrs.bias, np.int64)
        if np.abs(bias).max(initial=0) >= EXACT_BIAS:
            inexact_bias.append(layer.name)
        narrow = wtype.signed and int(codes.min(initial=0)) > wtype.lo

        def weight_fn(g, base, codes, scales, axis, _dtype, wtype=wtype, narrow=narrow):
            return _quant_constant(g, base, codes, scales, axis, wtype, narrow, recorded)

        def bias_fn(g, base, bias, bias_scale, per_channel):
            return _quant_constant(g, base, bias, bias_scale, 0 if per_channel else None,
                                   QType(_bias_bits(bias), True), False, recorded)

        rewrite_linear(g, layer, names, node.inputs, codes, w_scales, bias, s_x * w_scales, "", per_channel,
                        weight_fn=weight_fn, bias_fn=bias_fn)

    # 2. activations: one Quant on every tensor nnforge quantizes
    producer = {n.output: n for n in graph.nodes}
    for t in graph.tensors.values():
        if t.name not in names:  # a concat input's requant: the concat's own Quant re-rounds it
            continue
        node = producer.get(t.name)
        mode = "RND" if node is None else _rounding(qmodel, node)
        narrow = node is not None and _narrow_clamp(node, t.qtype)
        _quant_activation(g, names[t.name], t.qtype, t.scale, narrow, "FLOOR" if mode == "TRN" else rounding,
                          recorded)
    g.finish()

    if not any(o.domain == DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    kept = [p for p in proto.metadata_props if p.key != SCALES_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if recorded:
        proto.metadata_props.append(onnx.StringStringEntryProto(
            key=SCALES_KEY, value=json.dumps(recorded, sort_keys=True, separators=(",", ":"))))
    proto.producer_name = "nnforge"
    onnx.checker.check_model(proto)  # the custom domain's nodes are not checked, the rest of the graph is
    if inexact_bias:
        warnings.warn(f"these layers' bias codes reach 2^22 or more, beyond what float32 codes * scale holds "
                      f"exactly, so a QONNX reader may round them by a code: {', '.join(inexact_bias)}", stacklevel=2)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def _weight_scales(node, channels: int) -> np.ndarray:
    scales = node.attrs.weight_scale
    if scales is None:
        raise ModelError(f"layer {node.name!r}: its weight scales must be in the quantized graph to export QONNX, "
                         "not missing (a graph saved before they were recorded: quantize it again)")
    return np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (channels,)).copy()


def _weight_type(qmodel, layer, node, codes: np.ndarray) -> QType:
    """The layer's weight type: its recorded width, its config's sign; checked against the codes."""
    bits = int(node.attrs.weight_bits or qmodel.config.for_layer(layer.name, layer.op).weight_bits)
    signed = bool(qmodel.config.for_layer(layer.name, layer.op).weight_signed) or int(codes.min(initial=0)) < 0
    qtype = QType(bits, signed)
    if codes.size and (int(codes.min()) < qtype.lo or int(codes.max()) > qtype.hi):
        raise ModelError(f"layer {layer.name!r}: its weight codes must lie in {qtype}'s range [{qtype.lo}, "
                         f"{qtype.hi}], not [{int(codes.min())}, {int(codes.max())}]")
    return qtype


def _bias_bits(bias: np.ndarray) -> int:
    """The signed width that holds every bias code (2..32)."""
    most = int(np.abs(bias).max(initial=0))
    bits = max(2, most.bit_length() + 1)
    if bits > 32:
        raise ModelError(f"a bias code needs {bits} bits; a QONNX bias must hold at most 32, not {bits} "
                         "(the layer's scales are too far apart)")
    return bits


def _rounding(qmodel, node) -> str:
    """How the layer producing a tensor rounds: its own attribute, else its config's (lookup tables)."""
    if hasattr(node.attrs, "rounding"):
        return str(node.attrs.rounding)
    if node.op == "lut":
        layer = next((l for l in qmodel.layers if l.name == node.name), None)
        if layer is not None:
            return qmodel.config.for_layer(layer.name, layer.op).rounding
    return "RND"  # pass-through layers: codes already on the grid, any mode keeps them


def _narrow_clamp(node, qtype: QType) -> bool:
    """Whether the layer's clamp is exactly QONNX's narrow range of ``qtype``."""
    lo, hi = getattr(node.attrs, "lo", None), getattr(node.attrs, "hi", None)
    if qtype.signed:
        return lo is not None and int(lo) == qtype.lo + 1 and (hi is None or int(hi) == qtype.hi)
    return hi is not None and int(hi) == qtype.hi - 1 and (lo is None or int(lo) == qtype.lo)


def _scalar(g, base: str, value: float) -> str:
    return g.add_init(base, np.asarray(value, np.float32))


def _record(recorded: dict[str, list[str]], node_name: str, scales: np.ndarray) -> None:
    """Keep the float64 scales where float32 rounds them."""
    s = np.asarray(scales, np.float64).reshape(-1)
    if np.any(s.astype(np.float32).astype(np.float64) != s):
        recorded[node_name] = [float(v).hex() for v in s]


def _check_scales(what: str, scales: np.ndarray) -> np.ndarray:
    s32 = np.asarray(scales, np.float64).astype(np.float32)
    if not np.all(np.isfinite(s32)) or np.any(s32 <= 0):
        raise ModelError(f"{what}: a QONNX scale must be a positive float32, not {np.asarray(scales).reshape(-1)[:4]}")
    return s32


def _quant_node(g, x: str, y: str, scale: str, bits: int, qtype: QType, narrow: bool, mode: str, base: str):
    z = _scalar(g, f"{base}_zero_point", 0.0)
    b = _scalar(g, f"{base}_bit_width", float(bits))
    name = g.fresh(f"{base}_Quant")
    g.nodes.append(helper.make_node("Quant", [x, scale, z, b], [y], name=name, domain=DOMAIN,
                                    signed=int(qtype.signed), narrow=int(narrow), rounding_mode=mode))
    return name


def _quant_constant(g, base: str, codes: np.ndarray, scales: np.ndarray, axis: int | None, qtype: QType,
                    narrow: bool, recorded: dict[str, list[str]]) -> str:
    """``Quant(codes * s, s, 0, bits)`` of a constant; ``s`` broadcast along ``axis`` (None: one value)."""
    codes = np.asarray(codes, np.int64)
    s = np.asarray(scales, np.float64).reshape(-1)
    if axis is None:
        s, shape = s[:1], ()
    else:
        shape = [1] * codes.ndim
        shape[axis] = s.size
    s32 = _check_scales(f"constant {base!r}", s).reshape(shape)
    value = (codes.astype(np.float32) * s32).astype(np.float32)  # what qonnx's Quant gives back: code * s
    x = g.add_init(f"{base}_value", value)
    scale = g.add_init(f"{base}_scale", s32)
    out = g.fresh(f"{base}_Quant_Output")
    name = _quant_node(g, x, out, scale, qtype.bits, qtype, narrow, "ROUND", base)
    _record(recorded, name, s)
    return out


def _quant_activation(g, tensor: str, qtype: QType, scale: float, narrow: bool, mode: str,
                      recorded: dict[str, list[str]]) -> None:
    """``tensor`` -> Quant -> (every former consumer); a graph output keeps its name."""
    s = _scalar(g, f"{tensor}_scale", float(_check_scales(f"tensor {tensor!r}", np.asarray(scale))))
    if tensor in g.outputs:  # the producer writes a new name; the Quant output is the graph output
        src, out = g.fresh(f"{tensor}_Quant_Input"), tensor
        g.reproduce(tensor, src, ": a graph output must be computed to carry a Quant, not an input")
    else:  # the float tensor keeps its name; its consumers read the Quant output
        src, out = tensor, g.fresh(f"{tensor}_Quant_Output")
        g.redirect(tensor, out)
    name = _quant_node(g, src, out, s, qtype.bits, qtype, narrow, mode, tensor)
    _record(recorded, name, np.asarray(scale))
