"""max_pool2d: the window maximum of codes (type and scale pass through)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import ceil_extra, pad_nchw, windows
from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class MaxPool2dAttrs(Attrs):
    pool_size: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    """(top, left, bottom, right); padded positions never win."""
    dilation: tuple[int, int]
    ceil_mode: bool | None = None
    """Output size rounded up (extra end padding, ``arrays.ceil_extra``); absent: False."""


def reference(node, xs, out_type) -> np.ndarray:
    a = node.attrs
    top, left, bottom, right = a.padding
    if a.ceil_mode:
        (kh, kw), (sh, sw), (dh, dw) = a.pool_size, a.strides, a.dilation
        bottom += ceil_extra(xs[0].shape[2], kh, sh, dh, top, bottom)
        right += ceil_extra(xs[0].shape[3], kw, sw, dw, left, right)
    x = pad_nchw(xs[0].astype(np.int64), (top, left, bottom, right), np.iinfo(np.int64).min)
    win = windows(x, *a.pool_size, a.strides, a.dilation)
    return win.max(axis=(-2, -1))


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    return low.emit(low.op.nn.max_pool2d(
        xs[0], pool_size=a.pool_size, strides=a.strides, padding=a.padding,
        dilation=a.dilation, ceil_mode=False if a.ceil_mode is None else a.ceil_mode,
    ), node.name)


def pattern(p) -> Any:
    return p.is_op("relax.nn.max_pool2d")(p.wildcard())


SPEC = OpSpec("max_pool2d", MaxPool2dAttrs, reference, lower, pattern, passthrough=True, channelwise=True)
