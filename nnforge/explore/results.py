"""What a study found: its trials as records, the Pareto front, the chosen point, and the files.

* **Front**: the finished, feasible trials (drop <= max_drop) that no other feasible trial
  dominates on (quality up, every cost down); ties (equal values) keep the lowest trial number.
* **Best**: the feasible trial with the lowest first cost; ties go to the higher quality, then to
  the lower other costs, then to the lower trial number.  It is always on the front.
* **Files** (``files``): ``pareto.csv``, ``pareto.json``, ``pareto.png``, ``best.toml`` (accepted
  as it is by ``nnforge compile/simulate/compress/quantize --config``), ``report.md`` and
  ``report.html`` (the same, one self-contained page).  They
  hold no timestamps and no absolute paths: the same study gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from . import space as space_mod

METRICS = ("accuracy", "agreement", "drop", "bytes", "bytes-fixed", "compression_ratio", "macs-bits", "dsp", "lut",
           "cycles", "latency")


@dataclass
class TrialRecord:
    """One finished trial: its point, its two configs, and every metric measured."""

    number: int
    params: dict[str, Any]
    quant: dict[str, Any]
    compress: dict[str, Any] | None
    values: dict[str, Any]
    feasible: bool
    describe: str = ""

    def quant_config(self):
        """The ``QuantConfig`` of this point (``nnforge.quantize(model, calib, it, compress=...)``)."""
        from nnforge.compiler.quant.quant_config import parse_config

        return parse_config(self.quant)

    def compress_config(self):
        """The ``CompressConfig`` of this point, or None when nothing is pruned or shared."""
        from nnforge.compiler.compress.compress_config import parse_prune_config

        return parse_prune_config(self.compress)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "feasible": self.feasible, "describe": self.describe,
                "values": {k: self.values.get(k) for k in METRICS if k in self.values},
                "config": {**self.quant, **({"compress": self.compress} if self.compress else {})}}


@dataclass
class ExploreResult:
    """``nnforge.explore``'s answer (``to_dict`` is the ``--json`` object)."""

    quality: str
    costs: list[str]
    max_drop: float
    float_quality: float
    float_bytes: int
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    best: TrialRecord | None
    sensitivity: list = field(default_factory=list)
    space: dict = field(default_factory=dict)
    uniform: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine: str = ""
    failed: int = 0
    holdout: dict | None = None  # explore(holdout=F): the front and best simulated on held-out data

    def to_dict(self) -> dict[str, Any]:
        return {"quality": self.quality, "costs": self.costs, "max_drop": self.max_drop,
                "float_quality": self.float_quality, "float_bytes": self.float_bytes, "engine": self.engine,
                "trials": len(self.trials), "failed_trials": self.failed,
                "pareto": [r.to_dict() for r in self.pareto],
                "best": None if self.best is None else self.best.to_dict(),
                "uniform": self.uniform, "notes": self.notes,
                **({"holdout": self.holdout} if self.holdout is not None else {})}


def records(study, quality: str, costs: list[str]) -> list[TrialRecord]:
    """Every finished trial of ``study`` as a record, in trial order."""
    from optuna.trial import TrialState

    layer_names = [l["name"] for l in study.user_attrs.get("space", {}).get("layers", [])]
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        names = layer_names or sorted({k.rsplit(":", 1)[0] for k in t.params if ":" in k})
        params = {k: t.params.get(k, 0.0 if k.endswith(":prune") else None) for k in _param_keys(names)}
        quant, comp = space_mod.configs(params, names)
        values = {k: t.user_attrs.get(k) for k in METRICS if k in t.user_attrs}
        cons = t.system_attrs.get("constraints")
        feasible = cons is not None and all(c <= 0 for c in cons)
        out.append(TrialRecord(t.number, params, quant, comp, values, feasible, space_mod.describe(params, names)))
    return out


def _param_keys(names: list[str]) -> list[str]:
    keys = [f"{n}:{k}" for n in names for k in ("weight_bits", "act_bits", "prune", "share")]
    return keys + ["scale_mode", "calibration"]


def _dominates(a: TrialRecord, b: TrialRecord, quality: str, costs: list[str]) -> bool:
    ge = a.values[quality] >= b.values[quality] and all(a.values[c] <= b.values[c] for c in costs)
    gt = a.values[quality] > b.values[quality] or any(a.values[c] < b.values[c] for c in costs)
    return ge and gt


def pareto(recs: list[TrialRecord], quality: str, costs: list[str]) -> list[TrialRecord]:
    """The feasible non-dominated records, one per distinct objective vector (the lowest trial
    number), by first cost.

    In the order (first cost, -quality, other costs, number) every record's dominators come
    before it, and a dominated dominator's own dominator dominates it too, so comparing each
    record with the front kept so far suffices: O(records x front), not O(records^2) (this runs
    before every local search step)."""
    order = sorted((r for r in recs if r.feasible),
                   key=lambda r: (r.values[costs[0]], -r.values[quality], *[r.values[c] for c in costs[1:]],
                                  r.number))
    front, seen = [], set()
    for r in order:
        key = tuple([r.values[quality]] + [r.values[c] for c in costs])
        if key in seen or any(_dominates(o, r, quality, costs) for o in front):
            continue
        seen.add(key)
        front.append(r)
    return sorted(front, key=lambda r: (r.values[costs[0]], -r.values[quality], r.number))


def choose(recs: list[TrialRecord], quality: str, costs: list[str]) -> TrialRecord | None:
    feasible = [r for r in recs if r.feasible]
    return min(feasible, key=lambda r: (r.values[costs[0]], -r.values[quality],
                                        *[r.values[c] for c in costs[1:]], r.number), default=None)


def cheapest_at(recs: list[TrialRecord], quality: str, cost: str, at_least: float) -> TrialRecord | None:
    """The lowest-``cost`` record whose quality is at least ``at_least`` (any, feasible or not)."""
    ok = [r for r in recs if r.values.get(quality) is not None and r.values[quality] >= at_least - 1e-12]
    return min(ok, key=lambda r: (r.values[cost], -r.values[quality], r.number), default=None)


# -- files --------------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").isalnum() else json.dumps(k)


def best_toml(rec: TrialRecord, quality: str, costs: list[str]) -> str:
    """``best.toml``: the point's quantization config and its ``[compress]`` table."""
    lines = [f"# nnforge explore: trial {rec.number}, {quality} {rec.values[quality]:.4f} "
             f"(drop {100 * rec.values['drop']:+.2f}%), "
             + ", ".join(f"{c} {rec.values[c]:,.6g}" for c in costs),
             "# nnforge compile MODEL.onnx --calib CALIB.npz --config best.toml ...", ""]
    lines.append("[default]")
    lines += [f"{k} = {_toml_value(v)}" for k, v in rec.quant["default"].items()]
    for name, table in rec.quant["layers"].items():
        lines += ["", f"[layers.{_toml_key(name)}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    if rec.compress:
        lines += ["", "[compress]"] + [f"{k} = {_toml_value(v)}" for k, v in rec.compress.items()
                                       if not isinstance(v, dict)]
        for key, table in rec.compress.items():
            if isinstance(table, dict):
                lines += ["", f"[compress.{key}]"] + [f"{_toml_key(n)} = {_toml_value(v)}" for n, v in table.items()]
    return "\n".join(lines) + "\n"


def pareto_csv(front: list[TrialRecord], quality: str, costs: list[str]) -> str:
    cols = ["trial", quality, "drop"] + [c for c in METRICS if c not in (quality, "drop")
                                         and any(c in r.values for r in front)] + ["settings"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in front:
        w.writerow([r.number] + [_fmt(r.values.get(c)) for c in cols[1:-1]] + [r.describe])
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_png(result: ExploreResult) -> bytes:
    """Quality against each cost: every trial, the front highlighted, the float baseline, the
    max-drop line, and the chosen point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, costs = result.quality, result.costs
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 3.8), squeeze=False)
    for ax, c in zip(axes[0], costs):
        pts = [(r.values[c], r.values[q]) for r in result.trials if r.values.get(c) is not None]
        bad = [(r.values[c], r.values[q]) for r in result.trials if not r.feasible and r.values.get(c) is not None]
        if pts:
            ax.scatter(*zip(*pts), s=10, color="0.7", label="trials")
        if bad:
            ax.scatter(*zip(*bad), s=10, color="tab:red", alpha=0.4, label="over --max-drop")
        front = sorted((r.values[c], r.values[q]) for r in result.pareto)
        if front:
            ax.plot(*zip(*front), marker="o", color="tab:blue", label="Pareto front")
        for u in result.uniform:
            if u.get(c) is not None:
                ax.scatter([u[c]], [u[q]], marker="s", color="tab:green", s=22)
                ax.annotate(u["name"], (u[c], u[q]), fontsize=6, xytext=(3, -8), textcoords="offset points")
        if result.best is not None:
            ax.scatter([result.best.values[c]], [result.best.values[q]], marker="*", s=140, color="tab:orange",
                       zorder=5, label="best.toml")
        ax.axhline(result.float_quality, color="k", linewidth=0.8, label="float")
        ax.axhline(result.float_quality - result.max_drop, color="k", linestyle="--", linewidth=0.8,
                   label="float - max drop")
        if pts and min(p[0] for p in pts) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(c)
        ax.set_ylabel(q)
        lo = result.float_quality - max(0.1, 4 * result.max_drop)
        ax.set_ylim(max(0.0, lo), min(1.0, result.float_quality + 0.02))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def report_md(result: ExploreResult, model_name: str, sensitivity_md: str) -> str:
    q, costs = result.quality, result.costs
    out = [f"# nnforge explore: {model_name}", ""]
    out.append(f"Quality: {q} (float model {result.float_quality:.4f}); costs: {', '.join(costs)}; "
               f"constraint: drop <= {100 * result.max_drop:g}%. {len(result.trials)} finished trials"
               f" ({result.failed} failed), simulator: {result.engine}. Float32 weights: {result.float_bytes:,} bytes.")
    out += [""] + [f"* {n}" for n in result.notes] + ([""] if result.notes else [])
    b = result.best
    out += ["## Chosen point (best.toml)", ""]
    if b is None:
        out.append("No trial met the constraint.")
    else:
        ratio = result.float_bytes / b.values["bytes"] if b.values.get("bytes") else math.nan
        out.append(f"Trial {b.number}: {q} {b.values[q]:.4f} (drop {100 * b.values['drop']:+.2f}%), "
                   + ", ".join(f"{c} {b.values[c]:,.6g}" for c in costs)
                   + f"; {ratio:.1f}x smaller than float32 (Huffman-coded bytes), "
                     f"{b.params['scale_mode']} scales, {b.params['calibration']} calibration.")
        out += ["", "| layer | weight bits | act bits | prune | share bits |", "|---|---|---|---|---|"]
        for name in b.quant["layers"]:
            share = b.params[f"{name}:share"]
            out.append(f"| `{name}` | {b.params[f'{name}:weight_bits']} | {b.params[f'{name}:act_bits']} | "
                       f"{b.params.get(f'{name}:prune', 0.0):.2f} | {share or '-'} |")
    h = result.holdout
    if h is not None:
        out += ["", "## Held-out check", "",
                f"{h['samples']} of the data's samples ({100 * h['fraction']:.0f}%) were kept out of the search; the "
                f"front and the chosen point simulated on them (float model {h['float_quality']:.4f}):", "",
                f"| trial | {q} (search) | {q} (held out) | drop (held out) |", "|---|---|---|---|"]
        recs = {r.number: r for r in result.pareto + ([b] if b is not None else [])}
        for n, v in h["trials"].items():
            mark = " (best.toml)" if b is not None and int(n) == b.number else ""
            out.append(f"| {n}{mark} | {recs[int(n)].values[q]:.4f} | "
                       + ("failed |" if v is None else f"{v:.4f} | {100 * (h['float_quality'] - v):+.2f}% |"))
    out += ["", "## Pareto front", "", "| trial | " + q + " | drop | " + " | ".join(costs) + " | settings |",
            "|---|---|---|" + "---|" * len(costs) + "---|"]
    for r in result.pareto:
        out.append(f"| {r.number} | {r.values[q]:.4f} | {100 * r.values['drop']:+.2f}% | "
                   + " | ".join(f"{r.values[c]:,.6g}" for c in costs) + f" | {r.describe} |")
    if result.uniform:
        out += ["", "## Against uniform widths", "",
                "For each uniform setting (every layer alike, nothing pruned or shared): the cheapest trial at "
                "least as good.", "",
                f"| uniform | {q} | " + " | ".join(costs) + " | cheapest trial as good | " +
                " | ".join(f"{c} saved" for c in costs) + " |",
                "|---|---|" + "---|" * len(costs) + "---|" + "---|" * len(costs)]
        for u in result.uniform:
            cells = []
            match = None
            for c in costs:
                match = cheapest_at(result.trials, q, c, u[q])
                cells.append("-" if match is None or not u.get(c) else f"{100 * (1 - match.values[c] / u[c]):.0f}%")
            first = cheapest_at(result.trials, q, costs[0], u[q])
            out.append(f"| {u['name']} | {u[q]:.4f} | " + " | ".join(f"{u[c]:,.6g}" for c in costs) + " | "
                       + ("-" if first is None else f"{first.number} ({first.describe})") + " | "
                       + " | ".join(cells) + " |")
    out += ["", "## Sensitivity", "",
            "One knob of one layer moved, every other setting at w8a8 and uncompressed (sensitivity.png).", "",
            sensitivity_md]
    return "\n".join(out)


def _cost(v) -> str:
    """A cost in full (3,706,880, not 3.70688e+06) when whole."""
    return f"{int(v):,}" if isinstance(v, (int, float)) and float(v).is_integer() else f"{v:,.6g}"


def report_html(result: ExploreResult, model_name: str, pareto_png: bytes, sensitivity_png: bytes | None) -> str:
    """``report.html``: report.md's content as one self-contained page (nnforge.report_html's parts)."""
    from nnforge import report_html as rh

    q, costs, b = result.quality, result.costs, result.best
    summary = [(f"{result.float_quality:.4f}", f"float {q}"), (f"{len(result.trials):,}", "finished trials"),
               (f"{len(result.pareto):,}", "points on the front"), (f"{result.float_bytes:,}", "float32 weight bytes")]
    chosen = "<p>No trial met the constraint.</p>"
    if b is not None:
        ratio = result.float_bytes / b.values["bytes"] if b.values.get("bytes") else math.nan
        summary += [(f"{b.values[q]:.4f}", f"chosen {q} (drop {100 * b.values['drop']:+.2f}%)"),
                    (f"{ratio:.1f}x", "smaller than float32")]
        rows = [[name, b.params[f"{name}:weight_bits"], b.params[f"{name}:act_bits"],
                 f"{b.params.get(f'{name}:prune', 0.0):.2f}", b.params[f"{name}:share"] or "-"]
                for name in b.quant["layers"]]
        chosen = (f"<p>Trial {b.number}: {rh.esc(', '.join(f'{c} {_cost(b.values[c])}' for c in costs))}; "
                  f"{rh.esc(b.params['scale_mode'])} scales, {rh.esc(b.params['calibration'])} calibration "
                  f"(best.toml).</p>" + rh.table(["layer", "weight bits", "act bits", "prune", "share bits"], rows,
                                                 numeric=(1, 2, 3)))
    front = rh.table(["trial", q, "drop", *costs, "settings"],
                     [[r.number, f"{r.values[q]:.4f}", f"{100 * r.values['drop']:+.2f}%",
                       *(_cost(r.values[c]) for c in costs), r.describe] for r in result.pareto],
                     numeric=range(0, 3 + len(costs)),
                     flagged=[i for i, r in enumerate(result.pareto) if b is not None and r.number == b.number])
    sections = [rh.Section("Summary", rh.cards(summary)
                           + "".join(f'<p class="note">{rh.esc(n)}</p>' for n in result.notes)),
                rh.Section("Chosen point", chosen),
                rh.Section("Pareto front", front + rh.png_img(pareto_png, f"{q} against each cost"))]
    h = result.holdout
    if h is not None:
        recs = {r.number: r for r in result.pareto + ([b] if b is not None else [])}
        rows = [[n, f"{recs[int(n)].values[q]:.4f}", "failed" if v is None else f"{v:.4f}",
                 "" if v is None else f"{100 * (h['float_quality'] - v):+.2f}%"] for n, v in h["trials"].items()]
        sections.append(rh.Section("Held-out check", f"<p>{h['samples']} samples kept out of the search (float "
                                   f"{h['float_quality']:.4f}).</p>"
                                   + rh.table(["trial", f"{q} (search)", f"{q} (held out)", "drop (held out)"], rows,
                                              numeric=(0, 1, 2, 3))))
    if sensitivity_png is not None:
        sections.append(rh.Section("Sensitivity", "<p>One knob of one layer moved, every other setting at w8a8 and "
                                   "uncompressed.</p>" + rh.png_img(sensitivity_png, "sensitivity")))
    return rh.html_page(f"nnforge explore: {model_name}", sections,
                        f"quality {q}; costs {', '.join(costs)}; drop <= {100 * result.max_drop:g}%; "
                        f"simulator {result.engine}")


def files(result: ExploreResult, model_name: str, sensitivity_md: str, sensitivity_png: bytes | None,
          sensitivity_json: list) -> dict[str, bytes]:
    """Every result file, by name."""
    doc = result.to_dict()
    out = {"pareto.csv": pareto_csv(result.pareto, result.quality, result.costs).encode(),
           "pareto.json": (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(),
           "pareto.png": plot_png(result),
           "report.md": report_md(result, model_name, sensitivity_md).encode(),
           "sensitivity.json": (json.dumps(sensitivity_json, indent=1) + "\n").encode()}
    if sensitivity_png is not None:
        out["sensitivity.png"] = sensitivity_png
    out["report.html"] = report_html(result, model_name, out["pareto.png"], sensitivity_png).encode()
    if result.best is not None:
        out["best.toml"] = best_toml(result.best, result.quality, result.costs).encode()
    return out


__all__ = ["TrialRecord", "ExploreResult", "records", "pareto", "choose", "cheapest_at", "best_toml", "report_html", "files"]
