"""Accuracy against bit width: a grid of quantization settings, simulated bit-accurately.

Calibration statistics do not depend on the bit widths, so they are collected once and
shared by every point of the grid; each point then costs one quantization and one TVM build.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import asdict, dataclass

import numpy as np

from nnforge.model import Model
from nnforge.quantized import calibrate
from nnforge.simulate import simulate


@dataclass
class SweepPoint:
    weight_bits: int
    act_bits: int
    scale_mode: str
    calibration: str
    float_accuracy: float | None
    quant_accuracy: float | None
    agreement: float
    min_sqnr_db: float | None
    share_bits: int | None = None  # weight sharing of this point (None: no sharing)
    compression: str | None = None  # the compression settings in words (None: none)
    layer_sqnr_db: dict[str, float | None] | None = None  # per layer (None: exact); in sweep.json, not the CSV


def run_sweep(model: Model, data, labels, calib, weight_bits, act_bits, scale_modes, calibrations,
              batch_size: int = 256, on_point=None, compress=None, share_bits=(None,)) -> list[SweepPoint]:
    """Simulate every grid point.  ``compress`` (a CompressConfig or dict) prunes and shares at
    every point; ``share_bits`` adds sharing widths to the grid (None: as ``compress`` says)."""
    import dataclasses

    from nnforge.compiler.compress.compress_config import parse_prune_config

    from nnforge.compiler.quant.layers import float_layers

    layers, _ = float_layers(model.relax, model.output_names, model.onnx_names)
    stats = calibrate(model, calib, layers, batch_size)
    points = []
    base = parse_prune_config(compress)
    grid = list(itertools.product(weight_bits, act_bits, scale_modes, calibrations, share_bits))
    for i, (wb, ab, mode, method, k) in enumerate(grid):
        config = {"default": {"weight_bits": wb, "act_bits": ab, "scale_mode": mode, "calibration": method}}
        comp = base
        if k is not None:
            comp = dataclasses.replace(base, share_bits=k) if base is not None else parse_prune_config({"share_bits": k})
        # calib is passed for the lsq refinement only: the statistics are already collected
        _, rep = simulate(model, data, labels, config, calib=calib if comp is not None else None, stats=stats,
                          batch_size=batch_size, compress=comp)
        finite = [l.sqnr_db for l in rep.layers if np.isfinite(l.sqnr_db)]
        points.append(SweepPoint(wb, ab, mode, method, rep.float_accuracy, rep.quant_accuracy, rep.agreement,
                                 min(finite) if finite else None, None if comp is None else comp.share_bits,
                                 None if comp is None else comp.describe(),
                                 {l.name: (float(l.sqnr_db) if np.isfinite(l.sqnr_db) else None) for l in rep.layers}))
        if on_point:
            on_point(i + 1, len(grid), points[-1])
    return points


def table_files(points: list[SweepPoint]) -> dict[str, bytes]:
    rows = [asdict(p) for p in points]
    buf = io.StringIO()
    flat = [{k: v for k, v in r.items() if k != "layer_sqnr_db"} for r in rows]  # one value per CSV cell
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]))
    writer.writeheader()
    writer.writerows(flat)
    return {"sweep.csv": buf.getvalue().encode(), "sweep.json": json.dumps(rows, indent=1).encode()}


def plot_png(points: list[SweepPoint], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    key = lambda p: (p.act_bits, p.scale_mode, p.calibration, p.share_bits or 0)  # noqa: E731
    for k, group in itertools.groupby(sorted(points, key=key), key=key):
        group = sorted(group, key=lambda p: p.weight_bits)
        y = [p.quant_accuracy if p.quant_accuracy is not None else p.agreement for p in group]
        ax.plot([p.weight_bits for p in group], y, marker="o", label=f"a{k[0]} {k[1]} {k[2]}" + (f" shared {k[3]}b" if k[3] else ""))
    ref = points[0].float_accuracy
    if ref is not None:
        ax.axhline(ref, color="k", linestyle="--", linewidth=1, label="float")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("top-1 accuracy" if ref is not None else "top-1 agreement with float")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
