"""hard_swish: ONNX HardSwish, ``y = x * relu6(x + 3) / 6``, on integer codes.

The integer definition (docs/numerics.md), for input codes ``x`` at scale ``s_x`` and an output
at scale ``s_y``:

1. ``c3 = max(1, floor(3 / s_x + 1/2))``: the code of real 3.0 at the input scale, rounded as the
   model boundary rounds (``numerics.quantize``, not saturated: it may exceed the input type);
   ``c6 = 2 * c3``;
2. the gate ``t = clamp(x + c3, 0, c6)`` (int64);
3. ``y = saturate(round_shift(x * t * M, n))`` with ``M / 2^n ~= s_x / (s_y * c6)``
   (``quantize_multiplier(..., "float")`` in every scale mode: ``c6`` is not a power of two),
   rounding, overflow and clamps as every requantizing op (``numerics.requantize``).

``t / c6`` is the hard sigmoid ``clamp(x/6 + 1/2, 0, 1)`` with its corners moved to the codes
nearest -3 and +3: exactly 1/2 at ``x = 0``, exactly 0 for ``x <= -c3`` and exactly 1 for
``x >= c3``, so the op is exactly 0 on the left and exactly the rescale ``x * s_x / s_y`` on the
right, as the real function is.  Dividing by ``c6`` rather than ``6 / s_x`` is what keeps the
right-hand side exact; the corners move by at most half an input code.  ``c3 >= 1`` keeps the
gate defined for inputs coarser than 3 (``s_x > 6``), where it gives the real function exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import requant
from .spec import OpSpec, Requant


@dataclass(frozen=True, eq=False, kw_only=True)
class HardSwishAttrs(Requant):
    """multiplier and shift are one (M, n): ``M / 2^n ~= s_x / (s_y * c6)``."""

    c3: int
    """The gate's offset: real 3.0 as an input code, ``max(1, floor(3 / s_x + 1/2))``."""
    c6: int
    """The gate's top, ``2 * c3``: the gate is ``clamp(x + c3, 0, c6)``."""


def constants(s_x: float, s_y: float) -> tuple[int, int, float]:
    """``(c3, c6, ratio)`` for input scale ``s_x`` and output scale ``s_y`` (module docstring);
    ``ratio = s_x / (s_y * c6)`` is what ``M / 2^n`` approximates.  ValueError when 3 / s_x is
    not a finite number of codes."""
    third = 3.0 / s_x + 0.5
    if not math.isfinite(third):
        raise ValueError(f"the input scale must put real 3.0 at a finite code, not scale {s_x!r}")
    c3 = max(1, math.floor(third))
    return c3, 2 * c3, s_x / (s_y * 2 * c3)


def gate(x: np.ndarray, a: HardSwishAttrs) -> np.ndarray:
    """``clamp(x + c3, 0, c6)`` in int64: the hard sigmoid times ``c6``."""
    return np.clip(np.asarray(x, np.int64) + a.c3, 0, a.c6)


def reference(node, xs, out_type) -> np.ndarray:
    x = xs[0].astype(np.int64)
    return requant(x * gate(x, node.attrs), node.attrs, out_type)


def lower(low, node, xs, out) -> Any:
    """astype(int64) -> add(c3) -> maximum(0) -> minimum(c6) -> multiply(x, t) -> the requant tail."""
    a = node.attrs
    x = low.emit(low.op.astype(xs[0], "int64"))
    t = low.emit(low.op.add(x, low.const(a.c3, "int64")))
    t = low.emit(low.op.maximum(t, low.const(0, "int64")))
    t = low.emit(low.op.minimum(t, low.const(a.c6, "int64")))
    v = low.emit(low.op.multiply(x, t))
    return low.requant(v, a, out, None, node.name, low.max_abs(node) * a.c6)


def pattern(p) -> Any:
    """The chain ``lower`` emits; it must come before ``requant`` in the table, whose pattern
    would otherwise take the tail."""
    x = p.is_op("relax.astype")(p.wildcard())
    t = p.clamp(p.is_op("relax.add")(x, p.is_const()))
    return p.requant_tail(p.is_op("relax.multiply")(x, t))


# -- the float side ----------------------------------------------------------------------------

def float_chain(b) -> tuple[dict, set]:
    """ONNX HardSwish as TVM's importer writes it: ``multiply(x, divide(clip(add(x, 3), 0, 6), 6))``.
    Returns {multiply var: (x, {})} and the vars of the inner steps (each used only by the next)."""
    chains, inner = {}, set()
    for var, call in b.bindings.items():
        if b.call_op_name(call) != "relax.multiply":
            continue
        x, div = call.args
        d = b.single_use(div, "relax.divide")
        c = None if d is None else b.single_use(d.args[0], "relax.clip")
        a = None if c is None else b.single_use(c.args[0], "relax.add")
        if (a is None or not a.args[0].same_as(x) or b.scalar(a.args[1]) != 3.0 or b.scalar(d.args[1]) != 6.0
                or [float(v.value) for v in c.args[1:]] != [0.0, 6.0]):
            continue
        chains[var] = (x, {})
        inner.update((div, d.args[0], c.args[0]))
    return chains, inner


def quantize(q) -> dict:
    """The gate's c3, c6 and one (M, n), from the final scales (``constants``)."""
    ins = q.ins
    try:
        c3, c6, ratio = constants(ins[0].scale, q.out.scale)
    except ValueError as err:
        raise q.error(str(err)) from None
    m, n = q.multiplier("output", ratio, "float")
    q.check_requant("output", max(abs(ins[0].qtype.lo), ins[0].qtype.hi) * c6, m, n)
    return dict(c3=c3, c6=c6, multiplier=m, shift=n, lo=q.lo, hi=q.hi, **q.common)


def float_forward(a, xs) -> np.ndarray:
    """The real function (float64), for the float layer runner of the compression passes."""
    x = xs[0]
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


SPEC = OpSpec("hard_swish", HardSwishAttrs, reference, lower, pattern, requantizes=True, channelwise=True,
              float_chain=float_chain, quantize=quantize, float_forward=float_forward)
