"""add: two inputs, each rescaled to the output scale, summed and saturated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec
from ..quant.numerics import round_shift, saturate


@dataclass(frozen=True, eq=False, kw_only=True)
class AddAttrs(Attrs):
    """y = saturate(round_shift(a * Ma, na) + round_shift(b * Mb, nb))."""

    multipliers: tuple[int, int]
    """(Ma, Mb)."""
    shifts: tuple[int, int]
    """(na, nb)."""
    lo: int | None
    hi: int | None
    rounding: str
    overflow: str


def reference(node, xs, out_type) -> np.ndarray:
    a = node.attrs
    (ma, mb), (na, nb) = a.multipliers, a.shifts
    ya = round_shift(xs[0].astype(np.int64) * ma, na, a.rounding)
    yb = round_shift(xs[1].astype(np.int64) * mb, nb, a.rounding)
    return saturate(ya + yb, out_type, a.overflow, a.lo, a.hi)


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    parts = []
    for x, m, n in zip(xs, a.multipliers, a.shifts):
        v = low.emit(low.op.astype(x, "int64"))
        v = low.emit(low.op.multiply(v, low.const(m, "int64")))
        parts.append(low.round_shift(v, np.asarray(n, np.int64), a.rounding))
    v = low.emit(low.op.add(parts[0], parts[1]))
    return low.saturate(v, out, a.overflow, a.lo, a.hi, node.name)


def pattern(p) -> Any:
    def branch():
        return p.round_shift(p.is_op("relax.multiply")(p.is_op("relax.astype")(p.wildcard()), p.is_const()))

    return p.saturate(p.is_op("relax.add")(branch(), branch()))


def from_add(b, var, call, args, acts):
    return b.new("add", var, acts) if len(acts) == 2 else None


def quantize(q) -> dict:
    ins = q.ins
    (ma, na), (mb, nb) = (q.multiplier("input", p.scale / q.out.scale) for p in ins)
    for p, m, n in ((ins[0], ma, na), (ins[1], mb, nb)):
        q.check_requant("input", max(abs(p.qtype.lo), p.qtype.hi), m, n)
    return dict(multipliers=(int(ma), int(mb)), shifts=(int(na), int(nb)), lo=q.lo, hi=q.hi, **q.common)


SPEC = OpSpec("add", AddAttrs, reference, lower, pattern, requantizes=True, fuses_act=True,
              float_rules=(("relax.add", from_add),),  # add(x, y), both activations -> add
              quantize=quantize, float_forward=lambda a, xs: xs[0] + xs[1])
