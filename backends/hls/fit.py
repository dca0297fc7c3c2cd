"""Does the design fit the part?  The estimates against a part's resources, and reuse factors
chosen to fit (``--option reuse_factor=auto``).

``PARTS`` holds the resources of a few common parts (AMD/Xilinx data sheets: DS962 for Alveo
U250, DS891 for Zynq UltraScale+, DS190 for Zynq-7000).  ``part_resources`` matches the
``part`` option by its device prefix (``xcu250-figd2104-2L-e`` is an ``xcu250``).

``auto_reuse`` picks one reuse factor per dense/conv layer.  Under DATAFLOW the slowest layer
sets the throughput, so the goal is the smallest worst-layer II whose design fits: for a target
II ``T`` each MAC layer takes the largest reuse factor that keeps its II <= ``T`` (fewest
multipliers for that II; II is ``R`` for dense, ``max(padded input, pixels * R)`` for conv), and
a binary search over ``T`` finds the smallest one whose summed estimates fit in the part.  The
other layers' IIs do not depend on reuse factors; they bound ``T`` from below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnforge.compiler.errors import InputError

from ..base import Design, LayerEstimate
from . import estimate as est

RESOURCES = ("dsp", "bram18", "lut", "ff")


class FitWarning(UserWarning):
    """The estimates of a design exceed the resources of its part."""


@dataclass(frozen=True)
class Part:
    name: str
    dsp: int
    bram18: int
    lut: int
    ff: int
    note: str = ""


PARTS = {
    "xcu250": Part("xcu250", dsp=12_288, bram18=5_376, lut=1_728_000, ff=3_456_000, note="Alveo U250 (also 1,280 URAM)"),
    "xczu9eg": Part("xczu9eg", dsp=2_520, bram18=1_824, lut=274_080, ff=548_160, note="Zynq UltraScale+ ZU9EG (ZCU102)"),
    "xc7z020": Part("xc7z020", dsp=220, bram18=280, lut=53_200, ff=106_400, note="Zynq-7000 Z-7020 (PYNQ-Z1/Z2, ZedBoard)"),
}


def part_resources(part: str) -> Part | None:
    """The table row whose device prefix ``part`` starts with (case-insensitive); None if none."""
    p = str(part).lower()
    for key in sorted(PARTS, key=len, reverse=True):
        if p.startswith(key):
            return PARTS[key]
    return None


def _sum(estimates: list[LayerEstimate]) -> dict[str, int]:
    return {r: int(sum(getattr(e, r) or 0 for e in estimates)) for r in RESOURCES}


def utilization(estimates: list[LayerEstimate], part: Part | None) -> dict[str, Any]:
    """Totals, percentages of the part, and whether everything fits (None without a part row)."""
    used = _sum(estimates)
    doc: dict[str, Any] = {"part": None if part is None else part.name, "used": used}
    if part is None:
        doc.update(available=None, percent=None, fits=None)
        return doc
    avail = {r: getattr(part, r) for r in RESOURCES}
    doc.update(available=avail, percent={r: round(100.0 * used[r] / avail[r], 2) for r in RESOURCES},
               fits=all(used[r] <= avail[r] for r in RESOURCES))
    return doc


def timing(estimates: list[LayerEstimate], clock_ns: float) -> dict[str, Any]:
    """Latency (layers in sequence) and throughput (one sample per worst II) at ``clock_ns``."""
    latency = sum(e.latency_cycles for e in estimates)
    ii = max((e.ii for e in estimates), default=0)
    bottleneck = max(estimates, key=lambda e: e.ii).name if estimates else None
    return {"clock_ns": clock_ns, "latency_cycles": latency, "latency_us": latency * clock_ns / 1000.0,
            "ii_cycles": ii, "interval_us": ii * clock_ns / 1000.0,
            "throughput_per_s": (1e9 / (ii * clock_ns)) if ii else None, "bottleneck": bottleneck}


# -- choosing reuse factors ------------------------------------------------------------------------

def _mac_layers(design: Design) -> list:
    return [k.node for k in design.kernels if k.node.op in est.MAC_OPS]


def _largest_reuse(node, graph, target: int, r_max: int) -> int | None:
    """The largest reuse factor in [1, r_max] whose II <= target (None when even 1 is too slow)."""
    if node.op == "dense":
        return min(target, r_max) if target >= 1 else None
    x = graph.tensors[node.inputs[0]]
    _, h, w = (int(d) for d in x.shape[1:])
    t, l, b, r = node.attrs.padding
    floor_ii = (h + t + b) * (w + l + r)  # reading the padded input
    pixels = int(est.mac_shape(graph, node).vectors)
    if target < max(floor_ii, pixels):
        return None
    return max(1, min(target // pixels, r_max))


def auto_reuse(design: Design, options: dict[str, Any], storage: dict[str, str], part: Part
               ) -> tuple[dict[str, int], list[LayerEstimate]]:
    """Per MAC layer, the reuse factor of the fastest design that fits ``part``; and its estimates.

    When even the largest reuse factors do not fit, the largest ones (the smallest design)."""
    graph = design.graph
    macs = _mac_layers(design)
    if not macs:
        return {}, est.estimate(design, {**options, "reuse_factor": 1}, storage=storage)
    # the most a reuse factor can save: one multiplier per layer
    r_max = {n.name: max(1, est.mac_shape(graph, n).k * est.mac_shape(graph, n).outputs) for n in macs}
    fixed = [e for e in est.estimate(design, {**options, "reuse_factor": 1}, storage=storage)
             if e.op not in est.MAC_OPS]
    fixed_ii = max((e.ii for e in fixed), default=1)

    def design_at(target: int) -> tuple[dict[str, int], list[LayerEstimate]] | None:
        rf = {}
        for n in macs:
            r = _largest_reuse(n, graph, target, r_max[n.name])
            if r is None:
                return None
            rf[n.name] = r
        return rf, est.estimate(design, {**options, "reuse_factor": {**rf, "default": 1}}, storage=storage)

    def fits(ests: list[LayerEstimate]) -> bool:
        used = _sum(ests)
        return all(used[r] <= getattr(part, r) for r in RESOURCES)

    lo = max(1, fixed_ii)
    while design_at(lo) is None:  # the conv layers' own floors
        lo *= 2
    hi = max(lo, max(r_max[n.name] * (1 if n.op == "dense" else est.mac_shape(graph, n).vectors) for n in macs))
    hi = max(hi, lo)
    slowest = design_at(hi)
    if not fits(slowest[1]):
        return slowest
    best = slowest
    lo_t, hi_t = lo, hi  # invariant: design_at(hi_t) fits
    while lo_t < hi_t:
        mid = (lo_t + hi_t) // 2
        cand = design_at(mid)
        if cand is not None and fits(cand[1]):
            hi_t, best = mid, cand
        else:
            lo_t = mid + 1
    return best


__all__ = ["FitWarning", "PARTS", "Part", "auto_reuse", "part_resources", "timing", "utilization"]
