"""avg_pool2d: the window sum (padding as zeros) times ``M >> n``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import pad_nchw, windows
from .spec import OpSpec, Requant
from ..quant.numerics import requantize


@dataclass(frozen=True, eq=False, kw_only=True)
class AvgPool2dAttrs(Requant):
    """multiplier and shift: one (M, n), or [OH, OW] (one per output position) when the padding is
    not counted and border windows hold fewer taps."""

    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    """(top, left, bottom, right), summed as zeros."""


def reference(node, xs, out_type) -> np.ndarray:
    """The window sum (padding as zeros) times ``M >> n``: one (M, n), or one per output position
    ([OH, OW]: an average that excludes the padding divides border windows by fewer taps)."""
    a = node.attrs
    x = pad_nchw(xs[0].astype(np.int64), a.padding, 0)
    win = windows(x, *a.pool_size, a.strides, (1, 1))
    m, n = np.asarray(a.multiplier), np.asarray(a.shift)
    if m.ndim == 2:
        m, n = m.reshape((1, 1) + m.shape), n.reshape((1, 1) + n.shape)
    return requantize(win.sum(axis=(-2, -1)), m, n, out_type, a.rounding, a.overflow, a.lo, a.hi)


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    c = low.dim(xs[0], 1)
    kh, kw = a.pool_size
    x = low.emit(low.op.astype(xs[0], "int32"))
    ones = np.ones((c, 1, kh, kw), np.int32)  # window sum = depthwise conv with ones
    s = low.emit(low.op.nn.conv2d(x, low.const(ones, "int32"), strides=a.strides,
                                  padding=a.padding, groups=c, out_dtype="int32"))
    m = np.asarray(a.multiplier)  # [OH, OW] when the padding is not counted: one (M, n) per position
    return low.requant(s, a, out, (1, 1) + m.shape if m.ndim == 2 else None, node.name,
                       kh * kw * low.max_abs(node))


def pattern(p) -> Any:
    """The window sum as a depthwise conv with ones (no bias), then the requantization tail."""
    return p.requant_tail(p.is_op("relax.nn.conv2d")(p.is_op("relax.astype")(p.wildcard()), p.is_const()))


SPEC = OpSpec("avg_pool2d", AvgPool2dAttrs, reference, lower, pattern, channelwise=True)
