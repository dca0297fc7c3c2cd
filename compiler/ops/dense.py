"""dense: a matrix product of integer codes, bias, per-column requantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import int_matmul, requant
from .spec import OpSpec, Weighted


@dataclass(frozen=True, eq=False, kw_only=True)
class DenseAttrs(Weighted):
    """multiplier and shift are [N] (or one scalar)."""

    weight: np.ndarray
    """Weight codes [K, N] (y = x @ weight)."""
    bias: np.ndarray
    """Bias codes [N] at the accumulator scale s_x * s_w."""


def reference(node, xs, out_type) -> np.ndarray:
    a = node.attrs
    bias = a.bias.astype(np.int64)
    acc = int_matmul(xs[0], a.weight, int(np.abs(bias).max(initial=0))) + bias
    return requant(acc, a, out_type)


def lower(low, node, xs, out) -> Any:
    a = node.attrs
    acc, bound = low.mac_dtype(node, 1)
    x = low.emit(low.op.astype(xs[0], acc))
    y = low.emit(low.op.matmul(x, low.const(a.weight, acc), out_dtype=acc))
    y = low.emit(low.op.add(y, low.const(a.bias, acc)))
    return low.requant(y, a, out, (a.weight.shape[1],), node.name, bound)


def pattern(p) -> Any:
    """astype -> matmul -> add(bias) -> the requantization tail."""
    x = p.is_op("relax.astype")(p.wildcard())
    return p.requant_tail(p.is_op("relax.add")(p.is_op("relax.matmul")(x, p.is_const()), p.is_const()))


def from_matmul(b, var, call, args, acts):
    """A product by a constant 2-d matrix is a dense layer; its bias comes later (conv2d.from_affine)."""
    if not (b.is_constant(args[1]) and b.const_value(args[1]).ndim == 2):
        return None
    w = b.const_value(args[1])
    return b.new("dense", var, acts, weight=w, bias=np.zeros(w.shape[1]))


def float_forward(a, xs) -> np.ndarray:
    return xs[0] @ np.asarray(a["weight"], np.float64) + np.asarray(a["bias"])


SPEC = OpSpec("dense", DenseAttrs, reference, lower, pattern, requantizes=True, fuses_act=True,
              float_rules=(("relax.matmul", from_matmul),),  # matmul(x, W) -> dense{W, bias 0}
              quantize=lambda q: q.weighted(1), float_forward=float_forward)
