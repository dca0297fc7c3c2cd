"""The quantized graph: what the quantize pass produces and every integer executor reads.

A ``QGraph`` is a list of ``QNode`` in topological order over named ``QTensor`` codes.  All
numbers (weight codes, biases, multipliers, shifts, clamps, lookup tables) are computed in
Python by the quantizer and stored in ``QNode.attrs``; executors only apply them.  The numpy
reference (``reference.py``) and the Relax lowering (``lower_relax.py``) both walk this
graph, one function per op, so they are two independent readings of one specification.

Ops and their attrs (arrays are int64 numpy arrays):

=================  ===========================================================================
``conv2d``          weight [O, I/g, kh, kw], bias [O], strides, padding (t, l, b, r), dilation,
                    groups, multiplier [O], shift [O], lo, hi, rounding, overflow, acc_dtype
``dense``           weight [K, N], bias [N], multiplier [N], shift [N], lo, hi, rounding,
                    overflow, acc_dtype
                    (conv2d and dense also carry weight_bits and weight_scale [O | N], float: storage
                    accounting and plots only, never read by an executor)
``max_pool2d``      pool_size, strides, padding, dilation, ceil_mode
``avg_pool2d``      pool_size, strides, padding (window sum incl. padding), multiplier, shift, lo,
                    hi, rounding, overflow; multiplier and shift are [OH, OW] (one per output
                    position) when the padding is not counted and border windows hold fewer taps
``lrn``             before, after (channel window c-before..c+after), table [T], index_shift k,
                    shift n, lo, hi, rounding, overflow:
                    y = saturate(round_shift(x * table[S >> k], n)), S = sum of x^2 over the window
``global_avg_pool`` multiplier, shift, lo, hi, rounding, overflow   (sum over H, W)
``add``             multipliers (Ma, Mb), shifts (na, nb), lo, hi, rounding, overflow
``mul``             multiplier, shift, lo, hi, rounding, overflow     (a * b, requantized)
``requant``         multiplier, shift, lo, hi, rounding, overflow     (rescale one tensor)
``concat``          axis                    (inputs share the output scale and type)
``clip``            lo, hi                  (ReLU / ReLU6 / Clip that could not be fused)
``lut``             table [2^bits_in], offset (= input lo): y = table[x - offset]
``reshape``         shape (batch dimension -1 when symbolic)
``transpose``       axes
``pad``             pads (ONNX order: begins then ends), value 0
=================  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    op: str
    name: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


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
