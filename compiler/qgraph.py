"""The quantized graph: what the quantize pass produces and every integer executor reads.

A ``QGraph`` is a list of ``QNode`` in topological order over named ``QTensor`` codes.  All
numbers (weight codes, biases, multipliers, shifts, clamps, lookup tables) are computed in
Python by the quantizer and stored in ``QNode.attrs``; executors only apply them.  The numpy
reference (``reference.py``) and the Relax lowering (``lower_relax.py``) both walk this
graph, one function per op, so they are two independent readings of one specification.

Each op's attrs are a typed, frozen class in its module of the op table (``compiler/ops/``:
``ops.conv2d.Conv2dAttrs`` and so on), where every field is documented; ``QNode`` converts a
plain dict through that table, so a node built from a dict is checked (unknown or missing keys
name the node and the key).  Change attrs with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import Attrs, attrs_of
from .quant.numerics import QType


@dataclass
class QTensor:
    """Integer codes of one tensor: ``real = code * scale``."""

    name: str
    shape: tuple[int | str, ...]
    qtype: QType
    scale: float


@dataclass
class QNode:
    """One integer op: ``attrs`` is the op's attrs class (a plain dict is converted on construction)."""

    op: str
    name: str
    inputs: list[str]
    output: str
    attrs: Attrs | dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.attrs, dict):
            self.attrs = attrs_of(self.op, self.attrs, self.name)


@dataclass
class HostOp:
    """A float operation left on the host after the integer outputs, with the reason.

    Only a trailing ``softmax`` (over the last axis), optionally followed by a ``reshape``
    (``attrs["shape"]``, batch as -1: opset-9 Softmax's flatten / unflatten), is supported."""

    op: str
    name: str
    reason: str
    attrs: dict[str, Any] = field(default_factory=dict)


def apply_host_ops(host_ops: list[HostOp], real: np.ndarray) -> np.ndarray:
    """The float host ops, in order, on the dequantized integer output."""
    for h in host_ops:
        if h.op == "softmax":
            e = np.exp(real - real.max(axis=-1, keepdims=True))
            real = e / e.sum(axis=-1, keepdims=True)
        elif h.op == "reshape":
            real = real.reshape([len(real) if d == -1 else d for d in h.attrs["shape"]])
        else:
            raise ValueError(f"unknown host op {h.op!r}")
    return real


@dataclass
class QGraph:
    inputs: list[QTensor]
    tensors: dict[str, QTensor]
    nodes: list[QNode]
    outputs: list[str]
    host_ops: list[HostOp] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)  # what `auto` chose, and why

    def node_outputs(self) -> list[str]:
        """Every traced tensor, in execution order."""
        return [n.output for n in self.nodes]

    def quantize_inputs(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Float inputs -> codes, with the contract's boundary rounding."""
        from .quant.numerics import quantize

        return [
            quantize(a, t.scale, t.qtype).astype(t.qtype.storage) for a, t in zip(arrays, self.inputs)
        ]

    def dequantize(self, name: str, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float64) * self.tensors[name].scale
