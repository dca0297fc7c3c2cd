"""QONNX models (``Quant``, ``BipolarQuant``, ``Trunc`` in ``qonnx.custom_op.general``) -> float graph
+ what every quantizer node carries.

A ``Quant(x, scale, zero_point, bit_width)`` with ``signed``, ``narrow`` and ``rounding_mode``:

* on a constant (a weight or bias): the constant becomes its quantized value, ``codes * scale``
  (float32, as qonnx computes it), and the codes are carried (``CarriedWeight``; per channel
  where the scale has one non-1 axis);
* on an activation: removed (its consumers read ``x``); ``x`` carries ``QType(bit_width,
  signed)`` at ``scale``, with a narrower code range where ``narrow``.

Exact where nnforge's contract expresses it: widths 2..16, signed or unsigned, narrow range
(a clamp inside the layer's saturation), ``FLOOR`` rounding (nnforge's ``TRN``).  ``ROUND`` /
``HALF_EVEN`` and ``HALF_UP`` become ``RND`` (round half up): they differ only on exact ties
(for negative values only, with ``HALF_UP``), and the comparison says how often.  A
``Trunc`` (v2: an output scale) whose output scale is its input scale times a power of two is
a floor-rounded re-quantization of its input.  Refused, naming the node: a scale, zero point
or bit width that is not a constant, a non-zero zero point, a bit width outside 2..16, a
``BipolarQuant`` (1-bit +-1 values have no zero-point-0 integer form), other rounding modes,
per-channel activation scales, and a ``Trunc`` whose scales are not a power of two apart.

A model nnforge exported (``qonnx_export``) records its float64 scales in ``metadata_props``
(``nnforge.scales``); a recorded value replaces a node's float32 scale only where it rounds to
exactly that scale, so the round trip keeps nnforge's scales and an edited scale wins.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from ..quant.numerics import QType
from .prequant import QONNX_DOMAINS, CarriedTensor, CarriedWeight, Prequantized

ROUNDING = {"ROUND": "half_even", "HALF_EVEN": "half_even", "HALF_UP": "half_up", "FLOOR": "floor"}
SCALES_KEY = "nnforge.scales"  # metadata_props of a model nnforge exported: its float64 scales


def _round(v: np.ndarray, mode: str) -> np.ndarray:
    """qonnx's rounding functions (qonnx.custom_op.general.intquant.resolve_rounding_mode)."""
    if mode == "floor":
        return np.floor(v)
    if mode == "half_up":
        return np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.round(v)


def strip_qonnx(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, Prequantized]:
    """``(float model, Prequantized)`` of a QONNX model; see the module doc."""
    from .onnx_graph import OnnxGraph, rename

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = OnnxGraph(out.graph)
    acts: dict[str, CarriedTensor] = {}
    weights: dict[str, CarriedWeight] = {}
    notes: list[str] = []
    removed: list[onnx.NodeProto] = []
    recorded = _recorded_scales(proto)
    for node in list(g.nodes):
        if node.domain not in QONNX_DOMAINS:
            continue
        if node.op_type == "BipolarQuant":
            raise ModelError(f"node {node.name!r}: the quantizer must be a Quant of 2 to 16 bits, not a BipolarQuant "
                             "(1-bit values +-1 have no integer form with zero point 0 in nnforge)")
        if node.op_type not in ("Quant", "IntQuant", "Trunc"):
            raise ModelError(f"node {node.name!r}: the QONNX op must be Quant or Trunc, not {node.op_type}")
        x, y = node.input[0], node.output[0]
        if node.op_type == "Trunc":
            scale, bits, signed, narrow, mode = _trunc(g, node)
            exact = np.asarray(scale, np.float64)
        else:
            scale = _const(g, node, 1, "scale")
            zp = _const(g, node, 2, "zero point")
            if np.any(zp != 0):
                raise ModelError(f"node {node.name!r}: the zero point must be 0 (nnforge's contract), not "
                                 f"{float(np.asarray(zp).reshape(-1)[0]):g}")
            bits = _bits(node, _const(g, node, 3, "bit width"), 32 if g.constant(x) is not None else 16)
            signed, narrow = bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0))
            mode = _mode(node, _attr(node, "rounding_mode", "ROUND"))
            exact = _exact_scale(recorded.get(node.name), scale)
        if np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise ModelError(f"node {node.name!r}: the scale must be positive and finite, not {scale.reshape(-1)[:4]}")
        qtype = QType(bits, signed)
        lo = qtype.lo + 1 if narrow and signed else None
        hi = qtype.hi - 1 if narrow and not signed else None
        value = g.constant(x)
        removed.append(node)
        if value is not None:  # a weight or bias: carry its codes
            s = np.asarray(scale, np.float32)
            codes = np.clip(np.asarray(value, np.float32) / s, lo if lo is not None else qtype.lo,
                            hi if hi is not None else qtype.hi)
            codes = _round(codes.astype(np.float64), mode).astype(np.int64)
            axis = _axis(node, s, np.ndim(value))
            real = (codes.astype(np.float32) * s).astype(np.float32)
            g.inits[y] = numpy_helper.from_array(real, y)
            per = exact.reshape(-1) if axis is not None else exact.reshape(-1)[:1]
            weights[y] = CarriedWeight(codes, per.astype(np.float64), axis, qtype, node.name)
            continue
        if np.size(scale) != 1:
            raise ModelError(f"node {node.name!r}: an activation's scale must be one value, not {np.size(scale)} "
                             "(per-channel activation scales have no nnforge form)")
        s = float(np.asarray(scale, np.float32).reshape(()))
        s64 = float(np.asarray(exact).reshape(()))
        what = (f"{node.op_type} {bits}-bit {'signed' if signed else 'unsigned'}{' narrow' if narrow else ''} "
                f"{_attr(node, 'rounding_mode', 'ROUND' if node.op_type != 'Trunc' else 'FLOOR')}")
        src = x
        carried = CarriedTensor(qtype, s64, True, mode, y, node.name, False, 0, s, lo, hi, what,
                                onnx.TensorProto.FLOAT, x)
        for n in g.nodes:
            for i, name in enumerate(n.input):
                if name == y:
                    n.input[i] = src
        if y in g.outputs:  # the graph output keeps its name: the float tensor takes it
            if src in g.inputs:
                raise ModelError(f"node {node.name!r}: a Quant from a graph input straight to a graph output leaves "
                                 "nothing to compile")
            rename(g, src, y)
            src = y
        if src in acts and acts[src] != carried:
            raise ModelError(f"node {node.name!r}: tensor {src!r} is quantized twice with different parameters")
        acts[src] = carried
    g.nodes = [n for n in g.nodes if not any(n is r for r in removed)]
    for node in g.nodes:
        if node.domain in QONNX_DOMAINS:  # pragma: no cover - every QONNX node was handled above
            raise ModelError(f"node {node.name!r}: {node.op_type} was not imported")
    g.finish()
    del out.opset_import[:]
    out.opset_import.extend(o for o in proto.opset_import if o.domain not in QONNX_DOMAINS)
    kept = [p for p in proto.metadata_props if p.key != SCALES_KEY]
    del out.metadata_props[:]
    out.metadata_props.extend(kept)
    for t in acts.values():
        if t.rounding != "floor":
            notes.append(f"rounding: {', '.join(sorted({t.what.rsplit(' ', 1)[-1] for t in acts.values() if t.rounding != 'floor'}))} "
                         "is nnforge's RND (round half up), which differs from qonnx on exact ties only "
                         "(half-way values; HALF_UP: negative ones)")
            break
    return out, Prequantized("qonnx", proto, acts, weights, notes)



def _recorded_scales(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """``{Quant node name: float64 scales}`` from ``metadata_props`` (a model nnforge exported)."""
    entry = next((p.value for p in proto.metadata_props if p.key == SCALES_KEY), None)
    if entry is None:
        return {}
    try:
        doc = json.loads(entry)
        return {str(k): np.array([float.fromhex(h) for h in v], np.float64) for k, v in doc.items()}
    except (ValueError, TypeError, AttributeError) as err:
        raise ModelError(f"metadata {SCALES_KEY!r} must be JSON {{Quant node name: [float.hex() strings]}}, not "
                         f"{entry[:60]!r} ({type(err).__name__})") from None


def _exact_scale(recorded: np.ndarray | None, scale: np.ndarray) -> np.ndarray:
    """The recorded float64 scale where it rounds to the node's float32 scale element for element,
    else the node's own."""
    s32 = np.asarray(scale, np.float32)
    if recorded is not None and recorded.size == s32.size and np.array_equal(
            recorded.astype(np.float32), s32.reshape(-1)):
        return recorded.reshape(s32.shape)
    return s32.astype(np.float64)


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _const(g, node, i: int, what: str) -> np.ndarray:
    value = g.constant(node.input[i]) if len(node.input) > i and node.input[i] else None
    if value is None:
        raise ModelError(f"node {node.name!r}: the {node.op_type}'s {what} must be a constant, not the computed tensor "
                         f"{node.input[i] if len(node.input) > i else '(missing)'!r}")
    return np.asarray(value)


def _bits(node, value: np.ndarray, most: int = 16) -> int:
    """The bit width: 2..16 for activations, up to 32 for a constant (a bias at s_x * s_w)."""
    v = float(np.asarray(value).reshape(-1)[0]) if np.size(value) == 1 else None
    if v is None or v != int(v) or not 2 <= v <= most:
        shown = "an array" if v is None else f"{v:g}"
        raise ModelError(f"node {node.name!r}: the bit width must be an integer from 2 to {most}, not {shown}")
    return int(v)


def _mode(node, mode: str) -> str:
    key = str(mode).upper()
    if key not in ROUNDING:
        raise ModelError(f"node {node.name!r}: rounding_mode must be one of {', '.join(ROUNDING)}, not {mode!r}")
    return ROUNDING[key]


def _axis(node, scale: np.ndarray, ndim: int) -> int | None:
    """The per-channel axis of a weight scale broadcast against the weight (None: one value)."""
    if scale.size == 1:
        return None
    shape = list(scale.shape)
    big = [i for i, d in enumerate(shape) if d > 1]
    if len(big) != 1:
        raise ModelError(f"node {node.name!r}: a weight scale must vary along one axis, not shape {shape}")
    return big[0] + (ndim - len(shape))


def _trunc(g, node):
    """(output scale, output bits, signed, narrow, rounding) of a Trunc v2 whose scales are 2^k apart."""
    if len(node.input) < 6:
        raise ModelError(f"node {node.name!r}: a Trunc must give its output scale (qonnx Trunc v2, 6 inputs), not "
                         f"{len(node.input)} inputs (v1 divides the value by 2^k)")
    scale = _const(g, node, 1, "scale")
    zp = _const(g, node, 2, "zero point")
    if np.any(zp != 0):
        raise ModelError(f"node {node.name!r}: the zero point must be 0 (nnforge's contract), not a non-zero one")
    out_scale = _const(g, node, 4, "output scale")
    bits = _bits(node, _const(g, node, 5, "output bit width"))
    ratio = np.asarray(out_scale, np.float64) / np.asarray(scale, np.float64)
    k = np.round(np.log2(ratio))
    if np.size(ratio) != 1 or not np.all(ratio == 2.0 ** k):
        raise ModelError(f"node {node.name!r}: a Trunc's output scale must be its input scale times a power of two, "
                         f"not {float(np.asarray(ratio).reshape(-1)[0]):.6g} times it")
    return (np.asarray(out_scale, np.float32), bits, bool(_attr(node, "signed", 1)), bool(_attr(node, "narrow", 0)),
            _mode(node, _attr(node, "rounding_mode", "FLOOR")))
