"""Fold constant subexpressions.

    broadcast_to(const, shape)  -> const        (weights made by ConstantOfShape)
    reshape(const, shape)       -> const        (conv bias as [1, C, 1, 1])
    permute_dims(const)         -> const        (Gemm transB)

TVM's FoldConstant evaluates any op whose inputs are all constants.
"""

from __future__ import annotations

import tvm
from tvm import relax


@tvm.transform.module_pass(opt_level=0, name="nnforge.FoldConstants")
def fold_constants(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Evaluate every constant subexpression at compile time."""
    return relax.transform.DeadCodeElimination()(relax.transform.FoldConstant()(mod))
