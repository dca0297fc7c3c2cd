"""Pre-quantized ONNX models: recognise one, strip it to its float graph, keep what it carries.

Three forms are read (docs/interop.md):

* **QDQ** (``QuantizeLinear -> DequantizeLinear`` around float ops, what onnxruntime's
  ``quantize_static(..., quant_format=QDQ)`` and PyTorch's exporters write): ``qdq.strip_qdq``;
* **QOperator** (``QLinearConv``, ``QLinearMatMul``, ``ConvInteger``, ``MatMulInteger``,
  ``QGemm``): rewritten into the same QDQ graph first (``qoperator.to_qdq``), since TVM's
  importer takes none of the first three;
* **QONNX** (``Quant``, ``BipolarQuant``, ``Trunc`` in ``qonnx.custom_op.general``, what
  Brevitas and QKeras export for FINN and hls4ml): ``qonnx_import.strip_qonnx``.

Each gives a ``Prequantized``: the float model underneath, and per ONNX tensor of that float
model the type and scale it carries, mapped onto nnforge's contract (zero point 0).
``prequant_graph.quantize_prequantized`` turns it into the ``QGraph``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import ModelError
from ..quant.numerics import QType

FORMATS = ("qdq", "qoperator", "qonnx")
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
QONNX_OPS = {"Quant", "BipolarQuant", "Trunc", "IntQuant", "FloatQuant"}
# the QOperator ops qoperator.to_qdq rewrites (QuantizeLinear/DequantizeLinear stay)
QOPERATOR_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm"}
# QOperator ops nnforge has no rewrite for: refused by name
QOPERATOR_REFUSED = {"QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearAveragePool",
                     "QLinearGlobalAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax",
                     "DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul"}


@dataclass(frozen=True)
class CarriedTensor:
    """One activation's quantization as the model carries it, mapped onto zero point 0.

    ``qtype``/``scale`` are nnforge's; ``lo``/``hi`` a narrower code range (QONNX narrow range)
    or None; ``exact`` whether nnforge's grid and saturation equal the source's; ``rounding``
    the source's rounding (``half_even``, ``half_up``, ``floor``, ...); ``source`` the tensor of
    the model as given that holds it (integer codes ``q`` with ``real = (q - zero_point) *
    source_scale`` when ``codes``, else the dequantized real value); ``node`` the node that
    quantizes it, for messages."""

    qtype: QType
    scale: float
    exact: bool
    rounding: str
    source: str
    node: str
    codes: bool = True
    zero_point: int = 0
    source_scale: float = 0.0
    lo: int | None = None
    hi: int | None = None
    what: str = ""  # the source type in words, e.g. "uint8 zp 0", "Quant 4-bit signed narrow"
    source_type: int = onnx.TensorProto.FLOAT  # the element type of ``source``
    unrounded: str = ""  # the float tensor the source rounds (real units), where the model as given has one


@dataclass(frozen=True)
class CarriedWeight:
    """A constant carried as integer codes: ``real = codes * scale`` (``scale`` per channel along
    ``axis`` of ``codes``, or one value when ``axis`` is None); ``codes`` in the ONNX layout."""

    codes: np.ndarray  # int64
    scale: np.ndarray  # float64
    axis: int | None
    qtype: QType
    node: str

    def per_channel(self, channels: int, axis: int) -> np.ndarray:
        """The scale of each of ``channels`` output channels (a per-tensor scale repeated)."""
        s = np.asarray(self.scale, np.float64).reshape(-1)
        return np.broadcast_to(s, (channels,)).copy() if s.size == 1 else s

    def real(self) -> np.ndarray:
        s = np.asarray(self.scale, np.float64).reshape(-1)
        if s.size == 1 or self.axis is None:
            return self.codes * s.reshape(())
        shape = [1] * self.codes.ndim
        shape[self.axis % self.codes.ndim] = s.size
        return self.codes * s.reshape(shape)


@dataclass
class Prequantized:
    """What a pre-quantized model carries, keyed by tensor names of its float model."""

    format: str  # one of FORMATS
    original: onnx.ModelProto  # the model as given (the oracle runs it)
    activations: dict[str, CarriedTensor]
    weights: dict[str, CarriedWeight]
    notes: list[str] = field(default_factory=list)  # what is approximated, and by how much

    @property
    def runtime(self) -> str:
        """The independent executor of the model as given."""
        return "qonnx" if self.format == "qonnx" else "onnxruntime"

    def describe(self) -> dict:
        """JSON-ready summary: per carried tensor its type and scale."""
        return {
            "format": self.format,
            "activations": {name: {"type": str(t.qtype), "scale": t.scale, "exact": t.exact, "source": t.what,
                                   "rounding": t.rounding, **({"lo": t.lo} if t.lo is not None else {}),
                                   **({"hi": t.hi} if t.hi is not None else {})}
                            for name, t in self.activations.items()},
            "weights": {name: {"type": str(w.qtype), "shape": list(w.codes.shape),
                               "scales": int(np.size(w.scale)), "scale_min": float(np.min(w.scale)),
                               "scale_max": float(np.max(w.scale))}
                        for name, w in self.weights.items()},
            "notes": list(self.notes),
        }


def detect_format(proto: onnx.ModelProto) -> str | None:
    """``"qonnx"``, ``"qoperator"``, ``"qdq"``, or None for a float model."""
    ops = {(n.domain, n.op_type) for n in proto.graph.node}
    if any(d in QONNX_DOMAINS or (op in QONNX_OPS and d not in ("", "ai.onnx", "com.microsoft")) for d, op in ops):
        return "qonnx"
    names = {op for _, op in ops}
    if names & (QOPERATOR_OPS | QOPERATOR_REFUSED):
        return "qoperator"
    if names & {"QuantizeLinear", "DequantizeLinear"}:
        return "qdq"
    return None


def read_prequantized(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, Prequantized] | None:
    """``(float model, Prequantized)`` for a pre-quantized model, None for a float one."""
    fmt = detect_format(proto)
    if fmt is None:
        return None
    if fmt == "qonnx":
        from .qonnx_import import strip_qonnx

        return strip_qonnx(proto)
    qdq_model = proto
    if fmt == "qoperator":
        from .qoperator import to_qdq

        qdq_model = to_qdq(proto)
    float_model, carried = _from_qdq(qdq_model, fmt, proto)
    carried.original = proto
    return float_model, carried


def _unrounded(original: onnx.ModelProto, stripped, name: str) -> str:
    """The QuantizeLinear input of tensor ``name`` where the model as given has that tensor."""
    t = stripped.unrounded.get(name, "")
    return t if t and any(t in n.output for n in original.graph.node) else ""


def _from_qdq(proto: onnx.ModelProto, fmt: str, original: onnx.ModelProto | None = None
              ) -> tuple[onnx.ModelProto, Prequantized]:
    original = original if original is not None else proto
    from .qdq import CONTAINERS, strip_qdq

    stripped = strip_qdq(proto, "recentre")
    acts: dict[str, CarriedTensor] = {}
    notes: list[str] = []
    for name, p in stripped.params.items():
        qtype, scale = p.to_nnforge("recentre", name)
        acts[name] = CarriedTensor(qtype, scale, p.exact, "half_even", stripped.sources[name], name,
                                   True, p.zero_point, p.scale, what=f"{p.dtype} zp {p.zero_point}",
                                   source_type=CONTAINERS[p.dtype][0], unrounded=_unrounded(original, stripped, name))
        if not p.exact:
            notes.append(f"tensor {name!r}: {p.dtype} zero point {p.zero_point} is asymmetric; re-centred onto "
                         f"zero point 0 as {qtype} with scale {scale:.6g} = {scale / p.scale:.4f} x the "
                         f"imported {p.scale:.6g} (the same real range, a coarser step)")
    weights = {}
    for name, w in stripped.weights.items():
        weights[name] = CarriedWeight(w.codes, np.asarray(w.scale, np.float64), w.axis,
                                      _weight_type(w.codes, w.dtype, w.node), w.node)
    return stripped.model, Prequantized(fmt, proto, acts, weights, notes)


def _weight_type(codes: np.ndarray, dtype: str, node: str) -> QType:
    """The container's width and sign when ``q - zp`` still fits it (zero point 0, or the middle of
    an unsigned container: signed codes), else one bit more, signed (still exact)."""
    info = np.iinfo(np.dtype(dtype)) if dtype in ("int8", "uint8", "int16", "uint16", "int32") else None
    bits = {"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "int4": 4, "uint4": 4}.get(dtype)
    if bits is None:
        raise ModelError(f"node {node!r}: the weight type must be one of int4, uint4, int8, uint8, int16, uint16, "
                         f"int32, not {dtype}")
    lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
    signed = info is None and dtype == "int4" or (info is not None and info.min < 0)
    for candidate in (QType(bits, signed), QType(bits, True), QType(min(bits + 1, 32), True)):
        if candidate.lo <= lo and hi <= candidate.hi:
            return candidate
    return QType(32, True)
