"""The CPU simulation form of the integer module (``lower(graph, fast=True)``) is bit-exact.

Oracles: ``numerics.requantize`` (the numpy definition) for the int32 requantization plans,
and the numpy reference interpreter for built modules.  The fast form is what
``QuantizedModel.predict`` / ``simulate`` run; the default form (the model of record) is
checked by tests/test_bitexact.py.

* the int32 plans (``exact_narrowing.int32_requant``) against ``requantize`` on every
  accumulator value of small ranges and on the values around each plan's clamp bounds,
  evaluated in numpy int32 (a bound that is too loose wraps and fails);
* float32 MACs at the edge: a conv whose bound is ``2^24 - 1`` with every input at its
  extreme (exact), and the decision just past it;
* the hypothesis properties of tests/test_bitexact.py (conv2d, dense, int64 accumulators,
  avg/global pooling, requant), built in the fast form with ``cpu_schedule.build`` (slow);
* the digits CNN at w8a8 and w4a8 over its test set.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from tvm import relax

from nnforge.compiler.lower import cpu_schedule, exact_narrowing
from nnforge.compiler import reference
from nnforge.compiler.lower import lower_relax as lower_relax_module
from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.quant.numerics import QType, quantize_multiplier, requantize
from nnforge.compiler.qgraph import QNode

import test_bitexact as tb  # noqa: E402  (tests/ is on sys.path under pytest)


def fast_vm(graph):
    return relax.VirtualMachine(cpu_schedule.build(lower(graph, fast=True)), tvm.cpu())


# -- the int32 requantization plans, in numpy ----------------------------------------------------

def _plan_cases(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        out = QType(int(rng.integers(2, 17)), bool(rng.integers(0, 2)))
        bound = int(2 ** rng.uniform(2, 34)) if rng.random() < 0.9 else int(rng.integers(0, 40))
        ratio = 2.0 ** rng.uniform(-30, 2, int(rng.integers(1, 4)))
        mode = "float" if rng.random() < 0.8 else "pow2"
        if mode == "pow2":
            ratio = 2.0 ** np.round(np.log2(ratio))
        m, n = quantize_multiplier(ratio, mode)
        rounding = "RND" if rng.random() < 0.7 else "TRN"
        lo = int(rng.integers(out.lo, out.hi)) if rng.random() < 0.3 else None
        hi = int(rng.integers(out.lo if lo is None else lo + 1, out.hi + 1)) if rng.random() < 0.3 else None
        yield rng, out, bound, m, n, rounding, lo, hi


def test_int32_requant_plans_match_requantize():
    seen = Counter()
    for rng, out, bound, m, n, rounding, lo, hi in _plan_cases(0, 2500):
        plan = exact_narrowing.int32_requant(m, n, rounding, "SAT", lo, hi, out, bound)
        if plan is None:
            seen["none"] += 1
            continue
        seen["split" if plan.k else "k0"] += 1
        seen["clamp"] += plan.clamp_acc
        edges = [np.clip(v + d, -bound, bound) for v in (plan.xl, plan.xh) for d in range(-3, 4)]
        x = np.concatenate([np.arange(-min(bound, 2000), min(bound, 2000) + 1), rng.integers(-bound, bound + 1, 2000),
                            [-bound, 0, bound], *[np.ravel(e) for e in edges]]).astype(np.int64)
        x = np.repeat(x[:, None], len(m), axis=1)
        want = requantize(x, m, n, out, rounding, "SAT", lo, hi)
        np.testing.assert_array_equal(exact_narrowing.requant_int32_numpy(x, plan), want,
                                      err_msg=f"M={m} n={n} bound={bound} {rounding} lo={lo} hi={hi} {out}")
    assert seen["k0"] > 300 and seen["split"] > 100 and seen["clamp"] > 300 and seen["none"] > 100, seen


@pytest.mark.parametrize("why, kwargs", [
    ("WRAP", dict(overflow="WRAP")),
    ("left shift", dict(shift=np.array([-2]))),
    ("zero ratio", dict(multiplier=np.array([0]))),
    ("lo == hi", dict(lo=3, hi=3)),
])
def test_int32_requant_declines(why, kwargs):
    args = dict(multiplier=np.array([20000]), shift=np.array([20]), rounding="RND", overflow="SAT",
                lo=None, hi=None, out=QType(8, True), bound=10**6) | kwargs
    assert exact_narrowing.int32_requant(**args) is None, why


def test_float32_macs_boundary():
    assert exact_narrowing.float32_macs(np.array([2**24 - 1, 5]))
    assert not exact_narrowing.float32_macs(np.array([2**24]))


# -- built modules ---------------------------------------------------------------------------

def _extreme_conv(bound_target: int):
    """A 16-bit-input conv whose per-channel bound is ``bound_target`` and whose all-max input
    reaches it (bias included)."""
    xt = QType(16, True)
    c, k = 2, 3
    w = np.full((2, c, k, k), 28, np.int64)
    xmax = 2**15  # |lo| of a signed 16-bit code
    bias = bound_target - xmax * int(w[0].sum())  # channel 1 (bias -b) reaches -bound at x = lo
    assert 0 <= bias < 2**24
    m, n = quantize_multiplier(np.full(2, 2.0**-20), "float")
    attrs = dict(weight=w, bias=np.array([bias, -bias]), strides=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                 groups=1, multiplier=m, shift=n, lo=None, hi=None, rounding="RND", overflow="SAT",
                 acc_dtype="int32")
    graph = tb.make_graph([("x", (2, c, k, k), xt)], [(QNode("conv2d", "conv", ["x"], "conv", attrs), QType(8, True))])
    x = np.stack([np.full((c, k, k), xt.lo), np.full((c, k, k), xt.hi)]).astype(np.int16)
    return graph, x


@pytest.mark.parametrize("bound, dtype", [(2**24 - 1, "float32"), (2**24 + 2**20, "int32")])
def test_float32_macs_at_the_exactness_limit(bound, dtype):
    graph, x = _extreme_conv(bound)
    assert ("float32" in lower(graph, fast=True).script()) == (dtype == "float32")
    got = fast_vm(graph)["main"](tvm.runtime.tensor(x)).numpy()
    want = reference.run(graph, [x])["conv"]
    a = graph.nodes[0].attrs  # kernel = the whole input: one output per channel
    acc = np.abs(np.einsum("nchw,ochw->no", x.astype(np.int64), a.weight) + a.bias).max()
    assert acc == bound  # the accumulator really reaches the bound
    np.testing.assert_array_equal(got.astype(np.int64), want)


def test_default_form_keeps_the_integer_chain():
    graph, _ = _extreme_conv(2**24 - 1)
    text = lower(graph).script()
    assert "float32" not in text and 'dtype="int64"' in text


# -- the bit-exactness properties, fast form -----------------------------------------------------

PROPS = {  # strategy, its arguments, examples, minimum int32 tails (main + trace count separately)
    "conv2d": (tb.conv2d_case, {}, 30, 2),
    "dense": (tb.dense_case, {}, 16, 2),
    "int64_acc": (tb.conv2d_case, dict(prop="int64_acc", force_int64=True), 6, 0),  # 16-bit: int64 MACs
    "avg_pool2d": (tb.pool_case, dict(op="avg_pool2d", prop="pool[avg_pool2d]"), 8, 2),
    "global_avg_pool": (tb.gap_case, {}, 8, 2),
    "requant": (tb.elementwise_case, dict(op="requant", prop="elementwise[requant]"), 10, 2),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROPS))
def test_fast_form_bitexact(name, monkeypatch):
    strategy, kwargs, examples, fast_tails = PROPS[name]
    used = Counter()
    plan_of = exact_narrowing.int32_requant

    def counting_plan(*args, **kw):
        plan = plan_of(*args, **kw)
        used["int64" if plan is None else ("split" if plan.k else "int32")] += 1
        return plan

    monkeypatch.setattr(lower_relax_module.narrow, "int32_requant", counting_plan)
    monkeypatch.setattr(tb, "build", fast_vm)

    @settings(max_examples=examples, **tb.SETTINGS)
    @given(strategy(**kwargs))
    def run(case):
        tb.assert_bitexact(*case)

    run()
    # the strategies favour edge cases (WRAP, left shifts, zero ratios) that keep the int64 tail
    assert used["int32"] + used["split"] >= fast_tails and used["int64"] >= 1, used


@pytest.mark.parametrize("config", ["w8a8", "w4a8"])
def test_digits_cnn_fast_form_matches_reference(config):
    import nnforge
    from nnforge.quantized import quantize
    from conftest import EXAMPLES

    model = nnforge.load(str(EXAMPLES / "digits_cnn.onnx"))
    q = quantize(model, [np.load(EXAMPLES / "digits_calib.npz")["x"].astype(np.float32)], config)
    x = np.load(EXAMPLES / "digits_test.npz")["x"].astype(np.float32)[:512]
    codes = q.quantize_inputs([x])
    text = lower(q.graph, fast=True).script()
    assert "float32" in text and "int64" not in text  # every layer took the fast path
    ref = q.reference(codes)
    got = q.trace(codes)
    for name, value in got.items():
        np.testing.assert_array_equal(value.astype(np.int64), ref[name], err_msg=name)
