"""Fold constant subexpressions.

    broadcast_to(const, shape)  -> const        (weights made by ConstantOfShape)
    reshape(const, shape)       -> const        (conv bias as [1, C, 1, 1])
    permute_dims(const)         -> const        (Gemm transB)
    anything else on constants  -> const        (TVM's FoldConstant)

The three common cases are evaluated in numpy first: TVM's FoldConstant compiles a kernel
for every folded op, which took 3 to 19 s on each of the light models.
"""

from __future__ import annotations

import numpy as np

from ..frontend.relax_utils import (IRModule, apply_rules, const, const_value, dead_code_elimination,
                                  fold_constant, is_const, is_op, module_pass, static_shape, wildcard)

_c = is_const()
_broadcast = is_op("relax.broadcast_to")(_c, wildcard())
_reshape = is_op("relax.reshape")(_c, wildcard())
_permute = is_op("relax.permute_dims")(_c)


def _to_static_shape(expr, m):
    shape = static_shape(expr)
    if shape is None or not all(isinstance(d, int) for d in shape):
        return expr
    return const(np.broadcast_to(const_value(m[_c]), shape).copy()) if expr.op.name.endswith(
        "broadcast_to"
    ) else const(const_value(m[_c]).reshape(shape))


def _permute_dims(expr, m):
    axes = expr.attrs.axes
    value = const_value(m[_c])
    order = None if axes is None else [int(a) for a in axes]
    return const(np.ascontiguousarray(np.transpose(value, order)))


RULES = [(_broadcast, _to_static_shape), (_reshape, _to_static_shape), (_permute, _permute_dims)]


@module_pass("nnforge.FoldConstants")
def fold_constants(mod: IRModule, _ctx) -> IRModule:
    """Evaluate every constant subexpression at compile time."""
    mod = apply_rules(mod, RULES)
    return dead_code_elimination(fold_constant(mod))
