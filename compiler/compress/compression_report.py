"""Storage of a quantized graph's weights under Deep Compression, per layer and in total.

For every conv2d and dense node (the layers that hold weights) the report counts what the
hardware stores, in bits, following the formula in docs/compression.md ("Compression
report"):

* a **shared** layer (``attrs.codebook``) stores ``ceil(log2 K)``-bit indices into its
  K-entry codebook plus the codebook itself (K codes of ``weight_bits`` each);
* an **unshared** layer stores its codes at ``weight_bits`` each;
* the values are stored **dense** (one per weight) or in the **sparse** relative-index layout
  of ``huffman.py`` (one per entry, plus a ``gap_bits`` gap each), whichever is smaller
  before Huffman coding (``layout="auto"``), or as forced by ``layout``;
* with ``huffman=True`` the index and gap streams are canonical-Huffman coded, and their
  code tables are counted; each stream is stored Huffman coded only where that is strictly
  smaller than its fixed-width form (``index_huffman_used``/``sparse_huffman_used`` say which),
  so coding never makes a layer larger;
* ``storage`` names what is stored exactly: ``dense codes``, ``codebook + dense indices``,
  ``sparse codes`` or ``codebook + sparse indices``, plus ``, Huffman-coded ...`` for the coded
  streams;
* biases are stored at the narrowest two's-complement width that holds every bias code of
  the layer (``bias_width``; the HLS backend declares them with that width);
* the float32 baseline is 4 bytes per weight and per bias of the original float layer.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ModelError
from .huffman import (CONV_GAP_BITS, FC_GAP_BITS, HuffmanStream, SparseLayout, huffman_encode,
                      sparse_layout)
from ..qgraph import QGraph, QNode

WEIGHT_OPS = ("conv2d", "dense")
LAYOUTS = ("auto", "dense", "sparse")


@dataclass(frozen=True)
class LayerStreams:
    """What one layer stores: index stream, optional sparse layout, and their Huffman codes."""

    codes: np.ndarray  # the flat weight codes (C order)
    codebook: np.ndarray | None
    index_bits: int  # bits per stored index (or per code, when unshared)
    layout: SparseLayout | None  # None: dense
    indices: np.ndarray  # the index stream (codebook indices, or codes when unshared)
    index_huffman: HuffmanStream | None
    gap_huffman: HuffmanStream | None


@dataclass(frozen=True)
class LayerReport:
    name: str
    op: str
    shared: bool
    layout: str  # "dense" or "sparse"
    params: int  # weights stored (fewer than float_params after structured pruning)
    nonzeros: int
    biases: int
    weight_bits: int
    index_bits: int  # bits per index
    codebook_size: int  # 0 when unshared
    codebook_bits: int
    codebook_bytes: int
    entries: int  # stored values: params when dense, nonzeros + fillers when sparse
    fillers: int
    gap_bits: int  # bits per sparse gap (0 when dense)
    index_stream_bits: int  # entries * index_bits
    index_huffman_bits: int | None  # payload + code table
    sparse_stream_bits: int  # entries * gap_bits
    sparse_huffman_bits: int | None  # payload + code table
    index_huffman_used: bool  # the index stream is stored Huffman coded (strictly smaller than fixed width)
    sparse_huffman_used: bool  # the gap stream is stored Huffman coded
    index_stored_bits: int  # what is counted: index_huffman_bits when used, else index_stream_bits
    sparse_stored_bits: int
    storage: str  # exact storage form, e.g. "codebook + sparse indices, Huffman-coded gaps"
    bias_bits: int
    total_bits: int
    total_bytes: int
    float_params: int  # weights of the original float layer
    float_bytes: int  # 4 * (float_params + its biases)
    compression_ratio: float


@dataclass(frozen=True)
class CompressionReport:
    layers: list[LayerReport]
    huffman: bool
    conv_gap_bits: int
    fc_gap_bits: int
    params: int = field(init=False)
    nonzeros: int = field(init=False)
    total_bytes: int = field(init=False)
    float_bytes: int = field(init=False)
    compression_ratio: float = field(init=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "params", sum(l.params for l in self.layers))
        set_(self, "nonzeros", sum(l.nonzeros for l in self.layers))
        set_(self, "total_bytes", sum(l.total_bytes for l in self.layers))
        set_(self, "float_bytes", sum(l.float_bytes for l in self.layers))
        set_(self, "compression_ratio", _ratio(self.float_bytes, self.total_bytes))

    def to_dict(self) -> dict:
        return {
            "huffman": self.huffman, "conv_gap_bits": self.conv_gap_bits, "fc_gap_bits": self.fc_gap_bits,
            "params": self.params, "nonzeros": self.nonzeros, "total_bytes": self.total_bytes,
            "float_bytes": self.float_bytes, "compression_ratio": self.compression_ratio,
            "layers": [asdict(l) for l in self.layers],
        }

    def to_markdown(self) -> str:
        h = self.huffman
        head = ["layer", "op", "params", "nonzeros", "storage", "bits/index", "codebook B",
                "index bits" + (" (Huffman)" if h else ""), "sparse bits" + (" (Huffman)" if h else ""),
                "total B", "ratio"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def stream(raw, coded, used):
            if coded is None or (raw == 0 and not coded):
                return f"{raw:,}"
            return f"{raw:,} → {coded:,}" if used else f"{raw:,} (Huffman {coded:,}: kept fixed-width)"

        for l in self.layers:
            rows.append("| " + " | ".join([
                l.name.replace("|", "\\|"), l.op, f"{l.params:,}", f"{l.nonzeros:,}",
                l.storage + (f" ({l.gap_bits}-bit gaps, {l.fillers:,} fillers)" if l.layout == "sparse" else ""),
                str(l.index_bits) + (f" (K={l.codebook_size})" if l.shared else ""), f"{l.codebook_bytes:,}",
                stream(l.index_stream_bits, l.index_huffman_bits, l.index_huffman_used),
                stream(l.sparse_stream_bits, l.sparse_huffman_bits, l.sparse_huffman_used),
                f"{l.total_bytes:,}", f"{l.compression_ratio:.2f}x"]) + " |")
        rows.append(f"| **total** | | {self.params:,} | {self.nonzeros:,} | | | | | | {self.total_bytes:,} | "
                    f"{self.compression_ratio:.2f}x |")
        lines = [
            "# Compression report", "",
            f"Weights of {len(self.layers)} layers: {self.total_bytes:,} bytes against {self.float_bytes:,} bytes "
            f"in float32, a compression ratio of {self.compression_ratio:.2f}x "
            f"({'with' if h else 'without'} Huffman coding; sparse gaps {self.conv_gap_bits} bits for conv, "
            f"{self.fc_gap_bits} bits for fc).", "",
            *rows, "",
            "Accounting: docs/compression.md, section \"Compression report\". Biases are stored at their "
            "accumulator width; the float32 baseline counts weights and biases."
            + (" Each index or gap stream is stored Huffman coded only where that is smaller than its "
               "fixed-width form (a → b); otherwise it stays fixed-width." if h else ""), "",
        ]
        return "\n".join(lines)


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("inf") if num else 1.0


def _weight_bits(node: QNode, codes: np.ndarray) -> int:
    bits = node.attrs.weight_bits
    if bits is not None:
        return int(bits)
    # graphs saved before weight_bits was recorded: the narrowest signed width that holds the codes
    peak = int(np.abs(codes).max()) if codes.size else 0
    return max(2, peak.bit_length() + 1)


def layer_streams(node: QNode, gap_bits: int, layout: str = "auto") -> LayerStreams:
    """The index stream, sparse layout and Huffman codes of one conv2d/dense node."""
    if layout not in LAYOUTS:
        raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if node.op not in WEIGHT_OPS:
        raise ModelError(f"layer {node.name!r}: only conv2d and dense layers store weights, not {node.op}")
    codes = np.asarray(node.attrs.weight).reshape(-1).astype(np.int64)
    weight_bits = _weight_bits(node, codes)
    codebook = node.attrs.codebook
    if codebook is not None:
        codebook = np.asarray(codebook).reshape(-1).astype(np.int64)
        if codebook.size == 0 or np.any(np.diff(codebook) <= 0):
            raise ModelError(f"layer {node.name!r}: the codebook must be a non-empty, strictly increasing "
                             f"array of codes, not {codebook.tolist()!r}")
        index_bits = (len(codebook) - 1).bit_length()  # ceil(log2 K)
    else:
        index_bits = weight_bits
    sparse = sparse_layout(codes, gap_bits)
    if layout == "auto":
        sparse_cost = len(sparse.values) * (index_bits + gap_bits)
        layout = "sparse" if sparse_cost < codes.size * index_bits else "dense"
    kept = sparse if layout == "sparse" else None
    values = sparse.values if kept is not None else codes
    if codebook is not None:
        indices = np.searchsorted(codebook, values)
        safe = np.minimum(indices, len(codebook) - 1)
        if values.size and not np.array_equal(codebook[safe], values):
            missing = sorted(set(values[codebook[safe] != values].tolist()))[:5]
            raise ModelError(f"layer {node.name!r}: every stored code (and 0 when the layer is sparse) must be in "
                             f"its codebook {codebook.tolist()!r}, not {missing!r}")
    else:
        indices = values
    return LayerStreams(codes, codebook, index_bits, kept, indices, None, None)


def encode_streams(streams: LayerStreams) -> LayerStreams:
    """``streams`` with its index (and gap) stream Huffman coded."""
    gap = huffman_encode(streams.layout.gaps) if streams.layout is not None else None
    return LayerStreams(streams.codes, streams.codebook, streams.index_bits, streams.layout, streams.indices,
                        huffman_encode(streams.indices), gap)


def bias_width(bias: np.ndarray) -> int:
    """Bits of the narrowest signed type holding every code in ``bias`` (0 for no biases)."""
    b = np.asarray(bias, np.int64).reshape(-1)
    if b.size == 0:
        return 0
    return max(max(int(b.max()), 0).bit_length(), max(int(-1 - b.min()), 0).bit_length()) + 1


def layer_report(node: QNode, gap_bits: int, huffman: bool = True, layout: str = "auto",
                 float_sizes: tuple[int, int] | None = None) -> LayerReport:
    """One layer's storage; ``float_sizes`` = (weights, biases) of the original float layer
    (default: the node's own, i.e. no channels removed)."""
    s = layer_streams(node, gap_bits, layout)
    if huffman:
        s = encode_streams(s)
    weight_bits = _weight_bits(node, s.codes)
    entries = len(s.indices)
    shared = s.codebook is not None
    codebook_size = len(s.codebook) if shared else 0
    codebook_bits = codebook_size * weight_bits
    index_raw = entries * s.index_bits
    index_huff = s.index_huffman.total_bits(s.index_bits) if s.index_huffman is not None else None
    gbits = gap_bits if s.layout is not None else 0
    sparse_raw = entries * gbits
    sparse_huff = None
    if huffman:
        sparse_huff = s.gap_huffman.total_bits(gap_bits) if s.gap_huffman is not None else 0
    # per stream, the Huffman code only where it is strictly smaller (a decoder reads a 1-bit flag per
    # stream: the flag is a header bit like the shapes, not counted)
    index_used = index_huff is not None and index_huff < index_raw
    sparse_used = sparse_huff is not None and s.layout is not None and sparse_huff < sparse_raw
    index_stored = index_huff if index_used else index_raw
    sparse_stored = sparse_huff if sparse_used else sparse_raw
    bias = np.asarray(getattr(node.attrs, "bias", np.zeros(0))).reshape(-1)
    bias_bits = bias.size * bias_width(bias)
    total_bits = codebook_bits + index_stored + sparse_stored + bias_bits
    total_bytes = math.ceil(total_bits / 8)
    float_params, float_biases = float_sizes if float_sizes is not None else (s.codes.size, bias.size)
    float_bytes = 4 * (float_params + float_biases)
    return LayerReport(
        name=node.name, op=node.op, shared=shared, layout="sparse" if s.layout is not None else "dense",
        params=int(s.codes.size), nonzeros=int(np.count_nonzero(s.codes)), biases=int(bias.size),
        weight_bits=weight_bits, index_bits=s.index_bits, codebook_size=codebook_size, codebook_bits=codebook_bits,
        codebook_bytes=math.ceil(codebook_bits / 8), entries=entries,
        fillers=s.layout.fillers if s.layout is not None else 0, gap_bits=gbits,
        index_stream_bits=index_raw, index_huffman_bits=index_huff, sparse_stream_bits=sparse_raw,
        sparse_huffman_bits=sparse_huff, index_huffman_used=index_used, sparse_huffman_used=sparse_used,
        index_stored_bits=index_stored, sparse_stored_bits=sparse_stored,
        storage=storage_name(shared, s.layout is not None, index_used, sparse_used), bias_bits=bias_bits,
        total_bits=total_bits, total_bytes=total_bytes,
        float_params=int(float_params), float_bytes=float_bytes, compression_ratio=_ratio(float_bytes, total_bytes),
    )


def storage_name(shared: bool, sparse: bool, index_huffman: bool = False, gap_huffman: bool = False) -> str:
    """The exact storage form of a layer's weights, e.g. ``codebook + sparse indices, Huffman-coded
    indices and gaps`` (a pruned shared layer is a codebook plus sparse indices, not "sparse")."""
    values = "indices" if shared else "codes"
    name = ("codebook + " if shared else "") + ("sparse " if sparse else "dense ") + values
    coded = [w for w, used in ((values, index_huffman), ("gaps", gap_huffman)) if used]
    return name + (f", Huffman-coded {' and '.join(coded)}" if coded else "")


def compression_report(qmodel_or_graph, huffman: bool = True, conv_gap_bits: int = CONV_GAP_BITS,
                       fc_gap_bits: int = FC_GAP_BITS, layout: str = "auto", progress=None) -> CompressionReport:
    """Per-layer and total storage of a QuantizedModel's or QGraph's weights (module docstring).

    Given a QuantizedModel, the float32 baseline counts the original float layers, so channels
    removed by structured pruning count as saved; a bare QGraph is its own baseline.
    ``progress(done, total)`` is called after each layer.
    """
    nodes = [n for n in _as_graph(qmodel_or_graph).nodes if n.op in WEIGHT_OPS]
    original = _original_layers(qmodel_or_graph)
    layers = []
    for i, node in enumerate(nodes):
        sizes = None
        if node.name in original:
            w, b = original[node.name]
            sizes = (w.size, b.size)
        layers.append(layer_report(node, conv_gap_bits if node.op == "conv2d" else fc_gap_bits, huffman, layout,
                                   sizes))
        if progress:
            progress(i + 1, len(nodes))
    return CompressionReport(layers, huffman, conv_gap_bits, fc_gap_bits)


def _as_graph(obj) -> QGraph:
    return obj.graph if hasattr(obj, "graph") else obj


def _original_layers(obj) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer name -> (weights, biases) of the float layer before compression, given a QuantizedModel."""
    model = getattr(obj, "float_model", None)
    if model is None:
        return {}
    from ..quant.layers import float_layers

    layers, _ = float_layers(model.relax, model.output_names, model.onnx_names)
    return {l.name: (np.asarray(l.attrs["weight"], np.float64), np.asarray(l.attrs.get("bias", ()), np.float64))
            for l in layers if l.op in WEIGHT_OPS}


@dataclass(frozen=True)
class WeightHistogram:
    """What one weight layer's histogram shows, every array in the same ``unit``.

    ``stored``: the nonzero weights as the hardware holds them (codes, times the scale when the
    layer has one); ``original``: the float weights before pruning and sharing at the positions
    that stay nonzero, divided by the same scale (None for a bare graph, or when structured
    pruning removed channels); ``codebook``: the shared values (None when unshared).  With
    ``--refine lsq`` the shared values are refitted to the layer's outputs, so they (and
    ``stored``) can sit well outside ``original``: both are drawn, in the same units."""

    name: str
    op: str
    unit: str  # "weight" (one scale: real values) or "code" (per-channel scales: codes)
    stored: np.ndarray
    original: np.ndarray | None
    codebook: np.ndarray | None
    zero_fraction: float


def weight_histograms(qmodel_or_graph) -> list[WeightHistogram]:
    """The data of ``plot_histograms``: one ``WeightHistogram`` per conv2d/dense layer."""
    nodes = [n for n in _as_graph(qmodel_or_graph).nodes if n.op in WEIGHT_OPS]
    original = {name: wb[0] for name, wb in _original_layers(qmodel_or_graph).items()}
    out = []
    for node in nodes:
        codes = np.asarray(node.attrs.weight)
        axis = 0 if node.op == "conv2d" else 1
        scales = np.asarray([] if node.attrs.weight_scale is None else node.attrs.weight_scale, dtype=np.float64).reshape(-1)
        uniform = scales.size > 0 and bool(np.all(scales == scales[0]))
        unit = float(scales[0]) if uniform else 1.0  # one scale: real weights; else codes (a codebook is codes)
        keep = codes != 0
        w = original.get(node.name)
        orig = None
        if w is not None and w.shape == codes.shape and scales.size == codes.shape[axis]:
            shape = [1] * codes.ndim
            shape[axis] = -1
            orig = (w if uniform else w / scales.reshape(shape))[keep].astype(np.float64)
        codebook = node.attrs.codebook
        out.append(WeightHistogram(
            node.name, node.op, "weight" if uniform else "code", codes[keep].astype(np.float64) * unit, orig,
            None if codebook is None else np.asarray(codebook, np.float64).reshape(-1) * unit,
            1.0 - np.count_nonzero(keep) / codes.size if codes.size else 0.0))
    return out


def histogram_figure(hists: list[WeightHistogram], cols: int = 4):
    """A matplotlib figure: per layer the stored weights (bars), the float weights before
    compression (outline) and the codebook (dashed lines), one x axis in the plotted units, with a
    legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(cols, max(1, len(hists)))
    rows = max(1, math.ceil(len(hists) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 2.9 * rows), dpi=90, squeeze=False)
    for ax in axes.flat[len(hists):]:
        ax.axis("off")
    for ax, h in zip(axes.flat, hists):
        parts = [a for a in (h.stored, h.original, h.codebook) if a is not None and a.size]
        lo, hi = (min(float(a.min()) for a in parts), max(float(a.max()) for a in parts)) if parts else (-1.0, 1.0)
        edges = np.linspace(lo, hi, 65) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, 65)
        if h.stored.size:
            ax.hist(h.stored, bins=edges, color="tab:blue", alpha=0.75, zorder=2, label="stored (nonzero)")
        if h.original is not None and h.original.size:
            ax.hist(h.original, bins=edges, histtype="step", color="black", linewidth=0.9, zorder=3,
                    label="float before compression")
        if h.codebook is not None:
            for i, c in enumerate(h.codebook):
                ax.axvline(float(c), color="tab:red", linewidth=0.8, linestyle="--", alpha=0.8, zorder=1,
                           label=f"codebook (K={h.codebook.size})" if i == 0 else None)
        k = f", K={h.codebook.size}" if h.codebook is not None else ""
        ax.set_title(f"{h.name} ({h.op}{k}, {h.zero_fraction:.0%} zero)", fontsize=8)
        ax.set_xlabel("weight" if h.unit == "weight" else "code (weight / its channel's scale)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5.5, loc="upper right", framealpha=0.8)
    fig.tight_layout()
    return fig


def plot_histograms(qmodel_or_graph, path=None) -> bytes:
    """One histogram per weight layer (``weight_histograms``): the stored nonzero weights, the
    float weights before compression and the codebook, in one unit per plot (the real weight when
    the layer has one weight scale; the code, weight / its channel's scale, when per-channel
    scales differ, since a shared codebook is a set of codes), with a legend; PNG bytes.  Writes
    the PNG to ``path`` when given."""
    fig = histogram_figure(weight_histograms(qmodel_or_graph))  # selects the Agg backend
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data

def settings_text(comp) -> str:
    """A ``CompressConfig`` as one readable line, every setting named, e.g. ``prune 80% of each
    layer's weights (magnitude); share 4 bits: 16 values per layer (k-means refined by least
    squares); per layer: logits share 6 bits``."""
    parts = []
    if comp.sparsity:
        parts.append(f"prune {comp.sparsity:.0%} of each layer's weights ("
                     + ("whole output channels, removed" if comp.structured else "magnitude") + ")")
    if comp.quality is not None:
        parts.append(f"prune weights with |w| < {comp.quality:g} x the layer's standard deviation"
                     + (" (whole output channels, removed)" if comp.structured else ""))
    if comp.share_bits is not None:
        parts.append(f"share {comp.share_bits} bits: {2 ** comp.share_bits} values per layer")
    if comp.shares:
        parts.append("shared values " + ("by k-means refined by least squares on calibration outputs (lsq)"
                                         if comp.refine == "lsq" else "by plain k-means"))
    layers = ([f"{name} prune {v:.0%}" for name, v in sorted(comp.layer_sparsity.items())]
              + [f"{name} prune |w| < {v:g} std" for name, v in sorted(comp.layer_quality.items())]
              + [f"{name} share {v} bits" for name, v in sorted(comp.layer_share_bits.items())])
    if layers:
        parts.append("per layer: " + ", ".join(layers))
    return "; ".join(parts) or "none"
