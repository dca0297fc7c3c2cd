"""The quantization parameters of a QDQ tensor (``QDQParam``: scale, zero point, container) and
their zero-point-0 form in nnforge's contract (``QDQParam.to_nnforge``); the containers the ONNX
opsets allow."""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto

from ..errors import ModelError
from ..quant.numerics import QType

__all__ = ["CONTAINERS", "QDQParam", "ZERO_POINT_MODES", "check_mode"]

# QDQ integer container types: name -> (TensorProto type, bits, signed)
CONTAINERS = {
    "int8": (TensorProto.INT8, 8, True),
    "uint8": (TensorProto.UINT8, 8, False),
    "int16": (TensorProto.INT16, 16, True),
    "uint16": (TensorProto.UINT16, 16, False),
    "int4": (TensorProto.INT4, 4, True),
    "uint4": (TensorProto.UINT4, 4, False),
}
NARROW = {"int8", "uint8"}  # every opset; int32 too for a DequantizeLinear (biases)
WIDE = {"int16", "uint16", "int4", "uint4"}  # from opset 21
WIDE_OPSET = 21  # first ai.onnx opset whose QuantizeLinear/DequantizeLinear take (u)int16
PER_CHANNEL_OPSET = 13  # first opset with the ``axis`` attribute
ZERO_POINT_MODES = ("recentre", "strict")


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
        return CONTAINERS[self.dtype][1]

    @property
    def signed(self) -> bool:
        return CONTAINERS[self.dtype][2]

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
        check_mode(mode)
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


def check_mode(mode: str) -> None:
    if mode not in ZERO_POINT_MODES:
        raise ModelError(f"zero_point must be one of {ZERO_POINT_MODES}, not {mode!r}")
