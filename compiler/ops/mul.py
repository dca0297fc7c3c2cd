"""mul: the product of two inputs' codes, requantized."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import requant
from .spec import OpSpec, Requant


@dataclass(frozen=True, eq=False, kw_only=True)
class MulAttrs(Requant):
    """y = requant(a * b)."""


def reference(node, xs, out_type) -> np.ndarray:
    return requant(xs[0].astype(np.int64) * xs[1].astype(np.int64), node.attrs, out_type)


def lower(low, node, xs, out) -> Any:
    a0 = low.emit(low.op.astype(xs[0], "int64"))
    a1 = low.emit(low.op.astype(xs[1], "int64"))
    return low.requant(low.emit(low.op.multiply(a0, a1)), node.attrs, out, None, node.name)


def pattern(p) -> Any:
    a, b = p.is_op("relax.astype")(p.wildcard()), p.is_op("relax.astype")(p.wildcard())
    return p.requant_tail(p.is_op("relax.multiply")(a, b))


def from_multiply(b, var, call, args, acts):
    return b.new("mul", var, acts) if len(acts) == 2 else None


def quantize(q) -> dict:
    ins = q.ins
    m, n = q.multiplier("output", ins[0].scale * ins[1].scale / q.out.scale)
    q.check_requant("output", max(abs(ins[0].qtype.lo), ins[0].qtype.hi) * max(abs(ins[1].qtype.lo), ins[1].qtype.hi),
                    m, n)
    return dict(multiplier=m, shift=n, lo=q.lo, hi=q.hi, **q.common)


SPEC = OpSpec("mul", MulAttrs, reference, lower, pattern, requantizes=True, fuses_act=True,
              float_rules=(("relax.multiply", from_multiply),),  # multiply(x, y), both activations -> mul
              quantize=quantize, float_forward=lambda a, xs: xs[0] * xs[1])
