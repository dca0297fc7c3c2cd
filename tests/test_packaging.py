"""Packaging and CI hygiene (issue 15): pyproject.toml gives setuptools nothing to warn about, and
`make test` shows skip reasons."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from conftest import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_string():
    project = _pyproject()["project"]
    assert isinstance(project["license"], str) and project["license"] == "Apache-2.0"
    build = _pyproject()["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)


def test_every_folder_that_ships_files_is_a_listed_package():
    """setuptools warns ("Package ... is absent from the `packages` configuration") for a folder of
    a listed package's tree that holds files but is not itself listed, and will stop shipping it."""
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    for package, folder in tool["package-dir"].items():
        for sub in [Path(folder), *sorted(p for p in (ROOT / folder).rglob("*") if p.is_dir())]:
            rel = sub.relative_to(ROOT) if sub.is_absolute() else sub
            if "__pycache__" in rel.parts or not any(f.is_file() for f in (ROOT / rel).iterdir()):
                continue
            name = ".".join([package, *rel.relative_to(folder).parts])
            owner = max((k for k in tool["package-dir"] if name == k or name.startswith(k + ".")), key=len)
            if owner != package:
                continue  # mapped on its own
            assert name in listed, f"{rel} ships files but {name} is not in [tool.setuptools] packages"


def test_make_test_reports_skip_reasons():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "pytest" in recipe and re.search(r"\s-r\w*s", recipe), recipe
