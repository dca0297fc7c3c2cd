"""reshape and concat: addressing, not arithmetic.

* A reshape is a view: same words, new logical shape (the C order of ``[C, H, W]`` is the
  element order, which a flatten keeps).  A consumer that needs pixels checks its input's
  logical shape against the physical one, so only flattens and channel-only reshapes reach
  conv2d/pools; others fail there (or go to the host when trailing).
* A concat along channels owns one buffer with one segment per input segment.  Inputs written by
  a GEMM, WINDOW or ELTWISE layer are placed in that buffer by their producer (in place, no
  copy); the others (graph inputs, views, other concats, a tensor used twice) are copied in with
  a 1x1 WINDOW COPY.
"""

from __future__ import annotations

import numpy as np

from nnforge.compiler.qgraph import QNode

from . import isa
from .layout import Shape, chw_of
from .spec import Context, Emitter, LayerSpec, Unsupported, check_width, instr, out_fields

IN_PLACE_KINDS = ("gemm", "window", "eltwise")


def reshape(ctx: Context, node: QNode) -> LayerSpec:
    x = ctx.shapes[node.inputs[0]]
    out = ctx.sample_shape(node.output)
    if int(np.prod(out, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise Unsupported(f"reshape layer {node.name!r} must keep {int(np.prod(x.shape))} elements per sample, "
                          f"not {int(np.prod(out))}")
    if ctx.qtype(node.output) != ctx.qtype(node.inputs[0]):
        raise Unsupported(f"reshape layer {node.name!r} must keep its input's type {ctx.qtype(node.inputs[0])}, "
                          f"not {ctx.qtype(node.output)}")
    return LayerSpec(node, "view", x.reshaped(out), lambda e: [])


def _channel_axis(ctx: Context, node: QNode) -> None:
    rank = len(ctx.sample_shape(node.output)) + 1
    axis = int(node.attrs.axis)
    axis = axis + rank if axis < 0 else axis
    if axis != 1:
        raise Unsupported(f"concat layer {node.name!r} must join along the channel axis 1, not axis "
                          f"{node.attrs.axis}")


def concat(ctx: Context, node: QNode, placed: set[str]) -> LayerSpec:
    """``placed``: tensors already written in place into another concat (updated here)."""
    _channel_axis(ctx, node)
    ins = [ctx.shapes[t] for t in node.inputs]
    out = ctx.sample_shape(node.output)
    for t, s in zip(node.inputs, ins):
        check_width(ctx, node, t, "input")
        if chw_of(s.shape) != s.chw or s.chw[1:] != ins[0].chw[1:]:
            raise Unsupported(f"the inputs of concat layer {node.name!r} must be pixel-major tensors of "
                              f"{ins[0].chw[1]}x{ins[0].chw[2]} pixels, not {s.shape} ({t!r})")
        if ctx.qtype(t) != ctx.qtype(node.output):
            raise Unsupported(f"the inputs of concat layer {node.name!r} must share its type "
                              f"{ctx.qtype(node.output)}, not {ctx.qtype(t)} ({t!r})")
    segments, offsets, word = [], [], 0
    for s in ins:
        offsets.append(word)
        segments += [(ch, word + w0) for ch, w0 in s.segments]
        word += s.words
    shape = Shape((sum(s.chw[0] for s in ins), ins[0].chw[1], ins[0].chw[2]), tuple(segments), tuple(out),
                  ins[0].cols, all(s.zero_pad for s in ins))
    if chw_of(out) != shape.chw:
        raise Unsupported(f"the output of concat layer {node.name!r} must be {shape.chw}, not {tuple(out)}")
    in_place = []
    for t in node.inputs:
        prod = ctx.producers.get(t)
        if prod is not None and prod.kind in IN_PLACE_KINDS and t not in placed and node.inputs.count(t) == 1:
            in_place.append(t)
            placed.add(t)
    fields = out_fields(ctx, node, {"rounding": "RND", "overflow": "SAT"})
    signed = int(ctx.qtype(node.output).signed)

    def emit(e: Emitter) -> list[isa.Instr]:
        y = e.layouts[node.output]
        code = []
        for t, s, off in zip(node.inputs, ins, offsets):
            if t in in_place:
                continue
            x = e.layouts[t]
            code.append(instr(node, isa.OP_WINDOW, note=f"COPY {t} into the concat", sub=isa.WIN_COPY,
                              a_signed=signed, in_base=x.base, in_h=s.chw[1], in_w=s.chw[2], in_ps=x.ps,
                              out_base=y.base + off, out_h=s.chw[1], out_w=s.chw[2], out_ps=y.ps,
                              n_words=s.words, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, **fields))
        return code

    return LayerSpec(node, "concat", shape, emit, in_place=tuple(in_place), offsets=dict(zip(node.inputs, offsets)))


__all__ = ["IN_PLACE_KINDS", "concat", "reshape"]
