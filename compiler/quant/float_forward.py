"""Float execution of one ``FloatLayer`` in numpy, for the data-aware compression passes.

The compression pass fits each layer to the float model's outputs using the inputs the
*compressed* layers before it produce, so it runs the layers it has already changed (whose
weights, biases and shapes differ from the Relax module's).  One function per op, float64.
"""

from __future__ import annotations

import numpy as np

from .layers import FloatLayer
from .numerics import window_counts
from ..ops import hard_swish
from ..ops.arrays import ceil_extra, pad_nchw, windows


def _act(layer: FloatLayer, y: np.ndarray) -> np.ndarray:
    lo, hi = layer.act
    return np.clip(y, lo, hi) if (lo is not None or hi is not None) else y


def _conv2d(a, x):
    w = np.asarray(a["weight"], np.float64)
    o, ipg, kh, kw = w.shape
    g = a["groups"]
    win = windows(pad_nchw(x, a["padding"], 0.0), kh, kw, a["strides"], a["dilation"])
    n, _, oh, ow = win.shape[:4]
    y = np.empty((n, o, oh, ow))
    opg = o // g
    for gi in range(g):
        y[:, gi * opg : (gi + 1) * opg] = np.einsum("nchwij,ocij->nohw", win[:, gi * ipg : (gi + 1) * ipg],
                                                     w[gi * opg : (gi + 1) * opg], optimize=True)
    return y + np.asarray(a["bias"]).reshape(1, o, 1, 1)


def _max_pool2d(a, x):
    top, left, bottom, right = a["padding"]
    if a.get("ceil_mode", False):
        (kh, kw), (sh, sw), (dh, dw) = a["pool_size"], a["strides"], a["dilation"]
        bottom += ceil_extra(x.shape[2], kh, sh, dh, top, bottom)
        right += ceil_extra(x.shape[3], kw, sw, dw, left, right)
    y = windows(pad_nchw(x, (top, left, bottom, right), -np.inf), *a["pool_size"], a["strides"],
                 a["dilation"]).max(axis=(-2, -1))
    return y if a.get("keepdims", True) else y.reshape(y.shape[:2])


def _avg_pool2d(a, x):
    kh, kw = a["pool_size"]
    total = windows(pad_nchw(x, a["padding"], 0.0), kh, kw, a["strides"], (1, 1)).sum(axis=(-2, -1))
    if a.get("count_include_pad", True):
        return total / (kh * kw)
    return total / window_counts(x.shape[2:], (kh, kw), a["strides"], a["padding"])


def _lrn(a, x):
    sq = np.pad(x * x, [(0, 0), (a["before"], a["after"])] + [(0, 0)] * (x.ndim - 2))
    s = sum(sq[:, j:j + x.shape[1]] for j in range(a["size"]))
    return x / (a["bias"] + a["alpha"] / a["size"] * s) ** a["beta"]


def _pad(a, x):
    p = a["pads"]
    half = len(p) // 2
    return np.pad(x, list(zip(p[:half], p[half:])))


_OPS = {
    "conv2d": lambda a, xs: _conv2d(a, xs[0]),
    "dense": lambda a, xs: xs[0] @ np.asarray(a["weight"], np.float64) + np.asarray(a["bias"]),
    "max_pool2d": lambda a, xs: _max_pool2d(a, xs[0]),
    "avg_pool2d": lambda a, xs: _avg_pool2d(a, xs[0]),
    "global_avg_pool": lambda a, xs: xs[0].mean(axis=(2, 3), keepdims=a.get("keepdims", True)),
    "add": lambda a, xs: xs[0] + xs[1],
    "mul": lambda a, xs: xs[0] * xs[1],
    "lut": lambda a, xs: a["fn"](xs[0], a),
    "clip": lambda a, xs: xs[0],  # the clamp itself is the layer's act
    "reshape": lambda a, xs: xs[0].reshape([len(xs[0]) if d == -1 else d for d in a["shape"]]),
    "transpose": lambda a, xs: np.transpose(xs[0], a["axes"]),
    "pad": lambda a, xs: _pad(a, xs[0]),
    "concat": lambda a, xs: np.concatenate(xs, axis=a["axis"]),
    "lrn": lambda a, xs: _lrn(a, xs[0]),
    "hard_swish": lambda a, xs: hard_swish.float_forward(xs[0]),
}


def run_layer(layer: FloatLayer, xs: list[np.ndarray]) -> np.ndarray:
    """The layer's float output (activation clamp included) for inputs ``xs``."""
    if layer.op not in _OPS:
        raise NotImplementedError(f"no float form for {layer.op}")
    return _act(layer, _OPS[layer.op](layer.attrs, [np.asarray(x, np.float64) for x in xs]))
