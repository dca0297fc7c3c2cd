"""Compression accounting (issue 15): Huffman never makes a stream larger, storage forms named
exactly, readable settings, histograms in one unit with the codebook on the stored values."""

from __future__ import annotations

import numpy as np
import pytest

from nnforge.compiler.compress.compress_config import CompressConfig
from nnforge.compiler.compress.compression_report import (histogram_figure, layer_report, settings_text, storage_name,
                                                 weight_histograms)
from nnforge.compiler.qgraph import QNode
from nnforge.compile import exact_storage_form

from conftest import EXAMPLES


def _node(weight, codebook=None, bits=8):
    attrs = dict(weight=weight, bias=np.zeros(weight.shape[1], np.int64), acc_dtype="int32", weight_bits=bits,
                 weight_scale=np.full(weight.shape[1], 0.5),
                 multiplier=1, shift=0, lo=None, hi=None, rounding="RND", overflow="SAT")  # a whole node; only its weights are read
    if codebook is not None:
        attrs["codebook"] = codebook
    return QNode("dense", "fc", ["x"], "y", attrs)


@pytest.mark.parametrize("seed", range(40))
def test_huffman_never_makes_a_stream_larger(seed):
    rng = np.random.default_rng(seed)
    k, n = rng.integers(2, 40, size=2)
    w = rng.integers(-8, 8, size=(k, n))
    w[rng.random((k, n)) < rng.uniform(0, 0.95)] = 0
    cb = np.unique(np.append(w, 0)) if seed % 2 else None
    gap = int(rng.integers(2, 6))
    plain = layer_report(_node(w, cb), gap, huffman=False)
    coded = layer_report(_node(w, cb), gap, huffman=True)
    assert coded.layout == plain.layout  # chosen before coding
    assert coded.total_bits <= plain.total_bits  # coding never makes the layer larger
    assert coded.index_stored_bits == min(coded.index_stream_bits, coded.index_huffman_bits)
    assert coded.index_huffman_used == (coded.index_huffman_bits < coded.index_stream_bits)
    if coded.layout == "sparse":
        assert coded.sparse_stored_bits == min(coded.sparse_stream_bits, coded.sparse_huffman_bits)
        assert coded.sparse_huffman_used == (coded.sparse_huffman_bits < coded.sparse_stream_bits)
    assert coded.total_bits == (coded.codebook_bits + coded.index_stored_bits + coded.sparse_stored_bits
                                + coded.bias_bits)


def test_a_stream_huffman_shrinks_is_stored_coded():
    # 400 weights, one nonzero in 40: the index stream of 0s codes to ~1 bit each (raw: 4 bits each)
    w = np.zeros((40, 10), np.int64)
    w[::40 // 4, 0] = 3
    r = layer_report(_node(w, bits=4), gap_bits=4, huffman=True, layout="dense")
    assert r.index_huffman_used and r.index_stored_bits == r.index_huffman_bits < r.index_stream_bits == 400 * 4
    assert r.storage == "dense codes, Huffman-coded codes"


def test_storage_names_are_exact():
    assert storage_name(False, False) == "dense codes"
    assert storage_name(True, False) == "codebook + dense indices"
    assert storage_name(False, True) == "sparse codes"
    assert storage_name(True, True, True, True) == "codebook + sparse indices, Huffman-coded indices and gaps"
    shared = _node(np.zeros((2, 2), np.int64), codebook=np.array([-1, 0, 1]))
    plain = _node(np.zeros((2, 2), np.int64))
    # hls's "sparse" of a pruned shared layer (CSR values are codebook indices) is not just "sparse"
    assert exact_storage_form("sparse", shared) == "codebook + sparse indices"
    assert exact_storage_form("sparse", plain) == "sparse codes"
    assert exact_storage_form("codebook", shared) == "codebook + dense indices"
    assert exact_storage_form(None, plain) is None


def test_settings_text_is_readable():
    comp = CompressConfig(sparsity=0.8, share_bits=4, layer_share_bits={"logits": 6})
    assert settings_text(comp) == ("prune 80% of each layer's weights (magnitude); share 4 bits: 16 values per "
                                   "layer; shared values by k-means refined by least squares on calibration "
                                   "outputs (lsq); per layer: logits share 6 bits")
    assert settings_text(CompressConfig()) == "none"


@pytest.fixture(scope="module")
def lsq_model():
    import nnforge
    from nnforge.data import load_inputs

    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    calib = load_inputs(EXAMPLES / "digits_calib.npz", model.inputs)[0]
    return nnforge.quantize(model, calib, "w8a8", compress=CompressConfig(sparsity=0.8, share_bits=4, refine="lsq"))


def test_histograms_plot_the_stored_values_the_codebook_indexes(lsq_model):
    """With --refine lsq the shared values move away from the float weights: the plot shows the stored
    values (each one a codebook entry, in the codebook's units) next to the float weights."""
    hists = weight_histograms(lsq_model)
    assert [h.name for h in hists] == [n.name for n in lsq_model.graph.nodes if n.op in ("conv2d", "dense")]
    for h, node in zip(hists, [n for n in lsq_model.graph.nodes if n.op in ("conv2d", "dense")]):
        codes = np.asarray(node.attrs.weight)
        scales = np.asarray(node.attrs.weight_scale).reshape(-1)
        unit = scales[0] if h.unit == "weight" else 1.0
        np.testing.assert_array_equal(h.stored, codes[codes != 0] * unit)
        assert np.isin(h.stored, h.codebook).all()  # every bar sits on a codebook line
        assert h.original is not None and h.original.size == h.stored.size
    fig = histogram_figure(hists)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert sorted(labels) == sorted([f"codebook (K={hists[0].codebook.size})", "stored (nonzero)",
                                     "float before compression"])
    import matplotlib.pyplot as plt

    plt.close(fig)
