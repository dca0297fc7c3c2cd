"""Bad input ends with exit status 2, one clear message, no traceback, and nothing written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

from nnforge.cli import main
from conftest import EXAMPLES

CNN = str(EXAMPLES / "digits_cnn.onnx")


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def tiny_model(op="Relu", opset=17, x_shape=("N", 4), nodes=None, inits=(), y_shape=None) -> onnx.ModelProto:
    nodes = nodes or [helper.make_node(op, ["x"], ["y"], name="act")]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(y_shape or x_shape))],
        list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def test_missing_file():
    r = invoke("inspect", "no/such/model.onnx")
    assert r.exit_code == 2
    assert "no/such/model.onnx" in r.output and "no such file" in r.output


def test_not_onnx(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a protobuf\n" * 20)
    r = invoke("inspect", str(p))
    assert r.exit_code == 2
    assert "must be an ONNX model" in r.output


def test_corrupt_protobuf(tmp_path):
    data = (EXAMPLES / "digits_cnn.onnx").read_bytes()
    p = tmp_path / "truncated.onnx"
    p.write_bytes(data[: len(data) // 2])
    r = invoke("inspect", str(p))
    assert r.exit_code == 2
    assert "truncated.onnx" in r.output and "ONNX model" in r.output


def test_unsupported_ops_listed_with_node_names(tmp_path):
    nodes = [
        helper.make_node("Erf", ["x"], ["a"], name="erf_1"),
        helper.make_node("Floor", ["a"], ["b"], name="floor_a"),
        helper.make_node("Floor", ["b"], ["c"], name="floor_b"),
        helper.make_node("Relu", ["c"], ["y"], name="ok_relu"),
    ]
    r = invoke("inspect", save(tiny_model(nodes=nodes), tmp_path / "m.onnx"))
    assert r.exit_code == 2
    out = " ".join(r.output.split())  # the message may wrap
    assert "Erf: 'erf_1'" in out and "Floor: 'floor_a', 'floor_b'" in out
    assert "Supported operators:" in out and "Conv" in out
    assert "ok_relu" not in out


def test_dynamic_non_batch_dimension_needs_input_shape(tmp_path):
    path = save(tiny_model(x_shape=("N", "features")), tmp_path / "m.onnx")
    r = invoke("inspect", path)
    assert r.exit_code == 2
    assert "'x' dimension 1" in r.output and "--input-shape x=" in r.output
    ok = invoke("inspect", path, "--input-shape", "x=2,5", "--json")
    assert ok.exit_code == 0, ok.output


def test_input_shape_errors(tmp_path):
    path = save(tiny_model(), tmp_path / "m.onnx")
    assert "NAME=1,3,32,32" in invoke("inspect", path, "--input-shape", "x=2,a").output
    r = invoke("inspect", path, "--input-shape", "z=2,4")
    assert r.exit_code == 2 and "'z'" in r.output and "['x']" in r.output
    r = invoke("inspect", path, "--input-shape", "x=2,4,1")
    assert r.exit_code == 2 and "rank 2" in r.output


@pytest.mark.parametrize("opset", [7, 99])
def test_opset_out_of_range(tmp_path, opset):
    r = invoke("inspect", save(tiny_model(opset=opset), tmp_path / "m.onnx"))
    assert r.exit_code == 2
    assert f"not {opset}" in r.output and "opset" in r.output


def test_nan_weights_warn_naming_the_tensor(tmp_path):
    w = np.ones((4, 3), "float32")
    w[1, 2] = np.nan
    model = tiny_model(
        nodes=[helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="fc")],
        inits=[numpy_helper.from_array(w, "fc.weight")], y_shape=("N", 3),
    )
    r = CliRunner().invoke(main, ["inspect", save(model, tmp_path / "m.onnx")])
    assert r.exit_code == 0
    assert "warning" in r.output and "'fc.weight'" in r.output and "NaN" in r.output


def test_run_wrong_shape_and_dtype(tmp_path):
    out = tmp_path / "y.npz"
    np.savez(tmp_path / "bad_shape.npz", x=np.zeros((3, 1, 9, 8), "float32"))
    r = invoke("run", CNN, "--input", str(tmp_path / "bad_shape.npz"), "-o", str(out))
    assert r.exit_code == 2
    assert "'input'" in r.output and "[batch, 1, 8, 8]" in r.output and "[3, 1, 9, 8]" in r.output
    np.save(tmp_path / "bad_dtype.npy", np.zeros((3, 1, 8, 8), "int32"))
    r = invoke("run", CNN, "--input", str(tmp_path / "bad_dtype.npy"), "-o", str(out))
    assert r.exit_code == 2 and "float32" in r.output and "int32" in r.output
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:img.npz. reshaped input")
def test_same_size_samples_are_reshaped_with_a_warning(tmp_path):
    """8x8 images for the 64-wide MLP: reshaped (same values), with a warning; a wrong size is
    still an error naming both shapes."""
    mlp = str(EXAMPLES / "digits_mlp.onnx")
    images = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype("float32")
    np.savez(tmp_path / "img.npz", x=images)
    r = invoke("run", mlp, "--input", str(tmp_path / "img.npz"), "-o", str(tmp_path / "y.npz"))
    assert r.exit_code == 0, r.output
    import nnforge
    from nnforge.data import load_inputs

    with pytest.warns(UserWarning, match=r"reshaped input 'input' samples from \[1, 8, 8\] to \[64\]"):
        (arr,), _ = load_inputs(tmp_path / "img.npz", nnforge.load(mlp).inputs)
    assert arr.shape == (5, 64)
    np.savez(tmp_path / "flat.npz", x=images.reshape(5, 64))
    assert invoke("run", mlp, "--input", str(tmp_path / "flat.npz"), "-o", str(tmp_path / "z.npz")).exit_code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["logits"], np.load(tmp_path / "z.npz")["logits"])
    np.savez(tmp_path / "bad.npz", x=np.zeros((5, 1, 8, 9), "float32"))
    r = invoke("run", mlp, "--input", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "w.npz"))
    assert r.exit_code == 2 and "[batch, 64]" in r.output


def test_run_data_without_expected_keys_and_nan(tmp_path):
    np.savez(tmp_path / "keys.npz", images=np.zeros((2, 1, 8, 8), "float32"))
    r = invoke("run", CNN, "--input", str(tmp_path / "keys.npz"), "-o", str(tmp_path / "y.npz"))
    assert r.exit_code == 2 and "'x'" in r.output and "images" in r.output
    x = np.zeros((2, 1, 8, 8), "float32")
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    r = invoke("run", CNN, "--input", str(tmp_path / "nan.npz"), "-o", str(tmp_path / "y.npz"))
    assert r.exit_code == 2 and "NaN" in r.output
    assert not (tmp_path / "y.npz").exists()


def test_run_refuses_to_overwrite(tmp_path):
    out = tmp_path / "y.npz"
    out.write_bytes(b"precious")
    r = invoke("run", CNN, "--input", str(EXAMPLES / "digits_test.npz"), "-o", str(out))
    assert r.exit_code == 2 and "--force" in r.output
    assert out.read_bytes() == b"precious"


def test_real_process_exit_status_and_debug_traceback(tmp_path):
    cmd = [sys.executable, "-m", "nnforge", "inspect", str(tmp_path / "missing.onnx")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr and "missing.onnx" in plain.stderr
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
