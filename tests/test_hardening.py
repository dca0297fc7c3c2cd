"""The hardening fixes beyond the command-line table (tests/test_hostile_inputs.py).

* verify: every tampering of a project is a FAIL naming the file (manifest of SHA-256), for
  hls projects and for a project of any backend through the neutral facade; golden vectors
  are compared with the reference; damaged files are clean errors under ``--allow-modified``.
* the output writer: ``--force`` rules, the atomic no-replace move under a race, leftovers of
  killed runs, permissions under the umask.
* build caches: a truncated library is rebuilt, never loaded (a SIGBUS otherwise).
* names, quantizer integer ranges, messages, Ctrl-C.

Oracles: hand-worked numbers (int64 bounds, file modes), ``reference.run`` and onnxruntime.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.compiler import output_tree
from nnforge.compiler.errors import InputError, ModelError
from nnforge.compiler.output_tree import MANIFEST, check_manifest, write_file, write_tree
from conftest import EXAMPLES, ort_run

MLP = EXAMPLES / "digits_mlp.onnx"
CALIB = EXAMPLES / "digits_calib.npz"


def cli(*args) -> object:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


@pytest.fixture(scope="module")
def hls_project(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prj") / "mlp"
    r = cli("compile", MLP, "--calib", CALIB, "-o", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def project(hls_project, tmp_path) -> Path:
    copy = tmp_path / "prj"
    shutil.copytree(hls_project, copy)
    return copy


# -- verify catches tampering ----------------------------------------------------------------------------

def _bump_first_code(path: Path) -> None:
    """golden.dat: the first code of the first line, one higher."""
    lines = path.read_text().splitlines()
    codes = lines[0].split()
    codes[0] = str(int(codes[0]) + 1)
    lines[0] = " ".join(codes)
    path.write_text("\n".join(lines) + "\n")


def _bump_weight(path: Path) -> None:
    """A weight header: the first weight of the array, one LSB higher."""
    text = path.read_text()
    start = text.index("] = {") + len("] = {")
    head, rest = text[:start], text[start:]
    first = rest.split(",")[0]
    path.write_text(head + rest.replace(first, f" {int(first) + 1}" if int(first) < 100 else f" {int(first) - 1}", 1))


TAMPER = {
    "golden-edited": ("tb/golden.dat", _bump_first_code),
    "weight-1-lsb": ("src/weights/logits.h", _bump_weight),
    "inputs-truncated": ("tb/inputs.dat", lambda p: p.write_bytes(p.read_bytes()[:100])),
    "report-truncated": ("report.json", lambda p: p.write_bytes(p.read_bytes()[:50])),
    "csim-json-garbage": ("csim.json", lambda p: p.write_bytes(b"\x00garbage")),
    "qgraph-truncated": ("model/qgraph.npz", lambda p: p.write_bytes(p.read_bytes()[:200])),
    "model-deleted": ("model/model.onnx", lambda p: p.unlink()),
    "manifest-deleted": (MANIFEST, lambda p: p.unlink()),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TAMPER))
def test_verify_names_every_tampered_file(project, name):
    rel, tamper = TAMPER[name]
    assert cli("verify", project).exit_code == 0  # intact: PASS
    tamper(project / rel)
    r = cli("verify", project)
    assert r.exit_code == 1, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("FAIL") and rel in last, r.output


def test_a_1_lsb_weight_change_that_the_golden_vectors_miss_is_still_caught(project):
    """The 32 golden vectors may not exercise one weight; the manifest does."""
    _bump_weight(project / "src/weights/logits.h")
    report = nnforge.verify(project, allow_modified=True)  # the simulation alone
    assert report.changed_files == ["src/weights/logits.h"] and report.modified_allowed
    strict = nnforge.verify(project)
    assert not strict.passed and strict.changed_files == ["src/weights/logits.h"] and strict.samples == 0


def test_golden_vectors_are_compared_with_the_reference(project):
    """With the manifest out of the way (--allow-modified), an edited golden.dat still fails."""
    _bump_first_code(project / "tb/golden.dat")
    report = nnforge.verify(project, allow_modified=True)
    assert report.golden_mismatches == 1 and report.mismatches == 0 and not report.passed
    assert any("tb/golden.dat" in n for n in report.notes)
    r = cli("verify", project, "--allow-modified", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.output.strip().splitlines()[-1])
    assert doc["golden_mismatches"] == 1 and doc["passed"] is False and doc["changed_files"] == ["tb/golden.dat"]


def test_manifest_lists_every_file_with_its_digest(project):
    import hashlib

    doc = json.loads((project / MANIFEST).read_text())
    files = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file())
    assert sorted(doc["files"]) == [f for f in files if f != MANIFEST]
    for rel, digest in doc["files"].items():
        assert digest == "sha256:" + hashlib.sha256((project / rel).read_bytes()).hexdigest()
    report = json.loads((project / "report.json").read_text())
    assert MANIFEST in report["files"] and set(report["files"]) == set(files)
    assert check_manifest(project).intact


def test_an_extra_file_is_not_a_change(project):
    (project / "build.log").write_text("make csim output")
    check = check_manifest(project)
    assert check.intact and check.extra == ["build.log"]
    assert nnforge.verify(project).passed


# a project of another backend: the writer and verify are backend-neutral

def test_manifest_and_verify_work_for_any_backend(tmp_path):
    import test_backend_facade as facade  # registers the fake backend

    model = nnforge.load(MLP)
    x = np.load(CALIB)["x"][:64].reshape(64, 64)
    qmodel = nnforge.quantize(model, [x], "w8a8")
    prj = nnforge.compile_model(qmodel, facade.FakeBackend.name, tmp_path / "fake", golden_inputs=[x]).path
    assert (prj / MANIFEST).is_file() and "fake/layers.txt" in json.loads((prj / MANIFEST).read_text())["files"]
    assert nnforge.verify(prj).passed
    (prj / "fake/layers.txt").write_text("edited\n")
    report = nnforge.verify(prj)
    assert not report.passed and report.changed_files == ["fake/layers.txt"]
    # --force replaces a project nnforge wrote, for this backend too
    again = nnforge.compile_model(qmodel, facade.FakeBackend.name, prj, force=True, golden_inputs=[x])
    assert nnforge.verify(again).passed


# -- the output writer -----------------------------------------------------------------------------------

def test_force_replaces_only_what_nnforge_wrote(tmp_path):
    out = tmp_path / "out"
    write_tree(out, {"a.txt": "1"})
    with pytest.raises(InputError, match="already exists; pass force=True"):  # from Python: the keyword
        write_tree(out, {"a.txt": "2"})
    write_tree(out, {"b.txt": "2"}, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", MANIFEST]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="nnforge wrote"):
        write_tree(mine, {"a.txt": "1"}, force=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("keep")
    with pytest.raises(InputError, match="nnforge wrote"):
        write_tree(tmp_path / "file", {"a.txt": "1"}, force=True)
    assert (tmp_path / "file").read_text() == "keep"
    # a folder nnforge wrote that holds an input of this command is refused too
    write_tree(tmp_path / "data", {"calib.npz": b"x"})
    with pytest.raises(InputError, match="holding the command's inputs"):
        write_tree(tmp_path / "data", {"a.txt": "1"}, force=True, inputs=[tmp_path / "data" / "calib.npz"])
    assert (tmp_path / "data" / "calib.npz").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "file", "mine", "out"]  # nothing left over


def test_run_force_never_replaces_the_model(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(MLP, model)
    before = model.read_bytes()
    r = cli("run", model, "--input", CALIB, "-o", model, "--force")
    assert r.exit_code == 2 and "inputs" in r.output
    assert model.read_bytes() == before
    r = cli("run", model, "--input", CALIB, "-o", tmp_path / "y.npz")
    assert r.exit_code == 0, r.output
    r = cli("run", model, "--input", CALIB, "-o", tmp_path / "y.npz", "--force")  # its own output: replaced
    assert r.exit_code == 0, r.output


def test_the_final_move_refuses_a_directory_that_appeared_meanwhile(tmp_path, monkeypatch):
    """Check-then-act: another run creates OUTDIR after this one's check; the move must refuse."""
    out = tmp_path / "out"
    real = output_tree._write
    state = {"done": False}

    def other_run_finishes_first(path, data):
        if not state["done"]:
            state["done"] = True
            write_tree(out, {"other.txt": "the other run's project"})
        real(path, data)

    monkeypatch.setattr(output_tree, "_write", other_run_finishes_first)
    with pytest.raises(InputError, match="appeared while this run was working"):
        write_tree(out, {"a.txt": "mine"})
    assert (out / "other.txt").read_text() == "the other run's project"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_concurrent_writers_exactly_one_wins(tmp_path):
    out = tmp_path / "out"
    results: list[str] = []
    barrier = threading.Barrier(8)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            write_tree(out, {f"f{j}.txt": f"{i}" * 1000 for j in range(20)})
            results.append(f"ok {i}")
        except InputError as err:
            results.append(f"refused: {err}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r.startswith("ok")]
    assert len(winners) == 1 and len(results) == 8, results
    assert all("already exists" in r for r in results if r.startswith("refused"))
    winner = winners[0].split()[1]
    assert all((out / f"f{j}.txt").read_text() == winner * 1000 for j in range(20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_no_replace_fallback_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(output_tree, "_renameat2", lambda src, dst, flags: False)
    write_tree(tmp_path / "out", {"a.txt": "1"})
    with pytest.raises(InputError, match="already exists"):
        write_tree(tmp_path / "out", {"a.txt": "2"})
    write_tree(tmp_path / "out", {"a.txt": "3"}, force=True)  # the two-step swap
    assert (tmp_path / "out" / "a.txt").read_text() == "3"
    write_file(tmp_path / "y.bin", b"1")
    with pytest.raises(InputError, match="already exists"):
        write_file(tmp_path / "y.bin", b"2")
    assert (tmp_path / "y.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "y.bin"]


def test_leftovers_of_a_killed_run_are_removed_or_reported(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is no longer running
    stale = tmp_path / f".prj.{dead.pid}.0123abcd.tmp"
    stale.mkdir()
    (stale / "half.h").write_text("half a project")
    stale_old = tmp_path / f".prj.{dead.pid}.89abcdef.old"
    stale_old.mkdir()
    live = tmp_path / f".prj.{os.getpid()}.deadbeef.tmp"  # this process: a concurrent writer
    live.mkdir()
    legacy = tmp_path / ".prj.k2j3h4g5.tmp"  # tempfile.mkdtemp's names, from older versions
    legacy.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_tree(tmp_path / "prj", {"a.txt": "1"})
    messages = " ".join(str(w.message) for w in caught)
    assert not stale.exists() and not stale_old.exists() and live.exists() and legacy.exists()
    assert stale.name in messages and stale_old.name in messages and legacy.name in messages
    assert "interrupted" in messages


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                       (0o002, 0o664, 0o775)])
def test_outputs_get_the_users_permissions(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        out = write_tree(tmp_path / "prj", {"src/a.h": "x", "report.json": "{}"})
        npz = write_file(tmp_path / "y.npz", b"data")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert mode(out) == dir_mode and mode(out / "src") == dir_mode
    assert mode(out / "src/a.h") == file_mode and mode(out / MANIFEST) == file_mode and mode(npz) == file_mode


def test_write_errors_are_input_errors_naming_the_output(tmp_path, monkeypatch):
    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_tree, "_write", full)
    with pytest.raises(InputError, match=r"'.*prj' could not be written: No space left on device"):
        write_tree(tmp_path / "prj", {"a.txt": "1"})
    assert list(tmp_path.iterdir()) == []


# -- build caches ---------------------------------------------------------------------------------------

_CACHE_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import nnforge
out = nnforge.load(sys.argv[2]).run(np.ones((2, 64), np.float32), cache_dir=Path(sys.argv[1]))["logits"]
np.save(sys.argv[3], out)
"""


@pytest.mark.slow
def test_a_truncated_cached_library_is_rebuilt_not_loaded(tmp_path):
    """A later process finds a damaged library in the cache (a killed copy, a full disk, a foreign
    file): it must rebuild it.  Each run is its own process, as in use: loading a truncated
    library dies of SIGBUS, which would take the test run with it."""
    from nnforge.compiler import cache_entry

    cache = tmp_path / "cache"

    def run(tag: str) -> np.ndarray:
        r = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(cache), str(MLP), str(tmp_path / tag)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
        return np.load(tmp_path / f"{tag}.npy")

    first = run("first")
    libs = sorted(cache.glob("*.so"))
    assert len(libs) == 1 and cache_entry.valid(libs[0])
    data = libs[0].read_bytes()
    for damaged in (data[: len(data) // 3], b"\x7fELF" + b"\0" * 60):  # truncated; foreign
        libs[0].write_bytes(damaged)
        assert not cache_entry.valid(libs[0])
        np.testing.assert_array_equal(run("again"), first)
        assert cache_entry.valid(libs[0]) and libs[0].stat().st_size == len(data)


@pytest.mark.slow
def test_a_truncated_csim_library_is_rebuilt(project, tmp_path):
    from nnforge.compiler import cache_entry
    from nnforge.hw_sim import csim

    so = csim.build(project / "src", "nnforge_top", build_dir=tmp_path / "cache", opt="-O1")
    size = so.stat().st_size
    so.write_bytes(so.read_bytes()[: size // 2])
    assert not cache_entry.valid(so)
    again = csim.build(project / "src", "nnforge_top", build_dir=tmp_path / "cache", opt="-O1")
    assert again == so and cache_entry.valid(so) and so.stat().st_size == size
    so.with_suffix(".json").write_text("{damaged")  # the trace manifest travels with the library
    csim.build(project / "src", "nnforge_top", build_dir=tmp_path / "cache", opt="-O1")
    assert json.loads(so.with_suffix(".json").read_text())["top"] == "nnforge_top"


# -- names ----------------------------------------------------------------------------------------------

def _clash_model() -> onnx.ModelProto:
    """A Gemm named like the graph input ('x'), and two Gemms of one name ('fc')."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.ones(3, "float32"), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.ones(2, "float32"), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="x"),
             helper.make_node("Relu", ["h"], ["r"], name="fc"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("logits", TP.FLOAT, ["N", 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_layer_names_are_unique_and_never_an_inputs_name(tmp_path):
    path = tmp_path / "clash.onnx"
    onnx.save(_clash_model(), str(path))
    r = cli("inspect", path, "--json")
    assert r.exit_code == 0, r.output
    layers = json.loads(r.output)["layers"]
    names = [l["name"] for l in layers]
    assert len(set(names)) == len(names) and "x" not in names
    assert {(l["name"], l["onnx_name"]) for l in layers if l["name"] != l["onnx_name"]} == {("x#2", "x"), ("fc#2", "fc")}
    table = cli("inspect", path).output
    assert "x#2 (ONNX name 'x')" in " ".join(table.split())
    # the integer graph keeps the input tensor: its codes equal the float model's (onnxruntime) closely
    model = nnforge.load(path)
    x = np.random.default_rng(1).normal(size=(200, 4)).astype("float32")
    qmodel = nnforge.quantize(model, [x], "w16a16")
    assert qmodel.graph.tensors["x"].shape[1:] == (4,) and [n.name for n in qmodel.graph.nodes] == ["x#2", "fc#2"]
    assert [l["name"] for l in layers if l["op"] == "dense"] == ["x#2", "fc#2"]  # inspect's names, the same
    renamed = _clash_model()  # onnxruntime refuses repeated node names; they do not change the numbers
    for i, node in enumerate(renamed.graph.node):
        node.name = f"n{i}"
    ref = ort_run(renamed, {"x": x})[0]
    got = qmodel.predict([x])["logits"]
    assert np.max(np.abs(got - ref)) < 1e-2 * np.max(np.abs(ref))


# -- the quantizer's integers -------------------------------------------------------------------------

def test_requantization_range_check_by_hand():
    from nnforge.compiler.quant.quantize import _check_requant

    # |acc| <= 2^47, M = 2^15 - 1, n = 20: 2^47 * 32767 + 2^19 < 2^63 - 1
    _check_requant("ok", "output", 1 << 47, 32767, 20)
    # |acc| <= 2^48: 2^48 * 32767 + 2^19 = 2^63 - 2^48 + 2^19 < 2^63: still fits
    _check_requant("ok", "output", 1 << 48, 32767, 20)
    with pytest.raises(ModelError, match=r"layer 'big': .* int64"):
        _check_requant("big", "output", 1 << 48, 32768, 20)  # 2^63 + 2^19 > 2^63 - 1
    with pytest.raises(ModelError, match=r"layer 'left': .* int64"):
        _check_requant("left", "input", 1 << 15, 1, -48)  # 2^15 << 48 = 2^63
    _check_requant("left", "input", 1 << 15, 1, -47)
    with pytest.raises(ModelError, match="shift must be at most 62, not 63"):
        _check_requant("far", "output", 1, 16384, 63)
    _check_requant("per-channel", "output", [10, 20], np.array([16384, 16384]), np.array([30, 62]))


def test_a_bias_the_scales_cannot_represent_is_an_error_naming_the_layer():
    from test_hostile_inputs import tiny_weights_model

    model = nnforge.load(tiny_weights_model(1e-25))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    with pytest.raises(ModelError, match=r"layer 'fc1': its bias must be representable .* int64"):
        nnforge.quantize(model, [x], "w8a8")
    # small but representable weights quantize, and the integer model matches the reference exactly
    ok = nnforge.quantize(nnforge.load(tiny_weights_model(1e-3)), [x], "w8a8")
    codes = ok.quantize_inputs([x])
    np.testing.assert_array_equal(ok.trace(codes)["fc1"], ok.reference(codes)["fc1"])


def test_nan_weights_are_an_error_when_quantizing(tmp_path):
    from test_hostile_inputs import tiny_weights_model

    m = tiny_weights_model(1.0)
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[0, 0] = np.nan
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w1"))
    with pytest.warns(UserWarning, match="NaN"):
        model = nnforge.load(m)
    with pytest.raises(ModelError, match=r"layer 'fc1': weights and bias must be finite"):
        nnforge.quantize(model, [np.ones((8, 4), np.float32)], "w8a8")


# -- data through the Python API ---------------------------------------------------------------------------

def test_api_simulate_checks_its_data():
    from nnforge.simulate import simulate

    model = nnforge.load(MLP)
    x = np.load(CALIB)["x"].reshape(-1, 64)
    with pytest.raises(InputError, match="dtype float32, not int32"):
        simulate(model, [x.astype(np.int32)], None)
    with pytest.raises(InputError, match="at least one sample"):
        simulate(model, [x[:0]], None)
    with pytest.raises(InputError, match="labels must be 1-D"):
        simulate(model, [x], np.zeros((len(x), 2), np.int64))


def test_loader_accepts_whole_float_labels_and_float64_data(tmp_path):
    from nnforge.data import load_inputs

    model = nnforge.load(MLP)
    x = np.load(CALIB)["x"][:10].reshape(10, 64).astype(np.float64)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10, dtype=np.float64))
    (arr,), labels = load_inputs(tmp_path / "d.npz", model.inputs)
    assert arr.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.arange(10))
    np.testing.assert_array_equal(arr, x.astype(np.float32))


def test_a_yaml_config_with_a_few_aliases_still_loads(tmp_path):
    from nnforge.compiler.quant.quant_config import parse_config

    p = tmp_path / "q.yaml"
    p.write_text("default: &d\n  weight_bits: 4\n  calibration: minmax\nop_types:\n  dense: *d\n")
    config = parse_config(p)
    assert config.default.weight_bits == 4 and config.op_types["dense"]["calibration"] == "minmax"


# -- messages ---------------------------------------------------------------------------------------------

def test_the_input_shape_hint_is_a_form_the_parser_takes(tmp_path):
    path = tmp_path / "dyn.onnx"
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", TP.FLOAT, ["N", "feat", 3])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, ["N", "feat", 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    r = cli("inspect", path)
    assert r.exit_code == 2
    hint = r.output.split("--input-shape ")[1].split(",", 3)
    value = ",".join(hint[:3]).split()[0]
    assert value == "x=N,<d1>,3"
    r = cli("inspect", path, "--input-shape", value.replace("<d1>", "5"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["inputs"][0]["shape"] == ["batch", 5, 3]


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nnforge, "load", interrupted)
    r = CliRunner().invoke(main, ["inspect", str(MLP)])
    assert r.exit_code == 130
    assert r.output.strip().splitlines() == ["interrupted (Ctrl-C)"]


def test_ctrl_c_in_a_real_process(tmp_path):
    """SIGINT while the command runs: exit 130, one line, no traceback, nothing written."""
    import signal
    import time

    script = ("import signal, sys, time, nnforge, nnforge.cli\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # a background job starts with SIGINT ignored
              "def load(*a, **k):\n"
              "    print('loading', flush=True)\n"
              "    time.sleep(60)\n"
              "nnforge.load = load\n"
              "nnforge.cli.main()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "compile", str(MLP), "--calib", str(CALIB), "-o",
                             str(tmp_path / "prj")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    assert proc.stdout.readline().strip() == "loading"  # past the imports, into the (stubbed) model load
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted (Ctrl-C)"]
    assert list(tmp_path.iterdir()) == []
