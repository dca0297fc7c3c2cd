"""The commands about a hardware project: ``compile``, ``verify``, ``synth``."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from nnforge.cli.common import (checked_output, err_console, fmt_acc, input_shape_option, out_console,
                                prequantized_file, progress_bar, report_option, with_options)
from nnforge.cli.request import QuantFlags, compress_options, quant_flags, quant_options


@click.command("compile")
@click.argument("model_path", metavar="MODEL.onnx|QUANTIZED/")
@click.option("--backend", "backend_name", default="hls", show_default=True, help="Hardware backend (nnforge backends).")
@click.option("--calib", "calib_path", metavar="CALIB.npz",
              help="Calibration data (needed for MODEL.onnx; a QUANTIZED/ directory from `nnforge quantize -o` has none).")
@with_options(quant_options)
@with_options(compress_options)
@click.option("--option", "option_values", multiple=True, metavar="KEY=VALUE",
              help="Backend option (repeatable), e.g. reuse_factor=4, io=axis, part=..., clock_ns=4.")
@click.option("--data", "data_path", metavar="TEST.npz",
              help="Golden vectors for the testbench: its first 32 samples (default: the calibration data).")
@click.option("--output", "-o", "out_dir", required=True, metavar="OUTDIR", help="The project directory to write.")
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@input_shape_option
@quant_flags
def compile_cmd(model_path, backend_name, calib_path, flags: QuantFlags, option_values, data_path, out_dir, force,
                input_shapes):
    """Quantize and compile into a hardware project: sources, testbench, tool scripts, report.

    MODEL may be the directory `nnforge quantize -o` wrote: then nothing is quantized again."""
    from nnforge.compile import BackendRequest, compile_model, parse_option_strings
    from nnforge.data import load_inputs
    from nnforge.quantized import load_quantized, quantize as run_quantize

    quantized_dir = Path(model_path).is_dir()
    if quantized_dir:  # the settings are the saved model's: a quantization option here would be ignored
        given = flags.given() + (["--input-shape"] if input_shapes else [])
        if given:
            raise click.UsageError(f"{', '.join(given)} must not be given with the quantized model directory "
                                   f"{model_path!r}: it is quantized already (its config.json holds the settings)")
    elif calib_path is None and not prequantized_file(model_path):
        raise click.UsageError("--calib must be given to compile a float ONNX model (or pass the directory "
                               "`nnforge quantize -o` wrote, or a pre-quantized QDQ, QOperator or QONNX model)")
    checked_output(out_dir, True, force, model_path, calib_path, data_path, *flags.files)
    # bad backend or option: fail before any work, and once (compile_model takes the request as it is)
    backend = BackendRequest.build(backend_name, parse_option_strings(option_values))
    if quantized_dir:
        qmodel = load_quantized(model_path)
        model = qmodel.float_model
    else:
        req = flags.request(model_path, calib_path, input_shapes)
        model = req.load()
    calib = load_inputs(calib_path, model.inputs)[0] if calib_path else None
    golden = load_inputs(data_path, model.inputs)[0] if data_path else calib
    with progress_bar() as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # compression fallbacks: listed as decisions
        if not quantized_dir:
            task = bar.add_task("calibrating", total=len(calib[0]) if calib else None)
            qmodel = run_quantize(model, calib, req.config, progress=lambda d, n: bar.update(task, completed=d),
                                  compress=req.compress)
        tasks: dict[str, object] = {}

        def step(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        project = compile_model(qmodel, backend, out_dir, None, force, golden, progress=step)
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
        say(f"accuracy through the generated hardware: {fmt_acc(report.accuracy)}   "
            f"TVM integer build: {fmt_acc(report.quant_accuracy)}")
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


@click.command("verify")
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
        checked_output(report_path, False, force, data_path, project_dir)
    project = open_project(project_dir)
    data, labels = (load_inputs(data_path, project.qmodel.float_model.inputs) if data_path else (None, None))
    with progress_bar() as bar:
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


@click.command("synth")
@click.argument("project_dir", metavar="OUTDIR")
@click.option("--target", default=None, metavar="TARGET",
              help="ecp5-25k, ecp5-45k, ecp5-85k, xc7 (synthesis only) or generic (the ASIC view: CMOS gates, "
                   "transistors); default: the project's part option, else ecp5-85k.")
@click.option("--pnr", is_flag=True, help="Place and route with nextpnr-ecp5: Fmax, utilization, critical path.")
@click.option("--bitstream", is_flag=True, help="Write OUTDIR/synth/top.bit with ecppack (implies --pnr).")
@click.option("--freq", default=None, metavar="MHZ", help="Clock target for place and route (default: the project's "
                                                           "clock_mhz).")
@click.option("--package", default=None, help="ECP5 package (default: the device's largest, for the most IOs).")
@click.option("--seed", default=None, metavar="N", help="nextpnr's placer seed (default 1). Fmax moves by a few "
                                                        "percent from one seed to another; each seed is cached.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def synth_cmd(project_dir, target, pnr, bitstream, freq, package, seed, as_json):
    """Synthesize a systolic project with yosys; add the figures to report.json/.md (docs/systolic.md)."""
    from nnforge.hw_sim.synth_flow import run_synth
    from nnforge.synth_view import print_run, run_json

    run = run_synth(project_dir, target, pnr, bitstream, freq, package, seed=seed)
    page = Path(project_dir) / "report.html"
    if page.is_file():  # the project page shows the measured utilization and Fmax too
        from nnforge.report_html import refresh_project_html

        page.write_text(refresh_project_html(Path(project_dir)), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(run_json(run)))
    else:
        print_run(run, out_console)
