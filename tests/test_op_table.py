"""The op table (``compiler/ops/``): for every op, its pattern matches its own lowering whole,
no other op's pattern takes that chain whole, and its reference and its TVM build agree code for
code on random inputs.  Plus the attrs classes' checks (unknown and missing keys).

A new op needs a case in ``CASES``: the test fails for an op of the table without one.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tvm
from tvm import relax

from nnforge.backends.patterns import patterns_for
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.ops import CHANNELWISE, OPS, PASSTHROUGH, REQUANTIZING, SPECS
from nnforge.compiler.qgraph import QGraph, QNode, QTensor
from nnforge.compiler.quant.numerics import QType

S8, U8, S16 = QType(8, True), QType(8, False), QType(16, True)
RNG = np.random.default_rng(17)
TAIL = dict(lo=None, hi=None, rounding="RND", overflow="SAT")


def _w(*shape):
    return RNG.integers(-8, 8, size=shape)


# op -> (inputs [(shape, type)], attrs, output type); hand-picked so each op's chain shows its steps
CASES = {
    "conv2d": ([((2, 3, 5, 5), S8)], dict(weight=_w(4, 3, 3, 3), bias=RNG.integers(-50, 50, 4), strides=(1, 1),
                                           padding=(1, 1, 1, 1), dilation=(1, 1), groups=1,
                                           multiplier=np.array([3, 5, 7, 9]), shift=np.array([6, 7, 6, 8]),
                                           acc_dtype="int32", **TAIL), S8),
    "dense": ([((2, 6), S8)], dict(weight=_w(6, 4), bias=RNG.integers(-50, 50, 4), multiplier=np.array([3, 5, 7, 9]),
                                   shift=np.array([5, 6, 5, 7]), acc_dtype="int32", **TAIL), S8),
    "max_pool2d": ([((2, 3, 4, 4), S8)], dict(pool_size=(2, 2), strides=(2, 2), padding=(0, 0, 0, 0),
                                              dilation=(1, 1), ceil_mode=False), S8),
    "avg_pool2d": ([((2, 3, 4, 4), S8)], dict(pool_size=(2, 2), strides=(2, 2), padding=(0, 0, 0, 0),
                                              multiplier=1, shift=2, **TAIL), S8),
    "global_avg_pool": ([((2, 3, 4, 4), S8)], dict(multiplier=3, shift=5, keepdims=True, **TAIL), S8),
    "add": ([((2, 3, 4, 4), S8), ((2, 3, 4, 4), S8)], dict(multipliers=(3, 5), shifts=(1, 2), **TAIL), S8),
    "mul": ([((2, 3, 4, 4), S8), ((2, 3, 4, 4), S8)], dict(multiplier=5, shift=8, **TAIL), S8),
    "requant": ([((2, 3, 4, 4), S16)], dict(multiplier=3, shift=9, **TAIL), S8),
    "concat": ([((2, 3, 4, 4), S8), ((2, 2, 4, 4), S8)], dict(axis=1), S8),
    "clip": ([((2, 3, 4, 4), S8)], dict(lo=0, hi=50), S8),
    "lut": ([((2, 3, 4, 4), S8)], dict(table=RNG.integers(-128, 128, 256), offset=-128), S8),
    "reshape": ([((2, 3, 4, 4), S8)], dict(shape=(-1, 48)), S8),
    "transpose": ([((2, 3, 4, 4), S8)], dict(axes=(0, 2, 3, 1)), S8),
    "pad": ([((2, 3, 4, 4), S8)], dict(pads=(0, 0, 1, 1, 0, 0, 1, 2)), S8),
    "lrn": ([((2, 5, 3, 3), S8)], dict(before=1, after=1, table=RNG.integers(1, 64, 200), index_shift=8, shift=6,
                                       **TAIL), S8),
    "hard_swish": ([((2, 3, 4, 4), S8)], dict(c3=24, c6=48, multiplier=5, shift=8, **TAIL), S8),
}


def one_node_graph(op: str) -> QGraph:
    """A graph of one ``op`` node over fresh inputs; the output shape from a reference run."""
    if op not in CASES:
        pytest.fail(f"op {op!r} of the table has no case in tests/test_op_table.py CASES: add one")
    inputs, attrs, out_t = CASES[op]
    qin = [QTensor(f"x{i}", shape, t, 1.0) for i, (shape, t) in enumerate(inputs)]
    node = QNode(op, op, [t.name for t in qin], "y", dict(attrs))
    tensors = {t.name: t for t in qin} | {"y": QTensor("y", (), out_t, 1.0)}
    graph = QGraph(qin, tensors, [node], ["y"])
    shape = reference.run(graph, [np.zeros(t.shape, np.int64) for t in qin])["y"].shape
    tensors["y"].shape = shape
    return graph


def _fused_main(graph: QGraph, op: str) -> relax.Function:
    mod = tvm.IRModule({"main": lower(graph)["main"]})
    return relax.transform.FuseOpsByPattern(patterns_for("t", {op}), bind_constants=False,
                                            annotate_codegen=False)(mod)


def _calls(func: relax.Function) -> list[str]:
    out = []
    for block in func.body.blocks:
        for b in block.bindings:
            if isinstance(b.value, relax.Call):
                v = b.value.op
                out.append(v.name_hint if isinstance(v, tvm.ir.GlobalVar) else str(v.name))
    return out


def _whole(mod: tvm.IRModule, op: str) -> bool:
    """Whether ``main`` is one call to one composite function named ``t.<op>``."""
    comps = {gv.name_hint: f for gv, f in mod.functions.items()
             if isinstance(f, relax.Function) and f.attrs is not None and "Composite" in f.attrs}
    main = _calls(mod["main"])
    return len(main) == 1 and main[0] in comps and str(comps[main[0]].attrs["Composite"]) == f"t.{op}"


@pytest.mark.parametrize("op", list(OPS))
def test_pattern_matches_its_own_lowering_whole(op):
    graph = one_node_graph(op)
    assert _whole(_fused_main(graph, op), op), f"{op}'s pattern does not take its lowered chain whole"
    others = [o for o in OPS if o != op and _whole(_fused_main(graph, o), o)]
    assert others == [], f"the chain of {op} is taken whole by the pattern of {others}"


@pytest.mark.parametrize("op", list(OPS))
def test_reference_and_tvm_build_agree(op):
    graph = one_node_graph(op)
    vm = relax.VirtualMachine(tvm.compile(lower(graph), target="llvm"), tvm.cpu())
    for seed in range(3):
        rng = np.random.default_rng(seed)
        codes = [rng.integers(t.qtype.lo, t.qtype.hi + 1, size=t.shape).astype(t.qtype.storage) for t in graph.inputs]
        want = reference.run(graph, codes)["y"]
        got = vm["main"](*[tvm.runtime.tensor(c) for c in codes]).numpy()
        assert str(got.dtype) == graph.tensors["y"].qtype.storage
        assert np.array_equal(got.astype(np.int64), want), f"{op}: TVM and the reference differ"
        assert np.unique(want).size > 1, f"{op}: a constant output would not test anything"


def test_attrs_reject_unknown_and_missing_keys():
    attrs = dict(CASES["clip"][1])
    with pytest.raises(InputError, match=r"the attrs of clip node 'relu' must have keys among \['hi', "
                                         r"'kept_channels', 'lo'\], not 'high'"):
        QNode("clip", "relu", ["x"], "y", {**attrs, "high": 3})
    with pytest.raises(InputError, match=r"the attrs of clip node 'relu' must include 'hi', not leave it out"):
        QNode("clip", "relu", ["x"], "y", {"lo": 0})
    with pytest.raises(InputError, match=r"the op of node 'n' must be one of \[.*'transpose'\], not 'softmax'"):
        QNode("softmax", "n", ["x"], "y", {})


def test_attrs_are_frozen_and_round_trip():
    node = QNode("conv2d", "c", ["x"], "y", dict(CASES["conv2d"][1]))
    assert isinstance(node.attrs, OPS["conv2d"].attrs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.attrs.groups = 2
    # absent optional fields stay absent: the saved form is the dict it came from
    assert sorted(node.attrs.to_dict()) == sorted(CASES["conv2d"][1])
    assert dataclasses.replace(node.attrs, groups=3).groups == 3 and node.attrs.groups == 1


def test_flags_are_the_sets_the_passes_used():
    # the sets quantize.py, layers.py and prune.py held before the table
    assert REQUANTIZING >= {"conv2d", "dense", "add", "mul", "lut", "global_avg_pool", "lrn"}
    assert {"max_pool2d", "reshape", "transpose", "pad", "concat", "clip"} <= PASSTHROUGH
    assert {"max_pool2d", "avg_pool2d", "global_avg_pool", "clip", "lut"} <= CHANNELWISE
    assert not REQUANTIZING & PASSTHROUGH
    assert [s.name for s in SPECS] == list(OPS)


def test_fused_activation_set_is_the_one_layers_used():
    from nnforge.compiler.ops import FUSES_ACT

    # layers.py's _FUSES_ACT before the table: a following clamp becomes these ops' lo/hi
    assert FUSES_ACT == {"conv2d", "dense", "add", "mul", "avg_pool2d", "global_avg_pool"}


def test_every_float_layer_op_has_its_float_side():
    """Every op a float layer can be (all but ``requant``, which only the quantizer makes) has a
    quantize rule and a float function; the float rules name Relax ops, and the grouping's table
    is the ops' rules in the table's order, then the host's softmax."""
    from nnforge.compiler.quant.layers import RULES

    made = {spec.name for spec in SPECS if spec.float_rules or spec.float_chain}
    assert made == set(OPS) - {"requant"}
    for spec in SPECS:
        assert (spec.quantize is None, spec.float_forward is None) == ((spec.name == "requant"),) * 2, spec.name
        assert all(name.startswith("relax.") and callable(fn) for name, fn in spec.float_rules), spec.name
    assert RULES[:-1] == [rule for spec in SPECS for rule in spec.float_rules]
    assert RULES[-1][0] == "relax.nn.softmax"


def test_the_table_loads_without_tvm():
    """The op modules never import tvm (their rules get the lowerer, the pattern builder and the
    layer builder): the table, the reference and the graph load without it."""
    import subprocess
    import sys

    code = ("import sys, nnforge.compiler.ops, nnforge.compiler.reference, nnforge.compiler.qgraph; "
            "print('tvm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
