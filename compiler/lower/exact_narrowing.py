"""Proofs that a layer's integer arithmetic can run in narrower machine types, bit-exactly.

The CPU simulation form of the integer module (``lower_relax.lower(graph, fast=True)``) uses
these to replace int64 / int32 arithmetic with cheaper forms that give the same codes for every
input the layer can see.  Nothing here changes numerics: each function either proves its form
exact from static bounds (``int`` arithmetic in Python, no floats) or returns ``None``.

* **float32 MACs** (``float32_macs``): if ``B = max|x| * sum|w| + |b| < 2^24`` per output, every
  partial sum of ``acc = sum(q_x * q_w) + q_b``, in any order, is an integer of magnitude
  ``<= B``, so float32 holds it exactly; FMA contraction and vectorized summation cannot round.
  The float32 accumulator is then cast to int32 (exact) for the requantization.
* **int32 requantization** (``int32_requant``): ``y = clamp(floor((acc*M + h) / 2^n), lo, hi)``
  with ``M > 0``, ``n >= 0``, SAT.  Two steps:

  1. clamp the accumulator first.  ``f(x) = floor((x*M + h) / 2^n)`` is non-decreasing, so with
     ``xl = max{x: f(x) <= lo}`` and ``xh = min{x: f(x) >= hi}`` (``xl < xh``),
     ``clamp(f(x), lo, hi) == clamp(f(clamp(x, xl, xh)), lo, hi)`` for every ``x``.  After it,
     ``|x * M|`` is about ``max(|lo|, |hi|) * 2^n`` whatever the accumulator bound.
  2. split the product when it still needs more than 31 bits: with ``x = a * 2^k + b``
     (``a = x >> k``, ``b = x & (2^k - 1)``, ``0 <= k <= n``),
     ``floor((x*M + h) / 2^n) == (a*M + ((b*M + h) >> k)) >> (n - k)`` (nested floor division
     by powers of two), and the smallest ``k`` keeping every intermediate in int32 is chosen;
     ``k = 0`` is the plain ``(x*M + h) >> n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.numerics import QType

F32_EXACT = 1 << 24  # every integer of magnitude <= 2^24 is a float32
_I32 = 1 << 31


def mac_bound(x: QType, weight: np.ndarray, bias: np.ndarray, axis: int) -> np.ndarray:
    """Per output channel (``axis`` of ``weight``): ``max|x| * sum|w| + |b|``, exact int64."""
    xmax = max(abs(x.lo), abs(x.hi))
    w = np.abs(np.moveaxis(np.asarray(weight, np.int64), axis, 0)).reshape(weight.shape[axis], -1).sum(axis=1)
    return xmax * w + np.abs(np.asarray(bias, np.int64)).reshape(-1)


def float32_macs(bound: np.ndarray) -> bool:
    """Whether a MAC whose partial sums are bounded by ``bound`` is exact in float32."""
    return int(np.max(bound, initial=0)) < F32_EXACT


@dataclass(frozen=True)
class Int32Requant:
    """An exact int32 requantization tail; arrays have one entry per channel (or one).

    ``acc -> clamp(acc, xl, xh)`` (if ``clamp_acc``) then, with ``k == 0``, ``(x*M + half) >> n``,
    else ``(a*M + ((b*M + half) >> k)) >> (n - k)``; then ``clamp(., lo, hi)`` and the cast.
    """

    multiplier: np.ndarray
    shift: np.ndarray
    half: np.ndarray
    k: int
    xl: np.ndarray
    xh: np.ndarray
    clamp_acc: bool
    lo: int
    hi: int


def sat_range(out: QType, lo: int | None, hi: int | None) -> tuple[int, int]:
    """The clamp SAT applies: the type's range narrowed by a fused ReLU/ReLU6 clamp."""
    return (out.lo if lo is None else max(lo, out.lo)), (out.hi if hi is None else min(hi, out.hi))


def int32_requant(multiplier, shift, rounding: str, overflow: str, lo: int | None, hi: int | None,
                  out: QType, bound) -> Int32Requant | None:
    """The int32 form of ``saturate(round_shift(acc * M, n))`` for ``|acc| <= bound``, or None
    (WRAP, a left shift, a zero multiplier, or no ``k`` that keeps every value in int32)."""
    m, n, b = (np.atleast_1d(np.asarray(v, np.int64)) for v in (multiplier, shift, bound))
    m, n, b = np.broadcast_arrays(m, n, b)
    if overflow != "SAT" or np.any(m <= 0) or np.any(n < 0):
        return None
    lo_, hi_ = sat_range(out, lo, hi)
    half = [(1 << (int(s) - 1)) if rounding == "RND" and s > 0 else 0 for s in n.ravel()]
    rows = []  # per channel: m, n, half, xl, xh (exact Python ints)
    for mi, ni, hi_i, bi in zip((int(v) for v in m.ravel()), (int(v) for v in n.ravel()), half,
                                (int(v) for v in b.ravel())):
        xl = (((lo_ + 1) << ni) - hi_i - 1) // mi  # max x with f(x) <= lo
        xh = -((hi_i - (hi_ << ni)) // mi)  # min x with f(x) >= hi
        if xl >= xh:
            return None
        rows.append((mi, ni, hi_i, max(xl, -bi), min(xh, bi), xl > -bi or xh < bi))
    if any(max(-xl, xh) >= _I32 for _, _, _, xl, xh, _ in rows):
        return None
    for k in range(0, min(r[1] for r in rows) + 1):
        if all(_fits(k, *r[:5]) for r in rows):
            def arr(i):
                return np.array([r[i] for r in rows], np.int64)

            return Int32Requant(arr(0), arr(1), arr(2), k, arr(3), arr(4), any(r[5] for r in rows), lo_, hi_)
    return None


def _fits(k: int, m: int, n: int, half: int, xl: int, xh: int) -> bool:
    """Every intermediate of the k-split form stays in int32 for x in [xl, xh]."""
    if k == 0:
        return max(-xl, xh) * m + half < _I32
    q = ((1 << k) - 1) * m + half  # b*M + half, b in [0, 2^k)
    top = max(-(xl >> k), xh >> k) * m + (q >> k)
    return q < _I32 and top < _I32


def requant_int32_numpy(acc: np.ndarray, plan: Int32Requant) -> np.ndarray:
    """The int32 form evaluated with numpy int32 arithmetic (what the lowering emits)."""
    x = np.asarray(acc, np.int64)
    if plan.clamp_acc:
        x = np.clip(x, plan.xl, plan.xh)
    x = x.astype(np.int32)
    m, h, n = (np.asarray(v, np.int32) for v in (plan.multiplier, plan.half, plan.shift))
    if plan.k == 0:
        v = (x * m + h) >> n
    else:
        k = np.int32(plan.k)
        t = (((x & np.int32((1 << plan.k) - 1)) * m + h) >> k)
        v = ((x >> k) * m + t) >> (n - k)
    return np.clip(v, plan.lo, plan.hi)
