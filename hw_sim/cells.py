"""What each yosys cell type is, per family: the resource categories of the synthesis tables.

Cell names are those ``synth_ecp5`` (``synth_lattice -family ecp5``), ``synth_xilinx -family
xc7`` and the generic ``abc -g cmos`` flow leave in the netlist.  A category's count is in the
device's own unit: one DP16KD, one RAMB18 (a RAMB36E1 counts two), one MULT18X18D or DSP48E1.
"""

from __future__ import annotations

CATEGORIES = ("lut", "ff", "carry", "dsp", "bram", "lutram", "mux", "other")

_ECP5 = {
    "LUT4": ("lut", 1), "TRELLIS_FF": ("ff", 1), "CCU2C": ("carry", 1),
    "MULT18X18D": ("dsp", 1), "ALU54B": ("other", 1),
    "DP16KD": ("bram", 1), "PDPW16KD": ("bram", 1),
    "TRELLIS_DPR16X4": ("lutram", 1), "PFUMX": ("mux", 1), "L6MUX21": ("mux", 1),
}
_XC7 = {
    **{f"LUT{i}": ("lut", 1) for i in range(1, 7)},
    **{c: ("ff", 1) for c in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")},
    "CARRY4": ("carry", 1), "DSP48E1": ("dsp", 1), "RAMB18E1": ("bram", 1), "RAMB36E1": ("bram", 2),
    **{c: ("lutram", 1) for c in ("RAM32M", "RAM64M", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1D",
                                  "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM256X1S", "SRL16E", "SRLC32E")},
    "MUXF7": ("mux", 1), "MUXF8": ("mux", 1),
}


def _generic(cell: str) -> tuple[str, int] | None:
    if cell.startswith("$_DFF") or cell.startswith("$_SDFF") or cell.startswith("$_DLATCH"):
        return "ff", 1
    if cell.startswith("$_"):
        return "lut", 1  # a CMOS gate; the table calls them gates
    if cell.startswith("$mem"):
        return "bram", 1  # an SRAM macro
    return None


def classify(family: str, cell: str) -> tuple[str, int] | None:
    """(category, units) of one cell, or None for a cell nnforge does not count (buffers, IO)."""
    if family == "generic":
        return _generic(cell)
    table = _ECP5 if family == "ecp5" else _XC7
    if cell in table:
        return table[cell]
    if cell in ("VCC", "GND", "$scopeinfo", "IBUF", "OBUF", "BUFG", "TRELLIS_IO"):
        return None
    return "other", 1


def resources(family: str, cells: dict[str, int]) -> dict[str, int]:
    """Cell counts by type -> counts by category (every category present, 0 when unused)."""
    out = dict.fromkeys(CATEGORIES, 0)
    for cell, n in cells.items():
        kind = classify(family, cell)
        if kind is not None:
            out[kind[0]] += kind[1] * int(n)
    return out
