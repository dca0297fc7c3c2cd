"""Output that survives a pipe (issue 15): tables complete and no ANSI codes when stdout is not a
terminal; ``model.relax.show()`` plain in a pipe, coloured on a terminal."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

from rich.table import Table

from nnforge.console import PIPE_WIDTH, PipeConsole

from conftest import EXAMPLES


def _wide_table() -> Table:
    table = Table()
    for i in range(8):
        table.add_column(f"column {i}")
    table.add_row(*[f"{i * 1_234_567:,}" for i in range(8)])
    return table


def test_pipe_console_is_as_wide_as_its_content(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a terminal's width (xdist exports it): not the pipe's
    buf = io.StringIO()
    PipeConsole(file=buf).print(_wide_table())
    text = buf.getvalue()
    assert "…" not in text and "8,641,969" in text  # the last cell, whole
    assert "\x1b[" not in text
    assert PipeConsole(file=io.StringIO()).width == PIPE_WIDTH
    cut = io.StringIO()
    PipeConsole(file=cut, width=60).print(_wide_table())  # an explicit width still wins: rich cuts
    assert "…" in cut.getvalue()


def test_inspect_into_a_pipe_is_complete():
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run([sys.executable, "-m", "nnforge", "inspect", str(EXAMPLES / "digits_cnn.onnx")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "…" not in out and "\x1b[" not in out
    assert "/classifier/classifier.1/Flatten" in out and "[batch,16,8,8]" in out
    total = next(line for line in out.splitlines() if "total" in line)
    assert "4,218" in total and "115,840" in total
    # the sentence after the table is one line, not wrapped mid-phrase
    assert "MACs are per sample (symbolic batch dimension counted as 1)." in out.splitlines()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_relax_show_is_plain_in_a_pipe_and_coloured_on_a_terminal():
    import nnforge

    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    piped = io.StringIO()
    with contextlib.redirect_stdout(piped):
        model.relax.show()
    assert "\x1b[" not in piped.getvalue()
    assert piped.getvalue().strip() == model.relax.script().strip()
    term = _Terminal()
    with contextlib.redirect_stdout(term):
        model.relax.show()
    assert "\x1b[" in term.getvalue()
