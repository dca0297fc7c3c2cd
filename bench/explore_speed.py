"""nnforge explore: trials per minute in-process against a local Ray cluster of 2 workers, in one
run, and the time until the search first holds a feasible point >= 40x smaller than float32
(with the Pareto local search, the default, and with TPE alone after the seeds).

    python bench/explore_speed.py [--trials 24] [--target-trials 100] [--model mlp|cnn] [--target 40]

Same model, data, seed and number of trials (no sensitivity pass) on both paths; the Ray figure
excludes the cluster start and the workers' model load (printed apart).  Wall time and this
process's CPU time are printed: on a machine shared with other work, Ray's 2 workers get what
the other processes leave them.  Measurement only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import nnforge

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _data(which: str):
    model = nnforge.load(EXAMPLES / f"digits_{which}.onnx")
    test, calib = np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calib.npz")
    x, c = test["x"], calib["x"]
    if len(model.inputs[0].shape) == 2:
        x, c = x.reshape(len(x), -1), c.reshape(len(c), -1)
    return model, [c], [x], test["y"]


def _ray_worker_cpu() -> float | None:
    """CPU seconds of the live Ray actor processes (``ray::...`` in /proc; None off Linux)."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            name, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            if name.startswith("ray::") and "IDLE" not in name:
                total += (int(rest[11]) + int(rest[12])) / ticks  # utime, stime
    except (OSError, ValueError):
        return None
    return total


def _search(model, calib, data, labels, trials: int, **kw) -> tuple[float, float, float, float | None]:
    """(search wall seconds, setup wall seconds, CPU seconds of this process, CPU seconds of the
    Ray actors up to the last trial's report, or None) for ``trials`` trials."""
    marks = {}

    def progress(phase, state):
        if phase == "search" and "search" not in marks:
            marks["search"] = time.perf_counter()
            marks["cpu0"] = _ray_worker_cpu() if "ray" in kw else None
        if phase == "search" and "ray" in kw:
            marks["cpu1"] = _ray_worker_cpu()

    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        nnforge.explore(model, calib, data, labels, trials=trials, seed=0, out_dir=Path(d) / "o", sensitivity=False,
                        uniform=(), progress=progress, **kw)
    t1 = time.perf_counter()
    workers = None if marks.get("cpu1") is None else marks["cpu1"] - (marks["cpu0"] or 0.0)
    return t1 - marks["search"], marks["search"] - t0, time.process_time() - c0, workers


def speed(which: str, trials: int) -> None:
    import ray

    model, calib, data, labels = _data(which)
    print(f"digits {which.upper()}: {trials} trials each, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    wall_a, setup_a, cpu_a, _ = _search(model, calib, data, labels, trials)
    print(f"in-process:        {trials / wall_a * 60:6.1f} trials/min  (search {wall_a:.1f} s wall, setup "
          f"{setup_a:.1f} s, {cpu_a:.1f} s CPU in this process)")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    start = time.perf_counter() - t0
    try:
        wall_b, setup_b, cpu_b, cpu_w = _search(model, calib, data, labels, trials, ray="auto", workers=2)
    finally:
        ray.shutdown()
    print(f"Ray, 2 workers:    {trials / wall_b * 60:6.1f} trials/min  (search {wall_b:.1f} s wall; cluster start "
          f"{start:.1f} s, workers' setup {setup_b:.1f} s; {cpu_b:.1f} s CPU in the driver"
          + ("" if cpu_w is None else f", {cpu_w:.1f} s in the workers") + ")")
    print(f"ratio Ray/in-process: {wall_a / wall_b:.2f}x wall  (load average now {os.getloadavg()[0]:.1f}; on a "
          f"machine shared with other work, 2 worker processes get two shares of it where one gets one)")


class _Reached(Exception):
    """Raised from the progress callback to stop the study at the target."""


def time_to_40x(which: str, trials: int, target: float = 40.0, max_drop: float = 0.01,
                local_search: bool = True) -> None:
    model, calib, data, labels = _data(which)
    found: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    label = "local search" if local_search else "TPE alone"

    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "o"
        import optuna

        def watch(phase, state):
            if phase != "search" or "t" in found or not state.get("done"):
                return
            study = optuna.load_study(study_name="nnforge-explore", storage=f"sqlite:///{out / 'study.db'}")
            for t in study.trials:
                cons = t.system_attrs.get("constraints")
                if t.state.name == "COMPLETE" and cons and cons[0] <= 0 and t.user_attrs["compression_ratio"] >= target:
                    found.update(t=time.perf_counter() - t0, cpu=time.process_time() - c0, trial=t.number,
                                 ratio=t.user_attrs["compression_ratio"], acc=t.user_attrs["accuracy"])
                    raise _Reached

        result = None
        try:
            result = nnforge.explore(model, calib, data, labels, trials=trials, seed=0, out_dir=out,
                                     max_drop=max_drop, uniform=(), progress=watch, local_search=local_search)
        except _Reached:
            pass
    total = time.perf_counter() - t0
    if found:
        print(f"{label}: time to {target:g}x at <= {100 * max_drop:g}% drop: {found['t']:.0f} s wall, "
              f"{found['cpu']:.0f} s CPU (trial {found['trial']}, {found['ratio']:.1f}x, accuracy {found['acc']:.4f}; "
              f"sensitivity pass included)")
    else:
        print(f"{label}: {target:g}x at <= {100 * max_drop:g}% drop not reached in {trials} trials ({total:.0f} s "
              f"wall, {time.process_time() - c0:.0f} s CPU)")
        best = result.best if result is not None else None
        if best is not None:
            print(f"  best after {trials} trials: {result.float_bytes / best.values['bytes']:.1f}x, accuracy "
                  f"{best.values['accuracy']:.4f} (float {result.float_quality:.4f}): {best.describe}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--target-trials", type=int, default=100)
    ap.add_argument("--target", type=float, default=40.0)
    args = ap.parse_args()
    speed(args.model, args.trials)
    if args.target_trials:
        time_to_40x(args.model, args.target_trials, args.target)
        time_to_40x(args.model, args.target_trials, args.target, local_search=False)


if __name__ == "__main__":
    main()
