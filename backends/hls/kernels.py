"""Kernel specs for the hls backend: every number a kernel template needs, from one QNode.

``kernel_spec(ctx, node)`` dispatches on the op to one builder per kernel family (dense,
conv2d, pool, eltwise, concat, lut, datamove).  A ``KernelSpec`` carries loop bounds, strides,
requantization constants (the multiplier with a negative shift's left shift folded in, the right
shift, the rounding half; the integers come from ``backends/requant.py``, shared with the other
backends), saturation bounds and weight storage; the templates in ``templates/hls/`` only lay
them out.  The integer semantics are those of
``compiler/reference.py`` (the spec): this module reads the same attrs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnforge.compiler.compress.compression_report import bias_width
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode
from nnforge.compiler.ops import Requant as RequantAttrs
from nnforge.compiler.ops.arrays import ceil_extra

from ..requant import INT64_MIN as _INT64_MIN
from ..requant import Saturation, clip_bounds, requant_constants, saturate_spec, shift_constants
from . import weights as wts
from .weights import CArray, c_int


@dataclass(frozen=True)
class Saturate:
    """After the arithmetic: WRAP (mask, hi, mod literals) and/or a clamp (lo, hi literals)."""

    wrap: tuple[str, str, str] | None
    clamp: tuple[str, str] | None


@dataclass(frozen=True)
class Requant:
    """``saturate(round_shift(v * M, n))``: literals when shared, arrays ``M_/SH_/HF_<id>`` per channel."""

    per_channel: bool
    m: str
    sh: str
    hf: str
    sat: Saturate


@dataclass(frozen=True)
class Port:
    name: str
    ctype: str
    size: int


@dataclass(frozen=True)
class KernelSpec:
    family: str  # the template: dense, conv2d, pool, eltwise, concat, lut, datamove
    kind: str  # the variant inside the family
    ident: str
    func: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    p: dict[str, Any]  # the family's numbers
    consts: tuple[CArray, ...] = ()  # arrays for weights/<ident>.h
    store: wts.WeightStore | None = None
    types: tuple[tuple[str, str], ...] = ()  # (name, C type) typedefs of the layer (weight, accumulator)


@dataclass
class Context:
    """What the builders need besides the node: the graph, shapes and C names."""

    graph: QGraph
    shapes: dict[str, tuple[int, ...]]  # tensor -> per-sample shape
    tensor_ident: dict[str, str]  # tensor -> identifier
    reuse: Any = 1  # int, or {layer: int, "default": int}
    extra_types: list[tuple[str, str]] = field(default_factory=list)

    def ctype(self, tensor: str) -> str:
        return f"t_{self.tensor_ident[tensor]}"

    def qtype(self, tensor: str) -> QType:
        return self.graph.tensors[tensor].qtype

    def size(self, tensor: str) -> int:
        return int(np.prod(self.shapes[tensor], dtype=np.int64))

    def reuse_factor(self, layer: str) -> int:
        value = self.reuse
        if isinstance(value, dict):
            value = value.get(layer, value.get("default", 1))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"option reuse_factor for layer {layer!r} must be a positive integer, not {value!r}")
        return value


def c_type(t: QType) -> str:
    return f"nnf_{'int' if t.signed else 'uint'}<{t.bits}>"


# -- requantization and saturation ----------------------------------------------------------------------

def c_saturate(sat: Saturation) -> Saturate:
    """``requant.saturate_spec``'s integers as C literals."""
    return Saturate(None if sat.wrap is None else tuple(c_int(v) for v in sat.wrap),
                    None if sat.clamp is None else tuple(c_int(v) for v in sat.clamp))


def requant_spec(attrs: RequantAttrs, out: QType, node: QNode, ident: str, channels: int | None
                 ) -> tuple[Requant, list[CArray]]:
    """Per-channel constants become arrays when they differ between channels."""
    meff, sh, half = requant_constants(attrs, node, channels)
    sat = c_saturate(saturate_spec(out, attrs.overflow, attrs.lo, attrs.hi, node))
    if all(np.unique(a).size == 1 for a in (meff, sh, half)):
        return Requant(False, c_int(meff[0]), str(int(sh[0])), c_int(half[0]), sat), []
    full = [np.broadcast_to(a, (channels,)) for a in (meff, sh, half)]
    arrays = [wts.carray(f"M_{ident}", "int64_t", full[0]), wts.carray(f"SH_{ident}", "int", full[1]),
              wts.carray(f"HF_{ident}", "int64_t", full[2])]
    return Requant(True, f"M_{ident}", f"SH_{ident}", f"HF_{ident}", sat), arrays


# -- helpers --------------------------------------------------------------------------------------------

def strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def _ports(ctx: Context, node: QNode) -> tuple[tuple[Port, ...], tuple[Port, ...]]:
    ins = tuple(Port(f"x{i}", ctx.ctype(t), ctx.size(t)) for i, t in enumerate(node.inputs))
    return ins, (Port("y", ctx.ctype(node.output), ctx.size(node.output)),)


def _expect(node: QNode, what: str, got, want) -> None:
    if tuple(got) != tuple(want):
        raise InputError(f"{what} of node {node.name!r} must be {tuple(want)}, not {tuple(got)}")


# -- MAC layers -------------------------------------------------------------------------------------------

def _mac(ctx: Context, node: QNode, ident: str, reduction: int):
    """Weight storage, bias, accumulator and requantization shared by dense and conv2d."""
    store, mat, cb = wts.choose(node)
    wtype, atype = f"wt_{ident}", f"a_{ident}"
    bias = np.broadcast_to(np.asarray(node.attrs.bias, dtype=np.int64).reshape(-1), (store.rows,))
    xt = ctx.qtype(node.inputs[0])
    # the static bound the quantizer proved, recomputed: int32 only where it holds
    bound = int((max(-xt.lo, xt.hi) * np.abs(mat).sum(axis=1) + np.abs(bias)).max(initial=0))
    acc_bits = 32 if node.attrs.acc_dtype == "int32" and bound < (1 << 31) else 64
    rq, rq_arrays = requant_spec(node.attrs, ctx.qtype(node.output), node, ident, store.rows)
    consts = wts.weight_arrays(store, mat, cb, ident, wtype)
    # biases in ROM at the width their codes need (what the compression report counts)
    btype = f"bt_{ident}"
    consts += [wts.carray(f"B_{ident}", btype, bias)] + rq_arrays
    rf = ctx.reuse_factor(node.name)
    p = dict(rq=rq, rf=rf, unroll=max(1, -(-reduction // rf)), store=store,
             getter=f"w_{ident}", W=f"W_{ident}", CB=f"CB_{ident}", IX=f"IX_{ident}", RP=f"RP_{ident}",
             CI=f"CI_{ident}", V=f"V_{ident}", B=f"B_{ident}", acc=atype, wtype=wtype)
    types = ((wtype, f"nnf_int<{store.wbits}>"), (btype, f"nnf_int<{bias_width(bias)}>"),
             (atype, f"nnf_acc<{acc_bits}>"))
    return p, tuple(consts), store, types


def dense(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    w = node.attrs.weight
    k, n = w.shape
    _expect(node, "input shape", ctx.shapes[node.inputs[0]], (k,))
    _expect(node, "output shape", ctx.shapes[node.output], (n,))
    p, consts, store, types = _mac(ctx, node, ident, k)
    p.update(K=k, N=n)
    ins, outs = _ports(ctx, node)
    return KernelSpec("dense", "dense", ident, f"k_{ident}", ins, outs, p, consts, store, types)


def conv2d(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    a = node.attrs
    o, ipg, kh, kw = a.weight.shape
    c, h, w = ctx.shapes[node.inputs[0]]
    g = int(a.groups)
    if c != ipg * g or o % g:
        raise InputError(f"conv2d node {node.name!r}: {c} input channels must be groups ({g}) x {ipg}, "
                         f"and {o} output channels a multiple of groups")
    (sh, sw), (dh, dw) = a.strides, a.dilation
    t, l, b, r = a.padding
    oh = (h + t + b - (kh - 1) * dh - 1) // sh + 1
    ow = (w + l + r - (kw - 1) * dw - 1) // sw + 1
    _expect(node, "output shape", ctx.shapes[node.output], (o, oh, ow))
    p, consts, store, types = _mac(ctx, node, ident, ipg * kh * kw)
    pointwise = (kh, kw, sh, sw, g, t, l, b, r) == (1, 1, 1, 1, 1, 0, 0, 0, 0)
    # the padded input: as tall and wide as the windows reach (ONNX may pad more than they use)
    hp = max(h + t, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + l, (ow - 1) * sw + (kw - 1) * dw + 1)
    p.update(HP=hp, WP=wp, padded=(hp, wp, t, l) != (h, w, 0, 0))
    # C simulation of a stride-1 conv: output rows WP wide (the last WP - OW columns unused), so one
    # window tap is one contiguous run of SPAN inputs and products (templates/hls/conv2d.h.j2)
    p.update(SPAN=(oh - 1) * wp + ow, WIDE=(sh, sw) == (1, 1))
    p.update(C=c, H=h, W_=w, O=o, OH=oh, OW=ow, IPG=ipg, OPG=o // g, KH=kh, KW=kw, KHW=kh * kw, SH=sh, SW=sw,
             DH=dh, DW=dw, PT=t, PL=l, HW=h * w, OHW=oh * ow, R=ipg * kh * kw, pointwise=pointwise)
    ins, outs = _ports(ctx, node)
    return KernelSpec("conv2d", "pointwise" if pointwise else "conv", ident, f"k_{ident}", ins, outs, p, consts,
                      store, types)


# -- pooling ------------------------------------------------------------------------------------------------

def pool(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    a = node.attrs
    c, h, w = ctx.shapes[node.inputs[0]]
    ins, outs = _ports(ctx, node)
    out_t = ctx.qtype(node.output)
    if node.op == "global_avg_pool":
        rq, arrays = requant_spec(a, out_t, node, ident, None)
        _expect(node, "output size", (ctx.size(node.output),), (c,))
        return KernelSpec("pool", "global", ident, f"k_{ident}", ins, outs, dict(C=c, HW=h * w, rq=rq))
    (kh, kw), (sh, sw) = a.pool_size, a.strides
    dh, dw = a.dilation if node.op == "max_pool2d" else (1, 1)
    t, l, b, r = a.padding
    if node.op == "max_pool2d" and a.ceil_mode:
        b += ceil_extra(h, kh, sh, dh, t, b)
        r += ceil_extra(w, kw, sw, dw, l, r)
    oh = (h + t + b - (kh - 1) * dh - 1) // sh + 1
    ow = (w + l + r - (kw - 1) * dw - 1) // sw + 1
    _expect(node, "output shape", ctx.shapes[node.output], (c, oh, ow))
    p = dict(C=c, H=h, W_=w, OH=oh, OW=ow, KH=kh, KW=kw, SH=sh, SW=sw, DH=dh, DW=dw, PT=t, PL=l,
             INT64_MIN=c_int(_INT64_MIN))
    if node.op == "avg_pool2d":  # one (M, n), or one per output position ([OH, OW]: padding not counted)
        per_position = np.ndim(a.multiplier) == 2
        p["rq"], arrays = requant_spec(a, out_t, node, ident, oh * ow if per_position else None)
        p["rq_index"] = f"oh * {ow} + ow" if p["rq"].per_channel else "c"
        return KernelSpec("pool", "avg", ident, f"k_{ident}", ins, outs, p, tuple(arrays))
    return KernelSpec("pool", "max", ident, f"k_{ident}", ins, outs, p)


# -- elementwise --------------------------------------------------------------------------------------------

def _broadcast(ctx: Context, node: QNode) -> dict[str, Any]:
    """Loops over the output's dims with each input's strides (0 along broadcast dims)."""
    out = ctx.shapes[node.output]
    shapes = [ctx.shapes[i] for i in node.inputs]
    if all(tuple(s) == tuple(out) for s in shapes):
        return dict(flat=True, size=ctx.size(node.output))
    if any(len(s) != len(out) for s in shapes):
        raise InputError(f"the inputs of node {node.name!r} must have the rank of its output {out}, "
                         f"not {[tuple(s) for s in shapes]}")
    index = []
    for s in shapes:
        st = strides(s)
        index.append([0 if d == 1 and od != 1 else st[k] for k, (d, od) in enumerate(zip(s, out))])
    return dict(flat=False, dims=list(out), index=index, size=ctx.size(node.output))


def eltwise(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    a = node.attrs
    out_t = ctx.qtype(node.output)
    p = _broadcast(ctx, node)
    if node.op == "add":
        meff, sh, half = [], [], []
        for mult, shift in zip(a.multipliers, a.shifts):
            m_, s_, h_ = shift_constants(mult, shift, a.rounding, node)
            if m_.size != 1:
                raise InputError(f"each multiplier of add node {node.name!r} must be one number")
            meff.append(c_int(m_[0]))
            sh.append(str(int(s_[0])))
            half.append(c_int(h_[0]))
        sat = saturate_spec(out_t, a.overflow, a.lo, a.hi, node)
        p.update(m=meff, sh=sh, hf=half, sat=c_saturate(sat))
    elif node.op in ("mul", "requant"):
        p["rq"], _ = requant_spec(a, out_t, node, ident, None)
    elif node.op == "clip":
        lo, hi = clip_bounds(a.lo, a.hi)
        p["clamp"] = (c_int(lo), c_int(hi))
    ins, outs = _ports(ctx, node)
    return KernelSpec("eltwise", node.op, ident, f"k_{ident}", ins, outs, p)


def concat(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    out = ctx.shapes[node.output]
    axis = int(node.attrs.axis)
    axis = axis + len(out) + 1 if axis < 0 else axis
    if axis == 0:
        raise InputError(f"concat node {node.name!r} must join along a non-batch axis, not axis 0")
    ax = axis - 1
    outer = int(np.prod(out[:ax], dtype=np.int64))
    lens = [int(np.prod(ctx.shapes[i][ax:], dtype=np.int64)) for i in node.inputs]
    if sum(lens) * outer != ctx.size(node.output):
        raise InputError(f"concat node {node.name!r}: input shapes {[ctx.shapes[i] for i in node.inputs]} "
                         f"must add up to the output shape {out} along axis {axis}")
    offsets = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(int).tolist()
    ins, outs = _ports(ctx, node)
    parts = [dict(len=n, off=off) for n, off in zip(lens, offsets)]
    return KernelSpec("concat", "concat", ident, f"k_{ident}", ins, outs, dict(outer=outer, total=sum(lens),
                                                                                 parts=parts))


def lut(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    table = np.asarray(node.attrs.table, dtype=np.int64).reshape(-1)
    offset = int(node.attrs.offset)
    in_t, out_t = ctx.qtype(node.inputs[0]), ctx.qtype(node.output)
    if in_t.lo - offset < 0 or in_t.hi - offset >= table.size:
        raise InputError(f"the table of lut node {node.name!r} must cover every {in_t} code from offset {offset}, "
                         f"not {table.size} entries")
    if table.size and (table.min() < out_t.lo or table.max() > out_t.hi):
        raise InputError(f"the table of lut node {node.name!r} must hold {out_t} codes, "
                         f"not values in [{table.min()}, {table.max()}]")
    ins, outs = _ports(ctx, node)
    consts = (wts.carray(f"L_{ident}", outs[0].ctype, table),)
    return KernelSpec("lut", "lut", ident, f"k_{ident}", ins, outs,
                      dict(size=ctx.size(node.output), table=f"L_{ident}", offset=c_int(offset)), consts)


def lrn(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    """Local response normalization (reference.lrn): the window sum of squares indexes the factor table."""
    a = node.attrs
    c, h, w = ctx.shapes[node.inputs[0]]
    table = np.asarray(a.table, dtype=np.int64).reshape(-1)
    in_t, out_t = ctx.qtype(node.inputs[0]), ctx.qtype(node.output)
    bound = (a.before + a.after + 1) * max(-in_t.lo, in_t.hi) ** 2
    if (bound >> int(a.index_shift)) >= table.size:
        raise InputError(f"the table of lrn node {node.name!r} must cover every window sum up to {bound}, "
                         f"not {table.size} entries at index shift {a.index_shift}")
    meff, sh, half = shift_constants(1, a.shift, a.rounding, node)
    ins, outs = _ports(ctx, node)
    consts = (wts.carray(f"F_{ident}", "int64_t", table),)
    sat = c_saturate(saturate_spec(out_t, a.overflow, a.lo, a.hi, node))
    return KernelSpec("lut", "lrn", ident, f"k_{ident}", ins, outs,
                      dict(C=c, HW=h * w, before=int(a.before), after=int(a.after),
                           k=int(a.index_shift), table=f"F_{ident}",
                           rq=Requant(False, c_int(meff[0]), str(int(sh[0])), c_int(half[0]), sat)), consts)


def hard_swish(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    """compiler/ops/hard_swish.py: the gate ``clamp(x + c3, 0, c6)``, then ``x * t`` requantized."""
    a = node.attrs
    rq, _ = requant_spec(a, ctx.qtype(node.output), node, ident, None)
    ins, outs = _ports(ctx, node)
    return KernelSpec("hard_swish", "hard_swish", ident, f"k_{ident}", ins, outs,
                      dict(size=ctx.size(node.output), c3=c_int(a.c3), c6=c_int(a.c6), rq=rq))


# -- data movement ----------------------------------------------------------------------------------------

def transpose(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    s = ctx.shapes[node.inputs[0]]
    axes = node.attrs.axes  # None: ONNX's default, every axis reversed (the batch axis too)
    axes = list(range(len(s), -1, -1)) if axes is None else [int(x) for x in axes]
    if not axes or axes[0] != 0:
        raise InputError(f"transpose node {node.name!r} must keep the batch axis first, not axes {axes}")
    perm = [x - 1 for x in axes[1:]]
    st = strides(s)
    dims = [s[k] for k in perm]
    _expect(node, "output shape", ctx.shapes[node.output], dims)
    ins, outs = _ports(ctx, node)
    return KernelSpec("datamove", "transpose", ident, f"k_{ident}", ins, outs,
                      dict(dims=dims, index=[st[k] for k in perm], offset=0))


def pad(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    pads = [int(x) for x in node.attrs.pads]
    half = len(pads) // 2
    begins, ends = pads[:half], pads[half:]
    if begins[0] or ends[0] or min(pads) < 0:
        raise InputError(f"pad node {node.name!r} must pad only non-batch axes by >= 0, not pads {pads}")
    s = ctx.shapes[node.inputs[0]]
    out = [d + b + e for d, b, e in zip(s, begins[1:], ends[1:])]
    _expect(node, "output shape", ctx.shapes[node.output], out)
    ost = strides(out)
    ins, outs = _ports(ctx, node)
    return KernelSpec("datamove", "pad", ident, f"k_{ident}", ins, outs,
                      dict(dims=list(s), index=ost, offset=int(sum(b * st for b, st in zip(begins[1:], ost))),
                           size=ctx.size(node.output)))


def copy(ident: str, func: str, ctype: str, size: int, copies: int = 1) -> KernelSpec:
    """A plain copy (``copies`` == 1) or a fork into ``copies`` buffers (one reader each under DATAFLOW)."""
    ins = (Port("x0", ctype, size),)
    outs = tuple(Port(f"y{i}" if copies > 1 else "y", ctype, size) for i in range(copies))
    return KernelSpec("datamove", "fork" if copies > 1 else "copy", ident, func, ins, outs, dict(size=size))


def reshape(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    """Only when the types differ; otherwise the output aliases the input buffer (no kernel)."""
    if ctx.size(node.inputs[0]) != ctx.size(node.output):
        raise InputError(f"reshape node {node.name!r} must keep {ctx.size(node.inputs[0])} elements per sample, "
                         f"not {ctx.size(node.output)}")
    return KernelSpec("datamove", "copy", ident, f"k_{ident}", *_ports(ctx, node), dict(size=ctx.size(node.output)))


BUILDERS = {
    "dense": dense, "conv2d": conv2d, "max_pool2d": pool, "avg_pool2d": pool, "global_avg_pool": pool,
    "add": eltwise, "mul": eltwise, "requant": eltwise, "clip": eltwise, "concat": concat, "lut": lut, "lrn": lrn,
    "transpose": transpose, "pad": pad, "reshape": reshape, "hard_swish": hard_swish,
}
FAMILIES = ("dense", "conv2d", "pool", "eltwise", "concat", "lut", "datamove", "hard_swish")


def kernel_spec(ctx: Context, node: QNode, ident: str) -> KernelSpec:
    if node.op not in BUILDERS:
        raise InputError(f"node {node.name!r}: the hls backend has no kernel for op {node.op!r}")
    return BUILDERS[node.op](ctx, node, ident)


def mac_store(node: QNode) -> wts.WeightStore:
    """The storage form of a conv2d/dense layer, without rendering it (for reports)."""
    return wts.choose(node)[0]


__all__ = ["BUILDERS", "Context", "FAMILIES", "KernelSpec", "Port", "Requant", "Saturate", "kernel_spec",
           "mac_store"]
