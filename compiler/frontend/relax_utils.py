"""The Relax IR adapter: every Relax class, op and helper that the cleanup passes, the layer grouping,
the summary, interop and the facade use, behind small functions over Relax expressions.

One of the few modules that import tvm (with the ONNX importer ``relax_import``, the lowering
``compiler/lower/lower_relax``, the CPU build ``compiler/lower/{executor,cpu_schedule}`` and the
partition ``backends/partition``).  TVM's API moves between releases; what these rely on in 0.27:

* constants are ``tvm.ir.expr.Constant`` (concretely ``GenericConst``) whose ``.value`` is a runtime
  tensor; scalar attributes such as R.clip's bounds are ``FloatImm`` PrimExprs, not constants;
* types come from ``expr.ty`` (``relax.TensorType``, its ``shape.values`` are ``tvm.tirx.IntImm`` or
  symbolic PrimExprs); there is no ``tvm.tir``, it is ``tvm.tirx``;
* ``tvm.relax.dpl`` is the pattern language (``is_op``, ``is_const``, ``wildcard``,
  ``is_tuple_get_item``) and ``rewrite_call`` rewrites a function to a fixed point;
* Python passes are functions wrapped in ``tvm.transform.module_pass``;
* ``relax.transform.ToNonDataflow`` makes new Var objects for the dataflow vars but keeps every
  binding in place;
* ``IRModule.show`` imports ``tvm.script.highlight.cprint`` at each call.

Two things are re-exported as they are, because wrapping them would only rename TVM's API: the
pattern constructors (a rule's pattern is written in TVM's pattern language) and ``op``, the Relax
operator namespace ``tvm.relax.op`` that a rewrite builds its replacement from.
"""

from __future__ import annotations

import sys

import numpy as np
import tvm
import tvm.tirx  # noqa: F401  (IntImm lives here in 0.27)
import tvm_ffi
from tvm import relax
from tvm.ir.expr import Constant
from tvm.relax.dpl import DFPattern, is_const, is_op, is_tuple_get_item, rewrite_call, wildcard

from ..errors import ModelError

#: the module type every stage passes on (for annotations)
IRModule = tvm.IRModule
#: the Relax operator namespace (``op.add``, ``op.matmul``, ``op.nn.batch_norm``, ...)
op = relax.op

__all__ = [
    "DFPattern", "IRModule", "apply_rules", "call_like", "call_op_name", "const", "const_value",
    "dead_code_elimination", "dtype_of", "fold_constant", "is_const", "is_constant", "is_op",
    "is_tuple_get_item", "is_var", "module_pass", "op", "output_exprs", "plain_show", "returning",
    "static_shape", "structural_hash", "var_uses", "wildcard",
]


# -- reading expressions -----------------------------------------------------------------------------

def is_constant(expr) -> bool:
    """A Relax tensor constant (not a scalar PrimExpr such as R.clip's FloatImm bounds)."""
    return isinstance(expr, Constant) and hasattr(getattr(expr, "value", None), "numpy")


def const_value(expr) -> np.ndarray:
    """The numpy value of a Relax constant."""
    return expr.value.numpy()


def is_var(expr) -> bool:
    """A Relax variable (a function parameter or a binding's var), not a call or a constant."""
    return isinstance(expr, relax.Var)


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


def output_exprs(func) -> list:
    """The expressions a Relax function returns: the fields of a returned tuple, else the one result."""
    body = func.body.body
    return list(body.fields) if isinstance(body, relax.Tuple) else [body]


def var_uses(func) -> dict:
    """Relax var -> how many times the bindings and the result of ``func`` read it."""
    counts: dict = {}

    def visit(e):
        if isinstance(e, relax.Var):
            counts[e] = counts.get(e, 0) + 1
        elif isinstance(e, relax.Tuple):
            for f in e.fields:
                visit(f)
        elif isinstance(e, relax.TupleGetItem):
            visit(e.tuple_value)
        elif isinstance(e, relax.Call):
            for a in e.args:
                visit(a)

    for block in func.body.blocks:
        for b in block.bindings:
            visit(b.value)
    visit(func.body.body)
    return counts


def structural_hash(expr) -> int:
    """TVM's structural hash: equal for structurally equal expressions."""
    return tvm_ffi.structural_hash(expr)


# -- building expressions ----------------------------------------------------------------------------

def const(array: np.ndarray | float, dtype: str | None = None) -> Constant:
    arr = np.asarray(array, dtype=dtype)
    return relax.const(arr, dtype=str(arr.dtype))


def call_like(call, args: list):
    """A call to ``call``'s op with ``call``'s attributes on new arguments."""
    return relax.Call(call.op, args, call.attrs)


# -- module passes -----------------------------------------------------------------------------------

def module_pass(name: str):
    """Decorator: ``fn(mod, ctx) -> mod`` as a TVM module pass named ``name`` (called as ``pass(mod)``)."""
    return tvm.transform.module_pass(opt_level=0, name=name)


def _with_main(mod: IRModule, func) -> IRModule:
    new = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"})
    new["main"] = func
    return new


def apply_rules(mod: IRModule, rules, eliminate_dead_code: bool = True) -> IRModule:
    """Apply ``(pattern, rewriter)`` rules to ``main`` in order (each to a fixed point, TVM's
    ``rewrite_call``), then drop dead bindings unless ``eliminate_dead_code`` is false."""
    func = mod["main"]
    for pattern, rewriter in rules:
        func = rewrite_call(pattern, rewriter, func)
    new = _with_main(mod, func)
    return relax.transform.DeadCodeElimination()(new) if eliminate_dead_code else new


def fold_constant(mod: IRModule) -> IRModule:
    """TVM's ``FoldConstant``: every call on constants evaluated (it compiles a kernel per op)."""
    return relax.transform.FoldConstant()(mod)


def dead_code_elimination(mod: IRModule) -> IRModule:
    """TVM's ``DeadCodeElimination``: bindings nothing reads are dropped."""
    return relax.transform.DeadCodeElimination()(mod)


def returning(mod: IRModule, outputs: list[tuple[str, object]]) -> IRModule:
    """A copy of ``mod`` whose ``main`` returns the bindings ``outputs`` (``(name, var)`` pairs; the
    names only word the error) as one tuple, in order.

    Outputs are found by identity, never by name: Relax names are only hints, and after the
    cleanup passes a large model holds several bindings of one name (ResNet-50: 12 names twice,
    ``lv9``, ``lv13``, ...), so a by-name lookup hands some layers another layer's tensor."""
    func = mod["main"]
    flat = relax.transform.ToNonDataflow()(mod)["main"]
    # ToNonDataflow makes new Var objects for the DataflowVars but keeps every binding in place:
    # pair them by position
    before = [b.var for blk in func.body.blocks for b in blk.bindings]
    after = [b.var for blk in flat.body.blocks for b in blk.bindings]
    if len(before) != len(after) or any(a.name != b.name for a, b in zip(before, after)):
        raise ModelError("ToNonDataflow must keep the bindings of 'main' in order; it changed them, so the "
                         "layer outputs cannot be traced")
    new_var = dict(zip(before, after))
    missing = [name for name, var in outputs if var not in new_var]
    if missing:
        raise ModelError(f"layer outputs must be bindings of 'main', not {missing[:4]}")
    outs = [new_var[var] for _, var in outputs]
    body = relax.SeqExpr(flat.body.blocks, relax.Tuple(outs))
    new_func = relax.Function(flat.params, body, ret_ty=relax.TupleType([v.ty for v in outs]), is_pure=True)
    return _with_main(mod, new_func)


# -- printing ----------------------------------------------------------------------------------------

def plain_show() -> None:
    """Make TVM's ``show()`` print plain TVMScript when stdout is not a terminal (idempotent).

    ``IRModule.show`` imports ``tvm.script.highlight.cprint`` at each call, so wrapping that one
    function covers ``model.relax.show()`` and ``qmodel.relax.show()``; a terminal or a notebook
    keeps TVM's colours."""
    from tvm.script import highlight

    if getattr(highlight.cprint, "_nnforge_plain", False):
        return
    colour = highlight.cprint

    def cprint(printable, style=None, black_format=False):
        if sys.stdout.isatty() or "ipykernel" in sys.modules:
            return colour(printable, style=style, black_format=black_format)
        if hasattr(printable, "script") and callable(printable.script):
            printable = printable.script()
        print(highlight._format(printable) if black_format else printable)

    cprint._nnforge_plain = True
    highlight.cprint = cprint
