"""The ``nnforge`` command line.

Every user error ends with exit status 2 and a short message on stderr; ``--debug`` shows
the traceback as well.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from nnforge.compiler.errors import InputError, NNForgeError, shown
from nnforge.console import PipeConsole

# full width in a pipe or a file, so tables are never cut (nnforge/console.py)
err_console = PipeConsole(stderr=True)
out_console = PipeConsole()


def _parse_input_shapes(values: tuple[str, ...]) -> dict[str, tuple[int | str, ...]]:
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


class _Group(click.Group):
    """Turns NNForgeError into a clean message and exit status 2, and Ctrl-C into one line and
    exit status 130 (128 + SIGINT, as shells report it)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NNForgeError as err:
            if ctx.params.get("debug") or os.environ.get("NNFORGE_DEBUG_TRACEBACK"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            sys.exit(err.exit_code)
        except OSError as err:
            # the last net for a path the system refuses (a name too long, a full disk, no permission)
            # where no check above named it: still one line, naming the file
            if err.filename is None or ctx.params.get("debug") or os.environ.get("NNFORGE_DEBUG_TRACEBACK"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(shown(str(err.filename)))} must be accessible, not "
                              f"{escape(err.strerror or str(err))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            if ctx.params.get("debug"):
                raise
            err_console.print("interrupted (Ctrl-C)", highlight=False, soft_wrap=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.option("--max-elements", type=click.IntRange(min=1), default=None, metavar="N",
              help="Most values one tensor of a model may hold (default 2^28 = 268,435,456).")
@click.version_option(package_name="nnforge")
@click.pass_context
def main(ctx: click.Context, debug: bool, max_elements: int | None) -> None:
    """nnforge: compile trained neural networks into bit-exact hardware sources."""
    from nnforge.compiler.frontend import limits
    from nnforge.compiler import spelling

    spelled = spelling.use_cli()  # errors name --force, not force=True, for this command
    ctx.call_on_close(lambda: spelling.reset(spelled))
    warnings.simplefilter("default" if debug else "ignore", DeprecationWarning)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    if max_elements is not None:
        token = limits.set_cap(max_elements)
        ctx.call_on_close(lambda: limits.reset_cap(token))


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
            escape(" ".join(_shape(s) for s in layer.input_shapes)),
            escape(_shape(layer.output_shape)), f"{layer.params:,}", f"{layer.macs:,}",
        )
    out_console.print(table)
    ins = ", ".join(s.describe() for s in model.inputs)
    out_console.print(f"inputs: {ins}   outputs: {', '.join(model.output_names)}", highlight=False, markup=False)
    if any(isinstance(d, str) for s in model.inputs for d in s.shape):
        out_console.print("MACs are per sample (symbolic batch dimension counted as 1).", highlight=False)
    if model.prequantized is not None:
        from nnforge.interop_view import print_carried

        print_carried(model, out_console)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )


def _save_npz(path: Path, arrays: dict[str, np.ndarray], force: bool, inputs=()) -> None:
    """``arrays`` as an .npz at ``path``: never half-written, never over an input (output_tree)."""
    import io

    from nnforge.compiler.output_tree import write_file

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_file(path, buf.getvalue(), force, inputs=inputs)


def _output(path: str, directory: bool, force: bool, *inputs: str | None) -> Path:
    """The validated ``-o`` path (output_tree.check_output), before any work; ``inputs`` are the
    command's own files, which no output may replace or hold."""
    from nnforge.compiler.output_tree import check_output

    return check_output(path, directory=directory, force=force, inputs=[i for i in inputs if i])


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

    out = _output(output_path, False, force, model_path, input_path)
    model = _load(model_path, input_shapes)
    arrays, labels = load_inputs(input_path, model.inputs)
    with _progress() as bar:
        task = bar.add_task("running", total=len(arrays[0]))
        outputs = model.predict(arrays, batch_size, progress=lambda done, _n: bar.update(task, completed=done))
    _save_npz(out, outputs, force, inputs=[model_path, input_path])
    n = len(arrays[0])
    click.echo(f"ran {n} sample(s) through {model_path}; wrote {', '.join(outputs)} to {out}")
    if labels is not None:
        first = outputs[model.output_names[0]]
        click.echo(f"top-1 accuracy: {top1_accuracy(first, labels):.4f} ({n} labelled samples)")


def _quant_spec(bits: str | None, config: str | None):
    if bits and config:
        raise click.UsageError("give either --bits or --config, not both")
    if config:  # a [compress] table (explore's best.toml) is read by _compress_spec
        from nnforge.compiler.point_config import split_config

        return split_config(config)[0]
    return bits or "w8a8"


quant_options = [
    click.option("--bits", metavar="wNaM", help="Shorthand widths, e.g. w8a8, w4a8, w8a8-pow2, auto (default w8a8)."),
    click.option("--config", "config_path", metavar="FILE", help="TOML/YAML/JSON quantization config (docs/quant_config.md)."),
]


def _compress_spec(prune: float | None, prune_config: str | None, share: str | int | None, refine: str | None,
                   structured: bool, config: str | None = None):
    """The CompressConfig the compression options describe, or None when none is given.

    ``--prune-config`` (or the ``[compress]`` table of the ``--config`` file) is the base;
    ``--prune``, ``--share``, ``--refine`` and ``--structured`` override its global keys."""
    from nnforge.compiler.compress.compress_config import CompressConfig, parse_prune_config
    from nnforge.compiler.point_config import split_config

    in_config = split_config(config)[1] if config else None
    if in_config is not None:
        if prune_config is not None:
            raise click.UsageError(f"--prune-config must not be given with --config {config!r}: its [compress] "
                                   "table holds the compression settings already")
        prune_config = in_config

    share_text = share
    if isinstance(share, str):
        try:
            share = int(share)
        except ValueError:
            share = -1
        if not 1 <= share <= 8:
            raise InputError(f"--share must be an integer from 1 to 8, not {shown(share_text)}")
    if prune is not None and not (math.isfinite(prune) and 0 <= prune < 1):
        raise InputError(f"--prune must be a fraction in [0, 1), not {shown(prune)}")
    if prune_config is None and prune is None and share is None:
        if refine is not None or structured:
            raise click.UsageError("--refine and --structured need --prune, --share or --prune-config")
        return None
    data = parse_prune_config(prune_config if in_config else Path(prune_config)).to_dict() if prune_config else {}
    if prune is not None:
        data.update(sparsity=prune, quality=None)
    if share is not None:
        data["share_bits"] = share
    if refine is not None:
        data["refine"] = refine
    if structured:
        data["structured"] = True
    return CompressConfig.from_dict(data)


compress_options = [
    click.option("--prune", type=float, metavar="FLOAT",
                 help="Magnitude pruning: this fraction of each conv/dense layer's weights becomes 0 (in [0, 1))."),
    click.option("--prune-config", metavar="FILE",
                 help="YAML/JSON/TOML compression config with per-layer settings (docs/compression.md)."),
    click.option("--share", metavar="K", help="Weight sharing: 2^K shared codes per layer, K in 1..8."),
    click.option("--refine", type=click.Choice(["lsq", "kmeans"]),
                 help="Shared values from k-means, refined by least squares on calibration outputs (lsq, default)"
                      " or plain k-means."),
    click.option("--structured", is_flag=True, help="Prune whole output channels and remove them."),
]


def _with(options):
    def deco(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return deco


def _fmt_acc(v) -> str:
    return "-" if v is None else f"{v:.4f}"


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--data", "data_path", required=True, metavar="TEST.npz", help="Evaluation data: x (and labels y).")
@click.option("--calib", "calib_path", metavar="CALIB.npz", help="Calibration data (default: the first part of --data).")
@_with(quant_options)
@_with(compress_options)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--check", is_flag=True, help="Also run the numpy reference and count differing codes.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@report_option
@click.option("--force", is_flag=True, help="Replace an existing --report file.")
@input_shape_option
def simulate(model_path, data_path, calib_path, bits, config_path, prune, prune_config, share, refine, structured,
             as_json, check, batch_size, input_shapes, report_path=None, force=False):
    """Bit-accurate accuracy of the quantized model against the float model."""
    from nnforge.data import load_inputs

    from nnforge.compiler.quant.quant_config import parse_config
    from nnforge.simulate import simulate as run_simulation

    if report_path:
        _output(report_path, False, force, model_path, data_path, calib_path, config_path, prune_config)
    config = parse_config(_quant_spec(bits, config_path))
    comp = _compress_spec(prune, prune_config, share, refine, structured, config_path)
    model = _load(model_path, input_shapes)
    data, labels = load_inputs(data_path, model.inputs)
    calib = load_inputs(calib_path, model.inputs)[0] if calib_path else None
    with _progress() as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compression fallbacks: listed below as decisions
        task = bar.add_task("simulating", total=len(data[0]))
        qmodel, report = run_simulation(model, data, labels, config, calib, check, batch_size,
                                        progress=lambda done, _n: bar.update(task, completed=done), compress=comp)
    if report_path:
        from nnforge.report_html import simulate_html, write_report

        write_report(report_path, simulate_html(model_path, report, qmodel), force,
                     inputs=[i for i in (model_path, data_path, calib_path) if i])
        err_console.print(f"wrote {escape(report_path)}", highlight=False)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    out_console.print(f"config: {report.config}", highlight=False, markup=False)
    out_console.print(f"calibration: {report.calibration}", highlight=False, markup=False)
    if report.compression:
        layers = ", ".join(f"{l['name']} {l['nonzeros']}/{l['params']} nonzero"
                           + (f" {l['codebook_size']} codes" if l["codebook_size"] else "")
                           for l in report.compression["layers"])
        out_console.print(f"compression: {report.compression['describe']}: {layers}", highlight=False, markup=False)
    out_console.print(
        f"samples: {report.samples}   float accuracy: {_fmt_acc(report.float_accuracy)}   "
        f"quantized accuracy: {_fmt_acc(report.quant_accuracy)}   top-1 agreement: {report.agreement:.4f}",
        highlight=False, markup=False)
    if report.sqnr_samples < report.samples:
        out_console.print(f"per-layer SQNR over the first {report.sqnr_samples} samples", highlight=False, markup=False)
    table = Table(header_style="bold")
    for col in ("layer", "op", "type", "scale", "SQNR dB"):
        table.add_column(col, justify="right" if col in ("scale", "SQNR dB") else "left", overflow="fold")
    for layer in report.layers:
        table.add_row(escape(layer.name), layer.op, layer.qtype, f"{layer.scale:.4g}",
                      "exact" if layer.sqnr_db == float("inf") else f"{layer.sqnr_db:.1f}")
    out_console.print(table)
    for line in report.auto_decisions:
        out_console.print(f"auto: {line}", highlight=False, markup=False)
    for h in report.host_ops:
        out_console.print(f"host (float): {h['name']}: {h['reason']}", highlight=False, markup=False)
    if report.prequantized is not None:
        from nnforge.interop_view import print_runtime_agreement

        print_runtime_agreement(report.prequantized, out_console)
    if report.reference_mismatches is not None:
        out_console.print(f"reference mismatches: {report.reference_mismatches} differing codes over all traced tensors",
                          highlight=False, markup=False)
        if report.reference_mismatches:
            sys.exit(1)


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (a pre-quantized model needs none: QDQ, QOperator, QONNX).")
@_with(quant_options)
@_with(compress_options)
@click.option("--output", "-o", "out_dir", required=True, metavar="OUT", help="Directory for the quantized model.")
@click.option("--export", "exports", multiple=True, type=click.Choice(["qonnx", "qdq"]),
              help="Also write OUT/model_qonnx.onnx (QONNX Quant nodes: FINN, hls4ml) or OUT/model_qdq.onnx (ONNX "
                   "QDQ: onnxruntime); repeatable. nnforge.load reads either back (docs/interop.md).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@input_shape_option
def quantize(model_path, calib_path, bits, config_path, prune, prune_config, share, refine, structured, out_dir, exports,
             force, input_shapes):
    """Calibrate and quantize; save the quantized model (reload with nnforge.load_quantized)."""
    from nnforge.data import load_inputs

    from nnforge.compiler.quant.quant_config import parse_config
    from nnforge.quantized import quantize as run_quantize, save

    inputs = [i for i in (model_path, calib_path, config_path, prune_config) if i]
    _output(out_dir, True, force, *inputs)
    config = parse_config(_quant_spec(bits, config_path))
    comp = _compress_spec(prune, prune_config, share, refine, structured, config_path)
    model = _load(model_path, input_shapes)
    _need_calib(model, calib_path)
    calib = load_inputs(calib_path, model.inputs)[0] if calib_path else None
    qmodel = run_quantize(model, calib, config, compress=comp)
    if exports:  # written with the saved model, in one atomic step
        from nnforge.interop import exported_bytes

        extra = {f"model_{fmt}.onnx": exported_bytes(qmodel, fmt) for fmt in dict.fromkeys(exports)}
        _save_compressed(qmodel, Path(out_dir), force, inputs, extra)
    else:
        save(qmodel, Path(out_dir), force, inputs=inputs)
    for line in qmodel.graph.decisions:
        err_console.print(f"decision: {escape(line)}", highlight=False)
    described = config.describe() + ("" if comp is None else f"; {comp.describe()}")
    source = f"{len(calib[0])} calibration samples" if calib else f"the {model.prequantized.format} model's own quantization"
    click.echo(f"quantized {model_path} ({described}) with {source}; "
               f"{len(qmodel.graph.nodes)} integer layers written to {out_dir}"
               + "".join(f"; {fmt.upper()} model {Path(out_dir) / f'model_{fmt}.onnx'}" for fmt in dict.fromkeys(exports)))


def _prequantized_file(path: str) -> bool:
    """Whether ``path`` reads as a pre-quantized ONNX model (a file that doesn't read is left to the load)."""
    from nnforge.compiler.frontend.onnx_frontend import read_model
    from nnforge.compiler.interop.prequant import detect_format

    try:
        return detect_format(read_model(path)) is not None
    except NNForgeError:
        return False


def _need_calib(model, calib_path: str | None) -> None:
    """--calib is needed unless the model carries its quantization (compiler/interop/prequant.py)."""
    if calib_path is None and model.prequantized is None:
        raise click.UsageError("--calib must be given to quantize a float model (a pre-quantized QDQ, QOperator or "
                               "QONNX model needs none)")


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (a pre-quantized model needs none).")
@click.option("--data", "data_path", metavar="TEST.npz",
              help="Evaluation data: x (and labels y) for float against compressed accuracy.")
@_with(compress_options)
@click.option("--huffman", is_flag=True, help="Huffman-code the index and sparse-gap streams.")
@report_option
@click.option("--conv-gap-bits", default=8, show_default=True, type=click.IntRange(1, 32),
              help="Bits per relative index (gap) in the sparse layout of conv layers.")
@click.option("--fc-gap-bits", default=5, show_default=True, type=click.IntRange(1, 32),
              help="Bits per relative index (gap) in the sparse layout of dense layers.")
@_with(quant_options)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--output", "-o", "out_dir", metavar="OUT",
              help="Write the quantized model plus compression.json, compression.md and histograms.png.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@input_shape_option
def compress(model_path, calib_path, data_path, prune, prune_config, share, refine, structured, huffman,
             conv_gap_bits, fc_gap_bits, bits, config_path, as_json, out_dir, force, batch_size, input_shapes,
             report_path=None):
    """Prune, share and quantize; report the weights' storage against float32 (docs/compression.md)."""
    from nnforge.data import load_inputs, top1_accuracy

    from nnforge.compiler.compress.compression_report import compression_report, plot_histograms, storage_name
    from nnforge.compiler.quant.quant_config import parse_config
    from nnforge.quantized import quantize as run_quantize

    inputs = [i for i in (model_path, calib_path, data_path, config_path, prune_config) if i]
    if out_dir is not None:
        _output(out_dir, True, force, *inputs)
    if report_path:
        _output(report_path, False, force, *inputs, out_dir)
    config = parse_config(_quant_spec(bits, config_path))
    comp = _compress_spec(prune, prune_config, share, refine, structured, config_path)
    model = _load(model_path, input_shapes)
    _need_calib(model, calib_path)
    calib = load_inputs(calib_path, model.inputs)[0] if calib_path else None
    data, labels = load_inputs(data_path, model.inputs) if data_path else (None, None)
    with _progress() as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compression fallbacks: listed below as decisions
        task = bar.add_task("calibrating", total=len(calib[0]) if calib else None)
        qmodel = run_quantize(model, calib, config, batch_size, compress=comp,
                              progress=lambda done, _n: bar.update(task, completed=done))
        task = bar.add_task("coding weights", total=None)
        report = compression_report(qmodel, huffman, conv_gap_bits, fc_gap_bits,
                                    progress=lambda done, n: bar.update(task, completed=done, total=n))
        doc = {"model": model_path, "config": config.describe(), "compress": None if comp is None else comp.describe(),
               **report.to_dict()}
        if data is not None:
            task = bar.add_task("float model", total=len(data[0]))
            f_out = model.predict(data, batch_size, progress=lambda done, _n: bar.update(task, completed=done))
            task = bar.add_task("compressed model", total=len(data[0]))
            q_out = qmodel.predict(data, batch_size, progress=lambda done, _n: bar.update(task, completed=done))
            name = model.output_names[0]
            f_pred = f_out[name].reshape(len(data[0]), -1).argmax(1)
            q_pred = q_out[name].reshape(len(data[0]), -1).argmax(1)
            doc.update(samples=len(data[0]), agreement=float(np.mean(f_pred == q_pred)),
                       float_accuracy=None if labels is None else top1_accuracy(f_out[name], labels),
                       quant_accuracy=None if labels is None else top1_accuracy(q_out[name], labels))
    if report_path:
        from nnforge.compiler.compress.compression_report import settings_text
        from nnforge.report_html import compress_html, write_report

        page = compress_html(model_path, {**doc, "compress_text": settings_text(comp) if comp else None}, report, qmodel)
        write_report(report_path, page, force, inputs=inputs)
        err_console.print(f"wrote {escape(report_path)}", highlight=False)
    if out_dir:
        summary = report.to_markdown()
        if data is not None:
            summary += (f"\nOn {doc['samples']} samples: float accuracy {_fmt_acc(doc['float_accuracy'])}, "
                        f"compressed accuracy {_fmt_acc(doc['quant_accuracy'])}, "
                        f"top-1 agreement {doc['agreement']:.4f}.\n")
        _save_compressed(qmodel, Path(out_dir), force, inputs, {
            "compression.json": json.dumps(doc, indent=1, sort_keys=True).encode(),
            "compression.md": summary.encode(), "histograms.png": plot_histograms(qmodel)})
    for line in qmodel.graph.decisions:
        err_console.print(f"decision: {escape(line)}", highlight=False)
    if as_json:
        click.echo(json.dumps(doc))
        return
    table = Table(header_style="bold", show_footer=True,
                  caption="index and gap bits as stored: Huffman coded (payload + table), or \"fixed\" where that is"
                          " not smaller" if huffman else None)
    for col, foot in (("layer", "total"), ("op\nstorage", ""), ("params", f"{report.params:,}"),
                      ("nonzero", f"{report.nonzeros:,}"), ("bits/\nindex", ""),
                      ("index\nbits", ""), ("gap\nbits", ""),
                      ("bytes", f"{report.total_bytes:,}"), ("ratio", f"{report.compression_ratio:.1f}x")):
        left = col in ("layer", "op\nstorage")
        table.add_column(col, footer=foot, overflow="fold", justify="left" if left else "right",
                         min_width=6 if left else 5)
    for l in report.layers:
        fixed = lambda used, raw: "\nfixed" if huffman and raw and not used else ""  # Huffman not smaller: kept
        table.add_row(escape(l.name), f"{l.op}\n{storage_name(l.shared, l.layout == 'sparse')}", f"{l.params:,}",
                      f"{l.nonzeros:,}", str(l.index_bits) + (f"\nK={l.codebook_size}" if l.shared else ""),
                      f"{l.index_stored_bits:,}{fixed(l.index_huffman_used, l.index_stream_bits)}",
                      f"{l.sparse_stored_bits:,}{fixed(l.sparse_huffman_used, l.sparse_stream_bits)}",
                      f"{l.total_bytes:,}", f"{l.compression_ratio:.1f}x")
    out_console.print(table)
    out_console.print(f"weights: {report.total_bytes:,} bytes against {report.float_bytes:,} bytes in float32 "
                      f"({report.compression_ratio:.2f}x, {'with' if huffman else 'without'} Huffman coding)",
                      highlight=False, markup=False)
    if data is not None:
        out_console.print(f"samples: {doc['samples']}   float accuracy: {_fmt_acc(doc['float_accuracy'])}   "
                          f"compressed accuracy: {_fmt_acc(doc['quant_accuracy'])}   "
                          f"top-1 agreement: {doc['agreement']:.4f}", highlight=False, markup=False)
    if out_dir:
        out_console.print(f"wrote the quantized model, compression.json, compression.md and histograms.png to "
                          f"{out_dir}", highlight=False, markup=False)


def _save_compressed(qmodel, out: Path, force: bool, inputs: list[str], extra: dict[str, bytes]) -> None:
    """``nnforge.save`` plus ``extra`` files, atomically (one temporary sibling, then a rename)."""
    from nnforge.compiler.qgraph_io import save_dir
    from nnforge.quantized import saved_files

    save_dir(out, {**saved_files(qmodel), **extra}, force, inputs=inputs)


def _int_list(value: str, name: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """A non-empty comma list of integers (each in [lo, hi] where given); errors name the flag."""
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        values = None
    if not values or (lo is not None and any(not lo <= v <= hi for v in values)):
        span = "" if lo is None else f" from {lo} to {hi}"
        raise InputError(f"{name} must be a comma-separated list of integers{span}, not {shown(value)}")
    return values


def _choice_list(value: str, name: str, choices: tuple[str, ...]) -> list[str]:
    """A non-empty comma list of ``choices``; errors name the flag."""
    values = [v.strip() for v in value.split(",") if v.strip()]
    if not values or any(v not in choices for v in values):
        raise InputError(f"{name} must be a comma-separated list of {', '.join(choices)}, not {shown(value)}")
    return values


@main.command()
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--data", "data_path", required=True, metavar="TEST.npz")
@click.option("--calib", "calib_path", metavar="CALIB.npz", help="Calibration data (default: the first part of --data).")
@click.option("--weight-bits", default="2,3,4,5,6,8,10,12,16", show_default=True)
@click.option("--act-bits", default="8", show_default=True)
@click.option("--scale-modes", default="float", show_default=True, help="Comma list of pow2,float.")
@click.option("--calibrations", default="mse", show_default=True, help="Comma list of minmax,percentile,mse,entropy.")
@_with(compress_options)
@click.option("--output", "-o", "out_dir", required=True, metavar="OUTDIR", help="Writes sweep.csv, sweep.json, sweep.png.")
@report_option
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@input_shape_option
def sweep(model_path, data_path, calib_path, weight_bits, act_bits, scale_modes, calibrations, prune, prune_config,
          share, refine, structured, out_dir, force, batch_size, input_shapes, report_path=None):
    """Accuracy over a grid of widths, scale modes and calibration methods."""
    from nnforge.data import load_inputs

    from nnforge.compiler.qgraph_io import save_dir
    from nnforge.compiler.quant.quant_config import parse_config
    from nnforge.simulate import split_calibration
    from nnforge.sweep import plot_png, run_sweep, table_files

    inputs = [i for i in (model_path, data_path, calib_path, prune_config) if i]
    _output(out_dir, True, force, *inputs)
    if report_path:
        _output(report_path, False, force, *inputs, out_dir)
    from nnforge.compiler.compress.compress_config import MAX_SHARE_BITS, MIN_SHARE_BITS
    from nnforge.compiler.quant.quant_config import CALIBRATIONS, MAX_BITS, MIN_BITS, SCALE_MODES

    # every list checked here, naming its flag, before any work
    wbits = _int_list(weight_bits, "--weight-bits", MIN_BITS, MAX_BITS)
    abits = _int_list(act_bits, "--act-bits", MIN_BITS, MAX_BITS)
    modes = _choice_list(scale_modes, "--scale-modes", SCALE_MODES)
    methods = _choice_list(calibrations, "--calibrations", CALIBRATIONS)
    for wb, ab, mode, method in [(w, a, m, c) for w in wbits for a in abits for m in modes for c in methods]:
        parse_config({"default": {"weight_bits": wb, "act_bits": ab, "scale_mode": mode, "calibration": method}})
    # --share 2,3,4 sweeps the sharing width too
    shares = _int_list(share, "--share", MIN_SHARE_BITS, MAX_SHARE_BITS) if share is not None else [None]
    comp = _compress_spec(prune, prune_config, shares[0] if len(shares) == 1 else None, refine, structured)
    if len(shares) > 1:
        for k in shares:
            _compress_spec(prune, prune_config, k, refine, structured)  # every width valid before any work
    else:
        shares = [None]
    model = _load(model_path, input_shapes)
    data, labels = load_inputs(data_path, model.inputs)
    if calib_path:
        calib = load_inputs(calib_path, model.inputs)[0]
    else:
        calib, _, k = split_calibration(data)
        err_console.print(f"calibrating on the first {k} samples of --data (no --calib given)", highlight=False)

    def report(i, n, p):
        err_console.print(f"[{i}/{n}] w{p.weight_bits}a{p.act_bits} {p.scale_mode} {p.calibration}"
                          + (f" ({p.compression})" if p.compression else "") + ": "
                          f"accuracy {_fmt_acc(p.quant_accuracy)} agreement {p.agreement:.4f}", markup=False,
                          highlight=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compression fallbacks are per point and repeat
        points = run_sweep(model, data, labels, calib, wbits, abits, modes, methods, batch_size, report,
                           compress=comp, share_bits=shares)
    files = table_files(points)
    files["sweep.png"] = plot_png(points, Path(model_path).name)
    save_dir(Path(out_dir), files, force, inputs=inputs)
    click.echo(files["sweep.csv"].decode().rstrip())
    click.echo(f"wrote sweep.csv, sweep.json and sweep.png to {out_dir}")
    if report_path:
        from nnforge.report_html import sweep_html, write_report

        write_report(report_path, sweep_html(model_path, points), force, inputs=inputs)
        click.echo(f"wrote {report_path}")


@main.command()
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


@main.command("compile")
@click.argument("model_path", metavar="MODEL.onnx|QUANTIZED/")
@click.option("--backend", "backend_name", default="hls", show_default=True, help="Hardware backend (nnforge backends).")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (needed for MODEL.onnx; a QUANTIZED/ directory from `nnforge quantize -o` has none).")
@_with(quant_options)
@_with(compress_options)
@click.option("--option", "option_values", multiple=True, metavar="KEY=VALUE",
              help="Backend option (repeatable), e.g. reuse_factor=4, io=axis, part=..., clock_ns=4.")
@click.option("--data", "data_path", metavar="TEST.npz",
              help="Golden vectors for the testbench: its first 32 samples (default: the calibration data).")
@click.option("--output", "-o", "out_dir", required=True, metavar="OUTDIR", help="The project directory to write.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@input_shape_option
def compile_cmd(model_path, backend_name, calib_path, bits, config_path, prune, prune_config, share, refine, structured,
                option_values, data_path, out_dir, force, input_shapes):
    """Quantize and compile into a hardware project: sources, testbench, tool scripts, report.

    MODEL may be the directory `nnforge quantize -o` wrote: then nothing is quantized again."""
    from nnforge.backends import get_backend
    from nnforge.compile import compile_model, parse_option_strings, resolve_options
    from nnforge.compiler.quant.quant_config import parse_config
    from nnforge.data import load_inputs
    from nnforge.quantized import load_quantized, quantize as run_quantize

    quantized_dir = Path(model_path).is_dir()
    if quantized_dir:  # the settings are the saved model's: a quantization option here would be ignored
        given = [flag for flag, value in (("--bits", bits), ("--config", config_path), ("--prune", prune),
                                          ("--prune-config", prune_config), ("--share", share), ("--refine", refine),
                                          ("--structured", structured), ("--input-shape", input_shapes))
                 if value not in (None, False, ())]
        if given:
            raise click.UsageError(f"{', '.join(given)} must not be given with the quantized model directory "
                                   f"{model_path!r}: it is quantized already (its config.json holds the settings)")
    elif calib_path is None and not _prequantized_file(model_path):
        raise click.UsageError("--calib must be given to compile a float ONNX model (or pass the directory "
                               "`nnforge quantize -o` wrote, or a pre-quantized QDQ, QOperator or QONNX model)")
    _output(out_dir, True, force, model_path, calib_path, data_path, config_path, prune_config)
    options = parse_option_strings(option_values)
    resolve_options(get_backend(backend_name), options)  # bad backend or option: fail before any work
    if quantized_dir:
        qmodel = load_quantized(model_path)
        model = qmodel.float_model
    else:
        config = parse_config(_quant_spec(bits, config_path))
        comp = _compress_spec(prune, prune_config, share, refine, structured, config_path)
        model = _load(model_path, input_shapes)
    calib = load_inputs(calib_path, model.inputs)[0] if calib_path else None
    golden = load_inputs(data_path, model.inputs)[0] if data_path else calib
    with _progress() as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compression fallbacks: listed as decisions
        if not quantized_dir:
            task = bar.add_task("calibrating", total=len(calib[0]) if calib else None)
            qmodel = run_quantize(model, calib, config, progress=lambda d, n: bar.update(task, completed=d),
                                  compress=comp)
        tasks: dict[str, object] = {}

        def step(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        project = compile_model(qmodel, backend_name, out_dir, options, force, golden, progress=step)
    golden_file = Path(data_path or calib_path).name if (data_path or calib_path) else "no data given"
    _print_compile_summary(model_path, project, out_dir, golden_file)


def _print_compile_summary(model_path: str, project, out_dir: str, golden_file: str) -> None:
    report = project.report
    say = lambda text: out_console.print(text, highlight=False, markup=False, soft_wrap=True)
    ops: dict[str, int] = {}
    for k in report["kernels"]:
        ops[k["op"]] = ops.get(k["op"], 0) + 1
    say(f"compiled {model_path} for {report['backend']} ({report['quantization']['config']}): "
        f"{len(report['kernels'])} kernels ({', '.join(f'{op} {n}' for op, n in ops.items())}), "
        f"{len(report['host'])} host item(s)")
    for h in report["host"]:
        say(f"  host: {h['name']} ({h['op']}): {h['reason']}")
    if report["storage_forms"]:
        say("storage: " + ", ".join(f"{form} {n}" for form, n in report["storage_forms"].items())
            + f"; {report['totals']['weight_bytes']:,} weight bytes")
    t = report["totals"]
    if t.get("estimated_kernels"):
        fmt = lambda v: "-" if v is None else f"{v:,}"
        say(f"estimates: latency {fmt(t.get('latency_cycles'))} cycles, II {fmt(t.get('ii'))}, "
            f"DSP {fmt(t.get('dsp'))}, BRAM18 {fmt(t.get('bram18'))}, LUT {fmt(t.get('lut'))}, FF {fmt(t.get('ff'))}")
    else:
        say("estimates: none (the backend has no cost model yet)")
    fit = report.get("fit")  # hls: the estimates against the part (backends/hls/fit.py)
    if fit and fit.get("part"):
        pct = ", ".join(f"{k.upper()} {v:.1f}%" for k, v in fit["percent"].items())
        verdict = "fits" if fit["fits"] else "DOES NOT FIT (raise reuse_factor, or --option reuse_factor=auto)"
        say(f"fit: {fit['part_option']}: {pct} of the part: {verdict}; "
            f"{fit['latency_us']:,.2f} us latency, {fit['throughput_per_s'] or 0:,.0f} samples/s at {fit['clock_ns']:g} ns")
    say(f"golden vectors: {report['golden']['samples']} samples ({report['golden']['source']}, {golden_file})")
    docs = [f for f in ("README.md", "report.md") if f in report["files"]]
    say(f"wrote {len(report['files'])} files to {out_dir}" + (f" (see {' and '.join(docs)})" if docs else "")
        + f"; check with `nnforge verify {out_dir}`")


def _print_verify(report) -> None:
    """Per layer: the mismatches, then the cycle figures where the backend has them; the summary."""
    say = lambda text: out_console.print(text, highlight=False, markup=False, soft_wrap=True)
    table = Table(header_style="bold")
    for col in ("layer", "op", "codes", "mismatches"):
        table.add_column(col, justify="right" if col in ("codes", "mismatches") else "left", overflow="fold")
    for layer in report.layers:
        table.add_row(escape(layer.name), layer.op, f"{layer.codes:,}", f"{layer.mismatches:,}")
    out_console.print(table)
    figures = ("predicted_cycles", "measured_cycles", "utilization")
    if any(getattr(l, f) is not None for l in report.layers for f in figures):
        fmt = lambda v: "-" if v is None else f"{v:,}"
        cycles = Table(header_style="bold")
        for col in ("layer", "MACs", "predicted cycles", "measured cycles", "utilization"):
            cycles.add_column(col, justify="left" if col == "layer" else "right", overflow="fold")
        for l in report.layers:
            cycles.add_row(escape(l.name), fmt(l.macs), fmt(l.predicted_cycles), fmt(l.measured_cycles),
                           "-" if l.utilization is None else f"{l.utilization:.1%}")
        out_console.print(cycles)
    for name in report.not_compared:
        say(f"not compared (the {report.backend} simulation does not expose it): {name}")
    say(f"backend: {report.backend}   samples: {report.samples} ({report.source})   "
        f"tensors compared: {report.compared_tensors}   mismatches: {report.mismatches}")
    if report.accuracy is not None:
        say(f"accuracy through the generated hardware: {_fmt_acc(report.accuracy)}   "
            f"TVM integer build: {_fmt_acc(report.quant_accuracy)}")
    for note in report.notes:
        say(note)
    if report.passed:
        say("PASS: bit-exact")
    elif report.changed_files and not report.modified_allowed:
        say(f"FAIL: project files changed since compile: {', '.join(report.changed_files)}")
    elif report.golden_mismatches and not report.mismatches:
        say("FAIL: tb/golden.dat differs from the reference")
    else:
        say(f"FAIL: the {report.backend} simulation differs from the reference")


@main.command("verify")
@click.argument("project_dir", metavar="OUTDIR")
@click.option("--data", "data_path", metavar="TEST.npz",
              help="Inputs x (and labels y) to run; default: the project's golden vectors.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--allow-modified", is_flag=True,
              help="Simulate a project whose files were edited after compile (they are listed, not refused).")
@click.option("--ap-types", "ap_types", is_flag=False, flag_value="", default=None, metavar="[DIR]",
              help="hls: compile the C simulation against Xilinx's ap_int headers (in the installed hls4ml, or "
                   "in DIR), after a g++ -Wall -Wextra -Werror pass over both code forms.")
@report_option
@click.option("--force", is_flag=True, help="Replace an existing --report file.")
def verify_cmd(project_dir, data_path, as_json, batch_size, allow_modified, ap_types, report_path=None, force=False):
    """Check the project's files against its manifest, then simulate it (hls: g++ C simulation):
    every layer's output and the golden vectors against the numpy reference."""
    from nnforge.project import open_project
    from nnforge.verification import files_failure, verify as run_verify
    from nnforge.data import load_inputs

    failure = files_failure(project_dir, allow_modified)  # before parsing anything in the project
    if failure is not None:
        click.echo(json.dumps(failure.to_dict())) if as_json else _print_verify(failure)
        sys.exit(1)
    if report_path:  # outside the project: its files are checked against the manifest
        _output(report_path, False, force, data_path, project_dir)
    project = open_project(project_dir)
    data, labels = (load_inputs(data_path, project.qmodel.float_model.inputs) if data_path else (None, None))
    with _progress() as bar:
        task = bar.add_task(f"{project.backend_name} simulation", total=None)
        report = run_verify(project, None if data is None else data, labels, batch_size,
                            progress=lambda d, n: bar.update(task, completed=d, total=n),
                            allow_modified=allow_modified, ap_types=ap_types)
    if report_path:
        from nnforge.report_html import verify_html, write_report

        write_report(report_path, verify_html(project, report, data, labels, batch_size), force,
                     inputs=[i for i in (data_path,) if i])
        err_console.print(f"wrote {escape(report_path)}", highlight=False)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        _print_verify(report)
    if not report.passed:
        sys.exit(1)


@main.command("synth")
@click.argument("project_dir", metavar="OUTDIR")
@click.option("--target", default=None, metavar="TARGET",
              help="ecp5-25k, ecp5-45k, ecp5-85k, xc7 (synthesis only) or generic (the ASIC view: CMOS gates, "
                   "transistors); default: the project's part option, else ecp5-85k.")
@click.option("--pnr", is_flag=True, help="Place and route with nextpnr-ecp5: Fmax, utilization, critical path.")
@click.option("--bitstream", is_flag=True, help="Write OUTDIR/synth/top.bit with ecppack (implies --pnr).")
@click.option("--freq", default=None, metavar="MHZ", help="Clock target for place and route (default: the project's "
                                                           "clock_mhz).")
@click.option("--package", default=None, help="ECP5 package (default: the device's largest, for the most IOs).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def synth_cmd(project_dir, target, pnr, bitstream, freq, package, as_json):
    """Synthesize a systolic project with yosys; add the figures to report.json/.md (docs/systolic.md)."""
    from nnforge.hw_sim.synth_flow import run_synth
    from nnforge.synth_view import print_run, run_json

    run = run_synth(project_dir, target, pnr, bitstream, freq, package)
    if as_json:
        click.echo(json.dumps(run_json(run)))
    else:
        print_run(run, out_console)


from nnforge.explore.command import explore_cmd  # noqa: E402  (its heavy imports are inside the command)

main.add_command(explore_cmd)
