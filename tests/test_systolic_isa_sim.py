"""The systolic functional model (``backends/systolic/isa_sim.py``) against docs/systolic.md.

Oracles: explicit numpy loops written from the spec's formulas with ``nnforge.compiler.quant.numerics``
for rounding and saturation, and hand-worked numbers (cycle counts, tiny windows).
"""

from __future__ import annotations

import numpy as np
import pytest

from nnforge.backends.systolic import isa, isa_sim
from nnforge.compiler.quant.numerics import QType, requantize, round_shift, saturate

M = isa_sim.Machine(rows=2, cols=4, in_bits=8, acc_bits=32, idx_bits=3, spad_depth=256, wmem_depth=256,
                    imem_depth=64, pmem_depth=512, prog_depth=32)
S8 = dict(out_signed=1, out_bits=8, lo=-128, hi=127, rnd=1)


def _prog(*body: isa.Instr, inputs: int, out_base: int, out_count: int) -> list[isa.Instr]:
    return ([isa.Instr(isa.OP_INPUT, dict(count=inputs, out_base=0)), isa.Instr(isa.OP_SYNC, dict(count=0))]
            + list(body) + [isa.Instr(isa.OP_SYNC, dict(count=1)),
                            isa.Instr(isa.OP_OUTPUT, dict(count=out_count, in_base=out_base)),
                            isa.Instr(isa.OP_END, {})])


def _signed(raw: np.ndarray, bits: int = 8) -> np.ndarray:
    return np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)


def _conv_reference(x, w, b, mult, shift, stride, pad, dil):
    """Direct loops over the spec's GEMM formula: x [n, C, H, W], w [O, C, kh, kw]."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = stride, pad, dil
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    acc = np.zeros((n, o, oh, ow), np.int64) + b[None, :, None, None]
    for i in range(oh):
        for j in range(ow):
            for ki in range(kh):
                for kj in range(kw):
                    ih, iw = i * sh - pt + ki * dh, j * sw - pl + kj * dw
                    if 0 <= ih < h and 0 <= iw < wd:
                        acc[:, :, i, j] += x[:, :, ih, iw] @ w[:, :, ki, kj].T
    return requantize(acc, mult[None, :, None, None], shift[None, :, None, None], QType(8, True)), (oh, ow)


def _gemm_images(w, b, mult, shift, cols):
    """WMEM lanes in the documented k-step order (ki, kj, q, l) and PMEM words, by explicit loops."""
    o, c, kh, kw = w.shape
    n_words, k_words = -(-o // cols), -(-c // cols)
    rows = []
    for n in range(n_words):
        for ki in range(kh):
            for kj in range(kw):
                for q in range(k_words):
                    for lane in range(cols):
                        ch = q * cols + lane
                        rows.append([w[n * cols + j, ch, ki, kj] if n * cols + j < o and ch < c else 0
                                     for j in range(cols)])
    pad = lambda v: np.concatenate([v, np.zeros(n_words * cols - o, np.int64)]).reshape(n_words, cols)
    return np.array(rows), isa.pack_pmem(pad(b), pad(mult), pad(shift), 32), n_words, k_words


def _pack_pixels(x, cols):
    """[n, C, H, W] -> pixel-major words [n, H*W*k_words, cols]."""
    n, c, h, w = x.shape
    kw_ = -(-c // cols)
    out = np.zeros((n, h * w, kw_ * cols), np.int64)
    out[:, :, :c] = x.reshape(n, c, h * w).transpose(0, 2, 1)
    return out.reshape(n, h * w * kw_, cols)


@pytest.mark.parametrize("stride,pad,dil", [((1, 1), (1, 1, 1, 1), (1, 1)), ((2, 1), (0, 2, 1, 0), (1, 2))])
def test_gemm_is_the_specified_convolution(stride, pad, dil, rng):
    x = rng.integers(-128, 128, size=(3, 6, 5, 4))  # 6 channels: two input words, lanes 2..3 padding
    w = rng.integers(-128, 128, size=(5, 6, 3, 2))  # 5 output channels: two output words
    b = rng.integers(-3000, 3000, size=5)
    mult, shift = rng.integers(1 << 14, 1 << 15, size=5), rng.integers(14, 20, size=5)
    want, (oh, ow) = _conv_reference(x, w, b, mult, shift, stride, pad, dil)
    lanes, pmem, n_words, k_words = _gemm_images(w, b, mult, shift, M.cols)
    words = _pack_pixels(x, M.cols)
    out_base = 100
    gemm = isa.Instr(isa.OP_GEMM, dict(a_signed=1, w_signed=1, in_base=0, in_h=5, in_w=4, in_ps=k_words,
                                       out_base=out_base, out_h=oh, out_w=ow, out_ps=n_words, n_words=n_words,
                                       kh=3, kw=2, sh=stride[0], sw=stride[1], dh=dil[0], dw=dil[1], pt=pad[0],
                                       pl=pad[1], k_words=k_words, k_step=0, **S8))
    prog = _prog(gemm, inputs=words.shape[1], out_base=out_base, out_count=oh * ow * n_words)
    r = isa_sim.run(M, prog, isa.pack_lanes(lanes, 8), [], pmem, words)
    got = _signed(r.outputs).reshape(3, oh * ow, n_words * M.cols)[:, :, :5].transpose(0, 2, 1)
    assert np.array_equal(got.reshape(want.shape), want)


def test_shared_weights_decode_through_the_codebook(rng):
    """The same GEMM with IMEM indices and the codebook after the per-channel PMEM words."""
    codebook = np.array([-77, -5, 0, 3, 19, 64, 101, 127])
    x = rng.integers(0, 256, size=(2, 4, 3, 3))  # unsigned input
    w = codebook[rng.integers(0, 8, size=(3, 4, 1, 1))]
    b, mult, shift = rng.integers(-100, 100, 3), np.array([1, 2, 3]), np.array([4, 5, 6])
    lanes, pmem, n_words, k_words = _gemm_images(w, b, mult, shift, M.cols)
    idx = np.searchsorted(codebook, lanes)
    pmem += isa.pack_pmem([[v, 0, 0, 0] for v in codebook], [[0] * 4] * 8, [[0] * 4] * 8, 32)
    gemm = dict(a_signed=0, w_signed=1, in_base=0, in_h=3, in_w=3, in_ps=1, out_base=50, out_h=3, out_w=3, out_ps=1,
                n_words=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, k_words=1, **S8)
    words = _pack_pixels(x, M.cols)
    dense = isa_sim.run(M, _prog(isa.Instr(isa.OP_GEMM, gemm), inputs=9, out_base=50, out_count=9),
                        isa.pack_lanes(lanes, 8), [], pmem, words)
    shared = isa_sim.run(M, _prog(isa.Instr(isa.OP_GEMM, dict(gemm, shared=1, idx_bits=3)), inputs=9, out_base=50,
                                  out_count=9), [], isa.pack_lanes(idx, 3), pmem, words)
    want, _ = _conv_reference(x, w, b, mult, shift, (1, 1), (0, 0, 0, 0), (1, 1))
    assert np.array_equal(_signed(dense.outputs)[:, :, :3].transpose(0, 2, 1).reshape(want.shape), want)
    assert np.array_equal(shared.outputs, dense.outputs)
    assert shared.cycles[2] == dense.cycles[2] + 8  # the codebook loads one entry a cycle


def test_window_max_sum_copy_by_hand():
    # one channel, 3x3 input 1..9 (signed), lane 0 of one word per pixel
    x = np.zeros((1, 9, 4), np.int64)
    x[0, :, 0] = np.arange(1, 10)
    x[0, :, 1] = -np.arange(1, 10)
    base = dict(a_signed=1, in_base=0, in_h=3, in_w=3, in_ps=1, out_base=20, out_ps=1, n_words=1, dh=1, dw=1, **S8)
    mx = isa.Instr(isa.OP_WINDOW, dict(base, sub=isa.WIN_MAX, out_h=2, out_w=2, kh=2, kw=2, sh=2, sw=2))
    r = isa_sim.run(M, _prog(mx, inputs=9, out_base=20, out_count=4), [], [], [], x)
    # windows (stride 2, no padding; the last row/column past the input are skipped): [1,2,4,5] [3,6] [7,8] [9]
    assert _signed(r.outputs)[0, :, 0].tolist() == [5, 6, 8, 9]
    assert _signed(r.outputs)[0, :, 1].tolist() == [-1, -3, -7, -9]
    # 3x3 sum with padding 1 at the centre pixel only: sum 1..9 = 45, times 3 >> 2 (RND): 135/4 = 33.75 -> 34
    sm = isa.Instr(isa.OP_WINDOW, dict(base, sub=isa.WIN_SUM, out_h=1, out_w=1, kh=3, kw=3, sh=1, sw=1, m_a=3, n_a=2))
    r = isa_sim.run(M, _prog(sm, inputs=9, out_base=20, out_count=1), [], [], [], x)
    assert _signed(r.outputs)[0, 0, :2].tolist() == [34, -34]  # -135/4 = -33.75 -> -34
    # COPY with one row/column of zeros above and to the left: a 4x4 output
    cp = isa.Instr(isa.OP_WINDOW, dict(base, sub=isa.WIN_COPY, out_h=4, out_w=4, kh=1, kw=1, sh=1, sw=1, pt=1, pl=1))
    r = isa_sim.run(M, _prog(cp, inputs=9, out_base=20, out_count=16), [], [], [], x)
    assert _signed(r.outputs)[0, :, 0].reshape(4, 4).tolist() == [[0, 0, 0, 0], [0, 1, 2, 3], [0, 4, 5, 6],
                                                                    [0, 7, 8, 9]]


@pytest.mark.parametrize("rounding", ["RND", "TRN"])
def test_eltwise_ops_against_numerics(rounding, rng):
    a = rng.integers(-128, 128, size=(2, 6, 4))
    b = rng.integers(0, 256, size=(2, 6, 4))
    words = np.concatenate([a, b], axis=1)
    u8 = QType(8, False)
    base = dict(a_signed=1, b_signed=0, in_base=0, in_ps=1, b_base=6, b_ps=1, out_base=30, out_h=2, out_w=3,
                out_ps=1, n_words=1, rnd=int(rounding == "RND"))
    table = rng.integers(-128, 128, size=256)
    pmem = isa.pack_pmem([[v, 0, 0, 0] for v in table], [[0] * 4] * 256, [[0] * 4] * 256, 32)
    cases = [
        (dict(sub=isa.ELT_ADD, m_a=3, n_a=1, m_b=5, n_b=2, out_bits=8, lo=0, hi=100),
         np.clip(round_shift(a * 3, 1, rounding) + round_shift(b * 5, 2, rounding), 0, 100)),
        (dict(sub=isa.ELT_MUL, m_a=7, n_a=9, out_bits=8, out_signed=1, lo=-128, hi=127),
         requantize(a * b, 7, 9, QType(8, True), rounding)),
        (dict(sub=isa.ELT_REQUANT, m_a=300, n_a=8, out_bits=8, lo=0, hi=255),
         requantize(a, 300, 8, u8, rounding)),
        (dict(sub=isa.ELT_CLIP, m_a=1, out_bits=8, out_signed=1, lo=-5, hi=6), np.clip(a, -5, 6)),
        (dict(sub=isa.ELT_REQUANT, m_a=300, n_a=4, wrap=1, out_bits=8, out_signed=1, lo=-128, hi=127),
         saturate(round_shift(a * 300, 4, rounding), QType(8, True), "WRAP")),
        (dict(sub=isa.ELT_LUT, lut_offset=-128), table[a + 128] & 0xFF),
    ]
    for fields, want in cases:
        prog = _prog(isa.Instr(isa.OP_ELTWISE, dict(base, **fields)), inputs=12, out_base=30, out_count=6)
        r = isa_sim.run(M, prog, [], [], pmem, words)
        got = _signed(r.outputs) if fields.get("out_signed") else r.outputs  # LUT: the raw low 8 bits
        assert np.array_equal(got, want), fields


def test_cycles_and_sync_stamps_hand_worked():
    x = np.zeros((1, 9, 4), np.int64)
    gemm = isa.Instr(isa.OP_GEMM, dict(in_base=0, in_h=3, in_w=3, in_ps=1, out_base=20, out_h=3, out_w=3, out_ps=2,
                                       n_words=2, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, pt=1, pl=1, k_words=1, **S8))
    win = isa.Instr(isa.OP_WINDOW, dict(sub=isa.WIN_MAX, in_base=0, in_h=3, in_w=3, in_ps=1, out_base=40, out_h=1,
                                        out_w=1, out_ps=1, n_words=1, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1, **S8))
    lut = isa.Instr(isa.OP_ELTWISE, dict(sub=isa.ELT_LUT, in_base=0, in_ps=1, out_base=50, out_h=3, out_w=3,
                                         out_ps=1, n_words=1))
    prog = _prog(gemm, win, lut, inputs=9, out_base=20, out_count=18)  # 9 pixels x 2 words
    r = isa_sim.run(M, prog, [0] * 200, [], [0] * 64, x)
    # the loop counts by hand; the pipeline depths are the RTL's, named in isa.py
    gemm_drain = isa.REQUANT_LATENCY + 2 + 4 + isa.GEMM_FIXED_LATENCY  # requant + rows + cols + fixed
    want = [2 + 9 + isa.IO_DRAIN,  # INPUT: fetch, 9 words, drain
            2,  # SYNC
            2 + 2 * 5 * 36 + gemm_drain,  # GEMM: 2 words x ceil(9 pixels / 2 rows) tiles x (3*3*1 x 4 lanes) k-steps
            2 + 1 * 1 * 9 + isa.WINDOW_DRAIN,  # WINDOW: 1 pixel x 1 word x 9 taps
            2 + 9 * 1 * 4 + isa.ELTWISE_DRAIN,  # LUT: 9 pixels x 1 word x 4 lanes, one lane a cycle
            2, 2 + 18 + isa.OUTPUT_DRAIN, 2]  # SYNC, OUTPUT 18 words, END
    assert r.cycles == want
    assert r.cycles == [isa.cycles(i, M.shape) for i in prog]
    assert r.sync_layers == [0, 1] and r.stamps == [sum(want[:2]), sum(want[:6])]
    assert r.total_cycles == sum(r.cycles)


def test_accumulator_wraps_at_acc_bits():
    m = isa_sim.Machine(rows=1, cols=1, acc_bits=12, spad_depth=16, wmem_depth=16, imem_depth=16, pmem_depth=16,
                        prog_depth=16)
    x = np.array([[[100], [100]]])  # two pixels as two input words of one lane: a 1x2 kernel over them
    gemm = isa.Instr(isa.OP_GEMM, dict(a_signed=1, w_signed=1, in_base=0, in_h=1, in_w=2, in_ps=1, out_base=5,
                                       out_h=1, out_w=1, out_ps=1, n_words=1, kh=1, kw=2, sh=1, sw=1, dh=1, dw=1,
                                       k_words=1, out_signed=1, out_bits=16, lo=-32768, hi=32767))
    pmem = isa.pack_pmem([[0]], [[1]], [[0]], 12)
    r = isa_sim.run(m, _prog(gemm, inputs=2, out_base=5, out_count=1), isa.pack_lanes([[20], [20]], 8), [], pmem, x)
    # 100*20 + 100*20 = 4000 is past 2^11: the 12-bit accumulator holds 4000 - 4096 = -96
    assert _signed(r.outputs[0, 0, 0], 8) == -96


def test_the_model_refuses_what_the_hardware_cannot_do():
    x = np.zeros((1, 4, 4), np.int64)
    bad_read = isa.Instr(isa.OP_OUTPUT, dict(count=4, in_base=254))
    with pytest.raises(isa_sim.SimError, match="SPAD address 256 is outside"):
        isa_sim.run(M, [isa.Instr(isa.OP_INPUT, dict(count=4)), bad_read, isa.Instr(isa.OP_END, {})], [], [], [], x)
    over = isa.Instr(isa.OP_GEMM, dict(in_base=0, in_h=2, in_w=2, in_ps=1, out_base=1, out_h=2, out_w=2, out_ps=1,
                                       n_words=1, kh=1, kw=1, sh=1, sw=1, dh=1, dw=1, k_words=1, **S8))
    with pytest.raises(isa_sim.SimError, match="writes SPAD words it reads"):
        isa_sim.run(M, _prog(over, inputs=4, out_base=0, out_count=1), [0] * 8, [], [0], x)
    with pytest.raises(isa_sim.SimError, match="without END"):
        isa_sim.run(M, [isa.Instr(isa.OP_INPUT, dict(count=4))], [], [], [], x)
    with pytest.raises(isa_sim.SimError, match="more than wmem_depth=256"):
        isa_sim.run(M, [isa.Instr(isa.OP_END, {})], [0] * 257, [], [], x)
    with pytest.raises(isa_sim.SimError, match="only 4 were given"):
        isa_sim.run(M, [isa.Instr(isa.OP_INPUT, dict(count=5)), isa.Instr(isa.OP_END, {})], [], [], [], x)
