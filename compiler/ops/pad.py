"""pad: constant zero padding of the codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Attrs, OpSpec


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


SPEC = OpSpec("pad", PadAttrs, reference, lower, pattern, passthrough=True)
