"""The hls ``file`` weight form: weights in binary files, loaded at run time by the C simulation.

Oracles: the numpy reference (``nnforge verify``, ``make csim`` on the golden vectors) and the
``inline`` form of the same model, whose literals the synthesis form must reproduce exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nnforge
from conftest import EXAMPLES
from nnforge.backends.hls import codegen
from nnforge.backends.hls import weights as wts
from nnforge.hw_sim.csim import CSimError

pytestmark = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None,
                                reason="the HLS C simulation needs g++ and make")


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    root = tmp_path_factory.mktemp("weight_files")
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    x = np.load(EXAMPLES / "digits_calib.npz")["x"]
    q = nnforge.quantize(model, [x], "w8a8")
    out = {}
    for form in ("file", "inline"):
        out[form] = nnforge.compile_model(q, "hls", root / form, options={"weights": form}, golden_inputs=[x[:6]])
    return out


def _initializer(header: str, array: str) -> str:
    """The initializer lines of ``array`` in an inline header."""
    m = re.search(rf"{re.escape(array)}\[\d+\] = {{\n(.*?)}};", header, re.S)
    assert m, array
    return m.group(1)


def test_the_file_form_writes_binaries_and_no_literals(projects):
    prj = projects["file"]
    doc = json.loads((prj.path / "weights" / "weights.json").read_text())
    assert doc["format"] == codegen.WEIGHTS_FORMAT and doc["arrays"]
    for a in doc["arrays"]:
        data = (prj.path / "weights" / a["file"]).read_bytes()
        assert len(data) == a["count"] * a["bytes"] and int(a["checksum"]) == wts.checksum(data)
        header = next(p for p in (prj.path / "src" / "weights").glob("*.h") if a["array"] in p.read_text())
        assert f"static wt_" in header.read_text() and f'#include "{a["file"][:-4]}.inc"' in header.read_text()
    assert prj.report["options"]["weights"] == "file"
    assert not (projects["inline"].path / "weights").exists()  # the inline form is unchanged


def test_binaries_hold_the_weight_codes(projects):
    prj = projects["file"]
    by_array = {f"W_{k['ident']}": k["name"] for k in prj.report["kernels"]}
    nodes = {n.name: n for n in prj.graph.nodes}
    doc = json.loads((prj.path / "weights" / "weights.json").read_text())
    checked = 0
    for a in doc["arrays"]:
        if a["array"] in by_array:  # the dense weight codes (other arrays: biases, requantization)
            codes = np.frombuffer((prj.path / "weights" / a["file"]).read_bytes(), dtype=f"<i{a['bytes']}")
            np.testing.assert_array_equal(codes, wts.weight_matrix(nodes[by_array[a["array"]]]).reshape(-1))
            checked += 1
    assert checked >= 3


def test_verify_and_make_csim_pass_on_loaded_weights(projects):
    prj = projects["file"]
    report = nnforge.verify(prj)
    assert report.passed and report.mismatches == 0 and report.samples == 6
    run = subprocess.run(["make", "-s", "csim"], cwd=prj.path, capture_output=True, text=True)
    assert run.returncode == 0 and "PASS: 6 samples" in run.stdout, run.stdout + run.stderr


def test_the_literals_for_synthesis_equal_the_inline_form(projects, tmp_path):
    prj = tmp_path / "prj"
    shutil.copytree(projects["file"].path, prj)
    run = subprocess.run([sys.executable, "tools/weights_to_literals.py"], cwd=prj, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    inline = {p.name: p.read_text() for p in (projects["inline"].path / "src" / "weights").glob("*.h")}
    doc = json.loads((prj / "weights" / "weights.json").read_text())
    for a in doc["arrays"]:
        header = next(text for text in inline.values() if f" {a['array']}[" in text)
        assert (prj / a["include"]).read_text() == _initializer(header, a["array"])
    # and the literal build (what synthesis compiles) passes the testbench without weight files
    exe = prj / "tb_literals"
    build = subprocess.run(["g++", "-std=c++17", "-O1", "-DNNF_WEIGHT_LITERALS", "-o", str(exe),
                            *[str(p) for p in (prj / "src").glob("*.cpp")], *[str(p) for p in (prj / "tb").glob("*.cpp")]],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    shutil.rmtree(prj / "weights")
    run = subprocess.run([str(exe), "tb"], cwd=prj, capture_output=True, text=True)
    assert run.returncode == 0 and "PASS: 6 samples" in run.stdout, run.stdout


def test_a_damaged_weight_file_is_refused(projects, tmp_path):
    prj = tmp_path / "prj"
    shutil.copytree(projects["file"].path, prj)
    doc = json.loads((prj / "weights" / "weights.json").read_text())
    target = prj / "weights" / doc["arrays"][0]["file"]
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    assert not nnforge.verify(prj).passed  # manifest.json names the file, nothing simulated
    with pytest.raises(CSimError, match=r"weight array 1 of .* has the wrong checksum"):
        nnforge.verify(prj, allow_modified=True)
    run = subprocess.run(["make", "-s", "csim"], cwd=prj, capture_output=True, text=True)
    assert run.returncode != 0 and "wrong checksum" in run.stdout
    target.write_bytes(bytes(data[:-1]))
    run = subprocess.run([sys.executable, "tools/weights_to_literals.py"], cwd=prj, capture_output=True, text=True)
    assert run.returncode == 1 and "bytes, not" in run.stderr


def test_the_file_form_is_deterministic(projects, tmp_path):
    again = nnforge.compile_model(projects["file"].qmodel, "hls", tmp_path / "again", options={"weights": "file"},
                                  golden_inputs=[np.load(EXAMPLES / "digits_calib.npz")["x"][:6]])
    for name in projects["file"].report["files"]:
        assert (again.path / name).read_bytes() == (projects["file"].path / name).read_bytes(), name


def test_auto_chooses_files_from_a_million_values():
    def spec(n):
        return codegen.K.KernelSpec("dense", "dense", "d", "k_d", (), (), {}, (wts.carray("W_d", "int8_t", np.zeros(n)),))

    assert codegen.weight_form("auto", {"a": spec(codegen.FILE_AUTO_VALUES - 1), "b": None}) == "inline"
    assert codegen.weight_form("auto", {"a": spec(codegen.FILE_AUTO_VALUES)}) == "file"
    assert codegen.weight_form("inline", {"a": spec(codegen.FILE_AUTO_VALUES)}) == "inline"
    with pytest.raises(nnforge.InputError, match="option 'weights' must be one of auto, inline, file, not 'rom'"):
        codegen.weight_form("rom", {})


@pytest.mark.parametrize("values", [np.array([-128, 127]), np.array([-129, 5]), np.array([0, 2**40]),
                                    np.array([1, 2**64 - 1], dtype=np.uint64), np.array([0, 255], dtype=np.uint64)])
def test_file_encoding_round_trips(values):
    nbytes, signed = wts.file_encoding(values)
    back = np.frombuffer(wts.file_bytes(values, nbytes, signed), dtype=f"<{'i' if signed else 'u'}{nbytes}")
    assert back.tolist() == values.tolist()
    assert nbytes == {(-128, 127): 1, (-129, 5): 2, (0, 2**40): 8, (1, 2**64 - 1): 8, (0, 255): 1}[tuple(values.tolist())]
