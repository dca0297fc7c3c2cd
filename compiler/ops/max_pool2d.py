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


# -- the float side ----------------------------------------------------------------------------

def pool_attrs(call) -> dict:
    """A Relax 2-d pool's attrs as a float layer's (avg_pool2d reads them too)."""
    a = call.attrs
    pad = [int(p) for p in a.padding]
    return dict(pool_size=tuple(int(p) for p in a.pool_size), strides=tuple(int(s) for s in a.strides),
                padding=tuple(pad), dilation=tuple(int(d) for d in a.dilation), ceil_mode=bool(a.ceil_mode),
                count_include_pad=bool(getattr(a, "count_include_pad", False)))


def from_max_pool2d(b, var, call, args, acts):
    return b.new("max_pool2d", var, acts, **pool_attrs(call))


def from_global_max(b, var, call, args, acts):
    """The maximum over H and W is a max pool whose window is the whole input."""
    if [int(x) for x in call.attrs.axis] not in ([2, 3], [-2, -1]):
        return None
    shape = b.static_shape(args[0])
    return b.new("max_pool2d", var, acts, pool_size=(shape[2], shape[3]), strides=(1, 1),
                 padding=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False, keepdims=bool(call.attrs.keepdims))


FLOAT_RULES = (
    ("relax.nn.max_pool2d", from_max_pool2d),  # nn.max_pool2d(x) -> max_pool2d
    ("relax.max", from_global_max),  # max(x, axis=[2, 3]) -> max_pool2d{pool_size (H, W)}
)


def quantize(q) -> dict:
    return {k: q.attrs[k] for k in ("pool_size", "strides", "padding", "dilation", "ceil_mode")}


def float_forward(a, xs) -> np.ndarray:
    x = xs[0]
    top, left, bottom, right = a["padding"]
    if a.get("ceil_mode", False):
        (kh, kw), (sh, sw), (dh, dw) = a["pool_size"], a["strides"], a["dilation"]
        bottom += ceil_extra(x.shape[2], kh, sh, dh, top, bottom)
        right += ceil_extra(x.shape[3], kw, sw, dw, left, right)
    y = windows(pad_nchw(x, (top, left, bottom, right), -np.inf), *a["pool_size"], a["strides"],
                a["dilation"]).max(axis=(-2, -1))
    return y if a.get("keepdims", True) else y.reshape(y.shape[:2])


SPEC = OpSpec("max_pool2d", MaxPool2dAttrs, reference, lower, pattern, passthrough=True, channelwise=True,
              float_rules=FLOAT_RULES, quantize=quantize, float_forward=float_forward)
