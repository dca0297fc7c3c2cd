"""The analytic resource model of the systolic accelerator: DSPs and block RAMs from its parameters.

It predicts, before any tool runs, what yosys will map, so ``nnforge synth`` can refuse a
design that cannot fit the device and the report can show predicted next to measured.  The
model follows the mapping rules of yosys itself rather than a rule of thumb:

* **Multipliers -> DSPs** by the splitting of ``techmap +/mul2dsp.v``: an A×B product wider
  than one DSP is cut into DSP-sized slices (ECP5 MULT18X18D: 18×18; 7-series DSP48E1: 25×18
  signed only, so unsigned operands take a sign bit and slices lose one bit of headroom).
* **Memories -> block RAMs** by the cost comparison of ``memory_libmap``: each memory goes to
  the cheapest of its block RAM aspect ratios (``cost 128`` per DP16KD; RAMB18/RAMB36 on
  7-series), distributed LUT RAM (RAMs only: ``prune_rom``) or soft logic (1 per bit for a RAM,
  1/16 per bit for a ROM).

The accelerator's inventory (which units multiply what, how wide each memory is) is
``inventory(params)``: the one place that mirrors the RTL's structure (docs/systolic.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnforge.backends.systolic import isa

# -- multipliers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DspRules:
    """The ``mul2dsp.v`` macros a yosys flow sets for its DSP primitive."""

    a_max: int
    b_max: int
    a_max_partial: int
    b_max_partial: int
    a_min: int = 2
    b_min: int = 2
    signed_only: bool = False


DSP_RULES = {
    "ecp5": DspRules(18, 18, 18, 18),  # synth_lattice: $__MUL18X18 -> MULT18X18D
    "xc7": DspRules(25, 18, 18, 18, signed_only=True),  # synth_xilinx: $__MUL25X18 -> DSP48E1
}


def dsps(a_w: int, b_w: int, a_signed: bool, b_signed: bool, rules: DspRules, top: bool = True) -> int:
    """DSP primitives yosys uses for an ``a_w`` × ``b_w`` multiplier (0 when it stays in LUTs)."""
    if top and a_signed != b_signed:  # Verilog: signed times unsigned is an unsigned product
        a_signed = b_signed = False
    if top and a_w < b_w:  # mul2dsp puts the wider operand on A (for $mul, not its $__mul slices)
        a_w, b_w, a_signed, b_signed = b_w, a_w, b_signed, a_signed
    if a_w < rules.a_min or b_w < rules.b_min:
        return 0
    if top and rules.signed_only and not a_signed and not b_signed:
        return dsps(a_w + 1, b_w + 1, True, True, rules, top=True)
    head = 1 if rules.signed_only else 0
    if a_w > rules.a_max:
        step = rules.a_max_partial - head
        n = (a_w - rules.a_max + rules.a_max_partial - head - 1) // step
        return n * dsps(rules.a_max_partial, b_w, bool(head), b_signed, rules, False) + \
            dsps(a_w - n * step, b_w, a_signed, b_signed, rules, False)
    if b_w > rules.b_max:
        step = rules.b_max_partial - head
        n = (b_w - rules.b_max + rules.b_max_partial - head - 1) // step
        return n * dsps(a_w, rules.b_max_partial, a_signed, bool(head), rules, False) + \
            dsps(a_w, b_w - n * step, a_signed, b_signed, rules, False)
    return 1


# -- memories ------------------------------------------------------------------------------------------

# (depth, width) aspect ratios of one block in simple dual-port use, and its cost in memory_libmap
_ECP5_BLOCKS = [((16384, 1), 1), ((8192, 2), 1), ((4096, 4), 1), ((2048, 9), 1), ((1024, 18), 1),
                ((512, 36), 1)]  # DP16KD; PDPW16KD for 512x36.  Units: one DP16KD
_XC7_BLOCKS = [((16384, 1), 1), ((8192, 2), 1), ((4096, 4), 1), ((2048, 9), 1), ((1024, 18), 1), ((512, 36), 1),
               ((32768, 1), 2), ((16384, 2), 2), ((8192, 4), 2), ((4096, 9), 2), ((2048, 18), 2), ((1024, 36), 2),
               ((512, 72), 2)]  # RAMB18E1 (1 unit), RAMB36E1 (2 units)
BLOCK_COST = {"ecp5": 128, "xc7": 129}  # per unit
# distributed RAM: (depth, width) of one cell and its cost; ECP5 TRELLIS_DPR16X4, xc7 RAM64M-like
_LUTRAM = {"ecp5": ((16, 4), 4), "xc7": ((64, 3), 8)}
LOGIC_COST_RAM, LOGIC_COST_ROM = 1.0, 1.0 / 16.0


@dataclass(frozen=True)
class Memory:
    """One inferred memory: ``depth`` words of ``width`` bits, one read and (unless a ROM) one write
    port; ``tdp``: a second read port on the write port's address (true dual-port blocks only)."""

    name: str
    depth: int
    width: int
    rom: bool = False
    tdp: bool = False

    @property
    def bits(self) -> int:
        return self.depth * self.width


def memory_mapping(mem: Memory, family: str) -> tuple[str, int]:
    """(kind, count) memory_libmap would choose: ("bram", units), ("lutram", cells) or ("logic", bits)."""
    shapes = _ECP5_BLOCKS if family == "ecp5" else _XC7_BLOCKS
    if mem.tdp:  # the widest ratios are simple dual-port only (PDPW16KD; RAMB18 512x36, RAMB36 512x72)
        shapes = [s for s in shapes if s[0] not in ((512, 36), (512, 72))]
    blocks = min(math.ceil(mem.depth / d) * math.ceil(mem.width / w) * u for (d, w), u in shapes)
    options = [(blocks * BLOCK_COST[family], "bram", blocks),
               (mem.bits * (LOGIC_COST_ROM if mem.rom else LOGIC_COST_RAM), "logic", mem.bits)]
    if not mem.rom:
        (d, w), cost = _LUTRAM[family]
        cells = math.ceil(mem.depth / d) * math.ceil(mem.width / w) * (2 if mem.tdp else 1)
        options.append((cells * cost, "lutram", cells))
    _cost, kind, count = min(options, key=lambda o: o[0])
    return kind, count


# -- the accelerator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mul:
    """``count`` multipliers of ``a_w`` × ``b_w`` bits in one unit."""

    count: int
    a_w: int
    b_w: int
    a_signed: bool = True
    b_signed: bool = True


@dataclass(frozen=True)
class Unit:
    """One block of the accelerator: the multipliers and memories it holds."""

    name: str  # what the report calls it
    what: str  # one line: how many of what
    muls: tuple[Mul, ...] = ()
    memories: tuple[Memory, ...] = ()


def inventory(p: dict[str, int]) -> list[Unit]:
    """The accelerator's units for the Verilog parameters ``p`` (ROWS, COLS, IN_W, ...).

    Every operand width is the one the RTL multiplies after sign or zero extension (one bit more
    than the stored code, so both signednesses fit a signed operand)."""
    r, c, in_w, acc_w, idx_w = p["ROWS"], p["COLS"], p["IN_W"], p["ACC_W"], p["IDX_W"]
    lane_pm = isa.pmem_lane_bits(acc_w)
    mult_w = isa.MULT_W + 1  # the unsigned 16-bit multiplier as a signed operand
    lo_w, hi_w = acc_w // 2, acc_w - acc_w // 2  # nnf_requant splits acc into two DSP-sized halves
    aw = max(1, math.ceil(math.log2(p["SPAD_DEPTH"])))  # scratchpad address width
    return [
        Unit("array", f"{r}x{c} PEs, one {in_w + 1}x{in_w + 1} MAC each", (Mul(r * c, in_w + 1, in_w + 1),)),
        Unit("requant", f"{c} requantizers (shared by GEMM and the ALU), {lo_w + 1}x{mult_w} and "
                        f"{hi_w}x{mult_w} partial products each", (Mul(c, lo_w + 1, mult_w), Mul(c, hi_w, mult_w))),
        Unit("agen", f"tap address generator (GEMM and WINDOW), two {aw}x{aw} index multiplies",
             (Mul(2, aw, aw, False, False),)),
        Unit("spad", f"scratchpad {p['SPAD_DEPTH']} x {c * in_w} b", memories=(Memory("spad", p["SPAD_DEPTH"], c * in_w, tdp=True),)),
        Unit("wmem", f"weights {p['WMEM_DEPTH']} x {c * in_w} b", memories=(Memory("wmem", p["WMEM_DEPTH"], c * in_w),)),
        Unit("imem", f"indices {p['IMEM_DEPTH']} x {c * idx_w} b",
             memories=(Memory("imem", p["IMEM_DEPTH"], c * idx_w),)),
        Unit("pmem", f"parameters {p['PMEM_DEPTH']} x {c * lane_pm} b",
             memories=(Memory("pmem", p["PMEM_DEPTH"], c * lane_pm),)),
        Unit("prog", f"program {p['PROG_DEPTH']} x {isa.INSTR_BITS} b",
             memories=(Memory("prog", p["PROG_DEPTH"], isa.INSTR_BITS),)),
    ]


@dataclass
class UnitEstimate:
    name: str
    what: str
    dsp: int
    bram: int
    lutram: int
    logic_bits: int  # memory bits left to soft logic (FFs and LUT muxes)
    sram_bits: int  # every memory bit (the ASIC view: SRAM macros)


def estimate(p: dict[str, int], family: str) -> list[UnitEstimate]:
    """Per-unit DSP and block-RAM predictions for ``family`` ("ecp5", "xc7" or "generic")."""
    out = []
    for unit in inventory(p):
        dsp = 0 if family == "generic" else sum(
            m.count * dsps(m.a_w, m.b_w, m.a_signed, m.b_signed, DSP_RULES[family]) for m in unit.muls)
        bram = lutram = logic = 0
        for mem in unit.memories:
            if family == "generic":
                continue
            kind, n = memory_mapping(mem, family)
            bram += n if kind == "bram" else 0
            lutram += n if kind == "lutram" else 0
            logic += n if kind == "logic" else 0
        out.append(UnitEstimate(unit.name, unit.what, dsp, bram, lutram, logic,
                                sum(m.bits for m in unit.memories)))
    return out


def totals(rows: list[UnitEstimate]) -> dict[str, int]:
    return {k: sum(getattr(r, k) for r in rows) for k in ("dsp", "bram", "lutram", "logic_bits", "sram_bits")}
