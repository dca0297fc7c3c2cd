"""The quantization and compression flags of ``simulate``, ``quantize``, ``compress`` and
``compile``, and the one validated request they make.

``@quant_flags`` gathers the seven flags (``--bits``, ``--config``, ``--prune``, ``--prune-config``,
``--share``, ``--refine``, ``--structured``) into one ``QuantFlags``; once the command has checked
its outputs, ``flags.request(model_path, calib_path, input_shapes)`` parses and checks them all
and gives the ``QuantRequest`` the rest of the command reads (config, compression, the model and
its calibration data), so no command repeats that preamble.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nnforge.compiler.errors import InputError, shown

if TYPE_CHECKING:
    from nnforge.compiler.compress.compress_config import CompressConfig
    from nnforge.compiler.quant.quant_config import QuantConfig


def quant_spec(bits: str | None, config: str | None):
    """The quantization spec ``parse_config`` reads: ``--bits``, the ``--config`` file's, or w8a8."""
    if bits and config:
        raise click.UsageError("give either --bits or --config, not both")
    if config:  # a [compress] table (explore's best.toml) is read by compress_spec
        from nnforge.compiler.point_config import split_config

        return split_config(config)[0]
    return bits or "w8a8"


quant_options = [
    click.option("--bits", metavar="wNaM", help="Shorthand widths, e.g. w8a8, w4a8, w8a8-pow2, auto (default w8a8)."),
    click.option("--config", "config_path", metavar="FILE", help="TOML/YAML/JSON quantization config (docs/quant_config.md)."),
]


def compress_spec(prune: float | None, prune_config: str | None, share: str | int | None, refine: str | None,
                   structured: bool, config: str | None = None):
    """The CompressConfig the compression options describe, or None when none is given.

    ``--prune-config`` (or the ``[compress]`` table of the ``--config`` file) is the base;
    ``--prune``, ``--share``, ``--refine`` and ``--structured`` override its global keys."""
    from nnforge.compiler.compress.compress_config import CompressConfig, parse_prune_config
    from nnforge.compiler.point_config import split_config

    in_config = split_config(config)[1] if config else None
    if in_config is not None:
        if prune_config is not None:
            raise click.UsageError(f"--prune-config must not be given with --config {config!r}: its [compress] "
                                   "table holds the compression settings already")
        prune_config = in_config

    share_text = share
    if isinstance(share, str):
        try:
            share = int(share)
        except ValueError:
            share = -1
        if not 1 <= share <= 8:
            raise InputError(f"--share must be an integer from 1 to 8, not {shown(share_text)}")
    if prune is not None and not (math.isfinite(prune) and 0 <= prune < 1):
        raise InputError(f"--prune must be a fraction in [0, 1), not {shown(prune)}")
    if prune_config is None and prune is None and share is None:
        if refine is not None or structured:
            raise click.UsageError("--refine and --structured need --prune, --share or --prune-config")
        return None
    data = parse_prune_config(prune_config if in_config else Path(prune_config)).to_dict() if prune_config else {}
    if prune is not None:
        data.update(sparsity=prune, quality=None)
    if share is not None:
        data["share_bits"] = share
    if refine is not None:
        data["refine"] = refine
    if structured:
        data["structured"] = True
    return CompressConfig.from_dict(data)


compress_options = [
    click.option("--prune", type=float, metavar="FLOAT",
                 help="Magnitude pruning: this fraction of each conv/dense layer's weights becomes 0 (in [0, 1))."),
    click.option("--prune-config", metavar="FILE",
                 help="YAML/JSON/TOML compression config with per-layer settings (docs/compression.md)."),
    click.option("--share", metavar="K", help="Weight sharing: 2^K shared codes per layer, K in 1..8."),
    click.option("--refine", type=click.Choice(["lsq", "kmeans"]),
                 help="Shared values from k-means, refined by least squares on calibration outputs (lsq, default)"
                      " or plain k-means."),
    click.option("--structured", is_flag=True, help="Prune whole output channels and remove them."),
]


@dataclass(frozen=True)
class QuantRequest:
    """What a quantizing command was asked for, every flag checked (before any model is loaded)."""

    model_path: str
    calib_path: str | None
    input_shapes: tuple[str, ...]
    config: QuantConfig
    compress: CompressConfig | None

    def load(self):
        """The float model (``nnforge.load``), its warnings printed."""
        from nnforge.cli.common import load_model

        return load_model(self.model_path, self.input_shapes)

    def calibration(self, model) -> list | None:
        """The calibration arrays of ``--calib`` for ``model``'s inputs; None without ``--calib``."""
        from nnforge.data import load_inputs

        return load_inputs(self.calib_path, model.inputs)[0] if self.calib_path else None

    def describe(self) -> str:
        """The config, then the compression settings: ``w8a8 ...; prune 50% ...``."""
        return self.config.describe() + ("" if self.compress is None else f"; {self.compress.describe()}")


@dataclass(frozen=True)
class QuantFlags:
    """The quantization and compression flags as given on the command line (not yet checked)."""

    bits: str | None = None
    config_path: str | None = None
    prune: float | None = None
    prune_config: str | None = None
    share: str | None = None
    refine: str | None = None
    structured: bool = False

    @property
    def files(self) -> list[str]:
        """The input files the flags name (``--config``, ``--prune-config``), which no output may replace."""
        return [f for f in (self.config_path, self.prune_config) if f]

    def given(self) -> list[str]:
        """The flags given, by name, in the order of ``--help``."""
        names = {"bits": "--bits", "config_path": "--config", "prune": "--prune", "prune_config": "--prune-config",
                 "share": "--share", "refine": "--refine", "structured": "--structured"}
        return [names[f.name] for f in fields(self) if getattr(self, f.name) not in (None, False)]

    def request(self, model_path: str, calib_path: str | None, input_shapes: tuple[str, ...]) -> QuantRequest:
        """Every flag parsed and checked, once: the config (``--bits`` or ``--config``), then the
        compression settings; a UsageError or InputError naming the flag otherwise."""
        from nnforge.compiler.quant.quant_config import parse_config

        config = parse_config(quant_spec(self.bits, self.config_path))
        comp = compress_spec(self.prune, self.prune_config, self.share, self.refine, self.structured, self.config_path)
        return QuantRequest(model_path, calib_path, tuple(input_shapes), config, comp)


_FLAG_NAMES = tuple(f.name for f in fields(QuantFlags))


def quant_flags(command: Any) -> Any:
    """Pass a command's seven quantization and compression parameters as one ``flags: QuantFlags``
    (place it right above the ``def``, below the click options, whose order ``--help`` keeps)."""
    @functools.wraps(command)
    def gathered(*args: Any, **kwargs: Any) -> Any:
        flags = QuantFlags(**{name: kwargs.pop(name) for name in _FLAG_NAMES if name in kwargs})
        return command(*args, flags=flags, **kwargs)

    return gathered


__all__ = ["QuantFlags", "QuantRequest", "compress_options", "compress_spec", "quant_flags", "quant_options",
           "quant_spec"]
