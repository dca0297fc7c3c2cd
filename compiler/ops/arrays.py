"""Numpy helpers shared by the op references (and by the backends' window arithmetic).

Two things keep the reference fast enough for golden vectors of full-size models without
changing a code: MACs as a matrix product in float64 where every partial sum is an exact
integer (``int_matmul``), and sliding-window views instead of loops (``windows``)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..quant.numerics import requantize

F64_EXACT = 1 << 53  # every integer of magnitude < 2^53 is a float64


def pad_nchw(x: np.ndarray, padding, value: int) -> np.ndarray:
    """``x`` [N, C, H, W] padded by (top, left, bottom, right) with ``value``."""
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def windows(x: np.ndarray, kh: int, kw: int, strides, dilation) -> np.ndarray:
    """[N, C, OH, OW, kh, kw] views of the (already padded) input."""
    dh, dw = dilation
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]
    return win


def ceil_extra(size: int, k: int, s: int, d: int, before: int, after: int) -> int:
    """Extra end padding for ``ceil_mode``: out = ceil((size + pads - span) / s) + 1, less one
    when the last window would start in the end padding (ONNX / PyTorch / TVM rule)."""
    span = d * (k - 1) + 1
    total = size + before + after
    out = -(-(total - span) // s) + 1
    if (out - 1) * s >= size + before:
        out -= 1
    return max(0, (out - 1) * s + span - total)


def int_matmul(x: np.ndarray, w: np.ndarray, bias_bound: int = 0) -> np.ndarray:
    """``x @ w`` of integer codes (``[..., K] @ [..., K, N]``) as int64, exactly.

    The product runs in float64 (BLAS) when ``max|x| * max_o sum_k |w_ok| + max|b| < 2^53``: then
    every product and every partial sum, in any order and with or without FMA, is an integer of
    magnitude below 2^53, which float64 holds exactly, so the result is the int64 sum.  Otherwise
    it runs in int64."""
    bound = (int(np.abs(x).max(initial=0)) * int(np.abs(w).sum(axis=-2).max(initial=0)) + bias_bound)
    if bound < F64_EXACT:
        return np.matmul(x.astype(np.float64), w.astype(np.float64)).astype(np.int64)
    return np.matmul(x.astype(np.int64), w.astype(np.int64))


def requant(acc, a, out_type) -> np.ndarray:
    """The requantization tail of attrs ``a`` (a ``spec.Requant``) on accumulator codes."""
    return requantize(acc, a.multiplier, a.shift, out_type, a.rounding, a.overflow, a.lo, a.hi)
