"""The numerics contract in code: quantized types, rounding, saturation, requantization.

Every executor (the numpy reference, the integer Relax module built by TVM, generated C++
and RTL) implements exactly these definitions; ``docs/numerics.md`` states them in prose.

* A quantized tensor is integer codes ``q`` plus a ``QType`` (bits, signed) and a scale:
  the real value is ``q * scale``.  The zero point is always 0, so real 0.0 is exact.
* ``round_shift(v, n, RND) = floor((v + 2^(n-1)) / 2^n)`` (like ``AP_RND``);
  ``round_shift(v, n, TRN) = floor(v / 2^n)``.  ``n <= 0`` shifts left, exactly.
* ``saturate(v, t, SAT)`` clamps to ``[t.lo, t.hi]``; ``WRAP`` keeps the low ``t.bits``
  bits (two's complement for signed types).
* ``requantize(acc, M, n) = saturate(round_shift(acc * M, n))``, ``M`` and ``n`` per tensor
  or per output channel.  ReLU/ReLU6 are a tighter clamp inside the saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROUNDING_MODES = ("RND", "TRN")
OVERFLOW_MODES = ("SAT", "WRAP")
SCALE_MODES = ("pow2", "float")
MIN_BITS, MAX_BITS = 2, 16
MULT_BITS = 15  # width of the requantization multiplier M in "float" scale mode


@dataclass(frozen=True)
class QType:
    """An integer code type: ``bits`` wide, signed or unsigned."""

    bits: int
    signed: bool

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= 64:
            raise ValueError(f"QType bits must be an integer in [2, 64], not {self.bits!r}")

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def qmax(self) -> int:
        """The largest code used when choosing a scale (symmetric for signed types)."""
        return self.hi

    @property
    def storage(self) -> str:
        """The narrowest numpy/TVM dtype holding every code."""
        width = next(w for w in (8, 16, 32, 64) if self.bits <= w)
        return f"{'int' if self.signed else 'uint'}{width}"

    def __str__(self) -> str:
        return f"{'s' if self.signed else 'u'}{self.bits}"


def round_shift(v: np.ndarray, n: np.ndarray | int, rounding: str = "RND") -> np.ndarray:
    """``floor((v + 2^(n-1)) / 2^n)`` (RND) or ``floor(v / 2^n)`` (TRN) on int64; n <= 0 shifts left."""
    v = np.asarray(v, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
    right = np.maximum(n, 0)
    left = np.maximum(-n, 0)
    v = v << left
    if rounding == "RND":
        half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
        v = v + half
    return v >> right


def saturate(v: np.ndarray, qtype: QType, overflow: str = "SAT",
             lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """Bring int64 values into ``qtype``'s range: clamp (SAT) or keep the low bits (WRAP).

    ``lo``/``hi`` narrow the range further (ReLU: lo=0; ReLU6: hi=6/scale); they are always
    clamps, applied after wrapping.
    """
    v = np.asarray(v, dtype=np.int64)
    if overflow == "SAT":
        v = np.clip(v, qtype.lo, qtype.hi)
    elif overflow == "WRAP":
        mask = (1 << qtype.bits) - 1
        v = v & mask
        if qtype.signed:
            v = np.where(v > qtype.hi, v - (1 << qtype.bits), v)
    else:
        raise ValueError(f"overflow must be one of {OVERFLOW_MODES}, not {overflow!r}")
    if lo is not None or hi is not None:
        v = np.clip(v, qtype.lo if lo is None else lo, qtype.hi if hi is None else hi)
    return v


def requantize(acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int,
               out: QType, rounding: str = "RND", overflow: str = "SAT",
               lo: int | None = None, hi: int | None = None) -> np.ndarray:
    """``saturate(round_shift(acc * M, n))``; M and n broadcast against ``acc``."""
    prod = np.asarray(acc, dtype=np.int64) * np.asarray(multiplier, dtype=np.int64)
    return saturate(round_shift(prod, shift, rounding), out, overflow, lo, hi)


def quantize_multiplier(ratio: np.ndarray | float, scale_mode: str, mult_bits: int = MULT_BITS
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(M, n)`` with ``M / 2^n ~= ratio`` (elementwise).

    * ``pow2``: ``ratio`` must be a power of two, ``2^-k``; then ``M = 1, n = k`` (k may be
      negative: a left shift).  Pure fixed point, like ``ap_fixed``.
    * ``float``: ``M`` has ``mult_bits`` bits, ``2^(mult_bits-1) <= M < 2^mult_bits``,
      ``n = mult_bits - 1 - floor(log2 ratio)``, so the relative error is below ``2^-mult_bits``.
      A zero ratio gives ``M = 0, n = 0``.
    """
    r = np.atleast_1d(np.asarray(ratio, dtype=np.float64))
    if np.any(~np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"requantization ratios must be finite and >= 0, not {r[~np.isfinite(r) | (r < 0)][:3]}")
    m = np.zeros(r.shape, dtype=np.int64)
    n = np.zeros(r.shape, dtype=np.int64)
    nz = r > 0
    if scale_mode == "pow2":
        k = np.round(-np.log2(r[nz]))
        if not np.allclose(np.exp2(-k), r[nz], rtol=1e-12, atol=0):
            raise ValueError(f"pow2 scale mode needs power-of-two scale ratios, not {r[nz]}")
        m[nz], n[nz] = 1, k.astype(np.int64)
    elif scale_mode == "float":
        e = np.floor(np.log2(r[nz])).astype(np.int64)
        shift = (mult_bits - 1) - e
        mult = np.round(r[nz] * np.exp2(shift.astype(np.float64))).astype(np.int64)
        overflow = mult >= (1 << mult_bits)  # rounding carried into the next power of two
        mult[overflow] >>= 1
        shift[overflow] -= 1
        m[nz], n[nz] = mult, shift
    else:
        raise ValueError(f"scale mode must be one of {SCALE_MODES}, not {scale_mode!r}")
    if np.ndim(ratio) == 0:
        return m.reshape(()), n.reshape(())
    return m, n


def accumulator_bits(x: QType, w: QType, k: int, bias: bool = True) -> int:
    """Static bound on a MAC accumulator: ``bx + bw + ceil(log2 K)`` (+1 for the bias add).

    A product of a bx-bit and a bw-bit code needs at most bx + bw bits (signed result);
    summing K of them adds ceil(log2 K) bits; a bias of the same bound adds one more.
    """
    width = x.bits + w.bits + (0 if x.signed and w.signed else 1)  # +1: an unsigned factor widens the signed product
    return width + math.ceil(math.log2(max(k, 1))) + (1 if bias else 0)


def accumulator_dtype(bits: int) -> str:
    """int32 where the static bound fits, else int64."""
    return "int32" if bits <= 32 else "int64"


def quantize(x: np.ndarray, scale: np.ndarray | float, qtype: QType, rounding: str = "RND") -> np.ndarray:
    """Float -> codes at the model boundary: ``saturate(floor(x / scale + 0.5))`` (RND) or floor (TRN).

    Computed in float64 so every executor that calls this gets the same codes.
    """
    x = np.asarray(x, dtype=np.float64) / np.asarray(scale, dtype=np.float64)
    q = np.floor(x + 0.5) if rounding == "RND" else np.floor(x)
    return np.clip(q, qtype.lo, qtype.hi).astype(np.int64)


def dequantize(q: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * np.asarray(scale, dtype=np.float64)


def window_counts(size: tuple[int, int], pool: tuple[int, int], strides: tuple[int, int],
                  padding: tuple[int, int, int, int]) -> np.ndarray:
    """[OH, OW]: how many taps of each pooling window lie inside the ``size`` = (H, W) input.

    The divisor of an average pool that excludes its padding (ONNX ``count_include_pad=0``):
    border windows average over fewer elements.  ``padding`` is (top, left, bottom, right)."""
    (h, w), (kh, kw), (sh, sw) = size, pool, strides
    top, left, bottom, right = padding

    def inside(n: int, k: int, s: int, before: int, after: int) -> np.ndarray:
        starts = np.arange((n + before + after - k) // s + 1) * s - before
        return np.minimum(starts + k, n) - np.maximum(starts, 0)

    return np.outer(inside(h, kh, sh, top, bottom), inside(w, kw, sw, left, right)).astype(np.int64)


LRN_INDEX_BITS = 12  # the LRN factor table has at most 2^12 entries


def lrn_index_shift(sum_bound: int) -> int:
    """``k`` such that ``S >> k`` indexes the LRN table for every window sum ``0 <= S <= sum_bound``
    with at most 2^LRN_INDEX_BITS entries."""
    return max(0, int(sum_bound).bit_length() - LRN_INDEX_BITS)


def lrn_table(sum_bound: int, ratio: float, bias: float, coeff: float, beta: float,
              mult_bits: int = MULT_BITS) -> tuple[np.ndarray, int, int]:
    """The LRN factor table ``(F, k, n)``: ``y = saturate(round_shift(q * F[S >> k], n))``.

    ``S`` is the integer sum of squared codes over the channel window (``0 <= S <= sum_bound``),
    ``coeff`` the real weight of one unit of ``S`` (``alpha / size * s_x^2``) and ``ratio`` the scale
    ratio ``s_x / s_y``.  Entry ``j`` covers ``S`` in ``[j 2^k, (j+1) 2^k)`` and holds
    ``f = ratio * (bias + coeff * S_j)^-beta`` at the bucket's middle ``S_j``, as an integer with
    ``mult_bits`` bits at its largest (``F = floor(f 2^n + 1/2)``, one shift ``n`` for the table)."""
    k = lrn_index_shift(sum_bound)
    j = np.arange((int(sum_bound) >> k) + 1, dtype=np.float64)
    first = j * 2.0**k
    last = np.minimum(first + (2.0**k - 1), float(sum_bound))
    base = bias + coeff * (first + last) / 2
    if not np.all(np.isfinite(base)) or np.any(base <= 0):
        raise ValueError(f"the LRN denominator bias + alpha/size * sum must be positive, not {base.min()}")
    f = ratio * base ** (-beta)
    top = float(f.max())
    if not np.isfinite(top) or top <= 0:
        raise ValueError(f"the LRN factors must be finite and positive, not max {top}")
    n = (mult_bits - 1) - math.floor(math.log2(top))
    table = np.floor(f * 2.0**n + 0.5).astype(np.int64)
    if table.max() >= 1 << mult_bits:  # rounding carried into the next power of two
        n -= 1
        table = np.floor(f * 2.0**n + 0.5).astype(np.int64)
    return table, k, n
