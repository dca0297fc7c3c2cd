"""Magnitude pruning: which weights (or whole output channels) become exactly zero.

``magnitude_mask`` keeps the largest weights of one layer; ``channel_keep`` keeps the output
channels with the largest L2 norms; ``remove_channels`` physically removes pruned output
channels from a producer layer and the matching input channels from its single consumer,
through per-channel pass-through layers (pools, pads, clamps, lookup tables) and a flatten
into a dense layer.  Where channels cannot be removed safely it says why, and the caller
zeroes them instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..ops import CHANNELWISE  # ops that act on each channel separately (the op table's flag)
from ..quant.layers import FloatLayer


def output_axis(layer: FloatLayer) -> int:
    """The output-channel axis of a weighted layer's weight: conv2d [O, I/g, kh, kw], dense [K, N]."""
    return 0 if layer.op == "conv2d" else 1


def prune_count(n: int, sparsity: float) -> int:
    """How many of ``n`` entries a sparsity prunes: round half up, never all of them."""
    return min(int(np.floor(sparsity * n + 0.5)), n - 1) if n else 0


def magnitude_mask(w: np.ndarray, sparsity: float | None = None, quality: float | None = None) -> np.ndarray:
    """The weights kept (True): all but the ``sparsity`` fraction of smallest magnitudes, or
    those with ``|w| >= quality * std(w)``.  Ties at the cut are broken by position, so the
    count is exact."""
    a = np.abs(np.asarray(w, np.float64)).ravel()
    keep = np.ones(a.size, bool)
    if quality is not None:
        keep = a >= quality * float(np.std(w))
    elif sparsity:
        keep[np.argsort(a, kind="stable")[: prune_count(a.size, sparsity)]] = False
    return keep.reshape(np.shape(w))


def channel_keep(w: np.ndarray, axis: int, sparsity: float | None = None,
                 quality: float | None = None) -> np.ndarray:
    """Sorted indices of the output channels kept: by L2 norm (``sparsity``), or those whose
    RMS is at least ``quality * std(w)``.  At least one channel is always kept."""
    rows = np.moveaxis(np.asarray(w, np.float64), axis, 0).reshape(w.shape[axis], -1)
    norms = np.sqrt((rows * rows).sum(axis=1))
    c = len(norms)
    if quality is not None:
        keep = np.flatnonzero(norms / np.sqrt(rows.shape[1]) >= quality * float(np.std(w)))
        return keep if keep.size else np.array([int(np.argmax(norms))])
    drop = np.argsort(norms, kind="stable")[: prune_count(c, sparsity or 0.0)]
    return np.setdiff1d(np.arange(c), drop)


def _users(layers: list[FloatLayer], var) -> list[int]:
    return [i for i, l in enumerate(layers) if any(v.same_as(var) for v in l.inputs)]


def channel_chain(layers: list[FloatLayer], index: int, output_var) -> tuple[list[int], int] | str:
    """The pass-through layers after ``layers[index]`` and the consumer whose input channels
    follow its output channels; or the reason they cannot be removed."""
    chain: list[int] = []
    cur, flat = layers[index], False
    while True:
        if cur.output.same_as(output_var):
            return f"{'its output' if cur is layers[index] else f'the output of {cur.name!r}'} is the model's output"
        users = _users(layers, cur.output)
        if len(users) != 1:
            return f"its output feeds {len(users)} layers (only a single consumer is handled)"
        u = layers[users[0]]
        if u.op == "dense" or (u.op == "conv2d" and u.attrs["groups"] == 1 and not flat):
            return chain, users[0]
        if u.op in CHANNELWISE and not flat:  # a removed channel passes through unchanged
            pass
        elif u.op == "pad" and not flat and u.attrs["pads"][1] == 0 and u.attrs["pads"][len(u.attrs["pads"]) // 2 + 1] == 0:
            pass
        elif u.op == "reshape" and not flat and len(u.attrs["shape"]) == 2 and cur.op != "dense":
            flat = True
        else:
            return f"it feeds {u.op} layer {u.name!r}"
        chain.append(users[0])
        cur = u


def remove_channels(layers: list[FloatLayer], index: int, keep: np.ndarray, output_var) -> list[FloatLayer] | str:
    """A copy of ``layers`` with the output channels of ``layers[index]`` outside ``keep``
    removed, and the consumer's matching inputs; or the reason that is not safe."""
    found = channel_chain(layers, index, output_var)
    if isinstance(found, str):
        return found
    chain, consumer = found
    new = list(layers)
    p = layers[index]
    axis = output_axis(p)
    c = p.attrs["weight"].shape[axis]
    pa = dict(p.attrs, weight=np.take(p.attrs["weight"], keep, axis=axis), bias=np.asarray(p.attrs["bias"])[keep],
              kept_channels=keep)
    new[index] = dataclasses.replace(p, attrs=pa)
    kept = keep
    for i in chain:
        layer = layers[i]
        attrs = dict(layer.attrs)
        if layer.op == "reshape":
            width = attrs["shape"][1]
            hw = width // c
            kept = (kept[:, None] * hw + np.arange(hw)).ravel()
            attrs["shape"] = (attrs["shape"][0], int(kept.size))
        attrs["kept_channels"] = kept
        new[i] = dataclasses.replace(layer, attrs=attrs)
    u = layers[consumer]
    w = u.attrs["weight"]
    w = w[:, kept] if u.op == "conv2d" else w[kept, :]
    prev = u.attrs.get("kept_inputs")
    new[consumer] = dataclasses.replace(u, attrs=dict(u.attrs, weight=w,
                                                      kept_inputs=kept if prev is None else prev[kept]))
    return new
