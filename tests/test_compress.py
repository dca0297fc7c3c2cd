"""Compression: magnitude and structured pruning, weight sharing, lsq refinement, their
integration into quantize/simulate/sweep, saving, and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.compiler.compress.compress import compress_layers
from nnforge.compiler.compress.compress_config import CompressConfig, parse_prune_config
from nnforge.compiler.quant.layers import float_layers
from nnforge.compiler.compress.prune import channel_keep, magnitude_mask
from nnforge.compiler.quant.quant_config import ConfigError, parse_config
from nnforge.compiler.compress.weight_sharing import kmeans_codebook, linear_init
from nnforge.quantized import load_quantized, quantize, save
from nnforge.simulate import simulate
from conftest import EXAMPLES, ort_run

TEST = np.load(EXAMPLES / "digits_test.npz")
CALIB = np.load(EXAMPLES / "digits_calib.npz")
CNN, MLP = EXAMPLES / "digits_cnn.onnx", EXAMPLES / "digits_mlp.onnx"


def _digits(name):
    model = nnforge.load(EXAMPLES / f"{name}.onnx")
    flat = len(model.inputs[0].shape) == 2
    shape = (lambda a: a.reshape(len(a), -1)) if flat else (lambda a: a)
    return model, shape(TEST["x"]), TEST["y"], shape(CALIB["x"])


def _onnx_weights(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """node name -> (weight, bias) straight from the ONNX initializers (the independent source)."""
    m = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return {n.name: (init[n.input[1]], init[n.input[2]]) for n in m.graph.node if n.op_type in ("Conv", "Gemm")}


def _weighted(qmodel):
    return {n.name: n for n in qmodel.graph.nodes if n.op in ("conv2d", "dense")}


# -- pruning -----------------------------------------------------------------------------


def test_magnitude_mask_exact_count_by_hand():
    w = np.array([0.1, -0.5, 0.3, -0.05, 0.8, 0.2, -0.4, 0.6, 0.01, -0.9])
    keep = magnitude_mask(w, sparsity=0.3)  # 3 smallest |w|: 0.01, -0.05, 0.1
    assert keep.tolist() == [False, True, True, False, True, True, True, True, False, True]
    # ties at the cut: exactly round(0.5 * 4) = 2 pruned, by position
    assert magnitude_mask(np.array([1.0, 1.0, 1.0, 1.0]), sparsity=0.5).tolist() == [False, False, True, True]


def test_quality_threshold_against_hand_computed_std():
    w = np.array([2.0, -2.0, 1.0, -1.0, 0.0, 0.0, 0.5, -0.5])
    std = np.sqrt(10.5 / 8)  # mean 0; sum of squares 10.5
    assert std == pytest.approx(1.1456439)
    # quality 0.9: threshold 1.031 keeps only +-2; quality 0.8: 0.9165 keeps +-2 and +-1
    assert magnitude_mask(w, quality=0.9).tolist() == [True, True, False, False, False, False, False, False]
    assert magnitude_mask(w, quality=0.8).tolist() == [True, True, True, True, False, False, False, False]


def test_pruned_weights_are_exact_zero_codes_with_exact_counts():
    model, x, y, calib = _digits("digits_mlp")
    q = quantize(model, [calib], "w8a8", compress={"sparsity": 0.75, "refine": "kmeans"})
    onnx_w = _onnx_weights(MLP)
    names = {"/net/net.0/Gemm": "/net/net.0/Gemm", "/net/net.3/Gemm": "/net/net.3/Gemm", "logits": "/net/net.6/Gemm"}
    for name, node in _weighted(q).items():
        w = onnx_w[names[name]][0].T  # Gemm transB=1: [N, K] -> [K, N]
        expected_zeros = {8192: 6144, 640: 480}[w.size]  # 0.75 * size, by hand
        codes = node.attrs.weight
        assert np.count_nonzero(codes == 0) == expected_zeros
        smallest = np.argsort(np.abs(w).ravel(), kind="stable")[:expected_zeros]
        assert np.all(codes.ravel()[smallest] == 0)
        assert node.attrs.pruned_sparsity == pytest.approx(0.75)


def test_structured_pruning_removes_channels_like_zeroing_them():
    """The pruned CNN's float output == onnxruntime on the original ONNX with those channels zeroed."""
    model, x, y, calib = _digits("digits_cnn")
    layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
    convs = ["/features/features.0/Conv", "/features/features.3/Conv", "/features/features.7/Conv"]
    comp = CompressConfig(layer_sparsity=dict.fromkeys(convs, 0.5), structured=True, refine="kmeans")
    pruned, decisions = compress_layers(layers, host, parse_config("w8a8"), comp)
    convs = [l for l in pruned if l.op == "conv2d"]
    dense = [l for l in pruned if l.op == "dense"][0]
    assert [c.attrs["weight"].shape for c in convs] == [(4, 1, 3, 3), (8, 4, 3, 3), (8, 8, 3, 3)]
    assert dense.attrs["weight"].shape == (32, 10)
    assert sum("removed" in d for d in decisions) == 3
    # the channels removed are those of smallest L2 norm, computed here from the ONNX weights
    onnx_model = onnx.load(str(CNN))
    init = {t.name: t for t in onnx_model.graph.initializer}
    prev = None
    for conv, node in zip(convs, [n for n in onnx_model.graph.node if n.op_type == "Conv"]):
        w = numpy_helper.to_array(init[node.input[1]])
        if prev is not None:  # layers are pruned in order: the previous layer's removed inputs are gone
            w = w[:, prev]
        norms = np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
        expected = np.sort(np.argsort(norms, kind="stable")[len(w) // 2 :])
        assert conv.attrs["kept_channels"].tolist() == expected.tolist()
        prev = expected
        drop = np.setdiff1d(np.arange(len(w)), expected)
        for name, rows in ((node.input[1], drop), (node.input[2], drop)):
            arr = numpy_helper.to_array(init[name]).copy()
            arr[rows] = 0
            init[name].CopyFrom(numpy_helper.from_array(arr, name))
    expected_out = ort_run(onnx_model, {"input": x[:64]})[0]
    # the pruned float layers, run with plain numpy (3x3 conv, pad 1; ReLU; 2x2 max pool)
    def conv3x3(h, w, b):
        win = np.lib.stride_tricks.sliding_window_view(np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
        return np.einsum("nchwij,ocij->nohw", win, w) + np.asarray(b, np.float64)[None, :, None, None]

    def pool2(h):
        n, c, hh, ww = h.shape
        return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))

    h = x[:64].astype(np.float64)
    for i, conv in enumerate(convs):
        h = np.maximum(conv3x3(h, conv.attrs["weight"].astype(np.float64), conv.attrs["bias"]), 0)
        if i > 0:
            h = pool2(h)
    out = h.reshape(len(h), -1) @ dense.attrs["weight"].astype(np.float64) + np.asarray(dense.attrs["bias"], np.float64)
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-4)


def test_channel_keep_by_norm_and_at_least_one():
    w = np.array([[3.0, 0.0], [0.1, 0.1], [1.0, 1.0], [0.0, 0.2]])  # norms 3, 0.14, 1.41, 0.2 (axis 0)
    assert channel_keep(w, 0, sparsity=0.5).tolist() == [0, 2]
    assert channel_keep(w, 0, sparsity=0.99).tolist() == [0]


# -- weight sharing ------------------------------------------------------------------------


def test_linear_init_and_kmeans_hand_worked():
    assert linear_init(np.array([1.0, -3.0, 5.0]), 5).tolist() == [-3.0, -1.0, 1.0, 3.0, 5.0]
    values = np.array([-1.0, -0.9, 0.1, 0.2, 0.9, 1.0])
    # init [-1, 0, 1] -> clusters {-1, -0.9}, {0.1, 0.2}, {0.9, 1}: their means
    centroids, labels = kmeans_codebook(values, 3)
    np.testing.assert_allclose(centroids, [-0.95, 0.15, 0.95])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def _tiny_dense(w: np.ndarray) -> nnforge.Model:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w.astype(np.float32), "w")])
    return nnforge.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_codebook_has_at_most_2k_entries_including_exact_zero(k):
    rng = np.random.default_rng(k)
    w = rng.normal(size=(16, 8))
    w[rng.random(w.shape) < 0.3] = 0.0  # zeros already in the weights: zero is its own entry
    model = _tiny_dense(w)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    for refine in ("kmeans", "lsq"):
        q = quantize(model, [x], "w8a8", compress={"share_bits": k, "refine": refine})
        (node,) = _weighted(q).values()
        book = node.attrs.codebook
        assert book.dtype == np.int64 and np.all(np.diff(book) > 0) and len(book) <= 2**k
        assert 0 in book.tolist()
        codes = node.attrs.weight
        assert np.array_equal(codes, book[np.searchsorted(book, codes)])
        assert np.all(codes[w == 0] == 0)


def test_lsq_refinement_fits_layer_outputs_better_than_kmeans():
    """On calibration data, the first layer's output error (vs the float layer, computed from
    the ONNX weights) with lsq centroids is at most that of plain k-means."""
    model, x, y, calib = _digits("digits_mlp")
    w, b = _onnx_weights(MLP)["/net/net.0/Gemm"]
    target = calib.astype(np.float64) @ w.T.astype(np.float64) + b
    mse = {}
    for refine in ("kmeans", "lsq"):
        q = quantize(model, [calib], "w8a8", compress={"sparsity": 0.8, "share_bits": 3, "refine": refine})
        layer = next(l for l in q.layers if l.name == "/net/net.0/Gemm")
        assert len(_weighted(q)["/net/net.0/Gemm"].attrs.codebook) <= 8
        mse[refine] = float(np.mean((calib @ layer.attrs["weight"] + layer.attrs["bias"] - target) ** 2))
    assert mse["lsq"] <= mse["kmeans"]


def test_codebook_larger_than_distinct_codes_falls_back_with_a_decision():
    model, x, y, calib = _digits("digits_cnn")
    with pytest.warns(UserWarning, match="distinct"):
        q = quantize(model, [calib], "w8a8", compress={"sparsity": 0.8, "share_bits": 5})
    first = "/features/features.0/Conv"
    assert any(d.startswith(first) and "distinct" in d for d in q.graph.decisions)
    node = _weighted(q)[first]
    assert np.array_equal(np.unique(node.attrs.weight), node.attrs.codebook)


# -- bit-exactness, saving -------------------------------------------------------------------


@pytest.mark.parametrize("name,comp", [
    ("digits_mlp", {"sparsity": 0.8, "share_bits": 4}),
    ("digits_cnn", {"sparsity": 0.5, "share_bits": 3, "refine": "kmeans"}),
    ("digits_cnn", {"sparsity": 0.25, "structured": True, "share_bits": 4}),
])
def test_pruned_shared_models_are_bit_exact(name, comp):
    model, x, y, calib = _digits(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q, rep = simulate(model, [x], y, "w8a8", calib=[calib], check=True, compress=comp)
    assert rep.reference_mismatches == 0  # TVM integer build == numpy reference, every tensor
    assert rep.compression["settings"] == CompressConfig.from_dict(comp).to_dict()
    codes = q.quantize_inputs([x[:32]])
    ref, tvm_out = q.reference(codes), q.trace(codes)
    for key in tvm_out:
        assert np.array_equal(tvm_out[key].astype(np.int64), ref[key])


def test_save_reload_keeps_codebooks_and_outputs(tmp_path):
    model, x, y, calib = _digits("digits_cnn")
    comp = {"sparsity": 0.4, "structured": True, "share_bits": 4, "layer_share_bits": {"logits": 3}}
    q = quantize(model, [calib], "w8a8", compress=comp)
    save(q, tmp_path / "q")
    r = load_quantized(tmp_path / "q")
    assert r.compress == q.compress == CompressConfig.from_dict(comp)
    assert r.graph.decisions == q.graph.decisions
    for a, b in zip(q.graph.nodes, r.graph.nodes):
        da, db = a.attrs.to_dict(), b.attrs.to_dict()  # the attrs as saved, key by key
        assert sorted(da) == sorted(db)
        for key in ("codebook", "weight", "kept_channels"):
            if key in da:
                assert np.array_equal(da[key], db[key]) and da[key].dtype == db[key].dtype
    assert len(_weighted(r)["logits"].attrs.codebook) <= 8
    assert np.array_equal(q.predict([x])["logits"], r.predict([x])["logits"])


# -- config and CLI --------------------------------------------------------------------------


def test_config_round_trip_and_files(tmp_path):
    c = CompressConfig(sparsity=0.5, layer_quality={"logits": 0.7}, share_bits=4, layer_share_bits={"logits": 2})
    assert parse_prune_config(c.to_dict()) == c
    p = tmp_path / "c.yaml"
    p.write_text("sparsity: 0.5\nlayer_quality: {logits: 0.7}\nshare_bits: 4\nlayer_share_bits: {logits: 2}\n")
    assert parse_prune_config(p) == c
    assert c.for_layer("logits").quality == 0.7 and c.for_layer("logits").sparsity is None
    assert c.for_layer("other").sparsity == 0.5 and c.for_layer("other").share_bits == 4
    with pytest.raises(ConfigError, match="sparsity and quality"):
        CompressConfig(sparsity=0.5, quality=1.0)
    with pytest.raises(ConfigError, match="'sparsty'.*did you mean 'sparsity'"):
        parse_prune_config({"sparsty": 0.5})


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


SIM = ("simulate", CNN, "--data", EXAMPLES / "digits_test.npz", "--calib", EXAMPLES / "digits_calib.npz")


@pytest.mark.parametrize("args,message", [
    (("--prune", "1.0"), "--prune must be a fraction in [0, 1), not 1.0"),  # errors name the flag
    (("--prune", "-0.1"), "--prune must be a fraction in [0, 1), not -0.1"),
    (("--prune", "nan"), "--prune must be a fraction in [0, 1), not nan"),
    (("--share", "9"), "--share must be an integer from 1 to 8, not '9'"),
    (("--share", "0"), "--share must be an integer from 1 to 8, not '0'"),
    (("--share", "two"), "--share must be an integer from 1 to 8, not 'two'"),
    (("--refine", "lsq"), "--refine and --structured need --prune"),
])
def test_cli_bad_compression_options(args, message, tmp_path):
    for command in (SIM, ("quantize", CNN, "--calib", EXAMPLES / "digits_calib.npz", "-o", tmp_path / "q")):
        r = invoke(*command, *args)
        assert r.exit_code == 2, r.output
        assert message in " ".join(r.output.split())
    assert not (tmp_path / "q").exists()


def test_cli_prune_config_unknown_layer_and_key(tmp_path):
    p = tmp_path / "prune.json"
    p.write_text(json.dumps({"layer_sparsity": {"/features/features.1/Conv": 0.5}}))
    r = invoke(*SIM, "--prune-config", p)
    assert r.exit_code == 2
    out = " ".join(r.output.split())
    assert "'/features/features.1/Conv'" in out and "'/features/features.0/Conv'" in out and "'logits'" in out
    p.write_text(json.dumps({"sparsity": 0.5, "share": 4}))
    r = invoke(*SIM, "--prune-config", p)
    assert r.exit_code == 2 and "not 'share'" in r.output


def test_cli_simulate_json_reports_compression_and_fallbacks():
    r = invoke(*SIM, "--prune", "0.8", "--share", "4", "--json", "--check")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["reference_mismatches"] == 0
    assert doc["compression"]["settings"]["sparsity"] == 0.8 and doc["compression"]["settings"]["share_bits"] == 4
    assert all(layer["codebook_size"] <= 16 for layer in doc["compression"]["layers"])
    assert any("distinct" in d for d in doc["auto_decisions"])  # the 72-weight first conv falls back


def test_cli_quantize_and_sweep_with_compression(tmp_path):
    r = invoke("quantize", CNN, "--calib", EXAMPLES / "digits_calib.npz", "--prune", "0.5", "--share", "3",
               "--refine", "kmeans", "-o", tmp_path / "q")
    assert r.exit_code == 0, r.output
    q = load_quantized(tmp_path / "q")
    assert q.compress == CompressConfig(sparsity=0.5, share_bits=3, refine="kmeans")
    assert all(len(n.attrs.codebook) <= 8 for n in _weighted(q).values())
    r = invoke("sweep", CNN, "--data", EXAMPLES / "digits_test.npz", "--calib", EXAMPLES / "digits_calib.npz",
               "--weight-bits", "8", "--prune", "0.3", "--share", "3,4", "-o", tmp_path / "sw")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [row["share_bits"] for row in rows] == [3, 4]
    assert all("prune 30%" in row["compression"] for row in rows)
