"""``nnforge sweep``: accuracy over a grid of widths, scale modes, calibration methods and sharing widths."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from nnforge.cli.common import err_console, fmt_acc, input_shape_option, load_model, checked_output, report_option, with_options
from nnforge.cli.request import compress_options, compress_spec
from nnforge.compiler.errors import InputError, shown


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


@click.command("sweep")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--data", "data_path", required=True, metavar="TEST.npz")
@click.option("--calib", "calib_path", metavar="CALIB.npz", help="Calibration data (default: the first part of --data).")
@click.option("--weight-bits", default="2,3,4,5,6,8,10,12,16", show_default=True)
@click.option("--act-bits", default="8", show_default=True)
@click.option("--scale-modes", default="float", show_default=True, help="Comma list of pow2,float.")
@click.option("--calibrations", default="mse", show_default=True, help="Comma list of minmax,percentile,mse,entropy.")
@with_options(compress_options)
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
    checked_output(out_dir, True, force, *inputs)
    if report_path:
        checked_output(report_path, False, force, *inputs, out_dir)
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
    comp = compress_spec(prune, prune_config, shares[0] if len(shares) == 1 else None, refine, structured)
    if len(shares) > 1:
        for k in shares:
            compress_spec(prune, prune_config, k, refine, structured)  # every width valid before any work
    else:
        shares = [None]
    model = load_model(model_path, input_shapes)
    data, labels = load_inputs(data_path, model.inputs)
    if calib_path:
        calib = load_inputs(calib_path, model.inputs)[0]
    else:
        calib, _, k = split_calibration(data)
        err_console.print(f"calibrating on the first {k} samples of --data (no --calib given)", highlight=False)

    def report(i, n, p):
        err_console.print(f"[{i}/{n}] w{p.weight_bits}a{p.act_bits} {p.scale_mode} {p.calibration}"
                          + (f" ({p.compression})" if p.compression else "") + ": "
                          f"accuracy {fmt_acc(p.quant_accuracy)} agreement {p.agreement:.4f}", markup=False,
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
