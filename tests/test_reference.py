"""The numpy reference's vectorised MACs and fixed-batch chunking, against plain loops.

``reference.conv2d`` / ``dense`` compute im2col products in float64 where that is exact and in
int64 otherwise; the oracle here is the definition itself: a Python loop over every output
that sums ``x * w`` in Python integers (unbounded, so it cannot overflow or round).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nnforge.compiler import reference
from nnforge.compiler.ops.arrays import F64_EXACT
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode, QTensor

WIDE = QType(64, True)


def _acc_node(op: str, weight: np.ndarray, bias: np.ndarray, **attrs) -> QNode:
    """A node whose requantization is the identity (M = 1, n = 0, 64-bit SAT): output = acc."""
    channels = weight.shape[0] if op == "conv2d" else weight.shape[1]
    return QNode(op, "n", ["x"], "y", dict(weight=weight, bias=bias, multiplier=np.ones(channels, np.int64),
                                           shift=np.zeros(channels, np.int64), lo=None, hi=None, rounding="RND",
                                           overflow="SAT", acc_dtype="int64", **attrs))


def _loop_conv(x, w, b, strides, padding, dilation, groups) -> np.ndarray:
    n, c, h, wd = x.shape
    o, ipg, kh, kw = w.shape
    top, left, bottom, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))).tolist()
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + left + right - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    wl, opg = w.tolist(), o // groups
    out = np.zeros((n, o, oh, ow), dtype=object)
    for s, oc, y, xx in itertools.product(range(n), range(o), range(oh), range(ow)):
        g = oc // opg
        acc = int(b[oc])
        for ci, i, j in itertools.product(range(ipg), range(kh), range(kw)):
            acc += xp[s][g * ipg + ci][y * strides[0] + i * dilation[0]][xx * strides[1] + j * dilation[1]] * wl[oc][ci][i][j]
        out[s, oc, y, xx] = acc
    return out


CONV_CASES = [  # (n, c, h, w, o, groups, k, strides, padding, dilation)
    (2, 3, 7, 6, 4, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, 4, 9, 9, 6, 2, 3, (2, 2), (0, 1, 2, 1), (1, 1)),
    (2, 6, 8, 7, 6, 6, 3, (1, 2), (1, 1, 1, 1), (2, 1)),  # depthwise, dilated
    (1, 8, 5, 5, 8, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("big", [False, True])  # big: the bound passes 2^53, the int64 path
def test_conv2d_equals_the_definition(case, big, rng):
    n, c, h, wd, o, g, k, strides, padding, dilation = case
    xhi, whi = (2**30, 2**22) if big else (128, 128)  # big: |acc| < 54 * 2^52, inside int64
    x = rng.integers(-xhi, xhi, size=(n, c, h, wd), dtype=np.int64)
    w = rng.integers(-whi, whi, size=(o, c // g, k, k), dtype=np.int64)
    b = rng.integers(-1000, 1000, size=o, dtype=np.int64)
    bound = int(np.abs(x).max()) * int(np.abs(w).reshape(o, -1).sum(1).max())
    assert (bound >= F64_EXACT) == big
    node = _acc_node("conv2d", w, b, strides=strides, padding=padding, dilation=dilation, groups=g)
    got = reference.OPS["conv2d"](node, [x], WIDE)
    want = _loop_conv(x, w, b, strides, padding, dilation, g)
    assert got.dtype == np.int64 and got.shape == want.shape
    assert (got.astype(object) == want).all()


# (|x| bound, |w| bound, K): one float32 product; float32 chunks of 518 (255 * 127 * 518 < 2^24);
# float64 (chunks of 2^24 / 2^30 would be too short); int64 (the bound passes 2^53)
@pytest.mark.parametrize("xhi, whi, k", [(128, 128, 37), (256, 128, 2000), (2**20, 2**10, 300), (2**26, 2**26, 37)])
def test_dense_equals_the_definition(xhi, whi, k, rng):
    x = rng.integers(-xhi, xhi, size=(5, k), dtype=np.int64)
    w = rng.integers(-whi, whi, size=(k, 11), dtype=np.int64)
    b = rng.integers(-xhi, xhi, size=11, dtype=np.int64)
    got = reference.OPS["dense"](_acc_node("dense", w, b), [x], WIDE)
    want = [[sum(int(x[i, j]) * int(w[j, c]) for j in range(k)) + int(b[c]) for c in range(11)] for i in range(5)]
    assert got.tolist() == want


def test_float64_products_of_exact_integers_near_the_bound():
    """Sums just below 2^53 stay exact on the float64 path; one more ulp would not be."""
    x = np.full((1, 2), 2**26, np.int64)
    w = np.full((2, 1), 2**26 - 1, np.int64)  # bound 2 * 2^26 * (2^26 - 1) < 2^53
    assert reference.OPS["dense"](_acc_node("dense", w, np.zeros(1, np.int64)), [x], WIDE).item() == 2 * 2**26 * (2**26 - 1)


def _fixed_batch_graph(batch) -> QGraph:
    """conv -> reshape to [batch, 12], the shape an ONNX model exported at batch 1 carries."""
    t8 = QType(8, True)
    w = np.arange(-6, 6, dtype=np.int64).reshape(3, 1, 2, 2)
    conv = QNode("conv2d", "c", ["x"], "c", dict(weight=w, bias=np.array([1, -2, 3]), multiplier=np.array([3, 5, 7]),
                                                 shift=np.array([2, 3, 4]), lo=None, hi=None, rounding="RND",
                                                 overflow="SAT", strides=(1, 1), padding=(0, 0, 0, 0),
                                                 dilation=(1, 1), groups=1, acc_dtype="int64"))
    flat = QNode("reshape", "r", ["c"], "r", dict(shape=(batch if isinstance(batch, int) else -1, 12)))
    tensors = {"x": QTensor("x", (batch, 1, 3, 3), t8, 1.0), "c": QTensor("c", (batch, 3, 2, 2), t8, 1.0),
               "r": QTensor("r", (batch, 12), t8, 1.0)}
    return QGraph([tensors["x"]], tensors, [conv, flat], ["r"])


def test_a_fixed_batch_graph_runs_any_multiple_of_its_batch(rng):
    x = rng.integers(-128, 128, size=(4, 1, 3, 3), dtype=np.int64)
    fixed = reference.run(_fixed_batch_graph(1), [x])
    symbolic = reference.run(_fixed_batch_graph("batch"), [x])  # the same graph with a free batch
    one_by_one = [reference.run(_fixed_batch_graph(1), [x[i:i + 1]]) for i in range(4)]
    for name in ("c", "r"):
        assert fixed[name].shape[0] == 4
        np.testing.assert_array_equal(fixed[name], symbolic[name])
        np.testing.assert_array_equal(fixed[name], np.concatenate([o[name] for o in one_by_one]))
