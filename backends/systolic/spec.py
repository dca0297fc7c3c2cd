"""What the mapping of one layer produces before addresses exist, and the field helpers.

Mapping runs in three steps (``mapping.py``): every layer is checked and turned into a
``LayerSpec`` (its output's physical ``Shape``, weights and parameters as memory words, and an
``emit`` function that writes its instructions once addresses are known); buffers are
allocated; then ``emit`` runs.  All checks happen in the first step, so a layer that the array
cannot take is known (``Unsupported``) before anything is placed, and can go to the host when
it is trailing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode

from ..requant import effective_clamp
from . import isa
from .layout import Layout, Shape
from .params import Params

MULT_MAX = (1 << isa.MULT_W) - 1
SHIFT_MAX = 63  # int64 semantics of the reference; the GEMM's PMEM field holds 6 bits


class Unsupported(InputError):
    """A layer the array cannot take; the message says what was expected (and which option helps)."""


@dataclass
class Emitter:
    """What ``LayerSpec.emit`` gets: the placed tensors and the bases of the layer's memory words."""

    layouts: dict[str, Layout]
    w_base: int
    i_base: int
    p_base: int


@dataclass
class LayerSpec:
    """One layer, mapped except for addresses."""

    node: QNode
    kind: str  # gemm | window | eltwise | view | concat
    out: Shape
    emit: Callable[[Emitter], list[isa.Instr]]
    wmem: np.ndarray | None = None  # [words, C] weight lanes (dense storage)
    imem: np.ndarray | None = None  # [words, C] index lanes (shared storage)
    pmem: list[int] = field(default_factory=list)  # packed PMEM words
    storage: str | None = None  # "dense" | "codebook" | None
    macs: int = 0
    notes: list[str] = field(default_factory=list)
    in_place: tuple[str, ...] = ()  # concat: inputs written in place into its buffer
    offsets: dict[str, int] = field(default_factory=dict)  # concat: each input's first word in a pixel


@dataclass
class Context:
    """What a layer's mapping reads: the graph, the parameters and the inputs' shapes."""

    graph: QGraph
    params: Params
    shapes: dict[str, Shape]
    producers: dict[str, LayerSpec]  # tensor -> the spec that writes it (absent: graph input)

    def qtype(self, tensor: str) -> QType:
        return self.graph.tensors[tensor].qtype

    def sample_shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.graph.tensors[tensor].shape[1:]
        return tuple(int(d) for d in shape)


def check_width(ctx: Context, node: QNode, tensor: str, role: str) -> QType:
    """Codes of ``tensor`` must fit the array's stored width."""
    t = ctx.qtype(tensor)
    limit = ctx.params.machine.in_bits
    if t.bits > limit:
        raise Unsupported(f"the {role} of layer {node.name!r} ({t}) must be at most in_bits={limit} bits wide, "
                          f"not {t.bits}; raise it with --option in_bits={t.bits}")
    return t


def out_fields(ctx: Context, node: QNode, attrs: dict | None = None) -> dict[str, int]:
    """Rounding, overflow and the final clamp of the saturate stage, as instruction fields."""
    a = attrs if attrs is not None else {k: getattr(node.attrs, k) for k in ("rounding", "overflow", "lo", "hi")}
    out = check_width(ctx, node, node.output, "output")
    rounding, overflow = a.get("rounding", "RND"), a.get("overflow", "SAT")
    if rounding not in ("RND", "TRN"):
        raise Unsupported(f"the rounding of layer {node.name!r} must be RND or TRN, not {rounding!r}")
    if overflow == "SAT":
        lo, hi = effective_clamp(out, a.get("lo"), a.get("hi"))
    elif overflow == "WRAP":  # wrap to the type, then the optional clamp
        lo = out.lo if a.get("lo") is None else int(a["lo"])
        hi = out.hi if a.get("hi") is None else int(a["hi"])
    else:
        raise Unsupported(f"the overflow of layer {node.name!r} must be SAT or WRAP, not {overflow!r}")
    return dict(rnd=int(rounding == "RND"), wrap=int(overflow == "WRAP"), out_bits=out.bits,
                out_signed=int(out.signed), lo=int(lo), hi=int(hi))


def multiplier(node: QNode, mult, shift, what: str = "requantization") -> tuple[np.ndarray, np.ndarray]:
    """``(M, n)`` for the hardware: a negative shift becomes ``M << -n`` (exact) with ``n = 0``.

    ``M`` must then fit the 16-bit multiplier and ``n`` be at most 63."""
    m = np.asarray(mult, dtype=np.int64).reshape(-1)
    n = np.asarray(shift, dtype=np.int64).reshape(-1)
    m, n = (np.array(a) for a in np.broadcast_arrays(m, n))
    if (m < 0).any():
        raise Unsupported(f"the {what} multiplier of layer {node.name!r} must be >= 0, not {int(m.min())}")
    left = np.maximum(-n, 0)
    shifted = np.where(m == 0, 0, np.where(left > 16, MULT_MAX + 1, m << np.minimum(left, 16)))
    if (shifted > MULT_MAX).any():
        bad = int(np.argmax(shifted > MULT_MAX))
        raise Unsupported(f"the {what} of layer {node.name!r} has a left shift (M={int(m[bad])}, n={int(n[bad])}); "
                          f"M << {int(left[bad])} must fit the 16-bit multiplier, and it does not")
    m = shifted
    n = np.maximum(n, 0)
    if (n > SHIFT_MAX).any():
        raise Unsupported(f"the {what} shift of layer {node.name!r} must be at most {SHIFT_MAX}, not {int(n.max())}")
    return m, n


def scalar_multiplier(node: QNode, mult, shift, what: str = "requantization") -> tuple[int, int]:
    m, n = multiplier(node, mult, shift, what)
    if m.size != 1 and (np.unique(m).size > 1 or np.unique(n).size > 1):
        raise Unsupported(f"the {what} of layer {node.name!r} must be one multiplier for the whole tensor, "
                          f"not {m.size}")
    return int(m[0]), int(n[0])


def expect_shape(node: QNode, what: str, got, want) -> None:
    if tuple(got) != tuple(want):
        raise Unsupported(f"the {what} of layer {node.name!r} must be {tuple(want)}, not {tuple(got)}")


def spatial_input(ctx: Context, node: QNode) -> Shape:
    """The input of a layer that reads pixels (conv2d, pools, pad): its logical shape must be its
    physical ``[C, H, W]`` (a reshape is only a view, so it cannot move channels into pixels)."""
    x = ctx.shapes[node.inputs[0]]
    if tuple(x.shape) != x.chw:
        raise Unsupported(f"the input of layer {node.name!r} must be a pixel-major [C, H, W] tensor, not "
                          f"{node.inputs[0]!r}, a reshape of a {x.chw} tensor to {tuple(x.shape)} (the array "
                          f"reshapes only by flattening or by channel-only views)")
    check_width(ctx, node, node.inputs[0], "input")
    return x


def instr(node: QNode, op: int, note: str = "", **fields: int) -> isa.Instr:
    """An instruction, with every field checked to fit now (an InputError naming the layer)."""
    ins = isa.Instr(op, {k: int(v) for k, v in fields.items()}, layer=node.name, note=note)
    try:
        isa.encode(ins)
    except ValueError as err:
        raise InputError(f"layer {node.name!r} does not fit the instruction format: {err}") from None
    return ins


__all__ = ["Context", "Emitter", "LayerSpec", "Unsupported", "check_width", "expect_shape", "instr", "multiplier",
           "out_fields", "scalar_multiplier", "spatial_input"]
