"""reshape: a new shape for the same codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class ReshapeAttrs(Attrs):
    shape: tuple[int, ...]
    """The output shape; the batch dimension is -1 when symbolic."""


def reference(node, xs, out_type) -> np.ndarray:
    return xs[0].reshape([len(xs[0]) if d == -1 else d for d in node.attrs.shape])


def lower(low, node, xs, out) -> Any:
    return low.emit(low.op.reshape(xs[0], low.batch_shape(node.attrs.shape, xs[0])), node.name)


def pattern(p) -> Any:
    return p.is_op("relax.reshape")(p.wildcard(), p.wildcard())  # data, shape


SPEC = OpSpec("reshape", ReshapeAttrs, reference, lower, pattern, passthrough=True)
