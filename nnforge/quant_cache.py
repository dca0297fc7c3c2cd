"""On-disk cache of calibration statistics and quantized graphs, so no run repeats the work of another.

``nnforge quantize`` and then ``nnforge compile`` on the same model and data, a ``simulate`` after a
``compile``, or one model under several configs: each would calibrate (trace every layer over the
data) and quantize (choose every weight threshold) again.  Two kinds of entries, next to the build
cache (``$XDG_CACHE_HOME/nnforge``, ``executor.default_cache_dir``):

* ``calib/<key>.npz``: the statistics of every tensor (``TensorStats.state``), keyed by the model
  (its fingerprint: ONNX bytes and input shapes), the layer outputs traced, the calibration data
  (every byte), the batch size (it decides how histograms re-bin) and the code;
* ``quantized/<key>.npz``: the quantized graph (``qgraph_io.to_files``) with its decisions, keyed
  by all of the above plus the quantization and compression configs.

"The code" is a digest of every source file of ``nnforge.compiler`` and of the ``nnforge``
facade modules that calibrate and quantize, so any change to them makes new keys; an entry is
checked against its digest before it is read (``cache_entry``) and a damaged one is ignored.  A
miss, an unwritable cache or a damaged entry only costs the work; results never depend on it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from nnforge.compiler import cache_entry
from nnforge.compiler.lower import executor
from nnforge.compiler.quant.calibration import ActivationStats, TensorStats
from nnforge.compiler.qgraph_io import narrowed

_VERSION = b"nnforge-quant-cache/1"


@functools.lru_cache(maxsize=None)
def code_digest() -> bytes:
    """A digest of the sources that decide statistics and quantized graphs."""
    import nnforge.compiler

    here = Path(__file__).parent
    files = sorted(Path(nnforge.compiler.__file__).parent.rglob("*.py"))
    files += [here / name for name in ("quantized.py", "model.py", "quant_cache.py")]
    h = hashlib.sha256(_VERSION)
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.digest()


def data_digest(arrays: list[np.ndarray]) -> bytes:
    """A digest of every array's dtype, shape and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.digest()


def stats_key(model, layers, arrays: list[np.ndarray], batch_size: int) -> str:
    """The key of the statistics of ``layers`` of ``model`` over ``arrays``."""
    h = hashlib.sha256(code_digest())
    h.update(model.fingerprint)
    h.update(json.dumps([[l.name, l.op] for l in layers]).encode())
    h.update(data_digest(arrays))
    h.update(str(int(batch_size)).encode())
    return h.hexdigest()[:40]


def graph_key(stats_part: str, config, compress, fixed_scales) -> str:
    """The key of a quantized graph: its statistics' key plus every setting of the quantizer."""
    doc = {"stats": stats_part, "config": config.to_dict(),
           "compress": None if compress is None else compress.to_dict(),
           "fixed_scales": {k: float(v).hex() for k, v in sorted((fixed_scales or {}).items())}}
    return hashlib.sha256(code_digest() + json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()[:40]


def _path(kind: str, key: str) -> Path:
    return executor.default_cache_dir() / kind / f"{key}.npz"


def _read(kind: str, key: str) -> dict[str, np.ndarray] | None:
    path = _path(kind, key)
    if not cache_entry.valid(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001  (a damaged entry is a miss)
        return None


def _write(kind: str, key: str, arrays: dict[str, np.ndarray]) -> None:
    path = _path(kind, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    except OSError:  # no writable cache: nothing is kept
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        cache_entry.install(tmp, path)
    except OSError:
        pass
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json(doc) -> np.ndarray:
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


def _unjson(arr: np.ndarray):
    return json.loads(bytes(arr).decode())


# -- statistics --------------------------------------------------------------------------------------

def load_stats(key: str) -> dict[str, TensorStats] | None:
    """The cached statistics by tensor name, or None."""
    arrays = _read("calib", key)
    if arrays is None:
        return None
    try:
        names = _unjson(arrays["names"])
        out: dict[str, TensorStats] = {}
        for i, name in enumerate(names):
            state = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{i}/")}
            out[name] = ActivationStats.from_state(state)
        return out
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def save_stats(key: str, stats: dict[str, TensorStats]) -> None:
    arrays = {"names": _json(list(stats))}
    for i, st in enumerate(stats.values()):
        arrays.update({f"{i}/{k}": v for k, v in st.state().items()})
    _write("calib", key, arrays)


# -- quantized graphs --------------------------------------------------------------------------------

def load_graph(key: str):
    """The cached ``(QGraph, warnings)``: the graph with its decisions, and the messages of the
    UserWarnings quantizing it raised (to raise again); or None."""
    from nnforge.compiler import qgraph_io

    arrays = _read("quantized", key)
    if arrays is None:
        return None
    try:
        meta = _unjson(arrays.pop("meta"))
        data = {k: (v.astype(np.dtype(meta["dtypes"][k])) if k in meta["dtypes"] else v) for k, v in arrays.items()}
        graph = qgraph_io.from_files(meta["doc"], data)
        graph.decisions = list(meta["decisions"])
        return graph, [str(w) for w in meta.get("warnings", [])]
    except Exception:  # noqa: BLE001  (a damaged or foreign entry is a miss)
        return None


def save_graph(key: str, graph, warnings: list[str] = ()) -> None:
    from nnforge.compiler import qgraph_io

    doc, arrays = qgraph_io.to_files(graph)
    small = {k: narrowed(np.asarray(v)) for k, v in arrays.items()}
    dtypes = {k: np.asarray(v).dtype.str for k, v in arrays.items() if small[k].dtype != np.asarray(v).dtype}
    meta = {"doc": doc, "decisions": list(graph.decisions), "dtypes": dtypes, "warnings": [str(w) for w in warnings]}
    try:  # the JSON form of the graph holds floats as hex strings, so it round-trips exactly
        small["meta"] = np.frombuffer(json.dumps(meta, default=_default).encode(), dtype=np.uint8)
    except (TypeError, ValueError):  # an attribute JSON cannot hold: not cached
        return
    _write("quantized", key, small)


def _default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return {"float": float(value).hex()}
    raise TypeError(f"cannot store {type(value).__name__} in a cache entry")


__all__ = ["code_digest", "data_digest", "graph_key", "load_graph", "load_stats", "save_graph", "save_stats",
           "stats_key"]
