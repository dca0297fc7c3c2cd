"""A compiled systolic project: its files, determinism, names, golden words, and running it.

Oracles: the numpy reference (``reference.run``) for every code; hand-counted MACs and memory
sizes; the hdl library's own bytes.  The RTL tests need ``nnforge.hw_sim.rtl`` and a simulator
and skip, saying so, without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import nnforge
import nnforge.hw_sim
from nnforge.backends.systolic import HDL_DIR, isa
from nnforge.backends.systolic.manifest import unpack_words
from nnforge.backends.systolic.project import TB_SOURCE
from nnforge.cli import main
from nnforge.compiler import reference
from conftest import EXAMPLES
from systolic_util import BACKEND, data, quantized

HOSTILE = 'x"); $finish; system("rm -rf /"); //'


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    _, _, test = data("digits_cnn")
    out = tmp_path_factory.mktemp("cnn") / "prj"
    return nnforge.compile_model(quantized("digits_cnn"), "systolic", out, golden_inputs=[test]), test


def test_project_files_and_images(cnn):
    project, _ = cnn
    root = project.path
    files = _files(root)
    hdl = {f"rtl/{p.name}": p.read_bytes() for p in HDL_DIR.iterdir() if p.suffix in (".v", ".sv", ".vh")}
    assert hdl and all(files[k] == v for k, v in hdl.items())  # the library, unchanged
    for name in ("mem/prog.hex", "mem/wmem.hex", "mem/imem.hex", "mem/pmem.hex", "program.lst", "systolic.json",
                 "tb/run_sim.py", "tb/inputs.npy", "tb/golden.npy", "tb/config.json", "Makefile", "README.md",
                 "report.md", "report.json"):
        assert name in files, name
    if (Path(nnforge.hw_sim.__file__).parent / "systolic" / TB_SOURCE).is_file():
        assert f"tb/{TB_SOURCE}" in files
    m = json.loads(files["systolic.json"])
    # every image is padded to its memory's depth, one word of the memory's width a line
    widths = {"prog": 576, "wmem": 8 * 8, "imem": 8 * 4, "pmem": 8 * (32 + 22)}
    for name, width in widths.items():
        lines = files[f"mem/{name}.hex"].decode().split()
        assert len(lines) == m["memories"][name]["depth"] and {len(s) for s in lines} == {width // 4}
    # the weights by hand: conv 1->8 (3x3): 1 word x 9 taps x 8 lanes = 72 words; 8->16: 2 x 9 x 8 = 144;
    # 16->16: 2 x 9 x 2 x 8 = 288; dense 64->10 over [16, 2, 2]: 2 x 4 x 2 x 8 = 128
    assert m["memories"]["wmem"]["used"] == 72 + 144 + 288 + 128
    prog = [isa.decode(int(s, 16)) for s in files["mem/prog.hex"].decode().split()]
    used = m["memories"]["prog"]["used"]
    assert [i.op for i in prog[:2]] == [isa.OP_INPUT, isa.OP_SYNC] and prog[used - 1].op == isa.OP_END
    assert all(i.op == isa.OP_END for i in prog[used:])  # padding words decode to END
    assert [i.get("count") for i in prog[:used] if i.op == isa.OP_SYNC] == list(range(m["n_sync"]))


def test_report_rows_carry_cycles_and_macs(cnn):
    project, _ = cnn
    rows = {r["name"]: r for r in project.report["kernels"]}
    # MACs by hand: O x OH x OW x (I/g) x kh x kw; dense K x N
    assert rows["/features/features.0/Conv"]["macs"] == 8 * 8 * 8 * 1 * 9
    assert rows["/features/features.3/Conv"]["macs"] == 16 * 8 * 8 * 8 * 9
    assert rows["logits"]["macs"] == 64 * 10 and rows["/features/features.6/MaxPool"]["macs"] == 0
    m = json.loads((project.path / "systolic.json").read_text())
    for layer in m["layers"]:
        row = rows[layer["name"]]
        assert row["predicted_cycles"] == layer["predicted_cycles"] == row["estimate"]["latency_cycles"]
        assert row["utilization_bound"] == pytest.approx(row["macs"] / (row["predicted_cycles"] * 64), abs=1e-6)
    assert rows["/features/features.3/Conv"]["storage"] == "dense" and rows["logits"]["weight_bytes"] == 128 * 8
    lst = (project.path / "program.lst").read_text()
    assert f"; total {m['total_cycles']} cycles per sample" in lst and "GEMM" in lst and "WINDOW.MAX" in lst


def test_the_images_run_in_the_model_equal_the_reference_on_every_layer(cnn):
    project, test = cnn
    codes = project.qmodel.quantize_inputs([test[:40]])
    sim = BACKEND.run_model(project.path, codes)
    ref = reference.run(project.graph, codes)
    assert set(sim.tensors) == {n.output for n in project.graph.nodes}
    for name, got in sim.tensors.items():
        assert np.array_equal(got, ref[name]), name
    m = json.loads((project.path / "systolic.json").read_text())
    for layer in m["layers"]:  # the model's SYNC stamps agree with the cycle model
        assert sim.layers[layer["name"]]["measured_cycles"] == layer["predicted_cycles"]


def test_golden_words_are_the_reference_codes(cnn):
    project, _ = cnn
    m = json.loads((project.path / "systolic.json").read_text())
    x_codes, y_codes = project.golden()
    words = np.load(project.path / "tb" / "inputs.npy")
    golden = np.load(project.path / "tb" / "golden.npy")
    assert words.shape == (len(x_codes), m["n_in_words"], 8) and golden.shape == (len(x_codes), m["n_out_words"], 8)
    assert np.array_equal(unpack_words(m["inputs"][0]["layout"], words, 8), x_codes)
    assert np.array_equal(unpack_words(m["outputs"][0]["layout"], golden, 8), y_codes)
    assert golden.min() >= 0 and golden.max() < 256  # raw 8-bit lanes, as the stream carries them
    cfg = json.loads((project.path / "tb" / "config.json").read_text())
    assert cfg["golden"] == "golden.npy" and cfg["cols"] == 8 and cfg["max_cycles"] > m["total_cycles"]


def test_compile_is_deterministic(cnn, tmp_path):
    project, test = cnn
    again = nnforge.compile_model(quantized("digits_cnn"), "systolic", tmp_path / "again", golden_inputs=[test])
    assert _files(again.path) == _files(project.path)
    for name, data_ in _files(project.path).items():
        if name.endswith((".v", ".md", ".json", ".lst", ".py", ".hex")) or name == "Makefile":
            assert str(project.path) not in data_.decode(), name  # no absolute paths


def _hostile_model(path: Path) -> None:
    rng = np.random.default_rng(1)
    init = lambda n, *s: onnx.numpy_helper.from_array(rng.normal(size=s).astype(np.float32) * 0.3, n)
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], [HOSTILE], name=HOSTILE, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", [HOSTILE], ["r"], name=HOSTILE + "\nrelu"),
             helper.make_node("Transpose", ["r"], ["out"], name="T", perm=[0, 1, 3, 2])]
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 4, 4])],
                              [init("w1", 3, 2, 3, 3), init("b1", 3)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_hostile_names_a_custom_top_and_a_host_tail(tmp_path):
    _hostile_model(tmp_path / "h.onnx")
    x = np.random.default_rng(0).normal(size=(32, 2, 4, 4)).astype(np.float32)
    q = nnforge.quantize(nnforge.load(tmp_path / "h.onnx"), [x], "w8a8")
    project = nnforge.compile_model(q, "systolic", tmp_path / "prj", options={"top": "my_accel"}, golden_inputs=[x])
    files = _files(project.path)
    wrapper = files["rtl/my_accel.v"].decode()
    assert "module my_accel (" in wrapper and "nnf_systolic_top #(" in wrapper and ".COLS(8)" in wrapper
    for name, content in files.items():
        if name.startswith(("rtl/", "mem/", "tb/run_sim")) or name == "Makefile":
            assert b"system(" not in content and b"$finish" not in content, name
    m = json.loads(files["systolic.json"])
    t = next(n.name for n in q.graph.nodes if n.op == "transpose")
    assert m["host"][0]["name"] == t and "no instruction for 'transpose'" in m["host"][0]["reason"]
    assert [h["name"] for h in project.report["host"]] == [t]
    assert HOSTILE in {k["name"] for k in project.report["kernels"]}  # the name survives where it is data
    lst = files["program.lst"].decode()
    assert json.dumps(HOSTILE) in lst and "relu\n" not in lst  # quoted and on one line
    codes = q.quantize_inputs([x[:8]])
    sim = BACKEND.run_model(project.path, codes)
    ref = reference.run(q.graph, codes)
    assert set(sim.tensors) >= {q.graph.outputs[0], HOSTILE}
    for name, got in sim.tensors.items():
        assert np.array_equal(got, ref[name]), name


def test_cli_compile_systolic(tmp_path):
    out = tmp_path / "p"
    res = CliRunner().invoke(main, ["compile", str(EXAMPLES / "digits_mlp.onnx"), "--calib",
                                    str(EXAMPLES / "digits_calib.npz"), "--backend", "systolic", "--option",
                                    "rows=4", "--option", "cols=16", "-o", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((out / "systolic.json").read_text())
    assert m["parameters"]["ROWS"] == 4 and m["parameters"]["COLS"] == 16


# -- the RTL (cocotb + Verilator) ---------------------------------------------------------------------

def _rtl_or_skip():
    try:
        from nnforge.hw_sim import rtl
    except ImportError as err:
        pytest.skip(f"the systolic RTL runner (nnforge.hw_sim.rtl) is not available: {err}")
    missing = rtl.simulator_missing()
    if missing:
        pytest.skip(f"no Verilog simulator: {missing}")
    tb = Path(nnforge.hw_sim.__file__).parent / "systolic" / TB_SOURCE
    if not tb.is_file():
        pytest.skip(f"the program testbench {tb.name} is not in nnforge.hw_sim.systolic")
    return rtl


@pytest.fixture(scope="module")
def rtl_run(cnn):
    """The digits CNN's project through the RTL, tracing every layer (one build, three samples)."""
    _rtl_or_skip()
    project, test = cnn
    codes = project.qmodel.quantize_inputs([test[:3]])
    return project, codes, project.simulate(codes, trace=True)


@pytest.mark.slow
def test_rtl_equals_the_reference_on_every_layer(rtl_run):
    project, codes, sim = rtl_run
    ref = reference.run(project.graph, codes)
    assert set(sim.tensors) >= {n.output for n in project.graph.nodes}
    for name in {n.output for n in project.graph.nodes}:
        assert np.array_equal(sim.tensors[name], ref[name]), name
    report = nnforge.verify(project.path)  # the golden vectors through the RTL, every layer
    assert report.mismatches == 0 and report.backend == "systolic" and report.samples == 32


@pytest.mark.slow
def test_rtl_cycles_are_the_cycle_model(rtl_run):
    """docs/systolic.md: the controller waits exact drains, so the SYNC stamps are isa.cycles' sums."""
    project, _, sim = rtl_run
    m = json.loads((project.path / "systolic.json").read_text())
    measured = {l["name"]: sim.layers[l["name"]]["measured_cycles"] for l in m["layers"]}
    assert measured == {l["name"]: l["predicted_cycles"] for l in m["layers"]}


@pytest.mark.slow
def test_make_sim_runs_the_standalone_testbench(tmp_path):
    import subprocess
    import sys

    _rtl_or_skip()
    _, _, test = data("mlp_bn")  # small: a 2x4 array builds fast
    root = tmp_path / "prj"
    nnforge.compile_model(quantized("mlp_bn"), "systolic", root, options={"rows": 2, "cols": 4},
                          golden_inputs=[test])
    run = lambda: subprocess.run(["make", "-s", "sim", f"PYTHON={sys.executable}"], cwd=root, capture_output=True,
                                 text=True, timeout=900)
    ok = run()
    assert ok.returncode == 0 and "tb_program: 1 of 1 passed" in ok.stdout, ok.stdout[-3000:] + ok.stderr[-3000:]
    golden = np.load(root / "tb" / "golden.npy")
    golden[5, 0, 3] ^= 1  # one lane of one sample's output wrong: the bench must say so
    np.save(root / "tb" / "golden.npy", golden)
    bad = run()
    assert bad.returncode != 0 and "tb_program: 0 of 1 passed" in bad.stdout, bad.stdout[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name,share", [("dwsep", None), ("residual", None), ("fire", None), ("factorised", None),
                                        ("mlp_bn", None), ("dwsep", 4), ("fire", 4)])
def test_rtl_runs_the_zoo_bit_exactly(name, share, tmp_path):
    """Concat in place, pad, add, mul, lookup tables, average and global pooling, depthwise convs and
    shared weights through the RTL (the 8x8 build is cached: one build for every model)."""
    _rtl_or_skip()
    _, _, test = data(name)
    q = quantized(name, "w8a8", share)
    project = nnforge.compile_model(q, "systolic", tmp_path / "prj", golden_inputs=[test[:4]])
    codes = q.quantize_inputs([test[:2]])
    sim = project.simulate(codes, trace=True)
    ref = reference.run(q.graph, codes)
    for node in q.graph.nodes:
        assert np.array_equal(sim.tensors[node.output], ref[node.output]), node.name
    rows = {r["name"]: r for r in project.report["kernels"]}
    assert all(sim.layers[n]["measured_cycles"] == rows[n]["predicted_cycles"] for n in sim.layers)


@pytest.mark.slow
def test_cli_verify_takes_a_relative_project_path(cnn, monkeypatch):
    """The simulator runs in its own folder, so a relative OUTDIR (as `make demo` passes it) must
    still find the project's testbench (it failed with "No module named 'tb_program'")."""
    _rtl_or_skip()
    project, _ = cnn
    monkeypatch.chdir(project.path.parent)
    res = CliRunner().invoke(main, ["verify", project.path.name, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert doc["backend"] == "systolic" and doc["mismatches"] == 0 and doc["samples"] > 0
