"""The synthesis figures in a project's report: ``report.json["synthesis"][target]`` and a
``## Synthesis`` section of ``report.md`` (rewritten between its markers on every run).

Next to the measured resources sit the analytic model's and the error; with place and route,
the Fmax, the critical path, and the latency per inference in microseconds, inferences per
second and GOPS computed from the Fmax and the cycles of the program (``systolic.json``'s
``total_cycles``: the exact cycle model, which RTL simulation checks cycle for cycle).  Only
deterministic figures go into the project (no run times, no paths outside it).
"""

from __future__ import annotations

import json
import re
from typing import Any

from nnforge.hw_sim import resource_model
from nnforge.hw_sim.devices import UNITS

MD_BEGIN = "<!-- nnforge synth: begin -->"
MD_END = "<!-- nnforge synth: end -->"


SHORT = {"ecp5": {"lut": "LUT4", "ff": "FF", "carry": "CCU2C", "dsp": "MULT18", "bram": "DP16KD", "lutram": "LUTRAM",
                  "mux": "MUX"},
         "xc7": {"lut": "LUT", "ff": "FF", "carry": "CARRY4", "dsp": "DSP48", "bram": "RAMB18", "lutram": "LUTRAM",
                 "mux": "MUXF7/8"},
         "generic": {"lut": "gates", "ff": "FF", "bram": "SRAMs"}}


def grouped_instances(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Instances that differ only in their generate indices (g_col[3].u_rq) folded into one row:
    ``instance`` with ``[*]``, ``count``, and the summed figures."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (re.sub(r"\[\d+\]", "[*]", r["instance"]), r["module"])
        if key not in out:
            out[key] = {**r, "instance": key[0], "count": 0}
            for k, v in r.items():
                if isinstance(v, int) and not isinstance(v, bool):
                    out[key][k] = 0
        g = out[key]
        g["count"] += 1
        for k, v in r.items():
            if isinstance(v, int) and not isinstance(v, bool):
                g[k] = (g[k] or 0) + v
    return list(out.values())


def error_pct(model: int, measured: int) -> float | None:
    """(model - measured) / measured in percent; None when yosys measured 0 and the model agrees."""
    if measured == 0:
        return 0.0 if model == 0 else None
    return round(100.0 * (model - measured) / measured, 1)


def compare(model: list[resource_model.UnitEstimate], synth) -> dict[str, Any]:
    """Analytic against measured: DSP and block RAM totals, and per unit where yosys' hierarchy names it."""
    mt = resource_model.totals(model)
    out: dict[str, Any] = {"totals": {}}
    for k in ("dsp", "bram"):
        out["totals"][k] = {"model": mt[k], "measured": synth.totals[k], "error_pct": error_pct(mt[k], synth.totals[k])}
    # the top's instances, each counted with its submodules: the multipliers are nnf_mul_reg cells
    # inside the PEs (all of nnf_gemm's DSPs), the requant units and the tap unit
    per_module = {}
    for m in synth.instances:
        per_module[m["module"]] = per_module.get(m["module"], 0) + m["dsp"]
    units = []
    for r in model:
        row = {"unit": r.name, "what": r.what, "model_dsp": r.dsp, "model_bram": r.bram,
               "measured_dsp": None, "measured_bram": None}
        if r.name == "array":
            row["measured_dsp"] = per_module.get("nnf_gemm", 0)
        elif r.name == "requant":
            row["measured_dsp"] = per_module.get("nnf_requant", 0)
        elif r.name == "agen":
            row["measured_dsp"] = per_module.get("nnf_tap_agen", 0)
        if r.sram_bits:
            hits = [x for x in synth.rams if r.name in x["path"].lower()]
            if hits:
                row["measured_bram"] = sum(x["bram"] for x in hits)
                row["ram_instances"] = [x["path"] for x in hits]
        units.append(row)
    out["units"] = units
    return out


def performance(fmax_mhz: float, cycles: int | None, macs: int | None, rows: int, cols: int,
                clock_source: str) -> dict[str, Any] | None:
    """Latency and throughput of one inference at ``fmax_mhz``."""
    if not cycles:
        return None
    per_s = fmax_mhz * 1e6 / cycles
    perf = {"clock_mhz": round(fmax_mhz, 2), "clock_source": clock_source, "cycles_per_inference": int(cycles),
            "latency_us": round(cycles / fmax_mhz, 3), "inferences_per_s": round(per_s, 1),
            "peak_gops": round(2 * rows * cols * fmax_mhz / 1e3, 3)}
    if macs:
        perf["macs_per_inference"] = int(macs)
        perf["gops"] = round(2 * macs * per_s / 1e9, 4)
        perf["array_utilization"] = round(macs / (cycles * rows * cols), 4)
    return perf


def _cycles_and_macs(manifest: dict, report: dict | None) -> tuple[int | None, int | None, str]:
    cycles = manifest.get("total_cycles")
    macs = sum(int(l.get("macs") or 0) for l in manifest.get("layers", [])) or None
    source = "systolic.json total_cycles (cycle model)"
    if report:
        totals = report.get("totals", {})
        if totals.get("measured_cycles"):
            cycles, source = totals["measured_cycles"], "report.json totals.measured_cycles (RTL simulation)"
        elif cycles is None:
            ks = [k.get("predicted_cycles") for k in report.get("kernels", [])]
            if ks and all(k is not None for k in ks):
                cycles, source = sum(ks), "report.json kernels' predicted_cycles"
        if macs is None:
            macs = sum(int(k.get("macs") or 0) for k in report.get("kernels", [])) or None
    return cycles, macs, source


def build_entry(run) -> dict[str, Any]:
    """report.json["synthesis"][target] for one run."""
    s, d = run.synth, run.device
    entry: dict[str, Any] = {
        "target": d.target, "part": d.part, "family": d.family, "tool": s.tool, "top": s.top,
        "parameters": s.parameters, "resources": s.totals, "capacity": d.capacity() if d.family != "generic" else None,
        "units": UNITS[d.family], "instances": s.instances, "modules": s.modules,
        "model": {"units": [vars(r) for r in run.model], "totals": resource_model.totals(run.model)},
        "model_vs_measured": compare(run.model, s),
        "files": run.files,
    }
    if d.family == "generic":
        entry["generic"] = {"transistors": s.transistors, "transistors_complete": s.transistors_complete,
                            "sram_bits": s.sram_bits, "sram_transistors_6t": 6 * s.sram_bits,
                            "memories": s.memories}
    rows, cols = int(s.parameters.get("ROWS", 0)), int(s.parameters.get("COLS", 0))
    cycles, macs, source = _cycles_and_macs(run.project.manifest, run.project.report)
    entry["pnr"] = None
    if run.pnr is not None:
        entry["pnr"] = run.pnr.report_dict()
        fmax, clock = run.pnr.fmax_mhz, "nextpnr Fmax"
    else:
        fmax, clock = run.freq_mhz, "--freq target (no place and route)"
    entry["performance"] = performance(fmax, cycles, macs, rows, cols, clock) if fmax else None
    if entry["performance"]:
        entry["performance"]["cycles_source"] = source
    entry["bitstream"] = "synth/top.bit" if run.bitstream else None
    return entry


def update_project(run) -> dict[str, Any]:
    """Add this run to report.json (``synthesis`` by target) and rewrite report.md's section."""
    path = run.project.path
    entry = build_entry(run)
    report_path = path / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    synthesis = dict(report.get("synthesis") or {})
    synthesis[run.device.target] = entry
    report["synthesis"] = dict(sorted(synthesis.items()))
    files = [f for f in report.get("files", []) if not f.startswith("synth/")]
    report["files"] = sorted(set(files) | set(run.files)) if "files" in report else report.get("files")
    if report["files"] is None:
        report.pop("files")
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path = path / "report.md"
    md = md_path.read_text() if md_path.is_file() else ""
    md_path.write_text(replace_section(md, markdown(report["synthesis"])))
    return entry  # report.html, where the project has one, is the facade's to refresh (nnforge synth does)


def replace_section(md: str, section: str) -> str:
    block = f"{MD_BEGIN}\n{section.rstrip()}\n{MD_END}\n"
    if MD_BEGIN in md and MD_END in md:
        head, rest = md.split(MD_BEGIN, 1)
        tail = rest.split(MD_END, 1)[1].lstrip("\n")
        return head + block + tail
    return (md.rstrip() + "\n\n" if md.strip() else "") + block


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def markdown(synthesis: dict[str, dict[str, Any]]) -> str:
    """The ``## Synthesis`` section: one subsection per target synthesized."""
    lines = ["## Synthesis", "",
             "Measured by `nnforge synth` (yosys from YoWASP; nextpnr-ecp5 for place and route). "
             "The analytic model is nnforge's prediction from the parameters (docs/systolic.md, \"Synthesis\").", ""]
    for target, e in synthesis.items():
        u = e["units"]
        lines += [f"### {target}: {e['part']}", "", f"Tool: {e['tool']}.", ""]
        cats = ["lut", "ff", "carry", "dsp", "bram", "lutram", "mux"] if e["family"] != "generic" else ["lut", "ff", "bram"]
        names = SHORT[e["family"]]
        lines.append("| instance | module | n | " + " | ".join(names[k] for k in cats) + " |")
        lines.append("|---|---|---:|" + "---:|" * len(cats))
        for r in grouped_instances(e["instances"]):
            lines.append(f"| {r['instance']} | {r['module']} | {r['count']} | " + " | ".join(_fmt(r[k]) for k in cats)
                         + " |")
        tot = e["resources"]
        lines.append("| **total** | | | " + " | ".join(f"**{_fmt(tot[k])}**" for k in cats) + " |")
        if e.get("capacity"):
            cap = e["capacity"]
            lines.append("| device | | | " + " | ".join(_fmt(cap.get(k)) if k in cap else "" for k in cats) + " |")
        lines.append("")
        mv = e["model_vs_measured"]
        lines += ["| resource | analytic model | yosys | error |", "|---|---:|---:|---:|"]
        for k, v in mv["totals"].items():
            err = "-" if v["error_pct"] is None else f"{v['error_pct']:+.1f}%"
            lines.append(f"| {u.get(k, k)} | {v['model']} | {v['measured']} | {err} |")
        lines.append("")
        if e.get("generic"):
            g = e["generic"]
            t = g["transistors"]
            lines += [f"ASIC view: {t:,}{'' if g['transistors_complete'] else '+'} transistors of logic "
                      f"(`stat -tech cmos`), plus {g['sram_bits']:,} bits in memories "
                      f"({g['sram_transistors_6t']:,} transistors as 6T SRAM cells, periphery excluded).", ""]
        p = e.get("pnr")
        if p:
            clocks = ", ".join(f"{c} {v['achieved']:.1f} MHz ({'meets' if v['met'] else 'misses'} "
                               f"{v['constraint']:g})" for c, v in p["fmax"].items())
            lines += [f"Place and route ({p['part']}-{p['package']}, seed {p['seed']}): Fmax {clocks}.", ""]
            cp = p.get("critical_path")
            if cp:
                lines += [f"Critical path: {cp['delay_ns']:.2f} ns from `{cp['start']}` to `{cp['end']}` "
                          f"({cp['logic_levels']} logic steps; logic {cp['logic_ns']:.2f} ns, routing "
                          f"{cp['routing_ns']:.2f} ns, clock-to-out {cp['clk_to_q_ns']:.2f} ns).", ""]
                if cp.get("sources"):
                    lines += ["RTL on the path: " + ", ".join(f"`{s}`" for s in cp["sources"][:8]), ""]
            used = {k: v for k, v in p["utilization"].items()
                    if k in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_IO", "TRELLIS_RAMW")}
            if used:
                lines.append("Utilization: " + ", ".join(f"{k} {v['used']}/{v['available']}"
                                                        f" ({100 * v['used'] / v['available']:.0f}%)"
                                                        for k, v in used.items()) + ".")
                lines.append("")
        perf = e.get("performance")
        if perf:
            lines += [f"At {perf['clock_mhz']:g} MHz ({perf['clock_source']}): {perf['cycles_per_inference']:,} cycles "
                      f"per inference = {perf['latency_us']:g} µs, {perf['inferences_per_s']:,.0f} inferences/s"
                      + (f", {perf['gops']:g} GOPS of {perf['peak_gops']:g} peak "
                         f"(array utilization {100 * perf['array_utilization']:.1f}%)" if "gops" in perf else "")
                      + ".", ""]
        if e.get("bitstream"):
            lines += [f"Bitstream: `{e['bitstream']}`; pins in `synth/top.lpf` are placeholders.", ""]
    return "\n".join(lines)
