"""The compression configuration: how much of each layer to prune, and how many shared weights.

``parse_prune_config(spec)`` turns a dict, a YAML/JSON/TOML file or a ``CompressConfig`` into
one validated ``CompressConfig``; ``CompressConfig.for_layer(name)`` resolves one layer's
``LayerCompress``.  Compression applies to the layers that hold weights (conv2d, dense).

File schema (YAML shown; JSON and TOML hold the same keys)::

    sparsity: 0.8          # magnitude pruning: this fraction of every layer's weights -> 0
    quality: null          # or: prune |w| < quality * std(layer weights) (not with sparsity)
    structured: false      # prune whole output channels (by L2 norm) and remove them
    share_bits: 4          # weight sharing: 2^k shared codes per layer, k in 1..8
    refine: lsq            # lsq (least squares on calibration outputs + bias correction) or kmeans
    layer_sparsity: {"/net/net.0/Gemm": 0.9}     # per-layer overrides, by layer name
    layer_quality: {}
    layer_share_bits: {logits: 6}

A layer's own ``layer_sparsity`` or ``layer_quality`` replaces the global setting (either
one); giving both for one layer, or both globally, is an error.  Any other key is an error
that names it.  See docs/compression.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import shown
from ..quant.quant_config import ConfigError, did_you_mean, unknown_keys

__all__ = ["CompressConfig", "LayerCompress", "parse_prune_config", "REFINE_METHODS", "MIN_SHARE_BITS",
           "MAX_SHARE_BITS"]

REFINE_METHODS = ("lsq", "kmeans")
MIN_SHARE_BITS, MAX_SHARE_BITS = 1, 8
KEYS = ("sparsity", "layer_sparsity", "quality", "layer_quality", "structured", "share_bits",
        "layer_share_bits", "refine")


@dataclass(frozen=True)
class LayerCompress:
    """One layer's resolved settings: at most one of ``sparsity`` / ``quality`` is set."""

    sparsity: float | None = None
    quality: float | None = None
    share_bits: int | None = None

    @property
    def prunes(self) -> bool:
        return bool(self.sparsity) or self.quality is not None


@dataclass(frozen=True)
class CompressConfig:
    """Pruning and weight-sharing settings of a whole model (see the module docstring)."""

    sparsity: float | None = None
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    quality: float | None = None
    layer_quality: dict[str, float] = field(default_factory=dict)
    structured: bool = False
    share_bits: int | None = None
    layer_share_bits: dict[str, int] = field(default_factory=dict)
    refine: str = "lsq"

    def __post_init__(self) -> None:
        if self.sparsity is not None:
            object.__setattr__(self, "sparsity", _check_sparsity(self.sparsity, "sparsity"))
        if self.quality is not None:
            object.__setattr__(self, "quality", _check_quality(self.quality, "quality"))
        if self.sparsity is not None and self.quality is not None:
            raise ConfigError(f"sparsity and quality must not both be given (pruning is by one of them),"
                              f" not sparsity={shown(self.sparsity)} and quality={shown(self.quality)}")
        if self.share_bits is not None:
            object.__setattr__(self, "share_bits", _check_share(self.share_bits, "share_bits"))
        for name, check in (("layer_sparsity", _check_sparsity), ("layer_quality", _check_quality),
                            ("layer_share_bits", _check_share)):
            table = getattr(self, name)
            if not isinstance(table, Mapping):
                raise ConfigError(f"{name} must be a table of layer name -> value, not {shown(table)}")
            object.__setattr__(self, name, {str(k): check(v, f'{name}."{k}"') for k, v in table.items()})
        both = sorted(set(self.layer_sparsity) & set(self.layer_quality))
        if both:
            raise ConfigError(f"layer {shown(both[0])} must have either layer_sparsity or layer_quality, not both")
        if not isinstance(self.structured, bool):
            raise ConfigError(f"structured must be true or false, not {shown(self.structured)}")
        if self.refine not in REFINE_METHODS:
            raise ConfigError(f"refine must be one of {', '.join(map(repr, REFINE_METHODS))}, not {shown(self.refine)}")

    def for_layer(self, name: str) -> LayerCompress:
        """The settings of layer ``name``: its own entries first, then the global ones."""
        if name in self.layer_sparsity:
            sparsity, quality = self.layer_sparsity[name], None
        elif name in self.layer_quality:
            sparsity, quality = None, self.layer_quality[name]
        else:
            sparsity, quality = self.sparsity, self.quality
        return LayerCompress(sparsity, quality, self.layer_share_bits.get(name, self.share_bits))

    @property
    def shares(self) -> bool:
        return self.share_bits is not None or bool(self.layer_share_bits)

    def check_names(self, layer_names: Iterable[str]) -> None:
        """Raise ConfigError if a per-layer entry names a layer the model lacks (lists the valid ones)."""
        valid = list(dict.fromkeys(layer_names))
        problems = [p for key in ("layer_sparsity", "layer_quality", "layer_share_bits")
                    for p in unknown_keys(getattr(self, key), key, valid, "a layer name", show=None)]
        if problems:
            raise ConfigError("\n".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The config in the file schema; ``parse_prune_config(c.to_dict()) == c``."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"the top level of a compression config must be a table, not {shown(data)}")
        for key in data:
            if key not in KEYS:
                raise ConfigError(f"compression config key must be one of {', '.join(KEYS)}, not {shown(key)}"
                                  + did_you_mean(key, KEYS))
        return cls(**dict(data))

    def describe(self) -> str:
        """One line, e.g. "prune 80% + share 4 bits (lsq)"."""
        words = []
        if self.sparsity:
            words.append(f"prune {self.sparsity:.0%}")
        if self.quality is not None:
            words.append(f"prune |w| < {self.quality:g} std")
        if self.layer_sparsity or self.layer_quality:
            words.append(f"{len(self.layer_sparsity) + len(self.layer_quality)} layer prune overrides")
        if words and self.structured:
            words[0] += " structured"
        if self.share_bits is not None:
            words.append(f"share {self.share_bits} bits")
        if self.layer_share_bits:
            words.append(f"{len(self.layer_share_bits)} layer share overrides")
        if self.shares:
            words[-1] += f" ({self.refine})"
        return " + ".join(words) or "none"


def parse_prune_config(spec: None | str | Path | Mapping[str, Any] | CompressConfig) -> CompressConfig | None:
    """A validated CompressConfig from a dict, a .yaml/.yml/.json/.toml file or a CompressConfig."""
    if spec is None or isinstance(spec, CompressConfig):
        return spec
    if isinstance(spec, Mapping):
        return CompressConfig.from_dict(spec)
    if isinstance(spec, (str, Path)):
        from .. import config_files

        path = Path(spec)
        data = config_files.load(path, "prune config file")  # size, encoding, YAML aliases bounded
        try:
            return CompressConfig.from_dict({} if data is None else data)
        except ConfigError as e:
            raise ConfigError(f"{path.name}: {e}") from None
    raise ConfigError(f"compression config must be None, a dict, a file path or a CompressConfig, not {shown(spec)}")


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _check_sparsity(value: Any, name: str) -> float:
    if not _number(value) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), not {shown(value)}")
    return float(value)


def _check_quality(value: Any, name: str) -> float:
    if not _number(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number (threshold = quality x std of the layer's"
                          f" weights), not {shown(value)}")
    return float(value)


def _check_share(value: Any, name: str) -> int:
    if type(value) is not int or not MIN_SHARE_BITS <= value <= MAX_SHARE_BITS:
        raise ConfigError(f"{name} must be an integer from {MIN_SHARE_BITS} to {MAX_SHARE_BITS}"
                          f" (2^k shared weights), not {shown(value)}")
    return value
