"""Build a Relax module for llvm and run it in the Relax VM, with an on-disk build cache.

One of the few modules that import tvm.  Modules are compiled by ``cpu_schedule.build`` (a
vectorizing schedule for this machine's CPU).  The cache key is the caller's fingerprint of the
model (ONNX bytes, input shapes, pipeline version) plus the TVM and nnforge versions and the
llvm target (its -mcpu makes a library unportable), so an unchanged model is compiled once and
later runs load the shared library.  ``call`` runs any function of a Relax VM on numpy arrays
(the facade's integer model, the BYOC mixed executor) and ``build_plain`` is TVM's default llvm
build (the BYOC host module), so no other module needs TVM's runtime API.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from .. import cache_entry
from . import cpu_schedule
from ..errors import InputError
from ..frontend.onnx_frontend import TensorSpec

_VERSION = "nnforge-0.1.0/float-2"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnforge"


def cache_key(fingerprint: bytes) -> str:
    h = hashlib.sha256()
    h.update(_VERSION.encode())
    h.update(tvm.__version__.encode())
    h.update(str(cpu_schedule.cpu_target()).encode())
    h.update(Path(cpu_schedule.__file__).read_bytes())  # a changed schedule is a different build
    h.update(fingerprint)
    return h.hexdigest()[:32]


class CompiledModule:
    """A Relax module built for the CPU, callable on numpy arrays."""

    def __init__(self, lib, inputs: list[TensorSpec], output_names: list[str]):
        self._vm = relax.VirtualMachine(lib, tvm.cpu())
        self.inputs = inputs
        self.output_names = output_names

    @property
    def vm(self):
        """The Relax VM holding the build: ``call(module.vm, "trace", arrays)`` runs another function."""
        return self._vm

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return call(self._vm, "main", arrays)


def call(vm, fname: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Run function ``fname`` of a Relax VM on numpy arrays; its results as a flat list of arrays."""
    return to_numpy(vm[fname](*(tvm.runtime.tensor(np.require(a, requirements="C")) for a in arrays)))  # rank 0 stays rank 0


def to_numpy(value) -> list[np.ndarray]:
    """A VM result (a tensor, or nested tuples of them) as a flat list of numpy arrays."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out: list[np.ndarray] = []
    for item in value:
        out.extend(to_numpy(item))
    return out


def build_plain(mod: tvm.IRModule):
    """``mod`` compiled by TVM's default llvm pipeline (no nnforge schedule, no cache) in a Relax VM."""
    return relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())


def build(
    mod: tvm.IRModule,
    inputs: list[TensorSpec],
    output_names: list[str],
    fingerprint: bytes | None = None,
    cache_dir: Path | None = None,
) -> CompiledModule:
    """Compile ``mod`` with ``cpu_schedule.build``, reusing a cached library when the fingerprint matches."""
    if fingerprint is None:
        return CompiledModule(cpu_schedule.build(mod), inputs, output_names)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    # the module's structure is part of the key, so a changed frontend never reuses a stale build
    fingerprint = fingerprint + str(tvm_ffi.structural_hash(mod)).encode()
    path = cache_dir / f"{cache_key(fingerprint)}.so"
    # the digest is checked before dlopen: a truncated library would kill the process (SIGBUS)
    if cache_entry.valid(path):
        try:
            return CompiledModule(tvm.runtime.load_module(str(path)), inputs, output_names)
        except Exception:  # a foreign file with a matching digest: rebuild it  # noqa: BLE001
            pass
    if path.exists():
        cache_entry.discard(path)
    executable = cpu_schedule.build(mod)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
        os.close(fd)
    except OSError:  # no writable cache: run from a private copy
        with tempfile.TemporaryDirectory() as private:
            lib = Path(private) / "lib.so"
            executable.export_library(str(lib))
            return CompiledModule(tvm.runtime.load_module(str(lib)), inputs, output_names)
    try:
        executable.export_library(tmp)
        cache_entry.install(tmp, path)  # digest, then an atomic rename: never half a library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return CompiledModule(tvm.runtime.load_module(str(path)), inputs, output_names)


def check_inputs(specs: list[TensorSpec], arrays: list[np.ndarray], allow_empty: bool = False) -> list[np.ndarray]:
    """Check shapes and dtypes against the model's inputs; cast float64 data to float32.

    Zero samples are refused (a dataset run, calibration or simulation has nothing to do),
    except with ``allow_empty`` (one direct call of the model on a zero-size batch).  A single-input
    model also takes one bare array instead of a list of one."""
    if isinstance(arrays, np.ndarray):  # not a list of 450 rows: the one input's array
        if len(specs) != 1:
            raise InputError(f"the inputs must be a list of {len(specs)} arrays, one per input "
                             f"({', '.join(s.name for s in specs)}), not one array")
        arrays = [arrays]
    if len(arrays) != len(specs):
        raise InputError(
            f"the model takes {len(specs)} input(s) ({', '.join(s.name for s in specs)}), "
            f"not {len(arrays)}"
        )
    out = []
    for spec, arr in zip(specs, arrays):
        arr = np.asarray(arr)
        if arr.dtype == np.float64 and spec.dtype == "float32":
            arr = arr.astype(np.float32)
        if str(arr.dtype) != spec.dtype:
            raise InputError(f"input {spec.name!r} must have dtype {spec.dtype}, not {arr.dtype}")
        if arr.ndim != len(spec.shape) or any(
            isinstance(d, int) and d != a for d, a in zip(spec.shape, arr.shape)
        ):
            raise InputError(
                f"input {spec.name!r} must have shape {_fmt(spec.shape)}, not {_fmt(arr.shape)}"
            )
        if arr.ndim and len(arr) == 0 and not allow_empty:  # nothing to run: every later stage would fail on it
            raise InputError(f"input {spec.name!r} must hold at least one sample, not 0 (shape {_fmt(arr.shape)})")
        out.append(arr)
    return out


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
