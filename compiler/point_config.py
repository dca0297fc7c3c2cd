"""One config file for quantization and compression together: a ``[compress]`` table.

``nnforge explore`` writes its chosen point as one file (``best.toml``): the quantization
config schema (docs/quant_config.md) plus an optional top-level ``compress`` table holding the
compression config's keys (docs/compression.md).  ``--config FILE`` of ``simulate``,
``quantize``, ``compress`` and ``compile`` reads such a file through ``split_config``: the
quantization part goes to ``parse_config`` and the ``compress`` table to ``parse_prune_config``,
so the file means exactly what the two configs given separately mean.

A file without a ``compress`` table is an ordinary quantization config and is passed on as it
was given (its path), so every message stays as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .compress.compress_config import CompressConfig, parse_prune_config
from .quant.quant_config import CONFIG_SUFFIXES, ConfigError, QuantConfig, parse_config

COMPRESS_KEY = "compress"


def split_config(spec: Any) -> tuple[Any, CompressConfig | None]:
    """``(quantization spec, compression config or None)`` of a ``--config`` value.

    ``spec`` that is not a file with a ``compress`` table is returned unchanged with None."""
    path = Path(spec) if isinstance(spec, (str, Path)) else None
    if path is None or not str(path).lower().endswith(CONFIG_SUFFIXES) or not path.is_file():
        return spec, None
    from . import config_files

    data = config_files.load(path, "config file")
    if not isinstance(data, dict) or COMPRESS_KEY not in data:
        return spec, None
    data = dict(data)
    table = data.pop(COMPRESS_KEY)
    try:
        quant = parse_config(data)
        comp = parse_prune_config({} if table is None else table)
    except ConfigError as e:
        raise ConfigError(f"{path.name}: {e}") from None
    return quant, comp


def read_point_config(path: str | Path) -> tuple[QuantConfig, CompressConfig | None]:
    """The quantization and compression configs of one file (``best.toml``)."""
    quant, comp = split_config(Path(path))
    return parse_config(quant), comp


__all__ = ["COMPRESS_KEY", "split_config", "read_point_config"]
