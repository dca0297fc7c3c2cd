"""conv2d and dense as one GEMM instruction, with weights laid out in the k-step order.

A dense layer is a conv2d whose kernel covers its whole input: the flattened input's element
``c*H*W + h*W + w`` is channel ``c`` of pixel ``(h, w)`` (a flatten is a view), so ``W[K, N]``
becomes ``w[N, C, H, W]`` over a 1x1 output.

Output word ``n`` (channels ``n*C .. n*C + C-1``) reads input words ``n*k_step + q`` for
``q < k_words`` at each kernel tap.  ``k_step``/``k_words`` are chosen per layer to cover the
input channels of every output word's groups with the fewest k-steps: ``(0, all words)`` for
ordinary convolutions, ``(1, 1)`` for a depthwise one.  The weight of k-step ``(ki, kj, q, l)``
and column ``j`` is ``w[n*C + j, ch - group_start, ki, kj]`` where ``ch`` is the channel in lane
``l`` of input word ``n*k_step + q``, and 0 where that lane is not an input of that output
channel (padding lanes, other groups, other concat segments).

Shared weights (``attrs.codebook``) are stored as IMEM indices with the codebook after the
layer's per-channel PMEM words; the indices of the zero weights point at the codebook's 0.
"""

from __future__ import annotations

import math

import numpy as np

from nnforge.compiler.qgraph import QNode

from . import isa
from .layout import Shape, ceil_div, chw_of
from .spec import (Context, Emitter, LayerSpec, Unsupported, check_width, expect_shape, instr, multiplier,
                   out_fields, spatial_input)


def _k_plan(ch_of: np.ndarray, n_words: int, out_ch: int, ipg: int, opg: int, cols: int) -> tuple[int, int]:
    """``(k_step, k_words)`` with the fewest k-steps that reaches every needed input word."""
    word_of = {int(c): w for w, row in enumerate(ch_of) for c in row if c >= 0}
    lo, hi = [], []
    for n in range(n_words):
        outs = range(n * cols, min(out_ch, (n + 1) * cols))
        groups = {o // opg for o in outs}
        words = [word_of[c] for g in groups for c in range(g * ipg, (g + 1) * ipg)]
        lo.append(min(words))
        hi.append(max(words) + 1)
    span = len(ch_of)
    best = (span, 0)  # (k_words, k_step): (all words, 0) always works
    candidates = {lo[1] - lo[0]} if n_words > 1 else set()
    for step in sorted(c for c in candidates if c > 0):
        if all(n * step <= lo[n] for n in range(n_words)):
            kw = max(hi[n] - n * step for n in range(n_words))
            if (n_words - 1) * step + kw <= span and kw < best[0]:
                best = (kw, step)
    return best[1], best[0]


def _weights(w: np.ndarray, ch_of: np.ndarray, k_step: int, k_words: int, groups: int, cols: int,
             zero_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """``[n_words * K, C]`` weights of every k-step and column (0 where not an input), and where a
    0 is required: lanes holding a channel that is not an input of the column (another group or
    segment), and padding lanes unless the input holds zeros there.  Columns past the output
    channels have multiplier 0, so their weights are don't-care."""
    o_ch, ipg, kh, kw = w.shape
    opg = o_ch // groups
    n_words = ceil_div(o_ch, cols)
    out = np.zeros((n_words, kh, kw, k_words, cols, cols), dtype=np.int64)  # n, ki, kj, q, l, j
    zero = np.zeros((n_words, kh, kw, k_words, cols, cols), dtype=bool)
    for n in range(n_words):
        ch = ch_of[n * k_step + np.arange(k_words)]  # [q, l]
        o = n * cols + np.arange(cols)  # [j]
        oc = np.minimum(o, o_ch - 1)
        rel = ch[:, :, None] - (oc // opg * ipg)[None, None, :]  # [q, l, j]
        col_ok = o[None, None, :] < o_ch
        ok = (ch[:, :, None] >= 0) & col_ok & (rel >= 0) & (rel < ipg)
        vals = w[np.broadcast_to(oc[None, None, :], rel.shape), np.clip(rel, 0, ipg - 1)]  # [q, l, j, kh, kw]
        out[n] = np.where(ok[..., None, None], vals, 0).transpose(3, 4, 0, 1, 2)
        need = col_ok & ~ok & ((ch[:, :, None] >= 0) | (not zero_pad))
        zero[n] = np.broadcast_to(need[None, None], (kh, kw) + need.shape)
    return out.reshape(-1, cols), zero.reshape(-1, cols)


def _accumulator_bound(ctx: Context, node: QNode, w: np.ndarray, bias: np.ndarray) -> None:
    xt = ctx.qtype(node.inputs[0])
    flat = w.reshape(w.shape[0], -1)
    bound = int((np.maximum(np.abs(flat * xt.lo), np.abs(flat * xt.hi)).sum(axis=1) + np.abs(bias)).max(initial=0))
    need = bound.bit_length() + 1
    acc = ctx.params.machine.acc_bits
    if need > acc:
        raise Unsupported(f"the accumulator of layer {node.name!r} must fit acc_bits={acc} bits, but its bound "
                          f"{bound} needs {need}; raise it with --option acc_bits={need}")


def _storage(ctx: Context, node: QNode, w: np.ndarray, lanes: np.ndarray, must_zero: np.ndarray):
    """``(storage, index lanes, codebook entries, index bits, notes)``: dense, or IMEM indices into
    the layer's codebook (with a 0 entry added where a required zero is not an entry)."""
    cb = node.attrs.codebook
    m = ctx.params.machine
    if cb is None:
        return "dense", None, [], 0, []
    cb = [int(v) for v in np.asarray(cb, dtype=np.int64).reshape(-1)]
    if must_zero.any() and 0 not in cb:
        cb.append(0)  # lanes that are not inputs of a column need a zero weight
    bits = max(1, math.ceil(math.log2(len(cb))))
    if bits > m.idx_bits:
        return "dense", None, [], 0, [f"codebook of {len(cb)} entries (a 0 for other groups' or segments' lanes "
                                      f"included) needs {bits}-bit indices, more than idx_bits={m.idx_bits}: "
                                      f"stored dense (raise idx_bits to store indices)"]
    index = {v: i for i, v in enumerate(cb)}
    bad = np.setdiff1d(w, cb).tolist()
    if bad:
        raise Unsupported(f"every weight of layer {node.name!r} must be a codebook entry, not {bad[:4]}")
    lookup = np.vectorize(lambda v: index.get(int(v), 0), otypes=[np.int64])
    idx = lookup(lanes) if lanes.size else lanes
    # zeros that are weights of the model, or required: the zero entry; don't-care zeros: any index
    if 0 in index:
        idx = np.where(must_zero | (lanes == 0), index[0], idx)
    return "codebook", idx, cb + [0] * ((1 << bits) - len(cb)), bits, []


def conv_like(ctx: Context, node: QNode, w: np.ndarray, geometry: dict, out_shape: tuple[int, ...],
              in_shape: Shape) -> LayerSpec:
    """The GEMM of weights ``w[O, I/g, kh, kw]`` over ``in_shape`` with ``geometry`` fields."""
    m = ctx.params.machine
    cols = m.cols
    a = node.attrs
    groups = int(geometry.pop("groups"))
    o_ch, ipg = w.shape[0], w.shape[1]
    check_width(ctx, node, node.inputs[0], "input")
    fields = out_fields(ctx, node)
    bias = np.broadcast_to(np.asarray(a.bias, dtype=np.int64).reshape(-1), (o_ch,))
    _accumulator_bound(ctx, node, w, bias)
    lo, hi = (int(w.min()), int(w.max())) if w.size else (0, 0)
    w_signed = lo < 0 or hi < (1 << (m.in_bits - 1))
    wlo, whi = (-(1 << (m.in_bits - 1)), (1 << (m.in_bits - 1)) - 1) if w_signed else (0, (1 << m.in_bits) - 1)
    if lo < wlo or hi > whi:
        bits = max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length()) + 1  # two's complement width
        raise Unsupported(f"the weights of layer {node.name!r} must be {m.in_bits}-bit codes (in_bits), not codes in "
                          f"[{lo}, {hi}]; raise it with --option in_bits={bits}")
    mult, shift = multiplier(node, a.multiplier, a.shift)
    mult, shift = np.broadcast_to(mult, (o_ch,)), np.broadcast_to(shift, (o_ch,))
    n_words = ceil_div(o_ch, cols)
    ch_of = in_shape.lane_channels()
    k_step, k_words = _k_plan(ch_of, n_words, o_ch, ipg, o_ch // groups, cols)
    lanes, must_zero = _weights(w, ch_of, k_step, k_words, groups, cols, in_shape.zero_pad)
    storage, idx, codebook, idx_bits, notes = _storage(ctx, node, w, lanes, must_zero)
    pad = n_words * cols - o_ch

    def per_word(v):
        return np.concatenate([v, np.zeros(pad, np.int64)]).reshape(n_words, cols)

    pmem = isa.pack_pmem(per_word(bias), per_word(mult), per_word(shift), m.acc_bits)
    if codebook:
        pmem += isa.pack_pmem([[v] + [0] * (cols - 1) for v in codebook], [[0] * cols] * len(codebook),
                              [[0] * cols] * len(codebook), m.acc_bits)
    kh, kw = w.shape[2], w.shape[3]
    c_in, h, wd = in_shape.chw
    _, oh, ow = chw_of(out_shape)
    x_signed = ctx.qtype(node.inputs[0]).signed
    shape = Shape.plain(tuple(out_shape), cols).with_zero_pad(fields["lo"] <= 0 <= fields["hi"])  # mult 0 there
    # MACs the model needs (not the padded array's): output elements x inputs per output
    macs = int(o_ch * oh * ow * ipg * kh * kw)

    def emit(e: Emitter) -> list[isa.Instr]:
        x, y = e.layouts[node.inputs[0]], e.layouts[node.output]
        return [instr(node, isa.OP_GEMM, note=f"{storage} weights, k_step={k_step}", a_signed=int(x_signed),
                      w_signed=int(w_signed), shared=int(storage == "codebook"), idx_bits=idx_bits,
                      in_base=x.base, in_h=h, in_w=wd, in_ps=x.ps, out_base=y.base, out_h=oh, out_w=ow,
                      out_ps=y.ps, n_words=n_words, kh=kh, kw=kw, k_words=k_words, k_step=k_step,
                      w_base=e.i_base if storage == "codebook" else e.w_base, p_base=e.p_base,
                      **geometry, **fields)]

    return LayerSpec(node, "gemm", shape, emit, wmem=lanes if storage == "dense" else None,
                     imem=idx if storage == "codebook" else None, pmem=pmem, storage=storage, macs=macs,
                     notes=notes)


def conv2d(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    x = spatial_input(ctx, node)
    w = np.asarray(a.weight, dtype=np.int64)
    o_ch, ipg, kh, kw = w.shape
    c, h, wd = x.chw
    g = int(a.groups)
    if c != ipg * g or o_ch % g:
        raise Unsupported(f"conv2d layer {node.name!r}: its {c} input channels must be groups ({g}) x {ipg}, and "
                          f"its {o_ch} output channels a multiple of groups")
    (sh, sw), (dh, dw) = a.strides, a.dilation
    t, l, b, r = a.padding
    oh = (h + t + b - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + l + r - (kw - 1) * dw - 1) // sw + 1
    expect_shape(node, "output shape", ctx.sample_shape(node.output), (o_ch, oh, ow))
    geometry = dict(sh=sh, sw=sw, dh=dh, dw=dw, pt=t, pl=l, groups=g)
    return conv_like(ctx, node, w, geometry, (o_ch, oh, ow), x)


def dense(ctx: Context, node: QNode) -> LayerSpec:
    x = ctx.shapes[node.inputs[0]]
    w = np.asarray(node.attrs.weight, dtype=np.int64)  # [K, N]
    k, n = w.shape
    c, h, wd = x.chw
    expect_shape(node, "input size", (int(np.prod(x.shape)),), (k,))
    expect_shape(node, "output shape", ctx.sample_shape(node.output), (n,))
    wc = w.T.reshape(n, c, h, wd)  # flat index c*H*W + h*W + w is channel c of pixel (h, w)
    geometry = dict(sh=1, sw=1, dh=1, dw=1, pt=0, pl=0, groups=1)
    return conv_like(ctx, node, wc, geometry, (n,), x)


__all__ = ["conv2d", "conv_like", "dense"]
