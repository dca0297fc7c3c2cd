"""The commands that need no model start without importing TVM, onnx or the other heavy modules
(issue 15: ``--help`` took 1.5 s and 294 MB because TVM was imported eagerly).  Checked by what
lands in ``sys.modules`` of a fresh interpreter, never by timing; bench/cli_startup.py measures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tvm", "onnx", "onnxruntime", "matplotlib", "sklearn", "scipy", "cocotb")

_PROBE = """
import io, json, sys, contextlib
from nnforge.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:], prog_name="nnforge")
    except SystemExit as e:
        code = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy, "out": out.getvalue()}))
"""


def _probe(*args: str) -> dict:
    code = f"HEAVY = {json.dumps(json.dumps(HEAVY))}\n" + _PROBE
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["backends"], ["backends", "--json"],
                                  ["compile", "--help"]])
def test_no_heavy_imports(args):
    result = _probe(*args)
    assert result["code"] in (0, None)
    assert result["heavy"] == [], f"nnforge {' '.join(args)} imported {result['heavy']}"
    assert result["out"].strip()  # and it printed something


def test_backends_json_lists_options_without_tvm():
    doc = json.loads(_probe("backends", "--json")["out"])
    hls = next(b for b in doc["backends"] if b["name"] == "hls")
    assert hls["options"]["reuse_factor"]["help"]
    assert "default" in hls["options"]["reuse_factor"]


def test_public_api_still_there():
    """The lazy names resolve to the real objects (``from nnforge import load`` and attribute use)."""
    import nnforge
    from nnforge import compile_model, load
    from nnforge.compile import compile_model as real_compile
    from nnforge.model import load as real_load

    assert load is real_load and compile_model is real_compile
    assert set(nnforge.__all__) <= set(dir(nnforge))
    for name in nnforge.__all__:
        assert getattr(nnforge, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nnforge.nope  # noqa: B018
