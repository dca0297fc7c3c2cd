"""Lower a ``QGraph`` into the integer Relax module, the model of record.

Each quantized layer becomes one recognisable op chain that backends match with Relax
patterns, e.g. for conv2d::

    astype(acc) -> conv2d(out_dtype=acc) -> add(bias) -> astype(int64) -> multiply(M)
        -> add(half) -> right_shift(n) -> maximum(lo) -> minimum(hi) -> astype(storage)

The module has two functions over the same graph: ``main`` (codes in, output codes out)
and ``trace`` (codes in, every node's output codes, in ``QGraph.node_outputs()`` order).

``lower(graph, fast=True)`` is the CPU simulation form (``QuantizedModel.compile``: predict,
simulate).  It computes the same codes with cheaper arithmetic, each step proved exact from
static bounds in ``exact_narrowing`` (else the default chain is kept, layer by layer):

* conv2d / dense MACs in float32 where ``max|x| * sum|w| + |b| < 2^24``, then ``astype(int32)``;
* the requantization tail in int32 (SAT, ``M > 0``, ``n >= 0``)::

      [astype(int32)] -> [maximum(xl) -> minimum(xh)] -> multiply(M) -> [add(half)]
          -> [right_shift(n)] -> maximum(lo) -> minimum(hi) -> astype(storage)

  or, where ``x * M`` needs more than 31 bits even after the accumulator clamp, the k-split
  ``(a*M + ((b*M + half) >> k)) >> (n - k)`` with ``a = x >> k``, ``b = x & (2^k - 1)``;
* GlobalAveragePool sums in int32 where ``H * W * max|x| < 2^31``.

Each op's own chain is its ``OpSpec.lower`` (``compiler/ops/``), next to the pattern that
matches it; this module holds the shared tail and the dispatch.  Backends partition the
default form; only the default form is the chain the ops' patterns match.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm.tirx as tirx
from tvm import relax

from . import exact_narrowing as narrow
from ..quant.numerics import QType
from ..ops import OPS
from ..qgraph import QGraph, QNode
from ..frontend.relax_utils import const

_BATCH = tirx.Var("batch", "int64")


def _c(value, dtype: str) -> relax.Expr:
    return const(np.asarray(value).astype(dtype))


class Lowerer:
    """Emits one graph's Relax: the requantization tail every layer shares, and the helpers the
    ops' own lowerings (``OpSpec.lower(low, node, xs, out)``) build their chains with."""

    def __init__(self, graph: QGraph, bb: relax.BlockBuilder, fast: bool = False):
        self.g, self.bb, self.fast = graph, bb, fast

    def emit(self, expr, name: str | None = None):
        return self.bb.emit(expr, name_hint=name) if name else self.bb.emit(expr)

    # -- the requantization tail shared by every layer -------------------------------------
    def requant(self, acc, a, out: QType, channel_shape=None, name: str | None = None, bound=None):
        """saturate(round_shift(acc * M, n)) in int64, then cast to the storage type.  In the fast
        form, in int32 where ``exact_narrowing.int32_requant`` proves it exact for ``|acc| <= bound``."""
        m, n = np.asarray(a.multiplier, np.int64), np.asarray(a.shift, np.int64)
        if self.fast and bound is not None:
            plan = narrow.int32_requant(m, n, a.rounding, a.overflow, a.lo, a.hi, out, bound)
            if plan is not None:
                return self.requant_int32(acc, plan, channel_shape, out, name)
        shape = channel_shape if (channel_shape is not None and m.size > 1) else ()
        v = self.emit(relax.op.astype(acc, "int64")) if acc.ty.dtype != "int64" else acc
        v = self.emit(relax.op.multiply(v, _c(m.reshape(shape) if shape else m.reshape(()), "int64")))
        v = self.round_shift(v, n, a.rounding, shape)
        return self.saturate(v, out, a.overflow, a.lo, a.hi, name)

    def requant_int32(self, acc, plan: narrow.Int32Requant, channel_shape, out: QType, name):
        """The int32 tail (fast form): [clamp(acc)] -> multiply -> [add] -> [right_shift], or the
        k-split of the product; then the output clamp and the cast."""
        def c(v, dtype="int32"):  # per channel, or one scalar
            v = np.asarray(v)
            if v.size == 1:
                return _c(v.reshape(()), dtype)
            assert channel_shape is not None, "per-channel requantization needs the channel shape"
            return _c(v.reshape(channel_shape), dtype)

        wide = str(acc.ty.dtype) == "int64"  # clamped before narrowing; other types cast exactly
        v = acc if str(acc.ty.dtype) in ("int32", "int64") else self.emit(relax.op.astype(acc, "int32"))
        if plan.clamp_acc:
            v = self.emit(relax.op.maximum(v, c(plan.xl, str(v.ty.dtype))))
            v = self.emit(relax.op.minimum(v, c(plan.xh, str(v.ty.dtype))))
        if wide:
            v = self.emit(relax.op.astype(v, "int32"))
        m, half, n, k = plan.multiplier, plan.half, plan.shift, plan.k
        if k:
            lo_part = self.emit(relax.op.bitwise_and(v, _c((1 << k) - 1, "int32")))
            lo_part = self.emit(relax.op.multiply(lo_part, c(m)))
            if np.any(half):
                lo_part = self.emit(relax.op.add(lo_part, c(half)))
            lo_part = self.emit(relax.op.right_shift(lo_part, _c(k, "int32")))
            v = self.emit(relax.op.right_shift(v, _c(k, "int32")))
            v = self.emit(relax.op.add(self.emit(relax.op.multiply(v, c(m))), lo_part))
        else:
            v = self.emit(relax.op.multiply(v, c(m)))
            if np.any(half):
                v = self.emit(relax.op.add(v, c(half)))
        if np.any(n - k):
            v = self.emit(relax.op.right_shift(v, c(n - k)))
        v = self.emit(relax.op.maximum(v, _c(plan.lo, "int32")))
        v = self.emit(relax.op.minimum(v, _c(plan.hi, "int32")))
        return self.emit(relax.op.astype(v, out.storage), name)

    def round_shift(self, v, n: np.ndarray, rounding: str, shape=()):
        n = n.reshape(shape) if shape else n.reshape(())
        if np.any(n < 0):
            v = self.emit(relax.op.left_shift(v, _c(np.maximum(-n, 0), "int64")))
        right = np.maximum(n, 0)
        if rounding == "RND" and np.any(right > 0):
            half = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
            v = self.emit(relax.op.add(v, _c(half, "int64")))
        if np.any(right > 0):
            v = self.emit(relax.op.right_shift(v, _c(right, "int64")))
        return v

    def saturate(self, v, out: QType, overflow: str, lo, hi, name):
        if overflow == "WRAP":
            half = 1 << (out.bits - 1)
            mask = (1 << out.bits) - 1
            if out.signed:  # ((v + 2^(b-1)) & mask) - 2^(b-1)
                v = self.emit(relax.op.add(v, _c(half, "int64")))
                v = self.emit(relax.op.bitwise_and(v, _c(mask, "int64")))
                v = self.emit(relax.op.subtract(v, _c(half, "int64")))
            else:
                v = self.emit(relax.op.bitwise_and(v, _c(mask, "int64")))
            lo_, hi_ = (out.lo if lo is None else lo), (out.hi if hi is None else hi)
        else:
            lo_, hi_ = (out.lo if lo is None else max(lo, out.lo)), (out.hi if hi is None else min(hi, out.hi))
        if overflow == "SAT" or lo_ != out.lo or hi_ != out.hi:
            v = self.emit(relax.op.maximum(v, _c(lo_, "int64")))
            v = self.emit(relax.op.minimum(v, _c(hi_, "int64")))
        return self.emit(relax.op.astype(v, out.storage), name)

    # -- what the ops' lowerings (compiler/ops/*.py, OpSpec.lower) use besides the above -----
    op = relax.op  # the Relax op namespace: low.op.add, low.op.nn.conv2d, ...

    @staticmethod
    def const(value, dtype: str) -> relax.Expr:
        """A Relax constant of ``value`` cast to ``dtype``."""
        return _c(value, dtype)

    @staticmethod
    def dtype(x) -> str:
        """The element type of a Relax tensor expression."""
        return str(x.ty.dtype)

    @staticmethod
    def dim(x, axis: int) -> int:
        """A static dimension of a Relax tensor expression."""
        return x.ty.shape.values[axis].value

    @staticmethod
    def static_dims(x, axes) -> list[int] | None:
        """The dimensions ``axes`` of ``x`` when all are static, else None."""
        dims = [x.ty.shape.values[i] for i in axes]
        return [d.value for d in dims] if all(isinstance(d, tirx.IntImm) for d in dims) else None

    @staticmethod
    def batch_shape(shape, x) -> list:
        """A reshape target: -1 (the symbolic batch) as ``x``'s own batch dimension."""
        shape = [_BATCH if d == -1 else d for d in shape]
        if shape and isinstance(shape[0], tirx.Var):
            shape[0] = x.ty.shape.values[0]
        return shape

    def mac_dtype(self, node: QNode, axis: int):
        """The accumulator type and the accumulator bound (fast form: float32 where exact)."""
        a = node.attrs
        if not self.fast:
            return a.acc_dtype, None
        bound = narrow.mac_bound(self.g.tensors[node.inputs[0]].qtype, a.weight, a.bias, axis)
        return ("float32" if narrow.float32_macs(bound) else a.acc_dtype), bound

    def max_abs(self, node: QNode, i: int = 0) -> int:
        """The largest code magnitude of input ``i``'s type."""
        t = self.g.tensors[node.inputs[i]].qtype
        return max(abs(t.lo), abs(t.hi))


def _param(t) -> relax.Var:
    shape = [_BATCH if isinstance(d, str) else d for d in t.shape]
    return relax.Var(t.name, relax.TensorType(shape, t.qtype.storage))


def lower(graph: QGraph, var_names: dict[str, str] | None = None, fast: bool = False) -> tvm.IRModule:
    """The integer Relax module: ``main`` returns the outputs, ``trace`` every node output.

    ``fast=True`` gives the CPU simulation form (see the module docstring): same codes, cheaper
    arithmetic; backends partition the default form.

    ``var_names``, when given, receives node name -> the name of the Relax variable holding the
    node's output in ``main`` (Relax rewrites some characters of name hints, e.g. ``.``).
    """
    bb = relax.BlockBuilder()
    for fname in ("main", "trace"):
        params = [_param(t) for t in graph.inputs]
        with bb.function(fname, params):
            with bb.dataflow():
                low = Lowerer(graph, bb, fast)
                values = {t.name: p for t, p in zip(graph.inputs, params)}
                for node in graph.nodes:
                    lower_op = OPS[node.op].lower
                    values[node.output] = lower_op(low, node, [values[i] for i in node.inputs],
                                                   graph.tensors[node.output].qtype)
                    if var_names is not None and fname == "main":
                        var_names[node.name] = values[node.output].name
                names = graph.outputs if fname == "main" else graph.node_outputs()
                result = values[names[0]] if len(names) == 1 else relax.Tuple([values[n] for n in names])
                out = bb.emit_output(result)
            bb.emit_func_output(out)
    return bb.get()
