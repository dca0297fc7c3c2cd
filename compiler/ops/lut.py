"""lut: an elementwise function as a lookup table over every input code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class LutAttrs(Attrs):
    """y = table[x - offset]."""

    table: np.ndarray
    """Output codes [2^bits_in], one per input code from the input type's minimum up."""
    offset: int
    """The input type's minimum code."""


def reference(node, xs, out_type) -> np.ndarray:
    return node.attrs.table[xs[0].astype(np.int64) - node.attrs.offset]


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    idx = low.emit(low.op.astype(xs[0], "int64"))
    idx = low.emit(low.op.subtract(idx, low.const(a.offset, "int64")))
    v = low.emit(low.op.take(low.const(a.table, "int64"), idx, axis=0, mode="clip"))
    return low.emit(low.op.astype(v, out.storage), node.name)


def pattern(p) -> Any:
    idx = p.is_op("relax.subtract")(p.is_op("relax.astype")(p.wildcard()), p.is_const())
    return p.is_op("relax.astype")(p.is_op("relax.take")(p.is_const(), idx))


SPEC = OpSpec("lut", LutAttrs, reference, lower, pattern, requantizes=True, channelwise=True)
