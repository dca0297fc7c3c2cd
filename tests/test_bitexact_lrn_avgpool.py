"""Hypothesis properties for LRN and average pools that exclude their padding: the TVM integer
module (the model of record, and the CPU simulation form ``lower(fast=True)`` through
``cpu_schedule``) equals the numpy reference on every traced tensor.

Built on ``tests/test_bitexact.py``'s machinery: random types (2 to 16 bits, signed or not),
shapes, windows, rounding, overflow and clamps; five input sets per case (uniform, extremes,
ramps over every code, constants at lo and at hi).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

import test_bitexact as tb  # noqa: E402  (tests/ is on sys.path under pytest)
from nnforge.compiler.lower import cpu_schedule
from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.quant.numerics import QType, lrn_table, quantize_multiplier, window_counts
from nnforge.compiler.qgraph import QNode

# one example is two TVM builds (default and fast form)
tb.EXAMPLES.update({"avg_pool2d_excl_pad": 8, "lrn": 8})


def _fast_vm(graph):
    return relax.VirtualMachine(cpu_schedule.build(lower(graph, fast=True)), tvm.cpu())


@st.composite
def avg_excl_case(draw, prop="avg_pool2d_excl_pad"):
    """An average pool whose (M, n) is one per output position: s_x / (s_y * taps inside)."""
    f = tb.FEATURES[prop]
    xt, ot = draw(tb.QTYPES), draw(tb.QTYPES)
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(2, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pad = (draw(st.integers(1, kh - 1)),) + tuple(draw(st.integers(0, k - 1)) for k in (kw, kh, kw))
    h = draw(st.integers(max(1, kh - pad[0] - pad[2]), 6))
    w = draw(st.integers(max(1, kw - pad[1] - pad[3]), 6))
    counts = window_counts((h, w), (kh, kw), (sh, sw), pad)
    rng = np.random.default_rng(draw(tb.SEEDS))
    u = draw(st.floats(-2.0, 1.0))
    ratio = tb.amax(ot) / tb.amax(xt) * 2.0**u / counts  # calibrated-ish: a window mean onto the output type
    m, sft = quantize_multiplier(ratio, "float")
    attrs = dict(pool_size=(kh, kw), strides=(sh, sw), padding=pad, multiplier=m, shift=sft,
                 **draw(tb.tail_params(ot, prop)))
    f["per_position"] += int(np.unique(counts).size > 1)
    f["pad_asym"] += int(pad[0] != pad[2] or pad[1] != pad[3])
    f["x_unsigned"] += int(not xt.signed)
    graph = tb.make_graph([("x", (n, c, h, w), xt)], [(QNode("avg_pool2d", "avg", ["x"], "avg", attrs), ot)],
                          draw(st.booleans()))
    return graph, rng


@st.composite
def lrn_case(draw, prop="lrn"):
    """An LRN with a table from ``lrn_table``: random window, bias, beta and alpha (the window's
    largest sum of squares moving the denominator by 1e-3 to 30)."""
    f = tb.FEATURES[prop]
    xt, ot = draw(tb.QTYPES), draw(tb.QTYPES)
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 7))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    before, after = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    bound = (before + after + 1) * tb.amax(xt) ** 2
    coeff = 10.0 ** draw(st.floats(-3.0, 1.5)) / bound
    bias, beta = draw(st.floats(0.5, 2.0)), draw(st.sampled_from([0.5, 0.75, 1.0]))
    ratio = tb.amax(ot) / tb.amax(xt) * 2.0 ** draw(st.floats(-1.0, 3.0))
    table, k, sft = lrn_table(bound, ratio, bias, coeff, beta)
    attrs = dict(before=before, after=after, table=table, index_shift=k, shift=sft, **draw(tb.tail_params(ot, prop)))
    f["index_shift"] += int(k > 0)
    f["x_signed"] += int(xt.signed)
    f["neg_shift"] += int(sft < 0)
    graph = tb.make_graph([("x", (n, c, h, w), xt)], [(QNode("lrn", "lrn", ["x"], "lrn", attrs), ot)],
                          draw(st.booleans()))
    return graph, np.random.default_rng(draw(tb.SEEDS))


@pytest.mark.slow
@pytest.mark.parametrize("prop,strategy,features", [
    ("avg_pool2d_excl_pad", avg_excl_case, {"per_position": 6, "pad_asym": 1, "x_unsigned": 1, "WRAP": 1}),
    ("lrn", lrn_case, {"index_shift": 4, "x_signed": 2, "RND": 1, "TRN": 1, "WRAP": 1}),
])
def test_default_and_fast_forms_bitexact(prop, strategy, features):
    @settings(max_examples=tb.EXAMPLES[prop], **tb.SETTINGS)
    @given(strategy())
    def run(case):
        graph, rng = case
        tb.assert_bitexact(graph, rng, prop=prop)  # lower(graph), tvm.compile
        tb.assert_bitexact(graph, rng, vm=_fast_vm(graph))  # lower(graph, fast=True), cpu_schedule

    tb.check_property(prop, run, features)
