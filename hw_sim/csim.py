"""C simulation: build the generated HLS C++ with g++ and run it from Python through ctypes.

``build(src_dir, top)`` compiles ``src_dir/<top>.cpp`` (which includes every other generated
header) into a shared library, cached by a hash of the sources, the flags and the compiler's
version.  ``CSim`` calls the C ABI the hls backend generates (``<top>_csim``: n samples of int64
codes in, int64 codes out, optionally every layer's output) on numpy buffers.

The generated code's ``>>`` of negative int64 values relies on gcc's arithmetic right shift
(implementation-defined before C++20), so the compiler is g++ and the standard C++17.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler import cache_entry
from nnforge.compiler.errors import NNForgeError

FLAGS = ("-std=c++17", "-shared", "-fPIC")
_VERSION = "nnforge-csim-1"


class CSimError(NNForgeError):
    """g++ is missing, the generated sources do not compile, or the C ABI is not as expected."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnforge" / "csim"


def cxx_compiler() -> str:
    """The path of g++; CSimError when it is not on PATH."""
    cxx = shutil.which("g++")
    if cxx is None:
        raise CSimError("C simulation needs g++ (>= 9) on PATH; install it (Debian: apt-get install g++)")
    return cxx


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    except (OSError, subprocess.CalledProcessError) as err:
        raise CSimError(f"g++ at {cxx} does not run: {err}") from err


@functools.lru_cache(maxsize=None)
def native_target(cxx: str) -> tuple[tuple[str, ...], str]:
    """(``("-march=native",)``, a digest of the instruction set it selects) where ``cxx`` takes the
    flag, else ((), "").  The digest (of the predefined macros: ``__AVX2__``, ``__AVX512F__``, ...)
    goes into the cache key, so that a cache shared between machines never hands one a library
    built for instructions it lacks."""
    try:
        proc = subprocess.run([cxx, "-march=native", "-E", "-dM", "-x", "c++", os.devnull], capture_output=True,
                              text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return (), ""
    if proc.returncode != 0:
        return (), ""
    macros = "\n".join(sorted(proc.stdout.splitlines()))
    return ("-march=native",), hashlib.sha256(macros.encode()).hexdigest()[:16]


def source_hash(src_dir: Path, top: str, flags: tuple[str, ...], version: str) -> str:
    h = hashlib.sha256()
    for part in (_VERSION, version, top, *flags):
        h.update(part.encode() + b"\0")
    files = sorted(p for p in src_dir.rglob("*") if p.is_file())
    for p in files:
        h.update(p.relative_to(src_dir).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    manifest = src_dir.parent / "csim.json"  # travels with the library (node names for trace())
    if manifest.is_file():
        h.update(b"csim.json\0" + manifest.read_bytes())
    return h.hexdigest()[:32]


def _headers_digest(folders: tuple[str | Path, ...]) -> str:
    """A digest of the header files under ``folders`` (vendor headers change between wheels)."""
    if not folders:
        return ""
    h = hashlib.sha256()
    for d in folders:
        for p in sorted(Path(d).rglob("*.h")):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build(src_dir: Path, top: str, build_dir: Path | None = None, *, opt: str = "-O3",
          defines: tuple[str, ...] = (), system_includes: tuple[str | Path, ...] = (), native: bool = True) -> Path:
    """Compile ``src_dir/<top>.cpp`` into a shared library; its path (reused when cached).

    ``opt`` is the optimisation flag (``-O1`` builds faster, for tests; ``-O3`` vectorises the
    kernels' inner loops).  ``native``: for this machine's instruction set (``-march=native`` where
    g++ takes it: AVX2/AVX-512 lanes and 64-bit vector multiplies for the requantisation; 2x the
    LeNet-5's images/s over the x86-64 baseline's SSE2, same codes), cached per instruction set
    (``native_target``).  ``defines`` are macros (``NNF_USE_AP_INT``: the vendor's ap_int, see
    ``ap_types.py``), ``system_includes`` folders for ``-isystem`` (the ap_types headers); both
    are part of the cache key (a header folder by its path and the content of its files).  Next to the library
    goes a copy of the project's ``csim.json`` (``<lib>.json``), which ``CSim`` reads for the
    node names and shapes of ``trace``."""
    src_dir = Path(src_dir)
    main = src_dir / f"{top}.cpp"
    if not main.is_file():
        raise CSimError(f"the C sources must contain {top}.cpp, the top function's file; {src_dir} does not")
    cxx = cxx_compiler()
    march, isa = native_target(cxx) if native else ((), "")
    flags = (*FLAGS, opt, *march, *(f"-D{d}" for d in defines))
    for d in system_includes:
        flags += ("-isystem", str(Path(d).resolve()))
    key = source_hash(src_dir, top, flags, _compiler_version(cxx) + isa + _headers_digest(system_includes))
    out_dir = Path(build_dir) if build_dir is not None else cache_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / f"lib{top}-{key}.so"
    manifest = src_dir.parent / "csim.json"
    trace_doc = so.with_suffix(".json")
    # both checked before use: a truncated library kills the process in dlopen (SIGBUS)
    if cache_entry.valid(so) and (not manifest.is_file() or cache_entry.valid(trace_doc)):
        return so
    cache_entry.discard(so)
    cache_entry.discard(trace_doc)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cxx, *flags, "-I", str(src_dir), str(main), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
            raise CSimError(f"g++ could not compile the generated C++ ({main}), exit {proc.returncode}:\n{tail}")
        if manifest.is_file():
            fd, doc_tmp = tempfile.mkstemp(suffix=".json", dir=out_dir)
            os.close(fd)
            shutil.copyfile(manifest, doc_tmp)
            cache_entry.install(doc_tmp, trace_doc)
        cache_entry.install(tmp, so)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return so


def _i64p(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))


class CSim:
    """The compiled network: ``run`` gives output codes, ``trace`` every layer's codes.

    ``nodes`` lists (name, per-sample shape) in trace order; by default it comes from the
    ``csim.json`` copied next to the library by ``build``."""

    def __init__(self, so_path: str | Path, top: str, in_size: int, out_size: int, trace_size: int,
                 nodes: list[tuple[str, tuple[int, ...]]] | None = None, weights_dir: str | Path | None = None):
        self.so_path = Path(so_path)
        self.top = top
        self.in_size, self.out_size, self.trace_size = int(in_size), int(out_size), int(trace_size)
        self.out_shape: tuple[int, ...] = (self.out_size,)
        if nodes is None:
            nodes, out_shape = self._manifest_nodes()
            if out_shape is not None:
                self.out_shape = out_shape
        self.nodes = [(str(n), tuple(int(d) for d in s)) for n, s in nodes]
        try:
            self._lib = ctypes.CDLL(str(self.so_path))
            self._run = getattr(self._lib, f"{top}_csim")
            size_fn = getattr(self._lib, f"{top}_trace_size")
        except (OSError, AttributeError) as err:
            raise CSimError(f"{self.so_path} must be a C simulation library exporting {top}_csim: {err}") from err
        self._run.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64, ctypes.POINTER(ctypes.c_int64),
                              ctypes.POINTER(ctypes.c_int64)]
        self._run.restype = ctypes.c_int
        size_fn.restype = ctypes.c_int64
        if size_fn() != self.trace_size:
            raise CSimError(f"trace size of {self.so_path.name} must be {self.trace_size}, not {size_fn()}")
        if self.nodes and sum(int(np.prod(s, dtype=np.int64)) for _, s in self.nodes) != self.trace_size:
            raise CSimError(f"the node shapes must add up to the trace size {self.trace_size}")
        if weights_dir is not None:
            self.load_weights(weights_dir)

    def load_weights(self, directory: str | Path) -> None:
        """Load the weights the file form keeps in binary files (``<top>_load_weights``): once per
        library, before the first sample; every call replaces them (a library is shared by every
        project with the same sources, and those have the same weights: their checksums are in
        the sources)."""
        fn = getattr(self._lib, f"{self.top}_load_weights", None)
        if fn is None:
            raise CSimError(f"{self.so_path} must export {self.top}_load_weights to run with weight files")
        fn.argtypes = [ctypes.c_char_p]
        fn.restype = ctypes.c_int
        rc = fn(os.fsencode(str(directory)))
        if rc != 0:
            what = {1: "is missing or unreadable", 2: "has the wrong size", 3: "has the wrong checksum"}.get(rc % 8, "failed")
            raise CSimError(f"weight array {rc // 8} of {directory}/weights.json {what} (code {rc}); "
                            f"recompile the project or restore its weights/ files")

    def _manifest_nodes(self) -> tuple[list, tuple[int, ...] | None]:
        path = self.so_path.with_suffix(".json")
        if not path.is_file():
            return [], None
        doc: dict[str, Any] = json.loads(path.read_text())
        return [(n["name"], n["shape"]) for n in doc["nodes"]], tuple(doc["output"]["shape"])

    def _call(self, codes: np.ndarray, want_trace: bool) -> tuple[np.ndarray, np.ndarray | None]:
        codes = np.asarray(codes)
        n = codes.shape[0] if codes.ndim >= 1 else -1
        if n < 0 or codes.size != n * self.in_size:
            raise CSimError(f"input codes must be [n, ...] with {self.in_size} codes per sample, not shape {codes.shape}")
        x = np.ascontiguousarray(codes, dtype=np.int64).reshape(n, self.in_size)
        out = np.zeros((n, self.out_size), dtype=np.int64)
        trace = np.zeros((n, self.trace_size), dtype=np.int64) if want_trace else None
        if n:
            rc = self._run(_i64p(x), n, _i64p(out), _i64p(trace))
            if rc != 0:
                raise CSimError(f"{self.top}_csim returned {rc}")
        return out, trace

    def run(self, codes: np.ndarray) -> np.ndarray:
        """Output codes ``[n, *output shape]`` for input codes ``[n, ...]``."""
        out, _ = self._call(codes, False)
        return out.reshape((len(out), *self.out_shape))

    def trace(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Every node's output codes by node name, ``[n, *shape]`` (like ``reference.run``)."""
        _, trace = self._call(codes, True)
        n = len(trace)
        if not self.nodes:  # no manifest: the flat trace
            return {"trace": trace}
        out, off = {}, 0
        for name, shape in self.nodes:
            size = int(np.prod(shape, dtype=np.int64))
            out[name] = trace[:, off:off + size].reshape((n, *shape))
            off += size
        return out
