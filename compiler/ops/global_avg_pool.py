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


SPEC = OpSpec("global_avg_pool", GlobalAvgPoolAttrs, reference, lower, pattern, requantizes=True,
              channelwise=True)
