"""nnforge explore on a local Ray cluster of 2 workers: the same trials land in the one storage,
and a trial evaluated on a worker measures what the driver measures for the same point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnforge
from nnforge.explore.evaluate import Evaluator

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray start takes seconds

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="session")
def cluster():
    """One local cluster for the session: ``ray.init(num_cpus=2)`` (explore leaves a cluster it
    did not start running)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_ray_two_workers(cluster, tmp_path):
    import optuna

    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    test, calib = np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calib.npz")
    x, y = test["x"].reshape(len(test["x"]), -1)[:128], test["y"][:128]
    c = calib["x"].reshape(len(calib["x"]), -1)[:128]
    out = tmp_path / "out"
    result = nnforge.explore(model, [c], [x], y, trials=4, seed=2, out_dir=out, ray="auto", workers=2,
                             sensitivity={"prune": (0.9,)}, uniform=())
    assert len(result.trials) == 4
    study = optuna.load_study(study_name="nnforge-explore", storage=f"sqlite:///{out / 'study.db'}")
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4
    assert "sensitivity" in study.user_attrs  # the sensitivity points ran on the workers too
    # both actors worked: each holds its own evaluator (one model load per worker)
    # and a worker's numbers are the driver's for the same point
    local = Evaluator(model, [c], [x], y, ["bytes"])
    for rec in result.trials[:2]:
        m = local.evaluate(rec.params)
        assert m["accuracy"] == rec.values["accuracy"] and m["bytes"] == rec.values["bytes"]
    assert ray.is_initialized()  # the session's cluster is left running
