"""Build-cache entries that are checked before they are loaded.

A cached shared library is loaded with ``dlopen``, which maps the file: a truncated file
(a full disk, a killed copy) kills the process with SIGBUS, and a foreign file may do worse.
So every entry ``X`` has a sidecar ``X.sha256`` with its content's digest, written *before* the
entry is moved into place; ``valid(X)`` recomputes the digest, and a missing or different one
means the entry is removed and rebuilt.  Used by ``executor.build`` (TVM libraries) and
``hw_sim.csim.build`` (g++ libraries).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def valid(path: str | Path) -> bool:
    """Whether ``path`` exists and matches the digest recorded for it."""
    path = Path(path)
    try:
        return path.is_file() and _sidecar(path).read_text().strip() == _digest(path)
    except (OSError, UnicodeDecodeError):
        return False


def discard(path: str | Path) -> None:
    """Remove an entry and its digest (a bad entry, before rebuilding it)."""
    path = Path(path)
    for p in (path, _sidecar(path)):
        try:
            p.unlink()
        except OSError:
            pass


def install(tmp: str | Path, path: str | Path) -> None:
    """Move the finished file ``tmp`` to ``path``: its digest first, then the file, each by an
    atomic rename (a reader that sees the new file sees its digest)."""
    tmp, path = Path(tmp), Path(path)
    fd, side_tmp = tempfile.mkstemp(suffix=".sha256", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_digest(tmp) + "\n")
        os.replace(side_tmp, _sidecar(path))
    finally:
        if os.path.exists(side_tmp):
            os.unlink(side_tmp)
    os.replace(tmp, path)


__all__ = ["discard", "install", "valid"]
