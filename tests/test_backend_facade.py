"""The backend-neutral facade: option parsing, the compile pipeline's hooks, verify's counting and fields.

A fake backend (``FakeBackend``) "simulates" a project by running the numpy reference and
getting chosen codes wrong on purpose, so verify's per-layer counts are known exactly; its
measured cycles are hand-worked numbers.  Oracles: ``reference.run`` (every code), hand-worked
option values and cycle figures, ``numerics.requantize`` for ``backends/requant.py``, and the
ONNX model's own layer table (``Model.summary``) for ``backends/macs.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.backends import Backend, BackendError, Option, Simulation, register_backend
from nnforge.backends.golden import read_codes, split_codes, write_codes
from nnforge.backends.macs import layer_macs
from nnforge.backends.partition import partition
from nnforge.backends.requant import effective_clamp, requant_constants, saturate_spec, shift_constants
from nnforge.cli import main as cli
from nnforge.compile import parse_option_strings, parse_options, resolve_options
from nnforge.compiler.quant import numerics
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QNode
from conftest import EXAMPLES

ROWS = COLS = 4
CORRUPT_SAMPLE = 3


class FakeBackend(Backend):
    """Takes dense layers; its "hardware" is the numpy reference with one code wrong on request."""

    name = "test_fake_hw"
    description = "the reference, with one wrong code on request (tests)"
    ops = {"dense"}
    options = {
        "rows": Option(ROWS, "array rows", minimum=1, maximum=64),
        "cols": Option(COLS, "array columns", minimum=1, maximum=64),
        "corrupt": Option("", "layer whose first code of sample 3 of each call comes out one too high"),
        "hide": Option("", "layer the fake hardware does not expose"),
        "missing_tool": Option(False, "simulate as if the simulator were not installed"),
        "mode": Option("fast", "unused", choices=("fast", "exact")),
        "gain": Option(1.5, "unused", minimum=0.0),
    }

    def check_options(self, options):
        if options["rows"] > options["cols"]:
            raise InputError(f"option 'rows' must be <= cols ({options['cols']}), not {options['rows']}")
        return options

    def check_design(self, design, options):
        names = {n.name for n in design.graph.nodes}
        for key in ("corrupt", "hide"):
            if options[key] and options[key] not in names:
                raise InputError(f"option {key!r} must name a layer of this model, not {options[key]!r}")

    def codegen(self, design, options):
        return {"fake/layers.txt": "".join(f"{k.ident}\n" for k in design.kernels)}

    def layer_info(self, design, options):
        return [{"name": k.node.name, "op": k.op, "storage": "dense", "weight_bytes": int(k.node.attrs.weight.size),
                 "predicted_cycles": predicted(layer_macs(design.graph, k.node))} for k in design.kernels]

    def project_files(self, design, options, sources, golden, report):
        assert "tb/inputs.dat" in sources and golden.samples == report["golden"]["samples"]
        return {"fake/README.md": f"{len(report['kernels'])} kernels, {golden.samples} golden samples\n"}

    def simulate(self, project, inputs, trace=True):
        prj = nnforge.open_project(project)
        opts, graph = prj.report["options"], prj.graph
        if opts["missing_tool"]:
            raise InputError("the test_fake_hw backend needs fakesim on PATH to simulate; it is not installed")
        ref = reference.run(graph, [np.asarray(x) for x in inputs])
        names = graph.node_outputs() if trace else list(graph.outputs)
        tensors = {t: ref[t].copy() for t in names}
        by_name = {n.name: n for n in graph.nodes}
        if opts["corrupt"] and len(inputs[0]) > CORRUPT_SAMPLE:
            t = by_name[opts["corrupt"]].output
            if t in tensors:
                tensors[t].reshape(len(inputs[0]), -1)[CORRUPT_SAMPLE, 0] += 1
        if opts["hide"]:
            tensors.pop(by_name[opts["hide"]].output, None)
        macs = {r["name"]: r["macs"] for r in prj.report["kernels"]}
        layers = {name: {"measured_cycles": measured(m), "utilization": m / (measured(m) * ROWS * COLS)}
                  for name, m in macs.items()}
        return Simulation(tensors, layers, ["fake hardware: the numpy reference"])


def predicted(macs: int) -> int:
    return macs // (ROWS * COLS) + 8


def measured(macs: int) -> int:
    return macs // (ROWS * COLS) + 10


class NoSim(Backend):
    """A backend without ``simulate``: verify must say so."""

    name = "test_no_sim"
    ops = {"dense"}
    options = {"depth": 16}  # a plain default value, as older third-party backends write them

    def codegen(self, design, options):
        return {"x.txt": f"{options['depth']}\n"}


register_backend(FakeBackend, override=True)
register_backend(NoSim, override=True)


# -- options ------------------------------------------------------------------------------------------

def test_strings_are_converted_to_the_type_of_the_default():
    got = parse_options(FakeBackend(), {"rows": "2", "gain": "0.25", "missing_tool": "true", "mode": "exact"})
    assert got == {"rows": 2, "cols": 4, "corrupt": "", "hide": "", "missing_tool": True, "mode": "exact",
                   "gain": 0.25}
    assert parse_options(FakeBackend(), {"missing_tool": "0"})["missing_tool"] is False
    assert parse_options(FakeBackend(), {"gain": 2})["gain"] == 2.0  # an int is a number
    for key, bad, kind in (("rows", "four", "an integer"), ("rows", "2.5", "an integer"), ("gain", "x", "a number"),
                           ("missing_tool", "yes", "true or false"), ("rows", 2.5, "an integer"),
                           ("rows", True, "an integer"), ("corrupt", 5, "a string"), ("missing_tool", 1, "true or false")):
        with pytest.raises(InputError, match=f"option '{key}' must be {kind} like .*, not {bad!r}"):
            parse_options(FakeBackend(), {key: bad})


def test_choices_and_inclusive_ranges():
    assert parse_options(FakeBackend(), {"rows": "1", "cols": "64"})["cols"] == 64  # both ends allowed
    with pytest.raises(InputError, match=r"option 'mode' must be one of 'fast', 'exact', not 'slow'"):
        parse_options(FakeBackend(), {"mode": "slow"})
    with pytest.raises(InputError, match=r"option 'rows' must be from 1 to 64, not 0"):
        parse_options(FakeBackend(), {"rows": "0"})
    with pytest.raises(InputError, match=r"option 'cols' must be from 1 to 64, not 65"):
        parse_options(FakeBackend(), {"cols": 65})
    with pytest.raises(InputError, match=r"option 'gain' must be >= 0, not -0.5"):
        parse_options(FakeBackend(), {"gain": "-0.5"})


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "NaN", float("inf"), float("nan")])
def test_non_finite_numbers_are_rejected(value):
    with pytest.raises(InputError, match="option 'gain' must be a finite number"):
        parse_options(FakeBackend(), {"gain": value})


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(InputError, match=r"one of cols, corrupt, gain, hide, missing_tool, mode, rows for the "
                                         r"test_fake_hw backend, not 'row'"):
        parse_options(FakeBackend(), {"row": "2"})


def test_cross_field_checks_and_plain_defaults():
    with pytest.raises(InputError, match=r"option 'rows' must be <= cols \(4\), not 8"):
        resolve_options(FakeBackend(), {"rows": "8", "cols": "4"})
    assert resolve_options(FakeBackend(), {"rows": "8", "cols": "8"})["rows"] == 8
    # a plain default value is an Option with that default and no help
    assert NoSim.option_specs() == {"depth": Option(16, "")}
    assert parse_options(NoSim(), {"depth": "32"}) == {"depth": 32}
    with pytest.raises(InputError, match="option 'depth' must be an integer like 16, not 'deep'"):
        parse_options(NoSim(), {"depth": "deep"})


def test_per_layer_values():
    from nnforge.backends.hls import HLSBackend

    assert parse_options(HLSBackend(), {"reuse_factor": {"fc": 2, "default": 1}})["reuse_factor"] == {"fc": 2,
                                                                                                     "default": 1}
    with pytest.raises(InputError, match=r"option 'reuse_factor' for layer 'fc' must be from 1 to 1048576, not 0"):
        parse_options(HLSBackend(), {"reuse_factor": {"fc": 0}})
    with pytest.raises(InputError, match="option 'rows' must be an integer"):
        parse_options(FakeBackend(), {"rows": {"fc": 2}})  # not a per-layer option


def test_option_strings():
    assert parse_option_strings(["rows=2", " mode = exact "]) == {"rows": "2", "mode": "exact"}
    with pytest.raises(InputError, match="--option must look like KEY=VALUE, not 'rows'"):
        parse_option_strings(["rows"])


# -- compile and verify through the fake backend ------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp():
    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64)
    return nnforge.quantize(model, [calib], "w8a8")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The digits test set as the MLP takes it, and its .npz for the CLI."""
    test = dict(np.load(EXAMPLES / "digits_test.npz"))
    test["x"] = test["x"].reshape(len(test["x"]), -1)
    path = tmp_path_factory.mktemp("data") / "test.npz"
    np.savez(path, **test)
    return test["x"][:100], test["y"][:100], path


def _compile(mlp, out: Path, **options):
    return nnforge.compile_model(mlp, "test_fake_hw", out, options=options, golden_inputs=[np.load(
        EXAMPLES / "digits_test.npz")["x"].reshape(-1, 64)])


def test_the_pipeline_calls_every_hook(mlp, tmp_path):
    project = _compile(mlp, tmp_path / "prj")
    report = project.report
    assert report["backend"] == "test_fake_hw" and report["options"]["rows"] == ROWS
    assert {"fake/layers.txt", "fake/README.md", "tb/inputs.dat", "tb/golden.dat", "report.json",
            "model/qgraph.json"} <= set(report["files"])
    assert (tmp_path / "prj" / "fake" / "README.md").read_text() == "3 kernels, 32 golden samples\n"
    # report.json's kernel rows: the facade's MACs, the backend's layer info (hand-worked: K*N)
    assert [k["macs"] for k in report["kernels"]] == [64 * 128, 128 * 64, 64 * 10]
    assert [k["predicted_cycles"] for k in report["kernels"]] == [520, 520, 48]
    # the golden vectors are the reference on the first 32 test samples
    x, y = project.golden()
    want = reference.run(mlp.graph, mlp.quantize_inputs([np.load(EXAMPLES / "digits_test.npz")["x"][:32]
                                                          .reshape(-1, 64)]))
    np.testing.assert_array_equal(y, want[mlp.graph.outputs[0]])
    with pytest.raises(InputError, match="option 'corrupt' must name a layer of this model, not 'nope'"):
        _compile(mlp, tmp_path / "bad", corrupt="nope")  # check_design, before anything is written
    assert not (tmp_path / "bad").exists()


def test_verify_counts_one_wrong_code_on_the_right_layer(mlp, tmp_path, data):
    x, labels, _ = data
    middle = mlp.graph.nodes[1].name
    project = _compile(mlp, tmp_path / "prj", corrupt=middle)
    report = nnforge.verify(project, x, labels)  # one batch: one simulate call, one wrong code
    assert report.backend == "test_fake_hw" and report.samples == 100
    assert report.mismatches == 1 and not report.passed
    assert {l.name: l.mismatches for l in report.layers} == {n.name: int(n.name == middle) for n in mlp.graph.nodes}
    assert report.output_mismatches == 0  # the next layer got the right input: only the trace differs
    assert [l.codes for l in report.layers] == [100 * 128, 100 * 64, 100 * 10]
    # accuracy through the "hardware" is the reference's top-1
    ref = reference.run(mlp.graph, mlp.quantize_inputs([x]))[mlp.graph.outputs[0]]
    assert report.accuracy == float(np.mean(ref.argmax(1) == labels)) == report.csim_accuracy == report.quant_accuracy
    # cycle figures: predicted from report.json, measured and utilization from the simulation
    fc0 = report.layers[0]
    assert (fc0.macs, fc0.predicted_cycles, fc0.measured_cycles) == (8192, 520, 522)
    assert fc0.utilization == pytest.approx(8192 / (522 * 16))
    # in batches of 40: three simulate calls (40, 40, 20 samples), each with its wrong code
    batched = nnforge.verify(project, x, labels, batch_size=40)
    assert batched.mismatches == 3 and [l.mismatches for l in batched.layers] == [0, 3, 0]
    assert batched.notes == ["fake hardware: the numpy reference"]  # once, not once per batch
    assert batched.layers[0].measured_cycles == 522


def test_a_wrong_output_code_and_a_hidden_layer(mlp, tmp_path):
    out_node, first = mlp.graph.nodes[-1].name, mlp.graph.nodes[0].name
    report = nnforge.verify(_compile(mlp, tmp_path / "prj", corrupt=out_node, hide=first))
    assert report.samples == 32 and report.source == "golden vectors (tb/inputs.dat)"
    assert report.mismatches == 1 and report.output_mismatches == 1
    assert report.not_compared == [first] and report.compared_tensors == 2
    assert [l.name for l in report.layers] == [n.name for n in mlp.graph.nodes[1:]]


def test_run_codes_trace_and_predict_go_through_simulate(mlp, tmp_path, data):
    x = data[0][:10]
    project = _compile(mlp, tmp_path / "prj")
    codes = mlp.quantize_inputs([x])[0]
    want = reference.run(mlp.graph, [codes])
    np.testing.assert_array_equal(project.run_codes(codes), want[mlp.graph.outputs[0]])
    assert set(project.trace(codes)) == set(mlp.graph.node_outputs())
    np.testing.assert_array_equal(project.predict(x, batch_size=4)["logits"], mlp.predict([x])["logits"])
    with pytest.raises(InputError, match="the model takes 1 input array"):
        project.run_codes([codes, codes])


def test_a_simulate_that_forgets_the_output_is_a_backend_error(mlp, tmp_path):
    project = _compile(mlp, tmp_path / "prj", hide=mlp.graph.nodes[-1].name)
    with pytest.raises(BackendError, match="must return the graph outputs, not without 'logits'"):
        nnforge.verify(project)


# -- the CLI ----------------------------------------------------------------------------------------------

LAYER_KEYS = {"name", "op", "mismatches", "codes", "predicted_cycles", "measured_cycles", "macs", "utilization"}


def test_cli_verify_json_fields(mlp, tmp_path, data):
    _compile(mlp, tmp_path / "prj", corrupt=mlp.graph.nodes[0].name)
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "prj"), "--data", str(data[2]), "--json",
                                   "--batch-size", "450"])
    assert res.exit_code == 1, res.output  # a mismatch
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert {"backend", "samples", "mismatches", "accuracy", "csim_accuracy", "quant_accuracy", "layers",
            "output_mismatches", "compared_tensors", "not_compared", "notes", "source"} <= set(doc)
    assert doc["backend"] == "test_fake_hw" and doc["samples"] == 450 and doc["mismatches"] == 1
    assert all(set(layer) == LAYER_KEYS for layer in doc["layers"])
    assert [l["mismatches"] for l in doc["layers"]] == [1, 0, 0]
    assert doc["layers"][2] == {"name": "logits", "op": "dense", "mismatches": 0, "codes": 4500, "macs": 640,
                                "predicted_cycles": 48, "measured_cycles": 50,
                                "utilization": 640 / (50 * 16)}
    assert doc["accuracy"] == doc["csim_accuracy"] and isinstance(doc["accuracy"], float)


def test_cli_verify_text_shows_cycles_and_utilization(mlp, tmp_path):
    _compile(mlp, tmp_path / "prj")
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "prj")], terminal_width=200)
    assert res.exit_code == 0, res.output
    for text in ("predicted cycles", "measured cycles", "utilization", "│             522 │",
                 f"{8192 / (522 * 16):.1%}", "backend: test_fake_hw", "PASS: bit-exact"):
        assert text in res.output, text


def test_cli_missing_simulator_is_a_clean_exit_2(mlp, tmp_path):
    _compile(mlp, tmp_path / "prj", missing_tool=True)
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "prj")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "needs fakesim on PATH" in " ".join(res.output.split())
    nnforge.compile_model(mlp, "test_no_sim", tmp_path / "nosim")
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "nosim")])
    assert res.exit_code == 2 and "the test_no_sim backend cannot simulate" in " ".join(res.output.split())


def test_cli_backends_lists_options():
    res = CliRunner().invoke(cli, ["backends", "--json"])
    assert res.exit_code == 0, res.output
    doc = {b["name"]: b for b in json.loads(res.output)["backends"]}
    hls = doc["hls"]["options"]
    assert hls["io"]["choices"] == ["array", "axis"] and hls["io"]["default"] == "array" and hls["io"]["help"]
    assert hls["reuse_factor"]["minimum"] == 1 and hls["reuse_factor"]["per_layer"] is True
    assert doc["test_fake_hw"]["options"]["rows"] == {"default": 4, "help": "array rows", "choices": None,
                                                      "minimum": 1, "maximum": 64, "per_layer": False}
    assert doc["test_no_sim"]["options"]["depth"]["default"] == 16
    text = CliRunner().invoke(cli, ["backends"], terminal_width=200).output
    assert "hls options" in text and "reuse_factor" in text and '"array", "axis"' in text and "1 to 64" in text
    assert "16 to 16,777,216" in text and "e+0" not in text  # systolic memory depths in full


def test_cli_compile_checks_options_before_any_work(tmp_path):
    res = CliRunner().invoke(cli, ["compile", str(EXAMPLES / "digits_mlp.onnx"), "--backend", "test_fake_hw",
                                   "--calib", str(EXAMPLES / "no_such_calib.npz"), "-o", str(tmp_path / "p"),
                                   "--option", "gain=nan"])
    assert res.exit_code == 2 and "option 'gain' must be a finite number" in res.output
    assert not (tmp_path / "p").exists()


# -- the shared helpers -----------------------------------------------------------------------------------

def _node(**attrs) -> QNode:
    whole = dict(weight=np.zeros((1, 1), np.int64), bias=np.zeros(1, np.int64), acc_dtype="int64", multiplier=1,
                 shift=0, lo=None, hi=None, rounding="RND", overflow="SAT")  # a whole node; tests set what they read
    return QNode("dense", "fc", ["x"], "y", {**whole, **attrs})


@pytest.mark.parametrize("rounding", ["RND", "TRN"])
@pytest.mark.parametrize("overflow,lo,hi", [("SAT", None, None), ("SAT", 0, None), ("SAT", 0, 6), ("WRAP", None, None),
                                            ("WRAP", 0, None)])
def test_requant_constants_reproduce_numerics_requantize(rounding, overflow, lo, hi):
    rng = np.random.default_rng(0)
    out = QType(8, True)
    channels = 6
    mult = rng.integers(1, 1 << 15, size=channels)
    shift = np.array([-3, 0, 1, 7, 20, 40])  # a left shift, none, small and large right shifts
    acc = rng.integers(-(1 << 20), 1 << 20, size=(50, channels))
    attrs = {"multiplier": mult, "shift": shift, "rounding": rounding}
    node = _node(**attrs)
    meff, sh, half = requant_constants(node.attrs, node, channels)
    assert (sh >= 0).all() and (sh <= 63).all()
    v = (acc * meff + half) >> sh  # what hardware computes: no negative shift, one add, one right shift
    sat = saturate_spec(out, overflow, lo, hi, _node())
    if sat.wrap is not None:
        mask, top, mod = sat.wrap
        v = v & mask
        v = np.where(v > top, v - mod, v)
    if sat.clamp is not None:
        v = np.clip(v, *sat.clamp)
    np.testing.assert_array_equal(v, numerics.requantize(acc, mult, shift, out, rounding, overflow, lo, hi))


def test_requant_helpers_check_their_input():
    assert effective_clamp(QType(8, True), 0, None) == (0, 127)
    assert effective_clamp(QType(8, False), None, 300) == (0, 255)
    assert effective_clamp(QType(4, True), -100, 100) == (-8, 7)
    assert shift_constants(3, -2, "TRN", _node())[0].tolist() == [12]
    with pytest.raises(InputError, match="rounding of node 'fc' must be RND or TRN, not 'RNE'"):
        shift_constants(1, 1, "RNE", _node())
    with pytest.raises(InputError, match="multiplier of node 'fc' must have 1 or 4 entries, not 3"):
        node = _node(multiplier=[1, 2, 3], shift=1, rounding="RND")
        requant_constants(node.attrs, node, 4)
    with pytest.raises(InputError, match="overflow of node 'fc' must be SAT or WRAP"):
        saturate_spec(QType(8, True), "CLAMP", None, None, _node())


def test_golden_codes_round_trip():
    rng = np.random.default_rng(1)
    a, b = rng.integers(-128, 128, size=(5, 2, 3)), rng.integers(0, 16, size=(5, 4))
    text = write_codes([a, b])
    assert len(text.splitlines()) == 5 and text.splitlines()[0].split()[0] == str(a[0, 0, 0])
    back = split_codes(read_codes(text, 10), [(2, 3), (4,)])
    np.testing.assert_array_equal(back[0], a)
    np.testing.assert_array_equal(back[1], b)
    with pytest.raises(InputError, match="must hold 9 codes each, not 10"):
        read_codes(text, 9)


def test_layer_macs_match_the_model_summary():
    model = nnforge.load(EXAMPLES / "digits_cnn.onnx")
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"]
    q = nnforge.quantize(model, [calib], "w8a8")
    ours = sum(layer_macs(q.graph, n) for n in q.graph.nodes)
    assert ours == model.summary().total_macs > 0
