"""lut: an elementwise function as a lookup table over every input code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec
from ..quant.numerics import quantize as quantize_values


@dataclass(frozen=True, eq=False, kw_only=True)
class LutAttrs(Attrs):
    """y = table[x - offset]."""

    table: np.ndarray
    """Output codes [2^bits_in], one per input code from the input type's minimum up."""
    offset: int
    """The input type's minimum code."""


def reference(node, xs, out_type) -> np.ndarray:
    return node.attrs.table[xs[0].astype(np.int64) - node.attrs.offset]


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    idx = low.emit(low.op.astype(xs[0], "int64"))
    idx = low.emit(low.op.subtract(idx, low.const(a.offset, "int64")))
    v = low.emit(low.op.take(low.const(a.table, "int64"), idx, axis=0, mode="clip"))
    return low.emit(low.op.astype(v, out.storage), node.name)


def pattern(p) -> Any:
    idx = p.is_op("relax.subtract")(p.is_op("relax.astype")(p.wildcard()), p.is_const())
    return p.is_op("relax.astype")(p.is_op("relax.take")(p.is_const(), idx))


# -- the float side ----------------------------------------------------------------------------

# Relax op -> (name, the float function ``fn(x, attrs)``) that the table tabulates
LUT_FUNCS = {
    "relax.sigmoid": ("sigmoid", lambda x, a: 1.0 / (1.0 + np.exp(-x))),
    "relax.tanh": ("tanh", lambda x, a: np.tanh(x)),
    "relax.nn.leakyrelu": ("leaky_relu", lambda x, a: np.where(x >= 0, x, x * a["alpha"])),
}


def from_function(b, var, call, args, acts):
    op = b.call_op_name(call)
    fname, fn = LUT_FUNCS[op]
    attrs = {"alpha": float(call.attrs.alpha)} if op == "relax.nn.leakyrelu" else {}
    return b.new("lut", var, acts, fn=fn, fn_name=fname, **attrs)


def quantize(q) -> dict:
    """The float function on every input code, quantized at the output scale."""
    a, ins = q.attrs, q.ins
    qin = ins[0].qtype
    if qin.bits > 16:
        raise q.error(f"a lookup table needs an input of at most 16 bits, not {qin.bits}")
    codes = np.arange(qin.lo, qin.hi + 1, dtype=np.int64)
    with np.errstate(all="ignore"):
        values = np.asarray(a["fn"](codes * ins[0].scale, a), np.float64)
    if not np.all(np.isfinite(values)):
        raise q.error(f"its lookup table must have finite values, not NaN/Inf "
                      f"({int(values.size - np.count_nonzero(np.isfinite(values)))} entries)")
    table = quantize_values(values, q.out.scale, q.out.qtype, q.lq.rounding)
    return dict(table=table, offset=qin.lo)


SPEC = OpSpec("lut", LutAttrs, reference, lower, pattern, requantizes=True, channelwise=True,
              float_rules=(
                  ("relax.sigmoid", from_function),  # sigmoid(x) -> lut{fn sigmoid}
                  ("relax.tanh", from_function),  # tanh(x) -> lut{fn tanh}
                  ("relax.nn.leakyrelu", from_function),  # leakyrelu(x) -> lut{fn leaky_relu, alpha}
              ),
              quantize=quantize, float_forward=lambda a, xs: a["fn"](xs[0], a))
