"""The ``nnforge explore`` command (registered in ``nnforge/cli/__init__.py``; heavy imports stay inside)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import click

from nnforge.compiler.errors import InputError, shown


@click.command("explore")
@click.argument("model_path", metavar="MODEL.onnx")
@click.option("--calib", "calib_path", required=True, metavar="CALIB.npz", help="Calibration data.")
@click.option("--data", "data_path", required=True, metavar="TEST.npz",
              help="Evaluation data: x (and labels y; without them the quality is agreement with float).")
@click.option("--max-drop", default=0.01, show_default=True, type=float,
              help="Constraint: the largest allowed drop of accuracy (or agreement) below float, in [0, 1].")
@click.option("--objective", "objectives", multiple=True, metavar="NAME",
              help="accuracy | agreement, and costs: bytes, bytes-fixed, macs-bits, dsp, lut, cycles, latency "
                   "(repeatable; default: accuracy and bytes).")
@click.option("--backend", "backend_name", default=None, help="Backend whose estimate gives dsp/lut/cycles/latency.")
@click.option("--option", "option_values", multiple=True, metavar="KEY=VALUE", help="Backend option (repeatable).")
@click.option("--trials", default=100, show_default=True, type=int, help="Finished trials the study should hold.")
@click.option("--timeout", default=None, type=float, metavar="S", help="Stop starting trials after S seconds.")
@click.option("--seed", default=0, show_default=True, type=int, help="Sampler seed.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage (default sqlite:///OUTDIR/study.db; postgresql://... or a PATH.log journal).")
@click.option("--resume", is_flag=True, help="Continue the study in the storage (an interrupted run).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Evaluate trials on Ray: auto (a local cluster) or a cluster's HOST:PORT.")
@click.option("--workers", default=2, show_default=True, type=int, help="Ray workers (actors).")
@click.option("--engine", default="auto", show_default=True, type=click.Choice(["auto", "reference", "tvm"]),
              help="Trial simulator: the numpy reference or the TVM integer build (equal code for code).")
@click.option("--no-sensitivity", is_flag=True, help="Skip the sensitivity analysis (search the whole space).")
@click.option("--no-local-search", is_flag=True, help="TPE alone after the seed points (no Pareto local search).")
@click.option("--holdout", default=0.0, show_default=True, type=float, metavar="FRACTION",
              help="Keep this fraction of --data out of the search; the front and best are re-simulated on it.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with pareto and best.")
@click.option("--output", "-o", "out_dir", required=True, metavar="OUTDIR",
              help="Writes study.db, pareto.csv/json/png, best.toml, report.md, sensitivity.png.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="Fix an input's shape (repeatable).")
def explore_cmd(model_path, calib_path, data_path, max_drop, objectives, backend_name, option_values, trials, timeout,
                seed, storage, resume, ray_address, workers, engine, no_sensitivity, no_local_search, holdout, as_json,
                out_dir, input_shapes):
    """Search per-layer widths, pruning and sharing under an accuracy budget (docs/explore.md)."""
    from rich.markup import escape
    from rich.table import Table

    from nnforge.cli.common import err_console, load_model, out_console, progress_bar
    from nnforge.data import load_inputs
    from nnforge.explore import explore
    from nnforge.explore.objectives import resolve

    if not (math.isfinite(max_drop) and 0 <= max_drop <= 1):
        raise InputError(f"--max-drop must be a fraction in [0, 1], not {shown(max_drop)}")
    out = Path(out_dir)
    if not resume and storage is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"-o {out_dir!r} must be a new or empty directory, not one that holds files "
                         "(pass --resume to continue the study in it)")
    if resume and storage is None and not (out / "study.db").is_file():
        raise InputError(f"--resume must find {str(out / 'study.db')!r}, not nothing (no study to continue)")
    options = {}
    if backend_name is not None:
        from nnforge.backends import get_backend
        from nnforge.compile import parse_option_strings, resolve_options

        options = parse_option_strings(option_values)
        resolve_options(get_backend(backend_name), options)  # an unknown backend or option: before any work
    elif option_values:
        raise click.UsageError("--option must be given with --backend")
    model = load_model(model_path, input_shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an MLP fed 8x8 images: reshaped, as simulate says
        data, labels = load_inputs(data_path, model.inputs)
        calib = load_inputs(calib_path, model.inputs)[0]
    notes = resolve(objectives, labels is not None, backend_name)[2]  # bad objectives: before any work
    for note in notes:
        err_console.print(f"note: {escape(note)}", highlight=False)
    with progress_bar() as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, state: dict) -> None:
            text = phase if phase == "sensitivity" else (
                f"search (front {state.get('front', 0)}" + (f", best {state['best']}" if state.get("best") else "")
                + ")")
            if phase not in tasks:
                tasks[phase] = bar.add_task(text, total=state["total"])
            bar.update(tasks[phase], completed=state["done"], total=state["total"], description=escape(text))

        try:
            result = explore(model, calib, data, labels, max_drop=max_drop, objectives=objectives or ("bytes",),
                             backend=backend_name, backend_options=options, trials=trials, timeout=timeout, seed=seed,
                             storage=storage, out_dir=out, resume=resume, ray=ray_address, workers=workers,
                             engine=engine, sensitivity=not no_sensitivity, progress=progress,
                             local_search=not no_local_search, holdout=holdout)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: every finished trial is kept in {escape(storage or str(out / 'study.db'))}"
                              f"; continue with --resume", highlight=False)
            raise
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    say = lambda text: out_console.print(text, highlight=False, markup=False, soft_wrap=True)  # noqa: E731
    q = result.quality
    say(f"float {q}: {result.float_quality:.4f}; {len(result.trials)} trials ({result.failed} failed), "
        f"simulator {result.engine}; constraint: drop <= {100 * max_drop:g}%")
    table = Table(title="Pareto front (feasible trials)", header_style="bold")
    for col in ("trial", q, "drop", *result.costs, "settings"):
        table.add_column(col, justify="left" if col == "settings" else "right", overflow="fold")
    for r in result.pareto:
        table.add_row(str(r.number), f"{r.values[q]:.4f}", f"{100 * r.values['drop']:+.2f}%",
                      *[f"{r.values[c]:,.6g}" for c in result.costs], escape(r.describe))
    out_console.print(table)
    b = result.best
    if b is None:
        say("no trial met the constraint: no best.toml written")
    else:
        say(f"best: trial {b.number}, {q} {b.values[q]:.4f}, " + ", ".join(f"{c} {b.values[c]:,.6g}" for c in
                                                                           result.costs)
            + f" ({result.float_bytes / b.values['bytes']:.1f}x smaller than float32)")
        h = result.holdout
        if h is not None and h["trials"].get(b.number) is not None:
            v = h["trials"][b.number]
            say(f"held out ({h['samples']} samples not searched on): best {q} {v:.4f}, float {h['float_quality']:.4f}, "
                f"drop {100 * (h['float_quality'] - v):+.2f}%")
    say(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))} to {out_dir}")
