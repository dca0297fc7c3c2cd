"""`nnforge compress`: the JSON report, the output directory, and clean failures."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from conftest import EXAMPLES, ort_run
from nnforge.cli import main

CNN = str(EXAMPLES / "digits_cnn.onnx")
CALIB = str(EXAMPLES / "digits_calib.npz")
TEST = str(EXAMPLES / "digits_test.npz")


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def _onnx_weight_counts(path: str) -> tuple[int, int]:
    """(weights, biases) of the Conv/Gemm nodes, read from the ONNX file (the oracle)."""
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    weights = biases = 0
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            weights += inits[n.input[1]].size
            biases += inits[n.input[2]].size if len(n.input) > 2 else 0
    return weights, biases


@pytest.mark.slow
def test_compress_json_and_output_directory(tmp_path):
    out = tmp_path / "cnn_compressed"
    r = invoke("compress", CNN, "--calib", CALIB, "--data", TEST, "--prune", "0.8", "--share", "4", "--huffman",
               "--json", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("compression_ratio", "total_bytes", "float_bytes", "layers", "float_accuracy", "quant_accuracy"):
        assert key in doc, key
    weights, biases = _onnx_weight_counts(CNN)
    assert doc["params"] == weights
    assert doc["float_bytes"] == 4 * (weights + biases)
    assert doc["total_bytes"] == sum(l["total_bytes"] for l in doc["layers"])
    assert doc["compression_ratio"] == pytest.approx(doc["float_bytes"] / doc["total_bytes"])
    assert all(l["shared"] and l["index_huffman_bits"] is not None for l in doc["layers"])
    assert doc["nonzeros"] <= 0.2 * weights + len(doc["layers"])  # 80% pruned per layer (rounding)
    # float accuracy against the onnxruntime oracle
    data = np.load(TEST)
    logits = ort_run(CNN, {onnx.load(CNN).graph.input[0].name: data["x"]})[0]
    assert doc["float_accuracy"] == float(np.mean(logits.argmax(1) == data["y"]))
    assert 0.0 <= doc["quant_accuracy"] <= 1.0

    files = sorted(p.name for p in out.iterdir())
    assert files == ["compression.json", "compression.md", "config.json", "histograms.png", "manifest.json",
                     "model.onnx", "qgraph.json", "qgraph.npz"]
    assert json.loads((out / "compression.json").read_text()) == doc
    assert "# Compression report" in (out / "compression.md").read_text()
    assert (out / "histograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind

    import nnforge

    reloaded = nnforge.load_quantized(out)  # the same compressed weights come back
    for layer in doc["layers"]:
        node = next(n for n in reloaded.graph.nodes if n.name == layer["name"])
        assert int(np.count_nonzero(node.attrs.weight)) == layer["nonzeros"]
        assert len(node.attrs.codebook) == layer["codebook_size"]

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    r = invoke("compress", CNN, "--calib", CALIB, "-o", str(out))
    assert r.exit_code == 2
    assert "already exists" in r.output and "--force" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_compress_structured_counts_removed_channels_as_saved():
    r = invoke("compress", CNN, "--calib", CALIB, "--prune", "0.5", "--structured", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    weights, biases = _onnx_weight_counts(CNN)
    assert doc["float_bytes"] == 4 * (weights + biases)  # the original model, not the slimmed one
    assert doc["params"] < weights
    assert sum(l["float_params"] for l in doc["layers"]) == weights


def test_compress_text_report_without_sharing(tmp_path):
    r = invoke("compress", CNN, "--calib", CALIB, "--prune", "0.5")
    assert r.exit_code == 0, r.output
    assert "float32" in r.stdout and "logits" in r.stdout and "sparse" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--calib", "no/such/calib.npz"], "no/such/calib.npz"),
    (["--calib", CALIB, "--share", "x"], "--share"),
    (["--calib", CALIB, "--conv-gap-bits", "0"], "--conv-gap-bits"),
    (["--calib", CALIB, "--bits", "w8a8", "--config", "c.toml"], "either --bits or --config"),
])
def test_compress_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    r = invoke("compress", CNN, *args, "-o", str(out))
    assert r.exit_code == 2
    assert message in r.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_compress_bad_model_exits_2(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    r = invoke("compress", str(bad), "--calib", CALIB)
    assert r.exit_code == 2
    assert "bad.onnx" in r.output
