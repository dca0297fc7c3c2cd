"""Compression report: storage accounting worked out by hand, JSON/markdown, histogram plot."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from nnforge.compiler.compress.compression_report import (bias_width, compression_report, encode_streams, layer_report, layer_streams,
                                                 plot_histograms)
from nnforge.compiler.errors import ModelError
from nnforge.compiler.compress.huffman import dense_codes, huffman_decode
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode, QTensor

# 10 weights, 4 nonzeros at flat positions 1, 6, 7, 9; codebook of K=4 codes -> 2-bit indices
W_SHARED = np.array([0, 5, 0, 0, 0, 0, 5, 5, 0, -3], dtype=np.int64).reshape(5, 2)
CODEBOOK = np.array([-3, 0, 2, 5], dtype=np.int64)


def _dense_node(name="fc", weight=W_SHARED, codebook=CODEBOOK, weight_bits=4, acc="int32", nbias=2):
    attrs = dict(weight=weight, bias=np.arange(nbias, dtype=np.int64), acc_dtype=acc, weight_bits=weight_bits,
                 weight_scale=np.full(weight.shape[1], 0.25),
                 multiplier=1, shift=0, lo=None, hi=None, rounding="RND", overflow="SAT")  # a whole node; only its weights are read
    if codebook is not None:
        attrs["codebook"] = codebook
    return QNode("dense", name, ["x"], name + "_out", attrs)


def _graph(*nodes):
    t = QTensor("x", (1, 5), QType(8, True), 1.0)
    tensors = {"x": t, **{n.output: QTensor(n.output, (1, 2), QType(8, True), 1.0) for n in nodes}}
    extra = QNode("clip", "relu", [nodes[-1].output], "relu_out", dict(lo=0, hi=127))
    tensors["relu_out"] = QTensor("relu_out", (1, 2), QType(8, True), 1.0)
    return QGraph([t], tensors, [*nodes, extra], ["relu_out"])


def test_shared_sparse_layer_by_hand():
    # 2-bit gaps (max 3 skipped zeros): entries (gap, code) = (1,5) (3,0 filler) (0,5) (0,5) (1,-3)
    # indices into [-3,0,2,5]: 3 1 3 3 0; gaps: 1 3 0 0 1
    r = layer_report(_dense_node(), gap_bits=2, huffman=True, layout="sparse")
    assert (r.params, r.nonzeros, r.biases, r.entries, r.fillers) == (10, 4, 2, 5, 1)
    assert (r.shared, r.layout, r.index_bits, r.gap_bits, r.weight_bits) == (True, "sparse", 2, 2, 4)
    assert (r.codebook_size, r.codebook_bits, r.codebook_bytes) == (4, 4 * 4, 2)
    assert r.index_stream_bits == 5 * 2
    assert r.sparse_stream_bits == 5 * 2
    # indices 3,1,3,3,0: frequencies 3,1,1 -> code lengths 1,2,2 -> payload 3*1 + 2 + 2 = 7 bits;
    # table = 8 (max length) + 2 lengths * bit_length(3) + 3 symbols * 2 bits = 18
    assert r.index_huffman_bits == 7 + 18
    # gaps 1,3,0,0,1: frequencies 2,2,1 -> lengths 1,2,2 (one of the pair gets 1 bit) -> 2*1+2*2+1*2 = 8;
    # table 8 + 2*2 + 3*2 = 18
    assert r.sparse_huffman_bits == 8 + 18
    assert r.bias_bits == 2 * 2  # biases 0, 1: two's complement needs 2 bits each
    # both codes are larger than the fixed-width streams (10 bits each): each is stored fixed-width
    assert (r.index_huffman_used, r.sparse_huffman_used) == (False, False)
    assert (r.index_stored_bits, r.sparse_stored_bits) == (10, 10)
    assert r.storage == "codebook + sparse indices"
    assert r.total_bits == 16 + 10 + 10 + 4  # 40 bits, not 16 + 25 + 26 + 4 with the codes
    assert r.total_bytes == 5
    assert r.float_bytes == 4 * (10 + 2)
    assert r.compression_ratio == pytest.approx(48 / 5)


def test_shared_sparse_layer_without_huffman():
    r = layer_report(_dense_node(), gap_bits=2, huffman=False, layout="sparse")
    assert r.index_huffman_bits is None and r.sparse_huffman_bits is None
    assert r.total_bits == 16 + 10 + 10 + 4  # 40 bits
    assert r.total_bytes == 5


def test_auto_layout_keeps_dense_on_a_tie():
    # dense: 10 indices * 2 bits = 20; sparse: 5 entries * (2 + 2) = 20 -> not smaller, stays dense
    r = layer_report(_dense_node(), gap_bits=2, huffman=False, layout="auto")
    assert (r.layout, r.entries, r.fillers, r.gap_bits, r.sparse_stream_bits) == ("dense", 10, 0, 0, 0)
    assert r.index_stream_bits == 20
    assert r.total_bits == 16 + 20 + 4


def test_unshared_dense_layer_by_hand():
    w = np.array([[3, -2], [1, 0], [5, -7], [2, 2]], dtype=np.int64)  # 8 weights, 6-bit codes
    r = layer_report(_dense_node(weight=w, codebook=None, weight_bits=6, acc="int64"), 5, huffman=False)
    assert (r.shared, r.layout, r.index_bits, r.codebook_bits) == (False, "dense", 6, 0)
    assert r.bias_bits == 2 * 2  # the width the codes need, not the int64 accumulator's
    assert r.total_bits == 8 * 6 + 2 * 2  # 52 bits
    assert (r.total_bytes, r.float_bytes) == (7, 40)


def test_float_baseline_counts_the_original_layer():
    # structured pruning removed channels: the float32 baseline is the original 20 weights + 4 biases
    r = layer_report(_dense_node(), gap_bits=2, huffman=False, layout="sparse", float_sizes=(20, 4))
    assert (r.params, r.float_params, r.float_bytes, r.total_bytes) == (10, 20, 96, 5)
    assert r.compression_ratio == pytest.approx(96 / 5)


def test_unshared_pruned_layer_goes_sparse():
    w = np.zeros((50, 2), dtype=np.int64)
    w[3, 1], w[40, 0] = 9, -4  # flat positions 7 and 80; 8-bit gaps: 7 and 72, no filler
    r = layer_report(_dense_node(weight=w, codebook=None, weight_bits=8, nbias=2), 8, huffman=False)
    assert (r.layout, r.entries, r.fillers) == ("sparse", 2, 0)
    assert r.total_bits == 2 * 8 + 2 * 8 + 2 * 2  # indices + gaps + biases = 36
    assert r.total_bytes == 5
    assert r.float_bytes == 4 * 102


def test_bias_width_by_hand():
    assert bias_width(np.array([], np.int64)) == 0
    assert bias_width(np.array([0])) == 1
    assert bias_width(np.array([-1])) == 1
    assert bias_width(np.array([127, -128])) == 8
    assert bias_width(np.array([128])) == 9
    assert bias_width(np.array([-129, 3])) == 9
    assert bias_width(np.array([2**31 - 1])) == 32


def test_streams_round_trip_exactly():
    s = encode_streams(layer_streams(_dense_node(), 2, "sparse"))
    np.testing.assert_array_equal(huffman_decode(s.index_huffman), [3, 1, 3, 3, 0])
    np.testing.assert_array_equal(huffman_decode(s.gap_huffman), [1, 3, 0, 0, 1])
    codes = CODEBOOK[huffman_decode(s.index_huffman)]
    np.testing.assert_array_equal(codes, s.layout.values)
    np.testing.assert_array_equal(dense_codes(s.layout), W_SHARED.reshape(-1))


def test_model_totals_and_formats(tmp_path):
    a = _dense_node("fc1")
    b = _dense_node("fc2", weight=np.array([[3, -2], [1, 0]], dtype=np.int64), codebook=None, weight_bits=6)
    rep = compression_report(_graph(a, b), huffman=False, fc_gap_bits=2)
    assert [l.name for l in rep.layers] == ["fc1", "fc2"]  # the clip node stores no weights
    # fc1 (auto -> dense on the tie): 16 + 20 + 4 = 40 bits -> 5 bytes; fc2: 4*6 + 2*2 = 28 bits -> 4
    assert [l.total_bytes for l in rep.layers] == [5, 4]
    assert rep.total_bytes == 9 and rep.float_bytes == 72 and rep.compression_ratio == 8.0
    doc = json.loads(json.dumps(rep.to_dict()))
    for key in ("compression_ratio", "total_bytes", "float_bytes", "layers", "params", "nonzeros"):
        assert key in doc
    assert doc["float_bytes"] == 48 + 4 * 6
    assert doc["layers"][0]["index_stream_bits"] == 20
    md = rep.to_markdown()
    assert "| fc1 | dense |" in md and "**total**" in md


def test_bad_codebook_is_a_model_error():
    node = _dense_node(codebook=np.array([-3, 2, 5]))  # code 0 is stored but not in the codebook
    with pytest.raises(ModelError, match="'fc'.*must be in its codebook"):
        layer_report(node, 2, layout="dense")
    with pytest.raises(ModelError, match="strictly increasing"):
        layer_report(_dense_node(codebook=np.array([5, 0, -3, 2])), 2)
    with pytest.raises(ModelError, match="layout must be one of"):
        layer_report(_dense_node(), 2, layout="csr")


def test_histogram_png(tmp_path):
    a = _dense_node("fc1")
    b = _dense_node("fc2", weight=np.array([[3, -2], [1, 0]], dtype=np.int64), codebook=None, weight_bits=6)
    path = tmp_path / "h.png"
    data = plot_histograms(_graph(a, b), path)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.read_bytes() == data



EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("model_name", ["digits_cnn.onnx", "digits_mlp.onnx"])
def test_example_models_round_trip_after_compression(model_name):
    """Every layer of the example models, pruned and shared: decoding the Huffman-coded index and
    gap streams rebuilds the layer's weight codes exactly, in both layouts."""
    import nnforge

    model = nnforge.load(EXAMPLES / model_name)
    x = np.load(EXAMPLES / "digits_calib.npz")["x"]
    calib = [x.reshape((len(x),) + tuple(model.inputs[0].shape[1:]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "codebook not smaller than the distinct codes"
        qmodel = nnforge.quantize(model, calib, "w8a8", compress={"sparsity": 0.8, "share_bits": 4})
    nodes = [n for n in qmodel.graph.nodes if n.op in ("conv2d", "dense")]
    assert nodes
    for node in nodes:
        weight = node.attrs.weight.reshape(-1)
        codebook = node.attrs.codebook
        for layout, gap_bits in (("sparse", 8), ("sparse", 2), ("dense", 5)):
            s = encode_streams(layer_streams(node, gap_bits, layout))
            indices = huffman_decode(s.index_huffman)
            np.testing.assert_array_equal(indices, s.indices)
            values = codebook[indices]
            if layout == "dense":
                np.testing.assert_array_equal(values, weight)
                continue
            gaps = huffman_decode(s.gap_huffman)
            np.testing.assert_array_equal(gaps, s.layout.gaps)
            rebuilt = dense_codes(dataclasses.replace(s.layout, gaps=gaps, values=values))
            np.testing.assert_array_equal(rebuilt, weight)
            assert np.count_nonzero(values) == np.count_nonzero(weight)  # fillers are zeros
            assert s.layout.gaps.max(initial=0) <= 2 ** gap_bits - 1
    rep = compression_report(qmodel)
    assert rep.nonzeros == sum(int(np.count_nonzero(n.attrs.weight)) for n in nodes)
    assert rep.compression_ratio > 4  # 80% pruned, 4-bit indices: far below 32 bits per weight
