"""concat: join codes along an axis (the inputs share the output scale and type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


@dataclass(frozen=True, eq=False, kw_only=True)
class ConcatAttrs(Attrs):
    axis: int


def reference(node, xs, out_type) -> np.ndarray:
    return np.concatenate([x.astype(np.int64) for x in xs], axis=node.attrs.axis)


def lower(low, node, xs, out) -> Any:
    xs = [x if low.dtype(x) == out.storage else low.emit(low.op.astype(x, out.storage)) for x in xs]
    return low.emit(low.op.concat(xs, axis=node.attrs.axis), node.name)


def pattern(p) -> Any:
    return p.is_op("relax.concat")(p.wildcard())


def from_concat(b, var, call, args, acts):
    return b.new("concat", var, [b.alias.get(f, f) for f in call.args[0].fields], axis=int(call.attrs.axis))


SPEC = OpSpec("concat", ConcatAttrs, reference, lower, pattern, passthrough=True,
              float_rules=(("relax.concat", from_concat),),  # concat((x, y, ...)) -> concat{axis}
              quantize=lambda q: dict(axis=q.attrs["axis"]),
              float_forward=lambda a, xs: np.concatenate(xs, axis=a["axis"]))
