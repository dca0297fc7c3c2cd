"""conv2d: a 2-D convolution of integer codes, bias, per-channel requantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import int_matmul, pad_nchw, windows
from .spec import OpSpec, Requant
from ..quant.numerics import requantize


@dataclass(frozen=True, eq=False, kw_only=True)
class Conv2dAttrs(Requant):
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
    acc_dtype: str
    """The accumulator type of the lowering ("int32" where it provably fits, else "int64")."""
    weight_bits: int | None = None
    """Record only (storage accounting, plots): never read by an executor."""
    weight_scale: np.ndarray | None = None
    """Record only: the float weight scale per output channel [O]."""
    codebook: np.ndarray | None = None
    """Record only (weight sharing): the distinct weight codes."""
    pruned_sparsity: float | None = None
    """Record only (pruning): the fraction of weights set to zero."""


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


SPEC = OpSpec("conv2d", Conv2dAttrs, reference, lower, pattern, requantizes=True)
