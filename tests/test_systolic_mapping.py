"""The systolic mapping (``backends/systolic/mapping.py`` and its modules).

Oracles: the numpy reference (``reference.run``) on every layer's codes, exact equality, for the
examples and the zoo at w8a8, w4a8 and ``--share 4`` (the program runs in ``isa_sim``); and
hand-worked layouts, allocations, k-step plans and weight images.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnforge.backends.systolic import gemm, isa
from nnforge.backends.systolic.alloc import Buffer, allocate
from nnforge.backends.systolic.layout import Shape, pack, unpack
from nnforge.backends.systolic.params import params
from nnforge.backends.systolic.spec import Unsupported, multiplier
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode, QTensor
from systolic_util import BACKEND, MODELS, data, design, options, quantized, run_plan, with_shapes


def _check_every_layer(name: str, qmodel, opts: dict, samples: int = 12):
    _, _, test = data(name)
    codes = qmodel.quantize_inputs([test[:samples]])
    d = design(qmodel.graph)
    BACKEND.check_design(d, opts)
    plan = BACKEND.plan(d, opts)
    ours = run_plan(plan, qmodel.graph, codes)
    ref = reference.run(qmodel.graph, codes)
    assert {l.node.output for l in plan.layers} == {n.output for n in qmodel.graph.nodes}  # every layer on the array
    for name, got in ours.items():
        assert np.array_equal(got, ref[name]), name
    return plan


@pytest.mark.parametrize("bits,share", [("w8a8", None), ("w4a8", None), ("w8a8", 4)], ids=["w8a8", "w4a8", "share4"])
@pytest.mark.parametrize("name", MODELS)
def test_every_layer_equals_the_reference(name, bits, share):
    plan = _check_every_layer(name, quantized(name, bits, share), options())
    storages = {l.spec.storage for l in plan.layers if l.spec.storage}
    if share:  # shared layers store indices (depthwise ones fall back to dense: see the next test)
        assert "codebook" in storages and plan.imem
    else:
        assert storages == {"dense"} and not plan.imem


@pytest.mark.parametrize("shape", [dict(rows=2, cols=4), dict(rows=3, cols=5, in_bits=12), dict(rows=1, cols=16)])
@pytest.mark.parametrize("name", ["digits_cnn", "dwsep", "fire", "factorised"])
def test_other_array_shapes(name, shape):
    _check_every_layer(name, quantized(name, "w8a8", 3 if name in ("dwsep", "fire") else None), options(**shape), 4)


def test_depthwise_codebook_without_zero_is_stored_dense():
    """A full 16-entry codebook has no 0; a depthwise layer needs zeros for other groups' lanes."""
    q = quantized("dwsep", "w8a8", 4)
    plan = BACKEND.plan(design(q.graph), options())
    by_name = {l.node.name: l for l in plan.layers}
    dw = by_name["/blocks/blocks.0/blocks.0.0/Conv"]
    assert dw.spec.storage == "dense" and "needs 5-bit indices, more than idx_bits=4" in dw.spec.notes[0]
    pw = by_name["/blocks/blocks.0/blocks.0.3/Conv"]
    assert pw.spec.storage == "codebook" and pw.instrs[0].get("idx_bits") == 4
    wide = BACKEND.plan(design(q.graph), options(idx_bits=5))  # one more index bit: indices again
    assert {l.node.name: l.spec.storage for l in wide.layers}[dw.node.name] == "codebook"


# -- layouts, allocation, k-step plans and weights, by hand ------------------------------------------

def test_segmented_layout_by_hand():
    s = Shape((13, 1, 2), ((10, 0), (3, 2)), (13, 1, 2), 8)  # a concat of 10 and 3 channels, C = 8
    word, lane = s.channel_words()
    assert word.tolist() == [0] * 8 + [1, 1] + [2, 2, 2] and lane.tolist() == list(range(8)) + [0, 1, 0, 1, 2]
    assert s.words == 3 and s.lane_channels()[1].tolist() == [8, 9, -1, -1, -1, -1, -1, -1]
    codes = np.arange(26).reshape(1, 13, 1, 2)  # channel c of pixel p = 2c + p
    doc = {"offset": 1, "ps": 4, "chw": [13, 1, 2], "segments": [[10, 0], [3, 2]], "shape": [13, 1, 2],
           "signed": False, "bits": 8}
    words = np.full((1, 9, 8), -1)
    pack(doc, codes, words)
    assert words[0, 1].tolist() == [0, 2, 4, 6, 8, 10, 12, 14]  # pixel 0, word 0: channels 0..7
    assert words[0, 2, :3].tolist() == [16, 18, -1] and words[0, 3, :4].tolist() == [20, 22, 24, -1]
    assert words[0, 5].tolist() == [1, 3, 5, 7, 9, 11, 13, 15]  # pixel 1 starts at 1 + 4
    assert np.array_equal(unpack(doc, words, 8), codes)


def test_liveness_allocation_by_hand():
    bufs = [Buffer(0, 10, 0, 1, "a"), Buffer(1, 5, 1, 2, "b"), Buffer(2, 8, 2, 3, "c"), Buffer(3, 10, 3, 4, "d")]
    alloc = allocate(bufs)
    # a [0, 10); b after a; a's last reader is layer 1, so c (written at 2) reuses its words; d (at 3) can
    # take b's words (last read at 2) but not c's (read at 3): d goes right after c
    assert [b.base for b in bufs] == [0, 10, 0, 8]
    assert alloc.peak == 18 and alloc.peak_layer == 3 and alloc.live_at_peak == ("c", "d")


def test_k_step_plans_by_hand():
    plain = Shape.plain((16, 4, 4), 8).lane_channels()
    assert gemm._k_plan(plain, 2, 16, 16, 16, 8) == (0, 2)  # groups = 1: every word of every pixel
    assert gemm._k_plan(plain, 2, 16, 1, 1, 8) == (1, 1)  # depthwise: output word n reads input word n
    four = Shape.plain((16, 4, 4), 4).lane_channels()  # 4 groups of 4 channels, C = 4: one word per group
    assert gemm._k_plan(four, 4, 16, 4, 4, 4) == (1, 1)
    # 2 groups of 8 over C = 4: output words 0, 1 need input words 0-1, words 2, 3 need 2-3; no single
    # step fits both, so every word is read
    assert gemm._k_plan(four, 4, 16, 8, 8, 4) == (0, 4)


def test_weights_in_k_step_order_by_hand():
    w = np.arange(1, 13).reshape(2, 3, 1, 2)  # 2 outputs, 3 inputs, a 1x2 kernel: w[o, c, 0, kj]
    lanes, zero = gemm._weights(w, Shape.plain((3, 1, 4), 4).lane_channels(), 0, 1, 1, 4, zero_pad=False)
    # row k = kj * 4 + l (one input word); column j = output channel; lane 3 is padding, outputs 2, 3 absent
    want = [[w[0, l, 0, kj] if l < 3 else 0, w[1, l, 0, kj] if l < 3 else 0, 0, 0] for kj in range(2)
            for l in range(4)]
    assert lanes.tolist() == want
    # zeros the columns need: the padding lane (the input may hold anything there); not the absent columns
    assert zero[:, :2].tolist() == [[l == 3] * 2 for _ in range(2) for l in range(4)] and not zero[:, 2:].any()


def test_negative_shifts_become_left_shifted_multipliers():
    node = QNode("requant", "rq", ["x"], "y", dict(multiplier=1, shift=0, lo=None, hi=None, rounding="RND",
                                                    overflow="SAT"))  # a whole node; its M, n are not read
    m, n = multiplier(node, [3, 16000, 5], [-2, 3, 0])
    assert m.tolist() == [12, 16000, 5] and n.tolist() == [0, 3, 0]
    with pytest.raises(Unsupported, match=r"layer 'rq' has a left shift \(M=20000, n=-2\); M << 2 must fit the "
                                          r"16-bit multiplier"):
        multiplier(node, [20000], [-2])
    with pytest.raises(Unsupported, match="shift of layer 'rq' must be at most 63, not 70"):
        multiplier(node, [1], [70])


# -- concat, views and the host tail on small graphs ------------------------------------------------

S8, U8 = QType(8, True), QType(8, False)


def _conv(name, x, o, i, k, rng, pad=0, out=None):
    return QNode("conv2d", name, [x], out or name, dict(
        weight=rng.integers(-100, 100, size=(o, i, k, k)), bias=rng.integers(-300, 300, o), strides=(1, 1),
        padding=(pad,) * 4, dilation=(1, 1), groups=1, multiplier=np.full(o, 1 << 13), shift=np.full(o, 20),
        lo=None, hi=None, rounding="RND", overflow="SAT", acc_dtype="int32"))


def _graph(nodes, outputs, shape=(3, 4, 4)) -> tuple[QGraph, list[np.ndarray]]:
    x = QTensor("x", ("batch",) + shape, S8, 1.0)
    tensors = {"x": x, **{n.output: QTensor(n.output, (), S8, 1.0) for n in nodes}}
    g = QGraph([x], tensors, nodes, outputs)
    codes = [np.random.default_rng(3).integers(-128, 128, size=(5,) + shape)]
    return with_shapes(g, codes), codes


def _run(g, codes, **opts):
    d = design(g)
    BACKEND.check_design(d, options(**opts))
    plan = BACKEND.plan(d, options(**opts))
    ours, ref = run_plan(plan, g, codes), reference.run(g, codes)
    for name, got in ours.items():
        assert np.array_equal(got, ref[name]), name
    return d, plan, ours


def test_concat_writes_in_place_and_copies_only_what_it_must(rng):
    nodes = [_conv("a", "x", 5, 3, 3, rng, pad=1), _conv("b", "x", 4, 3, 1, rng),
             QNode("concat", "cat", ["a", "x", "b"], "cat", {"axis": 1}), _conv("c", "cat", 6, 12, 1, rng)]
    g, codes = _graph(nodes, ["c"])
    _, plan, _ = _run(g, codes)
    cat = next(l for l in plan.layers if l.node.name == "cat")
    # a and b are written into the concat's buffer by their GEMMs; the graph input x is copied in
    assert [i.note for i in cat.instrs[:-1]] == ["COPY x into the concat"]
    lay = plan.layouts
    assert lay["a"].base == lay["cat"].base and lay["a"].ps == lay["cat"].ps == 3  # 8-lane words: a, x, b
    assert lay["b"].base == lay["cat"].base + 2
    assert lay["cat"].shape.segments == ((5, 0), (3, 1), (4, 2))


def test_fire_concat_needs_no_copy():
    q = quantized("fire")
    plan = BACKEND.plan(design(q.graph), options())
    assert not any(i.op == isa.OP_WINDOW and i.get("sub") == isa.WIN_COPY for i in plan.program)


def test_flatten_is_a_view_and_other_reshapes_feeding_pixels_are_refused(rng):
    nodes = [_conv("a", "x", 4, 3, 1, rng), QNode("reshape", "flat", ["a"], "flat", {"shape": (-1, 64)}),
             QNode("reshape", "back", ["flat"], "back", {"shape": (-1, 16, 2, 2)}),
             _conv("c", "back", 2, 16, 1, rng), _conv("d", "c", 2, 2, 1, rng)]
    g, codes = _graph(nodes, ["d"])
    with pytest.raises(InputError, match=r"the input of layer 'c' must be a pixel-major \[C, H, W\] tensor, not "
                                         r"'back', a reshape of a \(4, 4, 4\) tensor to \(16, 2, 2\) .* \(layer 'c' "
                                         r"cannot stay on the host: conv2d layer 'd' after it needs the array\)"):
        BACKEND.check_design(design(g), options())
    # c alone at the end is trailing: the host runs it (the numpy reference) after the array
    g1, codes1 = _graph(nodes[:4], ["c"])
    d1, _, _ = _run(g1, codes1)
    assert [h.name for h in d1.host] == ["c"] and "a reshape of a (4, 4, 4) tensor" in d1.host[0].reason
    # without the conv the reshapes are trailing views: the array writes a's words once, three names read them
    g2, codes2 = _graph(nodes[:3], ["back"])
    _, plan, ours = _run(g2, codes2)
    assert plan.layouts["flat"].base == plan.layouts["back"].base == plan.layouts["a"].base
    assert [l.cycles for l in plan.layers][1:] == [2, 2]  # a view is its SYNC only


def test_trailing_transpose_stays_on_the_host_and_a_middle_one_is_an_error(rng, tmp_path):
    nodes = [_conv("a", "x", 4, 3, 3, rng, pad=1), QNode("transpose", "t", ["a"], "t", {"axes": (0, 1, 3, 2)})]
    g, codes = _graph(nodes, ["t"])
    d, plan, _ = _run(g, codes)
    assert [(h.name, h.op) for h in d.host] == [("t", "transpose")] and [k.node.name for k in d.kernels] == ["a"]
    assert "no instruction for 'transpose'" in d.host[0].reason
    assert [s.name for s in plan.outputs] == ["a"]  # the host's input leaves the array
    g3, _ = _graph(nodes + [_conv("c", "t", 2, 4, 1, rng)], ["c"])
    with pytest.raises(InputError, match=r"the systolic array has no instruction for 'transpose' \(layer 't' cannot "
                                         r"stay on the host: conv2d layer 'c' after it needs the array\)"):
        BACKEND.check_design(design(g3), options())


def test_broadcasting_add_is_refused_when_it_is_not_trailing(rng):
    g0 = QNode("global_avg_pool", "gap", ["a"], "gap", dict(multiplier=1, shift=4, lo=None, hi=None, keepdims=True,
                                                            rounding="RND", overflow="SAT"))
    add = QNode("add", "add", ["a", "gap"], "add", dict(multipliers=(1, 1), shifts=(0, 0), lo=None, hi=None,
                                                        rounding="RND", overflow="SAT"))
    nodes = [_conv("a", "x", 4, 3, 1, rng), g0, add, _conv("c", "add", 2, 4, 1, rng)]
    g, _ = _graph(nodes, ["c"])
    with pytest.raises(InputError, match=r"the inputs of add layer 'add' must have its output's shape \(4, 4, 4\) "
                                         r"\(the array does not broadcast\), not \(4, 1, 1\)"):
        BACKEND.check_design(design(g), options())


def test_in_bits_options_limit_the_widths_and_the_message_says_how_to_raise_it():
    q = quantized("digits_mlp")
    with pytest.raises(InputError, match=r"the input of layer '/net/net.0/Gemm' \(u8\) must be at most in_bits=6 "
                                         r"bits wide, not 8; raise it with --option in_bits=8"):
        BACKEND.check_design(design(q.graph), options(in_bits=6))


def test_params_checks_rows_against_cols():
    with pytest.raises(InputError, match="option 'rows' must be at most cols=4"):
        params(options(rows=8, cols=4))


def test_concat_on_another_axis_is_refused_when_it_is_not_trailing(rng):
    nodes = [_conv("a", "x", 4, 3, 1, rng), _conv("b", "x", 4, 3, 1, rng),
             QNode("concat", "cat", ["a", "b"], "cat", {"axis": 2}), _conv("c", "cat", 2, 4, 1, rng)]
    g, _ = _graph(nodes, ["c"])
    with pytest.raises(InputError, match=r"concat layer 'cat' must join along the channel axis 1, not axis 2 "
                                         r"\(layer 'cat' cannot stay on the host: conv2d layer 'c' after it"):
        BACKEND.check_design(design(g), options())
    g2, codes2 = _graph(nodes[:3], ["cat"])  # trailing: the host concatenates the array's a and b
    d, plan, _ = _run(g2, codes2)
    assert [h.name for h in d.host] == ["cat"] and [s.name for s in plan.outputs] == ["a", "b"]
