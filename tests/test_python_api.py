"""A consistent Python API (issue 15): bare arrays for single-input models, errors that name the
Python keyword from Python and the flag from the CLI, one name per layer in every command."""

from __future__ import annotations


import numpy as np
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import nnforge
from nnforge.cli import main as cli
from nnforge.compiler.errors import InputError

from conftest import EXAMPLES, LIGHT


@pytest.fixture(scope="module")
def cnn():
    return nnforge.load(EXAMPLES / "digits_cnn.onnx")


@pytest.fixture(scope="module")
def x_test():
    return np.load(EXAMPLES / "digits_test.npz")["x"]


def test_predict_takes_a_bare_array(cnn, x_test):
    bare = cnn.predict(x_test[:40], batch_size=16)["logits"]
    listed = cnn.predict([x_test[:40]], batch_size=16)["logits"]
    np.testing.assert_array_equal(bare, listed)
    np.testing.assert_array_equal(bare, cnn.run(x_test[:40])["logits"])
    q = nnforge.quantize(cnn, [x_test[:64]], "w8a8")
    np.testing.assert_array_equal(q.predict(x_test[:40])["logits"], q.predict([x_test[:40]])["logits"])


def test_a_bare_array_for_two_inputs_names_the_inputs():
    a, b = (helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("a", "b"))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"], name="add")], "two", [a, b], [y])
    model = nnforge.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    with pytest.raises(InputError, match=r"list of 2 arrays, one per input \(a, b\), not one array"):
        model.predict(np.zeros((3, 4), np.float32))


def test_errors_name_the_python_keyword_from_python_and_the_flag_from_the_cli(cnn, x_test, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("not nnforge's")
    q = nnforge.quantize(cnn, [x_test[:32]], "w8a8")
    with pytest.raises(InputError) as err:
        nnforge.compile_model(q, "hls", taken)
    assert "force=True" in str(err.value) and "--force" not in str(err.value)
    res = CliRunner().invoke(cli, ["compile", str(EXAMPLES / "digits_cnn.onnx"), "--calib",
                                   str(EXAMPLES / "digits_calib.npz"), "-o", str(taken)])
    assert res.exit_code == 2 and "pass --force" in res.output and "force=True" not in res.output
    with pytest.raises(InputError, match=r"force=True replaces only a directory nnforge wrote"):
        nnforge.compile_model(q, "hls", taken, force=True)  # and back to Python's spelling after the CLI ran


def test_mlp_examples_have_data_that_fits(recwarn):
    from nnforge.data import load_inputs

    mlp = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    for name in ("digits_mlp_test.npz", "digits_mlp_calib.npz"):
        arrays, labels = load_inputs(EXAMPLES / name, mlp.inputs)
        assert arrays[0].shape[1:] == (64,) and labels is not None
    assert not [w for w in recwarn if "reshaped" in str(w.message)]
    cnn_x = np.load(EXAMPLES / "digits_test.npz")["x"]
    np.testing.assert_array_equal(np.load(EXAMPLES / "digits_mlp_test.npz")["x"], cnn_x.reshape(len(cnn_x), 64))


@pytest.mark.slow
def test_generated_layer_names_agree_between_inspect_and_the_integer_graph():
    """Layers whose Relax vars the importer named (light Inception v1's final reshape and softmax)
    were softmax_152 in inspect and softmax_83 in compile's host list."""
    from nnforge.compiler.quant.layers import float_layers

    path = LIGHT / "light_inception_v1.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not in this onnx wheel")
    model = nnforge.load(path)
    inspected = {layer.name for layer in model.summary().layers}
    layers, _ = float_layers(model.relax, model.output_names, model.onnx_names)
    generated = [l.name for l in layers if l.name.startswith(("softmax_", "reshape_"))]
    assert generated, "the model has importer-named layers"
    assert [l.name for l in layers if l.name not in inspected] == []
