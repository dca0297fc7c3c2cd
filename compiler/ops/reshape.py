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


def from_reshape(b, var, call, args, acts):
    shape = b.static_shape(var)
    return b.new("reshape", var, acts, shape=tuple(-1 if isinstance(d, str) else d for d in shape))


SPEC = OpSpec("reshape", ReshapeAttrs, reference, lower, pattern, passthrough=True,
              float_rules=(("relax.reshape", from_reshape),),  # reshape(x) -> reshape{static shape, batch -1}
              quantize=lambda q: dict(shape=q.attrs["shape"]),
              float_forward=lambda a, xs: xs[0].reshape([len(xs[0]) if d == -1 else d for d in a["shape"]]))
