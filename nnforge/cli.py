"""The ``nnforge`` command line.

Every user error ends with exit status 2 and a short message on stderr; ``--debug`` shows
the traceback as well.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from nnforge.compiler.errors import InputError, NNForgeError

err_console = Console(stderr=True)
out_console = Console()


def _parse_input_shapes(values: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
            if any(d <= 0 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise click.BadParameter(
                f"must look like NAME=1,3,32,32 with positive sizes, not {value!r}",
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


class _Group(click.Group):
    """Turns NNForgeError into a clean message and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NNForgeError as err:
            if ctx.params.get("debug") or os.environ.get("NNFORGE_DEBUG_TRACEBACK"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.version_option(package_name="nnforge")
def main(debug: bool) -> None:
    """nnforge: compile trained neural networks into bit-exact hardware sources."""
    warnings.simplefilter("default" if debug else "ignore", DeprecationWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"


def _load(model_path: str, input_shapes: tuple[str, ...]):
    import nnforge

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = nnforge.load(model_path, _parse_input_shapes(input_shapes))
    for w in caught:
        if issubclass(w.category, UserWarning):
            err_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", highlight=False)
    return model


def _shape(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@input_shape_option
def inspect(model_path: str, as_json: bool, input_shapes: tuple[str, ...]) -> None:
    """Per-layer op, shapes, parameters and MACs of the cleaned-up model."""
    model = _load(model_path, input_shapes)
    summary = model.summary()
    if as_json:
        doc = {
            "model": model_path,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs],
            "outputs": model.output_names,
            **summary.to_dict(),
        }
        click.echo(json.dumps(doc))
        return
    table = Table(title=escape(model_path), show_footer=True, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("op")
    table.add_column("inputs")
    table.add_column("output")
    table.add_column("params", justify="right", footer=f"{summary.total_params:,}")
    table.add_column("MACs", justify="right", footer=f"{summary.total_macs:,}")
    for i, layer in enumerate(summary.layers):
        table.add_row(
            str(i), escape(layer.name), layer.op,
            escape(" ".join(_shape(s) for s in layer.input_shapes)),
            escape(_shape(layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}",
        )
    out_console.print(table)
    ins = ", ".join(s.describe() for s in model.inputs)
    out_console.print(f"inputs: {ins}   outputs: {', '.join(model.output_names)}", highlight=False, markup=False)
    if any(isinstance(d, str) for s in model.inputs for d in s.shape):
        out_console.print("MACs are per sample (symbolic batch dimension counted as 1).", highlight=False)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )


def _save_npz(path: Path, arrays: dict[str, np.ndarray], force: bool) -> None:
    if path.exists() and not force:
        raise InputError(f"output file {str(path)!r} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # never a half-written output
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--input", "-i", "input_path", required=True, metavar="X.npz",
              help=".npy, or .npz with key x (or one key per input name) and optional labels y.")
@click.option("--output", "-o", "output_path", required=True, metavar="Y.npz",
              help="Where to write the outputs, one key per model output name.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@input_shape_option
def run(model_path: str, input_path: str, output_path: str, batch_size: int, force: bool,
        input_shapes: tuple[str, ...]) -> None:
    """Run the float model (TVM llvm build of the cleaned Relax module)."""
    from nnforge.data import load_inputs, top1_accuracy

    out = Path(output_path)
    if out.exists() and not force:
        raise InputError(f"output file {str(out)!r} already exists; pass --force to overwrite it")
    model = _load(model_path, input_shapes)
    arrays, labels = load_inputs(input_path, model.inputs)
    with _progress() as bar:
        task = bar.add_task("running", total=len(arrays[0]))
        outputs = model.predict(arrays, batch_size, progress=lambda done, _n: bar.update(task, completed=done))
    _save_npz(out, outputs, force)
    n = len(arrays[0])
    click.echo(f"ran {n} sample(s) through {model_path}; wrote {', '.join(outputs)} to {out}")
    if labels is not None:
        first = outputs[model.output_names[0]]
        click.echo(f"top-1 accuracy: {top1_accuracy(first, labels):.4f} ({n} labelled samples)")


@main.command()
def backends() -> None:  # placeholder list until the backend registry lands
    """List the registered hardware backends."""
    click.echo("no backends registered yet")
