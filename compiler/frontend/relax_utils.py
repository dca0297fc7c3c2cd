"""Small helpers over TVM 0.27 Relax objects, so the rest of the code doesn't chase the API.

TVM 0.27 facts these rely on: constants are ``tvm.ir.expr.Constant`` (concretely
``GenericConst``) whose ``.value`` is a runtime tensor; types come from ``expr.ty``.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm.tirx  # noqa: F401  (IntImm lives here in 0.27)
from tvm import relax
from tvm.ir.expr import Constant


def is_constant(expr) -> bool:
    """A Relax tensor constant (not a scalar PrimExpr such as R.clip's FloatImm bounds)."""
    return isinstance(expr, Constant) and hasattr(getattr(expr, "value", None), "numpy")


def const_value(expr) -> np.ndarray:
    """The numpy value of a Relax constant."""
    return expr.value.numpy()


def const(array: np.ndarray | float, dtype: str | None = None) -> Constant:
    arr = np.asarray(array, dtype=dtype)
    return relax.const(arr, dtype=str(arr.dtype))


def static_shape(expr) -> tuple[int | str, ...] | None:
    """An expression's tensor shape; symbolic dims are shown by name, unknown rank is None."""
    ty = expr.ty if hasattr(expr, "ty") else expr
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = ty.shape
    values = getattr(shape, "values", None)
    if values is None:
        return None
    dims: list[int | str] = []
    for v in values:
        if isinstance(v, tvm.tirx.IntImm):
            dims.append(int(v.value))
        else:
            dims.append(str(v))
    return tuple(dims)


def dtype_of(expr) -> str | None:
    ty = expr.ty if hasattr(expr, "ty") else expr
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def call_op_name(expr) -> str | None:
    """'relax.nn.conv2d' for a call to a Relax op, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return None


def apply_rules(mod: tvm.IRModule, rules) -> tvm.IRModule:
    """Apply ``(pattern, rewriter)`` rules to ``main`` in order, then drop dead bindings."""
    from tvm.relax.dpl import rewrite_call

    func = mod["main"]
    for pattern, rewriter in rules:
        func = rewrite_call(pattern, rewriter, func)
    new = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"})
    new["main"] = func
    return relax.transform.DeadCodeElimination()(new)
