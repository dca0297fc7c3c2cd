"""avg_pool2d: the window sum (padding as zeros) times ``M >> n``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import pad_nchw, windows
from .max_pool2d import pool_attrs
from .spec import OpSpec, Requant
from ..errors import ModelError
from ..quant.numerics import requantize, window_counts


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


# -- the float side ----------------------------------------------------------------------------

def from_avg_pool2d(b, var, call, args, acts):
    attrs = pool_attrs(call)
    if attrs["dilation"] != (1, 1) or attrs["ceil_mode"]:
        raise ModelError(f"{b.label(var, call)}: average pooling with dilation or ceil_mode has no integer form")
    return b.new("avg_pool2d", var, acts, **attrs)


def quantize(q) -> dict:
    """The output keeps the input's scale; the divisor goes into (M, n), one per output position
    where the padding is not counted and border windows hold fewer taps."""
    a, ins = q.attrs, q.ins
    kh, kw = a["pool_size"]
    count = kh * kw
    if not a.get("count_include_pad", True):  # border windows average over the taps inside the input
        counts = window_counts(q.input_shape()[2:], (kh, kw), a["strides"], a["padding"])
        count = counts if np.unique(counts).size > 1 else int(counts.flat[0])  # [OH, OW], or one divisor
    m, n = q.multiplier("average", ins[0].scale / (q.out.scale * np.asarray(count, np.float64)), "float")
    q.check_requant("average", max(abs(ins[0].qtype.lo), ins[0].qtype.hi) * kh * kw, np.ravel(m), np.ravel(n))
    return dict(pool_size=a["pool_size"], strides=a["strides"], padding=a["padding"],
                multiplier=m, shift=n, lo=q.lo, hi=q.hi, **q.common)


def float_forward(a, xs) -> np.ndarray:
    x = xs[0]
    kh, kw = a["pool_size"]
    total = windows(pad_nchw(x, a["padding"], 0.0), kh, kw, a["strides"], (1, 1)).sum(axis=(-2, -1))
    if a.get("count_include_pad", True):
        return total / (kh * kw)
    return total / window_counts(x.shape[2:], (kh, kw), a["strides"], a["padding"])


SPEC = OpSpec("avg_pool2d", AvgPool2dAttrs, reference, lower, pattern, channelwise=True, fuses_act=True,
              float_rules=(("relax.nn.avg_pool2d", from_avg_pool2d),),  # nn.avg_pool2d(x) -> avg_pool2d
              quantize=quantize, float_forward=float_forward)
