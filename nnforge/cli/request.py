"""The quantization and compression flags of ``simulate``, ``quantize``, ``compress`` and
``compile``, and the one validated request they make (``QuantFlags.request``)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from nnforge.compiler.errors import InputError, shown


def quant_spec(bits: str | None, config: str | None):
    """The quantization spec ``parse_config`` reads: ``--bits``, the ``--config`` file's, or w8a8."""
    if bits and config:
        raise click.UsageError("give either --bits or --config, not both")
    if config:  # a [compress] table (explore's best.toml) is read by _compress_spec
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
