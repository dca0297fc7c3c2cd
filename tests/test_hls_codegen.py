"""The hls backend's sources through g++ (C simulation), compared with the numpy reference.

Every node's output codes from the generated C (``<top>_csim`` with a trace) must equal
``reference.run`` exactly, on every input: the example models at w8a8 and w4a8 (and one
pow2/TRN/WRAP config), the hand-built graph of test_partition (WRAP signed and unsigned, TRN,
negative shifts, an int64 accumulator, lut, requant, add) on random and extreme inputs, the three
weight storage forms, and a model with a hostile node name.
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nnforge
from nnforge.backends.hls import HLSBackend
from nnforge.backends.partition import partition
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.quant_config import LayerQuant, QuantConfig
from nnforge.hw_sim import csim
from conftest import EXAMPLES, ZOO
from test_partition import build_graph

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")

HOSTILE = 'x"); system("rm -rf /"); //'
BACKEND = HLSBackend()
POW2_TRN_WRAP = QuantConfig(default=LayerQuant(8, 8, scale_mode="pow2", rounding="TRN", overflow="WRAP"))


# -- helpers ----------------------------------------------------------------------------------------------

def _quantize(path: Path, config):
    model = nnforge.load(path)
    if path.name.startswith("digits"):
        x = np.load(EXAMPLES / "digits_calib.npz")["x"]
        x = x.reshape(len(x), -1) if len(model.inputs[0].shape) == 2 else x
    else:
        x = np.random.default_rng(0).normal(size=[32, *model.inputs[0].shape[1:]]).astype("float32")
    return nnforge.quantize(model, [x], config)


def _test_codes(path: Path, q) -> np.ndarray:
    """digits: the 450 test images; zoo models: 200 random normal inputs."""
    if path.name.startswith("digits"):
        x = np.load(EXAMPLES / "digits_test.npz")["x"]
        shape = q.graph.inputs[0].shape
        x = x.reshape(len(x), -1) if len(shape) == 2 else x
    else:
        x = np.random.default_rng(1).normal(size=[200, *q.graph.inputs[0].shape[1:]]).astype("float32")
    return q.graph.quantize_inputs([x])[0]


def _write(files: dict[str, str], root: Path) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _csim(graph, root: Path, options: dict | None = None) -> tuple[dict[str, str], csim.CSim, float]:
    """codegen -> g++ (-O1) -> CSim; also the build time."""
    design = partition(graph, BACKEND)
    files = BACKEND.codegen(design, options or {})
    _write(files, root)
    top = BACKEND.check_options(options)["top"]
    t0 = time.perf_counter()
    so = csim.build(root / "src", top, opt="-O1")
    seconds = time.perf_counter() - t0
    m = __import__("json").loads(files["csim.json"])
    return files, csim.CSim(so, top, m["in_size"], m["out_size"], m["trace_size"]), seconds


def _mismatches(graph, sim: csim.CSim, codes: np.ndarray) -> dict[str, int]:
    """Differing codes per node output (C trace vs reference), over all samples."""
    want = reference.run(graph, [codes])
    got = sim.trace(codes)
    out = {}
    for node in graph.nodes:
        assert got[node.name].shape == want[node.output].shape, node.name
        out[node.name] = int(np.count_nonzero(got[node.name] != want[node.output]))
    out["(run)"] = int(np.count_nonzero(sim.run(codes) != want[graph.outputs[0]]))
    return out


# -- every example model ----------------------------------------------------------------------------------

MODELS = [EXAMPLES / "digits_cnn.onnx", EXAMPLES / "digits_mlp.onnx"] + [
    ZOO / f"{n}.onnx" for n in ("dwsep", "residual", "fire", "factorised", "mlp_bn_train")]
CASES = [pytest.param(p, bits, id=f"{p.stem}-{bits}",
                      marks=[] if (p.stem, bits) in {("digits_cnn", "w8a8"), ("digits_mlp", "w4a8")}
                      else [pytest.mark.slow])
         for p in MODELS for bits in ("w8a8", "w4a8")]
CASES.append(pytest.param(ZOO / "residual.onnx", POW2_TRN_WRAP, id="residual-pow2-TRN-WRAP", marks=pytest.mark.slow))


@pytest.mark.parametrize("path,config", CASES)
def test_every_layer_bit_exact(path, config, tmp_path):
    q = _quantize(path, config)
    codes = _test_codes(path, q)
    _, sim, seconds = _csim(q.graph, tmp_path)
    bad = _mismatches(q.graph, sim, codes)
    print(f"\n[hls csim] {path.stem} {config if isinstance(config, str) else 'pow2/TRN/WRAP'}: "
          f"{len(codes)} samples, {len(q.graph.nodes)} layers, mismatches {sum(bad.values())}, "
          f"g++ -O1 build {seconds:.2f} s")
    assert len(codes) >= 200
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}
    if config is POW2_TRN_WRAP:  # the config really reached the nodes
        assert {n.attrs.overflow for n in q.graph.nodes if "overflow" in n.attrs.to_dict()} == {"WRAP"}


# -- the hand-built graph: every variant of the requantization chain ------------------------------------

def test_hand_built_graph_random_and_extreme_inputs(tmp_path):
    graph = build_graph()
    t = graph.inputs[0].qtype
    rng = np.random.default_rng(3)
    codes = np.concatenate([rng.integers(t.lo, t.hi + 1, size=(300, 3, 8, 8)),
                            np.full((1, 3, 8, 8), t.lo), np.full((1, 3, 8, 8), t.hi),
                            rng.choice(np.array([t.lo, t.hi]), size=(20, 3, 8, 8))])
    files, sim, _ = _csim(graph, tmp_path)
    bad = _mismatches(graph, sim, codes)
    assert sum(bad.values()) == 0, bad
    src = "".join(v for k, v in files.items() if k.endswith((".h", ".cpp")))
    for step in ("nnf::wrap(", "nnf::clamp(", "a_fc1", "nnf_acc<64> a_fc1"):  # WRAP, clamps, int64 accumulator
        assert step in src, step
    # simulate() (the backend API) agrees, keyed by tensor name
    got = BACKEND.simulate(tmp_path, [codes[:8]]).tensors
    want = reference.run(graph, [codes[:8]])
    assert all(np.array_equal(got[n], want[n]) for n in graph.node_outputs())
    with pytest.raises(InputError, match="input codes must lie in"):
        BACKEND.simulate(tmp_path, [np.full((1, 3, 8, 8), 1000)])


# -- weight storage forms ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp():
    return _quantize(EXAMPLES / "digits_mlp.onnx", "w8a8")


def _array(text: str, name: str) -> tuple[str, np.ndarray]:
    """(C type, values) of ``static const T name[N] = {...};`` in a generated header."""
    m = re.search(r"static const (\S+) " + re.escape(name) + r"\[(\d+)\] = \{(.*?)\};", text, re.S)
    assert m, name
    vals = [int(v.rstrip("ULul")) for v in re.findall(r"-?\d+[ULul]*", m.group(3))]
    assert len(vals) == int(m.group(2))
    return m.group(1), np.array(vals, dtype=object)


def test_storage_forms_codebook_sparse_dense(mlp, tmp_path):
    graph = copy.deepcopy(mlp.graph)
    rng = np.random.default_rng(5)
    fc0, fc1, fc2 = graph.nodes
    book = np.array([-37, 0, 5, 60])  # 4 entries incl. 0: 2-bit indices
    fc0.attrs = replace(fc0.attrs, weight=rng.choice(book, size=fc0.attrs.weight.shape), codebook=book)
    w1 = fc1.attrs.weight.copy()
    w1[rng.random(w1.shape) < 0.85] = 0  # pruned: >= 80% zeros
    fc1.attrs = replace(fc1.attrs, weight=w1)
    design = partition(graph, BACKEND)
    info = {r["name"]: r for r in BACKEND.layer_info(design)}
    assert [info[n.name]["form"] for n in graph.nodes] == ["codebook", "sparse", "dense"]
    assert info[fc0.name]["weight_bytes"] < info[fc0.name]["dense_weight_bytes"] / 3
    assert info[fc1.name]["weight_bytes"] < info[fc1.name]["dense_weight_bytes"] / 2
    files, sim, _ = _csim(graph, tmp_path)
    codes = _test_codes(EXAMPLES / "digits_mlp.onnx", mlp)
    bad = _mismatches(graph, sim, codes)
    assert sum(bad.values()) == 0, bad

    # the packed words decode back to the indices (parsed from the emitted header)
    ident = design.kernel(fc0.name).ident
    text = files[f"src/weights/{ident}.h"]
    _, cb = _array(text, f"CB_{ident}")
    assert cb.tolist() == book.tolist()
    ctype, words = _array(text, f"IX_{ident}")
    word_bits = {"uint32_t": 32, "uint64_t": 64}[ctype]
    k = math.ceil(math.log2(len(book)))
    per = word_bits // k
    idx = np.array([(int(w) >> (f * k)) & ((1 << k) - 1) for w in words for f in range(per)])
    flat = fc0.attrs.weight.T.reshape(-1)  # one row per output neuron
    assert np.array_equal(idx[: flat.size], np.searchsorted(book, flat))
    assert not idx[flat.size:].any() and len(words) == -(-flat.size // per)
    # the sparse layer stores its nonzeros only, row by row
    ident1 = design.kernel(fc1.name).ident
    text1 = files[f"src/weights/{ident1}.h"]
    _, vals = _array(text1, f"V_{ident1}")
    _, rowptr = _array(text1, f"RP_{ident1}")
    assert np.array_equal(vals.astype(np.int64), w1.T[w1.T != 0])
    assert np.array_equal(np.diff(rowptr.astype(np.int64)), np.count_nonzero(w1, axis=0))


def test_sparse_with_codebook_and_conv_forms(tmp_path):
    """A pruned and shared conv layer (sparse form with codebook indices) and a pruned 1x1 conv."""
    q = _quantize(ZOO / "dwsep.onnx", "w8a8")
    graph = copy.deepcopy(q.graph)
    rng = np.random.default_rng(6)
    stem, _, pw = graph.nodes[0], graph.nodes[1], graph.nodes[2]
    book = np.array([-90, -20, 0, 15, 70])
    w = rng.choice(book, size=stem.attrs.weight.shape)
    w[rng.random(w.shape) < 0.9] = 0
    stem.attrs = replace(stem.attrs, weight=w, codebook=book)
    w2 = pw.attrs.weight.copy()
    w2[rng.random(w2.shape) < 0.9] = 0
    pw.attrs = replace(pw.attrs, weight=w2)
    design = partition(graph, BACKEND)
    forms = {r["name"]: r["form"] for r in BACKEND.layer_info(design)}
    assert forms[stem.name] == "sparse" and forms[pw.name] == "sparse"
    _, sim, _ = _csim(graph, tmp_path)
    codes = _test_codes(ZOO / "dwsep.onnx", q)
    bad = _mismatches(graph, sim, codes)
    assert sum(bad.values()) == 0, bad


# -- safety and determinism --------------------------------------------------------------------------------

def test_hostile_node_name(mlp, tmp_path):
    graph = copy.deepcopy(mlp.graph)
    node = graph.nodes[0]
    old = node.output
    node.name = node.output = HOSTILE
    graph.tensors[HOSTILE] = graph.tensors.pop(old)
    graph.tensors[HOSTILE].name = HOSTILE
    for n in graph.nodes:
        n.inputs = [HOSTILE if i == old else i for i in n.inputs]
    files, sim, _ = _csim(graph, tmp_path)
    for rel, text in files.items():
        if rel.endswith((".h", ".cpp")):
            assert HOSTILE not in text and "system(" not in text and "rm -rf" not in text, rel
    assert HOSTILE in files["csim.json"].encode().decode("unicode_escape")  # named only in the manifest
    codes = _test_codes(EXAMPLES / "digits_mlp.onnx", mlp)
    bad = _mismatches(graph, sim, codes)
    assert sum(bad.values()) == 0, bad
    assert HOSTILE in sim.trace(codes[:1])


def test_codegen_is_deterministic(mlp):
    a = BACKEND.codegen(partition(mlp.graph, BACKEND), {})
    b = BACKEND.codegen(partition(copy.deepcopy(mlp.graph), BACKEND), {})
    assert a == b
    assert not any(re.search(r"20\d\d-\d\d-\d\d|/tmp/|/work/", t) for t in a.values())


def test_axis_io_and_reuse_factor(mlp, tmp_path):
    """The AXI-Stream variant reads and writes the top's ports once, in order, and stays bit-exact."""
    opts = {"io": "axis", "reuse_factor": 4, "top": "mlp_axis"}
    files, sim, _ = _csim(mlp.graph, tmp_path, opts)
    top = files["src/mlp_axis.cpp"]
    assert "#pragma HLS INTERFACE mode=axis port=in" in top and "#pragma HLS DATAFLOW" in top
    assert "UNROLL factor=16" in files["src/kernels/dense.h"]  # K = 64, reuse factor 4
    codes = _test_codes(EXAMPLES / "digits_mlp.onnx", mlp)
    assert sum(_mismatches(mlp.graph, sim, codes).values()) == 0


def test_options_are_checked(mlp):
    design = partition(mlp.graph, BACKEND)
    with pytest.raises(InputError, match=r"unknown hls option\(s\) 'reuse'.*valid options: .*reuse_factor"):
        BACKEND.codegen(design, {"reuse": 2})
    for bad in ({"top": "int"}, {"top": "a b"}, {"top": 'x"); //'}, {"io": "stream"}, {"reuse_factor": 0},
                {"clock_ns": -1}, {"part": "x; rm"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            BACKEND.codegen(design, bad)
    with pytest.raises(InputError, match=r"'reuse_factor' names no layer of this model: 'nope'.*'logits'"):
        BACKEND.codegen(design, {"reuse_factor": {"nope": 2, "default": 1}})
    with pytest.raises(InputError, match="names no layer"):
        BACKEND.estimate(design, {"reuse_factor": {"nope": 2}})


def test_build_error_names_the_compiler_output(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "broken.cpp").write_text("int f( {\n")
    with pytest.raises(csim.CSimError, match=r"g\+\+ could not compile.*error"):
        csim.build(tmp_path / "src", "broken", tmp_path / "build")


def _rq(ratio, mode="float", **tail):
    from nnforge.compiler.quant.numerics import quantize_multiplier

    m, n = quantize_multiplier(np.asarray(ratio, dtype=np.float64), mode)
    return dict(multiplier=m, shift=n, **{"lo": None, "hi": None, "rounding": "RND", "overflow": "SAT", **tail})


def other_ops_graph():
    """avg pool (padded) -> max pool (ceil_mode, padded) -> transpose -> clip; global avg pool;
    mul and add broadcasting [C, 1, 1] over [C, H, W]; concat on axis 2; a reshape that widens."""
    from nnforge.compiler.quant.numerics import QType
    from nnforge.compiler.qgraph import QGraph, QNode, QTensor

    s8, s16, s32 = QType(8, True), QType(16, True), QType(32, True)
    x = QTensor("x", ("batch", 4, 7, 7), s8, 1.0)
    nodes, types = [], {}

    def node(op, name, inputs, attrs, t):
        nodes.append(QNode(op, name, inputs, name, attrs))
        types[name] = t

    node("avg_pool2d", "avg", ["x"], dict(pool_size=(2, 2), strides=(2, 2), padding=(1, 1, 1, 1),
                                          **_rq(0.3, rounding="TRN")), s8)
    node("max_pool2d", "maxc", ["avg"], dict(pool_size=(2, 2), strides=(2, 2), padding=(1, 0, 0, 0),
                                             dilation=(1, 1), ceil_mode=True), s8)
    node("transpose", "tr", ["maxc"], dict(axes=(0, 1, 3, 2)), s8)
    node("clip", "clip", ["tr"], dict(lo=-5, hi=None), s8)
    node("global_avg_pool", "gap", ["x"], dict(keepdims=True, **_rq(1 / 49)), s8)
    node("mul", "mul", ["clip", "gap"], dict(**_rq(0.02, overflow="WRAP")), s8)
    node("concat", "cat", ["clip", "mul"], dict(axis=2), s8)
    node("add", "add", ["cat", "gap"], dict(multipliers=(3, 5), shifts=(-2, 1), lo=-100, hi=None,
                                             rounding="TRN", overflow="SAT"), s16)
    node("reshape", "flat", ["add"], dict(shape=(-1, 48)), s32)
    tensors = {"x": x, **{n: QTensor(n, (), t, 1.0) for n, t in types.items()}}
    return QGraph([x], tensors, nodes, ["flat"])


def test_other_ops_bit_exact(tmp_path):
    graph = other_ops_graph()
    rng = np.random.default_rng(9)
    codes = np.concatenate([rng.integers(-128, 128, size=(200, 4, 7, 7)), np.full((1, 4, 7, 7), -128),
                            np.full((1, 4, 7, 7), 127)])
    want = reference.run(graph, [codes])
    # ceil_mode adds a bottom row of padding: [4, 4, 4] -> [4, 3, 2], transposed [4, 2, 3]
    assert want["maxc"].shape[1:] == (4, 3, 2) and want["cat"].shape[1:] == (4, 4, 3)
    files, sim, _ = _csim(graph, tmp_path)
    bad = _mismatches(graph, sim, codes)
    assert sum(bad.values()) == 0, bad
    kernels = "".join(v for k, v in files.items() if k.startswith("src/kernels/"))
    assert "k_flat" in kernels and "k_tr" in kernels and "(broadcast)" in kernels
    for name in ("avg", "maxc", "mul", "add"):  # not a vacuous comparison
        assert np.unique(want[name]).size > 3, name
