"""pad: constant zero padding of the codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec
from ..errors import ModelError


@dataclass(frozen=True, eq=False, kw_only=True)
class PadAttrs(Attrs):
    pads: tuple[int, ...]
    """ONNX order: every axis' begin, then every axis' end; the value is 0."""


def reference(node, xs, out_type) -> np.ndarray:
    p = node.attrs.pads
    half = len(p) // 2
    return np.pad(xs[0], list(zip(p[:half], p[half:])), constant_values=0)


def lower(low, node, xs, out) -> Any:
    p = list(node.attrs.pads)
    half = len(p) // 2
    width = [v for pair in zip(p[:half], p[half:]) for v in pair]
    return low.emit(low.op.nn.pad(xs[0], width, pad_value=0.0), node.name)


def pattern(p) -> Any:
    return p.is_op("relax.nn.pad")(p.wildcard())


def from_pad(b, var, call, args, acts):
    width = [int(x) for x in call.attrs.pad_width]
    if float(call.attrs.pad_value) != 0.0:
        raise ModelError(f"{b.label(var, call)}: padding with {float(call.attrs.pad_value)} has no integer form (only 0)")
    return b.new("pad", var, acts, pads=tuple(width[0::2]) + tuple(width[1::2]))


def float_forward(a, xs) -> np.ndarray:
    p = a["pads"]
    half = len(p) // 2
    return np.pad(xs[0], list(zip(p[:half], p[half:])))


SPEC = OpSpec("pad", PadAttrs, reference, lower, pattern, passthrough=True,
              float_rules=(("relax.nn.pad", from_pad),),  # nn.pad(x, widths, 0) -> pad{ONNX order}
              quantize=lambda q: dict(pads=q.attrs["pads"]), float_forward=float_forward)
