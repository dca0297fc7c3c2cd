"""lrn: local response normalization across channels, with a table for the power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec
from ..quant.numerics import lrn_table, requantize


@dataclass(frozen=True, eq=False, kw_only=True)
class LrnAttrs(Attrs):
    """y = saturate(round_shift(x * table[S >> index_shift], shift)), S = the sum of x^2 over the
    channel window c - before .. c + after (those that exist)."""

    before: int
    after: int
    table: np.ndarray
    """The factor F[T], indexed by the shifted window sum."""
    index_shift: int
    """k: the window sum is shifted right by k before the lookup."""
    shift: int
    """n: the final right shift."""
    lo: int | None
    hi: int | None
    rounding: str
    overflow: str


def reference(node, xs, out_type) -> np.ndarray:
    """Local response normalization: ``S`` = the sum of squared codes over the channels
    ``c - before .. c + after`` (those that exist), then ``saturate(round_shift(q * F[S >> k], n))``."""
    a = node.attrs
    x = xs[0].astype(np.int64)
    sq = np.pad(x * x, [(0, 0), (a.before, a.after)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    s = sum(sq[:, j:j + c] for j in range(a.before + a.after + 1))
    return requantize(x * a.table[s >> a.index_shift], 1, a.shift, out_type, a.rounding,
                      a.overflow, a.lo, a.hi)


def lower(low, node, xs, out) -> Any:
    """The window sum of squares as a conv3d over channels (of [N, 1, C, H, W]), the table lookup,
    the requant.  No reshape or pad: a backend without LRN must not take part of the chain."""
    a = node.attrs
    op = low.op
    x = low.emit(op.astype(xs[0], "int64"))
    sq = low.emit(op.expand_dims(low.emit(op.multiply(x, x)), axis=1))
    ones = np.ones((1, 1, a.before + a.after + 1, 1, 1), np.int64)
    s = low.emit(op.nn.conv3d(sq, low.const(ones, "int64"), padding=(a.before, 0, 0, a.after, 0, 0),
                              out_dtype="int64"))
    s = low.emit(op.squeeze(s, axis=[1]))
    if a.index_shift:
        s = low.emit(op.right_shift(s, low.const(a.index_shift, "int64")))
    f = low.emit(op.take(low.const(a.table, "int64"), s, axis=0, mode="clip"))
    v = low.round_shift(low.emit(op.multiply(x, f)), np.asarray(a.shift, np.int64), a.rounding)
    return low.saturate(v, out, a.overflow, a.lo, a.hi, node.name)


def pattern(p) -> Any:
    """The squares summed over channels by a conv3d, the factor looked up, then the requantization
    tail without a constant multiplier."""
    x = p.is_op("relax.astype")(p.wildcard())
    view = p.is_op("relax.expand_dims")(p.is_op("relax.multiply")(x, x))
    s = p.is_op("relax.squeeze")(p.is_op("relax.nn.conv3d")(view, p.is_const()))
    factor = p.is_op("relax.take")(p.is_const(), p.optional("relax.right_shift", s))
    return p.saturate(p.round_shift(p.is_op("relax.multiply")(x, factor)))


# -- the float side ----------------------------------------------------------------------------

_STEPS = ("relax.power", "relax.add", "relax.multiply", "relax.squeeze", "relax.nn.avg_pool3d",
          "relax.expand_dims", "relax.multiply")  # from the divisor up to the square


def float_chain(b) -> tuple[dict, set]:
    """The local response normalizations as TVM's ONNX importer writes them::

        divide(x, power(add(multiply(squeeze(avg_pool3d(expand_dims(multiply(x, x)))), alpha), bias), beta))

    (the 3-d pool, over channels only and counting its padding, is the window mean of the squares).
    Returns {divide var: (x, attrs)} and the vars of the inner steps (each used only by the next)."""
    chains, inner = {}, set()
    for var, call in b.bindings.items():
        if b.call_op_name(call) != "relax.divide":
            continue
        x, arg, steps = call.args[0], call.args[1], []
        for op in _STEPS:  # each step's first argument is the previous step, used only there
            v = b.single_use(arg, op)
            if v is None:
                break
            steps.append((arg, v))
            arg = v.args[0]
        if len(steps) != len(_STEPS):
            continue
        (_, power), (_, add), (_, mul), (_, squeeze), (_, pool), (_, expand), (_, square) = steps
        beta, bias, alpha = b.scalar(power.args[1]), b.scalar(add.args[1]), b.scalar(mul.args[1])
        pa = pool.attrs
        size, pad = [int(v) for v in pa.pool_size], [int(v) for v in pa.padding]
        if (not (square.args[0].same_as(x) and square.args[1].same_as(x)) or None in (beta, bias, alpha)
                or [int(a) for a in expand.attrs.axis] != [1] or [int(a) for a in squeeze.attrs.axis] != [1]
                or size[1:] != [1, 1] or pad[1:3] + pad[4:] != [0] * 4 or [int(v) for v in pa.strides] != [1] * 3
                or not bool(pa.count_include_pad) or pad[0] + pad[3] + 1 != size[0]
                or len(b.static_shape(x) or ()) != 4):
            continue
        # the pool divides by size: y = x / (bias + alpha/size * sum of squares)^beta, as ONNX LRN
        chains[var] = (x, dict(size=size[0], before=pad[0], after=pad[3], alpha=alpha, beta=beta, bias=bias))
        inner.update(v for v, _ in steps)
    return chains, inner


def quantize(q) -> dict:
    """The power as a table over the shifted window sum (``numerics.lrn_table``)."""
    a, ins = q.attrs, q.ins
    qin = ins[0].qtype
    xmax = max(abs(qin.lo), qin.hi)
    bound = a["size"] * xmax * xmax
    try:
        table, k, n = lrn_table(bound, ins[0].scale / q.out.scale, a["bias"],
                                a["alpha"] / a["size"] * ins[0].scale ** 2, a["beta"])
    except ValueError as err:
        raise q.error(f"LRN has an integer form only with {err}") from None
    q.check_requant("LRN", xmax, int(table.max()), n)
    return dict(before=a["before"], after=a["after"], table=table, index_shift=k, shift=n, lo=q.lo, hi=q.hi,
                **q.common)


def float_forward(a, xs) -> np.ndarray:
    x = xs[0]
    sq = np.pad(x * x, [(0, 0), (a["before"], a["after"])] + [(0, 0)] * (x.ndim - 2))
    s = sum(sq[:, j:j + x.shape[1]] for j in range(a["size"]))
    return x / (a["bias"] + a["alpha"] / a["size"] * s) ** a["beta"]


SPEC = OpSpec("lrn", LrnAttrs, reference, lower, pattern, requantizes=True,
              float_chain=float_chain, quantize=quantize, float_forward=float_forward)
