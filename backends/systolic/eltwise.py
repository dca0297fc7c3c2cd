"""add, mul, requant, clip and lut as one ELTWISE instruction each, word by word.

Both operands of add/mul must have the same shape and the same channel-to-word map (no
broadcasting: the array pairs word ``c`` of a pixel with word ``c``).  The output keeps that
map.  A lookup table lives in PMEM, one entry a word (lane 0's bias field), indexed by
``code - offset``; every lane of the input holds a code of its type (padding lanes included:
producers write in-range codes there), so no lane indexes outside the table.
"""

from __future__ import annotations

import numpy as np

from nnforge.compiler.ops import hard_swish as hard_swish_op
from nnforge.compiler.qgraph import QNode

from . import isa
from .layout import Shape
from .spec import (Context, Emitter, LayerSpec, Unsupported, check_width, instr, out_fields, scalar_multiplier)

LUT_MAX_BITS = 8  # a table-mapped op (hard_swish) takes inputs of at most this many bits: 256 PMEM words
_NAMES = {isa.ELT_ADD: "ADD", isa.ELT_MUL: "MUL", isa.ELT_REQUANT: "REQUANT", isa.ELT_CLIP: "CLIP", isa.ELT_LUT: "LUT"}


def _operands(ctx: Context, node: QNode) -> Shape:
    shapes = [ctx.shapes[t] for t in node.inputs]
    for t in node.inputs:
        check_width(ctx, node, t, "input")
    out = ctx.sample_shape(node.output)
    for t, s in zip(node.inputs, shapes):
        if tuple(s.shape) != tuple(out):
            raise Unsupported(f"the inputs of {node.op} layer {node.name!r} must have its output's shape {tuple(out)} "
                              f"(the array does not broadcast), not {tuple(s.shape)} ({t!r})")
    if len(shapes) == 2 and not shapes[0].same_words(shapes[1]):
        raise Unsupported(f"the two inputs of {node.op} layer {node.name!r} must lie in the scratchpad alike "
                          f"(same pixels and channel segments), not {shapes[0].chw}/{shapes[0].segments} and "
                          f"{shapes[1].chw}/{shapes[1].segments}")
    return shapes[0]


def _eltwise(ctx: Context, node: QNode, sub: int, fields: dict, pmem: list[int] | None = None,
             maps_zero: bool | None = None) -> LayerSpec:
    x = _operands(ctx, node)
    if maps_zero is None:  # add, mul, requant and clip of zeros give 0 unless the clamp excludes it
        maps_zero = fields["lo"] <= 0 <= fields["hi"]
    zero_pad = maps_zero and all(ctx.shapes[t].zero_pad for t in node.inputs)
    shape = Shape(x.chw, x.segments, ctx.sample_shape(node.output), x.cols, zero_pad)
    _, h, w = x.chw
    signs = [int(ctx.qtype(t).signed) for t in node.inputs]

    def emit(e: Emitter) -> list[isa.Instr]:
        a, y = e.layouts[node.inputs[0]], e.layouts[node.output]
        more = {}
        if len(node.inputs) == 2:
            b = e.layouts[node.inputs[1]]
            more = dict(b_signed=signs[1], b_base=b.base, b_ps=b.ps)
        if pmem:
            more["p_base"] = e.p_base
        return [instr(node, isa.OP_ELTWISE, note=_NAMES[sub], sub=sub, a_signed=signs[0], in_base=a.base,
                      in_h=h, in_w=w, in_ps=a.ps, out_base=y.base, out_h=h, out_w=w, out_ps=y.ps,
                      n_words=x.words, **more, **fields)]

    return LayerSpec(node, "eltwise", shape, emit, pmem=pmem or [])


def add(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    (ma, mb), (na, nb) = a.multipliers, a.shifts
    ma, na = scalar_multiplier(node, ma, na, "first input's rescale")
    mb, nb = scalar_multiplier(node, mb, nb, "second input's rescale")
    return _eltwise(ctx, node, isa.ELT_ADD, dict(m_a=ma, n_a=na, m_b=mb, n_b=nb, **out_fields(ctx, node)))


def mul(ctx: Context, node: QNode) -> LayerSpec:
    m, n = scalar_multiplier(node, node.attrs.multiplier, node.attrs.shift)
    return _eltwise(ctx, node, isa.ELT_MUL, dict(m_a=m, n_a=n, **out_fields(ctx, node)))


def requant(ctx: Context, node: QNode) -> LayerSpec:
    m, n = scalar_multiplier(node, node.attrs.multiplier, node.attrs.shift)
    return _eltwise(ctx, node, isa.ELT_REQUANT, dict(m_a=m, n_a=n, **out_fields(ctx, node)))


def clip(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    fields = out_fields(ctx, node, {"rounding": "RND", "overflow": "SAT", "lo": a.lo, "hi": a.hi})
    return _eltwise(ctx, node, isa.ELT_CLIP, dict(m_a=1, **fields))


def lut(ctx: Context, node: QNode) -> LayerSpec:
    return _table_lut(ctx, node, np.asarray(node.attrs.table, dtype=np.int64).reshape(-1),
                      int(node.attrs.offset))


def hard_swish(ctx: Context, node: QNode) -> LayerSpec:
    """compiler/ops/hard_swish.py as a LUT instruction: the table is the op's own reference on every
    input code, so it is exact by construction (inputs of at most LUT_MAX_BITS bits)."""
    t_in = check_width(ctx, node, node.inputs[0], "input")
    if t_in.bits > LUT_MAX_BITS:
        raise Unsupported(f"the input of hard_swish layer {node.name!r} must be at most {LUT_MAX_BITS} bits wide "
                          f"for its lookup table ({1 << LUT_MAX_BITS} PMEM words), not {t_in.bits}")
    codes = np.arange(t_in.lo, t_in.hi + 1, dtype=np.int64)
    return _table_lut(ctx, node, hard_swish_op.reference(node, [codes], ctx.qtype(node.output)), t_in.lo)


def _table_lut(ctx: Context, node: QNode, table: np.ndarray, offset: int) -> LayerSpec:
    t_in, t_out = check_width(ctx, node, node.inputs[0], "input"), check_width(ctx, node, node.output, "output")
    if t_in.lo - offset < 0 or t_in.hi - offset >= table.size:
        raise Unsupported(f"the table of lut layer {node.name!r} must cover every {t_in} code from offset {offset}, "
                          f"not {table.size} entries")
    if table.size and (table.min() < t_out.lo or table.max() > t_out.hi):
        raise Unsupported(f"the table of lut layer {node.name!r} must hold {t_out} codes, not values in "
                          f"[{table.min()}, {table.max()}]")
    cols, acc = ctx.params.cols, ctx.params.machine.acc_bits
    zeros = [[0] * cols] * table.size
    pmem = isa.pack_pmem([[int(v)] + [0] * (cols - 1) for v in table], zeros, zeros, acc)
    return _eltwise(ctx, node, isa.ELT_LUT, dict(lut_offset=offset), pmem, maps_zero=int(table[-offset]) == 0)


__all__ = ["add", "clip", "hard_swish", "lut", "mul", "requant"]
