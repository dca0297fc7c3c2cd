"""The synthesis targets of ``nnforge synth``: device capacities and the cell names yosys maps to.

The ECP5 capacities are what nextpnr-ecp5 reports as available (its ``--report`` JSON); the
package IO counts are from Lattice's ECP5 data sheet (FPGA-DS-02012, "Pin Information Summary").
The 7-series target is an Artix-7 XC7A100T (UG475/DS180): synthesis only, since no open place
and route for it installs from PyPI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nnforge.compiler.errors import InputError


@dataclass(frozen=True)
class Device:
    """One target: the family yosys synthesizes for, and the device the fit check and P&R use."""

    target: str  # the --target name
    family: str  # "ecp5", "xc7" or "generic"
    part: str  # marketing name, for reports
    lut: int = 0  # LUT4 (ECP5) or LUT6 (xc7)
    ff: int = 0
    dsp: int = 0  # MULT18X18D (ECP5) or DSP48E1 (xc7)
    bram: int = 0  # DP16KD (ECP5) or RAMB18 halves (xc7: one RAMB36 counts two)
    nextpnr_flag: str = ""  # --25k/--45k/--85k; empty when nextpnr cannot place it
    packages: dict[str, int] = field(default_factory=dict)  # package -> user IOs, default first

    @property
    def default_package(self) -> str:
        return next(iter(self.packages), "")

    @property
    def can_pnr(self) -> bool:
        return bool(self.nextpnr_flag)

    def capacity(self) -> dict[str, int]:
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram}


# Unit names per family: what one "dsp" and one "bram" are, for messages and tables.
UNITS = {
    "ecp5": {"lut": "LUT4", "ff": "FF", "dsp": "MULT18X18D", "bram": "DP16KD (18 Kb)", "carry": "CCU2C"},
    "xc7": {"lut": "LUT6", "ff": "FF", "dsp": "DSP48E1", "bram": "RAMB18 (18 Kb)", "carry": "CARRY4"},
    "generic": {"lut": "gates", "ff": "FF", "dsp": "-", "bram": "-", "carry": "-"},
}

DEVICES: dict[str, Device] = {d.target: d for d in (
    Device("ecp5-25k", "ecp5", "LFE5U-25F", 24288, 24288, 28, 56, "--25k",
           {"CABGA381": 197, "CABGA256": 197, "CSFBGA285": 118, "TQFP144": 98}),
    Device("ecp5-45k", "ecp5", "LFE5U-45F", 43848, 43848, 72, 108, "--45k",
           {"CABGA554": 245, "CABGA381": 203, "CABGA256": 197, "CSFBGA285": 118, "TQFP144": 98}),
    Device("ecp5-85k", "ecp5", "LFE5U-85F", 83640, 83640, 156, 208, "--85k",
           {"CABGA756": 365, "CABGA554": 259, "CABGA381": 205, "CSFBGA285": 118}),
    Device("xc7", "xc7", "XC7A100T (Artix-7)", 63400, 126800, 240, 270),
    Device("generic", "generic", "technology-independent CMOS gates (abc -g cmos)"),
)}


def get_device(target: str) -> Device:
    """The device for a ``--target`` value; an InputError listing the valid ones otherwise."""
    if target not in DEVICES:
        raise InputError(f"--target must be one of {', '.join(DEVICES)}, not {target!r}")
    return DEVICES[target]


def check_package(device: Device, package: str | None) -> str:
    """The package to place in: ``package`` if the device comes in it, else its default."""
    if package is None:
        return device.default_package
    if not device.packages:
        raise InputError(f"--package applies only to the ECP5 targets, not {device.target!r}")
    if package not in device.packages:
        raise InputError(f"--package for {device.part} must be one of {', '.join(device.packages)}, not {package!r}")
    return package


def check_seed(seed: int | str) -> int:
    """nextpnr's placer seed: an integer from 0 to 2**31 - 1 (nextpnr reads it as an int)."""
    try:
        value = int(str(seed), 10)
    except (TypeError, ValueError):
        raise InputError(f"--seed must be an integer from 0 to {2**31 - 1}, not {seed!r}") from None
    if not 0 <= value < 2**31:
        raise InputError(f"--seed must be an integer from 0 to {2**31 - 1}, not {seed!r}")
    return value


def check_freq(freq: float) -> float:
    """The target clock in MHz: a positive finite number."""
    try:
        value = float(freq)
    except (TypeError, ValueError):
        raise InputError(f"--freq must be a positive finite number of MHz, not {freq!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--freq must be a positive finite number of MHz, not {freq!r}")
    return value
