"""The on-disk cache of statistics and quantized graphs: hits give the same graph, misses recompute.

The oracle for a hit is the uncached result (``cache=False``): the saved graph files must be
byte-identical.  Whether work was repeated is observed by making ``FloatTrace`` (the traced float
build every calibration runs) fail once the first entries exist.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnforge
import nnforge.quantized as quantized
from conftest import EXAMPLES
from nnforge import quant_cache
from nnforge.compiler import qgraph_io


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "nnforge"


@pytest.fixture(scope="module")
def digits():
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    return model, np.load(EXAMPLES / "digits_calib.npz")["x"][:64]


def _no_tracing(monkeypatch):
    def refuse(*_args, **_kw):
        raise AssertionError("calibration ran although its statistics were cached")

    monkeypatch.setattr(quantized, "FloatTrace", refuse)


def test_a_repeated_quantization_is_a_hit_identical_to_the_uncached_graph(isolated_cache, digits, monkeypatch):
    model, x = digits
    uncached = nnforge.quantize(model, [x], "w8a8", cache=False)
    assert not (isolated_cache / "calib").exists() and not (isolated_cache / "quantized").exists()  # cache=False
    first = nnforge.quantize(model, [x], "w8a8")
    _no_tracing(monkeypatch)
    again = nnforge.quantize(model, [x], "w8a8")
    want = qgraph_io.graph_files(uncached.graph)
    assert qgraph_io.graph_files(first.graph) == want
    assert qgraph_io.graph_files(again.graph) == want
    assert again.graph.decisions == uncached.graph.decisions


def test_another_config_reuses_the_statistics_only(isolated_cache, digits, monkeypatch):
    model, x = digits
    nnforge.quantize(model, [x], "w8a8")
    _no_tracing(monkeypatch)  # w4a8 needs new weights and scales, but no new statistics
    q4 = nnforge.quantize(model, [x], "w4a8")
    monkeypatch.undo()
    want = nnforge.quantize(model, [x], "w4a8", cache=False)
    assert qgraph_io.graph_files(q4.graph) == qgraph_io.graph_files(want.graph)


def test_other_data_is_a_miss(isolated_cache, digits, monkeypatch):
    model, x = digits
    nnforge.quantize(model, [x], "w8a8")
    _no_tracing(monkeypatch)
    y = x.copy()
    y[0, 0, 0, 0] += 0.5  # one value differs
    with pytest.raises(AssertionError, match="calibration ran"):
        nnforge.quantize(model, [y], "w8a8")
    with pytest.raises(AssertionError, match="calibration ran"):
        quantized.calibrate(model, [x], batch_size=16)  # another batch size: another histogram


def test_a_damaged_entry_is_ignored_and_replaced(isolated_cache, digits):
    model, x = digits
    want = qgraph_io.graph_files(nnforge.quantize(model, [x], "w8a8").graph)
    entries = sorted((isolated_cache / "quantized").glob("*.npz")) + sorted((isolated_cache / "calib").glob("*.npz"))
    assert len(entries) == 2
    for path in entries:
        path.write_bytes(path.read_bytes()[:100])  # truncated: its digest no longer matches
    assert qgraph_io.graph_files(nnforge.quantize(model, [x], "w8a8").graph) == want


def test_a_hit_raises_the_same_warnings(isolated_cache):
    """Sharing 2^3 codes over a layer with fewer distinct weights warns; a cached run warns too."""
    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    x = np.load(EXAMPLES / "digits_calib.npz")["x"][:32].reshape(32, -1)
    comp = {"share_bits": 8, "refine": "kmeans"}
    with pytest.warns(UserWarning) as first:
        nnforge.quantize(model, [x], "w2a8", compress=comp)
    with pytest.warns(UserWarning) as again:
        nnforge.quantize(model, [x], "w2a8", compress=comp)
    assert [str(w.message) for w in again] == [str(w.message) for w in first]


def test_stats_keys_name_model_layers_data_and_batch(digits):
    model, x = digits
    layers = quantized.float_layers(model.relax, model.output_names, model.onnx_names)[0]
    key = quant_cache.stats_key(model, layers, [x], 256)
    assert key == quant_cache.stats_key(model, layers, [x.copy()], 256)
    assert key != quant_cache.stats_key(model, layers, [x[:-1]], 256)
    assert key != quant_cache.stats_key(model, layers[:-1], [x], 256)
    assert key != quant_cache.stats_key(model, layers, [x], 128)
