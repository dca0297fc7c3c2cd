"""hard_swish, the worked example of docs/adding_an_op.md: ONNX HardSwish end to end.

* the integer definition (``compiler/ops/hard_swish.py``) against hand-worked numbers and against
  the definition written out in Python integers, at every width from 4 to 16 bits;
* its error against the real function: at most half an output code plus 3/4 of an input code;
* the TVM integer build (default and fast forms) equal to the reference on every input code, and
  the op's own pattern taking its chain whole;
* a small model (conv -> HardSwish -> global average pool -> gemm) at w8a8 and w4a6: float run
  against onnxruntime, ``simulate --check``, the HLS C simulation (plain and against ap_int), and the
  systolic array (functional model, and RTL in the slow tier), every layer's codes equal to the
  numpy reference.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.compiler import reference
from nnforge.compiler.ops import hard_swish as hs
from nnforge.compiler.qgraph import QGraph, QNode, QTensor
from nnforge.compiler.quant.numerics import QType, quantize_multiplier
from nnforge.simulate import simulate
from conftest import ort_run

WIDTHS = (4, 5, 6, 8, 10, 12, 16)


def _node(s_x: float, s_y: float, name: str = "hs", src: str = "x", rounding: str = "RND",
          overflow: str = "SAT") -> QNode:
    c3, c6, ratio = hs.constants(s_x, s_y)
    m, n = quantize_multiplier(ratio, "float")
    return QNode("hard_swish", name, [src], name, dict(c3=c3, c6=c6, multiplier=m, shift=n, lo=None, hi=None,
                                                       rounding=rounding, overflow=overflow))


def _run(node: QNode, x: np.ndarray, out: QType) -> np.ndarray:
    return hs.reference(node, [np.asarray(x, np.int64)], out)


def test_constants_hand_worked():
    assert hs.constants(0.5, 0.5) == (6, 12, 0.5 / (0.5 * 12))  # 3 / 0.5 = 6 codes
    assert hs.constants(0.3366, 1.0)[:2] == (9, 18)  # 3 / 0.3366 = 8.91 rounds to 9 (w4a6 below)
    assert hs.constants(0.36, 1.0)[:2] == (8, 16)  # 8.33 rounds down to 8
    assert hs.constants(8.0, 8.0)[:2] == (1, 2)  # coarser than 3: the gate still has a middle code
    with pytest.raises(ValueError, match="finite code"):
        hs.constants(1e-320, 1.0)


def test_reference_hand_worked():
    """s_x = s_y = 0.5: c3 = 6, c6 = 12, M / 2^n = 1/12 = 21845 / 2^18."""
    node = _node(0.5, 0.5)
    assert (int(node.attrs.multiplier), int(node.attrs.shift)) == (21845, 18)
    x = np.array([-8, -6, -3, 0, 2, 6, 10, 127])
    # t = clamp(x + 6, 0, 12) = 0, 0, 3, 6, 8, 12, 12, 12;  y = (x * t * 21845 + 2^17) >> 18
    # x = -3: -9 * 21845 = -196605 -> floor(-65533 / 2^18) = -1   (real: -1.5 * 1.5 / 6 = -0.375 = -0.75 codes)
    # x = 2:  16 * 21845 = 349520 -> floor(480592 / 2^18) = 1      (real: 1 * 4 / 6 = 0.667 = 1.33 codes)
    # x = 6:  72 * 21845 -> floor(1703912 / 2^18) = 6             (real 3.0: the identity from here)
    # x = 127: 1524 * 21845 -> 127.0 rounds to 127
    assert _run(node, x, QType(8, True)).tolist() == [0, 0, -1, 0, 1, 6, 10, 127]


@pytest.mark.parametrize("bits", WIDTHS)
def test_reference_is_the_definition_in_python_integers(bits):
    """Every input code (a sample of 4,096 at 16 bits), for a few scales, against plain Python ints."""
    rng = np.random.default_rng(bits)
    t = QType(bits, True)
    codes = np.arange(t.lo, t.hi + 1) if bits <= 12 else rng.integers(t.lo, t.hi + 1, 4096)
    for threshold in (0.7, 3.0, 7.9):
        s_x, s_y = threshold / t.qmax, threshold / t.qmax * rng.uniform(0.5, 1.5)
        node = _node(s_x, s_y, rounding="TRN" if threshold == 3.0 else "RND")
        a = node.attrs
        c3 = max(1, int(np.floor(3 / s_x + 0.5)))
        m, n = int(a.multiplier), int(a.shift)
        half = 1 << (n - 1) if a.rounding == "RND" else 0
        want = [min(max((x * min(max(x + c3, 0), 2 * c3) * m + half) >> n, t.lo), t.hi) for x in codes.tolist()]
        assert (a.c3, a.c6) == (c3, 2 * c3)
        assert _run(node, codes, t).tolist() == want


@pytest.mark.parametrize("bits", WIDTHS)
def test_error_against_the_real_function(bits):
    """|y s_y - hardswish(x s_x)| <= s_y / 2 (output rounding) + 3/4 s_x (the gate's corners sit on
    codes, up to half a code from -3 and 3, where the slope is at most 3/2) + M's 2^-15, on every
    input code whose real output the type holds; exactly 0 left of -c3 and exactly the rescale right
    of c3."""
    rng = np.random.default_rng(100 + bits)
    t = QType(bits, True)
    x = np.arange(t.lo, t.hi + 1) if bits <= 12 else np.unique(rng.integers(t.lo, t.hi + 1, 8192))
    for threshold in rng.uniform(0.3, 12.0, 8):
        s_x = threshold / t.qmax
        s_y = max(threshold * min(threshold + 3, 6) / 6, 0.375) / t.qmax
        node = _node(s_x, s_y)
        y = _run(node, x, t)
        real = x * s_x * np.clip(x * s_x + 3, 0, 6) / 6
        held = np.abs(real) <= t.hi * s_y
        err = np.abs(y * s_y - real)[held]
        assert err.max() <= 0.5 * s_y + 0.75 * s_x + 2.0**-14 * np.abs(real[held]).max()
        c3 = node.attrs.c3
        assert np.all(y[x <= -c3] == 0)
        right = (x >= c3) & held  # t = c6 there: the rescale x * s_x / s_y, rounded once, no corner error
        assert np.all(np.abs(y * s_y - real)[right] <= 0.5 * s_y + 2.0**-14 * np.abs(real[right]).max(initial=0))


def _chain() -> tuple[QGraph, list[np.ndarray]]:
    """x (s16) -> hard_swish -> s12 -> hard_swish -> s8 -> hard_swish -> s6 -> hard_swish -> s4, with
    RND/SAT, TRN/SAT, RND/WRAP (a scale that wraps) and TRN/WRAP; the input is every 16-bit code."""
    widths, scales = [16, 12, 8, 6, 4], [8.0 / 32767, 6.0 / 2047, 5.0 / 127, 2.0 / 31, 3.5 / 7]
    modes = [("RND", "SAT"), ("TRN", "SAT"), ("RND", "WRAP"), ("TRN", "WRAP")]
    tensors = {"x": QTensor("x", ("batch", 1 << 16), QType(16, True), scales[0])}
    nodes, src = [], "x"
    for k in range(1, len(widths)):
        name = f"hs{k}"
        nodes.append(_node(scales[k - 1], scales[k], name, src, *modes[k - 1]))
        tensors[name] = QTensor(name, ("batch", 1 << 16), QType(widths[k], True), scales[k])
        src = name
    graph = QGraph([tensors["x"]], tensors, nodes, [src])
    codes = np.arange(-(1 << 15), 1 << 15).reshape(1, -1)
    return graph, [codes]


@pytest.fixture(scope="module")
def chain():
    return _chain()


@pytest.mark.parametrize("fast", [False, True], ids=["default", "fast"])
def test_tvm_integer_build_equals_the_reference(chain, fast):
    import tvm
    from tvm import relax

    from nnforge.compiler.lower.lower_relax import lower

    graph, codes = chain
    vm = relax.VirtualMachine(tvm.compile(lower(graph, fast=fast), target="llvm"), tvm.cpu())
    got = vm["trace"](tvm.runtime.tensor(codes[0].astype(np.int16)))
    want = reference.run(graph, codes)
    for name, g in zip(graph.node_outputs(), got):
        assert str(g.numpy().dtype) == graph.tensors[name].qtype.storage
        assert np.array_equal(g.numpy().astype(np.int64), want[name]), name
    assert np.unique(want["hs2"]).size > 100  # s8: the chain is exercised, not saturated (y >= -0.375)
    assert want["hs2"].max() * graph.tensors["hs2"].scale > 2 * 31 * graph.tensors["hs3"].scale  # hs3 wraps


@pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")
def test_hls_c_simulation_of_the_chain_equals_the_reference(chain, tmp_path):
    """The kernel at four widths, both roundings and both overflow modes, on every 16-bit input code."""
    import json

    from nnforge.backends.hls import HLSBackend
    from nnforge.backends.partition import partition
    from nnforge.hw_sim import csim

    graph, codes = chain
    backend = HLSBackend()
    files = backend.codegen(partition(graph, backend), {})
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    meta = json.loads(files["csim.json"])
    sim = csim.CSim(csim.build(tmp_path / "src", "nnforge_top", opt="-O1"), "nnforge_top", meta["in_size"],
                    meta["out_size"], meta["trace_size"])
    want, got = reference.run(graph, codes), sim.trace(codes[0])
    assert all(np.array_equal(got[n.name], want[n.output]) for n in graph.nodes)


def test_the_pattern_takes_its_lowering_whole(chain):
    """Partitioned for the hls backend, every hard_swish is one composite (not the requant pattern's tail)."""
    from nnforge.backends.hls import HLSBackend
    from nnforge.backends.partition import partition

    graph, _ = chain
    design = partition(graph, HLSBackend())
    assert [(k.node.op, k.node.name) for k in design.kernels] == [(n.op, n.name) for n in graph.nodes]
    assert not design.host


# -- a small model, end to end ---------------------------------------------------------------------------

def _model() -> onnx.ModelProto:
    """conv 3x3 -> HardSwish -> GlobalAveragePool -> Flatten -> Gemm (opset 14), fixed seed."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (6, 2, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.5, 6).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (3, 6)).astype(np.float32), "wd"),
             numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), "bd")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c"], ["h"], name="hswish"),
             helper.make_node("GlobalAveragePool", ["h"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "hard_swish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


BITS = ("w8a8", "w4a6")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(path, 48 inputs: 32 to calibrate on, 16 to test)."""
    path = tmp_path_factory.mktemp("hard_swish") / "hard_swish.onnx"
    onnx.save(_model(), path)
    return path, np.random.default_rng(1).normal(0, 1.5, (48, 2, 6, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def quantized(model):
    """bits -> (quantized model, simulate's report)."""
    path, x = model
    loaded = nnforge.load(path)
    return {bits: simulate(loaded, [x[32:]], None, bits, calib=[x[:32]], check=True) for bits in BITS}


def test_float_run_matches_onnxruntime(model):
    """Same float32 ops in another order (the conv's sums): agreement to float32 rounding."""
    path, x = model
    got = list(nnforge.load(path).run(x[:8]).values())[0]
    np.testing.assert_allclose(got, ort_run(path, {"x": x[:8]})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bits", BITS)
def test_quantized_model_tvm_equals_the_reference(quantized, bits):
    q, rep = quantized[bits]
    assert [n.op for n in q.graph.nodes] == ["conv2d", "hard_swish", "global_avg_pool", "reshape", "dense"]
    node = q.graph.nodes[1]
    s_x = q.graph.tensors[node.inputs[0]].scale
    assert node.attrs.c3 == max(1, int(np.floor(3 / s_x + 0.5)))
    assert rep.reference_mismatches == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")
@pytest.mark.parametrize("bits", BITS)
def test_hls_c_simulation_equals_the_reference(quantized, model, bits, tmp_path):
    q, _ = quantized[bits]
    _, x = model
    project = nnforge.compile_model(q, "hls", tmp_path / "prj", golden_inputs=[x[32:40]])
    header = (tmp_path / "prj" / "src" / "kernels" / "hard_swish.h").read_text()
    c3 = q.graph.nodes[1].attrs.c3
    assert f"clamp(nnf::add(x, {c3}), 0, {2 * c3})" in header  # the constants come from Python
    report = nnforge.verify(project, x[32:])
    assert report.mismatches == 0 and report.samples == 16


@pytest.mark.slow  # ap_int.h makes the g++ build ~10 s
@pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")
def test_hls_c_simulation_against_ap_int(quantized, model, tmp_path):
    from nnforge.compiler.errors import InputError
    from nnforge.hw_sim import ap_types

    try:
        ap_types.find()
    except InputError as err:
        pytest.skip(str(err))
    q, _ = quantized["w4a6"]
    project = nnforge.compile_model(q, "hls", tmp_path / "prj", golden_inputs=[model[1][32:40]])
    report = nnforge.verify(project, ap_types=True)
    assert report.mismatches == 0


@pytest.mark.parametrize("bits", BITS)
def test_systolic_functional_model_equals_the_reference(quantized, model, bits):
    """The array runs hard_swish as one ELTWISE LUT whose table is the op's reference on every code."""
    from systolic_util import BACKEND, design, options, run_plan

    q, _ = quantized[bits]
    d = design(q.graph)
    plan = BACKEND.plan(d, options())
    assert not plan.host and [k.node.op for k in d.kernels] == [n.op for n in q.graph.nodes]
    lut = [i for i in plan.program if i.layer == "hswish" and i.note == "LUT"]
    assert len(lut) == 1
    codes = q.graph.quantize_inputs([model[1][32:]])
    ours, ref = run_plan(plan, q.graph, codes), reference.run(q.graph, codes)
    assert ours.keys() >= {n.output for n in q.graph.nodes}
    assert all(np.array_equal(v, ref[k]) for k, v in ours.items())


def test_systolic_leaves_a_wide_hard_swish_on_the_host_with_a_reason():
    from systolic_util import BACKEND, design, options, with_shapes

    s10 = QType(10, True)
    rescale = QNode("requant", "rq", ["x"], "rq", dict(multiplier=1, shift=0, lo=None, hi=None, rounding="RND",
                                                        overflow="SAT"))  # a layer the array takes, first
    tensors = {name: QTensor(name, ("batch", 64), s10, 0.01) for name in ("x", "rq", "hs")}
    graph = QGraph([tensors["x"]], tensors, [rescale, _node(0.01, 0.01, src="rq")], ["hs"])
    graph = with_shapes(graph, [np.zeros((1, 64), np.int64)])
    plan = BACKEND.plan(design(graph), options(in_bits=16))
    assert [h.name for h in plan.host] == ["hs"]
    assert "must be at most 8 bits wide for its lookup table" in plan.host[0].reason


@pytest.mark.slow  # the RTL harness build (~60 s of CPU, cached by content and shared with the systolic tests)
@pytest.mark.parametrize("bits", BITS)
def test_systolic_rtl_equals_the_reference(quantized, model, bits, tmp_path):
    from nnforge.hw_sim.rtl import simulator_missing

    missing = simulator_missing("verilator")
    if missing:
        pytest.skip(missing)
    q, _ = quantized[bits]
    project = nnforge.compile_model(q, "systolic", tmp_path / "prj", golden_inputs=[model[1][32:36]])
    report = nnforge.verify(project)
    assert report.mismatches == 0 and report.samples == 4
