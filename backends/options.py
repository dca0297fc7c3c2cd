"""Backend options: from ``--option KEY=VALUE`` strings and Python values to checked values.

Every backend declares its options as ``{name: Option(default, help, choices, minimum,
maximum)}`` (``base.py``; a plain default value stands for ``Option(default, "")``).  The
parse is the same for every backend: unknown keys list the valid ones, a string is converted
to the type of the default, a Python value must already have it (an int is accepted for a
float), numbers must be finite, then ``choices`` and the inclusive range apply.  What needs
several options at once is the backend's ``check_options``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError, shown

from .base import Option


def _kind(default: Any) -> str:
    if isinstance(default, (bool, np.bool_)):
        return "true or false"
    if isinstance(default, (int, np.integer)):
        return "an integer"
    if isinstance(default, (float, np.floating)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return f"a value of type {type(default).__name__}"  # never "a int": the type's name, not an article


def _typed(label: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (strings converted; other values checked)."""
    bad = InputError(f"option {label} must be {_kind(default)} like {default!r}, not {shown(value)}")
    if default is None:  # no type to hold it to
        return value
    if isinstance(value, str) and not isinstance(default, str):
        text = value.strip()
        try:
            if isinstance(default, bool):
                if text.lower() not in ("0", "1", "true", "false"):
                    raise ValueError
                return text.lower() in ("1", "true")
            if isinstance(default, int):
                return int(text)
            if isinstance(default, float):
                return float(text)
        except ValueError:
            raise bad from None
        raise bad  # a list or dict option is set from Python only
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise bad
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise bad
        return int(value)
    if isinstance(default, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad
        return float(value)
    if not isinstance(value, type(default)):
        raise bad
    return value


def _num(v: float) -> str:
    """A bound in words: whole numbers in full (1048576, not 1.04858e+06)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _range(spec: Option) -> str:
    lo, hi = spec.minimum, spec.maximum
    if lo is not None and hi is not None:
        return f"from {_num(lo)} to {_num(hi)}"
    return f">= {_num(lo)}" if lo is not None else f"<= {_num(hi)}"


def _scalar(key: str, value: Any, spec: Option, layer: str | None = None) -> Any:
    label = repr(key) + ("" if layer is None else f" for layer {layer!r}")
    if isinstance(value, str) and value.strip() in spec.keywords and layer is None:
        return value.strip()
    if isinstance(value, str) and spec.keywords and layer is None:
        try:
            value = _typed(label, value, spec.default)
        except InputError:
            raise InputError(f"option {label} must be {_kind(spec.default)} like {spec.default!r} or "
                             f"{' or '.join(map(repr, spec.keywords))}, not {shown(value)}") from None
    value = _typed(label, value, spec.default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and not math.isfinite(value):
        raise InputError(f"option {label} must be a finite number, not {shown(value)}")
    if spec.choices is not None and value not in spec.choices:
        raise InputError(f"option {label} must be one of {', '.join(map(repr, spec.choices))}, not {shown(value)}")
    if number and ((spec.minimum is not None and value < spec.minimum)
                   or (spec.maximum is not None and value > spec.maximum)):
        raise InputError(f"option {label} must be {_range(spec)}, not {shown(value)}")
    return value


def parse_value(key: str, value: Any, spec: Option) -> Any:
    """One option's value, converted and checked; a per-layer option also takes
    ``{layer: value, "default": value}``, each value checked alike."""
    if isinstance(value, dict) and spec.per_layer:
        return {k: _scalar(key, v, spec, layer=k) for k, v in value.items()}
    return _scalar(key, value, spec)


def parse_options(backend, given: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's defaults updated with ``given``; unknown keys and bad values are InputErrors.

    String values (from ``--option KEY=VALUE``) are converted to the type of the default.
    """
    specs = backend.option_specs()
    out = {k: spec.default for k, spec in specs.items()}
    for key, value in (given or {}).items():
        if key not in specs:
            valid = ", ".join(sorted(specs)) or "(none)"
            raise InputError(f"option key must be one of {valid} for the {backend.name} backend, not {shown(key)}")
        out[key] = parse_value(key, value, specs[key])
    return out


def resolve_options(backend, given: dict[str, Any] | None) -> dict[str, Any]:
    """``parse_options``, then the backend's ``check_options`` (cross-field checks): the options
    ``compile_model`` hands to every hook."""
    opts = parse_options(backend, given)
    checked = backend.check_options(opts) if hasattr(backend, "check_options") else opts
    return opts if checked is None else dict(checked)


def parse_option_strings(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["reuse_factor=4", "io=axis"]`` -> ``{"reuse_factor": "4", "io": "axis"}``."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option must look like KEY=VALUE, not {shown(value)}")
        out[key.strip()] = val.strip()
    return out


def describe_options(backend) -> dict[str, dict[str, Any]]:
    """Option name -> default, help, choices, minimum, maximum, per_layer (``nnforge backends --json``)."""
    out = {}
    for key, spec in sorted(backend.option_specs().items()):
        out[key] = {"default": spec.default, "help": spec.help,
                    "choices": None if spec.choices is None else list(spec.choices),
                    "minimum": spec.minimum, "maximum": spec.maximum, "per_layer": spec.per_layer}
    return out


__all__ = ["describe_options", "parse_option_strings", "parse_options", "parse_value",
           "resolve_options"]
