"""The quantization configuration: which bit widths and schemes each layer gets.

``parse_config(spec)`` turns what a user gives (nothing, a shorthand, a dict, a file) into
one validated ``QuantConfig``; ``QuantConfig.for_layer(name, op_type)`` resolves the
settings of one layer as a ``LayerQuant``.  Precedence, lowest first: ``default``, then
the override for the layer's op type, then the override for the layer's name.

Shorthand strings: ``wNaM`` (N-bit weights, M-bit activations, N and M in 2..16, e.g.
``w8a8``, ``w4a8``, ``w16a16``), ``wNaM-pow2`` (power-of-two scales), ``auto`` (the same as
``auto-w8a8``) and ``auto-wNaM[-pow2]`` (per-layer widths chosen by the quantizer from
calibration statistics, at most N and M bits).

File schema (TOML shown; YAML and JSON hold the same tables)::

    bits = "w4a8"        # optional: sets default.weight_bits and default.act_bits
    auto = false         # optional: per-layer widths chosen by the quantizer

    [default]            # any LayerQuant field; the rest keep their defaults
    scale_mode = "float"
    calibration = "entropy"

    [op_types.conv2d]    # partial override for every layer of this op type
    weight_bits = 4

    [layers."/features/features.0/Conv"]   # partial override for one layer, by name
    act_bits = 16

Any other key, at any level, is an error, and so is a value of the wrong type: nothing a
user writes is silently ignored.  See docs/quant_config.md for every field.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config_files import ConfigError
from ..errors import shown

__all__ = ["ConfigError", "LayerQuant", "QuantConfig", "parse_config", "SHORTHAND_FORMS", "did_you_mean", "unknown_keys"]


MIN_BITS, MAX_BITS = 2, 16
SCALE_MODES = ("float", "pow2")
ROUNDINGS = ("RND", "TRN")
OVERFLOWS = ("SAT", "WRAP")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")
SHORTHAND_FORMS = ("w8a8", "w4a8", "w16a16", "w8a8-pow2", "auto", "auto-w8a8")
CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
TOP_LEVEL_KEYS = ("bits", "auto", "default", "op_types", "layers")

_SHORTHAND = re.compile(r"(?P<auto>auto)(?:-w(?P<aw>\d+)a(?P<aa>\d+))?(?P<apow2>-pow2)?"
                        r"|w(?P<w>\d+)a(?P<a>\d+)(?P<pow2>-pow2)?")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class LayerQuant:
    """The resolved quantization settings of one layer.

    ``act_bits`` is the width of the layer's output activation.  ``act_signed=None`` leaves
    the signedness to the quantizer (unsigned after a ReLU).  ``per_channel`` gives each
    output channel its own weight scale.  ``percentile`` is read only by
    ``calibration="percentile"``.
    """

    weight_bits: int
    act_bits: int
    weight_signed: bool = True
    act_signed: bool | None = None
    per_channel: bool = True
    scale_mode: Literal["pow2", "float"] = "float"
    rounding: Literal["RND", "TRN"] = "RND"
    overflow: Literal["SAT", "WRAP"] = "SAT"
    calibration: Literal["minmax", "percentile", "mse", "entropy"] = "mse"
    percentile: float = 99.99
    bias_correction: bool = False

    def __post_init__(self) -> None:
        checked = _check_fields(dataclasses.asdict(self), where="")
        object.__setattr__(self, "percentile", checked["percentile"])


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(LayerQuant))


@dataclass(frozen=True)
class QuantConfig:
    """The quantization config of a whole model.

    ``op_types`` and ``layers`` map an op type (``"conv2d"``, ``"dense"``, ``"add"``, ...) or
    a layer name to a partial override: a dict of some ``LayerQuant`` fields.  With
    ``auto=True`` the quantizer chooses each layer's widths from calibration statistics, and
    the widths given here (in ``default`` or an override) are the largest it may choose.
    """

    default: LayerQuant
    op_types: dict[str, dict[str, Any]] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    auto: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.default, LayerQuant):
            raise ConfigError(f"default must be a LayerQuant, not {shown(self.default)}")
        if not isinstance(self.auto, bool):
            raise ConfigError(f"auto must be true or false, not {shown(self.auto)}")
        object.__setattr__(self, "op_types", _check_overrides(self.op_types, "op_types"))
        object.__setattr__(self, "layers", _check_overrides(self.layers, "layers"))

    def for_layer(self, name: str, op_type: str) -> LayerQuant:
        """The settings of layer ``name``: default < op-type override < layer override."""
        return dataclasses.replace(self.default,
                                   **(self.op_types.get(op_type, {}) | self.layers.get(name, {})))

    def check_names(self, layer_names: Iterable[str], op_types: Iterable[str]) -> None:
        """Raise ConfigError if an override names a layer or op type the model lacks."""
        problems = [*unknown_keys(self.layers, "layers", list(dict.fromkeys(layer_names)),
                                   "a layer name", show=6),
                    *unknown_keys(self.op_types, "op_types", sorted(set(op_types)),
                                   "an op type", show=None)]
        if problems:
            raise ConfigError("\n".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The config in the file schema; ``parse_config(c.to_dict()) == c``."""
        default = {k: v for k, v in dataclasses.asdict(self.default).items() if v is not None}
        return {
            "auto": self.auto,
            "default": default,
            "op_types": {k: dict(v) for k, v in self.op_types.items()},
            "layers": {k: dict(v) for k, v in self.layers.items()},
        }

    def describe(self) -> str:
        """One line, e.g. "w4a8 per-channel float-scale RND/SAT entropy; 2 layer overrides"."""
        d = self.default
        widths = f"w{d.weight_bits}a{d.act_bits}"
        calibration = d.calibration
        if calibration == "percentile":
            calibration = f"percentile-{d.percentile:g}"
        words = [f"auto-{widths}" if self.auto else widths,
                 "per-channel" if d.per_channel else "per-tensor",
                 f"{d.scale_mode}-scale", f"{d.rounding}/{d.overflow}", calibration]
        if not d.weight_signed:
            words.append("unsigned-weights")
        if d.act_signed is not None:
            words.append("signed-acts" if d.act_signed else "unsigned-acts")
        if d.bias_correction:
            words.append("bias-correction")
        counts = [_plural(len(self.op_types), "op-type override"),
                  _plural(len(self.layers), "layer override")]
        counts = [c for c in counts if c]
        return " ".join(words) + (f"; {', '.join(counts)}" if counts else "")


def parse_config(spec: None | str | Path | Mapping[str, Any] | QuantConfig) -> QuantConfig:
    """Build a validated QuantConfig from None (w8a8), a shorthand, a file path or a dict."""
    if spec is None:
        return QuantConfig(default=LayerQuant(weight_bits=8, act_bits=8))
    if isinstance(spec, QuantConfig):
        return spec
    if isinstance(spec, Mapping):
        return _from_dict(spec)
    if isinstance(spec, Path):
        return _from_file(spec)
    if isinstance(spec, str):
        shorthand = _parse_shorthand(spec)
        if shorthand is not None:
            return shorthand
        if Path(spec).is_file() or spec.lower().endswith(CONFIG_SUFFIXES):
            return _from_file(Path(spec))
        raise ConfigError(f"quantization config must be a shorthand ({', '.join(SHORTHAND_FORMS)};"
                          f" generally [auto-]wNaM[-pow2] with N, M in {MIN_BITS}..{MAX_BITS})"
                          f" or an existing {'/'.join(CONFIG_SUFFIXES)} file, not {shown(spec)}")
    raise ConfigError("quantization config must be None, a shorthand string, a file path, a dict"
                      f" or a QuantConfig, not {shown(spec)}")


def _parse_shorthand(text: str) -> QuantConfig | None:
    """The config a shorthand names, or None when ``text`` is not of a shorthand form."""
    m = _SHORTHAND.fullmatch(text.strip().lower())
    if m is None:
        return None
    weight_bits, act_bits = m["w"] or m["aw"] or "8", m["a"] or m["aa"] or "8"
    pow2 = bool(m["pow2"] or m["apow2"])
    for what, bits in (("weight bits", weight_bits), ("activation bits", act_bits)):
        if not MIN_BITS <= int(bits) <= MAX_BITS:
            raise ConfigError(f"{what} in shorthand {shown(text)} must be from {MIN_BITS} to {MAX_BITS},"
                              f" not {int(bits)}")
    default = LayerQuant(weight_bits=int(weight_bits), act_bits=int(act_bits),
                         scale_mode="pow2" if pow2 else "float")
    return QuantConfig(default=default, auto=bool(m["auto"]))


def _from_file(path: Path) -> QuantConfig:
    from .. import config_files

    data = config_files.load(path, "config file")  # size, encoding, YAML aliases bounded
    if data is None:  # an empty YAML file: all defaults
        data = {}
    try:
        return _from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path.name}: {e}") from None


def _from_dict(data: Mapping[str, Any]) -> QuantConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"the top level of a config must be a table, not {shown(data)}")
    for key in data:
        _check_key(key, TOP_LEVEL_KEYS, "top-level key")
    default = _check_table(data.get("default", {}), "default")
    widths = {"weight_bits": 8, "act_bits": 8}
    if "bits" in data:
        bits = data["bits"]
        m = re.fullmatch(r"w(\d+)a(\d+)", bits) if isinstance(bits, str) else None
        if m is None:
            raise ConfigError(f"bits must be a string wNaM such as 'w4a8', not {shown(bits)}")
        for key in widths:
            if key in default:
                raise ConfigError(f"default.{key} must be left out when bits is given,"
                                  f" not {shown(default[key])} (bits = {shown(bits)})")
        widths = {"weight_bits": int(m[1]), "act_bits": int(m[2])}
        for key, value in widths.items():
            if not MIN_BITS <= value <= MAX_BITS:
                raise ConfigError(f"{key} in bits = {shown(bits)} must be from {MIN_BITS} to {MAX_BITS},"
                                  f" not {value}")
    _check_fields(default, where="default")
    return QuantConfig(default=LayerQuant(**(widths | dict(default))),
                       op_types=_check_table(data.get("op_types", {}), "op_types"),
                       layers=_check_table(data.get("layers", {}), "layers"),
                       auto=data.get("auto", False))


def _check_overrides(overrides: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validated copies of the partial overrides in ``overrides`` (op_types or layers)."""
    result = {}
    for key, fields in _check_table(overrides, where).items():
        if not isinstance(key, str):
            raise ConfigError(f"{where} keys must be strings, not {shown(key)}")
        path = f"{where}.{key}" if _BARE_KEY.fullmatch(key) else f'{where}."{key}"'
        result[key] = _check_fields(_check_table(fields, path), where=path)
    return result


def _check_fields(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check names and values of (some) LayerQuant fields; ``where`` prefixes messages."""
    prefix = f"{where}." if where else ""
    for key in values:
        _check_key(key, FIELD_NAMES, f"{where} key" if where else "LayerQuant field")
    checked = dict(values)
    for key, value in values.items():
        name = prefix + key
        if key in ("weight_bits", "act_bits"):
            if type(value) is not int or not MIN_BITS <= value <= MAX_BITS:
                raise ConfigError(f"{name} must be an integer from {MIN_BITS} to {MAX_BITS},"
                                  f" not {shown(value)}")
        elif key == "act_signed":
            if value is not None and not isinstance(value, bool):
                raise ConfigError(f"{name} must be true, false or null (decided by the"
                                  f" quantizer), not {shown(value)}")
        elif key in ("weight_signed", "per_channel", "bias_correction"):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, not {shown(value)}")
        elif key == "percentile":
            if type(value) not in (int, float) or not 50 < value <= 100:
                raise ConfigError(f"{name} must be a number in (50, 100], not {shown(value)}")
            checked[key] = float(value)
        else:
            choices = {"scale_mode": SCALE_MODES, "rounding": ROUNDINGS,
                       "overflow": OVERFLOWS, "calibration": CALIBRATIONS}[key]
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))},"
                                  f" not {shown(value)}")
    return checked


def _check_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table, not {shown(value)}")
    return dict(value)


def _check_key(key: Any, valid: tuple[str, ...], what: str) -> None:
    if key not in valid:
        raise ConfigError(f"{what} must be one of {', '.join(valid)}, not {shown(key)}"
                          + did_you_mean(key, valid))


def unknown_keys(overrides: Mapping[str, Any], section: str, valid: list[str], what: str,
                  show: int | None) -> list[str]:
    """One message per override key not in ``valid``; ``show`` caps the names listed."""
    known = set(valid)
    listed = ", ".join(map(repr, valid[:show])) or "none"
    if show is not None and len(valid) > show:
        listed += f", ... ({len(valid) - show} more)"
    noun = what.split(" ", 1)[1]
    return [f"{section} key must be {what} in the model, not {shown(key)}"
            + did_you_mean(key, valid) + f"; the model's {noun}s: {listed}"
            for key in overrides if key not in known]


def did_you_mean(key: Any, valid: Iterable[str]) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the names of ``valid`` closest to ``key``; "" when none is close."""
    valid = list(valid)
    close = difflib.get_close_matches(str(key)[:100], valid, n=3)
    # equally close names in the order the caller gave them (model order), not reverse-sorted
    ratio = {v: difflib.SequenceMatcher(None, str(key)[:100], v).ratio() for v in close}
    close.sort(key=lambda v: (-ratio[v], valid.index(v)))
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _plural(n: int, noun: str) -> str:
    return "" if n == 0 else f"{n} {noun}" + ("" if n == 1 else "s")
