"""conv2d: a 2-D convolution of integer codes, bias, per-channel requantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import int_matmul, pad_nchw, windows
from .spec import OpSpec, Weighted
from ..errors import ModelError
from ..quant.numerics import requantize


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2dAttrs(Weighted):
    """multiplier and shift are [O] (or one scalar)."""

    weight: np.ndarray
    """Weight codes [O, I/groups, kh, kw]."""
    bias: np.ndarray
    """Bias codes [O] at the accumulator scale s_x * s_w."""
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    """(top, left, bottom, right)."""
    dilation: tuple[int, int]
    groups: int


def reference(node, xs, out_type) -> np.ndarray:
    a = node.attrs
    x = pad_nchw(xs[0].astype(np.int64), a.padding, 0)
    w = a.weight.astype(np.int64)
    o, ipg, kh, kw = w.shape
    g = a.groups
    win = windows(x, kh, kw, a.strides, a.dilation)  # N, C, OH, OW, kh, kw
    n, _, oh, ow = win.shape[:4]
    opg = o // g
    # im2col per group: rows (n, oh, ow), columns (c, i, j); weights [g, c*i*j, opg]
    cols = win.reshape(n, g, ipg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, -1)
    wg = w.reshape(g, opg, ipg * kh * kw).transpose(0, 2, 1)
    bias = a.bias.astype(np.int64)
    acc = int_matmul(cols, wg, int(np.abs(bias).max(initial=0)))  # [g, n*oh*ow, opg]
    acc = acc.reshape(g, n, oh, ow, opg).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)
    acc += bias.reshape(1, o, 1, 1)
    shape = (1, o, 1, 1)
    m, s = np.broadcast_to(a.multiplier, (o,)).reshape(shape), np.broadcast_to(a.shift, (o,)).reshape(shape)
    return requantize(acc, m, s, out_type, a.rounding, a.overflow, a.lo, a.hi)


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    acc, bound = low.mac_dtype(node, 0)
    x = low.emit(low.op.astype(xs[0], acc))
    y = low.emit(low.op.nn.conv2d(
        x, low.const(a.weight, acc), strides=a.strides, padding=a.padding,
        dilation=a.dilation, groups=a.groups, out_dtype=acc,
    ))
    o = a.weight.shape[0]
    y = low.emit(low.op.add(y, low.const(a.bias.reshape(1, o, 1, 1), acc)))
    return low.requant(y, a, out, (1, o, 1, 1), node.name, bound)


def pattern(p) -> Any:
    """astype -> conv2d -> add(bias) -> the requantization tail."""
    x = p.is_op("relax.astype")(p.wildcard())
    return p.requant_tail(p.is_op("relax.add")(p.is_op("relax.nn.conv2d")(x, p.is_const()), p.is_const()))


# -- the float side ----------------------------------------------------------------------------

def from_conv2d(b, var, call, args, acts):
    """A convolution by constant weights (NCHW/OIHW) is a conv2d layer; its bias comes later."""
    if not b.is_constant(args[1]):
        return None
    a = call.attrs
    if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
        raise ModelError(f"{b.label(var, call)}: conv2d must be NCHW/OIHW, not {a.data_layout}/{a.kernel_layout}")
    w = b.const_value(args[1])
    return b.new("conv2d", var, acts, weight=w, bias=np.zeros(w.shape[0]),
                 strides=tuple(int(s) for s in a.strides), padding=tuple(int(p) for p in a.padding),
                 dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups))


_FUSES_BIAS = {"conv2d", "dense"}


def from_affine(b, var, call, args, acts):
    """``x + c`` right after a conv2d/dense (and before its clamp) is its bias; otherwise ``x + c``
    or ``x * c`` with c per channel (a standalone BatchNorm) is a depthwise 1x1 conv2d (4-d) or a
    diagonal dense (2-d)."""
    if len(acts) != 1 or not b.is_constant(args[1]):
        return None
    op, label = b.call_op_name(call), b.label(var, call)
    c = b.const_value(args[1]).astype(np.float64)
    layer = b.fusable(args[0], _FUSES_BIAS) if op == "relax.add" else None
    if layer is not None and "act" not in layer.attrs:
        n = layer.attrs["bias"].shape[0]
        layer.attrs["bias"] = layer.attrs["bias"] + np.broadcast_to(c.reshape(-1), (n,)) if c.size in (1, n) else None
        if layer.attrs["bias"] is None:
            raise ModelError(f"{label}: bias of shape {list(c.shape)} does not fit {n} channels")
        return b.extend(layer, var)
    shape = b.static_shape(var)
    ch = shape[1] if shape and len(shape) >= 2 else None
    if not isinstance(ch, int) or c.size not in (1, ch) or len(shape) not in (2, 4):
        raise ModelError(f"{label}: elementwise {op.removeprefix('relax.')} with a constant of "
                         f"shape {list(c.shape)} has no integer form (per-channel on axis 1 only)")
    vec = np.broadcast_to(c.reshape(-1), (ch,)).astype(np.float64)
    scale = vec if op == "relax.multiply" else np.ones(ch)
    bias = vec if op == "relax.add" else np.zeros(ch)
    if len(shape) == 4:
        return b.new("conv2d", var, acts, weight=scale.reshape(ch, 1, 1, 1), bias=bias, strides=(1, 1),
                     padding=(0, 0, 0, 0), dilation=(1, 1), groups=ch)
    return b.new("dense", var, acts, weight=np.diag(scale), bias=bias)


FLOAT_RULES = (
    ("relax.nn.conv2d", from_conv2d),  # conv2d(x, W) -> conv2d{W, bias 0}
    ("relax.add", from_affine),  # add(conv2d/dense, c) -> its bias; add(x, c[C]) -> conv2d 1x1 / dense diag
    ("relax.multiply", from_affine),  # multiply(x, c[C]) -> conv2d 1x1 depthwise / dense diag
)


def quantize(q) -> dict:
    a = q.attrs
    return dict(q.weighted(0), strides=a["strides"], padding=a["padding"], dilation=a["dilation"], groups=a["groups"])


def float_conv2d(a, x: np.ndarray) -> np.ndarray:
    """The float convolution (float64) of ``x`` by a float layer's attrs ``a``."""
    w = np.asarray(a["weight"], np.float64)
    o, ipg, kh, kw = w.shape
    g = a["groups"]
    win = windows(pad_nchw(x, a["padding"], 0.0), kh, kw, a["strides"], a["dilation"])
    n, _, oh, ow = win.shape[:4]
    y = np.empty((n, o, oh, ow))
    opg = o // g
    for gi in range(g):
        y[:, gi * opg : (gi + 1) * opg] = np.einsum("nchwij,ocij->nohw", win[:, gi * ipg : (gi + 1) * ipg],
                                                     w[gi * opg : (gi + 1) * opg], optimize=True)
    return y + np.asarray(a["bias"]).reshape(1, o, 1, 1)


SPEC = OpSpec("conv2d", Conv2dAttrs, reference, lower, pattern, requantizes=True, fuses_act=True,
              float_rules=FLOAT_RULES, quantize=quantize, float_forward=lambda a, xs: float_conv2d(a, xs[0]))
