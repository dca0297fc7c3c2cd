"""Bring every fully connected layer into one dense form: ``matmul(x, W[K, N]) + b[N]``.

    matmul(x * alpha, W)            -> matmul(x, W * alpha)          (Gemm alpha)
    matmul(x, W) + b   (b: [N], [1, N] or scalar)  -> matmul(x, W) + b.reshape(N)
    matmul(x, W)       (no bias)    -> matmul(x, W) + zeros(N)

After ``fold_constants``, Gemm's ``transB`` and ``beta`` are already inside the constants.
Backends and the quantizer then match one pattern for Gemm, MatMul and MatMul+Add.
"""

from __future__ import annotations

import numpy as np

from ..frontend.relax_utils import (IRModule, apply_rules, const, const_value, is_const, is_op, module_pass, op,
                                  structural_hash, wildcard)

_x, _w, _b, _alpha = wildcard(), is_const(), is_const(), is_const()
_matmul = is_op("relax.matmul")(_x, _w)
_scaled_matmul = is_op("relax.matmul")(is_op("relax.multiply")(_x, _alpha), _w)
_biased = is_op("relax.add")(_matmul, _b)


def _fold_alpha(expr, m):
    alpha, w = const_value(m[_alpha]), const_value(m[_w])
    if alpha.size != 1 or w.ndim != 2:
        return expr
    return op.matmul(m[_x], const((w * alpha.reshape(())).astype(w.dtype)))


def _bias_vector(expr, m):
    w, b = const_value(m[_w]), const_value(m[_b])
    n = w.shape[-1] if w.ndim == 2 else None
    if n is None or b.ndim == 1 and b.shape == (n,):
        return expr
    if b.size == n and all(d == 1 for d in b.shape[:-1]):
        return op.add(m[_matmul], const(b.reshape(n)))
    if b.size == 1:
        return op.add(m[_matmul], const(np.full(n, b.reshape(()), dtype=b.dtype)))
    return expr


RULES = [(_scaled_matmul, _fold_alpha), (_biased, _bias_vector)]


def _add_missing_bias(mod: IRModule) -> IRModule:
    # rewrite_call iterates to a fixed point, so the rule for a bare matmul must recognise
    # matmuls that already have a bias (including the ones it just gave one).
    has_bias: set[int] = set()

    def note_biased(expr, m):
        has_bias.add(structural_hash(m[_matmul]))
        return expr

    def add_zero_bias(expr, m):
        w = const_value(m[_w])
        key = structural_hash(expr)
        if w.ndim != 2 or key in has_bias:
            return expr
        has_bias.add(key)
        return op.add(expr, const(np.zeros(w.shape[1], dtype=w.dtype)))

    return apply_rules(mod, [(_biased, note_biased), (_matmul, add_zero_bias)], eliminate_dead_code=False)


@module_pass("nnforge.NormalizeDense")
def normalize_dense(mod: IRModule, _ctx) -> IRModule:
    """Rewrite Gemm / MatMul / MatMul+Add into ``matmul(x, W) + b[N]``."""
    return _add_missing_bias(apply_rules(mod, RULES))
