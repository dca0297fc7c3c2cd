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


def from_permute_dims(b, var, call, args, acts):
    axes = call.attrs.axes
    return b.new("transpose", var, acts, axes=None if axes is None else tuple(int(x) for x in axes))


SPEC = OpSpec("transpose", TransposeAttrs, reference, lower, pattern, passthrough=True,
              float_rules=(("relax.permute_dims", from_permute_dims),),  # permute_dims(x) -> transpose{axes}
              quantize=lambda q: dict(axes=q.attrs["axes"]),
              float_forward=lambda a, xs: np.transpose(xs[0], a["axes"]))
