"""The backend registry: built-in backends, ``register_backend`` and entry points.

Third-party packages register without editing nnforge, through an entry point::

    # pyproject.toml of the other package
    [project.entry-points."nnforge.backends"]
    mine = "mypkg.backend:MyBackend"

Entry points are loaded on first use; one that fails to load is reported by
``nnforge backends`` and never breaks the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

from nnforge.compiler.errors import InputError

from .base import Backend

ENTRY_POINT_GROUP = "nnforge.backends"
_BUILTIN = {"hls": "nnforge.backends.hls:HLSBackend", "systolic": "nnforge.backends.systolic:SystolicBackend"}

_registry: dict[str, type[Backend]] = {}
_origins: dict[str, str] = {}
_broken: dict[str, str] = {}
_loaded = False


class BackendError(InputError):
    """An unknown backend, or a backend that failed to load."""


def register_backend(cls: type[Backend], *, override: bool = False, origin: str = "register_backend") -> type[Backend]:
    """Register a ``Backend`` subclass under ``cls.name``.  Usable as a class decorator."""
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{cls!r} is not a subclass of nnforge.backends.Backend")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"backend class {cls.__name__} needs a `name` that is a Python identifier, not {name!r}")
    if name in _registry and _registry[name] is not cls and not override:
        raise ValueError(f"a backend named {name!r} is already registered ({_origins[name]})")
    _registry[name] = cls
    _origins[name] = origin
    _broken.pop(name, None)
    return cls


def _load(spec: str):
    module, _, attr = spec.partition(":")
    obj = __import__(module, fromlist=[attr])
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name, spec in _BUILTIN.items():
        try:
            register_backend(_load(spec), origin="built-in")
        except (ImportError, AttributeError) as err:  # not built yet, or broken
            _broken[name] = f"{type(err).__name__}: {err}"
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in _registry:
            continue
        try:
            register_backend(ep.load(), origin=f"entry point {ep.value}")
        except Exception as err:  # a third-party plugin must not break nnforge
            _broken[ep.name] = f"{type(err).__name__}: {err}"


def reload() -> None:
    """Forget the built-in and entry-point backends and load them again on next use (after
    installing a plugin in a running process; used by tests).  ``register_backend`` calls stay."""
    global _loaded
    for name in [n for n, o in _origins.items() if o == "built-in" or o.startswith("entry point ")]:
        del _registry[name], _origins[name]
    _broken.clear()
    _loaded = False


@dataclass
class BackendInfo:
    name: str
    description: str
    ops: list[str]
    origin: str
    options: dict[str, dict] = field(default_factory=dict)  # name -> default, help, choices, minimum, maximum


def list_backends() -> list[BackendInfo]:
    from .options import describe_options

    _ensure_loaded()
    return [BackendInfo(n, c.description, sorted(c.ops), _origins[n], describe_options(c))
            for n, c in sorted(_registry.items())]


def broken_backends() -> dict[str, str]:
    """Backends (built-in or entry points) that failed to load, with the error."""
    _ensure_loaded()
    return dict(_broken)


def get_backend(name: str) -> Backend:
    """An instance of the backend called ``name``; unknown names list the valid ones."""
    _ensure_loaded()
    if name not in _registry:
        valid = ", ".join(sorted(_registry)) or "(none)"
        extra = f" ({name} failed to load: {_broken[name]})" if name in _broken else ""
        raise BackendError(f"unknown backend {name!r}{extra}; registered backends: {valid}")
    return _registry[name]()
