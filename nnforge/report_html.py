"""``report.html``: one self-contained page an engineer acts on.

Every compiled project gets one next to ``report.md``/``report.json`` (``project_html``), and
``simulate``, ``compress`` and ``verify`` write one with ``--report OUT.html`` (``simulate_html``,
``compress_html``, ``project_html`` with the verify result).  Other commands (``explore``) build
their page from the same parts: ``html_page(title, sections)`` with ``Section``s made by
``table``, ``bars_svg``, ``dataflow_svg``, ``png_img`` and the ready sections below
(``layers_section``, ``histograms_section``, ``sqnr_section``, ``accuracy_section``), then
``write_report(path, html, force)``.

The page fetches nothing: styles are inline, pictures are inline SVG (the dataflow, bar charts,
the weight histograms: no matplotlib on the compile path) or PNG data URIs (explore's plots).  It holds no timestamp and no absolute path,
so the same project gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;
color:#1b1f24;background:#fff;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}.sub{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}th,td{border:1px solid #d0d7de;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:#fff1e5}.badge{display:inline-block;background:#cf222e;color:#fff;border-radius:4px;
padding:0 5px;font-size:11px;margin-left:4px}.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:150px}
.card .v{font-size:20px;font-weight:600}.card .k{color:#57606a;font-size:12px}.note{color:#57606a;font-size:12.5px}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px;margin:8px 0}
svg text{font-family:system-ui,sans-serif}img{max-width:100%}
"""


@dataclass(frozen=True)
class Section:
    """One ``<h2>`` section: its heading and its HTML body (already escaped)."""

    title: str
    body: str


def esc(value: Any) -> str:
    """Text as inert HTML (ONNX names may hold anything)."""
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int | None = None) -> str:
    """A number with thousands separators (``digits`` after the point); ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, float) and digits is not None:
        return f"{value:,.{digits}f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.4g}"
    return f"{int(value):,}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = (),
          flagged: Iterable[int] = ()) -> str:
    """An HTML table; cells are escaped unless they are ``Raw``; ``numeric`` columns align right;
    ``flagged`` rows are highlighted."""
    numeric, flagged = set(numeric), set(flagged)
    out = ['<div style="overflow-x:auto"><table><thead><tr>', *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        out.append('<tr class="flag">' if i in flagged else "<tr>")
        for j, cell in enumerate(row):
            text = cell.html if isinstance(cell, Raw) else esc(cell)
            out.append(f'<td class="n">{text}</td>' if j in numeric else f"<td>{text}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


@dataclass(frozen=True)
class Raw:
    """A table cell that is HTML already."""

    html: str


def cards(items: Sequence[tuple[str, str]]) -> str:
    """Big-number cards: (value, what it is)."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>' for v, k in items
    ) + "</div>"


def png_img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def bars_svg(labels: Sequence[str], values: Sequence[float | None], unit: str, notes: Sequence[str] = (),
             highlight: Iterable[int] = (), width: int = 760) -> str:
    """A horizontal bar chart, one bar per label (None: no bar, "-"), as inline SVG."""
    highlight = set(highlight)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=1.0) or 1.0
    label_w, row_h, note_w = 230, 20, 150
    plot_w = width - label_w - note_w - 70
    h = row_h * len(labels) + 26
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img" '
             f'aria-label="{esc(unit)}">']
    for i, (label, v) in enumerate(zip(labels, values)):
        y = 4 + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="11" text-anchor="end">'
                     f'{esc(_short(label, 34))}</text>')
        if v is None or not math.isfinite(v):
            parts.append(f'<text x="{label_w + 4}" y="{y + 14}" font-size="11" fill="#57606a">'
                         f'{"exact" if v is not None else "-"}</text>')
        else:
            w = max(1.0, plot_w * max(v, 0.0) / top)
            colour = "#cf222e" if i in highlight else "#0969da"
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
            shown = num(int(v)) if float(v).is_integer() else num(float(v), 1)
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="11">{esc(shown)}</text>')
        if i < len(notes) and notes[i]:
            parts.append(f'<text x="{width - note_w}" y="{y + 14}" font-size="11" fill="#57606a">'
                         f'{esc(notes[i])}</text>')
    parts.append(f'<text x="{label_w}" y="{h - 6}" font-size="11" fill="#57606a">{esc(unit)}</text></svg>')
    return "".join(parts)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1):]


@dataclass(frozen=True)
class Box:
    """One node of the dataflow picture."""

    name: str
    op: str
    shape: str  # e.g. "16x8x8"
    width: str  # the output's integer type, e.g. "u8"
    placement: str  # "input", "hardware", "host" or "output"
    note: str = ""  # e.g. "II 1,024"
    bottleneck: bool = False


_FILL = {"input": "#eaeef2", "hardware": "#ddf4ff", "host": "#fff8c5", "output": "#eaeef2"}


def dataflow_svg(boxes: Sequence[Box], per_row: int = 5) -> str:
    """The model as a left-to-right chain of boxes (wrapping every ``per_row``), each with its op,
    output shape and width, and its placement as the fill colour; the bottleneck outlined red."""
    bw, bh, gap_x, gap_y = 200, 74, 34, 34
    rows = max(1, math.ceil(len(boxes) / per_row))
    width = per_row * bw + (per_row - 1) * gap_x + 20
    height = rows * bh + (rows - 1) * gap_y + 56
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="dataflow">',
           '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
           '<path d="M0,0 L8,4 L0,8 z" fill="#57606a"/></marker></defs>']
    pos = []
    for i, b in enumerate(boxes):
        r, c = divmod(i, per_row)
        x, y = 10 + c * (bw + gap_x), 10 + r * (bh + gap_y)
        pos.append((x, y))
        stroke = ' stroke="#cf222e" stroke-width="3"' if b.bottleneck else ' stroke="#8c959f" stroke-width="1"'
        out.append(f'<rect x="{x}" y="{y}" width="{bw}" height="{bh}" rx="6" fill="{_FILL.get(b.placement, "#fff")}"'
                   f'{stroke}><title>{esc(b.name)}</title></rect>')
        out.append(f'<text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="600">{esc(b.op)}'
                   + (' <tspan fill="#cf222e">bottleneck</tspan>' if b.bottleneck else "") + "</text>")
        out.append(f'<text x="{x + 8}" y="{y + 33}" font-size="11">{esc(_short(b.name, 30))}</text>')
        out.append(f'<text x="{x + 8}" y="{y + 49}" font-size="11">{esc(b.shape)}  {esc(b.width)}  '
                   f'[{esc(b.placement)}]</text>')
        if b.note:
            out.append(f'<text x="{x + 8}" y="{y + 65}" font-size="11" fill="#57606a">{esc(b.note)}</text>')
    for (x0, y0), (x1, y1) in zip(pos, pos[1:]):
        if y0 == y1:
            out.append(f'<line x1="{x0 + bw}" y1="{y0 + bh / 2}" x2="{x1 - 2}" y2="{y1 + bh / 2}" stroke="#57606a" '
                       'marker-end="url(#arrow)"/>')
        else:  # down to the next row's first box
            out.append(f'<path d="M{x0 + bw / 2},{y0 + bh} V{y0 + bh + gap_y / 2} H{x1 + bw / 2} V{y1 - 2}" '
                       'fill="none" stroke="#57606a" marker-end="url(#arrow)"/>')
    ly = height - 18
    for i, (k, colour) in enumerate(_FILL.items()):
        if k == "output":
            continue
        out.append(f'<rect x="{10 + i * 130}" y="{ly - 10}" width="14" height="12" fill="{colour}" stroke="#8c959f"/>'
                   f'<text x="{28 + i * 130}" y="{ly}" font-size="11">{esc(k)}</text>')
    out.append("</svg>")
    return "".join(out)


def html_page(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole self-contained page."""
    body = "".join(f"<section><h2>{esc(s.title)}</h2>{s.body}</section>" for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1>"
            + (f'<p class="sub">{esc(subtitle)}</p>' if subtitle else "") + body + "</body></html>\n")


def write_report(path: str | Path, page: str, force: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Write ``page`` to ``path`` atomically (``--report OUT.html``; never over an input)."""
    from nnforge.compiler.output_tree import write_file

    return write_file(path, page.encode("utf-8"), force, inputs=inputs, flag="--report")


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


def histograms_svg(hists: Sequence[Any], cols: int = 3, width: int = 1300) -> str:
    """Weight histograms (``compression_report.WeightHistogram``s) as one inline SVG grid, one plot
    per layer in its own unit: the stored nonzero values (blue bars, 64 bins from numpy.histogram),
    the float weights before compression (black outline, same bins), the codebook (red dashed
    lines), a title, the x range and a legend.  No matplotlib: compile writes one per project."""
    import numpy as np

    cols = min(cols, max(1, len(hists)))
    cw, ch = width // cols, 210
    left, right, top, bottom = 34, 10, 22, 40
    pw, ph = cw - left - right, ch - top - bottom
    rows = max(1, math.ceil(len(hists) / cols))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cw * cols}" height="{ch * rows}" role="img" '
           f'aria-label="weight histograms">']
    for k, h in enumerate(hists):
        ox, oy = (k % cols) * cw + left, (k // cols) * ch + top
        parts = [a for a in (h.stored, h.original, h.codebook) if a is not None and a.size]
        lo, hi = (min(float(a.min()) for a in parts), max(float(a.max()) for a in parts)) if parts else (-1.0, 1.0)
        edges = np.linspace(lo, hi, 65) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, 65)
        stored = np.histogram(h.stored, bins=edges)[0] if h.stored.size else np.zeros(64, np.int64)
        orig = np.histogram(h.original, bins=edges)[0] if h.original is not None and h.original.size else None
        top_count = max(int(stored.max()), int(orig.max()) if orig is not None else 0, 1)
        bx = lambda v: ox + pw * (v - edges[0]) / (edges[-1] - edges[0])  # noqa: E731
        by = lambda c: oy + ph * (1 - c / top_count)  # noqa: E731
        kk = f", K={h.codebook.size}" if h.codebook is not None else ""
        out.append(f'<g class="hist" data-layer="{esc(h.name)}">'
                   f'<text x="{ox + pw / 2:.1f}" y="{oy - 8}" font-size="11" text-anchor="middle">'
                   f'{esc(_short(h.name, 38))} ({esc(h.op)}{kk}, {h.zero_fraction:.0%} zero)</text>'
                   f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>')
        bw = pw / 64
        out.extend(f'<rect class="bar" x="{ox + i * bw:.1f}" y="{by(c):.1f}" width="{bw:.2f}" '
                   f'height="{oy + ph - by(c):.1f}" fill="#0969da" fill-opacity="0.75" data-n="{c}"/>'
                   for i, c in enumerate(stored.tolist()) if c)
        if orig is not None:
            pts = [f"{ox:.1f},{oy + ph:.1f}"]
            for i, c in enumerate(orig.tolist()):
                pts += [f"{ox + i * bw:.1f},{by(c):.1f}", f"{ox + (i + 1) * bw:.1f},{by(c):.1f}"]
            pts.append(f"{ox + pw:.1f},{oy + ph:.1f}")
            out.append('<polyline class="orig" fill="none" stroke="#1b1f24" stroke-width="0.9" points="'
                       + " ".join(pts) + '"/>')
        if h.codebook is not None:
            out.extend(f'<line class="code" x1="{bx(float(c)):.1f}" x2="{bx(float(c)):.1f}" y1="{oy}" '
                       f'y2="{oy + ph}" stroke="#cf222e" stroke-width="0.8" stroke-dasharray="3 2"/>'
                       for c in h.codebook.tolist())
        for v, anchor in ((edges[0], "start"), ((edges[0] + edges[-1]) / 2, "middle"), (edges[-1], "end")):
            out.append(f'<text x="{bx(v):.1f}" y="{oy + ph + 11}" font-size="9" text-anchor="{anchor}">{v:.3g}</text>')
        out.append(f'<text x="{ox - 3}" y="{oy + 8}" font-size="9" text-anchor="end">{top_count}</text>'
                   f'<text x="{ox - 3}" y="{oy + ph}" font-size="9" text-anchor="end">0</text>')
        xlabel = "weight" if h.unit == "weight" else "code (weight / its channel's scale)"
        out.append(f'<text x="{ox + pw / 2:.1f}" y="{oy + ph + 23}" font-size="10" text-anchor="middle">'
                   f'{esc(xlabel)}</text>')
        legend = [("#0969da", "stored (nonzero)")]
        if orig is not None:
            legend.append(("#1b1f24", "float before compression"))
        if h.codebook is not None:
            legend.append(("#cf222e", f"codebook (K={h.codebook.size})"))
        lx = ox
        for colour, label in legend:
            out.append(f'<rect x="{lx}" y="{oy + ph + 29}" width="8" height="8" fill="{colour}"/>'
                       f'<text x="{lx + 11}" y="{oy + ph + 37}" font-size="9">{esc(label)}</text>')
            lx += 16 + 5 * len(label)
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


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


_PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#0a3069", "#bc4c00", "#57606a", "#e85aad",
            "#116329")


def lines_svg(xs: Sequence[float], series: dict[str, Sequence[float | None]], xlabel: str, ylabel: str,
              width: int = 760, height: int = 320) -> str:
    """A line chart (one line per series, a legend at the right) as inline SVG; None: a gap."""
    left, right, top, bottom = 52, 210, 12, 40
    ys = [y for v in series.values() for y in v if y is not None and math.isfinite(y)]
    if not xs or not ys:
        return '<p class="note">No finite values to plot.</p>'
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.08 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom
    px = lambda x: left + pw * (x - x0) / (x1 - x0)  # noqa: E731
    py = lambda y: top + ph * (1 - (y - y0) / (y1 - y0))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="{esc(ylabel)}">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#d0d7de"/>']
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{esc(num(x))}</text>')
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 4}" y="{py(y) + 3:.1f}" font-size="10" text-anchor="end">{y:.3g}</text>')
    for k, (name, vals) in enumerate(series.items()):
        colour = _PALETTE[k % len(_PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(xs, vals) if y is not None and math.isfinite(y)]
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.6" fill="{colour}"/>' for a, b in pts)
        ly = top + 12 + 15 * k
        out.append(f'<rect x="{left + pw + 10}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{left + pw + 24}" y="{ly + 1}" font-size="10">{esc(_short(name, 30))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">{esc(xlabel)}</text>'
               f'<text x="12" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2})">{esc(ylabel)}</text></svg>')
    return "".join(out)


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
