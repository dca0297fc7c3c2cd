"""requant: rescale one tensor to another scale and type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import requant as requant_codes
from .spec import OpSpec, Requant


@dataclass(frozen=True, eq=False, kw_only=True)
class RequantAttrs(Requant):
    """y = saturate(round_shift(x * M, n))."""


def reference(node, xs, out_type) -> np.ndarray:
    return requant_codes(xs[0].astype(np.int64), node.attrs, out_type)


def lower(low, node, xs, out) -> Any:
    return low.requant(xs[0], node.attrs, out, None, node.name, low.max_abs(node))


def pattern(p) -> Any:
    return p.requant_tail(p.wildcard())


SPEC = OpSpec("requant", RequantAttrs, reference, lower, pattern)
