"""nnforge explore: the in-process search, resume, best.toml against simulate, and bad input.

Kept small: the digits MLP, a tiny sensitivity grid, a few trials (the quantize cache is not used
by trials, so each costs a real quantize + compress + reference run, ~0.3-1 s here)."""

from __future__ import annotations

import json
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.cli import main
from nnforge.compiler.errors import InputError
from nnforge.explore import objectives, results, sensitivity
from nnforge.explore.evaluate import Evaluator
from nnforge.explore.space import SearchSpace, configs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MLP = EXAMPLES / "digits_mlp.onnx"
GRID = {"prune": (0.8, 0.95), "share": (3,)}


@pytest.fixture(scope="module")
def digits():
    model = nnforge.load(MLP)
    test, calib = np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calib.npz")
    x, y = test["x"].reshape(len(test["x"]), -1)[:200], test["y"][:200]
    return model, [calib["x"].reshape(len(calib["x"]), -1)], [x], y


@pytest.fixture(scope="module")
def study_dir(digits, tmp_path_factory):
    """One small study, shared by the tests that read its results."""
    model, calib, data, labels = digits
    out = tmp_path_factory.mktemp("explore") / "out"
    result = nnforge.explore(model, calib, data, labels, max_drop=0.02, objectives=["bytes", "macs-bits"], trials=6,
                             seed=1, out_dir=out, sensitivity=GRID, uniform=("w4a8",))
    return out, result


def test_results_files_and_front(study_dir):
    out, result = study_dir
    for name in ("study.db", "pareto.csv", "pareto.json", "pareto.png", "report.md", "sensitivity.png",
                 "sensitivity.json"):
        assert (out / name).is_file(), name
    assert len(result.trials) == 6
    front = result.pareto
    assert front and all(r.feasible for r in front)
    for a in front:  # no front point dominates another (quality up, costs down)
        for b in front:
            if a is not b:
                assert not results._dominates(a, b, "accuracy", ["bytes", "macs-bits"])
    for r in result.trials:  # the constraint: drop <= max_drop exactly when feasible
        assert r.feasible == (r.values["drop"] <= 0.02)
        assert r.values["drop"] == pytest.approx(result.float_quality - r.values["accuracy"])
    doc = json.loads((out / "pareto.json").read_text())
    assert [p["number"] for p in doc["pareto"]] == [r.number for r in front]
    csv_rows = (out / "pareto.csv").read_text().splitlines()
    assert len(csv_rows) == len(front) + 1
    if result.best is not None:
        assert result.best.number in [r.number for r in front]
        assert result.best.values["bytes"] == min(r.values["bytes"] for r in front)
        assert (out / "best.toml").is_file()
    report = (out / "report.md").read_text()
    assert "## Sensitivity" in report and "## Pareto front" in report and "w4a8" in report
    page = (out / "report.html").read_text()  # the same as one self-contained page
    assert page.startswith("<!DOCTYPE html>") and "<h2>Pareto front</h2>" in page
    assert "http://" not in page and "https://" not in page and "data:image/png;base64," in page
    assert page.count("<tr") - 1 >= len(front)  # a row per front point (plus the chosen point's layers)
    if result.best is not None:
        assert f"Trial {result.best.number}:" in page
    # sensitivity rows: the baseline with one knob moved; each grid value of each layer once
    rows = json.loads((out / "sensitivity.json").read_text())
    assert len(rows) == 3 * 3  # 3 layers x (2 prune + 1 share)


def test_macs_bits_is_the_sum_over_layers(digits):
    model, calib, data, labels = digits
    ev = Evaluator(model, calib, data, labels, ["macs-bits"])
    space = SearchSpace.full(ev.layers)
    params = space.baseline()
    widths = {"/net/net.0/Gemm": (4, 6), "/net/net.3/Gemm": (2, 3), "logits": (16, 8)}
    for name, (w, a) in widths.items():
        params[f"{name}:weight_bits"], params[f"{name}:act_bits"] = w, a
    m = ev.evaluate(params)
    # by hand: MACs (inspect) x weight bits x the input's width (the model input at the default 8 bits,
    # then each layer's output width)
    assert m["macs-bits"] == 8192 * 4 * 8 + 8192 * 2 * 6 + 640 * 16 * 3


def test_bytes_is_the_compression_report(digits):
    from nnforge.compiler.compress.compression_report import compression_report

    model, calib, data, labels = digits
    ev = Evaluator(model, calib, data, labels, ["bytes"])
    params = SearchSpace.full(ev.layers).baseline()
    params["/net/net.0/Gemm:prune"], params["/net/net.0/Gemm:share"] = 0.9, 3
    quant, comp = configs(params, ev.layer_names)
    m = ev.evaluate(params)
    q = nnforge.quantize(model, calib, quant, compress=comp)
    assert m["bytes"] == compression_report(q, huffman=True).total_bytes
    assert m["bytes-fixed"] == compression_report(q, huffman=False).total_bytes


def test_reference_and_tvm_engines_agree(digits):
    model, calib, data, labels = digits
    params = SearchSpace.full(Evaluator(model, calib, data, labels, ["bytes"]).layers).baseline()
    params["logits:weight_bits"], params["/net/net.0/Gemm:prune"], params["/net/net.3/Gemm:share"] = 3, 0.9, 3
    ref = Evaluator(model, calib, data, labels, ["bytes"], engine="reference").evaluate(params)
    tvm = Evaluator(model, calib, data, labels, ["bytes"], engine="tvm").evaluate(params)
    assert ref["accuracy"] == tvm["accuracy"] and ref["agreement"] == tvm["agreement"]


def test_best_toml_simulates_to_the_trial_accuracy(study_dir, tmp_path):
    """The exported config through `nnforge simulate --config best.toml` (the TVM integer build):
    exactly the accuracy the trial measured (the numpy reference)."""
    out, result = study_dir
    best = result.best
    assert best is not None
    toml = tomllib.loads((out / "best.toml").read_text())
    assert toml["compress"] == (best.compress or {}) or "compress" not in toml
    test = np.load(EXAMPLES / "digits_test.npz")
    data = tmp_path / "test200.npz"
    np.savez(data, x=test["x"].reshape(len(test["x"]), -1)[:200], y=test["y"][:200])
    calib = np.load(EXAMPLES / "digits_calib.npz")
    cpath = tmp_path / "calib.npz"
    np.savez(cpath, x=calib["x"].reshape(len(calib["x"]), -1))
    r = CliRunner().invoke(main, ["simulate", str(MLP), "--data", str(data), "--calib", str(cpath),
                                  "--config", str(out / "best.toml"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["quant_accuracy"] == best.values["accuracy"]
    assert doc["agreement"] == best.values["agreement"]
    assert doc["compression"] is not None or best.compress is None
    # compress --config reads the same file: the same bytes as the trial
    r = CliRunner().invoke(main, ["compress", str(MLP), "--calib", str(cpath), "--config", str(out / "best.toml"),
                                  "--huffman", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["total_bytes"] == best.values["bytes"]


def test_resume_after_interruption(digits, tmp_path, monkeypatch):
    """Ctrl-C in the middle: the finished trials stay in the storage, none is left running, and
    --resume runs only the missing ones."""
    import optuna

    from nnforge.explore import evaluate as evaluate_mod

    model, calib, data, labels = digits
    out = tmp_path / "out"
    calls = {"n": 0}
    original = evaluate_mod.Evaluator.evaluate

    def interrupting(self, params):
        calls["n"] += 1
        if calls["n"] == 4:  # the baseline check, then two trials, then Ctrl-C
            raise KeyboardInterrupt
        return original(self, params)

    monkeypatch.setattr(evaluate_mod.Evaluator, "evaluate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        nnforge.explore(model, calib, data, labels, trials=5, seed=3, out_dir=out, sensitivity=False, uniform=())
    monkeypatch.setattr(evaluate_mod.Evaluator, "evaluate", original)
    study = optuna.load_study(study_name="nnforge-explore", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states
    kept = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    assert (out / "pareto.json").is_file()  # the results of what finished were written
    with pytest.raises(InputError, match="--resume"):  # the same storage again without --resume
        nnforge.explore(model, calib, data, labels, trials=5, seed=3, out_dir=out, sensitivity=False, uniform=())
    result = nnforge.explore(model, calib, data, labels, trials=5, seed=3, out_dir=out, sensitivity=False,
                             resume=True, uniform=())
    assert len(result.trials) == 5
    assert [r.number for r in result.trials][:2] == kept
    with pytest.raises(InputError, match="same model, data, objectives"):  # other settings: refused
        nnforge.explore(model, calib, data, labels, trials=6, seed=4, out_dir=out, sensitivity=False, resume=True)


def test_sensitivity_shrinks_and_seeds():
    space = SearchSpace.full([("a", "dense"), ("b", "dense")])
    grid = {"prune": (0.5, 0.8, 0.9, 0.95), "weight_bits": (4, 2)}
    drops = {("a", "prune"): (0.0, 0.005, 0.03, 0.2), ("b", "prune"): (0.0, 0.0, 0.0, 0.0),
             ("a", "weight_bits"): (0.0, 0.5), ("b", "weight_bits"): (0.2, 0.5)}
    table = [sensitivity.SensitivityRow(l, k, v, 1 - d, d, 100) for (l, k), ds in drops.items()
             for v, d in zip(grid[k], ds)]
    shrunk, limits = sensitivity.shrink(space, table, max_drop=0.01, grid=grid, cut_drop=0.05)
    a, b = shrunk.layers
    # a: 0.9 loses 3% (within the 5% cut), 0.95 20%: up to 0.9 and one step beyond; limit (1%) 0.8
    assert a.prune_max == 0.95 and limits["a"]["prune"] == 0.8
    assert b.prune_max == 0.95 and limits["b"]["prune"] == 0.95
    # a: 4 bits tolerated, 2 not: 2 stays (one step beyond); b: nothing tolerated: only >= 4 bits
    assert a.weight_bits == [2, 3, 4, 5, 6, 7, 8, 16] and b.weight_bits == [4, 5, 6, 7, 8, 16]
    assert limits["a"]["weight_bits"] == 4 and limits["b"]["weight_bits"] is None
    first = sensitivity.seeds(shrunk, limits)[0]
    assert first["a:prune"] == 0.8 and first["b:prune"] == 0.95 and first["a:weight_bits"] == 4
    assert first["b:weight_bits"] == 8


def test_objective_errors():
    with pytest.raises(InputError, match="--objective must be one of .* not 'speed'"):
        objectives.resolve(["speed"], True, None)
    with pytest.raises(InputError, match="--objective dsp must be given with --backend"):
        objectives.resolve(["dsp"], True, None)
    with pytest.raises(InputError, match="labels"):
        objectives.resolve(["accuracy"], False, None)
    quality, costs, notes = objectives.resolve([], False, None)
    assert quality == "agreement" and costs == ["bytes"] and "agreement" in notes[0]
    with pytest.raises(InputError, match="--objective dsp must be one the systolic backend estimates"):
        objectives.check_backend_costs("systolic", ["dsp"], {"dsp": None, "cycles": 10, "latency": 0.1})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("explore_cli")
    test, calib = np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calib.npz")
    np.savez(d / "test.npz", x=test["x"][:64], y=test["y"][:64])
    np.savez(d / "nolabels.npz", x=test["x"][:64])
    np.savez(d / "calib.npz", x=calib["x"][:64])
    return d


def _cli(files, *extra, data="test.npz"):
    args = ["explore", str(MLP), "--calib", str(files / "calib.npz"), "--data", str(files / data),
            "--trials", "1", "--no-sensitivity", *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(main, args)


@pytest.mark.parametrize("extra, message", [
    (["--objective", "speed"], "--objective must be one of"),
    (["--objective", "dsp"], "--objective dsp must be given with --backend"),
    (["--objective", "dsp", "--backend", "systolic"], "--objective dsp must be one the systolic backend estimates"),
    (["--max-drop", "1.5"], "--max-drop must be a fraction in [0, 1], not 1.5"),
    (["--max-drop", "-0.1"], "--max-drop must be a fraction in [0, 1]"),
    (["--ray", "127.0.0.1:1"], "--ray address '127.0.0.1:1' must be a reachable Ray cluster"),
    (["--storage", "nosuchdb://x/y"], "--storage must be an Optuna storage that opens, not 'nosuchdb://x/y'"),
    (["--storage", "sqlite:////nonexistent-dir/a/b.db"], "--storage must be an Optuna storage that opens"),
    (["--holdout", "1.5"], "--holdout must be a fraction in [0, 1), not 1.5"),
])
def test_cli_bad_input(files, tmp_path, extra, message):
    r = _cli(files, "-o", str(tmp_path / "o"), *extra)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split())


def test_cli_accuracy_without_labels(files, tmp_path):
    r = _cli(files, "-o", str(tmp_path / "o"), "--objective", "accuracy", data="nolabels.npz")
    assert r.exit_code == 2 and "labels" in r.output


def test_cli_agreement_fallback_and_json(files, tmp_path):
    r = _cli(files, "-o", str(tmp_path / "o"), "--json", data="nolabels.npz")
    assert r.exit_code == 0, r.output
    assert "agreement with the float model" in r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["quality"] == "agreement" and set(doc) >= {"pareto", "best"}
    assert doc["float_quality"] == 1.0
    r = _cli(files, "-o", str(tmp_path / "o"))  # the directory holds a study now: --resume or another -o
    assert r.exit_code == 2 and "--resume" in r.output


def test_local_search_steps_and_order():
    """descent.steps: one knob one step cheaper, the share narrowed when the weights get as narrow;
    propose: the front point with fewest steps tried, its least damaging step first."""
    from nnforge.explore import descent
    from nnforge.explore.space import LayerSpace

    space = SearchSpace([LayerSpace("a", "dense", [3, 4, 8], [4, 8], 0.9, [0, 2, 3]),
                         LayerSpace("b", "dense", [8], [8], 0.0, [0])], ["float"], ["mse"])
    point = {"a:weight_bits": 4, "a:act_bits": 8, "a:prune": 0.5, "a:share": 3, "b:weight_bits": 8,
             "b:act_bits": 8, "b:share": 0, "scale_mode": "float", "calibration": "mse"}
    got = {(knob, value): p for _, knob, value, p in descent.steps(space, point, ["bytes", "macs-bits"])}
    assert set(got) == {("weight_bits", 3), ("act_bits", 4), ("prune", 0.6), ("share", 2)}
    assert got[("weight_bits", 3)]["a:share"] == 2  # 8 codes of 3 bits share nothing: 4 codes
    assert got[("prune", 0.6)]["a:prune"] == 0.6 and "b:prune" not in got[("prune", 0.6)]
    # bytes alone: activation widths do not move it; macs-bits alone: prune and share do not
    assert {k for _, k, _, _ in descent.steps(space, point, ["bytes"])} == {"weight_bits", "prune", "share"}
    assert {k for _, k, _, _ in descent.steps(space, point, ["macs-bits"])} == {"weight_bits", "act_bits"}
    table = [sensitivity.SensitivityRow("a", "prune", 0.6, 0.9, 0.0, 1), sensitivity.SensitivityRow(
        "a", "weight_bits", 3, 0.9, 0.2, 1), sensitivity.SensitivityRow("a", "share", 2, 0.9, 0.05, 1)]
    rec = results.TrialRecord(0, point, {}, None, {}, True)
    first = descent.propose(space, [rec], set(), ["bytes"], table)
    assert first["a:prune"] == 0.6  # the step that alone lost least
    tried = {descent.point_key(first)}
    assert descent.propose(space, [rec], tried, ["bytes"], table)["a:share"] == 2
    tried |= {descent.point_key(p) for _, _, _, p in descent.steps(space, point, ["bytes"])}
    assert descent.propose(space, [rec], tried, ["bytes"], table) is None  # every step tried: TPE's turn


def test_holdout_split():
    from nnforge.explore import _split

    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20)
    (xs,), ys, ([xh], yh, idx) = _split([x], y, 0.25, seed=5)
    assert len(idx) == 5 and len(ys) == 15 and sorted(set(ys) | set(yh)) == list(range(20))
    assert not set(ys) & set(yh) and (xh[:, 0] == 2 * idx).all() and (yh == idx).all()
    assert (_split([x], y, 0.25, seed=5)[2][2] == idx).all()  # the same seed, the same split
    assert _split([x], y, 0.0, seed=5)[2] is None
    for bad in (1.0, -0.1, "x"):
        with pytest.raises(InputError, match="--holdout must be a fraction in"):
            _split([x], y, bad, seed=0)
    with pytest.raises(InputError, match="--holdout must leave samples on both sides"):
        _split([x], y, 0.01, seed=0)


def test_pareto_against_the_definition():
    """results.pareto (sorted sweep) against the definition by all pairs, on random records with
    ties and duplicates."""
    rng = np.random.default_rng(0)
    costs = ["bytes", "macs-bits"]
    for _ in range(20):
        recs = [results.TrialRecord(i, {}, {}, None, {"accuracy": float(rng.integers(0, 5)),
                                                      "bytes": int(rng.integers(0, 6)),
                                                      "macs-bits": int(rng.integers(0, 6))}, bool(rng.random() < 0.8))
                for i in range(40)]
        feasible = [r for r in recs if r.feasible]
        expect, seen = [], set()
        for r in feasible:  # trial order: the lowest number of equal vectors stays
            key = (r.values["accuracy"], r.values["bytes"], r.values["macs-bits"])
            if key not in seen and not any(results._dominates(o, r, "accuracy", costs) for o in feasible):
                seen.add(key)
                expect.append(r.number)
        got = results.pareto(recs, "accuracy", costs)
        assert sorted(r.number for r in got) == sorted(expect)
        assert [r.values["bytes"] for r in got] == sorted(r.values["bytes"] for r in got)
