"""docs/backends.md builds a complete backend; this keeps it honest.

Every code block of the tutorial must be a verbatim piece of ``examples/minimal_backend``, and
together the blocks must show the whole backend.  The package is then "installed" the way pip
would install it (a ``.dist-info`` with ``entry_points.txt`` on ``sys.path``), found through the
``nnforge.backends`` entry point, and run end to end on the digits MLP: compile, simulate
through the C, compare bit-exactly with the numpy reference, estimate.  A broken plugin next
to it is reported and breaks nothing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.backends import BackendError, broken_backends, get_backend, list_backends, registry
from nnforge.backends.partition import partition
from nnforge.cli import main as cli
from nnforge.compile import parse_options
from nnforge.compiler import reference

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "examples" / "minimal_backend"
SOURCES = {p: p.read_text() for p in [PKG / "pyproject.toml", PKG / "nnforge_cref" / "__init__.py",
                                      PKG / "nnforge_cref" / "cref.c.j2", PKG / "run_demo.py"]}
CODE_LANGS = {"python", "toml", "jinja", "c"}


def doc_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "backends.md").read_text()
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]


def test_every_code_block_is_package_source():
    blocks = [(lang, body) for lang, body in doc_blocks() if lang in CODE_LANGS]
    assert len(blocks) >= 8
    for lang, body in blocks:
        assert any(body in src for src in SOURCES.values()), f"this {lang} block is not in examples/minimal_backend:\n{body}"


@pytest.mark.parametrize("name", ["__init__.py", "cref.c.j2"])
def test_the_blocks_show_the_whole_backend(name):
    shown = {line for _, body in doc_blocks() for line in body.splitlines()}
    missing = [line for line in SOURCES[PKG / "nnforge_cref" / name].splitlines() if line.strip() and line not in shown]
    assert missing == [], f"lines of {name} that docs/backends.md does not show: {missing}"


def _install(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """What pip leaves behind for an installed distribution: METADATA and entry_points.txt."""
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[nnforge.backends]\n{lines}")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install(site, "nnforge_cref", {"cref": "nnforge_cref:CRefBackend"})
    _install(site, "nnforge_broken_plugin", {"broken_plugin": "nnforge_no_such_module:Backend"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PKG))  # the package itself, as an editable install would
    registry.reload()
    yield site
    for mod in ("nnforge_cref", "run_demo"):
        sys.modules.pop(mod, None)
    monkeypatch.undo()
    registry.reload()


def test_entry_point_backend_end_to_end(installed, tmp_path, monkeypatch):
    info = {i.name: i for i in list_backends()}["cref"]
    assert info.ops == ["dense"] and info.origin == "entry point nnforge_cref:CRefBackend"
    backend = get_backend("cref")
    assert type(backend).__module__ == "nnforge_cref"

    import run_demo  # the tutorial's own driver: compile_model, simulate, compare

    monkeypatch.chdir(tmp_path)
    assert run_demo.main("cref_digits") == 0  # bit-exact on all 450 test images, through nnforge.verify

    # the same, step by step, against an independent oracle
    model = nnforge.load(ROOT / "examples" / "digits_mlp.onnx")
    calib = np.load(ROOT / "examples" / "digits_calib.npz")["x"].reshape(-1, 64)
    x = np.load(ROOT / "examples" / "digits_test.npz")["x"].reshape(-1, 64)[:64]
    q = nnforge.quantize(model, [calib], "w8a8")
    design = partition(q.graph, backend)
    assert [k.node.name for k in design.kernels] == [n.name for n in q.graph.nodes]
    files = backend.codegen(design, {})
    assert backend.codegen(design, {}) == files  # deterministic
    prj = tmp_path / "by_hand"
    for rel, text in files.items():
        (prj / rel).parent.mkdir(parents=True, exist_ok=True)
        (prj / rel).write_text(text)
    codes = q.graph.quantize_inputs([x])
    got = backend.simulate(prj, codes).tensors
    want = reference.run(q.graph, codes)
    assert list(got) == [n.output for n in q.graph.nodes]
    for name, arr in got.items():
        np.testing.assert_array_equal(arr, want[name])
    # 64x128, 128x64, 64x10 dense layers: K*N MACs + N requantizations each
    one = parse_options(backend, {})
    assert one == {"macs_per_cycle": 1}
    assert [e.latency_cycles for e in backend.estimate(design, one)] == [64 * 128 + 128, 128 * 64 + 64, 64 * 10 + 10]
    report = json.loads((tmp_path / "cref_digits" / "report.json").read_text())
    assert report["backend"] == "cref" and report["options"] == {"macs_per_cycle": 4}
    # run_demo's macs_per_cycle=4: ceil(K*N / 4) + N, and the MACs the facade fills in
    assert [k["estimate"]["latency_cycles"] for k in report["kernels"]] == [2048 + 128, 2048 + 64, 160 + 10]
    assert [k["macs"] for k in report["kernels"]] == [64 * 128, 128 * 64, 64 * 10]
    assert "tb/inputs.dat" in report["files"] and "tb/golden.dat" in report["files"]


def test_broken_entry_point_is_reported_and_harmless(installed):
    broken = broken_backends()
    assert "ModuleNotFoundError" in broken["broken_plugin"] and "nnforge_no_such_module" in broken["broken_plugin"]
    assert "cref" in {i.name for i in list_backends()}
    with pytest.raises(BackendError, match="broken_plugin failed to load.*registered backends: .*cref"):
        get_backend("broken_plugin")

    result = CliRunner().invoke(cli, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert "cref" in [b["name"] for b in doc["backends"]]
    cref = next(b for b in doc["backends"] if b["name"] == "cref")
    assert cref["options"]["macs_per_cycle"] | {"help": ""} == {"default": 1, "help": "", "choices": None,
                                                                "minimum": 1, "maximum": 64, "per_layer": False}
    assert any(b["name"] == "broken_plugin" and "ModuleNotFoundError" in b["error"] for b in doc["broken"])
    table = CliRunner().invoke(cli, ["backends"], terminal_width=200)
    assert table.exit_code == 0 and "cref" in table.output and "broken_plugin" in table.output


def test_after_reload_the_plugin_is_gone():
    registry.reload()
    assert "cref" not in {i.name for i in list_backends()}
