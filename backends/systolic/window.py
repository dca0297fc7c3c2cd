"""Pools and Pad as one WINDOW instruction each (MAX, SUM, COPY), lane-parallel over every word.

A window op keeps its input's channel-to-word map (segments and padding lanes included), so its
output has the input's segments over the new pixels.  ``ceil_mode`` and bottom/right padding
need no field: taps past the input are out of bounds (skipped by MAX, 0 for SUM and COPY).
"""

from __future__ import annotations

import numpy as np

from nnforge.compiler.qgraph import QNode
from nnforge.compiler.ops.arrays import ceil_extra

from . import isa
from .layout import Shape
from .spec import (Context, Emitter, LayerSpec, Unsupported, expect_shape, instr, out_fields, scalar_multiplier,
                   spatial_input)


def _window(ctx: Context, node: QNode, sub: int, x: Shape, geometry: dict, out_hw: tuple[int, int],
            fields: dict) -> LayerSpec:
    out = ctx.sample_shape(node.output)
    expect_shape(node, "output shape", out, ((x.chw[0],) + out_hw) if len(out) == 3 else (x.chw[0],))
    shape = Shape((x.chw[0],) + out_hw, x.segments, tuple(out), x.cols,
                  x.zero_pad and fields["lo"] <= 0 <= fields["hi"])  # every sub-op maps zeros to 0
    signed = ctx.qtype(node.inputs[0]).signed
    c, h, w = x.chw
    name = {isa.WIN_MAX: "MAX", isa.WIN_SUM: "SUM", isa.WIN_COPY: "COPY"}[sub]

    def emit(e: Emitter) -> list[isa.Instr]:
        xi, y = e.layouts[node.inputs[0]], e.layouts[node.output]
        return [instr(node, isa.OP_WINDOW, note=name, sub=sub, a_signed=int(signed), in_base=xi.base, in_h=h,
                      in_w=w, in_ps=xi.ps, out_base=y.base, out_h=out_hw[0], out_w=out_hw[1], out_ps=y.ps,
                      n_words=x.words, **geometry, **fields)]

    return LayerSpec(node, "window", shape, emit)


def _sum_bound(ctx: Context, node: QNode, taps: int) -> None:
    t = ctx.qtype(node.inputs[0])
    bound = taps * max(-t.lo, t.hi)
    acc = ctx.params.machine.acc_bits
    if bound.bit_length() + 1 > acc:
        raise Unsupported(f"the window sum of layer {node.name!r} must fit acc_bits={acc} bits, but its bound "
                          f"{bound} needs {bound.bit_length() + 1}; raise it with --option acc_bits="
                          f"{bound.bit_length() + 1}")


def max_pool2d(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    x = spatial_input(ctx, node)
    _, h, w = x.chw
    (kh, kw), (sh, sw) = a.pool_size, a.strides
    dh, dw = a.dilation
    t, l, b, r = a.padding
    if a.ceil_mode:
        b += ceil_extra(h, kh, sh, dh, t, b)
        r += ceil_extra(w, kw, sw, dw, l, r)
    oh = (h + t + b - (kh - 1) * dh - 1) // sh + 1
    ow = (w + l + r - (kw - 1) * dw - 1) // sw + 1
    # every window needs a tap inside the input (the reference's max of only -inf padding has no code)
    for size, o, s, d, p, k in ((h, oh, sh, dh, t, kh), (w, ow, sw, dw, l, kw)):
        starts = np.arange(o) * s - p
        inside = ((starts[:, None] + np.arange(k)[None, :] * d >= 0) & (starts[:, None] + np.arange(k) * d < size))
        if not inside.any(axis=1).all():
            raise Unsupported(f"every window of max_pool2d layer {node.name!r} must overlap the input, but one "
                              f"lies entirely in the padding")
    fields = out_fields(ctx, node, {"rounding": "RND", "overflow": "SAT"})
    return _window(ctx, node, isa.WIN_MAX, x, dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, pt=t, pl=l),
                   (oh, ow), fields)


def avg_pool2d(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    x = spatial_input(ctx, node)
    _, h, w = x.chw
    (kh, kw), (sh, sw) = a.pool_size, a.strides
    t, l, b, r = a.padding
    oh = (h + t + b - kh) // sh + 1
    ow = (w + l + r - kw) // sw + 1
    _sum_bound(ctx, node, kh * kw)
    if np.ndim(a.multiplier) == 2:  # the WINDOW unit requantizes a whole tensor by one (M, n)
        raise Unsupported(f"average pool layer {node.name!r} excludes its padding, so its divisor varies by "
                          f"output position; the WINDOW unit has one multiplier per tensor")
    m, n = scalar_multiplier(node, a.multiplier, a.shift)
    return _window(ctx, node, isa.WIN_SUM, x, dict(kh=kh, kw=kw, sh=sh, sw=sw, dh=1, dw=1, pt=t, pl=l, m_a=m,
                                                   n_a=n), (oh, ow), out_fields(ctx, node))


def global_avg_pool(ctx: Context, node: QNode) -> LayerSpec:
    a = node.attrs
    x = spatial_input(ctx, node)
    _, h, w = x.chw
    _sum_bound(ctx, node, h * w)
    m, n = scalar_multiplier(node, a.multiplier, a.shift)
    return _window(ctx, node, isa.WIN_SUM, x, dict(kh=h, kw=w, sh=1, sw=1, dh=1, dw=1, m_a=m, n_a=n), (1, 1),
                   out_fields(ctx, node))


def pad(ctx: Context, node: QNode) -> LayerSpec:
    pads = [int(v) for v in node.attrs.pads]
    x = spatial_input(ctx, node)
    _, h, w = x.chw
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise Unsupported(f"pad layer {node.name!r} must pad only height and width of an NCHW tensor by >= 0, "
                          f"not pads {pads}")
    t, l, b, r = pads[2], pads[3], pads[6], pads[7]
    fields = out_fields(ctx, node, {"rounding": "RND", "overflow": "SAT"})
    return _window(ctx, node, isa.WIN_COPY, x, dict(kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, pt=t, pl=l),
                   (h + t + b, w + l + r), fields)


__all__ = ["avg_pool2d", "global_avg_pool", "max_pool2d", "pad"]
