"""Requantization constants every backend derives the same way from a QNode's attrs.

``y = saturate(round_shift(acc * M, n))`` (docs/numerics.md).  Hardware wants it in a form
without negative shifts and with one clamp:

* ``shift_constants``: a negative shift ``n`` is a left shift folded into the multiplier
  (``(acc * M) << l == acc * (M << l)``), the right shift capped at 63, and the rounding half
  ``2^(n-1)`` (``RND``) or 0 (``TRN``);
* ``saturate_spec``: the saturation as integers: ``SAT``'s type range and a fused ReLU/ReLU6
  clamp composed into one ``[lo, hi]`` (both clamps are monotone), or ``WRAP``'s mask, its
  sign threshold and modulus, then the optional clamp;
* ``requant_constants``: the per-channel (or per-tensor) ``M``, shift and half, checked
  against the number of channels.

Everything here is plain integers and numpy arrays; each backend renders them (C literals,
Verilog parameters, memory words).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.ops import Requant
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QNode

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class Saturation:
    """After the arithmetic: ``wrap`` = (mask, hi, modulus) keeps the low bits as a two's
    complement code (``v & mask``, minus ``modulus`` when above ``hi``), then ``clamp`` = (lo, hi)."""

    wrap: tuple[int, int, int] | None
    clamp: tuple[int, int] | None


def effective_clamp(out: QType, lo, hi) -> tuple[int, int]:
    """SAT's two clamps (the type's range, then a fused ``[lo, hi]``) as one ``[lo, hi]``."""
    if lo is None and hi is None:
        return out.lo, out.hi
    c_lo = out.lo if lo is None else int(lo)
    c_hi = out.hi if hi is None else int(hi)
    lo_s, hi_s = np.clip(np.array([out.lo, out.hi], np.int64), c_lo, c_hi).tolist()
    return int(lo_s), int(hi_s)


def saturate_spec(out: QType, overflow: str, lo, hi, node: QNode) -> Saturation:
    """``numerics.saturate`` as integer steps (SAT's two clamps composed into one)."""
    given = lo is not None or hi is not None
    if overflow == "SAT":
        return Saturation(None, effective_clamp(out, lo, hi))
    if overflow == "WRAP":
        if out.bits >= 64:
            raise InputError(f"WRAP output of node {node.name!r} must be narrower than 64 bits, not {out.bits}")
        c_lo = out.lo if lo is None else int(lo)
        c_hi = out.hi if hi is None else int(hi)
        return Saturation(((1 << out.bits) - 1, out.hi, 1 << out.bits), (c_lo, c_hi) if given else None)
    raise InputError(f"overflow of node {node.name!r} must be SAT or WRAP, not {overflow!r}")


def shift_constants(mult, shift, rounding: str, node: QNode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M << max(-n, 0), min(max(n, 0), 63), half) with numpy's int64 semantics, as the reference.

    ``(acc * M) << l == acc * (M << l)`` modulo 2^64; numpy gives 0 for shifts >= 64 and, for a
    right shift >= 64, the sign (0 or -1), which ``>> 63`` also gives.
    """
    if rounding not in ("RND", "TRN"):
        raise InputError(f"rounding of node {node.name!r} must be RND or TRN, not {rounding!r}")
    m = np.asarray(mult, dtype=np.int64).reshape(-1)
    n = np.asarray(shift, dtype=np.int64).reshape(-1)
    m, n = np.broadcast_arrays(m, n)
    right = np.maximum(n, 0)
    left = np.maximum(-n, 0)
    meff = m << left
    if rounding == "RND":
        half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0).astype(np.int64)
    else:
        half = np.zeros_like(right)
    return meff, np.minimum(right, 63), half


def requant_constants(attrs: Requant, node: QNode, channels: int | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``shift_constants`` of ``attrs.multiplier``/``["shift"]``/``["rounding"]``: one entry
    per tensor (``channels`` None) or 1 or ``channels`` entries (per output channel)."""
    meff, sh, half = shift_constants(attrs.multiplier, attrs.shift, attrs.rounding, node)
    if channels is None:
        if meff.size != 1:
            raise InputError(f"the multiplier of node {node.name!r} must be one number, not {meff.size}")
    elif meff.size not in (1, channels):
        raise InputError(f"the multiplier of node {node.name!r} must have 1 or {channels} entries, not {meff.size}")
    return meff, sh, half


def clip_bounds(lo, hi) -> tuple[int, int]:
    """A clip node's bounds, a missing one as the int64 extreme."""
    return (INT64_MIN if lo is None else int(lo)), (INT64_MAX if hi is None else int(hi))


__all__ = ["INT64_MAX", "INT64_MIN", "Saturation", "clip_bounds", "effective_clamp", "requant_constants",
           "saturate_spec", "shift_constants"]
