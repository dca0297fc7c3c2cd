"""Models with a fixed batch of 1 (the onnx light models, many exported models) on more samples.

The model here ends like the light ResNet-50: ``AveragePool -> Reshape(1, C) -> Gemm -> Softmax``
at opset 9, so its integer graph holds a reshape to ``(1, 4)`` and its host ops a reshape to
``(1, 5)``.  Every command must run it one sample at a time.  Oracles: the same command on each
sample alone (concatenated), and the numpy reference for every code.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.compiler import reference

SAMPLES = 4


def _fixed_batch_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "flat"),
             numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[8, 8], name="pool"),
             helper.make_node("Reshape", ["p", "flat"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1, name="fc"),
             helper.make_node("Softmax", ["g"], ["prob"], name="softmax")]
    graph = helper.make_graph(nodes, "fixed_batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed_batch")
    onnx.save(_fixed_batch_model(), root / "model.onnx")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((SAMPLES, 3, 8, 8)).astype(np.float32)
    np.savez(root / "data.npz", x=x, y=np.arange(SAMPLES) % 5)
    np.savez(root / "calib.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    return root, x


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_model_has_a_fixed_batch_and_batch_reshapes(files):
    root, _ = files
    model = nnforge.load(root / "model.onnx")
    assert model.inputs[0].shape[0] == 1
    q = nnforge.quantize(model, [np.load(root / "calib.npz")["x"]], "w8a8")
    assert any(n.op == "reshape" and n.attrs.shape[0] == 1 for n in q.graph.nodes)
    assert any(h.op == "reshape" and h.attrs["shape"][0] == 1 for h in q.graph.host_ops)


def test_python_api_predicts_many_samples_like_one_at_a_time(files):
    root, x = files
    model = nnforge.load(root / "model.onnx")
    q = nnforge.quantize(model, [np.load(root / "calib.npz")["x"]], "w8a8")
    many = q.predict([x])["prob"]
    one_by_one = np.concatenate([q.predict([x[i:i + 1]])["prob"] for i in range(SAMPLES)])
    assert many.shape == (SAMPLES, 5)
    np.testing.assert_array_equal(many, one_by_one)
    codes = q.quantize_inputs([x])
    ref = reference.run(q.graph, codes)  # the reference too, and the TVM integer build agrees
    np.testing.assert_array_equal(np.concatenate([q._call("main", [c[i:i + 1] for c in codes])[0]
                                                  for i in range(SAMPLES)]), ref[q.graph.outputs[0]])


@pytest.mark.slow
def test_every_command_runs_a_fixed_batch_model_on_several_samples(files, tmp_path):
    root, x = files
    model, data, calib = root / "model.onnx", root / "data.npz", root / "calib.npz"
    _cli("inspect", model)
    _cli("run", model, "-i", data, "-o", tmp_path / "out.npz")
    assert np.load(tmp_path / "out.npz")["prob"].shape == (SAMPLES, 5)
    report = json.loads(_cli("simulate", model, "--data", data, "--calib", calib, "--check", "--json"))
    assert report["samples"] == SAMPLES and report["reference_mismatches"] == 0
    _cli("quantize", model, "--calib", calib, "-o", tmp_path / "q")
    if shutil.which("g++") is None:
        pytest.skip("the hls C simulation needs g++")
    # from the saved quantized model (nothing quantized again) and from the ONNX model
    _cli("compile", tmp_path / "q", "--backend", "hls", "--data", data, "-o", tmp_path / "prj")
    _cli("compile", model, "--calib", calib, "-o", tmp_path / "prj2")
    project = nnforge.open_project(tmp_path / "prj")
    assert project.report["golden"]["samples"] == SAMPLES
    for prj in ("prj", "prj2"):
        verified = json.loads(_cli("verify", tmp_path / prj, "--json"))
        assert verified["passed"] and verified["mismatches"] == 0
        verified = json.loads(_cli("verify", tmp_path / prj, "--data", data, "--json"))
        assert verified["passed"] and verified["samples"] == SAMPLES and verified["quant_accuracy"] is not None
        assert verified["accuracy"] == verified["quant_accuracy"]
    # the project predicts through the C simulation what the TVM integer build predicts
    q = nnforge.load_quantized(tmp_path / "q")
    np.testing.assert_array_equal(project.predict([x])["prob"], q.predict([x])["prob"])


def test_compile_from_a_quantized_directory_refuses_quantization_options(files, tmp_path):
    root, _ = files
    nnforge.save(nnforge.quantize(nnforge.load(root / "model.onnx"), [np.load(root / "calib.npz")["x"]], "w8a8"),
                 tmp_path / "q")
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "q"), "--bits", "w4a8", "-o", str(tmp_path / "p")])
    assert result.exit_code == 2 and "--bits must not be given with the quantized model directory" in result.output
    result = CliRunner().invoke(main, ["compile", str(root / "model.onnx"), "-o", str(tmp_path / "p")])
    assert result.exit_code == 2 and "--calib must be given" in result.output
    assert not (tmp_path / "p").exists()


def test_golden_vectors_of_a_large_model_are_capped_by_reference_macs(files, monkeypatch):
    """A model of M MACs gets GOLDEN_MACS // M golden samples (at least one), each the reference's."""
    from nnforge.backends import golden
    from nnforge.backends.macs import layer_macs

    root, x = files
    q = nnforge.quantize(nnforge.load(root / "model.onnx"), [np.load(root / "calib.npz")["x"]], "w8a8")
    macs = sum(layer_macs(q.graph, n) for n in q.graph.nodes)
    monkeypatch.setattr(golden, "GOLDEN_MACS", 2 * macs + 1)
    g = golden.golden_vectors(q, [x])
    assert g.samples == 2
    np.testing.assert_array_equal(g.outputs[0], reference.run(q.graph, q.quantize_inputs([x[:2]]))[q.graph.outputs[0]])
    monkeypatch.setattr(golden, "GOLDEN_MACS", 1)
    assert golden.golden_vectors(q, [x]).samples == 1


def test_a_loaded_quantized_model_imports_relax_only_when_needed(files, tmp_path):
    """load_quantized reads the float model lazily: compiling it needs no Relax import."""
    root, x = files
    model = nnforge.load(root / "model.onnx")
    q = nnforge.quantize(model, [np.load(root / "calib.npz")["x"]], "w8a8")
    nnforge.save(q, tmp_path / "q")
    back = nnforge.load_quantized(tmp_path / "q")
    assert back.float_model._relax is None and back._layers is None
    from nnforge.compiler import qgraph_io

    assert qgraph_io.graph_files(back.graph) == qgraph_io.graph_files(q.graph)
    assert all(np.asarray(v).dtype == np.asarray(q.graph.nodes[i].attrs.to_dict()[k]).dtype
               for i, n in enumerate(back.graph.nodes) for k, v in n.attrs.to_dict().items() if isinstance(v, np.ndarray))
    nnforge.compile_model(back, "hls", tmp_path / "prj", golden_inputs=[x])
    assert back.float_model._relax is None  # still not imported
    assert [l.name for l in back.layers] == [l.name for l in q.layers]  # imported now, same layers
    np.testing.assert_array_equal(back.predict([x])["prob"], q.predict([x])["prob"])
