"""The commands about a model or the backends themselves: ``inspect``, ``run``, ``backends``."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from nnforge.cli.common import input_shape_option, load_model, out_console, checked_output, progress_bar, save_npz, shape_text


@click.command("inspect")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@input_shape_option
def inspect(model_path: str, as_json: bool, input_shapes: tuple[str, ...]) -> None:
    """Per-layer op, shapes, parameters and MACs of the cleaned-up model."""
    model = load_model(model_path, input_shapes)
    summary = model.summary()
    if as_json:
        doc = {
            "model": model_path,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.inputs],
            "outputs": model.output_names,
            **summary.to_dict(),
        }
        if model.prequantized is not None:  # QDQ / QOperator / QONNX: what it carries, per layer
            from nnforge.interop_view import carried_layers

            doc["prequantized"] = {**model.prequantized.describe(), "layers": carried_layers(model)}
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
        shown_name = layer.name if layer.name == layer.onnx_name else f"{layer.name} (ONNX name {layer.onnx_name!r})"
        table.add_row(
            str(i), escape(shown_name), layer.op,
            escape(" ".join(shape_text(s) for s in layer.input_shapes)),
            escape(shape_text(layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}",
        )
    out_console.print(table)
    ins = ", ".join(s.describe() for s in model.inputs)
    out_console.print(f"inputs: {ins}   outputs: {', '.join(model.output_names)}", highlight=False, markup=False)
    if any(isinstance(d, str) for s in model.inputs for d in s.shape):
        out_console.print("MACs are per sample (symbolic batch dimension counted as 1).", highlight=False)
    if model.prequantized is not None:
        from nnforge.interop_view import print_carried

        print_carried(model, out_console)


@click.command("run")
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

    out = checked_output(output_path, False, force, model_path, input_path)
    model = load_model(model_path, input_shapes)
    arrays, labels = load_inputs(input_path, model.inputs)
    with progress_bar() as bar:
        task = bar.add_task("running", total=len(arrays[0]))
        outputs = model.predict(arrays, batch_size, progress=lambda done, _n: bar.update(task, completed=done))
    save_npz(out, outputs, force, inputs=[model_path, input_path])
    n = len(arrays[0])
    click.echo(f"ran {n} sample(s) through {model_path}; wrote {', '.join(outputs)} to {out}")
    if labels is not None:
        first = outputs[model.output_names[0]]
        click.echo(f"top-1 accuracy: {top1_accuracy(first, labels):.4f} ({n} labelled samples)")


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def backends(as_json: bool) -> None:
    """List the registered hardware backends (and any that failed to load)."""
    from nnforge.backends import broken_backends, list_backends

    infos, broken = list_backends(), broken_backends()
    if as_json:
        click.echo(json.dumps({"backends": [vars(i) for i in infos],
                               "broken": [{"name": n, "error": e} for n, e in sorted(broken.items())]}, default=str))
        return
    table = Table(title="nnforge backends")
    for col in ("name", "description", "ops", "origin"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, escape(i.description), ", ".join(i.ops), escape(i.origin))
    for name, error in sorted(broken.items()):
        table.add_row(name, f"[red]broken: {escape(error)}[/]", "", "failed to load")
    out_console.print(table)
    for i in infos:
        if not i.options:
            continue
        opts = Table(title=f"{i.name} options (--option KEY=VALUE)", header_style="bold")
        for col in ("option", "default", "allowed", "help"):
            opts.add_column(col, overflow="fold")
        for key, o in i.options.items():
            opts.add_row(key, escape(json.dumps(o["default"], default=str)), escape(_allowed(o)), escape(o["help"]))
        out_console.print(opts)


def _bound(v) -> str:
    """A range bound as written: whole numbers in full (16,777,216, not 1.67772e+07)."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _allowed(option: dict) -> str:
    """An option's allowed values or range, in words."""
    if option["choices"] is not None:
        text = ", ".join(json.dumps(c, default=str) for c in option["choices"])
    elif option["minimum"] is not None and option["maximum"] is not None:
        text = f"{_bound(option['minimum'])} to {_bound(option['maximum'])}"
    elif option["minimum"] is not None:
        text = f">= {_bound(option['minimum'])}"
    elif option["maximum"] is not None:
        text = f"<= {_bound(option['maximum'])}"
    else:
        text = ""
    return text + ("; or per layer" if option.get("per_layer") else "")
