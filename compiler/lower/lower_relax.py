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

Backends partition the default form; only the default form is the chain the patterns in
``backends/patterns.py`` match.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
import tvm.tirx as tirx
from tvm import relax

from . import exact_narrowing as narrow
from ..quant.numerics import QType
from ..qgraph import QGraph, QNode
from ..frontend.relax_utils import const

_BATCH = tirx.Var("batch", "int64")


def _c(value, dtype: str) -> relax.Expr:
    return const(np.asarray(value).astype(dtype))


class _Lowerer:
    def __init__(self, graph: QGraph, bb: relax.BlockBuilder, fast: bool = False):
        self.g, self.bb, self.fast = graph, bb, fast

    def emit(self, expr, name: str | None = None):
        return self.bb.emit(expr, name_hint=name) if name else self.bb.emit(expr)

    # -- the requantization tail shared by every layer -------------------------------------
    def requant(self, acc, a, out: QType, channel_shape=None, name: str | None = None, bound=None):
        """saturate(round_shift(acc * M, n)) in int64, then cast to the storage type.  In the fast
        form, in int32 where ``exact_narrowing.int32_requant`` proves it exact for ``|acc| <= bound``."""
        m, n = np.asarray(a["multiplier"], np.int64), np.asarray(a["shift"], np.int64)
        if self.fast and bound is not None:
            plan = narrow.int32_requant(m, n, a["rounding"], a["overflow"], a["lo"], a["hi"], out, bound)
            if plan is not None:
                return self.requant_int32(acc, plan, channel_shape, out, name)
        shape = channel_shape if (channel_shape is not None and m.size > 1) else ()
        v = self.emit(relax.op.astype(acc, "int64")) if acc.ty.dtype != "int64" else acc
        v = self.emit(relax.op.multiply(v, _c(m.reshape(shape) if shape else m.reshape(()), "int64")))
        v = self.round_shift(v, n, a["rounding"], shape)
        return self.saturate(v, out, a["overflow"], a["lo"], a["hi"], name)

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

    # -- one method per op ------------------------------------------------------------------
    def mac_dtype(self, node: QNode, axis: int):
        """The accumulator type and the accumulator bound (fast form: float32 where exact)."""
        a = node.attrs
        if not self.fast:
            return a["acc_dtype"], None
        bound = narrow.mac_bound(self.g.tensors[node.inputs[0]].qtype, a["weight"], a["bias"], axis)
        return ("float32" if narrow.float32_macs(bound) else a["acc_dtype"]), bound

    def conv2d(self, node: QNode, xs, out: QType):
        a = node.attrs
        acc, bound = self.mac_dtype(node, 0)
        x = self.emit(relax.op.astype(xs[0], acc))
        y = self.emit(relax.op.nn.conv2d(
            x, _c(a["weight"], acc), strides=a["strides"], padding=a["padding"],
            dilation=a["dilation"], groups=a["groups"], out_dtype=acc,
        ))
        o = a["weight"].shape[0]
        y = self.emit(relax.op.add(y, _c(a["bias"].reshape(1, o, 1, 1), acc)))
        return self.requant(y, a, out, (1, o, 1, 1), node.name, bound)

    def dense(self, node: QNode, xs, out: QType):
        a = node.attrs
        acc, bound = self.mac_dtype(node, 1)
        x = self.emit(relax.op.astype(xs[0], acc))
        y = self.emit(relax.op.matmul(x, _c(a["weight"], acc), out_dtype=acc))
        y = self.emit(relax.op.add(y, _c(a["bias"], acc)))
        return self.requant(y, a, out, (a["weight"].shape[1],), node.name, bound)

    def max_pool2d(self, node: QNode, xs, out: QType):
        a = node.attrs
        return self.emit(relax.op.nn.max_pool2d(
            xs[0], pool_size=a["pool_size"], strides=a["strides"], padding=a["padding"],
            dilation=a["dilation"], ceil_mode=a["ceil_mode"],
        ), node.name)

    def avg_pool2d(self, node: QNode, xs, out: QType):
        a = node.attrs
        c = xs[0].ty.shape.values[1].value
        kh, kw = a["pool_size"]
        x = self.emit(relax.op.astype(xs[0], "int32"))
        ones = np.ones((c, 1, kh, kw), np.int32)  # window sum = depthwise conv with ones
        s = self.emit(relax.op.nn.conv2d(x, _c(ones, "int32"), strides=a["strides"],
                                         padding=a["padding"], groups=c, out_dtype="int32"))
        m = np.asarray(a["multiplier"])  # [OH, OW] when the padding is not counted: one (M, n) per position
        return self.requant(s, a, out, (1, 1) + m.shape if m.ndim == 2 else None, node.name,
                            kh * kw * self.max_abs(node))

    def lrn(self, node: QNode, xs, out: QType):
        """The window sum of squares as a conv3d over channels (of [N, 1, C, H, W]), the table lookup,
        the requant.  No reshape or pad: a backend without LRN must not take part of the chain."""
        a = node.attrs
        x = self.emit(relax.op.astype(xs[0], "int64"))
        sq = self.emit(relax.op.expand_dims(self.emit(relax.op.multiply(x, x)), axis=1))
        ones = np.ones((1, 1, a["before"] + a["after"] + 1, 1, 1), np.int64)
        s = self.emit(relax.op.nn.conv3d(sq, _c(ones, "int64"), padding=(a["before"], 0, 0, a["after"], 0, 0),
                                         out_dtype="int64"))
        s = self.emit(relax.op.squeeze(s, axis=[1]))
        if a["index_shift"]:
            s = self.emit(relax.op.right_shift(s, _c(a["index_shift"], "int64")))
        f = self.emit(relax.op.take(_c(a["table"], "int64"), s, axis=0, mode="clip"))
        v = self.round_shift(self.emit(relax.op.multiply(x, f)), np.asarray(a["shift"], np.int64), a["rounding"])
        return self.saturate(v, out, a["overflow"], a["lo"], a["hi"], node.name)

    def global_avg_pool(self, node: QNode, xs, out: QType):
        hw = xs[0].ty.shape.values[2:4]
        bound = math.prod(d.value for d in hw) * self.max_abs(node) if all(isinstance(d, tirx.IntImm) for d in hw) else None
        acc = "int32" if self.fast and bound is not None and bound < 2**31 else "int64"
        x = self.emit(relax.op.astype(xs[0], acc))
        s = self.emit(relax.op.sum(x, axis=[2, 3], keepdims=node.attrs.get("keepdims", True)))
        return self.requant(s, node.attrs, out, None, node.name, bound)

    def max_abs(self, node: QNode, i: int = 0) -> int:
        t = self.g.tensors[node.inputs[i]].qtype
        return max(abs(t.lo), abs(t.hi))

    def add(self, node: QNode, xs, out: QType):
        a = node.attrs
        parts = []
        for x, m, n in zip(xs, a["multipliers"], a["shifts"]):
            v = self.emit(relax.op.astype(x, "int64"))
            v = self.emit(relax.op.multiply(v, _c(m, "int64")))
            parts.append(self.round_shift(v, np.asarray(n, np.int64), a["rounding"]))
        v = self.emit(relax.op.add(parts[0], parts[1]))
        return self.saturate(v, out, a["overflow"], a["lo"], a["hi"], node.name)

    def mul(self, node: QNode, xs, out: QType):
        a0 = self.emit(relax.op.astype(xs[0], "int64"))
        a1 = self.emit(relax.op.astype(xs[1], "int64"))
        return self.requant(self.emit(relax.op.multiply(a0, a1)), node.attrs, out, None, node.name)

    def requant_(self, node: QNode, xs, out: QType):
        return self.requant(xs[0], node.attrs, out, None, node.name, self.max_abs(node))

    def concat(self, node: QNode, xs, out: QType):
        xs = [x if x.ty.dtype == out.storage else self.emit(relax.op.astype(x, out.storage)) for x in xs]
        return self.emit(relax.op.concat(xs, axis=node.attrs["axis"]), node.name)

    def clip(self, node: QNode, xs, out: QType):
        v = self.emit(relax.op.astype(xs[0], "int64"))
        return self.saturate(v, out, "SAT", node.attrs["lo"], node.attrs["hi"], node.name)

    def lut(self, node: QNode, xs, out: QType):
        a = node.attrs
        idx = self.emit(relax.op.astype(xs[0], "int64"))
        idx = self.emit(relax.op.subtract(idx, _c(a["offset"], "int64")))
        v = self.emit(relax.op.take(_c(a["table"], "int64"), idx, axis=0, mode="clip"))
        return self.emit(relax.op.astype(v, out.storage), node.name)

    def reshape(self, node: QNode, xs, out: QType):
        shape = [_BATCH if d == -1 else d for d in node.attrs["shape"]]
        if shape and isinstance(shape[0], tirx.Var):
            shape[0] = xs[0].ty.shape.values[0]
        return self.emit(relax.op.reshape(xs[0], shape), node.name)

    def transpose(self, node: QNode, xs, out: QType):
        return self.emit(relax.op.permute_dims(xs[0], node.attrs["axes"]), node.name)

    def pad(self, node: QNode, xs, out: QType):
        p = list(node.attrs["pads"])
        half = len(p) // 2
        width = [v for pair in zip(p[:half], p[half:]) for v in pair]
        return self.emit(relax.op.nn.pad(xs[0], width, pad_value=0.0), node.name)


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
                low = _Lowerer(graph, bb, fast)
                values = {t.name: p for t, p in zip(graph.inputs, params)}
                for node in graph.nodes:
                    method = getattr(low, "requant_" if node.op == "requant" else node.op)
                    values[node.output] = method(node, [values[i] for i in node.inputs], graph.tensors[node.output].qtype)
                    if var_names is not None and fname == "main":
                        var_names[node.name] = values[node.output].name
                names = graph.outputs if fname == "main" else graph.node_outputs()
                result = values[names[0]] if len(names) == 1 else relax.Tuple([values[n] for n in names])
                out = bb.emit_output(result)
            bb.emit_func_output(out)
    return bb.get()
