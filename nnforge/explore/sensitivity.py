"""Per-layer sensitivity: one knob of one layer moves, everything else stays at the safe baseline.

For every weighted layer and each knob (weight bits, activation bits, prune fraction, share
width) over a small grid, the point is evaluated bit-accurately like any trial: its quality
(accuracy or agreement), its drop against the float model, and its bytes (Huffman-coded, the
compression report's accounting).  All points go to the evaluators in one batch.

The table shrinks the search space (``shrink``).  Knobs interact: the lsq refinement of the
compression pass fits each layer to the float model's output from the already-compressed layers
before it, so a later pruned or shared layer wins back much of an earlier one's loss (on the
digits MLP, pruning the first layer 93% alone loses 3.1%, with the next layer pruned 93% too and
both shared, 0.4%).  So a value is cut only when it alone loses more than ``cut_drop`` (default
``max(10 * max_drop, 0.05)``): for each layer and knob, the most aggressive grid value within
``cut_drop`` and one grid step beyond it stay, anything further goes.  A knob that no grid value
tolerates keeps only values at least as safe as the grid's safest.  Seed points for the study
(``seeds``) put every knob at its own *limit* (the most aggressive value within ``max_drop``),
and halfway back toward the baseline.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import Any

from .space import BASELINE_BITS, BITS, PRUNE_MAX, SHARE, LayerSpace, SearchSpace

GRID: dict[str, tuple] = {
    "weight_bits": (6, 5, 4, 3, 2),
    "act_bits": (6, 5, 4, 3, 2),
    "prune": (0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.97),
    "share": (6, 5, 4, 3, 2),
}  # each from safe to aggressive
QUICK_GRID: dict[str, tuple] = {"weight_bits": (4, 2), "act_bits": (4,), "prune": (0.8, 0.95), "share": (3,)}


@dataclass
class SensitivityRow:
    layer: str
    knob: str
    value: float
    quality: float | None
    drop: float | None
    bytes: int | None
    error: str | None = None


def points(space: SearchSpace, grid: dict[str, tuple]) -> list[tuple[str, str, Any, dict]]:
    """``(layer, knob, value, params)`` for every grid point (the baseline with one knob moved)."""
    base = space.baseline()
    out = []
    for l in space.layers:
        for knob, values in grid.items():
            for v in values:
                params = dict(base)
                params[f"{l.name}:{knob}"] = v
                out.append((l.name, knob, v, params))
    return out


def rows(items: list[tuple[str, str, Any, dict]], results: list[dict], quality: str,
         reference: float) -> list[SensitivityRow]:
    """The table from the evaluated points; ``reference``: the float model's quality."""
    table = []
    for (layer, knob, value, _), r in zip(items, results):
        if "error" in r:
            table.append(SensitivityRow(layer, knob, value, None, None, None, r["error"]))
            continue
        q = r[quality]
        table.append(SensitivityRow(layer, knob, value, q, reference - q, r["bytes"]))
    return table


def _limit(table: list[SensitivityRow], layer: str, knob: str, max_drop: float, grid: tuple):
    """(most aggressive tolerated grid value or None, the one grid step beyond it or None)."""
    tolerated = [i for i, v in enumerate(grid)
                 if any(r.layer == layer and r.knob == knob and r.value == v and r.drop is not None
                        and r.drop <= max_drop for r in table)]
    if not tolerated:
        return None, None
    i = max(tolerated)
    return grid[i], (grid[i + 1] if i + 1 < len(grid) else None)


def cut_drop_for(max_drop: float) -> float:
    return max(10 * max_drop, 0.05)


def shrink(space: SearchSpace, table: list[SensitivityRow], max_drop: float,
           grid: dict[str, tuple], cut_drop: float | None = None) -> tuple[SearchSpace, dict[str, dict[str, Any]]]:
    """The space cut by the table (module docstring) and, per layer, each knob's limit."""
    cut = cut_drop_for(max_drop) if cut_drop is None else cut_drop
    layers, limits = [], {}
    for l in space.layers:
        lim: dict[str, Any] = {}
        new = LayerSpace(l.name, l.op, list(l.weight_bits), list(l.act_bits), l.prune_max, list(l.share))
        for knob in ("weight_bits", "act_bits"):
            if knob not in grid:
                continue
            lim[knob] = _limit(table, l.name, knob, max_drop, grid[knob])[0]
            limit, beyond = _limit(table, l.name, knob, cut, grid[knob])
            floor = beyond if beyond is not None else (limit if limit is not None else max(grid[knob]))
            if limit is None:  # nothing on the grid tolerated: only values at least as safe as its safest
                floor = max(grid[knob])
            setattr(new, knob, [b for b in getattr(new, knob) if b >= floor] or [BASELINE_BITS])
        if "prune" in grid:
            lim["prune"] = _limit(table, l.name, "prune", max_drop, grid["prune"])[0]
            safe = _limit(table, l.name, "prune", max_drop, grid["prune"][:1])[0]
            lim["prune_safe"] = safe if safe is not None else 0.0  # the grid's safest value, if within max_drop
            limit, beyond = _limit(table, l.name, "prune", cut, grid["prune"])
            top = beyond if beyond is not None else (limit if limit is not None else min(grid["prune"]))
            new.prune_max = min(l.prune_max, top, PRUNE_MAX)
        if "share" in grid:
            lim["share"] = _limit(table, l.name, "share", max_drop, grid["share"])[0]
            limit, beyond = _limit(table, l.name, "share", cut, grid["share"])
            floor = beyond if beyond is not None else (limit if limit is not None else max(grid["share"]))
            if limit is None:
                floor = max(grid["share"])
            new.share = [k for k in l.share if k == 0 or k >= floor]
        layers.append(new)
        limits[l.name] = lim
    return SearchSpace(layers, list(space.scale_modes), list(space.calibrations)), limits


LADDER = ((0.8, 4), (0.9, 4), (0.9, 3), (0.93, 3), (0.95, 3), (0.95, 2))  # (prune, share bits)


def seeds(space: SearchSpace, limits: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Points to try first.

    1. every knob at its own limit, and halfway between the baseline and it;
    2. a ladder of global settings (every layer pruned ``p`` and shared ``k`` bits, ``LADDER``),
       as a user would try by hand, for the search to refine per layer: each layer's prune
       capped by its range, the last weighted layer's by the grid's safest prune value (no later
       layer makes up for its loss, and its loss adds to everything upstream's), and weights at
       ``k + 1`` bits or the layer's limit if wider (a codebook of 2^k codes of k bits or fewer
       shares nothing).

    ``explore`` adds the uniform widths of the report's comparison after these.
    """
    base = space.baseline()
    at_limit, halfway = dict(base), dict(base)
    for name, lim in limits.items():
        for knob in ("weight_bits", "act_bits"):
            v = lim.get(knob)
            if v is not None:
                at_limit[f"{name}:{knob}"] = v
                halfway[f"{name}:{knob}"] = min(b for b in BITS if b >= (v + BASELINE_BITS) / 2)
        if lim.get("share"):
            at_limit[f"{name}:share"] = lim["share"]
            halfway[f"{name}:share"] = min(lim["share"] + 1, max(SHARE))
        if lim.get("prune") is not None:
            at_limit[f"{name}:prune"] = lim["prune"]
            halfway[f"{name}:prune"] = round(lim["prune"] * 0.9, 2)
    out = [at_limit, halfway]
    last = space.layers[-1].name if space.layers else None
    for p, k in LADDER:
        point = dict(base)
        for l in space.layers:
            lim = limits.get(l.name, {})
            cap = l.prune_max if l.name != last else lim.get("prune_safe", 0.0)
            point[f"{l.name}:prune"] = min(p, cap)
            point[f"{l.name}:share"] = k
            point[f"{l.name}:weight_bits"] = max(k + 1, lim.get("weight_bits") or k + 1)
        out.append(point)
    out = [space.clamp(p) for p in out]
    return [p for i, p in enumerate(out) if p not in out[:i]]


def to_json(table: list[SensitivityRow]) -> list[dict]:
    return [asdict(r) for r in table]


def from_json(items: list[dict]) -> list[SensitivityRow]:
    return [SensitivityRow(**d) for d in items]


def to_markdown(table: list[SensitivityRow], quality: str) -> str:
    """One row per layer and knob value: quality, drop, bytes."""
    lines = [f"| layer | knob | value | {quality} | drop | bytes |", "|---|---|---|---|---|---|"]
    for r in table:
        if r.error:
            lines.append(f"| `{r.layer}` | {r.knob} | {r.value:g} | failed: {r.error} | | |")
        else:
            lines.append(f"| `{r.layer}` | {r.knob} | {r.value:g} | {r.quality:.4f} | {100 * r.drop:+.2f}% | "
                         f"{r.bytes:,} |")
    return "\n".join(lines) + "\n"


def plot_png(table: list[SensitivityRow], quality: str, max_drop: float) -> bytes:
    """One panel per knob: the drop of each layer against the knob's value (max_drop dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knobs = list(dict.fromkeys(r.knob for r in table))
    fig, axes = plt.subplots(1, len(knobs), figsize=(4 * len(knobs), 3.4), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        for layer in dict.fromkeys(r.layer for r in table):
            pts = [(r.value, 100 * r.drop) for r in table if r.knob == knob and r.layer == layer and r.drop is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=layer)
        ax.axhline(100 * max_drop, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel(knob)
        ax.set_ylabel(f"{quality} drop (%)")
        ax.set_yscale("symlog", linthresh=1.0)
        if knob != "prune":
            ax.invert_xaxis()  # aggressive to the right, as for prune
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("sensitivity: one knob of one layer moved from w8a8, others at the baseline", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


__all__ = ["GRID", "QUICK_GRID", "SensitivityRow", "points", "rows", "shrink", "seeds", "to_json", "from_json",
           "to_markdown", "plot_png"]
