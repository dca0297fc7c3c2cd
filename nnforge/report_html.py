"""``report.html``: one self-contained page an engineer acts on.

Every compiled project gets one next to ``report.md``/``report.json`` (``project_html``), and
``simulate``, ``compress`` and ``verify`` write one with ``--report OUT.html`` (``simulate_html``,
``compress_html``, ``project_html`` with the verify result).  Other commands (``explore``) build
their page from the same parts (``nnforge/html_parts.py``): ``html_page(title, sections)`` with
``Section``s made by ``table``, ``bars_svg``, ``dataflow_svg``, ``png_img`` and the ready sections below
(``layers_section``, ``histograms_section``, ``sqnr_section``, ``accuracy_section``), then
``write_report(path, html, force)``.

The page fetches nothing: styles are inline, pictures are inline SVG (the dataflow, bar charts,
the weight histograms: no matplotlib on the compile path) or PNG data URIs (explore's plots).  It holds no timestamp and no absolute path,
so the same project gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# the parts (re-exported: a page elsewhere, e.g. explore's, is built from them through this module)
from nnforge.html_parts import (Box, Raw, Section, bars_svg, cards, dataflow_svg, esc, histograms_svg, html_page,
                                lines_svg, num, png_img, table, write_report)

# Resources of the FPGA parts an hls project names most often (vendor product tables): LUT, FF,
# DSP slices, 18 Kb block RAMs.  A part not listed gets absolute figures only.
HLS_PARTS: dict[str, dict[str, int]] = {
    "xcu250": {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram18": 5_376},
    "xcu280": {"lut": 1_304_000, "ff": 2_607_000, "dsp": 9_024, "bram18": 4_032},
    "xczu9eg": {"lut": 274_080, "ff": 548_160, "dsp": 2_520, "bram18": 1_824},
    "xc7z020": {"lut": 53_200, "ff": 106_400, "dsp": 220, "bram18": 280},
}
#: a layer whose interval is at least this many times the median of the others is flagged
BOTTLENECK_RATIO = 2.0

# -- per-layer facts from the integer graph ----------------------------------------------------------------

def _qtype(t) -> str:
    return ("i" if t.qtype.signed else "u") + str(t.qtype.bits)


def _shape(shape) -> str:
    dims = [d for d in shape][1:] if len(shape) > 1 else list(shape)
    return "x".join(str(d) for d in dims) or "1"


def _activation(node) -> str:
    lo, hi = getattr(node.attrs, "lo", None), getattr(node.attrs, "hi", None)
    if lo is None and hi is None:
        return "-"
    if lo == 0 and hi is None:
        return "ReLU"
    return f"clip [{num(lo)}, {num(hi)}]"


def _acc(node, graph) -> str:
    """The accumulator: its type and the static bound b_x + b_w + ceil(log2 K) (docs/numerics.md)."""
    w = getattr(node.attrs, "weight", None)
    if w is None or node.op not in ("conv2d", "dense"):
        return "-"
    k = int(w.shape[0]) if node.op == "dense" else int(math.prod(w.shape[1:]))
    bx = graph.tensors[node.inputs[0]].qtype.bits
    bw = int(node.attrs.weight_bits or 0)
    bound = bx + bw + max(0, math.ceil(math.log2(k))) if k > 0 and bw else None
    return f"{node.attrs.acc_dtype}" + (f" (bound {bound} b)" if bound else "")


def _weight_scale(node) -> str:
    s = getattr(node.attrs, "weight_scale", None)
    if s is None:
        return "-"
    import numpy as np

    s = np.asarray(s, np.float64).reshape(-1)
    return f"{s[0]:.3g}" if np.all(s == s[0]) else f"{s.min():.3g} to {s.max():.3g} ({s.size} ch.)"


def layer_facts(qmodel) -> dict[str, dict[str, str]]:
    """Per node of the integer graph: input/weight/accumulator widths, scales, fused activation."""
    graph = qmodel.graph
    out = {}
    for node in graph.nodes:
        y = graph.tensors[node.output]
        out[node.name] = {
            "in": ", ".join(_qtype(graph.tensors[i]) for i in node.inputs if i in graph.tensors),
            "weight": f"i{node.attrs.weight_bits}" if getattr(node.attrs, "weight_bits", None) else "-",
            "acc": _acc(node, graph), "out": _qtype(y), "out_scale": f"{float(y.scale):.4g}",
            "weight_scale": _weight_scale(node), "act": _activation(node),
            "codebook": str(len(node.attrs.codebook)) if getattr(node.attrs, "codebook", None) is not None else "-",
        }
    return out


def bottlenecks(intervals: dict[str, int | None]) -> list[str]:
    """Layers whose interval (II or cycles) is at least ``BOTTLENECK_RATIO`` times the median of the
    others' and the largest: in a pipeline the slowest stage sets the throughput."""
    known = {k: v for k, v in intervals.items() if v}
    if len(known) < 2:
        return []
    peak = max(known.values())
    out = []
    for name, v in known.items():
        others = sorted(x for k, x in known.items() if k != name)
        median = others[len(others) // 2]
        if v == peak and v >= BOTTLENECK_RATIO * median:
            out.append(name)
    return out


# -- ready sections ----------------------------------------------------------------------------------------

def histograms_section(qmodel, original: bool = True) -> Section:
    """Weight histograms: stored values, float weights before compression (``original``), codebook
    (one unit per plot).  A project's page draws what the project holds only (``original=False``):
    the float weights would need the float model imported, which a model read back from its
    folder does not have, and the page must be the same bytes however the project was compiled."""
    from nnforge.compiler.compress.compression_report import weight_histograms

    hists = weight_histograms(qmodel if original else qmodel.graph)
    if not hists:
        return Section("Weight histograms", '<p class="note">No layer holds weights.</p>')
    note = ('<p class="note">Blue: the nonzero weights as stored (codes, times the weight scale when the layer '
            'has one scale; otherwise codes, i.e. weight / its channel\'s scale). '
            + ('Black outline: the float weights before pruning and sharing, in the same unit. ' if original else '')
            + 'Red dashed: the codebook. With <code>--refine lsq</code> the shared values are refitted to the '
            'layer\'s outputs and can sit outside the float distribution.</p>')
    return Section("Weight histograms", note + histograms_svg(hists, cols=3))


def sqnr_section(layers: Sequence[Any], samples: int | None = None) -> Section:
    """Per-layer SQNR against each layer's width (simulate's ``LayerError`` rows)."""
    if not layers:
        return Section("Per-layer SQNR", '<p class="note">Not measured (run <code>nnforge simulate ... '
                                          '--report OUT.html</code>).</p>')
    worst = min(range(len(layers)), key=lambda i: layers[i].sqnr_db)
    svg = bars_svg([l.name for l in layers], [l.sqnr_db for l in layers], "SQNR, dB (higher is better)",
                   notes=[f"{l.op}, {l.qtype}" for l in layers], highlight=[worst])
    rows = [[l.name, l.op, l.qtype, f"{l.scale:.4g}", "exact" if not math.isfinite(l.sqnr_db) else f"{l.sqnr_db:.1f}"]
            for l in layers]
    head = f'<p class="note">Over the first {samples} samples; red: the lowest.</p>' if samples else ""
    return Section("Per-layer SQNR", head + svg + table(["layer", "op", "type", "scale", "SQNR dB"], rows, [3, 4],
                                                        [worst]))


def accuracy_section(float_acc: float | None, quant_acc: float | None, hw_acc: float | None,
                     samples: int | None, how: str = "") -> Section:
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    body = cards([(fmt(float_acc), "float top-1"), (fmt(quant_acc), "quantized top-1 (TVM integer build)"),
                  (fmt(hw_acc), "through the generated hardware")])
    if samples:
        body += f'<p class="note">On {samples:,} labelled samples. {esc(how)}</p>'
    elif how:
        body += f'<p class="note">{esc(how)}</p>'
    return Section("Accuracy", body)


def layers_section(qmodel, extra_headers: Sequence[str] = (), extra: dict[str, Sequence[Any]] | None = None,
                   flagged: Iterable[str] = (), placement: dict[str, str] | None = None) -> Section:
    """The per-layer table of the integer graph, with backend columns in ``extra`` (by layer name)."""
    facts = layer_facts(qmodel)
    flagged = set(flagged)
    extra = extra or {}
    headers = ["layer", "op", "where", "in", "weight", "acc", "out", "out scale", "weight scale", "activation",
               "K", *extra_headers]
    rows, marks = [], []
    for i, node in enumerate(qmodel.graph.nodes):
        f = facts[node.name]
        name = Raw(esc(node.name) + ('<span class="badge">bottleneck</span>' if node.name in flagged else ""))
        rows.append([name, node.op, (placement or {}).get(node.name, "-"), f["in"], f["weight"], f["acc"], f["out"],
                     f["out_scale"], f["weight_scale"], f["act"], f["codebook"],
                     *extra.get(node.name, ["-"] * len(extra_headers))])
        if node.name in flagged:
            marks.append(i)
    numeric = [7] + list(range(11, 11 + len(extra_headers)))
    return Section("Layers", table(headers, rows, numeric, marks))


def _boxes(qmodel, placement: dict[str, str], notes: dict[str, str], flagged: set[str]) -> list[Box]:
    graph = qmodel.graph
    boxes = [Box(t.name, "input", _shape(t.shape), _qtype(t), "input") for t in graph.inputs]
    for node in graph.nodes:
        y = graph.tensors[node.output]
        boxes.append(Box(node.name, node.op, _shape(y.shape), _qtype(y), placement.get(node.name, "hardware"),
                         notes.get(node.name, ""), node.name in flagged))
    return boxes


# -- pages -------------------------------------------------------------------------------------------------

def _hls_capacity(part: str) -> dict[str, int] | None:
    for prefix, cap in HLS_PARTS.items():
        if str(part).startswith(prefix):
            return cap
    return None


def _performance(report: dict) -> tuple[list[tuple[str, str]], str]:
    """Summary cards and a note: latency and throughput at the clock, utilization of the part."""
    opts, totals, backend = report["options"], report["totals"], report["backend"]
    clock_mhz = opts.get("clock_mhz") or (1e3 / opts["clock_ns"] if opts.get("clock_ns") else None)
    latency = totals.get("measured_cycles") or totals.get("latency_cycles")
    # hls runs the layers as a DATAFLOW pipeline (a new input every II); one systolic array runs
    # them one after another (a new input when the last layer is done)
    interval = totals.get("ii") if backend == "hls" else latency
    items: list[tuple[str, str]] = [(f"{num(latency)} cycles", "latency (estimate)" if not totals.get(
        "measured_cycles") else "latency (measured)")]
    if clock_mhz and latency:
        items.append((f"{latency / clock_mhz:,.2f} µs", f"latency at {clock_mhz:g} MHz"))
    if clock_mhz and interval:
        items.append((f"{clock_mhz * 1e6 / interval:,.0f} /s", f"inferences per second (interval {interval:,} cycles)"))
    note = ""
    if backend == "hls":
        cap = _hls_capacity(opts.get("part", ""))
        for key, unit in (("dsp", "DSP"), ("bram18", "BRAM18"), ("lut", "LUT"), ("ff", "FF")):
            v = totals.get(key)
            if v is None:
                continue
            items.append((f"{100 * v / cap[key]:.2f} %" if cap else f"{v:,}",
                          f"{unit} {v:,}" + (f" of {cap[key]:,} ({opts['part']})" if cap else " (part capacity unknown)")))
    synth = report.get("synthesis") or {}
    for target, entry in sorted(synth.items()):
        cap, res = entry.get("capacity") or {}, entry.get("resources") or {}
        for key in ("lut", "ff", "dsp", "bram"):
            if cap.get(key) and res.get(key) is not None:
                items.append((f"{100 * res[key] / cap[key]:.1f} %", f"{entry['units'].get(key, key)} {res[key]:,} of "
                              f"{cap[key]:,} ({entry.get('part', target)}, yosys)"))
        fmax = (entry.get("pnr") or {}).get("fmax_mhz")
        if fmax:
            items.append((f"{fmax:.1f} MHz", f"Fmax on {entry.get('part', target)} (nextpnr)"))
    if backend != "hls" and not synth:
        note = ("Utilization of the part: nnforge synth OUTDIR (yosys; --pnr for Fmax) measures it; "
                "nnforge verify OUTDIR --report OUT.html then shows it here.")
    return items, note


def project_html(report: dict, qmodel, verify=None, float_accuracy: float | None = None,
                 simulation=None, name: str | None = None) -> str:
    """The page of one compiled project (any backend), from its report.json dict and quantized model;
    ``verify`` (a VerifyReport) adds measured cycles, mismatches and the hardware's accuracy."""
    backend = report["backend"]
    rows = {k["name"]: k for k in report["kernels"]}
    placement = {n.name: ("hardware" if n.name in rows else "host") for n in qmodel.graph.nodes}
    measured = {l.name: l for l in (verify.layers if verify is not None else [])}
    intervals: dict[str, int | None] = {}
    for name, k in rows.items():
        e = k.get("estimate") or {}
        m = measured.get(name)
        if backend == "hls":
            intervals[name] = e.get("ii")
        else:
            intervals[name] = (m.measured_cycles if m and m.measured_cycles else None) or k.get("predicted_cycles") \
                or e.get("latency_cycles")
    flagged = bottlenecks(intervals)
    what = "II" if backend == "hls" else "cycles"
    notes = {name: f"{what} {v:,}" for name, v in intervals.items() if v}
    for h in report["host"]:
        notes[h["name"]] = "host: " + h["op"]

    items, perf_note = _performance(report)
    sections = [Section("Summary", cards(items) + (f'<p class="note">{esc(perf_note)}</p>' if perf_note else ""))]
    if flagged:
        med = sorted(v for k, v in intervals.items() if v and k not in flagged)
        median = med[len(med) // 2] if med else None
        sections.append(Section("Bottleneck", "".join(
            f'<div class="warn"><b>{esc(name)}</b> ({esc(rows[name]["op"])}): {what} {intervals[name]:,}, '
            f'{intervals[name] / median:.1f}x the other layers\' median of {median:,}; it sets the '
            + ("pipeline's interval (throughput). Raise its parallelism or reuse the others' slack."
               if backend == "hls" else "largest share of the latency.") + "</div>" for name in flagged)))
    sections.append(Section("Dataflow", dataflow_svg(_boxes(qmodel, placement, notes, set(flagged)))))

    fmt = lambda v: num(v)
    if backend == "hls":
        headers = ["storage", "weight B", "latency", "II", "DSP", "BRAM18", "LUT", "FF"]
        extra = {name: [k.get("storage_form") or k.get("storage") or "-", fmt(k.get("weight_bytes")),
                        *(fmt((k.get("estimate") or {}).get(f)) for f in ("latency_cycles", "ii", "dsp", "bram18", "lut",
                                                                           "ff"))] for name, k in rows.items()}
    else:
        headers = ["storage", "weight B", "MACs", "predicted cycles", "measured cycles", "array utilization"]
        extra = {}
        for name, k in rows.items():
            m = measured.get(name)
            util = (m.utilization if m and m.utilization is not None else k.get("utilization_bound"))
            extra[name] = [k.get("storage_form") or k.get("storage") or "-", fmt(k.get("weight_bytes")),
                           fmt(k.get("macs")), fmt(k.get("predicted_cycles")),
                           fmt(m.measured_cycles if m else None), "-" if util is None else f"{util:.1%}"]
    if verify is not None:
        headers = [*headers, "mismatches"]
        for name in extra:
            m = measured.get(name)
            extra[name] = [*extra[name], fmt(m.mismatches if m else None)]
    sections.append(layers_section(qmodel, headers, extra, flagged, placement))
    if report["host"]:
        sections.append(Section("Host", table(["layer", "op", "why"], [[h["name"], h["op"], h["reason"]]
                                                                      for h in report["host"]])))
    q = report["quantization"]
    settings = [["quantization", q["config"]],
                ["compression", q.get("compress_text") or ("none" if not q.get("compress") else str(q["compress"]))],
                *[["option " + k, str(v)] for k, v in sorted(report["options"].items())]]
    sections.append(Section("Settings", table(["setting", "value"], settings)
                            + "".join(f'<p class="note">auto: {esc(d)}</p>' for d in q.get("decisions", []))))
    if verify is not None:
        how = (f"verify: {verify.mismatches:,} mismatching codes over {verify.compared_tensors} tensors "
               f"({'PASS' if verify.passed else 'FAIL'}); {verify.source}.")
        sections.append(accuracy_section(float_accuracy, verify.quant_accuracy, verify.accuracy,
                                         verify.samples if verify.accuracy is not None else None, how))
    elif simulation is not None:
        sections.append(accuracy_section(simulation.float_accuracy, simulation.quant_accuracy, None,
                                         simulation.samples))
    else:
        sections.append(accuracy_section(None, None, None, None,
                                         "Not measured at compile time: nnforge verify OUTDIR --data TEST.npz "
                                         "--report OUT.html adds float, quantized and hardware accuracy."))
    sections.append(sqnr_section(simulation.layers if simulation is not None else [],
                                 simulation.sqnr_samples if simulation is not None else None))
    sections.append(histograms_section(qmodel, original=False))
    model = name or Path(str(getattr(qmodel.float_model, "source", "") or "model")).name
    return html_page(f"nnforge {backend} project: {model}",
                     sections, f"backend {backend}, {q['config']}; nnforge {report.get('nnforge_version', '')}; "
                               f"machine-readable: report.json")


def simulate_html(model_name: str, sim, qmodel) -> str:
    """``nnforge simulate --report OUT.html``: accuracy, per-layer SQNR, widths, histograms."""
    placement = {n.name: "hardware" for n in qmodel.graph.nodes}
    for h in sim.host_ops:
        placement[h["name"]] = "host"
    boxes = _boxes(qmodel, placement, {}, set())
    sections = [accuracy_section(sim.float_accuracy, sim.quant_accuracy, None, sim.samples,
                                 f"top-1 agreement with the float model {sim.agreement:.4f}"
                                 + ("" if sim.reference_mismatches is None else
                                    f"; {sim.reference_mismatches:,} codes differ from the numpy reference")),
                sqnr_section(sim.layers, sim.sqnr_samples),
                Section("Dataflow", dataflow_svg(boxes)),
                layers_section(qmodel, placement=placement),
                Section("Settings", table(["setting", "value"], [["quantization", sim.config],
                                                                 ["calibration", sim.calibration]])
                        + "".join(f'<p class="note">auto: {esc(d)}</p>' for d in sim.auto_decisions)),
                histograms_section(qmodel)]
    return html_page(f"nnforge simulate: {Path(model_name).name}", sections, sim.config)


def compress_html(model_name: str, doc: dict, creport, qmodel) -> str:
    """``nnforge compress --report OUT.html``: storage per layer, accuracy, histograms."""
    rows = [[l.name, l.op, l.storage, num(l.params), num(l.nonzeros), l.index_bits,
             num(l.index_stored_bits) + ("" if l.index_huffman_used or not creport.huffman else " (fixed)"),
             num(l.sparse_stored_bits) + ("" if l.sparse_huffman_used or not creport.huffman or not l.sparse_stream_bits
                                          else " (fixed)"),
             num(l.total_bytes), f"{l.compression_ratio:.1f}x"] for l in creport.layers]
    storage = (cards([(f"{creport.compression_ratio:.2f}x", "against float32"),
                      (f"{creport.total_bytes:,} B", f"weights ({creport.float_bytes:,} B in float32)")])
               + bars_svg([l.name for l in creport.layers], [float(l.total_bytes) for l in creport.layers],
                          "bytes stored per layer", notes=[f"{l.compression_ratio:.1f}x" for l in creport.layers])
               + table(["layer", "op", "storage", "params", "nonzero", "bits/index", "index bits", "gap bits", "bytes",
                        "ratio"], rows, [3, 4, 5, 6, 7, 8, 9]))
    placement = {n.name: "hardware" for n in qmodel.graph.nodes}
    sections = [Section("Storage", storage),
                accuracy_section(doc.get("float_accuracy"), doc.get("quant_accuracy"), None, doc.get("samples"),
                                 "" if doc.get("agreement") is None else f"top-1 agreement {doc['agreement']:.4f}"),
                Section("Dataflow", dataflow_svg(_boxes(qmodel, placement, {}, set()))),
                layers_section(qmodel, placement=placement),
                Section("Settings", table(["setting", "value"], [["quantization", doc.get("config", "-")],
                                                                 ["compression", doc.get("compress_text") or "-"]])),
                histograms_section(qmodel)]
    return html_page(f"nnforge compress: {Path(model_name).name}", sections, doc.get("config", ""))


def verify_html(project, verify, data=None, labels=None, batch_size: int = 256) -> str:
    """``nnforge verify OUTDIR --report OUT.html``: the project's page with the verify result and,
    with labels, the float model's accuracy on the same data next to the quantized and hardware ones."""
    float_acc = None
    if labels is not None and data is not None:
        from nnforge.data import top1_accuracy

        model = project.qmodel.float_model
        float_acc = top1_accuracy(model.predict(data, batch_size)[model.output_names[0]], labels)
    return project_html(project.report, project.qmodel, verify=verify, float_accuracy=float_acc,
                        name=Path(project.path).name)


def refresh_project_html(project_dir: str | Path) -> str:
    """The project's page again from its current report.json (after ``nnforge synth`` added the
    measured resources and Fmax)."""
    from nnforge.project import open_project

    project = open_project(project_dir)
    return project_html(project.report, project.qmodel, name=Path(project_dir).name)


def sweep_html(model_name: str, points: Sequence[Any]) -> str:
    """``nnforge sweep --report OUT.html``: accuracy and per-layer SQNR against the weight width."""
    groups: dict[tuple, list] = {}
    for p in points:
        groups.setdefault((p.act_bits, p.scale_mode, p.calibration, p.share_bits or 0), []).append(p)
    sections = []
    acc_series, xs_all = {}, sorted({p.weight_bits for p in points})
    for (ab, mode, method, share), group in groups.items():
        by_bits = {p.weight_bits: p for p in group}
        label = f"a{ab} {mode} {method}" + (f" shared {share}b" if share else "")
        acc_series[label] = [(by_bits[b].quant_accuracy if by_bits[b].quant_accuracy is not None
                              else by_bits[b].agreement) if b in by_bits else None for b in xs_all]
    ref = points[0].float_accuracy if points else None
    if ref is not None:
        acc_series["float"] = [ref] * len(xs_all)
    sections.append(Section("Accuracy against weight bits", lines_svg(
        xs_all, acc_series, "weight bits", "top-1 accuracy" if ref is not None else "top-1 agreement")))
    for (ab, mode, method, share), group in groups.items():
        group = sorted(group, key=lambda p: p.weight_bits)
        names = list((group[0].layer_sqnr_db or {}).keys())
        series = {n: [(p.layer_sqnr_db or {}).get(n) for p in group] for n in names}
        label = f"a{ab} {mode} {method}" + (f" shared {share}b" if share else "")
        sections.append(Section(f"Per-layer SQNR against weight bits ({label})", lines_svg(
            [p.weight_bits for p in group], series, "weight bits", "SQNR, dB")
            + '<p class="note">A gap: that layer is exact at that width (no error to measure).</p>'))
    rows = [[p.weight_bits, p.act_bits, p.scale_mode, p.calibration, p.compression or "-",
             "-" if p.quant_accuracy is None else f"{p.quant_accuracy:.4f}", f"{p.agreement:.4f}",
             "-" if p.min_sqnr_db is None else f"{p.min_sqnr_db:.1f}"] for p in points]
    sections.append(Section("Points", table(["weight bits", "act bits", "scale", "calibration", "compression",
                                             "accuracy", "agreement", "min SQNR dB"], rows, [0, 1, 5, 6, 7])))
    return html_page(f"nnforge sweep: {Path(model_name).name}", sections,
                     "" if ref is None else f"float accuracy {ref:.4f}")


__all__ = ["BOTTLENECK_RATIO", "HLS_PARTS", "Box", "Raw", "Section", "accuracy_section", "bars_svg", "bottlenecks", "cards",
           "compress_html", "dataflow_svg", "esc", "histograms_section", "histograms_svg", "html_page", "layer_facts",
           "layers_section", "lines_svg", "num", "png_img", "project_html", "refresh_project_html", "simulate_html",
           "sqnr_section", "sweep_html", "table", "verify_html", "write_report"]
