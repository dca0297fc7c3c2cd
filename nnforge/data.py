"""Reading model inputs and labels from ``.npz`` / ``.npy`` files.

Formats (also in the README):

* ``.npy``: one array, the model's single input, batch first.
* ``.npz``: key ``x`` for a single-input model, or one key per model input name; an
  optional ``y`` holds integer class labels, one per sample.

Samples of another rank but the same number of values as the input (8x8 images for a
64-wide MLP) are reshaped, with a warning.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.onnx_frontend import TensorSpec


def load_inputs(path: str | Path, specs: list[TensorSpec]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The arrays for each model input (in order) and the labels, if the file has ``y``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"data file must exist, not {str(path)!r} (no such file)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{str(path)!r} must be a .npy or .npz file written by numpy: {err}") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise InputError(
                f"a .npy file holds one array, but the model takes {len(specs)} inputs "
                f"({', '.join(s.name for s in specs)}); use an .npz with one key per input"
            )
        arrays, labels = [loaded], None
    else:
        with loaded:
            keys = list(loaded.keys())
            names = [s.name for s in specs]
            if all(n in keys for n in names):
                arrays = [loaded[n] for n in names]
            elif len(specs) == 1 and "x" in keys:
                arrays = [loaded["x"]]
            else:
                expected = "'x'" + (f" or {names[0]!r}" if len(names) == 1 else "")
                if len(names) > 1:
                    expected = ", ".join(repr(n) for n in names)
                raise InputError(
                    f"{str(path)!r} must have the key(s) {expected}, not {keys}"
                )
            labels = loaded["y"] if "y" in keys else None
    for spec, arr in zip(specs, arrays):
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise InputError(f"input {spec.name!r} in {str(path)!r} must be finite, not NaN/Inf ({bad} values)")
    arrays = [_fit(arr, spec, path) for spec, arr in zip(specs, arrays)]
    if labels is not None:
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(arrays[0]):
            raise InputError(
                f"labels 'y' in {str(path)!r} must be a 1-D integer array with one label per "
                f"sample ({len(arrays[0])}), not {labels.dtype} of shape {list(labels.shape)}"
            )
    return arrays, labels


def _fit(arr: np.ndarray, spec: TensorSpec, path: Path) -> np.ndarray:
    """Samples of another rank but the same size as the input (8x8 images for a 64-wide MLP)
    are reshaped, with a warning; any other shape is left for the shape check to reject."""
    want = spec.shape[1:]
    if arr.ndim < 1 or len(arr.shape) == len(spec.shape) or any(isinstance(d, str) for d in want):
        return arr
    if int(np.prod(arr.shape[1:])) != int(np.prod(want)):
        return arr
    warnings.warn(f"{path.name}: reshaped input {spec.name!r} samples from {list(arr.shape[1:])} "
                  f"to {list(want)} (same number of values)")
    return arr.reshape((len(arr),) + tuple(want))


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of samples whose arg-max over the last axis equals the label."""
    pred = logits.reshape(len(labels), -1).argmax(axis=1)
    return float(np.mean(pred == labels))
