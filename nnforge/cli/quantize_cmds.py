"""The commands that quantize a float model and measure it: ``simulate``, ``quantize``, ``compress``."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click
import numpy as np
from rich.markup import escape
from rich.table import Table

from nnforge.cli.common import (err_console, fmt_acc, input_shape_option, need_calib, out_console,
                                checked_output, progress_bar, report_option, with_options)
from nnforge.cli.request import QuantFlags, compress_options, quant_flags, quant_options


@click.command("simulate")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--data", "data_path", required=True, metavar="TEST.npz", help="Evaluation data: x (and labels y).")
@click.option("--calib", "calib_path", metavar="CALIB.npz", help="Calibration data (default: the first part of --data).")
@with_options(quant_options)
@with_options(compress_options)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--check", is_flag=True, help="Also run the numpy reference and count differing codes.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@report_option
@click.option("--force", is_flag=True, help="Replace an existing --report file.")
@input_shape_option
@quant_flags
def simulate(model_path, data_path, calib_path, flags: QuantFlags, as_json, check, batch_size, input_shapes,
             report_path=None, force=False):
    """Bit-accurate accuracy of the quantized model against the float model."""
    from nnforge.data import load_inputs

    from nnforge.simulate import simulate as run_simulation

    if report_path:
        checked_output(report_path, False, force, model_path, data_path, calib_path, *flags.files)
    req = flags.request(model_path, calib_path, input_shapes)
    config, comp = req.config, req.compress
    model = req.load()
    data, labels = load_inputs(data_path, model.inputs)
    calib = req.calibration(model)
    with progress_bar() as bar, warnings.catch_warnings():
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
        f"samples: {report.samples}   float accuracy: {fmt_acc(report.float_accuracy)}   "
        f"quantized accuracy: {fmt_acc(report.quant_accuracy)}   top-1 agreement: {report.agreement:.4f}",
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


@click.command("quantize")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (a pre-quantized model needs none: QDQ, QOperator, QONNX).")
@with_options(quant_options)
@with_options(compress_options)
@click.option("--output", "-o", "out_dir", required=True, metavar="OUT", help="Directory for the quantized model.")
@click.option("--export", "exports", multiple=True, type=click.Choice(["qonnx", "qdq"]),
              help="Also write OUT/model_qonnx.onnx (QONNX Quant nodes: FINN, hls4ml) or OUT/model_qdq.onnx (ONNX "
                   "QDQ: onnxruntime); repeatable. nnforge.load reads either back (docs/interop.md).")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@input_shape_option
@quant_flags
def quantize(model_path, calib_path, flags: QuantFlags, out_dir, exports, force, input_shapes):
    """Calibrate and quantize; save the quantized model (reload with nnforge.load_quantized)."""
    from nnforge.quantized import quantize as run_quantize, save

    inputs = [i for i in (model_path, calib_path, *flags.files) if i]
    checked_output(out_dir, True, force, *inputs)
    req = flags.request(model_path, calib_path, input_shapes)
    model = req.load()
    need_calib(model, calib_path)
    calib = req.calibration(model)
    qmodel = run_quantize(model, calib, req.config, compress=req.compress)
    if exports:  # written with the saved model, in one atomic step
        from nnforge.interop import exported_bytes

        extra = {f"model_{fmt}.onnx": exported_bytes(qmodel, fmt) for fmt in dict.fromkeys(exports)}
        save_compressed(qmodel, Path(out_dir), force, inputs, extra)
    else:
        save(qmodel, Path(out_dir), force, inputs=inputs)
    for line in qmodel.graph.decisions:
        err_console.print(f"decision: {escape(line)}", highlight=False)
    described = req.describe()
    source = f"{len(calib[0])} calibration samples" if calib else f"the {model.prequantized.format} model's own quantization"
    click.echo(f"quantized {model_path} ({described}) with {source}; "
               f"{len(qmodel.graph.nodes)} integer layers written to {out_dir}"
               + "".join(f"; {fmt.upper()} model {Path(out_dir) / f'model_{fmt}.onnx'}" for fmt in dict.fromkeys(exports)))


@click.command("compress")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (a pre-quantized model needs none).")
@click.option("--data", "data_path", metavar="TEST.npz",
              help="Evaluation data: x (and labels y) for float against compressed accuracy.")
@with_options(compress_options)
@click.option("--huffman", is_flag=True, help="Huffman-code the index and sparse-gap streams.")
@report_option
@click.option("--conv-gap-bits", default=8, show_default=True, type=click.IntRange(1, 32),
              help="Bits per relative index (gap) in the sparse layout of conv layers.")
@click.option("--fc-gap-bits", default=5, show_default=True, type=click.IntRange(1, 32),
              help="Bits per relative index (gap) in the sparse layout of dense layers.")
@with_options(quant_options)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--output", "-o", "out_dir", metavar="OUT",
              help="Write the quantized model plus compression.json, compression.md and histograms.png.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@input_shape_option
@quant_flags
def compress(model_path, calib_path, data_path, flags: QuantFlags, huffman, conv_gap_bits, fc_gap_bits, as_json,
             out_dir, force, batch_size, input_shapes, report_path=None):
    """Prune, share and quantize; report the weights' storage against float32 (docs/compression.md)."""
    from nnforge.data import load_inputs, top1_accuracy

    from nnforge.compiler.compress.compression_report import compression_report, plot_histograms, storage_name
    from nnforge.quantized import quantize as run_quantize

    inputs = [i for i in (model_path, calib_path, data_path, *flags.files) if i]
    if out_dir is not None:
        checked_output(out_dir, True, force, *inputs)
    if report_path:
        checked_output(report_path, False, force, *inputs, out_dir)
    req = flags.request(model_path, calib_path, input_shapes)
    config, comp = req.config, req.compress
    model = req.load()
    need_calib(model, calib_path)
    calib = req.calibration(model)
    data, labels = load_inputs(data_path, model.inputs) if data_path else (None, None)
    with progress_bar() as bar, warnings.catch_warnings():
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
            summary += (f"\nOn {doc['samples']} samples: float accuracy {fmt_acc(doc['float_accuracy'])}, "
                        f"compressed accuracy {fmt_acc(doc['quant_accuracy'])}, "
                        f"top-1 agreement {doc['agreement']:.4f}.\n")
        save_compressed(qmodel, Path(out_dir), force, inputs, {
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
        out_console.print(f"samples: {doc['samples']}   float accuracy: {fmt_acc(doc['float_accuracy'])}   "
                          f"compressed accuracy: {fmt_acc(doc['quant_accuracy'])}   "
                          f"top-1 agreement: {doc['agreement']:.4f}", highlight=False, markup=False)
    if out_dir:
        out_console.print(f"wrote the quantized model, compression.json, compression.md and histograms.png to "
                          f"{out_dir}", highlight=False, markup=False)


def save_compressed(qmodel, out: Path, force: bool, inputs: list[str], extra: dict[str, bytes]) -> None:
    """``nnforge.save`` plus ``extra`` files, atomically (one temporary sibling, then a rename)."""
    from nnforge.compiler.qgraph_io import save_dir
    from nnforge.quantized import saved_files

    save_dir(out, {**saved_files(qmodel), **extra}, force, inputs=inputs)
