"""Quantization end to end: accuracy targets, bit-exact TVM vs numpy reference on every
traced tensor, the simulate/quantize/sweep commands, saving, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.cli import main
from nnforge.quantized import load_quantized, quantize, save
from nnforge.simulate import simulate
from conftest import EXAMPLES, ZOO

TEST = np.load(EXAMPLES / "digits_test.npz")
CALIB = np.load(EXAMPLES / "digits_calib.npz")


def _digits(name):
    model = nnforge.load(EXAMPLES / f"{name}.onnx")
    flat = len(model.inputs[0].shape) == 2
    shape = (lambda a: a.reshape(len(a), -1)) if flat else (lambda a: a)
    return model, shape(TEST["x"]), TEST["y"], shape(CALIB["x"])


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mlp"])
@pytest.mark.parametrize("bits,budget", [("w8a8", 0.005), ("w4a8", 0.02)])
def test_accuracy_targets_and_bit_exactness(name, bits, budget):
    model, x, y, calib = _digits(name)
    _, rep = simulate(model, [x], y, bits, calib=[calib], check=True)
    assert rep.samples == 450
    assert rep.float_accuracy - rep.quant_accuracy <= budget
    assert rep.reference_mismatches == 0  # TVM integer build == numpy reference, every layer


@pytest.mark.parametrize("name", ["dwsep", "residual", "fire", "factorised", "mlp_bn_train"])
@pytest.mark.parametrize("bits", ["w8a8", "w4a8", "w6a6-pow2"])
def test_unseen_models_are_bit_exact(name, bits):
    model = nnforge.load(ZOO / f"{name}.onnx")
    rng = np.random.default_rng(0)
    shape = [d for d in model.inputs[0].shape[1:]]
    x = rng.normal(size=[48] + shape).astype("float32")
    qmodel, rep = simulate(model, [x], None, bits, calib=[x[:32]], check=True, batch_size=16)
    assert rep.reference_mismatches == 0
    assert rep.agreement >= 0.75  # random weights and inputs: a sanity bound, not a target
    # concat inputs share one scale, so the fire module's concat copies codes
    for node in qmodel.graph.nodes:
        if node.op == "concat":
            scales = {qmodel.graph.tensors[i].scale for i in node.inputs}
            assert scales == {qmodel.graph.tensors[node.output].scale}


def test_integer_module_chain_is_matchable():
    model, x, y, calib = _digits("digits_cnn")
    q = quantize(model, [calib], "w8a8")
    ops = [b.value.op.name for blk in q.relax["main"].body.blocks for b in blk.bindings
           if hasattr(b.value, "op") and hasattr(b.value.op, "name")]
    i = ops.index("relax.nn.conv2d")
    assert ops[i - 1 : i + 9] == [
        "relax.astype", "relax.nn.conv2d", "relax.add", "relax.astype", "relax.multiply",
        "relax.add", "relax.right_shift", "relax.maximum", "relax.minimum", "relax.astype",
    ]


def test_pow2_mode_has_unit_multipliers():
    model, x, y, calib = _digits("digits_cnn")
    q = quantize(model, [calib], "w8a8-pow2")
    for node in q.graph.nodes:
        if "multiplier" in node.attrs.to_dict() and node.op in ("conv2d", "dense"):
            assert np.all(np.asarray(node.attrs.multiplier) == 1)
    for t in q.graph.tensors.values():
        assert float(np.log2(t.scale)).is_integer()


def test_save_and_reload_is_lossless(tmp_path):
    model, x, y, calib = _digits("digits_cnn")
    q = quantize(model, [calib], "w4a8")
    save(q, tmp_path / "q")
    r = load_quantized(tmp_path / "q")
    assert [(t.name, t.shape, t.qtype, t.scale) for t in q.graph.tensors.values()] == \
           [(t.name, t.shape, t.qtype, t.scale) for t in r.graph.tensors.values()]
    for a, b in zip(q.graph.nodes, r.graph.nodes):
        da, db = a.attrs.to_dict(), b.attrs.to_dict()  # the attrs as saved, key by key
        assert (a.op, a.name, a.inputs, a.output, sorted(da)) == (b.op, b.name, b.inputs, b.output, sorted(db))
        for k in da:
            if isinstance(da[k], np.ndarray):
                assert np.array_equal(da[k], db[k]) and da[k].dtype == db[k].dtype
            else:
                assert da[k] == db[k]
    assert np.array_equal(q.predict([x])["logits"], r.predict([x])["logits"])
    # deterministic: saving again (and saving the reloaded model) gives byte-identical files
    import time

    time.sleep(1.1)  # a zip timestamp would differ now
    save(q, tmp_path / "again")
    save(r, tmp_path / "reloaded")
    for name in ("qgraph.json", "qgraph.npz", "config.json", "model.onnx"):
        first = (tmp_path / "q" / name).read_bytes()
        assert (tmp_path / "again" / name).read_bytes() == first, name
        assert (tmp_path / "reloaded" / name).read_bytes() == first, name


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def test_cli_simulate_json_and_default_calibration():
    r = invoke("simulate", EXAMPLES / "digits_cnn.onnx", "--data", EXAMPLES / "digits_test.npz", "--bits", "w8a8",
               "--json", "--check")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    for key in ("float_accuracy", "quant_accuracy", "agreement", "samples", "layers", "reference_mismatches"):
        assert key in doc
    assert doc["reference_mismatches"] == 0 and doc["samples"] == 450
    assert "first 45 samples" in doc["calibration"]
    assert all("name" in layer and "sqnr_db" in layer for layer in doc["layers"])


def test_cli_quantize_and_sweep_write_outputs(tmp_path):
    r = invoke("quantize", EXAMPLES / "digits_cnn.onnx", "--calib", EXAMPLES / "digits_calib.npz", "-o", tmp_path / "q")
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "q").iterdir()} == {"qgraph.json", "qgraph.npz", "model.onnx", "config.json",
                                                          "manifest.json"}
    r = invoke("quantize", EXAMPLES / "digits_cnn.onnx", "--calib", EXAMPLES / "digits_calib.npz", "-o", tmp_path / "q")
    assert r.exit_code == 2 and "--force" in r.output
    r = invoke("sweep", EXAMPLES / "digits_cnn.onnx", "--data", EXAMPLES / "digits_test.npz", "--calib",
               EXAMPLES / "digits_calib.npz", "--weight-bits", "2,8", "-o", tmp_path / "sw")
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "sw").iterdir()} == {"sweep.csv", "sweep.json", "sweep.png", "manifest.json"}
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [row["weight_bits"] for row in rows] == [2, 8]
    assert rows[1]["quant_accuracy"] >= rows[0]["quant_accuracy"]


@pytest.mark.parametrize("args,expected", [
    (["--bits", "w1a8"], "weight bits"),
    (["--bits", "w8a17"], "act"),
    (["--bits", "w9"], "w8a8"),
])
def test_bad_bits_write_nothing(tmp_path, args, expected):
    out = tmp_path / "q"
    r = invoke("quantize", EXAMPLES / "digits_cnn.onnx", "--calib", EXAMPLES / "digits_calib.npz", "-o", out, *args)
    assert r.exit_code == 2 and expected in r.output
    assert not out.exists()


def test_bad_config_and_calibration_data(tmp_path):
    cfg = tmp_path / "q.toml"
    cfg.write_text('[default]\nweight_bits = 8\nact_bitz = 8\n')
    r = invoke("simulate", EXAMPLES / "digits_cnn.onnx", "--data", EXAMPLES / "digits_test.npz", "--config", cfg)
    assert r.exit_code == 2 and "act_bitz" in r.output
    cfg.write_text('[layers."/features/features.0/Convv"]\nweight_bits = 4\n')
    r = invoke("simulate", EXAMPLES / "digits_cnn.onnx", "--data", EXAMPLES / "digits_test.npz", "--config", cfg)
    assert r.exit_code == 2 and "Convv" in r.output and "/features/features.0/Conv" in r.output
    np.savez(tmp_path / "wrong.npz", x=np.zeros((8, 1, 7, 7), "float32"))
    r = invoke("simulate", EXAMPLES / "digits_cnn.onnx", "--data", EXAMPLES / "digits_test.npz", "--calib",
               tmp_path / "wrong.npz")
    assert r.exit_code == 2 and "[3, 1, 7, 7]".replace("3", "8") in r.output
    bad = np.ones((8, 1, 8, 8), "float32")
    bad[2, 0, 1, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad)
    r = invoke("quantize", EXAMPLES / "digits_cnn.onnx", "--calib", tmp_path / "nan.npz", "-o", tmp_path / "q")
    assert r.exit_code == 2 and "NaN" in r.output and not (tmp_path / "q").exists()
    np.savez(tmp_path / "nokeys.npz", images=np.zeros((8, 1, 8, 8), "float32"))
    r = invoke("simulate", EXAMPLES / "digits_cnn.onnx", "--data", tmp_path / "nokeys.npz")
    assert r.exit_code == 2 and "'x'" in r.output


def test_bias_correction_reduces_error_at_low_width():
    model, x, y, calib = _digits("digits_cnn")
    plain = simulate(model, [x], y, {"bits": "w3a8"}, calib=[calib], check=True)[1]
    fixed = simulate(model, [x], y, {"bits": "w3a8", "default": {"bias_correction": True}}, calib=[calib], check=True)[1]
    assert fixed.reference_mismatches == 0
    # SQNR against the float model's own layer outputs (the oracle), summed over layers
    assert sum(l.sqnr_db for l in fixed.layers) > sum(l.sqnr_db for l in plain.layers)


def test_auto_widths_are_reported_and_bounded():
    model, x, y, calib = _digits("digits_cnn")
    q, rep = simulate(model, [x], y, "auto-w8a8", calib=[calib], check=True)
    assert rep.reference_mismatches == 0
    assert len(q.graph.decisions) == 8  # 4 weighted layers x (weights, activations)
    assert all("dB" in d for d in q.graph.decisions)
    widths = [q.graph.tensors[n.output].qtype.bits for n in q.graph.nodes]
    assert max(widths) <= 8 and min(widths) >= 2
    assert rep.float_accuracy - rep.quant_accuracy <= 0.02


@pytest.mark.parametrize("tail", ["Relu", "MaxPool", "Sigmoid"])
def test_two_node_models_whose_output_aliases_a_layer(tail):
    # the graph output is a plain `gv = lv` alias of the last layer's output
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    extra = {"kernel_shape": [2, 2], "strides": [2, 2]} if tail == "MaxPool" else {}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node(tail, ["c"], ["y"], name="tail", **extra)]
    out = ["N", 4, 4, 4] if tail == "MaxPool" else ["N", 4, 8, 8]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype("float32"), "w"),
         numpy_helper.from_array(rng.normal(size=4).astype("float32"), "b")])
    model = nnforge.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.normal(size=(16, 2, 8, 8)).astype("float32")
    qmodel, rep = simulate(model, [x], None, "w8a8", calib=[x], check=True)
    assert rep.reference_mismatches == 0
    assert all(layer.sqnr_db > 30 for layer in rep.layers)  # 8-bit codes vs the float model's layers
