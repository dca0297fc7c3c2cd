"""The numpy reference interpreter for quantized graphs: the specification in code.

Slow and obviously right: one function per op, int64 arithmetic throughout, with
rounding, saturation and requantization taken from ``numerics``.  ``run`` returns every
traced tensor, so other executors are compared layer by layer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .numerics import requantize, saturate
from .qgraph import QGraph, QNode


def _pad_nchw(x: np.ndarray, padding, value: int) -> np.ndarray:
    top, left, bottom, right = padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, strides, dilation) -> np.ndarray:
    """[N, C, OH, OW, kh, kw] views of the (already padded) input."""
    dh, dw = dilation
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]
    return win


def _requant(acc, a, out_type):
    return requantize(acc, a["multiplier"], a["shift"], out_type, a["rounding"], a["overflow"], a["lo"], a["hi"])


def conv2d(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    x = _pad_nchw(xs[0].astype(np.int64), a["padding"], 0)
    w = a["weight"].astype(np.int64)
    o, ipg, kh, kw = w.shape
    g = a["groups"]
    win = _windows(x, kh, kw, a["strides"], a["dilation"])  # N, C, OH, OW, kh, kw
    n, _, oh, ow = win.shape[:4]
    acc = np.empty((n, o, oh, ow), dtype=np.int64)
    opg = o // g
    for gi in range(g):
        wg = w[gi * opg : (gi + 1) * opg]  # [opg, ipg, kh, kw]
        xg = win[:, gi * ipg : (gi + 1) * ipg]  # [N, ipg, OH, OW, kh, kw]
        acc[:, gi * opg : (gi + 1) * opg] = np.einsum("nchwij,ocij->nohw", xg, wg, optimize=True)
    acc += a["bias"].astype(np.int64).reshape(1, o, 1, 1)
    shape = (1, o, 1, 1)
    m, s = np.broadcast_to(a["multiplier"], (o,)).reshape(shape), np.broadcast_to(a["shift"], (o,)).reshape(shape)
    return requantize(acc, m, s, out_type, a["rounding"], a["overflow"], a["lo"], a["hi"])


def dense(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    acc = xs[0].astype(np.int64) @ a["weight"].astype(np.int64) + a["bias"].astype(np.int64)
    return _requant(acc, a, out_type)


def _ceil_extra(size: int, k: int, s: int, d: int, before: int, after: int) -> int:
    """Extra end padding for ``ceil_mode``: out = ceil((size + pads - span) / s) + 1, less one
    when the last window would start in the end padding (ONNX / PyTorch / TVM rule)."""
    span = d * (k - 1) + 1
    total = size + before + after
    out = -(-(total - span) // s) + 1
    if (out - 1) * s >= size + before:
        out -= 1
    return max(0, (out - 1) * s + span - total)


def max_pool2d(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    top, left, bottom, right = a["padding"]
    if a.get("ceil_mode", False):
        (kh, kw), (sh, sw), (dh, dw) = a["pool_size"], a["strides"], a["dilation"]
        bottom += _ceil_extra(xs[0].shape[2], kh, sh, dh, top, bottom)
        right += _ceil_extra(xs[0].shape[3], kw, sw, dw, left, right)
    x = _pad_nchw(xs[0].astype(np.int64), (top, left, bottom, right), np.iinfo(np.int64).min)
    win = _windows(x, *a["pool_size"], a["strides"], a["dilation"])
    return win.max(axis=(-2, -1))


def avg_pool2d(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    x = _pad_nchw(xs[0].astype(np.int64), a["padding"], 0)
    win = _windows(x, *a["pool_size"], a["strides"], (1, 1))
    return _requant(win.sum(axis=(-2, -1)), a, out_type)


def global_avg_pool(node: QNode, xs, out_type) -> np.ndarray:
    keep = node.attrs.get("keepdims", True)
    return _requant(xs[0].astype(np.int64).sum(axis=(2, 3), keepdims=keep), node.attrs, out_type)


def add(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    (ma, mb), (na, nb) = a["multipliers"], a["shifts"]
    from .numerics import round_shift

    ya = round_shift(xs[0].astype(np.int64) * ma, na, a["rounding"])
    yb = round_shift(xs[1].astype(np.int64) * mb, nb, a["rounding"])
    return saturate(ya + yb, out_type, a["overflow"], a["lo"], a["hi"])


def mul(node: QNode, xs, out_type) -> np.ndarray:
    return _requant(xs[0].astype(np.int64) * xs[1].astype(np.int64), node.attrs, out_type)


def requant(node: QNode, xs, out_type) -> np.ndarray:
    return _requant(xs[0].astype(np.int64), node.attrs, out_type)


def concat(node: QNode, xs, out_type) -> np.ndarray:
    return np.concatenate([x.astype(np.int64) for x in xs], axis=node.attrs["axis"])


def clip(node: QNode, xs, out_type) -> np.ndarray:
    return np.clip(xs[0].astype(np.int64), node.attrs["lo"], node.attrs["hi"])


def lut(node: QNode, xs, out_type) -> np.ndarray:
    return node.attrs["table"][xs[0].astype(np.int64) - node.attrs["offset"]]


def reshape(node: QNode, xs, out_type) -> np.ndarray:
    return xs[0].reshape([len(xs[0]) if d == -1 else d for d in node.attrs["shape"]])


def transpose(node: QNode, xs, out_type) -> np.ndarray:
    return np.transpose(xs[0], node.attrs["axes"])


def pad(node: QNode, xs, out_type) -> np.ndarray:
    p = node.attrs["pads"]
    half = len(p) // 2
    return np.pad(xs[0], list(zip(p[:half], p[half:])), constant_values=0)


OPS: dict[str, Callable] = {
    "conv2d": conv2d, "dense": dense, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d,
    "global_avg_pool": global_avg_pool, "add": add, "mul": mul, "requant": requant,
    "concat": concat, "clip": clip, "lut": lut, "reshape": reshape, "transpose": transpose,
    "pad": pad,
}


def run(graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Execute ``graph`` on input codes; returns every tensor (inputs and node outputs) by name."""
    values: dict[str, np.ndarray] = {t.name: np.asarray(c, dtype=np.int64) for t, c in zip(graph.inputs, codes)}
    for node in graph.nodes:
        out_type = graph.tensors[node.output].qtype
        result = OPS[node.op](node, [values[i] for i in node.inputs], out_type)
        values[node.output] = np.asarray(result, dtype=np.int64)
    return values
