"""lrn: local response normalization across channels, with a table for the power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec
from ..quant.numerics import requantize


@dataclass(frozen=True, eq=False, kw_only=True)
class LrnAttrs(Attrs):
    """y = saturate(round_shift(x * table[S >> index_shift], shift)), S = the sum of x^2 over the
    channel window c - before .. c + after (those that exist)."""

    before: int
    after: int
    table: np.ndarray
    """The factor F[T], indexed by the shifted window sum."""
    index_shift: int
    """k: the window sum is shifted right by k before the lookup."""
    shift: int
    """n: the final right shift."""
    lo: int | None
    hi: int | None
    rounding: str
    overflow: str


def reference(node, xs, out_type) -> np.ndarray:
    """Local response normalization: ``S`` = the sum of squared codes over the channels
    ``c - before .. c + after`` (those that exist), then ``saturate(round_shift(q * F[S >> k], n))``."""
    a = node.attrs
    x = xs[0].astype(np.int64)
    sq = np.pad(x * x, [(0, 0), (a.before, a.after)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    s = sum(sq[:, j:j + c] for j in range(a.before + a.after + 1))
    return requantize(x * a.table[s >> a.index_shift], 1, a.shift, out_type, a.rounding,
                      a.overflow, a.lo, a.hi)


def lower(low, node, xs, out) -> Any:
    """The window sum of squares as a conv3d over channels (of [N, 1, C, H, W]), the table lookup,
    the requant.  No reshape or pad: a backend without LRN must not take part of the chain."""
    a = node.attrs
    op = low.op
    x = low.emit(op.astype(xs[0], "int64"))
    sq = low.emit(op.expand_dims(low.emit(op.multiply(x, x)), axis=1))
    ones = np.ones((1, 1, a.before + a.after + 1, 1, 1), np.int64)
    s = low.emit(op.nn.conv3d(sq, low.const(ones, "int64"), padding=(a.before, 0, 0, a.after, 0, 0),
                              out_dtype="int64"))
    s = low.emit(op.squeeze(s, axis=[1]))
    if a.index_shift:
        s = low.emit(op.right_shift(s, low.const(a.index_shift, "int64")))
    f = low.emit(op.take(low.const(a.table, "int64"), s, axis=0, mode="clip"))
    v = low.round_shift(low.emit(op.multiply(x, f)), np.asarray(a.shift, np.int64), a.rounding)
    return low.saturate(v, out, a.overflow, a.lo, a.hi, node.name)


def pattern(p) -> Any:
    """The squares summed over channels by a conv3d, the factor looked up, then the requantization
    tail without a constant multiplier."""
    x = p.is_op("relax.astype")(p.wildcard())
    view = p.is_op("relax.expand_dims")(p.is_op("relax.multiply")(x, x))
    s = p.is_op("relax.squeeze")(p.is_op("relax.nn.conv3d")(view, p.is_const()))
    factor = p.is_op("relax.take")(p.is_const(), p.optional("relax.right_shift", s))
    return p.saturate(p.round_shift(p.is_op("relax.multiply")(x, factor)))


SPEC = OpSpec("lrn", LrnAttrs, reference, lower, pattern, requantizes=True)
