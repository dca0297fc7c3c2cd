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


# -- the float side ----------------------------------------------------------------------------

def clamp_bounds(b, call) -> tuple[float | None, float | None] | None:
    """(lo, hi) of relu / clip / maximum(x, c) / minimum(x, c); None for other ops."""
    op = b.call_op_name(call)
    if op == "relax.nn.relu":
        return 0.0, None
    if op == "relax.clip":
        return float(call.args[1].value), float(call.args[2].value)
    if op in ("relax.maximum", "relax.minimum") and b.is_constant(call.args[1]):
        c = b.const_value(call.args[1])
        if c.size == 1:
            v = float(c.reshape(()))
            return (v, None) if op == "relax.maximum" else (None, v)
    return None


def merge_act(old, new):
    """Two clamps (lo, hi) in a row as one: the larger lo, the smaller hi."""
    lo = max(x for x in (old[0], new[0]) if x is not None) if (old[0] is not None or new[0] is not None) else None
    hi = min(x for x in (old[1], new[1]) if x is not None) if (old[1] is not None or new[1] is not None) else None
    return lo, hi


def from_clamp(b, var, call, args, acts):
    """A clamp of a layer's output that nothing else reads becomes that layer's activation
    (``act``, its output clamp); any other clamp is a clip layer."""
    bounds = clamp_bounds(b, call)
    if bounds is None or not acts:
        return None
    layer = b.fusable(args[0], b.fuses_act)
    if layer is None:
        return b.new("clip", var, acts, act=bounds)
    layer.attrs["act"] = merge_act(layer.act, bounds)
    return b.extend(layer, var)


FLOAT_RULES = (
    ("relax.nn.relu", from_clamp),  # relu(layer) -> layer{act (0, None)}; relu(x) -> clip
    ("relax.clip", from_clamp),  # clip(layer, lo, hi) -> layer{act (lo, hi)}; clip(x, lo, hi) -> clip
    ("relax.maximum", from_clamp),  # maximum(layer, c) -> layer{act (c, None)}; else clip
    ("relax.minimum", from_clamp),  # minimum(layer, c) -> layer{act (None, c)}; else clip
)


def quantize(q) -> dict:
    return dict(lo=q.lo if q.lo is not None else q.out.qtype.lo, hi=q.hi if q.hi is not None else q.out.qtype.hi)


SPEC = OpSpec("clip", ClipAttrs, reference, lower, pattern, passthrough=True, channelwise=True,
              float_rules=FLOAT_RULES, quantize=quantize,
              float_forward=lambda a, xs: xs[0])  # the clamp itself is the layer's act
