"""The README's Python snippet runs as written (issue 15: it used x, x_all, x_test, y_test and
x_calib without defining them)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil

import pytest

from conftest import EXAMPLES, ROOT


def _python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the snippet builds the generated C")
    snippets = _python_snippets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(snippets) == 1, "the README has one Python snippet"
    (tmp_path / "examples").symlink_to(EXAMPLES)  # its relative paths, without writing out/ in the checkout
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    scope: dict = {"__name__": "readme"}
    with contextlib.redirect_stdout(out):
        exec(compile(snippets[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    # what its comments promise, against the numbers the README's quick start states
    assert scope["report"].reference_mismatches == 0
    assert scope["result"].mismatches == 0 and scope["result"].passed
    assert scope["result"].accuracy == scope["report"].quant_accuracy
    assert scope["outputs"]["logits"].shape == (450, 10)
    printed = out.getvalue().splitlines()
    assert printed[0] == "115840"  # the inspect table's MACs total
    assert "\x1b[" not in out.getvalue()  # relax.show() into a non-terminal: plain
    assert os.path.isfile(tmp_path / "out" / "prj" / "report.json")
    assert os.path.isfile(tmp_path / "out" / "prj" / "report.html")  # what its last comment points to
