"""``nnforge explore``: per-layer mixed precision and compression, searched under an accuracy budget.

    result = nnforge.explore(model, [x_calib], [x_test], y_test, max_drop=0.01,
                             objectives=["bytes"], trials=200, out_dir="out/explore")
    best = result.best                      # a TrialRecord: best.quant / best.compress
    qmodel = nnforge.quantize(model, [x_calib], best.quant, compress=best.compress)

The steps, in order (docs/explore.md):

1. ``Evaluator`` (evaluate.py): calibration statistics and float predictions, once per process;
2. sensitivity (sensitivity.py): one knob of one layer at a time, bit-accurately; the table
   shrinks the search space and gives the first points to try;
3. the study (study.py): the seeds, then a Pareto local search (descent.py) interleaved with
   Optuna TPE, multi-objective, ``--max-drop`` as a constraint, trials evaluated in this process
   or on Ray workers (ray_worker.py);
4. results (results.py): the Pareto front, the chosen point as ``best.toml``, plots, report;
   with ``holdout``, the front and the chosen point re-simulated on data the search never saw.
"""

from __future__ import annotations

import json
import math
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError, shown

from . import objectives as objectives_mod
from . import results as results_mod
from . import sensitivity as sens_mod
from .evaluate import ENGINES, Evaluator
from .results import ExploreResult, TrialRecord
from .space import SearchSpace

UNIFORM = ("w8a8", "w6a8", "w4a8", "w4a6", "w3a8", "w2a8")  # the comparison points of report.md


@dataclass
class EvaluatorFactory:
    """Everything a worker needs to build its ``Evaluator`` (picklable: sent once per Ray actor)."""

    onnx_bytes: bytes
    input_shapes: dict[str, tuple]
    calib: list[np.ndarray]
    data: list[np.ndarray]
    labels: np.ndarray | None
    costs: list[str]
    backend: str | None
    backend_options: dict[str, Any] = field(default_factory=dict)
    engine: str = "auto"

    def __call__(self) -> Evaluator:
        import warnings

        import onnx

        import nnforge

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = nnforge.load(onnx.load_from_string(self.onnx_bytes), self.input_shapes or None)
        return Evaluator(model, self.calib, self.data, self.labels, self.costs, self.backend, self.backend_options,
                         self.engine)


def _check_args(max_drop, trials, timeout, workers, engine) -> None:
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop) \
            or not 0 <= max_drop <= 1:
        raise InputError(f"--max-drop must be a fraction in [0, 1], not {shown(max_drop)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InputError(f"--trials must be a positive integer, not {shown(trials)}")
    if timeout is not None and (not isinstance(timeout, (int, float)) or not timeout > 0):
        raise InputError(f"--timeout must be a positive number of seconds, not {shown(timeout)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be a positive integer, not {shown(workers)}")
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {shown(engine)}")


def explore(model, calib: Sequence[np.ndarray], data: Sequence[np.ndarray], labels: np.ndarray | None = None, *,
            max_drop: float = 0.01, objectives: Sequence[str] = ("bytes",), backend: str | None = None,
            backend_options: dict[str, Any] | None = None, trials: int = 100, timeout: float | None = None,
            seed: int = 0, storage: str | None = None, out_dir: str | Path | None = None, resume: bool = False,
            ray: str | None = None, workers: int = 2, engine: str = "auto", sensitivity: bool | dict = True,
            uniform: Sequence[str] = UNIFORM, progress: Callable[[str, dict], None] | None = None,
            local_search: bool = True, holdout: float = 0.0) -> ExploreResult:
    """Search per-layer widths, pruning and sharing of ``model`` (see the package docstring).

    ``calib``/``data``: arrays, one per model input; ``labels``: the data's classes, or None
    (then the quality is top-1 agreement with the float model).  ``objectives``: cost names
    (``objectives.COSTS``), optionally with ``accuracy`` or ``agreement``.  ``storage``: an
    Optuna storage URL (default ``sqlite:///OUT/study.db`` with ``out_dir``, else in memory).
    ``ray``: ``"auto"`` or a cluster address, to evaluate on ``workers`` Ray actors.
    ``sensitivity``: True (the full grid), False (the whole space, no seeds), or a grid dict
    (``sensitivity.GRID``'s form).  ``progress(phase, state)`` is called as it goes.
    ``local_search``: False for TPE alone after the seeds (descent.py: the Pareto local search).
    ``holdout``: a fraction of ``data`` (a permutation seeded by ``seed``) kept out of the search;
    the front and the chosen point are then simulated on it (``result.holdout``).
    Writes the result files into ``out_dir`` when given.  Ctrl-C (KeyboardInterrupt) leaves the
    study resumable and still writes the results of the finished trials.
    """
    from . import study as study_mod
    from .ray_worker import LocalPool, RayPool

    _check_args(max_drop, trials, timeout, workers, engine)
    quality, costs, notes = objectives_mod.resolve(objectives, labels is not None, backend)
    data, labels, held = _split(list(data), labels, holdout, seed)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    if storage is None:
        storage = f"sqlite:///{out_dir / 'study.db'}" if out_dir is not None else None
    store = study_mod.storage_for(storage) if storage is not None else None
    if ray is not None and ray != "auto":
        from .ray_worker import check_address

        check_address(ray)  # before any work
    say = progress or (lambda phase, state: None)
    factory = EvaluatorFactory(model.onnx.SerializeToString(), _fixed_shapes(model), list(calib), list(data),
                               None if labels is None else np.asarray(labels), costs, backend,
                               dict(backend_options or {}), engine)
    evaluator = Evaluator(model, factory.calib, factory.data, factory.labels, costs, backend, factory.backend_options,
                          engine)
    reference = evaluator.float_accuracy if quality == "accuracy" else 1.0
    space = SearchSpace.full(evaluator.layers)
    base = evaluator.evaluate(space.baseline())
    if "error" in base:
        raise InputError(f"the model must quantize at w8a8 to be explored, not fail: {base['error']}")
    if backend is not None:
        objectives_mod.check_backend_costs(backend, costs, base)
    settings = {"model": _digest(factory.onnx_bytes), "data": _digest_arrays(factory.data, factory.labels),
                "calib": _digest_arrays(factory.calib, None), "quality": quality, "costs": costs,
                "max_drop": max_drop, "seed": seed, "backend": backend, "options": _jsonable(factory.backend_options),
                "engine": evaluator.engine, "sensitivity": _jsonable(sensitivity), "local_search": local_search,
                "holdout": holdout}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if store is None:
        store = optuna.storages.InMemoryStorage()
    study = study_mod.open_study(store, ["maximize"] + ["minimize"] * len(costs), seed, resume, settings, max_drop)
    pool = LocalPool(lambda: evaluator) if ray is None else RayPool(factory, ray, workers)
    table: list = []
    try:
        table, space, seeds = _sensitivity(study, space, pool, sensitivity, quality, reference, max_drop, say)
        if seeds:  # the uniform widths too: the local search then improves on each per layer, at its quality
            seeds += [space.clamp(_uniform_point(space, evaluator.layer_names, u)) for u in uniform]
            seeds = [p for i, p in enumerate(seeds) if p not in seeds[:i]]
        study.set_user_attr("space", space.to_dict())
        stale = study_mod.fail_stale(study)
        if stale:
            notes.append(f"{stale} trial(s) left running by an interrupted run were marked failed and re-run")
        say("search", {"done": study_mod.finished(study), "total": trials, "best": None, "front": 0})
        study_mod.run(study, space, pool, quality, costs, reference, trials, timeout, seeds,
                      progress=lambda s: say("search", s), table=table, local_search=local_search)
    except KeyboardInterrupt:  # every finished trial is in the storage: write what they found, then stop
        pool.close()
        if out_dir is not None and study.user_attrs.get("space"):
            _write(out_dir, _result(study, evaluator, quality, costs, max_drop, reference, notes, (), space),
                   model, table, quality, max_drop)
        raise
    finally:
        pool.close()
    result = _result(study, evaluator, quality, costs, max_drop, reference, notes, uniform, space)
    if held is not None:
        result.holdout = _holdout_check(result, model, factory, held, quality)
    if out_dir is not None:
        _write(out_dir, result, model, table, quality, max_drop)
    return result


def _sensitivity(study, space: SearchSpace, pool, sensitivity, quality: str, reference: float, max_drop: float, say):
    """The table (stored with the study, so a resumed run does not redo it), the shrunk space and
    the seed points."""
    if sensitivity is False:
        return [], space, []
    grid = sens_mod.GRID if sensitivity is True else {k: tuple(v) for k, v in dict(sensitivity).items()}
    stored = study.user_attrs.get("sensitivity")
    if stored is not None:
        table = sens_mod.from_json(stored)
    else:
        items = sens_mod.points(space, grid)
        results: list[dict | None] = [None] * len(items)
        queue = list(range(len(items)))
        done = 0
        say("sensitivity", {"done": 0, "total": len(items)})
        while queue or done < len(items):
            while queue and pool.idle > 0:
                i = queue.pop(0)
                pool.submit(i, items[i][3])
            i, r = pool.next_done()
            results[i] = r
            done += 1
            say("sensitivity", {"done": done, "total": len(items)})
        table = sens_mod.rows(items, results, quality, reference)
        study.set_user_attr("sensitivity", sens_mod.to_json(table))
    shrunk, limits = sens_mod.shrink(space, table, max_drop, grid)
    return table, shrunk, sens_mod.seeds(shrunk, limits)


def _result(study, evaluator: Evaluator, quality, costs, max_drop, reference, notes, uniform, space) -> ExploreResult:
    from optuna.trial import TrialState

    recs = results_mod.records(study, quality, costs)
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    uni = []
    for name in uniform:
        m = evaluator.evaluate(_uniform_point(space, evaluator.layer_names, name))
        if "error" not in m:
            uni.append({"name": name, **{k: m.get(k) for k in (quality, *costs)}})
    float_bytes = int(evaluator.evaluate(space.baseline()).get("float_bytes", 0))
    return ExploreResult(quality, costs, max_drop, reference, float_bytes, recs,
                         results_mod.pareto(recs, quality, costs), results_mod.choose(recs, quality, costs),
                         sensitivity=[], space=space.to_dict(), uniform=uni, notes=list(notes),
                         engine=evaluator.engine, failed=failed)


def _uniform_point(space: SearchSpace, layer_names: list[str], name: str) -> dict:
    """``"w4a8"``: every layer at 4-bit weights and 8-bit activations, nothing pruned or shared."""
    w, a = (int(v) for v in name[1:].split("a"))
    params = dict(space.baseline())
    for n in layer_names:
        params[f"{n}:weight_bits"], params[f"{n}:act_bits"] = w, a
    return params


def _write(out_dir: Path, result: ExploreResult, model, table, quality: str, max_drop: float) -> None:
    from nnforge.compiler.output_tree import write_file

    name = Path(getattr(model, "source", "") or "model").name
    png = sens_mod.plot_png(table, quality, max_drop) if table else None
    for fname, data in results_mod.files(result, name, sens_mod.to_markdown(table, quality) if table else
                                         "(not run)\n", png, sens_mod.to_json(table)).items():
        write_file(out_dir / fname, data, force=True)


def _split(data: list[np.ndarray], labels, fraction: float, seed: int):
    """``(search data, search labels, held-out part or None)``; the held-out part is
    ``(arrays, labels, sorted indices into data)``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise InputError(f"--holdout must be a fraction in [0, 1), not {shown(fraction)}")
    if not fraction:
        return data, labels, None
    n = len(data[0])
    k = int(round(n * fraction))
    if not 1 <= k < n:
        raise InputError(f"--holdout must leave samples on both sides, not {fraction:g} of {n} samples "
                         f"({k} held out)")
    order = np.random.default_rng(seed).permutation(n)
    keep, out = np.sort(order[k:]), np.sort(order[:k])
    lab = None if labels is None else np.asarray(labels)
    return ([a[keep] for a in data], None if lab is None else lab[keep],
            ([a[out] for a in data], None if lab is None else lab[out], out))


def _holdout_check(result: ExploreResult, model, factory: EvaluatorFactory, held, quality: str) -> dict:
    """The float model, the front and the chosen point simulated on the held-out samples."""
    arrays, labels, indices = held
    ev = Evaluator(model, factory.calib, arrays, labels, ["bytes"], engine=factory.engine)
    ref = ev.float_accuracy if quality == "accuracy" else 1.0
    points = {r.number: r for r in result.pareto}
    if result.best is not None:
        points[result.best.number] = result.best
    values = {n: ev.evaluate(r.params).get(quality) for n, r in sorted(points.items())}
    return {"fraction": len(indices) / (len(indices) + len(factory.data[0])), "samples": len(indices),
            "indices": [int(i) for i in indices], "float_quality": ref, "trials": values}


def _fixed_shapes(model) -> dict[str, tuple]:
    return {s.name: tuple(s.shape) for s in model.inputs if all(isinstance(d, int) for d in s.shape)}


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def _digest_arrays(arrays, labels) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in list(arrays) + ([] if labels is None else [labels]):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _jsonable(v):
    return json.loads(json.dumps(v, default=str))


class _CallableModule(types.ModuleType):
    """``nnforge.explore`` is this package and, called, the ``explore`` function: the two names are
    one attribute of ``nnforge``, and importing a submodule must not turn the function into the
    package (or the reverse)."""

    def __call__(self, *args, **kwargs) -> ExploreResult:
        return explore(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["explore", "ExploreResult", "TrialRecord", "Evaluator", "EvaluatorFactory", "SearchSpace"]
