"""Shared fixtures.  Builds are cached in one temporary folder per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ZOO = ROOT / "tests" / "models"
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

# Keep the build cache out of the user's home; one folder per session (and xdist worker).
_cache = tempfile.mkdtemp(prefix="nnforge-test-cache-")
os.environ["XDG_CACHE_HOME"] = _cache


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def ort_run(model: onnx.ModelProto | str | Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The float oracle: onnxruntime on the CPU."""
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
