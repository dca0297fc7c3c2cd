"""The one writer of nnforge's outputs: output directories (projects, saved models, sweeps) and
output files (``run -o``), with the no-overwrite promise kept atomically.

* ``check_output`` is the validation layer every ``-o`` goes through before any work: a path
  (not ``""``), not the current directory or one above it, under a writable directory (not
  under a file), never one of the command's inputs, and for a directory never one holding them.
  Without ``force`` nothing may be at the path.  ``force`` replaces only a directory that
  nnforge wrote (it holds ``manifest.json``) or an empty one, and only a regular file.
* ``write_tree`` writes the files into a temporary sibling ``.NAME.<pid>.<random>.tmp``, adds
  ``manifest.json`` (the SHA-256 of every file, so ``verify`` can tell what changed), then
  moves it into place with ``renameat2``: ``RENAME_NOREPLACE`` without force, so of two
  concurrent runs exactly one wins and the other fails cleanly; ``RENAME_EXCHANGE`` with force,
  so the old tree is swapped out in one step.  (Where ``renameat2`` is missing, a claimed empty
  directory or a hard link gives the same guarantee.)  Interrupted, it removes its temporary
  tree; a tree left by a killed run (its pid no longer alive) is removed by the next run to the
  same path, with a warning.
* Files and folders get the permissions of ``open``/``mkdir`` under the user's umask (not the
  0600/0700 of ``tempfile``).

Every ``OSError`` becomes an ``InputError`` naming the path.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, shown
from .spelling import option

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "nnforge-manifest/1"

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


# -- validation ----------------------------------------------------------------------------------------

def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def written_by_nnforge(path: Path) -> bool:
    """A directory nnforge wrote: it holds a readable ``manifest.json`` of nnforge's format."""
    try:
        doc = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT


def check_output(path: str | Path, *, directory: bool, force: bool, inputs: Iterable[str | Path] = (),
                 flag: str | None = None) -> Path:
    """``path`` as a Path once it is a valid output of one command (see the module docstring);
    an InputError that names the path and the rule otherwise.  ``inputs`` are the command's own
    input files (model, data, configs).  ``flag`` names the path in errors (default: ``--output`` from
    the CLI, "the output path" from Python: ``spelling.py``)."""
    flag = flag or option("output")
    try:
        return _check_output(path, directory, force, inputs, flag)
    except OSError as err:  # a name too long, a loop of links, a folder that cannot be listed
        raise InputError(f"{flag} must be a usable path, not {shown(str(path))} ({err.strerror or err})") from None


def _check_output(path, directory: bool, force: bool, inputs, flag: str) -> Path:
    text = str(path)
    kind = "directory" if directory else "file"
    if not text.strip():
        raise InputError(f"{flag} must be a path to an output {kind}, not {text!r}")
    p = Path(text)
    real = _resolved(p)
    cwd = _resolved(Path.cwd())
    if _is_within(cwd, real):
        raise InputError(f"{flag} must not be the current directory or one that contains it, not {text!r}")
    ancestor = real.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{flag} must be under a directory, not under the file {str(ancestor)!r} ({text!r})")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{flag} must be in a writable directory, not in the read-only {str(ancestor)!r} ({text!r})")
    for given in inputs:
        if given is None or str(given) == "":
            continue
        inp = _resolved(Path(given))
        if inp == real:
            raise InputError(f"{flag} must not be one of the command's inputs, not {text!r} (the input "
                             f"{str(given)!r})")
        if directory and _is_within(inp, real):
            raise InputError(f"{flag} must not be a directory holding the command's inputs, not {text!r} "
                             f"(it holds {str(given)!r})")
    exists = p.exists() or p.is_symlink()
    if not directory and p.is_dir():
        raise InputError(f"{flag} must be a file path, not the directory {text!r}")
    if exists and not force:
        raise InputError(f"output {kind} {text!r} already exists; pass {option('force')} to replace it")
    if exists:
        if directory:
            if p.is_symlink() or not p.is_dir():
                raise InputError(f"{flag} with {option('force')} replaces only a directory nnforge wrote, not {text!r} "
                                 f"(a {'link' if p.is_symlink() else 'file'})")
            if not written_by_nnforge(p) and any(p.iterdir()):
                raise InputError(f"{flag} with {option('force')} replaces only a directory nnforge wrote (with a "
                                 f"{MANIFEST}), not {text!r}; move or remove it yourself")
        elif p.is_symlink() or not p.is_file():
            raise InputError(f"{flag} with {option('force')} replaces only a regular file, not {text!r}")
    return p


# -- manifest --------------------------------------------------------------------------------------------

def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_text(files: Mapping[str, str | bytes]) -> str:
    """``manifest.json`` for ``files``: the SHA-256 of each, by relative path (deterministic)."""
    doc = {"format": MANIFEST_FORMAT,
           "files": {rel: digest(_bytes(files[rel])) for rel in sorted(files) if rel != MANIFEST}}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


@dataclass
class ManifestCheck:
    """What differs between a directory and its manifest."""

    present: bool  # the directory has a manifest.json of nnforge's format
    changed: list[str] = field(default_factory=list)  # content differs from the manifest
    missing: list[str] = field(default_factory=list)  # listed, but absent
    extra: list[str] = field(default_factory=list)  # present, not listed (e.g. build outputs)
    error: str | None = None  # why the manifest itself could not be read

    @property
    def intact(self) -> bool:
        return self.present and self.error is None and not self.changed and not self.missing

    def describe(self) -> str:
        if self.error:
            return self.error
        parts = []
        if self.changed:
            parts.append("changed: " + ", ".join(self.changed[:10]) + (" ..." if len(self.changed) > 10 else ""))
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing[:10]) + (" ..." if len(self.missing) > 10 else ""))
        return "; ".join(parts) or "intact"


def check_manifest(directory: str | Path) -> ManifestCheck:
    """Compare every file of ``directory`` with its ``manifest.json``."""
    root = Path(directory)
    path = root / MANIFEST
    if not path.exists():
        return ManifestCheck(False)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        listed = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in listed.items()):
            raise ValueError("not nnforge's format")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return ManifestCheck(True, error=f"{MANIFEST} must be nnforge's manifest, not unreadable ({err})")
    check = ManifestCheck(True)
    for rel in sorted(listed):
        p = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            check.changed.append(rel)
            continue
        try:
            if not p.is_file():
                check.missing.append(rel)
            elif digest(p.read_bytes()) != listed[rel]:
                check.changed.append(rel)
        except OSError:
            check.missing.append(rel)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != MANIFEST and rel not in listed:
            check.extra.append(rel)
    return check


# -- atomic placement --------------------------------------------------------------------------------------

def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``: True when done, False where the system lacks it."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EINVAL)):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _move_noreplace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; FileExistsError if anything is at ``dst`` (atomically)."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if src.is_dir():
        os.mkdir(dst)  # claim the name: fails if it exists; rename replaces only an empty directory
        try:
            os.rename(src, dst)
        except BaseException:
            os.rmdir(dst)
            raise
    else:
        os.link(src, dst)  # fails if dst exists
        os.unlink(src)


def _swap(new: Path, old: Path) -> None:
    """Put ``new`` at ``old``'s path and the previous ``old`` at ``new``'s, in one step where possible."""
    if _renameat2(new, old, _RENAME_EXCHANGE):
        return
    aside = new.with_name(new.name[: -len(".tmp")] + ".old")
    os.rename(old, aside)
    try:
        _move_noreplace(new, old)
    except BaseException:
        os.rename(aside, old)  # put the previous tree back
        raise
    os.rename(aside, new)


# -- temporary siblings ------------------------------------------------------------------------------------

def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.{suffix}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(out: Path) -> list[str]:
    """Remove ``.NAME.<pid>.<hex>.tmp/.old`` siblings of ``out`` whose run is gone (killed); the
    names removed.  Older leftovers without a pid are reported, not touched."""
    parent = out.parent if str(out.parent) else Path(".")
    pattern = re.compile(r"\." + re.escape(out.name) + r"\.(?:(\d+)\.[0-9a-f]{8}|[A-Za-z0-9_]{8})\.(tmp|old)")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        if m.group(1) is None:
            warnings.warn(f"{str(entry)!r} looks left behind by an interrupted nnforge run; remove it yourself")
            continue
        if _alive(int(m.group(1))):
            continue  # a concurrent run is writing it
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
        warnings.warn(f"removed {str(entry)!r}, left behind by an interrupted nnforge run")
    return removed


def _bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def _check_relpath(rel: str) -> Path:
    p = Path(rel)
    if not rel or p.is_absolute() or ".." in p.parts or rel == MANIFEST:
        raise ValueError(f"generated file paths must be relative and inside the output, not {rel!r}")
    return p


def _write(path: Path, data: bytes) -> None:
    # open() creates with 0666 & ~umask: the user's normal permissions
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _os_error(out: Path, err: OSError) -> InputError:
    where = f" ({err.filename})" if getattr(err, "filename", None) and str(err.filename) != str(out) else ""
    return InputError(f"output {str(out)!r} could not be written: {err.strerror or err}{where}")


def write_tree(out: str | Path, files: Mapping[str, str | bytes], force: bool = False,
               inputs: Iterable[str | Path] = (), flag: str | None = None, manifest: bool = True) -> Path:
    """Write ``files`` (relative path -> text or bytes) as directory ``out`` plus ``manifest.json``,
    atomically (module docstring).  Returns ``out``."""
    out = check_output(out, directory=True, force=force, inputs=inputs, flag=flag)
    rels = {rel: _check_relpath(rel) for rel in files}
    clean_leftovers(out)
    tmp = _sibling(out, "tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(tmp, 0o777)
        for rel in sorted(files):
            path = tmp / rels[rel]
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, _bytes(files[rel]))
        if manifest:
            _write(tmp / MANIFEST, manifest_text(files).encode())
        try:
            _move_noreplace(tmp, out)
        except FileExistsError:
            if not force:
                raise InputError(f"output directory {str(out)!r} already exists (it appeared while this run "
                                 f"was working: another run?); pass {option('force')} to replace it") from None
            check_output(out, directory=True, force=True, inputs=inputs, flag=flag)  # still nnforge's?
            _swap(tmp, out)  # tmp now holds the previous tree
    except OSError as err:
        raise _os_error(out, err) from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_file(out: str | Path, data: bytes, force: bool = False, inputs: Iterable[str | Path] = (),
               flag: str | None = None) -> Path:
    """Write one output file atomically: a temporary sibling, then a rename that never replaces an
    existing file without ``force``."""
    out = check_output(out, directory=False, force=force, inputs=inputs, flag=flag)
    clean_leftovers(out)
    tmp = _sibling(out, "tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(tmp, data)
        try:
            _move_noreplace(tmp, out)
        except FileExistsError:
            if not force:
                raise InputError(f"output file {str(out)!r} already exists (it appeared while this run was "
                                 f"working: another run?); pass {option('force')} to overwrite it") from None
            check_output(out, directory=False, force=True, inputs=inputs, flag=flag)
            os.replace(tmp, out)
    except OSError as err:
        raise _os_error(out, err) from None
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
    return out


__all__ = ["MANIFEST", "ManifestCheck", "check_manifest", "check_output", "clean_leftovers", "digest",
           "manifest_text", "write_file", "write_tree", "written_by_nnforge"]
