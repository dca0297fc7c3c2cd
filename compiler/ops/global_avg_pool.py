"""global_avg_pool: the sum over H and W, requantized (the divisor is folded into M)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import requant
from .spec import OpSpec, Requant


@dataclass(frozen=True, eq=False, kw_only=True)
class GlobalAvgPoolAttrs(Requant):
    keepdims: bool | None = None
    """Output [N, C, 1, 1] (True) or [N, C]; absent: True."""


def keeps_dims(a: GlobalAvgPoolAttrs) -> bool:
    """Whether the output keeps the H and W axes (absent: it does)."""
    return True if a.keepdims is None else a.keepdims


def reference(node, xs, out_type) -> np.ndarray:
    return requant(xs[0].astype(np.int64).sum(axis=(2, 3), keepdims=keeps_dims(node.attrs)), node.attrs, out_type)


def lower(low, node, xs, out) -> Any:
    hw = low.static_dims(xs[0], (2, 3))
    bound = math.prod(hw) * low.max_abs(node) if hw is not None else None
    acc = "int32" if low.fast and bound is not None and bound < 2**31 else "int64"
    x = low.emit(low.op.astype(xs[0], acc))
    s = low.emit(low.op.sum(x, axis=[2, 3], keepdims=keeps_dims(node.attrs)))
    return low.requant(s, node.attrs, out, None, node.name, bound)


def pattern(p) -> Any:
    return p.requant_tail(p.is_op("relax.sum")(p.is_op("relax.astype")(p.wildcard())))


def from_mean(b, var, call, args, acts):
    """The mean over H and W."""
    if [int(x) for x in call.attrs.axis] not in ([2, 3], [-2, -1]):
        return None
    shape = b.static_shape(args[0])
    return b.new("global_avg_pool", var, acts, keepdims=bool(call.attrs.keepdims), window=shape[2] * shape[3])


def quantize(q) -> dict:
    """The divisor (the window, H * W) goes into (M, n)."""
    a, ins = q.attrs, q.ins
    m, n = q.multiplier("average", ins[0].scale / (q.out.scale * a["window"]), "float")
    q.check_requant("average", max(abs(ins[0].qtype.lo), ins[0].qtype.hi) * int(a["window"]), m, n)
    return dict(multiplier=m, shift=n, lo=q.lo, hi=q.hi, keepdims=a["keepdims"], **q.common)


SPEC = OpSpec("global_avg_pool", GlobalAvgPoolAttrs, reference, lower, pattern, requantizes=True,
              channelwise=True, fuses_act=True,
              float_rules=(("relax.mean", from_mean),),  # mean(x, axis=[2, 3]) -> global_avg_pool
              quantize=quantize,
              float_forward=lambda a, xs: xs[0].mean(axis=(2, 3), keepdims=a.get("keepdims", True)))
