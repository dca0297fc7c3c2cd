"""The hls backend's analytic estimates (backends/hls/estimate.py) against numbers worked out by
hand from the formulas in docs/hls_estimates.md, plus monotonicity and totals."""

from __future__ import annotations

import numpy as np
import pytest

from nnforge.backends.base import Design, Kernel
from nnforge.backends.hls.estimate import estimate, memory, multiplier, totals
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QGraph, QNode, QTensor

U8, S8 = QType(8, False), QType(8, True)
REQUANT = {"multiplier": np.array([200, 150, 100]), "shift": np.array([12, 12, 12]), "lo": 0, "hi": None,
           "rounding": "RND", "overflow": "SAT", "acc_dtype": "int32", "weight_bits": 8}


def _design(node: QNode, tensors: list[QTensor]) -> Design:
    graph = QGraph([tensors[0]], {t.name: t for t in tensors}, [node], [node.output])
    return Design("hls", graph, None, [Kernel(node, "nnforge_hls." + node.op, "f", "k")], [])


def tiny_dense(weight=None) -> Design:
    w = np.arange(12).reshape(4, 3) - 6 if weight is None else weight
    node = QNode("dense", "fc", ["x"], "y", {"weight": w, "bias": np.zeros(3, np.int64), **REQUANT})
    return _design(node, [QTensor("x", ("batch", 4), U8, 1.0), QTensor("y", ("batch", 3), U8, 1.0)])


def tiny_conv() -> Design:
    w = (np.arange(54).reshape(3, 2, 3, 3) % 7) - 3
    node = QNode("conv2d", "conv", ["x"], "y", {"weight": w, "bias": np.zeros(3, np.int64), "strides": (1, 1),
                                               "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1, **REQUANT})
    return _design(node, [QTensor("x", ("batch", 2, 4, 4), U8, 1.0), QTensor("y", ("batch", 3, 4, 4), U8, 1.0)])


def test_mapping_rules():
    assert multiplier(9, 8) == multiplier(18, 27) and multiplier(9, 8).dsp == 1  # fits one DSP48E2
    assert multiplier(9, 4).dsp == 0 and multiplier(9, 4).lut == 36  # 4-bit operand: LUTs, a*b
    assert multiplier(5, 5).lut == 25  # widths sum to 10: LUTs
    assert multiplier(9, 1).lut == 9  # 1-bit operand: a select
    assert multiplier(33, 33).dsp == 4  # wider than 27x18: ceil(33/17) * ceil(33/17) = 2 * 2 tiles
    assert memory(1, 100).ff == 100  # a single word: registers
    assert memory(16, 32).lut == 32 and memory(16, 32).bram18 == 0  # 512 bits: LUTRAM
    assert memory(512, 72).bram18 == 2  # 512 deep: 36-bit ports, 72 / 36
    assert memory(1024, 72).bram18 == 4  # 1024 deep: 18-bit ports
    assert memory(4096, 8).bram18 == 2  # 4096 deep: 4-bit ports


def test_tiny_dense_by_hand():
    """x: u8[4] (9 bits signed), w: s8[4, 3], y: u8[3], M = (200, 150, 100) (8 bits), R = 1.

    MACs per output vector 4*3 = 12 -> 12 multipliers, 9x8 > LUT threshold -> 12 DSP.
    product 9+8-1 = 16 bits; accumulator 16 + ceil(log2(4+1)) = 19 bits.
    requantizers: ceil(3/1) = 3, each 19x9 -> 1 DSP; total DSP 12 + 3 = 15.
    LUT: adders 12*19 = 228; round/saturate 3*(19+8 + 2*8) = 3*43 = 129; control 40 -> 397.
    FF: adders 12*19 = 228; products 12*16 = 192; requant 3*(27+8) = 105; control 40 -> 565.
    BRAM: R = 1, weights are constants -> 0.
    depth: DSP 3 + tree ceil(log2(4+1)) = 3 + requant (DSP 3 + round/sat 1) = 4 -> 10.
    latency = depth + R - 1 = 10, II = R = 1."""
    [e] = estimate(tiny_dense(), {})
    assert (e.dsp, e.lut, e.ff, e.bram18) == (15, 397, 565, 0)
    assert (e.latency_cycles, e.ii) == (10, 1)
    assert "macs=12" in e.notes and "multipliers=12" in e.notes

    # R = 2: 6 multipliers, 2 requantizers -> DSP 8.  Weights: 12*8 = 96 bits reshaped into
    # depth 2 x width 48 -> too shallow for BRAM, LUTRAM 48 LUTs.  Tree ceil(log2(2+1)) = 2,
    # depth 3+2+4 = 9, latency 9 + 2 - 1 = 10, II 2.
    [e2] = estimate(tiny_dense(), {"reuse_factor": 2})
    assert (e2.dsp, e2.bram18, e2.latency_cycles, e2.ii) == (8, 0, 10, 2)
    assert e2.lut == 6 * 19 + 2 * 43 + 40 + 48


def test_tiny_conv_by_hand():
    """x: u8[2, 4, 4], w: s8[3, 2, 3, 3], pad 1, stride 1 -> y: u8[3, 4, 4], R = 1.

    per output pixel: K = 2*3*3 = 18, 3 outputs -> 54 multipliers -> 54 DSP; 3 requant DSP -> 57.
    accumulator 16 + ceil(log2(19)) = 21 bits; requant width 21+8 = 29.
    LUT: 54*21 + 3*(29 + 16) + 40 = 1134 + 135 + 40 = 1309, plus line buffers: 2 rows of
    6 (padded width) x 16 bits (2 channels x 8 bits) -> LUTRAM 16 each -> 1341.
    FF: 54*21 + 54*16 + 3*(29+8) + 40 = 1134 + 864 + 111 + 40 = 2149, plus the 3x3 window
    of 16 bits = 144 -> 2293.
    depth: 3 + ceil(log2(19)) = 5 + 4 = 12.  Fill: 2 padded rows + 2 pixels = 14 cycles, then
    16 pixels at II 1 = 30 < 36 padded input pixels read at one per cycle -> latency 36 + 12 = 48."""
    [e] = estimate(tiny_conv(), {})
    assert (e.dsp, e.bram18, e.lut, e.ff) == (57, 0, 1341, 2293)
    assert (e.latency_cycles, e.ii) == (48, 36)  # per sample: reading 36 padded pixels > 16 x R
    # R = 4: ceil(54/4) = 14 multipliers, ceil(3/4) = 1 requantizer -> 15 DSP; tree
    # ceil(log2(ceil(18/4)+1)) = 3 -> depth 10; compute 14 + 16*4 = 78 > 36 -> latency 88.
    [e4] = estimate(tiny_conv(), {"reuse_factor": 4})
    assert (e4.dsp, e4.latency_cycles, e4.ii) == (15, 88, 64)  # 16 pixels x R = 64 > 36


@pytest.mark.parametrize("design", [tiny_dense, tiny_conv])
def test_reuse_trades_dsp_for_latency(design):
    runs = [estimate(design(), {"reuse_factor": r})[0] for r in (1, 2, 3, 4, 6, 8, 12)]
    dsp = [e.dsp for e in runs]
    lat = [e.latency_cycles for e in runs]
    assert dsp == sorted(dsp, reverse=True) and dsp[-1] < dsp[0]
    assert lat == sorted(lat) and lat[-1] > lat[0]
    # dense: a new sample every R cycles; conv: max(36 padded input pixels, 16 output pixels x R)
    want = ([1, 2, 3, 4, 6, 8, 12] if design is tiny_dense else [36, 36, 48, 64, 96, 128, 192])
    assert [e.ii for e in runs] == want


def test_sparse_and_codebook_storage():
    w = np.arange(12).reshape(4, 3) - 6
    w[w % 2 == 0] = 0  # half the weights pruned
    dense = estimate(tiny_dense(w), {"reuse_factor": 1}, storage={"fc": "dense"})[0]
    sparse = estimate(tiny_dense(w), {"reuse_factor": 1}, storage={"fc": "sparse"})[0]
    assert "multipliers=12" in dense.notes and "multipliers=6" in sparse.notes  # only nonzeros multiply
    assert sparse.dsp == dense.dsp - 6

    big = np.resize(np.array([-3, -1, 1, 3]), (64, 32))  # 4 distinct codes
    cb = estimate(tiny_dense_big(big, codebook=np.array([-3, -1, 1, 3])), {"reuse_factor": 64})[0]
    plain = estimate(tiny_dense_big(big), {"reuse_factor": 64})[0]
    assert "storage=codebook" in cb.notes and "storage=dense" in plain.notes
    # dense: depth 64, width 32*8 = 256 bits -> BRAM18 ceil(256/36) = 8; codebook: 2-bit indices,
    # width 64 bits -> 2 BRAM18, plus 32 decoders of 8 LUTs
    assert (plain.bram18, cb.bram18) == (8, 2)


def tiny_dense_big(w, codebook=None) -> Design:
    n = w.shape[1]
    attrs = {"weight": w, "bias": np.zeros(n, np.int64), **REQUANT, "multiplier": np.full(n, 200)}
    if codebook is not None:
        attrs["codebook"] = codebook
    node = QNode("dense", "fc", ["x"], "y", attrs)
    return _design(node, [QTensor("x", ("batch", w.shape[0]), U8, 1.0), QTensor("y", ("batch", n), U8, 1.0)])


def test_totals_are_sums_and_options_are_checked():
    ests = estimate(tiny_dense(), {}) + estimate(tiny_conv(), {"reuse_factor": 2})
    t = totals(ests, clock_ns=5.0)
    for key in ("dsp", "bram18", "lut", "ff", "latency_cycles"):
        assert t[key] == sum(getattr(e, key) for e in ests)
    assert t["ii_max"] == 36 and t["layers"] == 2  # the conv at R=2: max(36, 16 * 2) and t["latency_us"] == t["latency_cycles"] * 5.0 / 1000
    with pytest.raises(InputError, match="reuse_factor for layer 'fc' must be a positive integer, not 0"):
        estimate(tiny_dense(), {"reuse_factor": 0})
    assert estimate(tiny_dense(), {"reuse_factor": {"fc": 2}})[0].ii == 2
    with pytest.raises(InputError, match="storage form"):
        estimate(tiny_dense(), {}, storage={"fc": "huffman"})
