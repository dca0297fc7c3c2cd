"""QONNX models (Quant nodes on weights, biases and activations) through nnforge.load and simulate.

The oracle is qonnx's own executor (qonnx.core.onnx_exec) on the same model.  With FLOOR
rounding every traced code equals qonnx's; with ROUND (half to even) codes differ only where
the value qonnx rounds is an exact tie, and the note says so."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.cli import main

from conftest import EXAMPLES
from interop_assets import digits_arrays, digits_npz
from qonnx_assets import to_qonnx

pytest.importorskip("qonnx")
pytest.importorskip("onnxruntime")

CASES = [("mlp", 8, 8, "ROUND"), ("mlp", 4, 4, "FLOOR"), ("mlp", 2, 3, "ROUND"), ("cnn", 4, 4, "FLOOR"),
         ("cnn", 6, 5, "ROUND")]
SLOW = {("cnn", 6, 5, "ROUND")}  # 4-6 s each on a loaded 2-core machine; CI still runs it


@pytest.fixture(scope="session")
def qonnx_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("qonnx")
    models = {}
    for name, wb, ab, mode in CASES:
        path = d / f"{name}_w{wb}a{ab}_{mode}.onnx"
        onnx.save(to_qonnx(onnx.load(str(EXAMPLES / f"digits_{name}.onnx")), digits_arrays(name)[0], wb, ab, mode), path)
        models[name, wb, ab, mode] = path
    return models, {n: digits_npz(d, n) for n in ("mlp", "cnn")}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in CASES],
                         ids=lambda c: f"{c[0]}-w{c[1]}a{c[2]}-{c[3]}")
def test_simulate_check_against_qonnx_executor(qonnx_models, case):
    models, data = qonnx_models
    res = CliRunner().invoke(main, ["simulate", str(models[case]), "--data", str(data[case[0]][1]), "--json", "--check"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    pre = doc["prequantized"]
    assert doc["reference_mismatches"] == 0 and pre["format"] == "qonnx" and pre["runtime"].startswith("qonnx")
    by = {t["tensor"]: t for t in pre["tensors"]}
    assert by["input"]["codes_identical"] == 1.0  # HALF_UP on nonnegative pixels is nnforge's RND
    if case[3] == "FLOOR":  # TRN: exact, every code and every top-1
        assert all(t["codes_identical"] == 1.0 for t in pre["tensors"])
        assert pre["top1_agreement"] == 1.0 and doc["quant_accuracy"] == pre["runtime_accuracy"]
        assert pre["note"].startswith("every traced code equals")
    else:  # ROUND: only exact ties round differently, and the note names the first tensor
        first = next(t for t in pre["tensors"] if t["codes_identical"] < 1)
        assert first["boundary_distance"] == 0 and first["max_step_difference"] == 1
        assert f"codes first differ at {first['tensor']!r}" in pre["note"] and "exact tie" in pre["note"]
        if pre["top1_agreement"] < 1:
            assert "top-1 agreement" in pre["note"]


def test_carried_qonnx_widths_and_codes(qonnx_models):
    """w2 weights: codes in the narrow range [-1, 1], the QGraph's codes equal round(W / s)."""
    models, _ = qonnx_models
    model = nnforge.load(models["mlp", 2, 3, "ROUND"])
    q = nnforge.quantize(model, None)
    dense = [n for n in q.graph.nodes if n.op == "dense"]
    for node in dense:
        w = node.attrs.weight
        assert w.min() >= -1 and w.max() <= 1 and node.attrs.weight_bits == 2
    assert [str(q.graph.tensors[n.output].qtype) for n in dense] == ["u3", "u3", "s8"]
    assert str(q.graph.inputs[0].qtype) == "u3"
    for w in model.prequantized.weights.values():
        assert np.all(np.log2(w.scale) == np.round(np.log2(w.scale)))  # the builder's pow2 scales, kept
