"""Pareto local search: the next point to try is a one-knob step from a point on the front.

TPE alone, over 4 knobs per layer plus two global choices, spends most of a study of tens to a
few hundred trials far from the front (on the digits CNN, 40 TPE trials after the seeds added
one front point).  What works there is a walk: take a front point (feasible, non-dominated),
move one knob of one layer one step toward cheaper (fewer weight or activation bits, more
pruning, fewer sharing bits), and try it.  If it is not dominated it joins the front and is
walked from in turn (Paquete, Chiarandini and Stuetzle's Pareto local search).

The search is stateless: everything is read from the study's trials (those finished, running
or waiting), so a resumed study continues the walk where it stopped, and Ray workers need
nothing but the points.  ``propose`` returns the next point or None once every step from every
front point has been tried (then the study goes on with TPE).

Order: the front point with the fewest steps tried so far goes first (ties: the cheapest in
the first cost, the region ``best.toml`` comes from), so a new front point is walked at once
and the walk deepens where it finds improvements; from a point, steps go in the order of the
sensitivity table (the step whose knob value alone lost least first).  Only steps that can
lower one of the costs are taken: activation bits change ``macs-bits`` and a backend's
estimates, not the weight bytes; prune and share change the bytes, not ``macs-bits``.
"""

from __future__ import annotations

from typing import Any

from .sensitivity import SensitivityRow
from .space import SearchSpace

PRUNE_STEPS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
WIDTH_COSTS = ("macs-bits", "dsp", "lut", "cycles", "latency")  # costs that activation widths move
STORAGE_COSTS = ("bytes", "bytes-fixed", "dsp", "lut", "cycles", "latency")  # costs prune/share move


def point_key(params: dict[str, Any]) -> tuple:
    """A hashable identity of a point (prune values rounded to the space's step)."""
    return tuple(sorted((k, round(v, 2) if isinstance(v, float) else v) for k, v in params.items()))


def steps(space: SearchSpace, params: dict[str, Any], costs: list[str]) -> list[tuple[str, str, Any, dict]]:
    """``(layer, knob, new value, point)`` for every one-knob step toward cheaper from ``params``."""
    moves_acts = any(c in WIDTH_COSTS for c in costs)
    moves_storage = any(c in STORAGE_COSTS for c in costs)
    out = []
    for l in space.layers:
        name = l.name
        w, a = params[f"{name}:weight_bits"], params[f"{name}:act_bits"]
        k, p = params[f"{name}:share"], params.get(f"{name}:prune", 0.0)
        lower_w = [b for b in l.weight_bits if b < w]
        if lower_w:
            new_w = max(lower_w)
            point = dict(params, **{f"{name}:weight_bits": new_w})
            if k and k >= new_w:  # a codebook of 2^k codes of new_w <= k bits shares nothing: narrow it too
                narrower = [s for s in l.share if 0 < s < new_w]
                point[f"{name}:share"] = max(narrower) if narrower else 0
            out.append((name, "weight_bits", new_w, point))
        lower_a = [b for b in l.act_bits if b < a]
        if lower_a and moves_acts:
            out.append((name, "act_bits", max(lower_a), dict(params, **{f"{name}:act_bits": max(lower_a)})))
        if not moves_storage:
            continue
        more = [s for s in PRUNE_STEPS if s > p + 1e-9 and s <= l.prune_max + 1e-9]
        if more:
            out.append((name, "prune", more[0], dict(params, **{f"{name}:prune": more[0]})))
        narrower = [s for s in l.share if 0 < s < (k or w)]
        if narrower:
            out.append((name, "share", max(narrower), dict(params, **{f"{name}:share": max(narrower)})))
    return [(n, kn, v, space.clamp(pt)) for n, kn, v, pt in out]


def _damage(table: list[SensitivityRow], layer: str, knob: str, value) -> float:
    """What the step's knob value alone lost in the sensitivity table (nearest grid value; a
    value past the grid's end counts as its most aggressive one); 0 without a table."""
    rows = [r for r in table if r.layer == layer and r.knob == knob]
    if not rows:
        return 0.0
    r = min(rows, key=lambda r: abs(r.value - value))
    return 1.0 if r.drop is None else r.drop


def propose(space: SearchSpace, front: list, tried: set, costs: list[str],
            table: list[SensitivityRow]) -> dict[str, Any] | None:
    """The next step to try from ``front`` (records with ``params``, sorted by the first cost), or
    None when every step from every front point is in ``tried`` (``point_key``s)."""
    best = None
    for rank, rec in enumerate(front):
        options = steps(space, rec.params, costs)
        untried = [s for s in options if point_key(s[3]) not in tried]
        if not untried:
            continue
        done = len(options) - len(untried)
        untried.sort(key=lambda s: _damage(table, s[0], s[1], s[2]))
        if best is None or (done, rank) < best[0]:
            best = ((done, rank), untried[0][3])
    return None if best is None else best[1]


__all__ = ["PRUNE_STEPS", "point_key", "steps", "propose"]
