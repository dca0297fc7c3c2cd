"""The numpy reference interpreter for quantized graphs: the specification in code.

Obviously right: one function per op, integer arithmetic throughout, with rounding,
saturation and requantization taken from ``numerics``.  ``run`` returns every traced tensor,
so other executors are compared layer by layer.

Two things keep it fast enough for golden vectors of full-size models, neither changes a code:

* **MACs** (``_int_matmul``): conv2d is an im2col matrix product and dense a plain one.  The
  product runs in float64 (BLAS) when ``max|x| * max_o sum_k |w_ok| + max|b| < 2^53``: then every
  product and every partial sum, in any order and with or without FMA, is an integer of
  magnitude below 2^53, which float64 holds exactly, so the result is the int64 sum.  Otherwise
  it runs in int64.
* **Fixed batch**: a graph whose inputs have a fixed batch B (an ONNX model exported at batch 1)
  runs B samples at a time; its reshapes name B.  ``run`` cuts more samples into such chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .quant.numerics import requantize, saturate
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


F64_EXACT = 1 << 53  # every integer of magnitude < 2^53 is a float64


def _int_matmul(x: np.ndarray, w: np.ndarray, bias_bound: int = 0) -> np.ndarray:
    """``x @ w`` of integer codes (``[..., K] @ [..., K, N]``) as int64, exactly (module doc)."""
    bound = (int(np.abs(x).max(initial=0)) * int(np.abs(w).sum(axis=-2).max(initial=0)) + bias_bound)
    if bound < F64_EXACT:
        return np.matmul(x.astype(np.float64), w.astype(np.float64)).astype(np.int64)
    return np.matmul(x.astype(np.int64), w.astype(np.int64))


def conv2d(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    x = _pad_nchw(xs[0].astype(np.int64), a["padding"], 0)
    w = a["weight"].astype(np.int64)
    o, ipg, kh, kw = w.shape
    g = a["groups"]
    win = _windows(x, kh, kw, a["strides"], a["dilation"])  # N, C, OH, OW, kh, kw
    n, _, oh, ow = win.shape[:4]
    opg = o // g
    # im2col per group: rows (n, oh, ow), columns (c, i, j); weights [g, c*i*j, opg]
    cols = win.reshape(n, g, ipg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, -1)
    wg = w.reshape(g, opg, ipg * kh * kw).transpose(0, 2, 1)
    bias = a["bias"].astype(np.int64)
    acc = _int_matmul(cols, wg, int(np.abs(bias).max(initial=0)))  # [g, n*oh*ow, opg]
    acc = acc.reshape(g, n, oh, ow, opg).transpose(1, 0, 4, 2, 3).reshape(n, o, oh, ow)
    acc += bias.reshape(1, o, 1, 1)
    shape = (1, o, 1, 1)
    m, s = np.broadcast_to(a["multiplier"], (o,)).reshape(shape), np.broadcast_to(a["shift"], (o,)).reshape(shape)
    return requantize(acc, m, s, out_type, a["rounding"], a["overflow"], a["lo"], a["hi"])


def dense(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    bias = a["bias"].astype(np.int64)
    acc = _int_matmul(xs[0], a["weight"], int(np.abs(bias).max(initial=0))) + bias
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
    """The window sum (padding as zeros) times ``M >> n``: one (M, n), or one per output position
    ([OH, OW]: an average that excludes the padding divides border windows by fewer taps)."""
    a = node.attrs
    x = _pad_nchw(xs[0].astype(np.int64), a["padding"], 0)
    win = _windows(x, *a["pool_size"], a["strides"], (1, 1))
    m, n = np.asarray(a["multiplier"]), np.asarray(a["shift"])
    if m.ndim == 2:
        m, n = m.reshape((1, 1) + m.shape), n.reshape((1, 1) + n.shape)
    return requantize(win.sum(axis=(-2, -1)), m, n, out_type, a["rounding"], a["overflow"], a["lo"], a["hi"])


def lrn(node: QNode, xs, out_type) -> np.ndarray:
    """Local response normalization: ``S`` = the sum of squared codes over the channels
    ``c - before .. c + after`` (those that exist), then ``saturate(round_shift(q * F[S >> k], n))``."""
    a = node.attrs
    x = xs[0].astype(np.int64)
    sq = np.pad(x * x, [(0, 0), (a["before"], a["after"])] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    s = sum(sq[:, j:j + c] for j in range(a["before"] + a["after"] + 1))
    return requantize(x * a["table"][s >> a["index_shift"]], 1, a["shift"], out_type, a["rounding"],
                      a["overflow"], a["lo"], a["hi"])


def global_avg_pool(node: QNode, xs, out_type) -> np.ndarray:
    keep = node.attrs.get("keepdims", True)
    return _requant(xs[0].astype(np.int64).sum(axis=(2, 3), keepdims=keep), node.attrs, out_type)


def add(node: QNode, xs, out_type) -> np.ndarray:
    a = node.attrs
    (ma, mb), (na, nb) = a["multipliers"], a["shifts"]
    from .quant.numerics import round_shift

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
    "pad": pad, "lrn": lrn,
}


def run(graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Execute ``graph`` on input codes; returns every tensor (inputs and node outputs) by name.

    A graph with a fixed batch B runs B samples at a time (any multiple of B may be given)."""
    codes = [np.asarray(c, dtype=np.int64) for c in codes]
    fixed = graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None
    n = len(codes[0]) if codes and codes[0].ndim else 0
    if isinstance(fixed, (int, np.integer)) and fixed > 0 and n != fixed and n % fixed == 0:
        chunks = [_run(graph, [c[s:s + fixed] for c in codes]) for s in range(0, n, int(fixed))]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return _run(graph, codes)


def _run(graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {t.name: c for t, c in zip(graph.inputs, codes)}
    for node in graph.nodes:
        out_type = graph.tensors[node.output].qtype
        result = OPS[node.op](node, [values[i] for i in node.inputs], out_type)
        values[node.output] = np.asarray(result, dtype=np.int64)
    return values
