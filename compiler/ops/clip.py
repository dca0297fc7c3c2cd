"""clip: clamp codes (a ReLU / ReLU6 / Clip that could not be fused into its producer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class ClipAttrs(Attrs):
    lo: int
    hi: int


def reference(node, xs, out_type) -> np.ndarray:
    return np.clip(xs[0].astype(np.int64), node.attrs.lo, node.attrs.hi)


def lower(low, node, xs, out) -> Any:
    v = low.emit(low.op.astype(xs[0], "int64"))
    return low.saturate(v, out, "SAT", node.attrs.lo, node.attrs.hi, node.name)


def pattern(p) -> Any:
    return p.saturate(p.is_op("relax.astype")(p.wildcard()))


SPEC = OpSpec("clip", ClipAttrs, reference, lower, pattern, passthrough=True, channelwise=True)
