"""What ``nnforge synth`` prints: rich tables of a ``SynthRun``, or one JSON object."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nnforge.hw_sim.synth_report import SHORT, error_pct, grouped_instances


def run_json(run) -> dict[str, Any]:
    """The report entry plus this run's times and where its files are."""
    return {**run.entry, "project": str(run.project.path), "times": run.times,
            "cache": {"synth": run.synth.workdir, "pnr": run.pnr.workdir if run.pnr else None}}


def _n(v) -> str:
    return "-" if v is None else f"{v:,}"


def print_run(run, console: Console) -> None:
    if not console.is_terminal and console.width < 132:  # a pipe or a log: room for the resource columns
        console = Console(width=132)
    e, s, d = run.entry, run.synth, run.device
    say = lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)
    u = e["units"]
    generic = d.family == "generic"
    cats = ["lut", "ff", "bram"] if generic else ["lut", "ff", "carry", "dsp", "bram", "lutram", "mux"]
    names = SHORT[d.family]
    table = Table(title=f"{escape(s.top)} on {escape(d.part)} (yosys, per instance)", header_style="bold",
                  show_footer=True)
    table.add_column("instance", footer="total", overflow="fold")
    table.add_column("module", overflow="fold")
    table.add_column("n", justify="right")
    for k in cats:
        table.add_column(names.get(k, k), justify="right", footer=_n(s.totals[k]))
    if generic:
        table.add_column("transistors", justify="right", footer=_n(s.transistors))
    for r in grouped_instances(s.instances):
        row = [escape(r["instance"]), escape(r["module"]), str(r["count"])] + [_n(r[k]) for k in cats]
        if generic:
            row.append(_n(r.get("transistors")))
        table.add_row(*row)
    console.print(table)
    if not generic:
        cap = d.capacity()
        say("device: " + ", ".join(f"{u[k]} {s.totals[k]:,}/{cap[k]:,} ({100 * s.totals[k] / cap[k]:.1f}%)"
                                   for k in ("lut", "ff", "dsp", "bram") if cap[k]))
        mt = Table(title="analytic model against yosys", header_style="bold")
        for col in ("unit", "what", f"{names['dsp']} model", "yosys", f"{names['bram']} model", "yosys "):
            mt.add_column(col, justify="left" if col in ("unit", "what") else "right",
                          overflow="fold", ratio=3 if col == "what" else None)
        for r in e["model_vs_measured"]["units"]:
            mt.add_row(r["unit"], escape(r["what"]), _n(r["model_dsp"]), _n(r["measured_dsp"]), _n(r["model_bram"]),
                       _n(r["measured_bram"]))
        tot = e["model_vs_measured"]["totals"]
        mt.add_row("total", "", _n(tot["dsp"]["model"]), _n(tot["dsp"]["measured"]), _n(tot["bram"]["model"]),
                   _n(tot["bram"]["measured"]))
        console.print(mt)
        for k in ("dsp", "bram"):
            err = error_pct(tot[k]["model"], tot[k]["measured"])
            say(f"model error, {u[k]}: " + ("-" if err is None else f"{err:+.1f}%"))
    else:
        g = e["generic"]
        say(f"ASIC view: {g['transistors']:,}{'' if g['transistors_complete'] else '+'} transistors of logic "
            f"(yosys stat -tech cmos), {g['sram_bits']:,} memory bits ({g['sram_transistors_6t']:,} transistors as "
            f"6T SRAM cells); cell mix: " + ", ".join(f"{c.strip('$_')} {n:,}" for c, n in s.cells.items()
                                                     if c.startswith("$_")))
    if run.pnr is not None:
        p = run.pnr
        for clk, v in p.fmax.items():
            say(f"Fmax {clk}: {v['achieved']:.2f} MHz ({'meets' if v['met'] else 'MISSES'} the {v['constraint']:g} MHz "
                f"target) on {p.part}-{p.package}")
        cp = p.critical_path
        if cp:
            say(f"critical path: {cp['delay_ns']:.2f} ns, {cp['start']} -> {cp['end']} ({cp['logic_levels']} logic "
                f"steps; logic {cp['logic_ns']:.2f} ns, routing {cp['routing_ns']:.2f} ns, clk-to-q "
                f"{cp['clk_to_q_ns']:.2f} ns)")
            if cp["sources"]:
                say("  RTL on the path: " + ", ".join(cp["sources"][:10]))
        util = {k: v for k, v in p.utilization.items() if k in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD",
                                                                 "TRELLIS_IO")}
        say("utilization: " + ", ".join(f"{k} {v['used']:,}/{v['available']:,}" for k, v in util.items()))
    perf = e.get("performance")
    if perf:
        say(f"at {perf['clock_mhz']:g} MHz ({perf['clock_source']}): {perf['cycles_per_inference']:,} cycles = "
            f"{perf['latency_us']:g} us per inference, {perf['inferences_per_s']:,.0f} inferences/s"
            + (f", {perf['gops']:g} GOPS ({perf['peak_gops']:g} peak)" if "gops" in perf else ""))
    t = run.times
    steps = [f"synthesis {t['synth_s']:.1f} s{' (cached)' if t['synth_cached'] else ''}"]
    if "pnr_s" in t:
        steps.append(f"place and route {t['pnr_s']:.1f} s{' (cached)' if t['pnr_cached'] else ''}")
    if "bitstream_s" in t:
        steps.append(f"ecppack {t['bitstream_s']:.1f} s{' (cached)' if t['bitstream_cached'] else ''}")
    say("flow: " + ", ".join(steps) + f"; this run {t['total_s']:.1f} s")
    say(f"wrote {', '.join(run.files)} in {run.project.path}; report.json and report.md updated"
        + (f"; bitstream {run.bitstream}" if run.bitstream else ""))
