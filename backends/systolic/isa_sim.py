"""The functional model of the systolic accelerator: a program run on memory images, in numpy.

``run(machine, program, wmem, imem, pmem, inputs)`` executes a list of ``isa.Instr`` exactly as
docs/systolic.md specifies, on every sample at once (the scratchpad is ``[samples, depth, C]``),
in int64 with rounding and saturation from ``nnforge.compiler.quant.numerics``.  It is the Model of
the RTL testbench (the same memory images, the same input and output words, the same SYNC
stamps) and the compiler's self-check; the independent oracle stays ``compiler/reference.py``.

Memory images are lists of words as ``isa.pack_lanes`` / ``isa.pack_pmem`` make them (what the
``.hex`` files hold); words past an image's end read as zero, addresses past a memory's depth
are a ``SimError``.  Hardware details the model keeps: codes are stored as their low ``IN_W``
bits and extended by the reading instruction's signedness flag; the accumulator is ``ACC_W``
bits (two's complement wrap); the saturate stage wraps (``wrap``) and then clamps to
``[lo, hi]`` only (``lo``/``hi`` already carry the type's range); a codebook entry is lane 0's low
``IN_W`` bits of its PMEM word, extended by ``w_signed``.  A SYNC's layer id is its ``count``
field; ``Result.stamps`` holds the cycle count at each SYNC, that SYNC's own cycles included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnforge.compiler.quant.numerics import QType, round_shift, saturate

from . import isa


class SimError(RuntimeError):
    """The program does something the hardware cannot (a bad address, a GEMM writing what it reads)."""


@dataclass(frozen=True)
class Machine:
    """The accelerator's parameters (docs/systolic.md, "Parameters")."""

    rows: int = 8
    cols: int = 8
    in_bits: int = 8
    acc_bits: int = 32
    idx_bits: int = 4
    spad_depth: int = 4096
    wmem_depth: int = 8192
    imem_depth: int = 4096
    pmem_depth: int = 2048
    prog_depth: int = 256

    @property
    def shape(self) -> isa.ArrayShape:
        return isa.ArrayShape(self.rows, self.cols)


@dataclass
class Result:
    """What one run produced (every sample runs the same program, so cycles are per sample)."""

    outputs: np.ndarray  # [samples, output words, C]: raw IN_W-bit lane values, as the AXI stream sends them
    traces: dict[int, np.ndarray]  # layer id -> [samples, words, C] raw lanes of its trace regions at its SYNC
    cycles: list[int]  # isa.cycles of every executed instruction, in order (END included)
    sync_layers: list[int]  # the layer id of every SYNC, in order
    stamps: list[int]  # the cycle count at every SYNC (sum of cycles up to and including it)
    total_cycles: int = 0
    executed: list[isa.Instr] = field(default_factory=list)


def _ext(raw: np.ndarray, bits: int, signed) -> np.ndarray:
    """Sign- or zero-extend ``bits``-bit raw values (``signed`` may be an array, per lane)."""
    raw = np.asarray(raw, dtype=np.int64)
    neg = raw >= (1 << (bits - 1))
    return np.where(np.asarray(signed, dtype=bool) & neg, raw - (1 << bits), raw)


def _lanes(words, cols: int, width: int) -> np.ndarray:
    """Words (Python ints) -> ``[len, cols]`` raw lane values."""
    mask = (1 << width) - 1
    out = np.zeros((len(words), cols), dtype=np.int64)
    for i, w in enumerate(words):
        w = int(w)
        for lane in range(cols):
            out[i, lane] = (w >> (lane * width)) & mask
    return out


def _pmem(words, m: Machine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PMEM words -> (bias, mult, shift), each ``[len, C]``; bias sign-extended from ACC_W bits.

    A lane is ACC_W + 22 bits (more than int64 for ACC_W > 42), so fields are cut in Python ints."""
    lane_bits = isa.pmem_lane_bits(m.acc_bits)
    out = np.zeros((3, len(words), m.cols), dtype=np.int64)
    for i, w in enumerate(words):
        w = int(w)
        for lane in range(m.cols):
            v = (w >> (lane * lane_bits)) & ((1 << lane_bits) - 1)
            out[:, i, lane] = (v & ((1 << m.acc_bits) - 1), (v >> m.acc_bits) & ((1 << isa.MULT_W) - 1),
                               v >> (m.acc_bits + isa.MULT_W))
    return _ext(out[0], m.acc_bits, True), out[1], out[2]


class _State:
    def __init__(self, m: Machine, wmem, imem, pmem, inputs: np.ndarray):
        self.m = m
        for name, image, depth in (("wmem", wmem, m.wmem_depth), ("imem", imem, m.imem_depth),
                                   ("pmem", pmem, m.pmem_depth)):
            if len(image) > depth:
                raise SimError(f"the {name} image has {len(image)} words, more than {name}_depth={depth}")
        self.wmem = _lanes(wmem, m.cols, m.in_bits)
        self.imem = _lanes(imem, m.cols, m.idx_bits)
        self.bias, self.mult, self.shift = _pmem(pmem, m)
        self.samples = inputs.shape[0]
        self.spad = np.zeros((self.samples, m.spad_depth, m.cols), dtype=np.int64)
        self.inputs = inputs & ((1 << m.in_bits) - 1)
        self.in_pos = 0
        self.outputs: list[np.ndarray] = []

    # -- memory access: every address is checked, so a compiler bug is an error, not garbage --
    def _check(self, name: str, addr: np.ndarray, depth: int) -> None:
        if addr.size and (addr.min() < 0 or addr.max() >= depth):
            bad = addr[(addr < 0) | (addr >= depth)].reshape(-1)[0]
            raise SimError(f"{name} address {int(bad)} is outside [0, {depth})")

    def read(self, addr: np.ndarray) -> np.ndarray:
        self._check("SPAD", addr, self.m.spad_depth)
        return self.spad[:, addr]

    def write(self, addr: np.ndarray, values: np.ndarray) -> None:
        self._check("SPAD", addr, self.m.spad_depth)
        flat = addr.reshape(-1)
        if np.unique(flat).size != flat.size:
            raise SimError("an instruction writes one SPAD word twice")
        self.spad[:, addr] = values & ((1 << self.m.in_bits) - 1)

    def mem(self, name: str, table: np.ndarray, addr: np.ndarray, depth: int) -> np.ndarray:
        """Rows of a static memory (zeros past its image)."""
        self._check(name, addr, depth)
        padded = np.zeros((max(depth, 1), table.shape[1]), dtype=np.int64)
        padded[: len(table)] = table
        return padded[addr]


def _sat(v: np.ndarray, g) -> np.ndarray:
    """The saturate stage: wrap to out_bits when ``wrap``, then clamp to [lo, hi]."""
    if g("wrap"):
        v = saturate(v, QType(max(g("out_bits"), 2), bool(g("out_signed"))), "WRAP")
    return np.clip(v, g("lo"), g("hi"))


def _rq(v: np.ndarray, mult, shift, g) -> np.ndarray:
    return _sat(round_shift(np.asarray(v, np.int64) * np.asarray(mult, np.int64), shift, "RND" if g("rnd") else "TRN"), g)


def _taps(g, out_pixels: np.ndarray):
    """Input pixel index and in-bounds mask of every (output pixel, kernel tap): ``[P, kh*kw]``."""
    oh, ow = out_pixels // max(g("out_w"), 1), out_pixels % max(g("out_w"), 1)
    ki, kj = np.divmod(np.arange(g("kh") * g("kw")), max(g("kw"), 1))
    ih = oh[:, None] * g("sh") - g("pt") + ki[None, :] * g("dh")
    iw = ow[:, None] * g("sw") - g("pl") + kj[None, :] * g("dw")
    ok = (ih >= 0) & (ih < g("in_h")) & (iw >= 0) & (iw < g("in_w"))
    return np.where(ok, ih * g("in_w") + iw, 0), ok


def _gemm(st: _State, ins: isa.Instr) -> None:
    m, g = st.m, ins.get
    C = m.cols
    pixels = np.arange(g("out_h") * g("out_w"))
    pix, ok = _taps(g, pixels)  # [P, T]
    kw_ = g("k_words")
    K = g("kh") * g("kw") * kw_ * C
    nw = g("n_words")
    if g("shared"):
        entries = 1 << g("idx_bits")
        cb_rows = st.mem("PMEM", st.bias, np.arange(entries) + g("p_base") + nw, m.pmem_depth)
        codebook = _ext(cb_rows[:, 0] & ((1 << m.in_bits) - 1), m.in_bits, g("w_signed"))
    reads, writes = [], []
    for n in range(nw):
        cw = n * g("k_step") + np.arange(kw_)
        addr = g("in_base") + pix[:, :, None] * g("in_ps") + cw[None, None, :]  # [P, T, k_words]
        valid = np.broadcast_to(ok[:, :, None], addr.shape)
        reads.append(addr[valid])
        a = _ext(st.read(np.where(valid, addr, 0)), m.in_bits, g("a_signed"))  # [S, P, T, k_words, C]
        a = np.where(valid[None, :, :, :, None], a, 0).reshape(st.samples, len(pixels), K)
        rows = np.arange(K) + g("w_base") + n * K
        if g("shared"):
            idx = st.mem("IMEM", st.imem, rows, m.imem_depth) & ((1 << g("idx_bits")) - 1)
            w = codebook[idx]
        else:
            w = _ext(st.mem("WMEM", st.wmem, rows, m.wmem_depth), m.in_bits, g("w_signed"))  # [K, C]
        prow = np.array([g("p_base") + n])
        bias, mult, shift = (st.mem("PMEM", t, prow, m.pmem_depth)[0] for t in (st.bias, st.mult, st.shift))
        acc = np.einsum("spk,kc->spc", a, w) + bias
        acc = saturate(acc, QType(m.acc_bits, True), "WRAP")  # the ACC_W-bit accumulator
        out_addr = g("out_base") + pixels * g("out_ps") + n
        writes.append(out_addr)
        st.write(out_addr, _rq(acc, mult, shift, g))
    written = np.concatenate(writes)
    if np.unique(written).size != written.size:
        raise SimError(f"GEMM of layer {ins.layer!r} writes one SPAD word twice (out_ps < n_words?)")
    # the array reads and writes concurrently: an output over its own input is a compiler bug
    if reads and np.intersect1d(np.concatenate(reads), written).size:
        raise SimError(f"GEMM of layer {ins.layer!r} writes SPAD words it reads")


def _window(st: _State, ins: isa.Instr) -> None:
    m, g = st.m, ins.get
    pixels = np.arange(g("out_h") * g("out_w"))
    pix, ok = _taps(g, pixels)  # [P, T]
    c = np.arange(g("n_words"))
    addr = g("in_base") + pix[:, :, None] * g("in_ps") + c[None, None, :]  # [P, T, W]
    valid = np.broadcast_to(ok[:, :, None], addr.shape)
    a = _ext(st.read(np.where(valid, addr, 0)), m.in_bits, g("a_signed"))  # [S, P, T, W, C]
    vmask = valid[None, :, :, :, None]
    sub = g("sub")
    if sub == isa.WIN_MAX:
        if not ok.any(axis=1).all():
            raise SimError(f"WINDOW MAX of layer {ins.layer!r} has a window with no tap inside the input")
        v = np.where(vmask, a, np.iinfo(np.int64).min).max(axis=2)
        y = _rq(v, 1, 0, g)
    elif sub == isa.WIN_SUM:
        y = _rq(np.where(vmask, a, 0).sum(axis=2), g("m_a"), g("n_a"), g)
    elif sub == isa.WIN_COPY:
        if g("kh") * g("kw") != 1:
            raise SimError(f"WINDOW COPY of layer {ins.layer!r} must have a 1x1 kernel")
        y = _rq(np.where(vmask, a, 0)[:, :, 0], 1, 0, g)
    else:
        raise SimError(f"unknown WINDOW sub-op {sub}")
    out = g("out_base") + pixels[:, None] * g("out_ps") + c[None, :]
    if np.intersect1d(addr[valid], out).size:
        raise SimError(f"WINDOW of layer {ins.layer!r} writes SPAD words it reads")
    st.write(out, y)


def _eltwise(st: _State, ins: isa.Instr) -> None:
    m, g = st.m, ins.get
    p = np.arange(g("out_h") * g("out_w"))[:, None]
    c = np.arange(g("n_words"))[None, :]
    a = _ext(st.read(g("in_base") + p * g("in_ps") + c), m.in_bits, g("a_signed"))
    sub = g("sub")
    rnd = "RND" if g("rnd") else "TRN"
    if sub in (isa.ELT_ADD, isa.ELT_MUL):
        b = _ext(st.read(g("b_base") + p * g("b_ps") + c), m.in_bits, g("b_signed"))
    if sub == isa.ELT_ADD:
        y = _sat(round_shift(a * g("m_a"), g("n_a"), rnd) + round_shift(b * g("m_b"), g("n_b"), rnd), g)
    elif sub == isa.ELT_MUL:
        y = _rq(a * b, g("m_a"), g("n_a"), g)
    elif sub == isa.ELT_REQUANT:
        y = _rq(a, g("m_a"), g("n_a"), g)
    elif sub == isa.ELT_CLIP:
        y = _rq(a, 1, 0, g)
    elif sub == isa.ELT_LUT:
        rows = st.mem("PMEM", st.bias, (g("p_base") + a - g("lut_offset")).reshape(-1), m.pmem_depth)[:, 0]
        y = rows.reshape(a.shape) & ((1 << m.in_bits) - 1)
    else:
        raise SimError(f"unknown ELTWISE sub-op {sub}")
    st.write(g("out_base") + p * g("out_ps") + c, y)


def run(machine: Machine, program: list[isa.Instr], wmem, imem, pmem, inputs,
        trace_regions: dict | None = None, max_instructions: int = 1 << 16) -> Result:
    """Execute ``program`` on ``inputs`` (``[samples, input words, C]`` lane codes, or one sample
    ``[input words, C]``).  ``trace_regions`` maps a layer id to ``[[base, count], ...]``: the
    scratchpad words copied out at that layer's SYNC (like the RTL testbench's debug-port reads)."""
    x = np.asarray(inputs, dtype=np.int64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != machine.cols:
        raise SimError(f"inputs must be [samples, words, {machine.cols}] lane codes, not shape {list(x.shape)}")
    if len(program) > machine.prog_depth:
        raise SimError(f"the program has {len(program)} instructions, more than prog_depth={machine.prog_depth}")
    regions = {int(k): v for k, v in (trace_regions or {}).items()}
    st = _State(machine, list(wmem), list(imem), list(pmem), x)
    res = Result(np.zeros((x.shape[0], 0, machine.cols), np.int64), {}, [], [], [])
    pc = 0
    while True:
        if pc >= len(program) or len(res.cycles) >= max_instructions:
            raise SimError(f"the program ran off its end at address {pc} without END")
        ins = program[pc]
        res.executed.append(ins)
        res.cycles.append(isa.cycles(ins, machine.shape))
        op, g = ins.op, ins.get
        if op == isa.OP_END:
            break
        if op == isa.OP_INPUT:
            n = g("count")
            if st.in_pos + n > x.shape[1]:
                raise SimError(f"INPUT wants words {st.in_pos}..{st.in_pos + n - 1}, but only {x.shape[1]} were given")
            st.write(g("out_base") + np.arange(n), st.inputs[:, st.in_pos:st.in_pos + n])
            st.in_pos += n
        elif op == isa.OP_OUTPUT:
            st.outputs.append(st.read(g("in_base") + np.arange(g("count"))).copy())
        elif op == isa.OP_GEMM:
            _gemm(st, ins)
        elif op == isa.OP_WINDOW:
            _window(st, ins)
        elif op == isa.OP_ELTWISE:
            _eltwise(st, ins)
        elif op == isa.OP_SYNC:
            layer = g("count")
            res.sync_layers.append(layer)
            res.stamps.append(int(sum(res.cycles)))
            if layer in regions:
                parts = [st.read(int(base) + np.arange(int(count))) for base, count in regions[layer]]
                res.traces[layer] = np.concatenate(parts, axis=1) if parts else np.zeros((x.shape[0], 0, machine.cols),
                                                                                      np.int64)
        else:
            raise SimError(f"unknown opcode {op} at address {pc}")
        pc += 1
    if st.outputs:
        res.outputs = np.concatenate(st.outputs, axis=1)
    res.total_cycles = int(sum(res.cycles))
    return res


def read_program(text: str) -> list[isa.Instr]:
    """``prog.hex`` text -> instructions (for running a generated project's images)."""
    return [isa.decode(int(line, 16)) for line in text.split() if line.strip()]


def read_words(text: str) -> list[int]:
    """A ``.hex`` image -> its words."""
    return [int(line, 16) for line in text.split() if line.strip()]


__all__ = ["Machine", "Result", "SimError", "run", "read_program", "read_words"]
