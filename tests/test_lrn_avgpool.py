"""LRN and average pooling that excludes its padding (ONNX count_include_pad=0): their integer forms.

* ``window_counts`` (the divisor per output position) against hand-worked numbers;
* ``reference.lrn`` against the definition summed in Python integers, and its error against
  onnxruntime's float LRN on the same (dequantized) inputs: at most one output code;
* two small models (unsigned and signed LRN input, symmetric and one-sided pooling padding)
  through the TVM integer build (``simulate --check``) and the HLS C simulation (g++), every
  layer's codes equal to the numpy reference;
* the systolic backend leaves both ops on the host, saying why.
"""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.compiler import reference
from nnforge.compiler.quant.numerics import QType, lrn_table, window_counts
from nnforge.compiler.qgraph import QGraph, QNode, QTensor
from nnforge.simulate import simulate
from conftest import ort_run


def _model(relu: bool, size: int, pads: list[int], alpha: float = 0.02) -> onnx.ModelProto:
    """conv 3x3 -> [relu] -> LRN -> AveragePool 3x3 (count_include_pad=0, ``pads``) -> conv 1x1."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1")]
    if relu:
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
    nodes += [helper.make_node("LRN", [nodes[-1].output[0]], ["n1"], size=size, alpha=alpha, beta=0.75, bias=1.0,
                               name="lrn1"),
              helper.make_node("AveragePool", ["n1"], ["p1"], kernel_shape=[3, 3], pads=pads, count_include_pad=0,
                               name="avg1"),
              helper.make_node("Conv", ["p1", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "lrn_avg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


# TVM's ONNX importer pads an even-sized LRN window wrongly (size 4 gives C + 1 channels), so odd sizes only
MODELS = {"relu-lrn5-pad1": _model(True, 5, [1, 1, 1, 1]), "signed-lrn3-pad-tl": _model(False, 3, [0, 1, 2, 0])}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """name -> (float model, quantized model, 48 inputs, simulate's report)."""
    out = {}
    x = np.random.default_rng(1).normal(size=(48, 3, 9, 9)).astype(np.float32)
    for name, proto in MODELS.items():
        path = tmp_path_factory.mktemp("lrn") / f"{name}.onnx"
        onnx.save(proto, path)
        model = nnforge.load(path)
        q, rep = simulate(model, [x], None, "w8a8", calib=[x[:32]], check=True, batch_size=16)
        out[name] = (path, q, x, rep)
    return out


def test_window_counts_hand_worked():
    # 4x4, 3x3 window, stride 1, padding 1 all round: 2, 3, 3, 2 rows/cols inside
    assert window_counts((4, 4), (3, 3), (1, 1), (1, 1, 1, 1)).tolist() == [
        [4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]
    # 5 wide, window 2, stride 2, left pad 1, right pad 0: windows [-1,0], [1,2], [3,4] -> 1, 2, 2
    assert window_counts((1, 5), (1, 2), (1, 2), (0, 1, 0, 0)).tolist() == [[1, 2, 2]]
    # no padding: every window is whole
    assert np.all(window_counts((7, 7), (7, 7), (1, 1), (0, 0, 0, 0)) == 49)


def _lrn_node(table, k, n, before, after, lo=None, hi=None):
    return QNode("lrn", "lrn", ["x"], "lrn", dict(before=before, after=after, table=table, index_shift=k, shift=n,
                                                  lo=lo, hi=hi, rounding="RND", overflow="SAT"))


def test_lrn_reference_is_the_definition_in_python_integers():
    rng = np.random.default_rng(5)
    xt, yt = QType(8, True), QType(8, True)
    before, after = 2, 1
    bound = (before + after + 1) * 128 * 128
    table, k, n = lrn_table(bound, 0.9, 1.0, 3e-5, 0.75)
    assert table.size <= 4096 and (bound >> k) == table.size - 1 and table.max() < 1 << 15
    x = np.concatenate([rng.integers(-128, 128, size=(3, 6, 2, 3)), np.full((1, 6, 2, 3), -128)])
    got = reference.OPS["lrn"](_lrn_node(table, k, n, before, after, lo=-100), [x], yt)
    for idx in np.ndindex(*x.shape):
        b, c, i, j = idx
        s = sum(int(x[b, cc, i, j]) ** 2 for cc in range(max(0, c - before), min(6, c + after + 1)))
        v = (int(x[idx]) * int(table[s >> k]) + (1 << (n - 1))) >> n  # RND: floor((v + 2^(n-1)) / 2^n)
        assert got[idx] == min(max(v, -100), 127), idx
    assert np.unique(got).size > 20  # not a vacuous comparison


@pytest.mark.parametrize("alpha", [1e-4, 0.02, 1.0])
def test_lrn_error_against_onnxruntime_is_at_most_one_code(alpha):
    """The table (bucket middles, 15-bit factors) and the final rounding, against the float LRN on
    the same real inputs: at most one output code off, most exact."""
    s_x, s_y = 0.05, 0.04
    xt, yt = QType(8, False), QType(8, False)
    bound = 5 * 255 * 255
    table, k, n = lrn_table(bound, s_x / s_y, 1.0, alpha / 5 * s_x**2, 0.75)
    x = np.random.default_rng(2).integers(0, 256, size=(4, 16, 5, 5))
    got = reference.OPS["lrn"](_lrn_node(table, k, n, 2, 2), [x], yt)
    node = helper.make_node("LRN", ["x"], ["y"], size=5, alpha=alpha, beta=0.75, bias=1.0)
    g = helper.make_graph([node], "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    want = ort_run(m, {"x": (x * s_x).astype(np.float32)})[0] / s_y
    inside = want < 255  # saturated codes are clamped on purpose
    err = np.abs(got - want)[inside]
    assert err.max() <= 1.0, err.max()
    assert np.mean(err <= 0.5 + 1e-3) > 0.95
    assert np.unique(got).size > 20


@pytest.mark.slow  # two TVM builds per model (the module fixture)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_tvm_integer_build_equals_the_reference(quantized, name):
    _, q, _, rep = quantized[name]
    ops = [n.op for n in q.graph.nodes]
    assert "lrn" in ops and "avg_pool2d" in ops
    avg = next(n for n in q.graph.nodes if n.op == "avg_pool2d")
    assert np.ndim(avg.attrs.multiplier) == 2  # the per-position form really is exercised
    assert rep.reference_mismatches == 0


@pytest.mark.slow  # two TVM builds per model (the module fixture)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_float_layers_match_onnxruntime(quantized, name):
    """The float model nnforge calibrates on (LRN found whole, the pool's divisor per position)."""
    path, _, x, _ = quantized[name]
    model = nnforge.load(path)
    got = list(model.run(x[:4]).values())[0]
    np.testing.assert_allclose(got, ort_run(path, {"x": x[:4]})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # two TVM builds per model (the module fixture)
@pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_hls_c_simulation_equals_the_reference(quantized, name, tmp_path):
    from nnforge.backends.hls import HLSBackend
    from nnforge.backends.partition import partition
    from nnforge.hw_sim import csim

    _, q, x, _ = quantized[name]
    backend = HLSBackend()
    design = partition(q.graph, backend)
    assert [k.node.op for k in design.kernels] == [n.op for n in q.graph.nodes] and not design.host
    files = backend.codegen(design, {})
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    meta = json.loads(files["csim.json"])
    sim = csim.CSim(csim.build(tmp_path / "src", "nnforge_top", opt="-O1"), "nnforge_top", meta["in_size"],
                    meta["out_size"], meta["trace_size"])
    t = q.graph.inputs[0].qtype
    codes = np.concatenate([q.graph.quantize_inputs([x])[0], np.full((1, 3, 9, 9), t.lo), np.full((1, 3, 9, 9), t.hi)])
    want, got = reference.run(q.graph, [codes]), sim.trace(codes)
    bad = {n.name: int(np.count_nonzero(got[n.name] != want[n.output])) for n in q.graph.nodes}
    assert sum(bad.values()) == 0, bad


@pytest.mark.slow  # two TVM builds per model (the module fixture)
def test_systolic_backend_leaves_both_on_the_host_with_a_reason(quantized):
    """Its WINDOW unit requantizes a tensor by one (M, n) and it has no LRN unit: a trailing pool runs on
    the host (the reference), and a layer the array needs after either is an error that says why."""
    from nnforge.compiler.errors import InputError
    from systolic_util import BACKEND, design, options, run_plan, with_shapes

    rng = np.random.default_rng(3)
    conv = QNode("conv2d", "a", ["x"], "a", dict(
        weight=rng.integers(-100, 100, size=(4, 3, 3, 3)), bias=rng.integers(-300, 300, 4), strides=(1, 1),
        padding=(1,) * 4, dilation=(1, 1), groups=1, multiplier=np.full(4, 1 << 13), shift=np.full(4, 20),
        lo=None, hi=None, rounding="RND", overflow="SAT", acc_dtype="int32"))
    counts = window_counts((4, 4), (3, 3), (1, 1), (1, 1, 1, 1))
    from nnforge.compiler.quant.numerics import quantize_multiplier

    m, n = quantize_multiplier(1.0 / counts, "float")
    avg = QNode("avg_pool2d", "avg", ["a"], "avg", dict(pool_size=(3, 3), strides=(1, 1), padding=(1, 1, 1, 1),
                                                        multiplier=m, shift=n, lo=None, hi=None, rounding="RND",
                                                        overflow="SAT"))
    s8 = QType(8, True)
    x = QTensor("x", ("batch", 3, 4, 4), s8, 1.0)
    codes = [rng.integers(-128, 128, size=(3, 3, 4, 4))]
    g = with_shapes(QGraph([x], {"x": x, "a": QTensor("a", (), s8, 1.0), "avg": QTensor("avg", (), s8, 1.0)},
                           [conv, avg], ["avg"]), codes)
    d = design(g)
    plan = BACKEND.plan(d, options())
    ours, ref = run_plan(plan, g, codes), reference.run(g, codes)
    assert ours and all(np.array_equal(v, ref[k]) for k, v in ours.items())
    assert [k.node.name for k in d.kernels] == ["a", "avg"]  # the pattern matched; the mapping refused it
    assert [h.name for h in plan.host] == ["avg"]
    assert "excludes its padding" in plan.host[0].reason and "one multiplier per tensor" in plan.host[0].reason
    with pytest.raises(InputError, match=r"no instruction for 'lrn'.*cannot stay on the host: conv2d"):
        BACKEND.check_design(design(quantized["relu-lrn5-pad1"][1].graph), options())


@functools.lru_cache(maxsize=1)
def _node_tests() -> dict:
    import warnings

    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators warn on purpose (overflow, log 0)
        return {t.name: t for t in load_model_tests(kind="node")}


def _node_case(name: str):
    case = _node_tests()[name]
    model = case.model if case.model is not None else onnx.load(f"{case.model_dir}/model.onnx")
    if case.data_sets is not None:
        (inputs, outputs), = case.data_sets[:1]
    else:
        import glob

        def read(path):
            t = onnx.TensorProto()
            t.ParseFromString(open(path, "rb").read())
            return numpy_helper.to_array(t)

        d = sorted(glob.glob(f"{case.model_dir}/test_data_set_*"))[0]
        inputs, outputs = [read(f"{d}/input_0.pb")], [read(f"{d}/output_0.pb")]
    return model, inputs[0], outputs[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["test_averagepool_2d_pads", "test_averagepool_2d_same_upper",
                                  "test_averagepool_2d_same_lower", "test_lrn", "test_lrn_default"])
def test_onnx_node_cases_quantized(case, tmp_path):
    """The onnx backend node cases of both ops (count_include_pad=0 pools with symmetric and one-sided
    padding), quantized at w16a16: the TVM integer build equals the reference, and the codes are
    onnxruntime's float op on the same dequantized input, rounded, to within the contract's 15-bit
    multipliers (relative 2^-15 of the value, at most one code at 16 bits)."""
    model, x, want = _node_case(case)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    q, rep = simulate(nnforge.load(path), [x], None, "w16a16", calib=[x], check=True)
    assert rep.reference_mismatches == 0
    op = "lrn" if "lrn" in case else "avg_pool2d"
    node = next(n for n in q.graph.nodes if n.op == op)
    if op == "avg_pool2d":
        assert np.ndim(node.attrs.multiplier) == 2  # border windows really divide by fewer taps
    codes_in = q.graph.quantize_inputs([x])[0]
    codes = reference.run(q.graph, [codes_in])[node.output]
    t_in, t_out = q.graph.inputs[0], q.graph.tensors[node.output]
    exact = ort_run(model, {model.graph.input[0].name: (codes_in * t_in.scale).astype(np.float32)})[0] / t_out.scale
    inside = np.abs(exact) < t_out.qtype.hi  # saturated codes are clamped on purpose
    err = np.abs(codes - exact)[inside]
    # rounding, plus the factor's rounding (M or F[j] within 2^-15 of the largest output; LRN's buckets are
    # far narrower than its factor's scale here)
    bound = 0.5 + 1.1 * np.abs(exact).max() * 2.0**-15 + 0.02
    print(f"{case}: max error {err.max():.3f} codes (bound {bound:.3f}), mean {err.mean():.3f}; "
          f"against the expected output {np.abs(codes * t_out.scale - want).max() / t_out.scale:.3f}")
    assert err.max() <= bound and inside.mean() > 0.99
