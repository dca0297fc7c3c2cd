"""What every ``nnforge`` command shares: the consoles, the options that recur (``--input-shape``,
``--report``), loading a model with its warnings shown, the progress bar, and the checked outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import click
import numpy as np
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nnforge.compiler.errors import NNForgeError, shown
from nnforge.console import PipeConsole

# full width in a pipe or a file, so tables are never cut (nnforge/console.py)
err_console = PipeConsole(stderr=True)
out_console = PipeConsole()


def parse_input_shapes(values: tuple[str, ...]) -> dict[str, tuple[int | str, ...]]:
    """``NAME=1,3,32,32`` (or ``NAME=N,3,32,32``: N keeps the batch dimension symbolic)."""
    shapes: dict[str, tuple[int | str, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            parts = [d.strip() for d in dims.split(",")]
            shapes[name] = tuple("batch" if i == 0 and d in ("N", "n") else int(d) for i, d in enumerate(parts))
            if any(isinstance(d, int) and not 0 < d < 2**62 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise click.BadParameter(
                f"must look like NAME=1,3,32,32 (or NAME=N,3,32,32) with positive sizes, not {shown(value)}",
                param_hint="--input-shape",
            ) from None
    return shapes


input_shape_option = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=D0,D1,...",
    help="Fix an input's shape (repeatable). Needed when a non-batch dimension is dynamic.",
)

report_option = click.option("--report", "report_path", metavar="OUT.html",
                             help="Also write a self-contained HTML report here (nnforge/report_html.py).")


def load_model(model_path: str, input_shapes: tuple[str, ...]):
    """``nnforge.load`` of the model, its warnings printed as one line each."""
    import nnforge

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = nnforge.load(model_path, parse_input_shapes(input_shapes))
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)
    return model


def shape_text(shape) -> str:
    """``[1,3,32,32]``."""
    return "[" + ",".join(str(d) for d in shape) + "]"


def progress_bar() -> Progress:
    """A transient progress bar on stderr (off when stderr is not a terminal)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )


def save_npz(path: Path, arrays: dict[str, np.ndarray], force: bool, inputs=()) -> None:
    """``arrays`` as an .npz at ``path``: never half-written, never over an input (output_tree)."""
    import io

    from nnforge.compiler.output_tree import write_file

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_file(path, buf.getvalue(), force, inputs=inputs)


def checked_output(path: str, directory: bool, force: bool, *inputs: str | None) -> Path:
    """The validated ``-o`` path (output_tree.check_output), before any work; ``inputs`` are the
    command's own files, which no output may replace or hold."""
    from nnforge.compiler.output_tree import check_output

    return check_output(path, directory=directory, force=force, inputs=[i for i in inputs if i])


def with_options(options):
    """Apply a list of click options as one decorator (in the list's order in --help)."""
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def fmt_acc(v) -> str:
    """An accuracy with 4 decimals, ``-`` when there is none."""
    return "-" if v is None else f"{v:.4f}"


def prequantized_file(path: str) -> bool:
    """Whether ``path`` reads as a pre-quantized ONNX model (a file that doesn't read is left to the load)."""
    from nnforge.compiler.frontend.onnx_frontend import read_model
    from nnforge.compiler.interop.prequant import detect_format

    try:
        return detect_format(read_model(path)) is not None
    except NNForgeError:
        return False


def need_calib(model, calib_path: str | None) -> None:
    """--calib is needed unless the model carries its quantization (compiler/interop/prequant.py)."""
    if calib_path is None and model.prequantized is None:
        raise click.UsageError("--calib must be given to quantize a float model (a pre-quantized QDQ, QOperator or "
                               "QONNX model needs none)")


__all__ = ["err_console", "out_console", "fmt_acc", "input_shape_option", "load_model", "need_calib", "checked_output",
           "parse_input_shapes", "prequantized_file", "progress_bar", "report_option", "save_npz", "shape_text",
           "with_options"]
