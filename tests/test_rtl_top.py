"""nnf_systolic_top on hand-assembled programs (isa.Instr / isa.encode / pack_lanes / pack_pmem /
hex_words), under Verilator and the program testbench hw_sim/systolic/tb_program.py.

Every instruction is covered.  The oracles: layers computed directly in numpy (a convolution as
a sum over its window, pooling, element-wise ops) with ``nnforge.compiler.quant.numerics``, on tensors
laid out as docs/systolic.md says; and, as a second opinion, the functional model
``backends/systolic/isa_sim.py``.  Measured cycles (SYNC stamps, the total) equal ``isa.cycles``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from nnforge.backends.systolic import isa, isa_sim
from nnforge.backends.systolic.isa import Instr
from nnforge.compiler.quant.numerics import QType, requantize, round_shift, saturate
from nnforge.hw_sim import rtl

from rtl_program import Hw, Images, lanes_raw, model_cycles, pixel_words, run_rtl, shared_rtl_cache  # noqa: F401

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(rtl.simulator_missing() is not None,
                                 reason=f"RTL simulation unavailable: {rtl.simulator_missing()}")]

HW = Hw(rows=2, cols=4)          # the main parameter set (ROWS < COLS)
HW_SQ = Hw(rows=4, cols=4, in_bits=6, acc_bits=24, idx_bits=3)   # square array, narrow codes
HW_ODD = Hw(rows=3, cols=5, in_bits=7, acc_bits=28, idx_bits=2, spad_depth=400, wmem_depth=1000,
            imem_depth=100, pmem_depth=200, prog_depth=20)        # odd sizes, depths not powers of two


def codes(rng, shape, bits: int, signed: bool) -> np.ndarray:
    lo = -(1 << (bits - 1)) if signed else 0
    return rng.integers(lo, lo + (1 << bits), size=shape, dtype=np.int64)


def out_fields(t: QType, rnd: bool = True, wrap: bool = False, lo: int | None = None, hi: int | None = None) -> dict:
    return {"rnd": int(rnd), "wrap": int(wrap), "out_signed": int(t.signed), "out_bits": t.bits,
            "lo": t.lo if lo is None else lo, "hi": t.hi if hi is None else hi}


def rq(acc, m, n, t: QType, f: dict) -> np.ndarray:
    return requantize(acc, m, n, t, "RND" if f["rnd"] else "TRN", "WRAP" if f["wrap"] else "SAT", f["lo"], f["hi"])


def check(hw: Hw, program: list[Instr], images: Images, inputs: np.ndarray, expected: np.ndarray, tmp_path,
          trace_regions: dict | None = None):
    """Run on the RTL (the testbench checks ``expected``), compare with isa_sim and the cycle model."""
    res = run_rtl(tmp_path, hw, program, images, inputs, golden=lanes_raw(expected, hw.in_bits),
                  trace_regions=trace_regions)
    assert np.array_equal(res.outputs, lanes_raw(expected, hw.in_bits))
    model = isa_sim.run(hw.machine(), program, images.wmem, images.imem, images.pmem, inputs, trace_regions)
    assert np.array_equal(res.outputs, lanes_raw(model.outputs, hw.in_bits))
    stamps, total = model_cycles(hw, program)
    assert (res.stamps == np.array(stamps)).all(), (res.stamps[0].tolist(), stamps)
    assert (res.total_cycles == total).all(), (res.total_cycles.tolist(), total)
    assert stamps == model.stamps and total == model.total_cycles
    for layer, words in res.traces.items():
        assert np.array_equal(words, lanes_raw(model.traces[layer], hw.in_bits)), layer
    return res


# -- GEMM ----------------------------------------------------------------------------------------------

@dataclass
class Conv:
    ch: int
    h: int
    w: int
    n_out: int
    kh: int = 3
    kw: int = 3
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 1
    pl: int = 1
    pb: int = 1
    pr: int = 1
    depthwise: bool = False
    a_signed: bool = True
    w_signed: bool = True
    shared: bool = False

    @property
    def out_h(self) -> int:
        return (self.h + self.pt + self.pb - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def out_w(self) -> int:
        return (self.w + self.pl + self.pr - self.dw * (self.kw - 1) - 1) // self.sw + 1


def conv_reference(x, wt, bias, c: Conv) -> np.ndarray:
    """acc[o, oh, ow] = bias[o] + sum over the window (zero padding), in int64."""
    xp = np.zeros((x.shape[0], c.h + c.pt + c.pb + c.sh * 2, c.w + c.pl + c.pr + c.sw * 2), dtype=np.int64)
    xp[:, c.pt:c.pt + c.h, c.pl:c.pl + c.w] = x
    acc = np.zeros((c.n_out, c.out_h, c.out_w), dtype=np.int64)
    for oh in range(c.out_h):
        for ow in range(c.out_w):
            win = xp[:, oh * c.sh:oh * c.sh + c.dh * (c.kh - 1) + 1:c.dh, ow * c.sw:ow * c.sw + c.dw * (c.kw - 1) + 1:c.dw]
            if c.depthwise:
                acc[:, oh, ow] = (win * wt[:, 0]).sum(axis=(1, 2))
            else:
                acc[:, oh, ow] = np.einsum("chw,ochw->o", win, wt)
    return acc + bias[:, None, None]


def conv_program(hw: Hw, c: Conv, rng, n_samples: int = 2, t: QType | None = None, fields: dict | None = None):
    """INPUT, SYNC, GEMM, SYNC, OUTPUT, SYNC, END for one convolution; its images, inputs, expected words."""
    C, bits = hw.cols, hw.in_bits
    t = t or QType(bits, True)
    f = fields or out_fields(t)
    in_words = -(-c.ch // C)
    n_words = -(-c.n_out // C)
    k_words = 1 if c.depthwise else in_words
    x = codes(rng, (n_samples, c.ch, c.h, c.w), bits, c.a_signed)
    wshape = (c.n_out, 1, c.kh, c.kw) if c.depthwise else (c.n_out, c.ch, c.kh, c.kw)
    if c.shared:
        cb_bits = 3
        codebook = codes(rng, 1 << cb_bits, bits, c.w_signed)
        codebook[0] = 0  # padding lanes hold index 0: the zero code
        idx = rng.integers(0, 1 << cb_bits, size=wshape)
        wt = codebook[idx]
    else:
        wt = codes(rng, wshape, bits, c.w_signed)
    bias = rng.integers(-5000, 5000, size=n_words * C)
    mult = rng.integers(1 << 13, 1 << 15, size=n_words * C)
    shift = rng.integers(10, 20, size=n_words * C)
    # weights in k-step order: WMEM[w_base + n*K + ((ki*kw + kj)*k_words + q)*C + l] lane j
    K = c.kh * c.kw * k_words * C
    wlanes = np.zeros((n_words, c.kh, c.kw, k_words, C, C), dtype=np.int64)   # [n, ki, kj, q, l, j]
    ilanes = np.zeros_like(wlanes)
    for o in range(c.n_out):
        n, j = divmod(o, C)
        for ki in range(c.kh):
            for kj in range(c.kw):
                if c.depthwise:
                    wlanes[n, ki, kj, 0, j, j] = wt[o, 0, ki, kj]
                    if c.shared:
                        ilanes[n, ki, kj, 0, j, j] = idx[o, 0, ki, kj]
                else:
                    for ic in range(c.ch):
                        q, l = divmod(ic, C)
                        wlanes[n, ki, kj, q, l, j] = wt[o, ic, ki, kj]
                        if c.shared:
                            ilanes[n, ki, kj, q, l, j] = idx[o, ic, ki, kj]
    images = Images()
    w_base = 3
    if c.shared:
        images.imem = [0] * w_base + isa.pack_lanes(ilanes.reshape(n_words * K, C), hw.idx_bits)
    else:
        images.wmem = [0] * w_base + isa.pack_lanes(wlanes.reshape(n_words * K, C), bits)
    p_base = 2
    images.pmem = [0] * p_base + isa.pack_pmem(bias.reshape(n_words, C), mult.reshape(n_words, C),
                                               shift.reshape(n_words, C), hw.acc_bits)
    if c.shared:
        cb = np.zeros((1 << 3, C), dtype=np.int64)
        cb[:, 0] = codebook
        images.pmem += isa.pack_pmem(cb, np.zeros_like(cb), np.zeros_like(cb), hw.acc_bits)
    inputs = np.stack([pixel_words(xs, C) for xs in x])
    in_base, out_base = 5, 5 + inputs.shape[1] + 3
    gemm = {"in_base": in_base, "in_h": c.h, "in_w": c.w, "in_ps": in_words, "out_base": out_base,
            "out_h": c.out_h, "out_w": c.out_w, "out_ps": n_words, "n_words": n_words,
            "kh": c.kh, "kw": c.kw, "sh": c.sh, "sw": c.sw, "dh": c.dh, "dw": c.dw, "pt": c.pt, "pl": c.pl,
            "k_words": k_words, "k_step": 1 if c.depthwise else 0, "w_base": w_base, "p_base": p_base,
            "a_signed": int(c.a_signed), "w_signed": int(c.w_signed), "shared": int(c.shared),
            "idx_bits": 3 if c.shared else 0, **f}
    n_out_words = c.out_h * c.out_w * n_words
    program = [Instr(isa.OP_INPUT, {"count": inputs.shape[1], "out_base": in_base}), Instr(isa.OP_SYNC, {"count": 0}),
               Instr(isa.OP_GEMM, gemm), Instr(isa.OP_SYNC, {"count": 1}),
               Instr(isa.OP_OUTPUT, {"count": n_out_words, "in_base": out_base}), Instr(isa.OP_SYNC, {"count": 2}),
               Instr(isa.OP_END, {})]
    wt_full = np.zeros((n_words * C,) + wt.shape[1:], dtype=np.int64)
    wt_full[:c.n_out] = wt
    cfull = Conv(**{**c.__dict__, "n_out": n_words * C})
    expected = []
    for xs in x:
        acc = conv_reference(xs, wt_full, bias, cfull)   # [N, oh, ow]
        y = rq(acc, mult[:, None, None], shift[:, None, None], t, f)
        expected.append(y.reshape(n_words, C, c.out_h * c.out_w).transpose(2, 0, 1).reshape(-1, C))
    return program, images, inputs, np.stack(expected)


def test_gemm_conv3x3_pad(tmp_path):
    rng = np.random.default_rng(1)
    c = Conv(ch=6, h=5, w=4, n_out=7)
    check(HW, *conv_program(HW, c, rng), tmp_path)


@pytest.mark.skipif(rtl.simulator_missing("icarus") is not None, reason="Icarus Verilog (iverilog) is not installed")
def test_icarus_runs_the_program_testbench(tmp_path):
    """The same sources and bench under Icarus: a padded 3x3 convolution, traced, cycle-exact."""
    program, images, inputs, expected = conv_program(HW, Conv(ch=6, h=5, w=4, n_out=7), np.random.default_rng(1))
    out_base = program[2].get("out_base")
    res = run_rtl(tmp_path, HW, program, images, inputs, golden=lanes_raw(expected, HW.in_bits),
                  trace_regions={1: [[out_base, 8]]}, simulator="icarus")
    assert np.array_equal(res.outputs, lanes_raw(expected, HW.in_bits))
    assert np.array_equal(res.traces[1], lanes_raw(expected[:, :8], HW.in_bits))
    assert res.stamps[0].tolist() == model_cycles(HW, program)[0]


@pytest.mark.parametrize("case", [
    Conv(ch=9, h=6, w=5, n_out=4, kh=3, kw=2, sh=2, sw=1, dh=1, dw=2, pt=2, pl=1, pb=0, pr=2, a_signed=False),
    Conv(ch=4, h=5, w=5, n_out=4, depthwise=True, w_signed=False),
    Conv(ch=5, h=4, w=4, n_out=6, kh=1, kw=1, pt=0, pl=0, pb=0, pr=0, shared=True),
    Conv(ch=8, h=3, w=3, n_out=5, kh=3, kw=3, pt=0, pl=0, pb=0, pr=0),   # dense: the kernel covers the input
], ids=["strided_dilated_unsigned", "depthwise", "shared_1x1", "dense"])
def test_gemm_variants(case, tmp_path):
    check(HW, *conv_program(HW, case, np.random.default_rng(2)), tmp_path)


def test_gemm_square_array_wrap_relu(tmp_path):
    """ROWS = COLS (the tightest tile timing), WRAP to 5 unsigned bits then a ReLU6-like clamp."""
    t = QType(5, False)
    f = out_fields(t, rnd=False, wrap=True, lo=0, hi=20)
    c = Conv(ch=5, h=4, w=3, n_out=6, kh=2, kw=2, pt=1, pl=0, pb=0, pr=1)
    check(HW_SQ, *conv_program(HW_SQ, c, np.random.default_rng(3), t=t, fields=f), tmp_path)


# -- WINDOW ----------------------------------------------------------------------------------------

def window_reference(x, sub: int, kh, kw, sh, sw, pt, pl, out_h, out_w):
    """max (in-bounds taps only) or sum (padding 0) over each window, in int64."""
    ch, h, w = x.shape
    out = np.zeros((ch, out_h, out_w), dtype=np.int64)
    for oh in range(out_h):
        for ow in range(out_w):
            taps = [x[:, ih, iw] for ih in range(oh * sh - pt, oh * sh - pt + kh)
                    for iw in range(ow * sw - pl, ow * sw - pl + kw) if 0 <= ih < h and 0 <= iw < w]
            if sub == isa.WIN_MAX:
                out[:, oh, ow] = np.max(taps, axis=0)
            else:
                out[:, oh, ow] = np.sum(taps, axis=0) if taps else 0
    return out


def test_window_max_sum_copy_global(tmp_path):
    """Max pool 3x3/2 pad 1, average pool 2x2/2 (sum * M >> n), global average pool, Pad (COPY)."""
    hw = HW
    C, bits = hw.cols, hw.in_bits
    rng = np.random.default_rng(4)
    ch, h, w = 6, 5, 6
    nw = -(-ch // C)
    x = codes(rng, (2, ch, h, w), bits, True)
    xin = np.zeros((2, nw * C, h, w), dtype=np.int64)
    xin[:, :ch] = x
    inputs = np.stack([pixel_words(xs, C) for xs in xin])
    t = QType(bits, True)
    base = 4 + inputs.shape[1]
    layers = [  # (sub, kh, kw, sh, sw, pt, pl, out_h, out_w, m_a, n_a, fields)
        (isa.WIN_MAX, 3, 3, 2, 2, 1, 1, 3, 3, 1, 0, out_fields(t, lo=-3)),
        (isa.WIN_SUM, 2, 2, 2, 2, 0, 0, 2, 3, 16384, 16, out_fields(t, rnd=True)),
        (isa.WIN_SUM, h, w, 1, 1, 0, 0, 1, 1, 21845, 21, out_fields(QType(4, False), rnd=False)),
        (isa.WIN_COPY, 1, 1, 1, 1, 1, 2, h + 2, w + 3, 1, 0, out_fields(t)),
    ]
    program = [Instr(isa.OP_INPUT, {"count": inputs.shape[1], "out_base": 4}), Instr(isa.OP_SYNC, {"count": 0})]
    expected = [[] for _ in x]
    out_regions = []
    for layer, (sub, kh, kw, sh, sw, pt, pl, oh, ow, m_a, n_a, f) in enumerate(layers, start=1):
        program.append(Instr(isa.OP_WINDOW, {"sub": sub, "in_base": 4, "in_h": h, "in_w": w, "in_ps": nw,
                                             "out_base": base, "out_h": oh, "out_w": ow, "out_ps": nw,
                                             "n_words": nw, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "dh": 1,
                                             "dw": 1, "pt": pt, "pl": pl, "m_a": m_a, "n_a": n_a, "a_signed": 1, **f}))
        program.append(Instr(isa.OP_SYNC, {"count": layer}))
        out_regions.append([base, oh * ow * nw])
        tq = QType(f["out_bits"], bool(f["out_signed"]))
        for s, xs in enumerate(xin):
            v = window_reference(xs, isa.WIN_MAX if sub == isa.WIN_MAX else isa.WIN_SUM, kh, kw, sh, sw, pt, pl, oh, ow)
            m, n = (1, 0) if sub != isa.WIN_SUM else (m_a, n_a)
            expected[s].append(rq(v, m, n, tq, f).transpose(1, 2, 0).reshape(-1, C))
        base += oh * ow * nw
    total = base - out_regions[0][0]
    program += [Instr(isa.OP_OUTPUT, {"count": total, "in_base": out_regions[0][0]}),
                Instr(isa.OP_SYNC, {"count": len(layers) + 1}), Instr(isa.OP_END, {})]
    expected = np.stack([np.concatenate(e) for e in expected])
    res = check(hw, program, Images(), inputs, expected, tmp_path,
                trace_regions={1: [out_regions[0]], 3: [out_regions[2], [4, 2]]})
    assert set(res.traces) == {1, 3}


# -- ELTWISE ---------------------------------------------------------------------------------------

def test_eltwise_all_subops(tmp_path):
    """ADD (two scales, b with a wider pixel stride), MUL, REQUANT, CLIP (ReLU), LUT, in one program."""
    hw = HW
    C, bits = hw.cols, hw.in_bits
    rng = np.random.default_rng(5)
    n_s, P, nw = 2, 5, 2          # samples, pixels, words per pixel
    a = codes(rng, (n_s, P, nw, C), bits, True)
    b = codes(rng, (n_s, P, nw, C), bits, False)
    a[:, :, 1] = np.clip(a[:, :, 1], -32, 95)   # the LUT of word 1 covers codes -32..95
    b_ps = nw + 1
    b_words = np.zeros((n_s, P, b_ps, C), dtype=np.int64)
    b_words[:, :, :nw] = b
    a_base, b_base = 3, 3 + P * nw
    inputs = np.concatenate([a.reshape(n_s, -1, C), b_words.reshape(n_s, -1, C)], axis=1)
    out0 = a_base + inputs.shape[1] + 2
    t = QType(bits, True)
    lut = codes(rng, 1 << (bits - 1), bits, True)    # output code of every input code >= -32
    pm = np.zeros((1 << (bits - 1), C), dtype=np.int64)
    pm[:, 0] = lut
    p_base = 7
    images = Images(pmem=[0] * p_base + isa.pack_pmem(pm, np.zeros_like(pm), np.zeros_like(pm), hw.acc_bits))
    common = {"in_base": a_base, "in_ps": nw, "b_base": b_base, "b_ps": b_ps, "out_h": 1, "out_w": P,
              "out_ps": nw, "n_words": nw, "a_signed": 1, "b_signed": 0}
    relu = out_fields(t, lo=0, hi=100)
    ops = [(isa.ELT_ADD, {"m_a": 20000, "n_a": 15, "m_b": 9000, "n_b": 14, **out_fields(t)}),
           (isa.ELT_MUL, {"m_a": 30000, "n_a": 20, **out_fields(t, rnd=False)}),
           (isa.ELT_REQUANT, {"m_a": 3, "n_a": 1, **out_fields(QType(6, True), wrap=True)}),
           (isa.ELT_CLIP, relu),
           (isa.ELT_LUT, {"p_base": p_base, "lut_offset": -32, "in_base": a_base + 1, "in_ps": nw, "n_words": 1,
                          "out_ps": 1, **out_fields(t)})]
    program = [Instr(isa.OP_INPUT, {"count": inputs.shape[1], "out_base": a_base}), Instr(isa.OP_SYNC, {"count": 0})]
    expected = []
    for k, (sub, f) in enumerate(ops):
        program += [Instr(isa.OP_ELTWISE, {"sub": sub, **common, **f, "out_base": out0 + k * P * nw}),
                    Instr(isa.OP_SYNC, {"count": k + 1})]
        tq = QType(f["out_bits"], bool(f["out_signed"]))
        rnd = "RND" if f["rnd"] else "TRN"
        if sub == isa.ELT_ADD:
            y = saturate(round_shift(a * f["m_a"], f["n_a"], rnd) + round_shift(b * f["m_b"], f["n_b"], rnd), tq,
                         "SAT", f["lo"], f["hi"])
        elif sub == isa.ELT_MUL:
            y = rq(a * b, f["m_a"], f["n_a"], tq, f)
        elif sub == isa.ELT_REQUANT:
            y = rq(a, f["m_a"], f["n_a"], tq, f)
        elif sub == isa.ELT_CLIP:
            y = rq(a, 1, 0, tq, f)
        else:
            y = lut[a[:, :, 1:] + 32]
        expected.append(y.reshape(n_s, -1, C))
    program += [Instr(isa.OP_OUTPUT, {"count": (len(ops) - 1) * P * nw + P, "in_base": out0}),
                Instr(isa.OP_SYNC, {"count": len(ops) + 1}), Instr(isa.OP_END, {})]
    check(hw, program, images, inputs, np.concatenate(expected, axis=1), tmp_path)


# -- throughput --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [HW, HW_SQ], ids=["2x4", "4x4"])
def test_gemm_utilization_at_least_90_percent(hw, tmp_path):
    """A GEMM with M, N, K = 4x the array: the k-steps stream without bubbles between tiles (the
    measured cycles less the fixed fetch and drain are exactly one k-step a cycle), so the
    instruction's measured cycles give >= 89% MAC utilization (the fixed cycles included)."""
    R, C = hw.rows, hw.cols
    c = Conv(ch=4 * C, h=2, w=2 * R, n_out=4 * C, kh=1, kw=1, pt=0, pl=0, pb=0, pr=0)
    res = check(hw, *conv_program(hw, c, np.random.default_rng(6), n_samples=1), tmp_path)
    gemm_cycles = int(res.stamps[0, 1] - res.stamps[0, 0]) - isa.FETCH_CYCLES  # minus the SYNC after it
    macs = c.h * c.w * c.n_out * c.ch
    body = gemm_cycles - isa.FETCH_CYCLES - isa.gemm_drain(isa.ArrayShape(R, C))
    assert body * R * C == macs, (macs, gemm_cycles)
    assert macs / (gemm_cycles * R * C) >= 0.89, (macs, gemm_cycles)


# -- random programs: RTL == isa_sim, cycles == isa.cycles ---------------------------------------

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


class Alloc:
    """Fresh scratchpad regions, so no instruction writes what it reads."""

    def __init__(self, depth: int):
        self.next, self.depth = 1, depth

    def take(self, n: int) -> int | None:
        if self.next + n > self.depth:
            return None
        base, self.next = self.next, self.next + n + 1
        return base


@st.composite
def random_program(draw, hw: Hw):
    """INPUT, then up to 6 random GEMM / WINDOW / ELTWISE layers on earlier results (each followed
    by a SYNC tracing its output), OUTPUT of the last, END; and the images they need."""
    C, bits = hw.cols, hw.in_bits
    seed = draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    alloc = Alloc(hw.spad_depth)
    ih, iw, ips = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 2))
    base = alloc.take(ih * iw * ips)
    program = [Instr(isa.OP_INPUT, {"count": ih * iw * ips, "out_base": base}), Instr(isa.OP_SYNC, {"count": 0})]
    tensors = [(base, ih, iw, ips)]  # (base, h, w, words per pixel)
    images = Images(wmem=[0], imem=[0], pmem=[])
    lut = codes(rng, 1 << bits, bits, True)
    pm = np.zeros((1 << bits, C), dtype=np.int64)
    pm[:, 0] = lut
    images.pmem = isa.pack_pmem(pm, np.zeros_like(pm), np.zeros_like(pm), hw.acc_bits)  # the LUT at 0
    regions = {}

    def out_type():
        ob = draw(st.integers(2, bits))
        sg = draw(st.booleans())
        t = QType(ob, sg)
        lo = draw(st.sampled_from([t.lo, 0])) if sg else 0
        return {"rnd": int(draw(st.booleans())), "wrap": int(draw(st.booleans())), "out_signed": int(sg),
                "out_bits": ob, "lo": lo, "hi": draw(st.sampled_from([t.hi, max(lo, t.hi // 3)]))}

    for layer in range(1, draw(st.integers(1, 6), label="layers") + 1):
        sizes = (len(images.wmem), len(images.imem), len(images.pmem))
        src = tensors[draw(st.integers(0, len(tensors) - 1))]
        sbase, h, w, ps = src
        kind = draw(st.sampled_from(["gemm", "window", "eltwise"]), label="kind")
        kh, kw = draw(st.integers(1, min(3, h + 1))), draw(st.integers(1, min(3, w + 1)))
        sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        pt, pl = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
        oh, ow = max(1, (h + pt - 1) // sh + 1 - draw(st.integers(0, 1))), max(1, (w + pl - 1) // sw + 1)
        common = {"in_base": sbase, "in_h": h, "in_w": w, "in_ps": ps, "kh": kh, "kw": kw, "sh": sh, "sw": sw,
                  "dh": 1, "dw": 1, "pt": pt, "pl": pl, "out_h": oh, "out_w": ow, "a_signed": int(draw(st.booleans())),
                  **out_type()}
        if kind == "gemm":
            nw, k_step = draw(st.integers(1, 2)), draw(st.integers(0, 1)) if ps > 1 else 0
            k_words = 1 if k_step else ps
            shared = draw(st.booleans())
            K = kh * kw * k_words * C
            p_base = len(images.pmem)
            bias = rng.integers(-300, 300, size=(nw, C))
            images.pmem += isa.pack_pmem(bias, rng.integers(0, 1 << 15, size=(nw, C)),
                                         rng.integers(0, 24, size=(nw, C)), hw.acc_bits)
            if shared:
                cb = np.zeros((1 << 2, C), dtype=np.int64)
                cb[:, 0] = codes(rng, 1 << 2, bits, True)
                images.pmem += isa.pack_pmem(cb, np.zeros_like(cb), np.zeros_like(cb), hw.acc_bits)
                w_base = len(images.imem)
                images.imem += isa.pack_lanes(rng.integers(0, 1 << hw.idx_bits, size=(nw * K, C)), hw.idx_bits)
            else:
                w_base = len(images.wmem)
                images.wmem += isa.pack_lanes(codes(rng, (nw * K, C), bits, True), bits)
            fields = {**common, "n_words": nw, "out_ps": nw, "k_words": k_words, "k_step": k_step,
                      "w_base": w_base, "p_base": p_base, "w_signed": 1, "shared": int(shared),
                      "idx_bits": 2 if shared else 0}
            op, out_ps = isa.OP_GEMM, nw
        elif kind == "window":
            sub = draw(st.sampled_from([isa.WIN_MAX, isa.WIN_SUM, isa.WIN_COPY]))
            if sub == isa.WIN_COPY:
                fields = {**common, "kh": 1, "kw": 1, "sh": 1, "sw": 1, "pt": pt, "pl": pl,
                          "out_h": h + pt + draw(st.integers(0, 1)), "out_w": w + pl}
            else:
                fields = dict(common)
            fields.update({"sub": sub, "n_words": ps, "out_ps": ps, "m_a": int(rng.integers(1, 1 << 15)),
                           "n_a": int(rng.integers(0, 20))})
            op, out_ps = isa.OP_WINDOW, ps
        else:
            sub = draw(st.sampled_from([isa.ELT_ADD, isa.ELT_MUL, isa.ELT_REQUANT, isa.ELT_CLIP, isa.ELT_LUT]))
            other = [t for t in tensors if t[1] * t[2] == h * w and t[3] >= ps]
            bbase, _, _, bps = other[draw(st.integers(0, len(other) - 1))]
            fields = {**common, "sub": sub, "out_h": h, "out_w": w, "n_words": ps, "out_ps": ps, "b_base": bbase,
                      "b_ps": bps, "b_signed": int(draw(st.booleans())), "m_a": int(rng.integers(0, 1 << 15)),
                      "n_a": int(rng.integers(0, 20)), "m_b": int(rng.integers(0, 1 << 15)),
                      "n_b": int(rng.integers(0, 20)), "p_base": 0, "lut_offset": -(1 << (bits - 1))}
            if sub == isa.ELT_LUT:
                fields["a_signed"] = 1
            op, out_ps = isa.OP_ELTWISE, ps
        out_h, out_w = fields["out_h"], fields["out_w"]
        obase = alloc.take(out_h * out_w * out_ps)
        if obase is None or len(images.wmem) > hw.wmem_depth or len(images.pmem) > hw.pmem_depth \
                or len(images.imem) > hw.imem_depth:  # out of memory: stop before this layer
            del images.wmem[sizes[0]:], images.imem[sizes[1]:], images.pmem[sizes[2]:]
            break
        fields["out_base"] = obase
        program += [Instr(op, fields), Instr(isa.OP_SYNC, {"count": layer})]
        regions[layer] = [[obase, out_h * out_w * out_ps]]
        tensors.append((obase, out_h, out_w, out_ps))
    last = tensors[-1]
    program += [Instr(isa.OP_OUTPUT, {"count": last[1] * last[2] * last[3], "in_base": last[0]}),
                Instr(isa.OP_SYNC, {"count": len(regions) + 1}), Instr(isa.OP_END, {})]
    inputs = codes(rng, (2, ih * iw * ips, C), bits, True)
    return program, images, inputs, regions


@settings(max_examples=8, derandomize=True, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(data=st.data())
@pytest.mark.parametrize("hw", [HW_SQ, HW_ODD], ids=["4x4", "3x5_odd"])
def test_random_programs_match_isa_sim(hw, data, tmp_path_factory):
    program, images, inputs, regions = data.draw(random_program(hw), label="program")
    try:
        model = isa_sim.run(hw.machine(), program, images.wmem, images.imem, images.pmem, inputs, regions)
    except isa_sim.SimError as err:  # a program the hardware cannot run (the generator's fault)
        pytest.fail(f"the generator made a program isa_sim rejects: {err}")
    res = run_rtl(tmp_path_factory.mktemp("rand"), hw, program, images, inputs,
                  golden=lanes_raw(model.outputs, hw.in_bits), trace_regions=regions)
    assert np.array_equal(res.outputs, lanes_raw(model.outputs, hw.in_bits))
    for layer, words in model.traces.items():
        assert np.array_equal(res.traces[layer], lanes_raw(words, hw.in_bits)), (layer, program[2 * layer])
    assert res.stamps[0].tolist() == model.stamps and int(res.total_cycles[0]) == model.total_cycles


def test_streams_survive_stalls(tmp_path):
    """Random gaps on s_axis (tvalid low) and back-pressure on m_axis (tready low): every word
    arrives, in order; only the cycle count grows."""
    import json

    from rtl_program import TB_DIR, write_images

    hw = HW
    rng = np.random.default_rng(9)
    n = 23
    x = codes(rng, (n, hw.cols), hw.in_bits, False)
    program = [Instr(isa.OP_INPUT, {"count": n, "out_base": 40}),
               Instr(isa.OP_ELTWISE, {"sub": isa.ELT_CLIP, "in_base": 40, "in_ps": 1, "out_base": 100, "out_h": 1,
                                      "out_w": n, "out_ps": 1, "n_words": 1, "a_signed": 0, **out_fields(QType(8, False))}),
               Instr(isa.OP_OUTPUT, {"count": n, "in_base": 100}), Instr(isa.OP_OUTPUT, {"count": 2, "in_base": 40}),
               Instr(isa.OP_END, {})]
    write_images(tmp_path, hw, program, Images())
    np.save(tmp_path / "inputs.npy", x)
    (tmp_path / "config.json").write_text(json.dumps({"inputs": "inputs.npy", "cols": hw.cols, "in_bits": hw.in_bits,
                                                      "seed": 3, "max_cycles": 2000, "results": "results.npz"}))
    rtl.run(rtl.build(hw.parameters()), "tb_stalls", tmp_path, {"NNF_TB_CONFIG": str(tmp_path / "config.json")},
            [TB_DIR])
    with np.load(tmp_path / "results.npz") as r:
        assert np.array_equal(r["outputs"], np.concatenate([x, x[:2]]))
        assert int(r["total_cycles"]) > model_cycles(hw, program)[1]
