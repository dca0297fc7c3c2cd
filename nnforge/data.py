"""Reading model inputs and labels from ``.npz`` / ``.npy`` files: the one loader every command uses.

Formats (also in the README):

* ``.npy``: one array, the model's single input, batch first.
* ``.npz``: key ``x`` for a single-input model, or one key per model input name; an
  optional ``y`` holds integer class labels, one per sample.

``load_inputs`` reads every member it uses eagerly, inside its own error handling (``np.load``
of an ``.npz`` is lazy: a corrupt or pickled member would otherwise fail later, anywhere), and
checks, naming the file and key, what it found and what it expected:

* inputs: a real floating dtype (float16/32/64, converted to the model's dtype), at least one
  dimension, at least one sample, the model's shape apart from the batch dimension, finite
  values, the same number of samples in every input;
* labels ``y``: one dimension, one label per sample, integral non-negative values (an integer
  dtype, or floats that are whole numbers).

Samples of another rank but the same number of values as the input (8x8 images for a
64-wide MLP) are reshaped, with a warning.  Pickled members are refused.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from nnforge.compiler.errors import InputError, shown
from nnforge.compiler.frontend.onnx_frontend import TensorSpec

LABELS = "y"


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _read_all(path: Path, specs: list[TensorSpec]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays of ``path`` that the model uses, read now, by key; the keys chosen for the inputs."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as err:
        raise InputError(f"data file {str(path)!r} must be readable, not {err.strerror or err}") from None
    if not (magic.startswith(b"\x93NUMPY") or magic.startswith(b"PK")):  # np.load would try pickle next
        raise InputError(f"data file {str(path)!r} must be a .npy or .npz file written by numpy, not one that "
                         f"starts with {magic!r}")
    if magic.startswith(b"\x93NUMPY"):
        with open(path, "rb") as f:
            _check_header(f, path.stat().st_size, f"data file {str(path)!r}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as err:
        raise InputError(f"data file {str(path)!r} must be a .npy or .npz file written by numpy, "
                         f"not unreadable ({_reason(err)})") from None
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise InputError(f"data file {str(path)!r} must be an .npz with one key per input "
                             f"({', '.join(repr(s.name) for s in specs)}), not a .npy (one array)")
        return {"": loaded}, [""]  # "": the .npy's one array
    if not hasattr(loaded, "files"):
        raise InputError(f"data file {str(path)!r} must hold arrays (.npy or .npz), not a pickle")
    with loaded:
        keys = list(loaded.files)
        names = [s.name for s in specs]
        if all(n in keys for n in names):
            chosen = names
        elif len(specs) == 1 and "x" in keys:
            chosen = ["x"]
        else:
            expected = ", ".join(repr(n) for n in names) if len(names) > 1 else f"'x' or {names[0]!r}"
            found = ", ".join(repr(k) for k in keys[:8]) + (", ..." if len(keys) > 8 else "") or "none"
            raise InputError(f"data file {str(path)!r} must have the key(s) {expected}, not only {found}")
        out = {}
        for key in chosen + ([LABELS] if LABELS in keys else []):
            try:
                names = loaded.zip.namelist()
                info = loaded.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)
                with loaded.zip.open(info) as member:
                    _check_header(member, info.file_size, f"key {key!r} of data file {str(path)!r}")
                out[key] = loaded[key]  # members are read lazily: read each one here
            except InputError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, SyntaxError) as err:
                raise InputError(f"key {key!r} of data file {str(path)!r} must be a numpy array without pickled "
                                 f"objects, not unreadable ({_reason(err)})") from None
            except Exception as err:  # noqa: BLE001 - numpy's header parser raises many types
                raise InputError(f"key {key!r} of data file {str(path)!r} must be a well-formed numpy array, "
                                 f"not unreadable ({type(err).__name__})") from None
    return out, chosen


def _check_header(f, size: int, where: str) -> None:
    """InputError unless the .npy header at ``f`` declares no more data than the ``size`` bytes
    hold: a forged header of a tiny file must not make numpy allocate terabytes."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            return  # a newer format: numpy's own checks apply
        shape, _, dtype = read(f)
        header = f.tell()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged header raises many types
        raise InputError(f"{where} must be a numpy array, not one with a damaged header ({_reason(err)})") from None
    if dtype.hasobject:
        raise InputError(f"{where} must be a numpy array without pickled objects, not {dtype}")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > size - header:
        raise InputError(f"{where} must hold the {_fmt(shape)} {dtype} values its header declares "
                         f"({need:,} bytes), not {max(size - header, 0):,} bytes (truncated or forged)")


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "pickle" in text.lower():
        return "it holds pickled objects, which nnforge never loads"
    return text[:160]


def load_inputs(path: str | Path, specs: list[TensorSpec]) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The arrays for each model input (in order) and the labels, if the file has ``y``; every
    check in the module docstring is done here, so later stages get well-formed data."""
    path = Path(path)
    try:
        is_file = path.is_file()
        what = "a directory" if path.is_dir() else ("not a regular file" if path.exists() else "no such file")
    except OSError as err:  # a name too long, a loop of links
        raise InputError(f"data file must be an existing .npy or .npz file, not {shown(str(path))} "
                         f"({err.strerror or err})") from None
    if not is_file:
        raise InputError(f"data file must be an existing .npy or .npz file, not {str(path)!r} ({what})")
    members, chosen = _read_all(path, specs)
    arrays = [_check_input(members[key], key, spec, path) for key, spec in zip(chosen, specs)]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        counts = ", ".join(f"{k!r} {len(a)}" for k, a in zip(chosen, arrays))
        raise InputError(f"every input in data file {str(path)!r} must have the same number of samples, not {counts}")
    labels = _check_labels(members[LABELS], n, path) if LABELS in members else None
    return arrays, labels


def _check_input(arr: np.ndarray, key: str, spec: TensorSpec, path: Path) -> np.ndarray:
    where = f"key {key!r} of data file {str(path)!r}" if key else f"the array in data file {str(path)!r}"
    if arr.dtype.kind != "f" or arr.dtype.fields is not None:
        raise InputError(f"{where} must be a float array (the model's input {spec.name!r} is {spec.dtype}), "
                         f"not {arr.dtype}")
    if arr.ndim == 0:
        raise InputError(f"{where} must be an array of samples {_fmt(spec.shape)} (batch first), not a 0-d scalar")
    if len(arr) == 0:
        raise InputError(f"{where} must hold at least one sample, not 0 (shape {_fmt(arr.shape)})")
    arr = _fit(arr, spec, path)
    want = spec.shape[1:]
    if arr.ndim != len(spec.shape) or any(isinstance(d, int) and d != a for d, a in zip(want, arr.shape[1:])):
        raise InputError(f"{where} must have shape {_fmt(spec.shape)} for input {spec.name!r}, not {_fmt(arr.shape)}")
    with np.errstate(over="ignore"):  # float64 values beyond float32 become inf: refused below
        arr = arr.astype(spec.dtype, copy=False) if spec.dtype.startswith("float") else arr
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{where} must be finite in {arr.dtype}, not NaN/Inf or beyond its range ({bad} values)")
    return arr


def _check_labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    where = f"labels {LABELS!r} in data file {str(path)!r}"
    integral = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and labels.ndim == 1
                                             and bool(np.all(np.isfinite(labels)))
                                             and bool(np.all(labels == np.round(labels))))
    if labels.dtype.fields is not None or labels.ndim != 1 or not integral or len(labels) != n:
        raise InputError(f"{where} must be a 1-D array of integer class labels, one per sample ({n}), "
                         f"not {labels.dtype} of shape {_fmt(labels.shape)}"
                         + ("" if integral or labels.dtype.kind != "f" else " with fractional or non-finite values"))
    if labels.size and labels.min() < 0:
        raise InputError(f"{where} must be non-negative class indices, not {labels.min()}")
    if labels.size and labels.max() >= 2**31:
        raise InputError(f"{where} must be class indices below 2^31, not {labels.max():g}")
    return labels.astype(np.int64, copy=False)


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
