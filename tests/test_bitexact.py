"""Bit-exactness of the integer Relax module (TVM llvm build) against the numpy reference.

Property-based (hypothesis): random single layers of every op in ``qgraph.py`` and small
multi-layer chains, with random shapes, bit widths (2..16, signed and unsigned), rounding,
overflow, per-tensor / per-channel multipliers in both scale modes (negative shifts and zero
ratios included), fused clamps and int32 / int64 accumulators.  Every traced tensor (the
``trace`` function's outputs, in ``QGraph.node_outputs()`` order) must equal the reference
exactly, for five input sets per graph: uniform codes, codes at the type's extremes, ramps
over every code (exhaustive for requant / clip / lut, whose inputs hold every code), and
constant tensors at ``lo`` / ``hi``.

The oracle is ``compiler/reference.py``; docs/numerics.md decides disputes.  Graphs are
built directly from ``QTensor`` / ``QNode`` / ``QGraph``.  Structure (shapes, types, modes)
is drawn by hypothesis; bulk numbers (weight codes, per-channel ratios, inputs, tables) come
from a numpy generator seeded by a drawn integer.  ``derandomize=True``: CI is deterministic.

Guards against checks that cannot fail:

* each test counts the cases it ran and the feature coverage it reached (int64 accumulators,
  negative shifts, zero ratios, WRAP, ...) and asserts a minimum of each;
* most compared tensors must take more than one value (not all saturated / all zero);
* ``test_comparison_detects_*``: the same comparison fails on a deliberately wrong graph.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest
import tvm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tvm import relax

from nnforge.compiler.quant import numerics
from nnforge.compiler import reference
from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.quant.numerics import (
    QType,
    accumulator_bits,
    accumulator_dtype,
    quantize_multiplier,
    requantize,
    round_shift,
    saturate,
)
from nnforge.compiler.qgraph import QGraph, QNode, QTensor

# Examples per property.  One example is one TVM build (~0.3-1 s); the module runs in
# about 2 minutes on a 2-core machine.
EXAMPLES = {
    "conv2d": 50, "dense": 24, "int64_acc": 8, "pool[max_pool2d]": 14, "pool[avg_pool2d]": 14,
    "global_avg_pool": 10, "elementwise[add]": 12, "elementwise[mul]": 8, "elementwise[requant]": 12,
    "elementwise[clip]": 5, "elementwise[lut]": 8, "shape_ops[concat]": 6, "shape_ops[reshape]": 6,
    "shape_ops[transpose]": 6, "shape_ops[pad]": 6, "chain[A]": 7, "chain[B]": 7, "chain[C]": 7,
}
SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

CASES: Counter = Counter()  # hypothesis examples run, per property
TENSORS: Counter = Counter()  # traced tensors compared (x 5 input sets), per property
UNIFORM: Counter = Counter()  # traced tensors compared on the uniform input set
INFORMATIVE: Counter = Counter()  # ... of which took more than one value there
FEATURES: dict[str, Counter] = defaultdict(Counter)  # coverage, per property

ROUNDINGS = st.sampled_from(["RND", "TRN"])
OVERFLOWS = st.sampled_from(["SAT", "WRAP"])
QTYPES = st.builds(QType, st.integers(2, 16), st.booleans())
SEEDS = st.integers(0, 2**32 - 1)
CHAIN = dict(regimes=("calibrated",), zeros=(False,))  # chains: M, n from the sample accumulator
ELEMENTWISE = dict(regimes=("calibrated", "large", "typical"))  # left shifts are the point of add / requant
PROD_LIMIT = 2**61  # |acc * M * 2^-min(n,0)| stays below this: int64 never overflows


# -- building and comparing ----------------------------------------------------------------

def amax(t: QType) -> int:
    return max(abs(t.lo), abs(t.hi))


def codes(rng, t: QType, shape, style: str = "uniform") -> np.ndarray:
    if style == "uniform":
        c = rng.integers(t.lo, t.hi + 1, size=shape)
    elif style == "extreme":
        c = rng.choice(np.array([t.lo, t.hi]), size=shape)
    elif style == "sparse":
        c = rng.integers(t.lo, t.hi + 1, size=shape) * (rng.random(shape) < 0.3)
    elif style == "onesign":
        c = rng.integers(0, t.hi + 1, size=shape) if (rng.random() < 0.5 or not t.signed) \
            else rng.integers(t.lo, 1, size=shape)
    elif style == "small":
        c = rng.integers(max(t.lo, -1), min(t.hi, 1) + 1, size=shape)
    else:
        raise ValueError(style)
    return np.asarray(c, dtype=np.int64)


WEIGHT_STYLES = st.sampled_from(["uniform", "extreme", "sparse", "onesign", "small"])


def ramp(t: QType, shape, reverse: bool = False) -> np.ndarray:
    """Every code of ``t`` in turn (lo, lo+1, ..., hi, lo, ...): exhaustive where the tensor
    holds at least 2^bits codes, and it reaches each rounding tie of a requantization."""
    size = int(np.prod(shape))
    i = np.arange(size)[::-1] if reverse else np.arange(size)
    return (t.lo + i % (t.hi - t.lo + 1)).reshape(shape).astype(t.storage)


def input_sets(graph: QGraph, rng) -> list[list[np.ndarray]]:
    """Uniform codes, codes at lo/hi, ramps over every code, and constant tensors (all lo for
    some inputs, all hi for others): extremes and constants reach the accumulator and
    saturation bounds."""
    sets = []
    for style in ("uniform", "extreme"):
        sets.append([codes(rng, t.qtype, t.concrete, style).astype(t.qtype.storage) for t in graph.inputs])
    sets.append([ramp(t.qtype, t.concrete, reverse=bool(i % 2)) for i, t in enumerate(graph.inputs)])
    sets.append([np.full(t.concrete, t.qtype.lo if i % 2 else t.qtype.hi, dtype=t.qtype.storage)
                 for i, t in enumerate(graph.inputs)])
    sets.append([np.full(t.concrete, t.qtype.hi if i % 2 else t.qtype.lo, dtype=t.qtype.storage)
                 for i, t in enumerate(graph.inputs)])
    return sets


def make_graph(inputs: list[tuple[str, tuple, QType]], nodes: list[tuple[QNode, QType]],
               symbolic_batch: bool = False) -> QGraph:
    """A QGraph; output tensor shapes are filled in from a reference run.  Each input
    QTensor gets a ``concrete`` attribute: the shape its test codes have."""
    qin = []
    for name, shape, t in inputs:
        shown = ("batch",) + tuple(shape[1:]) if symbolic_batch else tuple(shape)
        q = QTensor(name, shown, t, 1.0)
        q.concrete = tuple(shape)
        qin.append(q)
    tensors = {q.name: q for q in qin}
    for node, t in nodes:
        tensors[node.output] = QTensor(node.output, (), t, 1.0)
    graph = QGraph(qin, tensors, [n for n, _ in nodes], [nodes[-1][0].output])
    zeros = [np.zeros(q.concrete, dtype=q.qtype.storage) for q in qin]
    values = reference.run(graph, zeros)
    for node, _ in nodes:
        shape = values[node.output].shape
        tensors[node.output].shape = (("batch",) + shape[1:]) if symbolic_batch and len(shape) else shape
    return graph


def build(graph: QGraph):
    ex = tvm.compile(lower(graph), target="llvm")
    return relax.VirtualMachine(ex, tvm.cpu())


def _flatten(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out: list[np.ndarray] = []
    for item in value:
        out.extend(_flatten(item))
    return out


def assert_bitexact(graph: QGraph, rng, prop: str | None = None, ref_graph: QGraph | None = None,
                    vm=None, sets=None) -> None:
    """Build ``graph``, run ``trace`` and ``main`` on every input set and compare every
    traced tensor with the reference run of ``ref_graph`` (default: the same graph)."""
    vm = vm or build(graph)
    ref_graph = ref_graph or graph
    names = graph.node_outputs()
    for k, inputs in enumerate(sets or input_sets(graph, rng)):
        ref = reference.run(ref_graph, inputs)
        args = [tvm.runtime.tensor(np.ascontiguousarray(c)) for c in inputs]
        got = _flatten(vm["trace"](*args))
        assert len(got) == len(names), f"trace returned {len(got)} tensors for {len(names)} nodes"
        for name, g in zip(names, got):
            t = graph.tensors[name].qtype
            want = ref[name]
            assert str(g.dtype) == t.storage, f"{name}: dtype {g.dtype}, expected {t.storage} for {t}"
            assert g.shape == want.shape, f"{name}: shape {g.shape} != reference {want.shape}"
            assert want.min(initial=t.lo) >= t.lo and want.max(initial=t.hi) <= t.hi, \
                f"{name}: reference codes outside {t}: [{want.min()}, {want.max()}]"
            if not np.array_equal(g.astype(np.int64), want):
                bad = np.argwhere(g.astype(np.int64) != want)
                i = tuple(bad[0])
                raise AssertionError(
                    f"{name} ({graph.tensors[name].qtype}): {len(bad)} of {want.size} codes differ; "
                    f"first at {i}: tvm {g[i]} reference {want[i]}\n"
                    f"inputs: {[(c.shape, str(c.dtype)) for c in inputs]}\n"
                    f"nodes: {[(n.op, n.name, n.inputs, _brief(n.attrs.to_dict())) for n in graph.nodes]}")
            if prop:
                TENSORS[prop] += 1
                if k == 0:  # the uniform input set
                    UNIFORM[prop] += 1
                    INFORMATIVE[prop] += int(np.unique(want).size > 1)
        main = _flatten(vm["main"](*args))
        for name, g in zip(graph.outputs, main):
            assert np.array_equal(g.astype(np.int64), ref[name]), f"main output {name} != reference"
    if prop:
        CASES[prop] += 1


def _brief(attrs: dict) -> dict:
    return {k: (v if not isinstance(v, np.ndarray) or v.size <= 8 else f"<{v.dtype}{list(v.shape)}>")
            for k, v in attrs.items()}


def check_property(prop: str, fn, min_features: dict[str, int] | None = None, informative: float = 0.5) -> None:
    """Run the hypothesis property ``fn``, then check how many cases ran and their coverage:
    at least ``informative`` of the tensors compared on uniform inputs must take more than one
    value (ops whose "large" left-shift ratios saturate by design, and global pools whose
    averages concentrate, use a lower bar)."""
    before = CASES[prop]
    fn()
    ran = CASES[prop] - before
    feats = dict(sorted(FEATURES[prop].items()))
    print(f"\n[bitexact] {prop}: {ran} hypothesis cases, {TENSORS[prop]} traced tensors compared; on uniform "
          f"inputs {INFORMATIVE[prop]} of {UNIFORM[prop]} took >1 distinct value; coverage {feats}")
    assert ran >= 0.8 * EXAMPLES[prop], f"only {ran} cases ran"
    assert INFORMATIVE[prop] >= informative * UNIFORM[prop], "most compared tensors are constant: a weak check"
    for feat, n in (min_features or {}).items():
        assert FEATURES[prop][feat] >= n, f"coverage: {feat!r} seen {FEATURES[prop][feat]} times, want {n}"


# -- requantization parameters ---------------------------------------------------------------

@st.composite
def requant_params(draw, est_ratio: float, acc_bound: int, channels: int | None, prop: str,
                   regimes=("calibrated", "typical", "large"), zeros=(False, False, True)):
    """multiplier/shift/lo/hi/rounding/overflow for an output of typical ratio ``est_ratio``.

    ``channels``: None for a per-tensor-only op, else the channel count (per-channel allowed).
    The ratio is ``est_ratio * 2^u`` with u in [-4, 3] ("typical": most outputs in range, some
    saturate; "calibrated": u in [-1.5, 0.3]), or at least 2^15 ("large": a negative shift,
    i.e. a left shift, in both scale modes; informative under WRAP).  ``zeros`` sets some ratios to 0 (M = 0, n = 0).  Chains
    use CHAIN (typical ratios, no zeros) so that later layers still see varied codes.  Ratios
    are capped so that acc * M (and the left shift of a negative n) stays below 2^61.
    """
    mode = draw(st.sampled_from(["pow2", "float"]))
    layout = draw(st.sampled_from(["scalar", "tensor", "channel"] if channels else ["scalar"]))
    regime = draw(st.sampled_from(regimes))
    seed = draw(SEEDS)
    zeros = draw(st.sampled_from(zeros))
    rng = np.random.default_rng(seed)
    count = channels if layout in ("tensor", "channel") else 1
    u = rng.uniform(-4.0, 3.0, size=count if layout == "channel" else 1)
    if regime == "calibrated":  # est_ratio maps the observed peak onto the type's range
        u = rng.uniform(-1.5, 0.3, size=u.shape)
    elif regime == "large":
        u = u + 15.5 + 4.0 - math.log2(est_ratio)  # log2 ratio in [15.5, 22.5]
    u = np.broadcast_to(u, (count,))
    cap = PROD_LIMIT / (max(acc_bound, 1) * 2.0**15)
    if mode == "pow2":
        k = np.round(-np.log2(est_ratio) - u).astype(np.int64)
        k = np.maximum(k, int(math.ceil(-math.log2(cap))))
        ratio = np.exp2(-k.astype(np.float64))
    else:
        ratio = np.minimum(est_ratio * np.exp2(u), cap)
    if zeros and (layout == "channel" or channels is None):  # some channels, or a whole per-tensor op
        ratio = np.where(rng.random(count) < 0.5, 0.0, ratio)
        ratio[0] = 0.0
    m, n = quantize_multiplier(ratio, mode)
    if layout == "scalar":
        m, n = m.reshape(()), n.reshape(())
    f = FEATURES[prop]
    f[f"mult_{mode}"] += 1
    f[f"mult_{layout}"] += 1
    f[f"ratio_{regime}"] += 1
    f["neg_shift"] += int(np.any(n < 0))
    f[f"neg_shift_{mode}"] += int(np.any(n < 0))
    f["zero_ratio"] += int(np.any(m == 0))
    return dict(multiplier=m, shift=n)


@st.composite
def tail_params(draw, out: QType, prop: str):
    """rounding, overflow and the fused clamp (None, ReLU lo=0, ReLU6-like, random lo/hi)."""
    rounding, overflow = draw(ROUNDINGS), draw(OVERFLOWS)
    clamp = draw(st.sampled_from(["none", "relu", "relu6", "range"]))
    lo = hi = None
    if clamp == "relu":
        lo = 0
    elif clamp == "relu6":
        lo, hi = 0, draw(st.integers(1, out.hi))
    elif clamp == "range":  # a random clamp keeping at least two codes
        mid = (out.lo + out.hi) // 2
        lo, hi = draw(st.integers(out.lo, mid)), draw(st.integers(mid + 1, out.hi))
    f = FEATURES[prop]
    f[rounding] += 1
    f[overflow] += 1
    f[f"clamp_{clamp}"] += 1
    return dict(lo=lo, hi=hi, rounding=rounding, overflow=overflow)


def calibrate(op: str, attrs: dict, inputs: list[tuple[tuple, QType]], out: QType, rng) -> float:
    """amax(out) / the peak |accumulator| of ``op`` on uniform sample codes, as the quantizer
    calibrates: the ratio that maps the observed range onto the output type."""
    xs = [codes(rng, t, shape) for shape, t in inputs]
    probe = QNode(op, "probe", [], "probe", {**attrs, "multiplier": np.int64(1), "shift": np.int64(0), "lo": None,
                                              "hi": None, "rounding": "TRN", "overflow": "SAT"})
    acc = reference.OPS[op](probe, xs, QType(64, True))
    return amax(out) / max(int(np.abs(acc).max()), 1)


def acc_dtype(x: QType, w: np.ndarray, b: np.ndarray, axis: int) -> str:
    """int32 where the exact bound max|x| * sum|w| + |b| (per output) is below 2^31."""
    per_out = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).sum(axis=1)
    bound = int((amax(x) * per_out + np.abs(b)).max())
    return "int32" if bound < 2**31 else "int64"


def mac_bound(x: QType, w: np.ndarray, b: np.ndarray, axis: int) -> int:
    per_out = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).sum(axis=1)
    return int((amax(x) * per_out + np.abs(b)).max())


# -- single layers ---------------------------------------------------------------------------

@st.composite
def conv2d_case(draw, prop="conv2d", force_int64=False):
    f = FEATURES[prop]
    xt = QType(16, draw(st.booleans())) if force_int64 else draw(QTYPES)
    wt = QType(16, True) if force_int64 else draw(QTYPES)
    ot = draw(QTYPES)
    n = draw(st.integers(1, 2))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        c, g = draw(st.integers(1, 4)), 1
        o = draw(st.integers(1, 5))
    elif kind == "grouped":
        g = draw(st.integers(2, 3))
        c = g * draw(st.integers(1, 2))
        o = g * draw(st.integers(1, 2))
    else:
        c = g = draw(st.integers(1, 4))
        o = c * draw(st.integers(1, 2))  # channel multiplier 1 or 2
    if force_int64:
        c, g, o = draw(st.integers(8, 16)), 1, draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if draw(st.booleans()):
        p = draw(st.integers(0, 2))
        pad = (p, p, p, p)
    else:
        pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pad[0] - pad[2]), 7))
    w_ = draw(st.integers(max(1, dw * (kw - 1) + 1 - pad[1] - pad[3]), 7))
    style = "extreme" if force_int64 else draw(WEIGHT_STYLES)
    rng = np.random.default_rng(draw(SEEDS))
    weight = codes(rng, wt, (o, c // g, kh, kw), style)
    k = (c // g) * kh * kw
    bmax = amax(xt) * amax(wt) * min(k, 4)
    bias = rng.integers(-bmax, bmax + 1, size=o) if draw(st.booleans()) else np.zeros(o, np.int64)
    acc = acc_dtype(xt, weight, bias, 0)
    if force_int64:
        assume(acc == "int64")
    bound = mac_bound(xt, weight, bias, 0)
    attrs = dict(weight=weight, bias=bias, strides=(sh, sw), padding=pad, dilation=(dh, dw), groups=g, acc_dtype=acc)
    est = calibrate("conv2d", attrs, [((n, c, h, w_), xt)], ot, rng)
    attrs.update(**draw(requant_params(est, bound, o, prop)), **draw(tail_params(ot, prop)))
    f[f"acc_{acc}"] += 1
    f[f"groups_{kind}"] += 1
    f["kernel_Nx1_1xN"] += int(kh != kw)
    f["stride2"] += int(sh == 2 or sw == 2)
    f["dilation2"] += int(dh == 2 or dw == 2)
    f["pad_asym"] += int(pad[0] != pad[2] or pad[1] != pad[3])
    f["x_unsigned"] += int(not xt.signed)
    f["w_unsigned"] += int(not wt.signed)
    f["bits16"] += int(16 in (xt.bits, wt.bits, ot.bits))
    f["bits2"] += int(2 in (xt.bits, wt.bits, ot.bits))
    sym = draw(st.booleans())
    f["symbolic_batch"] += int(sym)
    graph = make_graph([("x", (n, c, h, w_), xt)], [(QNode("conv2d", "conv", ["x"], "conv", attrs), ot)], sym)
    return graph, rng


@st.composite
def dense_case(draw, prop="dense", force_int64=False):
    f = FEATURES[prop]
    xt = QType(16, draw(st.booleans())) if force_int64 else draw(QTYPES)
    wt = QType(16, draw(st.booleans())) if force_int64 else draw(QTYPES)
    ot = draw(QTYPES)
    rank3 = draw(st.booleans()) and not force_int64
    b = draw(st.integers(1, 3))
    k = draw(st.integers(64, 200)) if force_int64 else draw(st.integers(1, 40))
    nout = draw(st.integers(2, 8))
    style = "extreme" if force_int64 else draw(WEIGHT_STYLES)
    rng = np.random.default_rng(draw(SEEDS))
    weight = codes(rng, wt, (k, nout), style)
    bmax = amax(xt) * amax(wt) * min(k, 4)
    bias = rng.integers(-bmax, bmax + 1, size=nout) if draw(st.booleans()) else np.zeros(nout, np.int64)
    acc = acc_dtype(xt, weight, bias, 1)
    if force_int64:
        assume(acc == "int64")
    attrs = dict(weight=weight, bias=bias, acc_dtype=acc)
    shape = (b, 2, k) if rank3 else (b, k)
    est = calibrate("dense", attrs, [(shape, xt)], ot, rng)
    attrs.update(**draw(requant_params(est, mac_bound(xt, weight, bias, 1), nout, prop)), **draw(tail_params(ot, prop)))
    f[f"acc_{acc}"] += 1
    f["rank3"] += int(rank3)
    f["x_unsigned"] += int(not xt.signed)
    f["w_unsigned"] += int(not wt.signed)
    sym = draw(st.booleans())
    f["symbolic_batch"] += int(sym)
    graph = make_graph([("x", shape, xt)], [(QNode("dense", "fc", ["x"], "fc", attrs), ot)], sym)
    return graph, rng


@st.composite
def pool_case(draw, op: str, prop: str):
    f = FEATURES[prop]
    xt = draw(QTYPES)
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(SEEDS))
    if op == "max_pool2d":
        dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        ceil = draw(st.booleans())
        # padding at most half the window (ONNX/PyTorch), so no window is all padding
        pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)),
               draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
        h = draw(st.integers(dh * (kh - 1) + 1, 7))
        w = draw(st.integers(dw * (kw - 1) + 1, 7))
        attrs = dict(pool_size=(kh, kw), strides=(sh, sw), padding=pad, dilation=(dh, dw), ceil_mode=ceil)
        ot = xt
        f["ceil_mode"] += int(ceil)
        f["dilation2"] += int(dh == 2 or dw == 2)
    else:
        ot = draw(QTYPES)
        pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
        h = draw(st.integers(max(1, kh - pad[0] - pad[2]), 7))
        w = draw(st.integers(max(1, kw - pad[1] - pad[3]), 7))
        attrs = dict(pool_size=(kh, kw), strides=(sh, sw), padding=pad)
        est = calibrate("avg_pool2d", attrs, [((n, c, h, w), xt)], ot, rng)
        attrs.update(**draw(requant_params(est, amax(xt) * kh * kw, None, prop, zeros=(False,))),
                     **draw(tail_params(ot, prop)))
    f[op] += 1
    f["pad_asym"] += int(pad[0] != pad[2] or pad[1] != pad[3])
    f["x_unsigned"] += int(not xt.signed)
    sym = draw(st.booleans())
    graph = make_graph([("x", (n, c, h, w), xt)], [(QNode(op, "pool", ["x"], "pool", attrs), ot)], sym)
    return graph, rng


@st.composite
def gap_case(draw, prop="global_avg_pool"):
    xt, ot = draw(QTYPES), draw(QTYPES)
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    keep = draw(st.booleans())
    rng = np.random.default_rng(draw(SEEDS))
    est = calibrate("global_avg_pool", dict(keepdims=keep), [((n, c, h, w), xt)], ot, rng)
    attrs = dict(keepdims=keep, **draw(requant_params(est, amax(xt) * h * w, None, prop, zeros=(False,))),
                 **draw(tail_params(ot, prop)))
    FEATURES[prop][f"keepdims_{keep}"] += 1
    graph = make_graph([("x", (n, c, h, w), xt)], [(QNode("global_avg_pool", "gap", ["x"], "gap", attrs), ot)],
                       draw(st.booleans()))
    return graph, rng


@st.composite
def elementwise_case(draw, op: str, prop: str):
    f = FEATURES[prop]
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank - 1)) + (draw(st.integers(2, 5)),)
    at, ot = draw(QTYPES), draw(QTYPES)
    if op == "lut":  # table sizes 2^2 .. 2^16
        at = QType(draw(st.sampled_from([16, 2, 8, 5, 12])), draw(st.booleans()))
    if op in ("requant", "clip", "lut"):  # room for every input code: the ramp set is exhaustive
        shape = (draw(st.integers(1, 2)), 1 << at.bits)
    rng = np.random.default_rng(draw(SEEDS))
    inputs = [("a", shape, at)]
    if op in ("add", "mul"):
        bt = draw(QTYPES)
        bshape = shape
        if rank > 1 and draw(st.booleans()):  # broadcast one operand
            bshape = tuple(1 if draw(st.booleans()) else d for d in shape)
            f["broadcast"] += 1
        inputs.append(("b", bshape, bt))
    if op == "add":
        parts = []
        for t in (at, bt):
            rq = draw(requant_params(amax(ot) / amax(t) / 2, amax(t), None, prop, **ELEMENTWISE))
            parts.append(rq)
        attrs = dict(multipliers=tuple(int(p["multiplier"]) for p in parts),
                     shifts=tuple(int(p["shift"]) for p in parts), **draw(tail_params(ot, prop)))
    elif op == "mul":
        bound = amax(at) * amax(bt)
        est = calibrate("mul", {}, [(shape, at), (bshape, bt)], ot, rng)
        attrs = dict(**draw(requant_params(est, bound, None, prop, **ELEMENTWISE)), **draw(tail_params(ot, prop)))
    elif op == "requant":
        est = calibrate("requant", {}, [(shape, at)], ot, rng)
        attrs = dict(**draw(requant_params(est, amax(at), None, prop, **ELEMENTWISE)), **draw(tail_params(ot, prop)))
    elif op == "clip":
        ot = at
        lo = draw(st.integers(at.lo, at.hi))
        attrs = dict(lo=lo, hi=draw(st.integers(lo, at.hi)))
    else:  # lut: a random table over every input code
        table = rng.integers(ot.lo, ot.hi + 1, size=1 << at.bits)
        attrs = dict(table=table.astype(np.int64), offset=at.lo)
        f["lut_in16"] += int(at.bits == 16)
    graph = make_graph(inputs, [(QNode(op, op, [i[0] for i in inputs], op, attrs), ot)])
    return graph, rng


@st.composite
def shape_case(draw, op: str, prop: str):
    f = FEATURES[prop]
    t = draw(QTYPES)
    rank = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    rng = np.random.default_rng(draw(SEEDS))
    sym = False
    if op == "concat":
        axis = draw(st.integers(-rank, rank - 1))
        count = draw(st.integers(2, 3))
        inputs = []
        for i in range(count):
            s = list(shape)
            s[axis] = draw(st.integers(1, 3))
            inputs.append((f"x{i}", tuple(s), t))
        attrs = dict(axis=axis)
        f["neg_axis"] += int(axis < 0)
    elif op == "reshape":
        inputs = [("x", shape, t)]
        rest = int(np.prod(shape[1:]))
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = draw(st.sampled_from(divisors))
        tail = [d, rest // d] if draw(st.booleans()) else [rest]
        sym = draw(st.booleans())
        attrs = dict(shape=tuple([-1 if sym or draw(st.booleans()) else shape[0]] + tail))
        f["symbolic_batch"] += int(sym)
    elif op == "transpose":
        inputs = [("x", shape, t)]
        axes = None if draw(st.booleans()) else tuple(draw(st.permutations(range(rank))))
        attrs = dict(axes=axes)  # None reverses the axes (ONNX Transpose without perm)
        f["axes_none"] += int(axes is None)
    else:
        inputs = [("x", shape, t)]
        attrs = dict(pads=tuple(draw(st.integers(0, 2)) for _ in range(2 * rank)))
    graph = make_graph(inputs, [(QNode(op, op, [i[0] for i in inputs], op, attrs), t)], sym)
    return graph, rng


# -- small multi-layer chains ------------------------------------------------------------------

CHAIN_TYPES = st.builds(QType, st.integers(3, 12), st.booleans())


class _Chain:
    """Builds a chain layer by layer, running the reference on sample codes as it goes so
    that each requantizing layer's multiplier is calibrated from its real accumulator range
    (as the quantizer does): later layers then still see varied codes."""

    def __init__(self, draw, prop: str, shape, xt: QType, rng):
        self.draw, self.prop, self.rng = draw, prop, rng
        self.nodes: list[tuple[QNode, QType]] = []
        self.vals = {"x": codes(rng, xt, shape)}
        self.types = {"x": xt}

    def add(self, op: str, name: str, inputs: list[str], attrs: dict, ot: QType) -> str:
        node = QNode(op, name, inputs, name, attrs)
        self.vals[name] = np.asarray(reference.OPS[op](node, [self.vals[i] for i in inputs], ot), np.int64)
        self.nodes.append((node, ot))
        self.types[name] = ot
        return name

    def tail(self, ot: QType) -> dict:
        """Rounding, overflow and a clamp that keeps at least half the range."""
        draw, f = self.draw, FEATURES[self.prop]
        rounding, overflow = draw(ROUNDINGS), draw(OVERFLOWS)
        clamp = draw(st.sampled_from(["none", "relu", "relu6"]))
        lo = 0 if clamp in ("relu", "relu6") or not ot.signed else None
        hi = draw(st.integers(max(1, ot.hi // 2), ot.hi)) if clamp == "relu6" else None
        f[rounding] += 1
        f[overflow] += 1
        f[f"clamp_{clamp}"] += 1
        return dict(lo=lo, hi=hi, rounding=rounding, overflow=overflow)

    def mult(self, peak: int, ot: QType, bound: int, channels=None) -> dict:
        return self.draw(requant_params(amax(ot) / max(int(peak), 1), bound, channels, self.prop, **CHAIN))

    def requantizing(self, op: str, name: str, inputs: list[str], attrs: dict, ot: QType, bound: int,
                     channels=None) -> str:
        probe = QNode(op, name, inputs, name, {**attrs, "multiplier": np.int64(1), "shift": np.int64(0), "lo": None,
                                              "hi": None, "rounding": "TRN", "overflow": "SAT"})
        acc = reference.OPS[op](probe, [self.vals[i] for i in inputs], QType(64, True))
        attrs = {**attrs, **self.mult(np.abs(acc).max(), ot, bound, channels), **self.tail(ot)}
        return self.add(op, name, inputs, attrs, ot)

    def conv(self, name: str, src: str, o: int, groups: int, k: int, ot: QType) -> str:
        xt, c = self.types[src], self.vals[src].shape[1]
        wt = self.draw(CHAIN_TYPES)
        weight = codes(self.rng, wt, (o, c // groups, k, k), self.draw(st.sampled_from(["uniform", "sparse"])))
        bias = self.rng.integers(-amax(xt) * amax(wt), amax(xt) * amax(wt) + 1, size=o)
        attrs = dict(weight=weight, bias=bias, strides=(1, 1), padding=(k // 2,) * 4, dilation=(1, 1),
                     groups=groups, acc_dtype=acc_dtype(xt, weight, bias, 0))
        return self.requantizing("conv2d", name, [src], attrs, ot, mac_bound(xt, weight, bias, 0), o)

    def dense(self, name: str, src: str, nout: int, ot: QType) -> str:
        xt, k = self.types[src], self.vals[src].shape[-1]
        wt = self.draw(CHAIN_TYPES)
        weight = codes(self.rng, wt, (k, nout), self.draw(st.sampled_from(["uniform", "sparse"])))
        bias = self.rng.integers(-amax(xt) * amax(wt), amax(xt) * amax(wt) + 1, size=nout)
        attrs = dict(weight=weight, bias=bias, acc_dtype=acc_dtype(xt, weight, bias, 1))
        return self.requantizing("dense", name, [src], attrs, ot, mac_bound(xt, weight, bias, 1), nout)

    def add2(self, name: str, a: str, b: str, ot: QType) -> str:
        parts = [self.mult(2 * np.abs(self.vals[s]).max(), ot, amax(self.types[s])) for s in (a, b)]
        attrs = dict(multipliers=tuple(int(p["multiplier"]) for p in parts),
                     shifts=tuple(int(p["shift"]) for p in parts), **self.tail(ot))
        return self.add("add", name, [a, b], attrs, ot)


@st.composite
def chain_case(draw, template: str, prop: str):
    """Three templates, each a few layers deep with random types in between:

    A: conv -> max_pool -> reshape(-1, .) -> dense -> lut -> add(lut, requant(dense))
    B: depthwise conv -> avg_pool -> 1x1 conv -> add(residual) -> global_avg_pool -> dense -> clip
    C: concat(conv, conv) -> transpose -> pad -> mul(., requant(.)) -> reshape
    """
    xt = draw(CHAIN_TYPES)
    n, c, h = draw(st.integers(1, 2)), draw(st.integers(2, 3)), draw(st.integers(4, 6))
    sym = draw(st.booleans())
    rng = np.random.default_rng(draw(SEEDS))
    ch = _Chain(draw, prop, (n, c, h, h), xt, rng)
    T = lambda: draw(CHAIN_TYPES)  # noqa: E731
    if template == "A":
        y = ch.conv("conv", "x", draw(st.integers(2, 4)), 1, draw(st.sampled_from([1, 3])), T())
        ceil = draw(st.booleans())
        FEATURES[prop]["ceil_mode"] += int(ceil)
        y = ch.add("max_pool2d", "pool", [y], dict(pool_size=(2, 2), strides=(2, 2), padding=(0, 0, 0, 0),
                                                  dilation=(1, 1), ceil_mode=ceil), ch.types[y])
        flat = int(np.prod(ch.vals[y].shape[1:]))
        y = ch.add("reshape", "flat", [y], dict(shape=(-1, flat)), ch.types[y])
        d = ch.dense("fc", y, draw(st.integers(2, 6)), T())
        dt, lt = ch.types[d], T()
        table = rng.integers(lt.lo, lt.hi + 1, size=1 << dt.bits)
        lut = ch.add("lut", "act", [d], dict(table=table, offset=dt.lo), lt)
        skip = ch.requantizing("requant", "skip", [d], {}, lt, amax(dt))
        ch.add2("sum", lut, skip, T())
    elif template == "B":
        y = ch.conv("dw", "x", c, c, 3, QType(draw(st.integers(3, 12)), False))
        y = ch.requantizing("avg_pool2d", "avg", [y], dict(pool_size=(2, 2), strides=(1, 1), padding=(0, 0, 1, 1)),
                            T(), 4 * amax(ch.types[y]))
        y = ch.conv("pw", y, c, 1, 1, T())
        y = ch.add2("res", y, "x", T())
        y = ch.requantizing("global_avg_pool", "gap", [y], dict(keepdims=False), T(), h * h * amax(ch.types[y]))
        y = ch.dense("fc", y, draw(st.integers(2, 5)), T())
        t = ch.types[y]
        lo, hi = draw(st.integers(t.lo, 0)), draw(st.integers(max(t.hi // 2, 1), t.hi))
        ch.add("clip", "clamp", [y], dict(lo=lo, hi=hi), t)
    else:
        ct = T()  # the quantizer gives a concat's inputs the concat's type
        ys = [ch.conv(f"c{i}", "x", draw(st.integers(1, 3)), 1, draw(st.sampled_from([1, 3])), ct) for i in range(2)]
        y = ch.add("concat", "cat", ys, dict(axis=1), ct)
        y = ch.add("transpose", "nhwc", [y], dict(axes=(0, 2, 3, 1)), ct)
        y = ch.add("pad", "pad", [y], dict(pads=(0, 1, 0, 0, 0, 0, 1, 0)), ct)
        r = ch.requantizing("requant", "rq", [y], {}, T(), amax(ct))
        y = ch.requantizing("mul", "sq", [y, r], {}, T(), amax(ct) * amax(ch.types[r]))
        ch.add("reshape", "flat", [y], dict(shape=(-1, int(np.prod(ch.vals[y].shape[1:])))), ch.types[y])
    graph = make_graph([("x", (n, c, h, h), xt)], ch.nodes, sym)
    return graph, rng


# -- the properties ------------------------------------------------------------------------------

def test_conv2d_bitexact():
    @settings(max_examples=EXAMPLES["conv2d"], **SETTINGS)
    @given(conv2d_case())
    def prop(case):
        assert_bitexact(*case, prop="conv2d")

    check_property("conv2d", prop, {
        "acc_int32": 1, "groups_dense": 1, "groups_grouped": 1, "groups_depthwise": 1, "kernel_Nx1_1xN": 1,
        "stride2": 1, "dilation2": 1, "pad_asym": 1, "x_unsigned": 1, "w_unsigned": 1, "RND": 1, "TRN": 1,
        "SAT": 1, "WRAP": 1, "mult_pow2": 1, "mult_float": 1, "mult_channel": 1, "mult_scalar": 1,
        "neg_shift": 1, "zero_ratio": 1, "clamp_relu": 1, "clamp_relu6": 1, "symbolic_batch": 1,
        "bits2": 1, "bits16": 1})


def test_dense_bitexact():
    @settings(max_examples=EXAMPLES["dense"], **SETTINGS)
    @given(dense_case())
    def prop(case):
        assert_bitexact(*case, prop="dense")

    check_property("dense", prop, {"rank3": 1, "mult_channel": 1, "neg_shift": 1, "zero_ratio": 1,
                                   "WRAP": 1, "TRN": 1, "x_unsigned": 1, "w_unsigned": 1})


def test_int64_accumulator_bitexact():
    """16-bit x 16-bit layers whose exact bound needs int64; the extreme inputs really
    exceed int32 (checked on the reference's accumulator)."""
    def big_acc(graph, sets) -> bool:
        node = graph.nodes[0]
        a = node.attrs
        for inputs in sets:
            x = inputs[0].astype(np.int64)
            if node.op == "dense":
                acc = x @ a.weight + a.bias
            else:
                probe = replace(node, attrs=replace(a, multiplier=np.ones_like(a.multiplier),
                                                    shift=np.zeros_like(a.shift), overflow="SAT", lo=None, hi=None))
                acc = reference.OPS["conv2d"](probe, [x], QType(64, True))
            if np.abs(acc).max() >= 2**31:
                return True
        return False

    @settings(max_examples=EXAMPLES["int64_acc"], **SETTINGS)
    @given(st.one_of(conv2d_case(prop="int64_acc", force_int64=True), dense_case(prop="int64_acc", force_int64=True)))
    def prop(case):
        graph, rng = case
        assert graph.nodes[0].attrs.acc_dtype == "int64"
        sets = input_sets(graph, rng)
        FEATURES["int64_acc"]["acc_exceeds_int32"] += int(big_acc(graph, sets))
        assert_bitexact(graph, rng, prop="int64_acc", sets=sets)

    check_property("int64_acc", prop, {"acc_int64": EXAMPLES["int64_acc"] * 8 // 10,
                                       "acc_exceeds_int32": EXAMPLES["int64_acc"] // 2})


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pool_bitexact(op):
    prop = f"pool[{op}]"

    @settings(max_examples=EXAMPLES[prop], **SETTINGS)
    @given(pool_case(op, prop))
    def run(case):
        assert_bitexact(*case, prop=prop)

    check_property(prop, run, {"pad_asym": 1, "x_unsigned": 1} | (
        {"ceil_mode": 2, "dilation2": 1} if op == "max_pool2d" else {"RND": 1, "TRN": 1, "WRAP": 1, "mult_pow2": 1,
                                                                      "mult_float": 1, "neg_shift": 1}))


def test_global_avg_pool_bitexact():
    prop = "global_avg_pool"

    @settings(max_examples=EXAMPLES[prop], **SETTINGS)
    @given(gap_case())
    def run(case):
        assert_bitexact(*case, prop=prop)

    check_property(prop, run, {"keepdims_True": 1, "keepdims_False": 1, "mult_float": 1, "mult_pow2": 1}, 0.3)


@pytest.mark.parametrize("op", ["add", "mul", "requant", "clip", "lut"])
def test_elementwise_bitexact(op):
    prop = f"elementwise[{op}]"

    @settings(max_examples=EXAMPLES[prop], **SETTINGS)
    @given(elementwise_case(op, prop))
    def run(case):
        assert_bitexact(*case, prop=prop)

    want = {"add": {"neg_shift_float": 1, "neg_shift_pow2": 1, "zero_ratio": 1, "WRAP": 1, "TRN": 1, "broadcast": 1},
            "mul": {"neg_shift": 1, "WRAP": 1, "TRN": 1, "mult_float": 1, "mult_pow2": 1},
            "requant": {"neg_shift_float": 1, "neg_shift_pow2": 1, "zero_ratio": 1, "WRAP": 1, "RND": 1, "TRN": 1},
            "clip": {}, "lut": {"lut_in16": 1}}[op]
    check_property(prop, run, want, 0.3 if op in ("add", "requant") else 0.5)


@pytest.mark.parametrize("op", ["concat", "reshape", "transpose", "pad"])
def test_shape_ops_bitexact(op):
    prop = f"shape_ops[{op}]"

    @settings(max_examples=EXAMPLES[prop], **SETTINGS)
    @given(shape_case(op, prop))
    def run(case):
        assert_bitexact(*case, prop=prop)

    check_property(prop, run, {"concat": {"neg_axis": 1}, "reshape": {"symbolic_batch": 1},
                               "transpose": {"axes_none": 1}}.get(op, {}))


@pytest.mark.parametrize("template", ["A", "B", "C"])
def test_chain_bitexact(template):
    prop = f"chain[{template}]"

    @settings(max_examples=EXAMPLES[prop], **SETTINGS)
    @given(chain_case(template, prop))
    def run(case):
        assert_bitexact(*case, prop=prop)

    check_property(prop, run, {"mult_pow2": 1, "mult_float": 1, "WRAP": 1, "TRN": 1})


# -- the comparison can fail --------------------------------------------------------------------

def _conv_graph(rounding="RND", acc="int32", xt=QType(8, True), wt=QType(8, True), c=4, weight=None):
    rng = np.random.default_rng(1)
    weight = rng.integers(wt.lo, wt.hi + 1, (3, c, 3, 3)) if weight is None else weight
    m, n = quantize_multiplier(np.full(3, 0.75 * amax(QType(8, True)) / (amax(xt) * amax(wt) * 6)), "float")
    attrs = dict(weight=weight, bias=np.array([5, -7, 0]), strides=(1, 1), padding=(1, 1, 1, 1),
                 dilation=(1, 1), groups=1, multiplier=m, shift=n, lo=None, hi=None, rounding=rounding,
                 overflow="SAT", acc_dtype=acc)
    return make_graph([("x", (1, c, 5, 5), xt)], [(QNode("conv2d", "conv", ["x"], "conv", attrs), QType(8, True))])


def test_comparison_detects_rounding_mismatch():
    """The same comparison fails when the reference rounds differently (RND vs TRN)."""
    rng = np.random.default_rng(0)
    graph = _conv_graph("RND")
    assert_bitexact(graph, rng)
    with pytest.raises(AssertionError, match="codes differ"):
        assert_bitexact(graph, rng, ref_graph=_conv_graph("TRN"))


def test_comparison_detects_int32_overflow():
    """A w16a16 layer whose bound needs int64 really overflows when lowered with int32:
    the int64 accumulator cases above are not vacuous."""
    rng = np.random.default_rng(0)
    s16 = QType(16, True)
    weight = np.full((3, 16, 3, 3), s16.hi, dtype=np.int64)  # acc up to 2^15 * 144 * 2^15 > 2^31
    good = _conv_graph(acc="int64", xt=s16, wt=s16, c=16, weight=weight)
    bad = _conv_graph(acc="int32", xt=s16, wt=s16, c=16, weight=weight)
    assert acc_dtype(s16, weight, good.nodes[0].attrs.bias, 0) == "int64"
    assert_bitexact(good, rng)
    with pytest.raises(AssertionError, match="codes differ"):
        assert_bitexact(bad, rng, ref_graph=good)


# -- hand-worked numerics ---------------------------------------------------------------------------

@pytest.mark.parametrize("v, n, rnd, trn", [
    (5, 1, 3, 2),     # 2.5:  RND floor((5+1)/2) = 3;   TRN floor(5/2) = 2
    (-5, 1, -2, -3),  # -2.5: RND floor((-5+1)/2) = -2 (half up, toward +inf); TRN floor(-2.5) = -3
    (-6, 2, -1, -2),  # -1.5: RND floor((-6+2)/4) = -1; TRN floor(-6/4) = -2
    (-7, 2, -2, -2),  # -1.75: RND floor((-7+2)/4) = floor(-1.25) = -2; TRN floor(-1.75) = -2
    (-1, 1, 0, -1),   # -0.5: RND floor(0/2) = 0;       TRN floor(-0.5) = -1
    (-3, 1, -1, -2),  # -1.5: RND floor(-2/2) = -1;     TRN -2
    (-9, 3, -1, -2),  # -1.125: RND floor((-9+4)/8) = floor(-0.625) = -1; TRN floor(-1.125) = -2
    (-12, 3, -1, -2), # -1.5: RND floor((-12+4)/8) = -1; TRN -2
    (-3, 0, -3, -3),  # n = 0: unchanged
    (-3, -2, -12, -12),  # n < 0: left shift, -3 * 4, exact in both modes
])
def test_round_shift_by_hand(v, n, rnd, trn):
    assert int(round_shift(np.int64(v), n, "RND")) == rnd
    assert int(round_shift(np.int64(v), n, "TRN")) == trn


def test_round_shift_per_channel_shifts():
    # shifts [2, 0, -1] against values [-6, -6, -6]: RND -> floor(-4/4) = -1, -6, -12
    assert round_shift(np.array([-6, -6, -6]), np.array([2, 0, -1]), "RND").tolist() == [-1, -6, -12]
    # TRN: floor(-6/4) = -2, -6, -12
    assert round_shift(np.array([-6, -6, -6]), np.array([2, 0, -1]), "TRN").tolist() == [-2, -6, -12]


def test_saturate_by_hand():
    s4, u4 = QType(4, True), QType(4, False)  # s4: [-8, 7]; u4: [0, 15]
    v = np.array([7, 8, 9, 23, -8, -9, -17, 100])
    # WRAP signed: keep the low 4 bits, reinterpret as two's complement:
    # 7 -> 7; 8 = 0b1000 -> -8; 9 = 0b1001 -> -7; 23 = 0b10111 -> 0b0111 = 7;
    # -8 -> -8; -9 = ...10111 -> 0b0111 = 7; -17 = ...101111 -> 0b1111 = -1; 100 = 0b1100100 -> 0b0100 = 4
    assert saturate(v, s4, "WRAP").tolist() == [7, -8, -7, 7, -8, 7, -1, 4]
    # WRAP unsigned: v mod 16: 7, 8, 9, 7, 8, 7, 15, 4
    assert saturate(v, u4, "WRAP").tolist() == [7, 8, 9, 7, 8, 7, 15, 4]
    # SAT: clamp to [-8, 7] / [0, 15]
    assert saturate(v, s4, "SAT").tolist() == [7, 7, 7, 7, -8, -8, -8, 7]
    assert saturate(v, u4, "SAT").tolist() == [7, 8, 9, 15, 0, 0, 0, 15]
    # clamps apply after wrapping: WRAP then ReLU (lo = 0): [7, 0, 0, 7, 0, 7, 0, 4]
    assert saturate(v, s4, "WRAP", lo=0).tolist() == [7, 0, 0, 7, 0, 7, 0, 4]
    # SAT with a ReLU6-like clamp [0, 5]: [5, 5, 5, 5, 0, 0, 0, 5]
    assert saturate(v, s4, "SAT", lo=0, hi=5).tolist() == [5, 5, 5, 5, 0, 0, 0, 5]


def test_requantize_by_hand():
    # M = 24576, n = 15 (M / 2^n = 0.75): 1000 * 0.75 = 750 exactly; RND adds 2^14 / 2^15 = 0.5
    # and floors back to 750.  -1000 -> (-24576000 + 16384) / 32768 = -749.5 -> floor = -750.
    assert requantize(np.array([1000, -1000]), 24576, 15, QType(16, True)).tolist() == [750, -750]
    # 1001 * 0.75 = 750.75: RND -> floor(751.25) = 751; TRN -> 750
    assert int(requantize(1001, 24576, 15, QType(16, True), "RND")) == 751
    assert int(requantize(1001, 24576, 15, QType(16, True), "TRN")) == 750
    # saturation to s8 (127), and a ReLU clamp on a negative result (0)
    assert int(requantize(1000, 24576, 15, QType(8, True))) == 127
    assert int(requantize(-1000, 24576, 15, QType(8, True), lo=0)) == 0


def test_quantize_multiplier_float_by_hand():
    # 0.75: floor(log2 0.75) = -1 -> n = 14 - (-1) = 15, M = round(0.75 * 2^15) = 24576
    assert [int(v) for v in quantize_multiplier(0.75, "float")] == [24576, 15]
    # 1.0: n = 14, M = 2^14 = 16384 (the smallest 15-bit M)
    assert [int(v) for v in quantize_multiplier(1.0, "float")] == [16384, 14]
    # 300000 >= 2^15: floor(log2 300000) = 18 -> n = 14 - 18 = -4 (a left shift), M = 300000 / 16 = 18750
    assert [int(v) for v in quantize_multiplier(300000.0, "float")] == [18750, -4]
    # 0.1: floor(log2 0.1) = -4 -> n = 18, M = round(0.1 * 262144) = round(26214.4) = 26214
    assert [int(v) for v in quantize_multiplier(0.1, "float")] == [26214, 18]
    # just below 1: round((1 - 2^-20) * 2^15) = 32768 = 2^15 carries out of 15 bits -> M = 16384, n = 14
    assert [int(v) for v in quantize_multiplier(1 - 2**-20, "float")] == [16384, 14]
    # a zero ratio: M = 0, n = 0 (the output is exactly 0)
    m, n = quantize_multiplier(np.array([0.0, 0.5]), "float")
    assert m.tolist() == [0, 16384] and n.tolist() == [0, 15]


def test_quantize_multiplier_pow2_by_hand():
    # 2^-5 -> M = 1, n = 5; 4 = 2^2 -> M = 1, n = -2 (left shift); 1 -> (1, 0)
    m, n = quantize_multiplier(np.array([2.0**-5, 4.0, 1.0, 0.0]), "pow2")
    assert m.tolist() == [1, 1, 1, 0] and n.tolist() == [5, -2, 0, 0]
    with pytest.raises(ValueError):
        quantize_multiplier(0.3, "pow2")
    with pytest.raises(ValueError):
        quantize_multiplier(-0.5, "float")


def test_quantize_multiplier_float_exactness():
    """|M / 2^n - r| <= 2^-15 r and 2^14 <= M < 2^15, over ratios spanning 2^-40 .. 2^30."""
    rng = np.random.default_rng(0)
    r = np.exp2(rng.uniform(-40, 30, size=20000))
    pow2 = np.exp2(np.arange(-40, 31, dtype=np.float64))
    r = np.concatenate([r, pow2, np.nextafter(pow2, 0)])  # powers of two and just below them
    m, n = quantize_multiplier(r, "float")
    assert np.all((m >= 2**14) & (m < 2**15))
    approx = m.astype(np.float64) * np.exp2(-n.astype(np.float64))
    assert np.all(np.abs(approx - r) <= r * 2.0**-15)
    assert numerics.MULT_BITS == 15


def test_accumulator_bits_by_hand():
    s8, u8, s16 = QType(8, True), QType(8, False), QType(16, True)
    # s8 x s8, K = 9 (3x3), bias: 8 + 8 + ceil(log2 9) = 4, + 1 bias = 21
    assert accumulator_bits(s8, s8, 9) == 21
    # u8 x s8: +1 for the unsigned factor; K = 1, no bias: 8 + 8 + 1 + 0 = 17
    assert accumulator_bits(u8, s8, 1, bias=False) == 17
    # s8 x s8, K = 2^14: 16 + 14 + 1 = 31 -> int32; s16 x s16, K = 1024: 32 + 10 + 1 = 43 -> int64
    assert accumulator_bits(s8, s8, 2**14) == 31 and accumulator_dtype(31) == "int32"
    assert accumulator_bits(s16, s16, 1024) == 43 and accumulator_dtype(43) == "int64"
    assert accumulator_dtype(32) == "int32" and accumulator_dtype(33) == "int64"


@pytest.mark.parametrize("xt, wt, k", [(QType(8, True), QType(8, True), 9), (QType(4, False), QType(3, True), 5),
                                       (QType(2, True), QType(2, True), 1), (QType(5, False), QType(6, False), 7)])
def test_accumulator_bits_bounds_the_worst_case(xt, wt, k):
    """The worst-case |sum of K products + bias| fits in accumulator_bits signed bits."""
    prod = max(abs(a * b) for a in (xt.lo, xt.hi) for b in (wt.lo, wt.hi))
    worst = 2 * k * prod  # K products plus a bias of the same bound
    bits = accumulator_bits(xt, wt, k)
    assert worst <= 2 ** (bits - 1), (worst, bits)
    # and without the bias: K products
    assert k * prod <= 2 ** (accumulator_bits(xt, wt, k, bias=False) - 1)


def test_zz_summary():
    """Totals over the properties that ran in this process (xdist may split them)."""
    total = sum(CASES.values())
    print(f"\n[bitexact] hypothesis cases per property: {dict(CASES)}; total {total}")
    print(f"[bitexact] traced tensors compared: {sum(TENSORS.values())}; on uniform inputs "
          f"{sum(INFORMATIVE.values())} of {sum(UNIFORM.values())} took >1 distinct value")
