"""The search: an Optuna study, asked and told from this process, evaluated by a pool.

Sampler: Optuna's ``TPESampler`` (multivariate, seeded), multi-objective, with
``constraints_func`` = ``drop - max_drop`` (feasible when <= 0): ``--max-drop`` is a
constraint, never a weight.  TPE rather than NSGA-II because a study here is tens to a few
hundred bit-accurate trials, where TPE learns from fewer (NSGA-II needs generations of a
population).  The first trials are the seed points of the sensitivity analysis (``enqueue_trial``).
After them, three trials in four are a Pareto local search step (descent.py: one knob of a front
point one step cheaper, enqueued as a fixed trial, so it lands in the same storage and TPE learns
from it), the fourth is TPE's; once every step from the front has been tried, all are TPE's.

Storage: any Optuna storage.  ``storage_for(url)`` opens ``sqlite:///PATH`` or any SQLAlchemy
URL (``postgresql://...`` for several machines) as an ``RDBStorage``, and a path ending in
``.log`` as a journal file.  Every finished trial is committed as it is told, so Ctrl-C loses
none: trials still in flight are told FAIL (they re-run on ``--resume``).  ``--trials N`` is the
study's total of finished trials: a resumed study runs the ones it lacks.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

from nnforge.compiler.errors import InputError, shown

STUDY_NAME = "nnforge-explore"


def storage_for(url: str):
    """An Optuna storage for ``url``; one that cannot be opened is an InputError naming it."""
    import optuna

    try:
        if "://" not in url and url.endswith(".log"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url))
        if "://" not in url:
            raise ValueError("not a URL (sqlite:///PATH, postgresql://..., or a journal file PATH.log)")
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if "sqlite" not in url else {})
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's and Optuna's errors, a bad path
        raise InputError(f"--storage must be an Optuna storage that opens, not {shown(url)} "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None


def settings_digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def open_study(storage, directions: list[str], seed: int, resume: bool, settings: dict[str, Any], max_drop: float):
    """Create the study, or load it with ``resume`` (its settings must match this run's)."""
    import optuna

    def constraints(trial) -> list[float]:
        drop = trial.user_attrs.get("drop")
        return [1.0 if drop is None else drop - max_drop]

    with warnings.catch_warnings():  # multivariate and constraints_func are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constraints_func=constraints,
                                             n_startup_trials=8)
    names = optuna.study.get_all_study_names(storage)
    if STUDY_NAME in names and not resume:
        n = len(optuna.load_study(study_name=STUDY_NAME, storage=storage).trials)
        raise InputError(f"--storage already holds study {STUDY_NAME!r} with {n} trials: pass --resume to continue "
                         f"it, not a new search over it (or choose another -o / --storage)")
    if STUDY_NAME not in names and resume:
        raise InputError(f"--resume must find study {STUDY_NAME!r} in --storage, not an empty storage")
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions, sampler=sampler,
                                load_if_exists=True)
    digest = settings_digest(settings)
    if resume:
        stored = study.user_attrs.get("settings_digest")
        if stored != digest:
            raise InputError("--resume must continue a study with the same model, data, objectives, --max-drop and "
                             f"--seed, not different ones (stored settings {stored}, these {digest})")
    else:
        study.set_user_attr("settings_digest", digest)
        study.set_user_attr("settings", settings)
    return study


def fail_stale(study) -> int:
    """Tell FAIL every trial left RUNNING (by an interrupted run); they are asked again."""
    from optuna.trial import TrialState

    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for n in stale:
        study.tell(n, state=TrialState.FAIL)
    return len(stale)


def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


LOCAL_SEARCH_SHARE = 4  # of every 4 trials after the seeds, 3 are local search steps while there are any


def run(study, space, pool, quality: str, costs: list[str], reference: float, trials: int, timeout: float | None,
        seeds: list[dict], progress: Callable[[dict], None] | None = None, table: list | None = None,
        local_search: bool = True) -> None:
    """Ask, evaluate and tell until the study has ``trials`` finished trials or ``timeout``
    seconds passed; ``progress`` gets ``{"done", "total", "best", "front"}`` after each.
    ``table``: the sensitivity rows (the local search's step order); ``local_search``: False for
    TPE alone."""
    import optuna
    from optuna.trial import TrialState

    for params in seeds if not study.trials else []:
        study.enqueue_trial(params, skip_if_exists=True)
    start = time.monotonic()
    in_flight: dict[int, Any] = {}
    done = finished(study)
    asked = 0
    try:
        while True:
            out_of_time = timeout is not None and time.monotonic() - start >= timeout
            while pool.idle > 0 and not out_of_time and done + len(in_flight) < trials:
                if local_search and asked % LOCAL_SEARCH_SHARE != LOCAL_SEARCH_SHARE - 1:
                    _enqueue_step(study, space, quality, costs, table or [])
                asked += 1
                trial = study.ask()
                params = space.suggest(trial)
                pool.submit(trial.number, params)
                in_flight[trial.number] = trial
            if not in_flight:
                break
            number, metrics = pool.next_done()
            trial = in_flight.pop(number)
            if "error" in metrics:
                trial.set_user_attr("error", metrics["error"])
                study.tell(trial, state=TrialState.FAIL)
            else:
                q = metrics[quality]
                metrics = dict(metrics, drop=reference - q)
                for k, v in metrics.items():
                    trial.set_user_attr(k, v)
                study.tell(trial, [q] + [float(metrics[c]) for c in costs])
                done += 1
            if progress:
                progress(_progress_state(study, quality, costs, done, trials))
    finally:
        for number in in_flight:  # interrupted: told FAIL so the storage holds no RUNNING trial
            try:
                study.tell(number, state=TrialState.FAIL)
            except (RuntimeError, ValueError, optuna.exceptions.OptunaError):
                pass
        pool.close()


def _trial_params(t) -> dict:
    return t.params or t.system_attrs.get("fixed_params", {})


def _enqueue_step(study, space, quality: str, costs: list[str], table: list) -> bool:
    """Enqueue the local search's next step (none while seeds wait; False when it has none)."""
    from optuna.trial import TrialState

    from . import descent
    from .results import pareto, records

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    front = pareto(records(study, quality, costs), quality, costs)
    point = descent.propose(space, front, {descent.point_key(_trial_params(t)) for t in trials}, costs, table)
    if point is None:
        return False
    study.enqueue_trial(point)
    return True


def _progress_state(study, quality: str, costs: list[str], done: int, total: int) -> dict:
    from .results import records, pareto

    recs = records(study, quality, costs)
    feasible = [r for r in recs if r.feasible]
    best = min(feasible, key=lambda r: (r.values[costs[0]], -r.values[quality]), default=None)
    return {"done": done, "total": total, "front": len(pareto(recs, quality, costs)),
            "best": None if best is None else f"{costs[0]} {best.values[costs[0]]:,.6g}, {quality} "
                                              f"{best.values[quality]:.4f}"}


__all__ = ["STUDY_NAME", "storage_for", "open_study", "fail_stale", "finished", "run"]
