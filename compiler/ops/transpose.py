"""transpose: permute the axes of the codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class TransposeAttrs(Attrs):
    axes: tuple[int, ...]


def reference(node, xs, out_type) -> np.ndarray:
    return np.transpose(xs[0], node.attrs.axes)


def lower(low, node, xs, out) -> Any:
    return low.emit(low.op.permute_dims(xs[0], node.attrs.axes), node.name)


def pattern(p) -> Any:
    return p.is_op("relax.permute_dims")(p.wildcard())


SPEC = OpSpec("transpose", TransposeAttrs, reference, lower, pattern, passthrough=True)
