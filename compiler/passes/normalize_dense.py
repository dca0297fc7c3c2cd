"""Bring every fully connected layer into one dense form: ``matmul(x, W[K, N]) + b[N]``.

    matmul(x * alpha, W)            -> matmul(x, W * alpha)          (Gemm alpha)
    matmul(x, W) + b   (b: [N], [1, N] or scalar)  -> matmul(x, W) + b.reshape(N)
    matmul(x, W)       (no bias)    -> matmul(x, W) + zeros(N)

After ``fold_constants``, Gemm's ``transB`` and ``beta`` are already inside the constants.
Backends and the quantizer then match one pattern for Gemm, MatMul and MatMul+Add.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

from ..frontend.relax_utils import apply_rules, const, const_value

_x, _w, _b, _alpha = wildcard(), is_const(), is_const(), is_const()
_matmul = is_op("relax.matmul")(_x, _w)
_scaled_matmul = is_op("relax.matmul")(is_op("relax.multiply")(_x, _alpha), _w)
_biased = is_op("relax.add")(_matmul, _b)


def _fold_alpha(expr, m):
    alpha, w = const_value(m[_alpha]), const_value(m[_w])
    if alpha.size != 1 or w.ndim != 2:
        return expr
    return relax.op.matmul(m[_x], const((w * alpha.reshape(())).astype(w.dtype)))


def _bias_vector(expr, m):
    w, b = const_value(m[_w]), const_value(m[_b])
    n = w.shape[-1] if w.ndim == 2 else None
    if n is None or b.ndim == 1 and b.shape == (n,):
        return expr
    if b.size == n and all(d == 1 for d in b.shape[:-1]):
        return relax.op.add(m[_matmul], const(b.reshape(n)))
    if b.size == 1:
        return relax.op.add(m[_matmul], const(np.full(n, b.reshape(()), dtype=b.dtype)))
    return expr


RULES = [(_scaled_matmul, _fold_alpha), (_biased, _bias_vector)]


def _add_missing_bias(mod: tvm.IRModule) -> tvm.IRModule:
    # rewrite_call iterates to a fixed point, so the rule for a bare matmul must recognise
    # matmuls that already have a bias (including the ones it just gave one).
    has_bias: set[int] = set()

    def note_biased(expr, m):
        has_bias.add(tvm_ffi.structural_hash(m[_matmul]))
        return expr

    def add_zero_bias(expr, m):
        w = const_value(m[_w])
        key = tvm_ffi.structural_hash(expr)
        if w.ndim != 2 or key in has_bias:
            return expr
        has_bias.add(key)
        return relax.op.add(expr, const(np.zeros(w.shape[1], dtype=w.dtype)))

    func = rewrite_call(_biased, note_biased, mod["main"])
    func = rewrite_call(_matmul, add_zero_bias, func)
    new = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"})
    new["main"] = func
    return new


@tvm.transform.module_pass(opt_level=0, name="nnforge.NormalizeDense")
def normalize_dense(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Rewrite Gemm / MatMul / MatMul+Add into ``matmul(x, W) + b[N]``."""
    return _add_missing_bias(apply_rules(mod, RULES))
