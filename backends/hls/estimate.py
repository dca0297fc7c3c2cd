"""First-order resource and latency estimates for the ``hls`` backend, without vendor tools.

``estimate(design, options)`` gives one ``LayerEstimate`` per kernel from the layer's shapes,
bit widths and attrs alone; ``totals(estimates)`` sums them.  The model follows hls4ml's
reuse-factor convention (each multiplier is used ``R`` times per output vector, so a
dense/conv kernel has ``ceil(MACs / R)`` multipliers and takes a new output vector every ``R``
cycles); every ``ii`` is per sample (cycles between successive inputs of the kernel), so under
DATAFLOW the model's II is the largest one.  It follows rules of thumb for how Vivado/Vitis
HLS maps multipliers and memories onto a Xilinx UltraScale+ fabric (DSP48E2, BRAM18, LUT6).  Every constant and formula is written down in
docs/hls_estimates.md; these are estimates to compare design points, not synthesis results.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph, QNode

from ..base import Design, LayerEstimate

# -- fabric constants (docs/hls_estimates.md, "Mapping rules") ---------------------------------------
DSP_PORTS = (27, 18)  # DSP48E2 signed multiplier: 27 x 18 bits
DSP_TILE = 17  # wider products are tiled into 17-bit unsigned partial products
LUT_MULT_NARROW = 4  # a product with an operand of at most this many bits goes to LUTs ...
LUT_MULT_SUM = 10  # ... and so does one whose operand widths sum to at most this
DSP_STAGES, LUT_MULT_STAGES = 3, 1  # pipeline registers of a DSP / a LUT multiplier
BRAM18_BITS = 18 * 1024
LUTRAM_MAX_BITS, LUTRAM_MAX_DEPTH = 1024, 64  # smaller or shallower memories use LUTs, not BRAM
LUT6_DEPTH = 64  # a LUT6 is a 64 x 1 ROM / RAM
CONTROL_LUT, CONTROL_FF = 40, 40  # FSM, loop counters and handshakes of one kernel (a guess)
DEFAULT_CLOCK_NS = 5.0

MAC_OPS = ("dense", "conv2d")


@dataclass(frozen=True)
class Cost:
    """Resources of one part of a kernel; parts add up."""

    dsp: int = 0
    bram18: int = 0
    lut: int = 0
    ff: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.dsp + other.dsp, self.bram18 + other.bram18, self.lut + other.lut, self.ff + other.ff)

    def __mul__(self, n: int) -> Cost:
        return Cost(self.dsp * n, self.bram18 * n, self.lut * n, self.ff * n)


def _clog2(n: int) -> int:
    return ceil(log2(n)) if n > 1 else 0


def multiplier(a: int, b: int) -> Cost:
    """One ``a x b``-bit product (signed widths): LUTs when narrow, else DSP48E2 tiles."""
    if min(a, b) <= LUT_MULT_NARROW or a + b <= LUT_MULT_SUM:
        return Cost(lut=a * b if min(a, b) > 1 else max(a, b))
    hi, lo = max(a, b), min(a, b)
    if hi <= DSP_PORTS[0] and lo <= DSP_PORTS[1]:
        return Cost(dsp=1)
    return Cost(dsp=ceil(hi / DSP_TILE) * ceil(lo / DSP_TILE))


def memory(depth: int, width: int) -> Cost:
    """A ``depth x width``-bit array: registers, LUTRAM/ROM, or BRAM18 in its widest aspect ratio."""
    if depth <= 0 or width <= 0:
        return Cost()
    if depth == 1:
        return Cost(ff=width)
    if depth * width < LUTRAM_MAX_BITS or depth < LUTRAM_MAX_DEPTH:
        return Cost(lut=width * ceil(depth / LUT6_DEPTH))
    port = next((w for d, w in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2)) if depth <= d), 1)
    return Cost(bram18=ceil(width / port) * ceil(depth / 16384))


def _signed_width(bits: int, signed: bool) -> int:
    return bits if signed else bits + 1


def _requant_unit(node: QNode, acc_bits: int, out_bits: int, multipliers: Any = None) -> tuple[Cost, int]:
    """One requantizer (``acc * M``, round, shift, saturate): its cost and pipeline depth."""
    m = np.asarray(node.attrs.multiplier if multipliers is None else multipliers, dtype=np.int64)
    m_bits = int(np.abs(m).max()).bit_length() if m.size else 0
    if m_bits <= 1:  # M == 1 everywhere (pow2 mode): a shift only
        mult, stages, m_bits = Cost(), 0, 0
    else:
        mult = multiplier(acc_bits, m_bits + 1)
        stages = DSP_STAGES if mult.dsp else LUT_MULT_STAGES
    width = acc_bits + m_bits
    round_sat = Cost(lut=width + 2 * out_bits, ff=width + out_bits)
    return mult + round_sat, stages + 1


@dataclass(frozen=True)
class MacShape:
    """The numbers of one dense/conv layer that the formulas need."""

    k: int  # products per output value (K, or I/g * kh * kw)
    outputs: int  # output values per output vector (N, or O per pixel)
    vectors: int  # output vectors per input (1, or OH * OW)
    nnz: int  # nonzero weights
    max_col_nnz: int  # most nonzero weights feeding one output value
    n_weights: int
    x_bits: int  # signed widths
    w_bits: int
    out_bits: int


def _weight_bits(node: QNode) -> int:
    if node.attrs.weight_bits:
        return int(node.attrs.weight_bits)
    w = np.asarray(node.attrs.weight, dtype=np.int64)
    return max(2, int(max(w.max(initial=0), -w.min(initial=0) - 1)).bit_length() + 1)


def mac_shape(graph: QGraph, node: QNode) -> MacShape:
    x = graph.tensors[node.inputs[0]]
    y = graph.tensors[node.output]
    w = np.asarray(node.attrs.weight, dtype=np.int64)
    if node.op == "dense":
        cols = np.count_nonzero(w, axis=0)  # [N]
        k, outputs, vectors = w.shape[0], w.shape[1], 1
    else:
        cols = np.count_nonzero(w.reshape(w.shape[0], -1), axis=1)  # [O]
        k, outputs = int(np.prod(w.shape[1:])), w.shape[0]
        vectors = int(np.prod(y.shape[2:]))
    return MacShape(k, outputs, vectors, int(cols.sum()), int(cols.max(initial=0)), w.size,
                _signed_width(x.qtype.bits, x.qtype.signed), _weight_bits(node), y.qtype.bits)


def storage_form(node: QNode) -> str:
    """The weight storage the estimate assumes when the caller does not say: ``codebook`` when the
    layer has one, ``sparse`` when it was pruned, else ``dense``."""
    if node.attrs.codebook is not None:
        return "codebook"
    if (node.attrs.pruned_sparsity or 0) > 0:
        return "sparse"
    return "dense"


def _mac_estimate(graph: QGraph, node: QNode, r: int, form: str) -> LayerEstimate:
    m = mac_shape(graph, node)
    sparse = form == "sparse"
    macs_per_vector = (m.nnz if sparse else m.k * m.outputs)
    mults = max(1, ceil(macs_per_vector / r))
    lanes = ceil(m.outputs / r)  # requantizers: output values finished per cycle
    prod_bits = m.x_bits + m.w_bits - 1
    acc_bits = prod_bits + _clog2(m.k + 1)  # + 1 term: the bias

    mult = multiplier(m.x_bits, m.w_bits)
    req, req_stages = _requant_unit(node, acc_bits, m.out_bits)
    cost = mult * mults + Cost(lut=acc_bits, ff=acc_bits) * mults + Cost(ff=prod_bits) * mults
    cost += req * lanes + Cost(lut=CONTROL_LUT, ff=CONTROL_FF)

    # weights: compile-time constants when fully unrolled (R = 1), else an array reshaped into R words
    if r > 1:
        if form == "codebook":
            cb = len(node.attrs.codebook)
            idx_bits = max(1, _clog2(cb))
            cost += memory(r, ceil(m.n_weights / r) * idx_bits)
            cost += Cost(lut=m.w_bits * ceil(cb / LUT6_DEPTH)) * mults  # one decoder per multiplier
        elif sparse:
            cost += memory(r, ceil(m.nnz / r) * (m.w_bits + max(1, _clog2(m.k))))
        else:
            cost += memory(r, ceil(m.n_weights / r) * m.w_bits)

    terms = ceil((m.max_col_nnz if sparse else m.k) / r) + 1
    depth = (DSP_STAGES if mult.dsp else LUT_MULT_STAGES) + _clog2(terms) + req_stages
    notes = f"macs={macs_per_vector * m.vectors} multipliers={mults} storage={form} R={r}"
    if node.op == "dense":
        return LayerEstimate(node.name, node.op, depth + r - 1, r, cost.dsp, cost.bram18, cost.lut, cost.ff, notes)

    # conv2d: a line buffer of kh - 1 padded rows feeds one window (all input channels) per cycle
    x = graph.tensors[node.inputs[0]]
    c, h, w = (int(d) for d in x.shape[1:])
    _, _, kh, kw = node.attrs.weight.shape
    top, left, bottom, right = node.attrs.padding
    hp, wp = h + top + bottom, w + left + right
    dil_h, dil_w = node.attrs.dilation
    span_h, span_w = dil_h * (kh - 1) + 1, dil_w * (kw - 1) + 1
    x_width = c * (m.x_bits - (0 if x.qtype.signed else 1))
    cost += memory(wp, x_width) * (span_h - 1) + Cost(ff=span_h * span_w * x_width)
    fill = (span_h - 1) * wp + span_w - 1
    latency = max(hp * wp, fill + m.vectors * r) + depth
    # II per sample: the kernel is busy reading the padded input or computing its pixels
    ii = max(hp * wp, m.vectors * r)
    notes += f" pixel_ii={r}"
    return LayerEstimate(node.name, node.op, latency, ii, cost.dsp, cost.bram18, cost.lut, cost.ff, notes)


def _elements(graph: QGraph, name: str) -> int:
    return int(np.prod([int(d) for d in graph.tensors[name].shape[1:]]))


def _stream_estimate(graph: QGraph, node: QNode) -> LayerEstimate:
    """Pools and element-wise kernels: one element per cycle, II 1."""
    a = node.attrs
    y = graph.tensors[node.output]
    b = y.qtype.bits
    xq = graph.tensors[node.inputs[0]].qtype
    cycles, depth, cost = _elements(graph, node.output), 1, Cost()
    if node.op in ("max_pool2d", "avg_pool2d"):
        c, h, w = (int(d) for d in graph.tensors[node.inputs[0]].shape[1:])
        kh, kw = a.pool_size
        top, left, bottom, right = a.padding
        hp, wp = h + top + bottom, w + left + right
        cycles = c * hp * wp
        cost = memory(wp * c, xq.bits) * (kh - 1) + Cost(ff=kh * kw * xq.bits)
        if node.op == "max_pool2d":
            cost += Cost(lut=2 * xq.bits) * (kh * kw - 1)  # compare + select
            depth = _clog2(kh * kw) + 1
        else:
            acc = xq.bits + _clog2(kh * kw)
            req, stages = _requant_unit(node, acc, b)
            cost += Cost(lut=acc, ff=acc) * (kh * kw - 1) + req
            depth = _clog2(kh * kw) + stages
    elif node.op == "global_avg_pool":
        c, h, w = (int(d) for d in graph.tensors[node.inputs[0]].shape[1:])
        acc = xq.bits + _clog2(h * w)
        req, stages = _requant_unit(node, acc, b)
        cycles = c * h * w
        cost = memory(c, acc) + Cost(lut=acc, ff=acc) + req
        depth = 1 + stages
    elif node.op == "add":
        (ma, mb) = a.multipliers
        qa, qb = xq, graph.tensors[node.inputs[1]].qtype
        ra, sa = _requant_unit(node, _signed_width(qa.bits, qa.signed), b, ma)
        rb, sb = _requant_unit(node, _signed_width(qb.bits, qb.signed), b, mb)
        cost = ra + rb + Cost(lut=b + 1, ff=b + 1)
        depth = max(sa, sb) + 1
    elif node.op == "mul":
        qb = graph.tensors[node.inputs[1]].qtype
        wa, wb = _signed_width(xq.bits, xq.signed), _signed_width(qb.bits, qb.signed)
        prod = multiplier(wa, wb)
        req, stages = _requant_unit(node, wa + wb - 1, b)
        cost = prod + req
        depth = (DSP_STAGES if prod.dsp else LUT_MULT_STAGES) + stages
    elif node.op == "requant":
        cost, depth = _requant_unit(node, _signed_width(xq.bits, xq.signed), b)
    elif node.op == "hard_swish":  # the gate (add, clamp), x * t, then a requantizer
        xw, tw = _signed_width(xq.bits, xq.signed), int(a.c6).bit_length() + 1
        prod = multiplier(xw, tw)
        req, stages = _requant_unit(node, xw + tw - 1, b)
        cost = Cost(lut=3 * tw, ff=tw) + prod + req
        depth = 1 + (DSP_STAGES if prod.dsp else LUT_MULT_STAGES) + stages
    elif node.op == "lut":
        cost = memory(len(a.table), b)
    elif node.op == "lrn":  # window sum of squares over a channel line buffer, table, multiply, requant
        plane = int(np.prod([int(d) for d in graph.tensors[node.inputs[0]].shape[2:]]))
        taps = int(a.before) + int(a.after) + 1
        sq = multiplier(_signed_width(xq.bits, xq.signed), _signed_width(xq.bits, xq.signed))
        f_bits = int(np.max(a.table)).bit_length()
        # CHW order: a channel window needs the taps - 1 planes before it buffered
        cost = sq * taps + memory(len(a.table), f_bits) + memory(plane, xq.bits) * (taps - 1)
        req, stages = _requant_unit(node, _signed_width(xq.bits, xq.signed) + f_bits, b, a.table)
        cost += req
        depth = _clog2(taps) + stages + 2
    elif node.op == "clip":
        cost = Cost(lut=2 * b, ff=b)
    elif node.op in ("concat", "pad"):
        cost = Cost(lut=b, ff=b)  # a select per element
    elif node.op == "transpose":
        cost = memory(cycles, b)  # the whole tensor is buffered to reorder it
    elif node.op == "reshape":
        return LayerEstimate(node.name, node.op, 0, 1, 0, 0, 0, 0, "free: same element order")
    else:
        raise InputError(f"the hls estimate has no model for op {node.op!r} (layer {node.name!r})")
    cost += Cost(lut=CONTROL_LUT, ff=CONTROL_FF)
    return LayerEstimate(node.name, node.op, cycles + depth, cycles, cost.dsp, cost.bram18, cost.lut, cost.ff,
                         f"elements={cycles} element_ii=1")


def reuse_factor(options: dict[str, Any], layer: str) -> int:
    """``options["reuse_factor"]``: one int for every layer, or {layer name: int, "default": int}."""
    value = options.get("reuse_factor", 1)
    if isinstance(value, dict):
        value = value.get(layer, value.get("default", 1))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"option reuse_factor for layer {layer!r} must be a positive integer, not {value!r}")
    return value


def estimate(design: Design, options: dict[str, Any], storage: dict[str, str] | None = None) -> list[LayerEstimate]:
    """One ``LayerEstimate`` per kernel of ``design``, in execution order.

    ``storage`` maps a layer name to the weight storage the codegen chose (``dense``, ``codebook``
    or ``sparse``); layers it does not name use ``storage_form``."""
    out = []
    for kernel in design.kernels:
        node = kernel.node
        if node.op in MAC_OPS:
            form = (storage or {}).get(node.name) or storage_form(node)
            if form not in ("dense", "codebook", "sparse"):
                raise InputError(f"storage form of layer {node.name!r} must be dense, codebook or sparse, not {form!r}")
            out.append(_mac_estimate(design.graph, node, reuse_factor(options, node.name), form))
        else:
            out.append(_stream_estimate(design.graph, node))
    return out


def totals(estimates: list[LayerEstimate], clock_ns: float | None = None) -> dict[str, Any]:
    """Sums over layers (latency assumes layers run one after another, no overlap); ``ii_max`` is
    the largest layer II, the model's interval between samples under DATAFLOW; ``latency_us``
    at ``clock_ns`` when given."""
    doc: dict[str, Any] = {"layers": len(estimates),
                           "latency_cycles": sum(e.latency_cycles for e in estimates),
                           "ii_max": max((e.ii for e in estimates), default=0)}
    for key in ("dsp", "bram18", "lut", "ff"):
        doc[key] = sum(getattr(e, key) or 0 for e in estimates)
    if clock_ns is not None:
        doc["clock_ns"] = clock_ns
        doc["latency_us"] = doc["latency_cycles"] * clock_ns / 1000
    return doc
