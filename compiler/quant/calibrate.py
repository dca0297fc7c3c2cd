"""Calibration runs: the float model's layer outputs over the calibration data, a batch at a time,
reduced to the statistics the quantizer reads (``calibration.py`` holds the statistics and the
threshold methods).

The float model is run by a ``Tracer`` the caller passes in (the facade's TVM build of the traced
module, ``nnforge/quantized.py: FloatTrace``), so this module runs nothing itself: it batches, checks
the batch dimension, and folds every batch into ``ActivationStats``.

    stats = collect_stats([s.name for s in model.inputs], arrays, batch_size, FloatTrace(model, layers))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..frontend.onnx_frontend import BATCH, TensorSpec
from ..spelling import option
from .calibration import ActivationStats, TensorStats

# a batch of model inputs -> every traced layer's float output, by layer name
Tracer = Callable[[list[np.ndarray]], dict[str, np.ndarray]]
Progress = Callable[[int, int], None] | None

# weighted layers whose float input the LSQ refinement of compression reads
WEIGHTED_OPS = ("conv2d", "dense")


def fixed_batch(inputs: Sequence[TensorSpec]) -> int | None:
    """The model's fixed batch dimension (an ONNX model exported at batch 1), or None when free."""
    b = inputs[0].shape[0]
    return b if isinstance(b, int) else None


def batch_size_for(inputs: Sequence[TensorSpec], requested: int) -> int:
    """A model with a fixed batch dimension B runs in chunks of exactly B samples."""
    fixed = fixed_batch(inputs)
    return requested if fixed is None else fixed


def batched_specs(inputs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """The model's input specs with a free batch dimension (what a dataset is checked against)."""
    return [TensorSpec(s.name, (BATCH,) + s.shape[1:], s.dtype) for s in inputs]


def batches(arrays: list[np.ndarray], batch_size: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(start, [a[start:start + batch_size] for a in arrays])`` over the whole dataset."""
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        yield start, [a[start : start + batch_size] for a in arrays]


def check_divisible(arrays: list[np.ndarray], batch_size: int, inputs: Sequence[TensorSpec]) -> None:
    """A model with a fixed batch dimension takes a whole number of its batches."""
    if fixed_batch(inputs) is not None and len(arrays[0]) % batch_size:
        raise InputError(
            f"the model's batch dimension is fixed at {batch_size}, so the number of samples must be "
            f"a multiple of {batch_size}, not {len(arrays[0])}; re-import with {option('input_shape')} to change it"
        )


def collect_stats(input_names: Sequence[str], arrays: list[np.ndarray], batch_size: int, trace: Tracer,
                  progress: Progress = None) -> dict[str, TensorStats]:
    """Statistics of every model input and every traced layer output over ``arrays`` (checked
    model inputs, a whole number of batches), by tensor name."""
    n = len(arrays[0])
    stats: dict[str, TensorStats] = {}
    for start, batch in batches(arrays, batch_size):
        values = dict(zip(input_names, batch))
        values.update(trace(batch))
        for name, value in values.items():
            try:
                stats.setdefault(name, ActivationStats()).update(value)
            except ValueError as err:
                raise InputError(f"calibration tensor {name!r}: {err}") from None
        if progress:
            progress(min(start + batch_size, n), n)
    return stats


def collect_tensors(input_names: Sequence[str], arrays: list[np.ndarray], batch_size: int, trace: Tracer,
                    needed: set[str]) -> dict[str, np.ndarray]:
    """The model inputs and the traced tensors in ``needed`` over ``arrays``, whole, by name."""
    chunks: dict[str, list] = {}
    for _, batch in batches(arrays, batch_size):
        inputs = dict(zip(input_names, batch))
        values = inputs | {k: v for k, v in trace(batch).items() if k in needed}
        for k, v in values.items():
            chunks.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in chunks.items()}


__all__ = ["Progress", "Tracer", "WEIGHTED_OPS", "batch_size_for", "batched_specs", "batches", "check_divisible",
           "collect_stats", "collect_tensors", "fixed_batch"]
