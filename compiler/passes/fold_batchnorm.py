"""Fold inference-mode BatchNormalization into the layer before it.

With s = gamma / sqrt(var + eps) per channel:

    bn(conv2d(x, W) [+ b])[0]   -> conv2d(x, W * s[o]) + ((b - mean) * s + beta)
    bn(matmul(x, W) [+ b])[0]   -> matmul(x, W * s[n]) + ((b - mean) * s + beta)   (channel = last axis)
    bn(x)[0]                    -> x * s + (beta - mean * s)                      (standalone: per-channel affine)

Runs after ``fold_constants`` so that weights and BN parameters are plain constants.
"""

from __future__ import annotations

import numpy as np

from ..frontend.relax_utils import (IRModule, apply_rules, call_like, const, const_value, is_const, is_op,
                                  is_tuple_get_item, module_pass, op, static_shape, wildcard)

_x, _w, _b = wildcard(), is_const(), is_const()
_gamma, _beta, _mean, _var = is_const(), is_const(), is_const(), is_const()


_BN_CALLS = []  # the batch_norm call pattern inside each rule, to find it in a match


def _bn_of(producer):
    bn = is_op("relax.nn.batch_norm")(producer, _gamma, _beta, _mean, _var)
    _BN_CALLS.append(bn)
    return is_tuple_get_item(bn, 0)


_conv = is_op("relax.nn.conv2d")(_x, _w)
_matmul = is_op("relax.matmul")(_x, _w)
_bn_conv_bias = _bn_of(is_op("relax.add")(_conv, _b))
_bn_conv = _bn_of(_conv)
_bn_matmul_bias = _bn_of(is_op("relax.add")(_matmul, _b))
_bn_matmul = _bn_of(_matmul)
_bn_alone = _bn_of(_x)


def _scale_shift(m, bn_call) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (s, t) with bn(y) == y * s + t."""
    gamma, beta = const_value(m[_gamma]), const_value(m[_beta])
    mean, var = const_value(m[_mean]), const_value(m[_var])
    eps = float(bn_call.attrs.epsilon)
    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return s, beta.astype(np.float64) - mean.astype(np.float64) * s


def _bn_call(m):
    return next(m[p] for p in _BN_CALLS if p in m)


def _old_bias(m, channels: int) -> np.ndarray:
    if _b in m:
        b = const_value(m[_b]).astype(np.float64)
        if b.size == channels:
            return b.reshape(channels)
        return np.broadcast_to(b.reshape(-1), (channels,)).copy() if b.size == 1 else None
    return np.zeros(channels)


def _fold_conv(expr, m):
    conv = m[_conv]
    if str(conv.attrs.kernel_layout) != "OIHW" or int(_bn_call(m).attrs.axis) != 1:
        return expr
    w = const_value(m[_w])
    s, t = _scale_shift(m, _bn_call(m))
    b = _old_bias(m, w.shape[0])
    if b is None:
        return expr
    dtype = w.dtype
    new_w = (w * s.reshape(-1, 1, 1, 1)).astype(dtype)
    new_b = (b * s + t).astype(dtype).reshape(1, -1, 1, 1)
    folded = call_like(conv, [m[_x], const(new_w)])
    return op.add(folded, const(new_b))


def _fold_matmul(expr, m):
    w = const_value(m[_w])
    out_shape = static_shape(m[_matmul])
    axis = int(_bn_call(m).attrs.axis)
    if w.ndim != 2 or out_shape is None or axis not in (len(out_shape) - 1, -1):
        return expr
    s, t = _scale_shift(m, _bn_call(m))
    b = _old_bias(m, w.shape[1])
    if b is None:
        return expr
    new_w = (w * s.reshape(1, -1)).astype(w.dtype)
    new_b = (b * s + t).astype(w.dtype)
    return op.add(op.matmul(m[_x], const(new_w)), const(new_b))


def _fold_alone(expr, m):
    bn = _bn_call(m)
    shape = static_shape(m[_x])
    if shape is None:
        return expr
    axis = int(bn.attrs.axis) % len(shape)
    s, t = _scale_shift(m, bn)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    dtype = str(m[_x].ty.dtype)
    return op.add(
        op.multiply(m[_x], const(s.reshape(bshape).astype(dtype))),
        const(t.reshape(bshape).astype(dtype)),
    )


# Most specific first: a conv with a bias must not be matched as "conv" + standalone BN.
RULES = [
    (_bn_conv_bias, _fold_conv),
    (_bn_conv, _fold_conv),
    (_bn_matmul_bias, _fold_matmul),
    (_bn_matmul, _fold_matmul),
    (_bn_alone, _fold_alone),
]


@module_pass("nnforge.FoldBatchNorm")
def fold_batchnorm(mod: IRModule, _ctx) -> IRModule:
    """Fold every inference BatchNormalization into its producer, or into an affine."""
    return apply_rules(mod, RULES)
