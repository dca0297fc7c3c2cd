"""The generated HLS project: compile / verify end to end, the testbench, and the safety rules.

Oracles: the numpy reference (``nnforge.compiler.reference``) for every code, and
``nnforge.simulate`` (the TVM integer build) for accuracy.  Each compiled project is built
with g++ once per module (``backends/hls/simulation.py`` caches the library by source content).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import nnforge
from nnforge.cli import main
from nnforge.compiler import reference
from conftest import EXAMPLES, ZOO

HOSTILE = 'x"); system("rm -rf /"); //'
CALIB = EXAMPLES / "digits_calib.npz"
TEST = EXAMPLES / "digits_test.npz"

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="the HLS C simulation needs g++ and make")


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _flat(x: np.ndarray, name: str) -> np.ndarray:
    return x.reshape(len(x), -1) if name == "mlp" else x  # the MLP takes the 8x8 images as [N, 64]


def _digits(name: str):
    model = nnforge.load(EXAMPLES / f"digits_{name}.onnx")
    calib = _flat(np.load(CALIB)["x"], name)
    return model, nnforge.quantize(model, [calib], "w8a8")


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (calib.npz, test.npz) in the model's input shape."""
    root = tmp_path_factory.mktemp("digits_data")
    out = {"cnn": (CALIB, TEST)}
    for path in (CALIB, TEST):
        d = dict(np.load(path))
        d["x"] = _flat(d["x"], "mlp")
        np.savez(root / path.name, **d)
    out["mlp"] = (root / CALIB.name, root / TEST.name)
    return out


def _make_csim(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "csim"], cwd=project, capture_output=True, text=True, timeout=300)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mlp_project(tmp_path_factory):
    _, qmodel = _digits("mlp")
    out = tmp_path_factory.mktemp("mlp") / "prj"
    test_x = _flat(np.load(TEST)["x"], "mlp")
    return nnforge.compile_model(qmodel, "hls", out, golden_inputs=[test_x]), qmodel


# -- the project ------------------------------------------------------------------------------------

def test_project_layout_and_golden_vectors(mlp_project):
    project, qmodel = mlp_project
    root = project.path
    top = project.report["options"]["top"]
    for rel in (f"tb/{top}_tb.cpp", "tb/inputs.dat", "tb/golden.dat", "script.tcl", "hls_config.cfg", "Makefile",
                "README.md", "report.json", "report.md", "csim.json", f"src/{top}.cpp", f"src/{top}.h",
                "model/qgraph.json"):
        assert (root / rel).is_file(), rel
    # golden.dat is the numpy reference's output for inputs.dat: 32 samples of the given data
    x_codes, golden = project.golden()
    assert len(x_codes) == 32
    expected_in = qmodel.quantize_inputs([_flat(np.load(TEST)["x"][:32], "mlp")])[0]
    np.testing.assert_array_equal(x_codes, expected_in)
    ref = reference.run(qmodel.graph, [x_codes])[qmodel.graph.outputs[0]]
    np.testing.assert_array_equal(golden, ref)
    report = json.loads((root / "report.json").read_text())
    assert [k["name"] for k in report["kernels"]] == [n.name for n in qmodel.graph.nodes]
    assert report["golden"]["samples"] == 32
    tcl = (root / "script.tcl").read_text()
    assert "set_part xcu250-figd2104-2L-e" in tcl and "create_clock -period 5" in tcl and "csim_design" in tcl
    cfg = (root / "hls_config.cfg").read_text()
    assert "part=xcu250-figd2104-2L-e" in cfg and f"syn.top={top}" in cfg and "[hls]" in cfg


def test_make_csim_passes_and_detects_a_wrong_golden_code(mlp_project, tmp_path):
    project, _ = mlp_project
    run = _make_csim(project.path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS: 32 samples, 0 mismatching codes" in run.stdout
    copy = tmp_path / "prj"
    shutil.copytree(project.path, copy)
    lines = (copy / "tb" / "golden.dat").read_text().splitlines()
    first = lines[3].split()
    first[0] = str(int(first[0]) + 1)  # one wrong code in sample 3
    lines[3] = " ".join(first)
    (copy / "tb" / "golden.dat").write_text("\n".join(lines) + "\n")
    run = _make_csim(copy)
    assert run.returncode != 0
    assert "FAIL: 1 of 32 samples differ, 1 mismatching codes" in run.stdout


def test_predict_through_the_c_equals_the_tvm_build(mlp_project):
    project, qmodel = mlp_project
    x = _flat(np.load(TEST)["x"], "mlp")
    ours = project.predict(x, batch_size=100)["logits"]
    theirs = qmodel.predict([x])["logits"]  # TVM integer build, dequantized the same way
    np.testing.assert_array_equal(ours, theirs)
    codes = qmodel.quantize_inputs([x[:20]])[0]
    np.testing.assert_array_equal(project.run_codes(codes), reference.run(qmodel.graph, [codes])["logits"])


def test_verify_without_data_uses_the_golden_vectors(mlp_project):
    project, qmodel = mlp_project
    report = nnforge.verify(project.path)
    assert report.samples == 32 and report.mismatches == 0 and report.csim_accuracy is None
    assert {l.name for l in report.layers} == {n.name for n in qmodel.graph.nodes}


def test_determinism(tmp_path):
    _, qmodel = _digits("mlp")
    x = _flat(np.load(TEST)["x"], "mlp")
    a = _files(nnforge.compile_model(qmodel, "hls", tmp_path / "a", golden_inputs=[x]).path)
    b = _files(nnforge.compile_model(qmodel, "hls", tmp_path / "b", golden_inputs=[x]).path)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    for rel, data in a.items():  # no absolute paths, no timestamps
        assert str(tmp_path).encode() not in data, rel


# -- safety -----------------------------------------------------------------------------------------

def test_existing_outdir_refused_then_replaced_with_force(tmp_path):
    """An existing OUTDIR is refused; --force replaces a project nnforge wrote, never a directory of
    the user's own (tests/test_hostile_inputs.py has the rest of the --force rules)."""
    out = tmp_path / "prj"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["compile", EXAMPLES / "digits_cnn.onnx", "--calib", CALIB, "-o", out]
    res = _cli(*args)
    assert res.exit_code == 2 and "already exists" in res.output and "--force" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    res = _cli(*args, "--force")
    assert res.exit_code == 2 and "nnforge wrote" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert _cli(*args).exit_code == 2  # an empty directory exists too: refused without --force
    res = _cli(*args, "--force")
    assert res.exit_code == 0, res.output
    first = (out / "report.json").read_bytes()
    res = _cli(*args, "--force", "--bits", "w4a8")  # a project nnforge wrote is replaced
    assert res.exit_code == 0, res.output
    assert (out / "report.json").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]  # no temporary directory left


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    from nnforge.backends.hls import HLSBackend

    _, qmodel = _digits("mlp")

    def boom(self, design, options):
        raise RuntimeError("codegen failed")

    monkeypatch.setattr(HLSBackend, "codegen", boom)
    with pytest.raises(RuntimeError, match="codegen failed"):
        nnforge.compile_model(qmodel, "hls", tmp_path / "prj")
    assert list(tmp_path.iterdir()) == []
    # with --force, a failure leaves the previous project exactly as it was
    from nnforge.compiler.output_tree import write_tree

    write_tree(tmp_path / "old", {"keep.txt": "mine"})
    with pytest.raises(RuntimeError, match="codegen failed"):
        nnforge.compile_model(qmodel, "hls", tmp_path / "old", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (tmp_path / "old" / "keep.txt").read_text() == "mine"


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from nnforge import compile as comp

    _, qmodel = _digits("mlp")
    from nnforge.compiler import output_tree

    real = output_tree._write
    calls = []

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(output_tree, "_write", flaky)
    with pytest.raises(nnforge.InputError, match="could not be written: No space left on device"):
        comp.compile_model(qmodel, "hls", tmp_path / "prj")
    assert list(tmp_path.iterdir()) == []


def test_bad_option_is_a_clean_error(tmp_path):
    res = _cli("compile", EXAMPLES / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "p", "--option", "nope=1")
    assert res.exit_code == 2 and "nope" in res.output and "reuse_factor" in res.output
    res = _cli("compile", EXAMPLES / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "p",
               "--option", 'top=a"b')
    assert res.exit_code == 2 and "top" in res.output
    assert not (tmp_path / "p").exists()


def test_verify_needs_a_project(tmp_path):
    res = _cli("verify", tmp_path)
    assert res.exit_code == 2 and "nnforge compile" in res.output


def _hostile_mlp(path: Path) -> None:
    """input [N, 8] -> Gemm -> Relu -> Gemm -> [N, 4], every node and tensor named hostilely."""
    rng = np.random.default_rng(1)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 6], rng.normal(size=48).astype(np.float32))
    b1 = helper.make_tensor("b1", TensorProto.FLOAT, [6], rng.normal(size=6).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [6, 4], rng.normal(size=24).astype(np.float32))
    b2 = helper.make_tensor("b2", TensorProto.FLOAT, [4], rng.normal(size=4).astype(np.float32))
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], [HOSTILE], name=HOSTILE),
        helper.make_node("Relu", [HOSTILE], [HOSTILE + "1"], name=HOSTILE + "1"),
        helper.make_node("Gemm", [HOSTILE + "1", "w2", "b2"], ["out"], name=HOSTILE + "2"),
    ]
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])], [w1, b1, w2, b2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_hostile_node_name_gives_harmless_code(tmp_path):
    _hostile_mlp(tmp_path / "hostile.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32))
    out = tmp_path / "prj"
    res = _cli("compile", tmp_path / "hostile.onnx", "--calib", tmp_path / "calib.npz", "-o", out)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert HOSTILE in {k["name"] for k in report["kernels"]}  # the name survives where it is data
    for path in out.rglob("*"):
        if path.suffix in (".cpp", ".h", ".tcl", ".cfg", ".dat") or path.name == "Makefile":
            assert HOSTILE not in path.read_text(), path
            assert "system(" not in path.read_text(), path
    run = _make_csim(out)
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr
    assert nnforge.verify(out).mismatches == 0


# -- verify: bit-exact on every layer, accuracy through the C == simulate's ---------------------------

def _verify_json(project: Path, data: Path) -> dict:
    res = _cli("verify", project, "--data", data, "--json")
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert res.exit_code == (1 if doc["mismatches"] else 0)
    return doc


def _simulate_accuracy(model_path: Path, data: Path, calib: Path, bits: str = "w8a8") -> float:
    """The oracle: `nnforge simulate`'s quant_accuracy (TVM integer build) with the same calibration."""
    from nnforge.simulate import simulate

    model = nnforge.load(model_path)
    d, c = np.load(data), np.load(calib)
    _, report = simulate(model, [d["x"]], d["y"], bits, [c["x"]])
    return report.quant_accuracy


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_verify_digits_bit_exact_and_accuracy_equals_simulate(name, tmp_path, digits_data):
    model_path = EXAMPLES / f"digits_{name}.onnx"
    calib, test = digits_data[name]
    res = _cli("compile", model_path, "--calib", calib, "--data", test, "-o", tmp_path / "prj")
    assert res.exit_code == 0, res.output
    doc = _verify_json(tmp_path / "prj", test)
    assert doc["samples"] == 450
    assert doc["mismatches"] == 0
    assert doc["compared_tensors"] == len(doc["layers"]) > 0 and doc["not_compared"] == []
    assert doc["csim_accuracy"] == _simulate_accuracy(model_path, test, calib)
    assert doc["quant_accuracy"] == doc["csim_accuracy"]


ZOO_MODELS = ["dwsep", "residual", "fire", "factorised", "mlp_bn_train"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_MODELS)
def test_verify_zoo_bit_exact(name, tmp_path):
    model_path = ZOO / f"{name}.onnx"
    model = nnforge.load(model_path)
    shape = tuple(1 if isinstance(d, str) else d for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(64,) + shape).astype(np.float32))
    np.savez(tmp_path / "test.npz", x=rng.normal(size=(200,) + shape).astype(np.float32),
             y=rng.integers(0, 10, size=200))
    res = _cli("compile", model_path, "--calib", tmp_path / "calib.npz", "--data", tmp_path / "test.npz",
               "-o", tmp_path / "prj")
    assert res.exit_code == 0, res.output
    doc = _verify_json(tmp_path / "prj", tmp_path / "test.npz")
    assert doc["samples"] == 200 and doc["mismatches"] == 0 and doc["not_compared"] == []
    assert doc["csim_accuracy"] == _simulate_accuracy(model_path, tmp_path / "test.npz", tmp_path / "calib.npz")
    run = _make_csim(tmp_path / "prj")
    assert run.returncode == 0 and "PASS: 32 samples" in run.stdout, run.stdout + run.stderr


@pytest.mark.slow
def test_axis_io_and_reuse_factor_compile_and_pass(tmp_path):
    res = _cli("compile", EXAMPLES / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "prj",
               "--option", "io=axis", "--option", "reuse_factor=4", "--option", "clock_ns=4")
    assert res.exit_code == 0, res.output
    assert "create_clock -period 4 " in (tmp_path / "prj" / "script.tcl").read_text()
    run = _make_csim(tmp_path / "prj")
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr
    assert nnforge.verify(tmp_path / "prj").mismatches == 0


@pytest.mark.slow
def test_pruned_and_shared_layers_use_sparse_and_codebook_storage_bit_exactly(tmp_path):
    res = _cli("compile", EXAMPLES / "digits_cnn.onnx", "--calib", CALIB, "--bits", "w4a8", "--prune", "0.7",
               "--share", "3", "-o", tmp_path / "prj")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "prj" / "report.json").read_text())
    forms = {k["storage"] for k in report["kernels"] if k["storage"]}
    assert forms <= {"codebook", "sparse"} and forms, forms
    assert report["quantization"]["compress"] is not None
    doc = _verify_json(tmp_path / "prj", TEST)
    assert doc["samples"] == 450 and doc["mismatches"] == 0
    assert doc["csim_accuracy"] == doc["quant_accuracy"]
    run = _make_csim(tmp_path / "prj")
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr
