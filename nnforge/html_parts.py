"""The parts every HTML page of nnforge is made of: ``html_page(title, sections)`` with ``Section``s
whose bodies come from ``table``, ``cards``, ``png_img`` and the inline SVG pictures (``bars_svg``,
``dataflow_svg``, ``histograms_svg``, ``lines_svg``); ``write_report`` writes a page atomically.
The pages themselves are ``report_html.py``'s.  Nothing here fetches anything or holds a timestamp.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


__all__ = ["Box", "Raw", "Section", "bars_svg", "cards", "dataflow_svg", "esc", "histograms_svg", "html_page", "lines_svg",
           "num", "png_img", "table", "write_report"]
