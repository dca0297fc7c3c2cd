"""The systolic backend's options, and the validated parameter set they make.

``OPTIONS`` is what ``nnforge backends`` lists; the generic option parse checks types and the
ranges given here, ``params(options)`` adds the cross-field checks (``rows <= cols``, names) and
returns one frozen ``Params`` that every later step reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nnforge.compiler.errors import InputError

from ..base import Option
from ..naming import RESERVED
from .isa_sim import Machine

# widths the instruction fields can carry: out_bits is 5 bits, idx_bits 3, addresses 32, pixel
# strides and counts 16; ACC_W + 16 (the multiplier) must stay within int64 for the model
OPTIONS: dict[str, Option] = {
    "rows": Option(8, "array rows R: output pixels computed at once (R <= cols)", minimum=1, maximum=64),
    "cols": Option(8, "array columns C: output channels at once, and the lanes of a memory word", minimum=1,
                   maximum=64),
    "in_bits": Option(8, "width of stored codes (activations and weights), IN_W", minimum=2, maximum=16),
    "acc_bits": Option(32, "accumulator width ACC_W; every layer's accumulator bound must fit", minimum=8,
                       maximum=48),
    "idx_bits": Option(4, "index width of shared weights IDX_W (codebooks of up to 2^idx_bits entries)",
                       minimum=1, maximum=7),
    "spad_depth": Option(4096, "activation scratchpad depth, words", minimum=16, maximum=1 << 24),
    "wmem_depth": Option(8192, "dense weight memory depth, words", minimum=16, maximum=1 << 24),
    "imem_depth": Option(4096, "index memory depth (shared weights), words", minimum=16, maximum=1 << 24),
    "pmem_depth": Option(2048, "parameter memory depth (bias/multiplier/shift, codebooks, tables), words",
                         minimum=16, maximum=1 << 24),
    "prog_depth": Option(256, "program memory depth, instructions", minimum=8, maximum=1 << 16),
    "top": Option("nnf_systolic_top", "name of the top-level Verilog module"),
    "part": Option("ecp5-85k", "FPGA part for the synthesis report, e.g. 'ecp5-85k' or 'xc7a100t'"),
    "clock_mhz": Option(100.0, "target clock, MHz (reports the latency in microseconds)", minimum=1.0,
                        maximum=1000.0),
}

_VERILOG_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Params:
    """Every option, checked; ``machine`` is the accelerator they describe."""

    machine: Machine
    top: str
    part: str
    clock_mhz: float

    @property
    def rows(self) -> int:
        return self.machine.rows

    @property
    def cols(self) -> int:
        return self.machine.cols

    def verilog_parameters(self) -> dict[str, int]:
        """The top's Verilog parameters (docs/systolic.md, "Parameters")."""
        m = self.machine
        return {"ROWS": m.rows, "COLS": m.cols, "IN_W": m.in_bits, "ACC_W": m.acc_bits, "IDX_W": m.idx_bits,
                "SPAD_DEPTH": m.spad_depth, "WMEM_DEPTH": m.wmem_depth, "IMEM_DEPTH": m.imem_depth,
                "PMEM_DEPTH": m.pmem_depth, "PROG_DEPTH": m.prog_depth}


def _number(options: dict[str, Any], key: str, kind: type) -> Any:
    spec = OPTIONS[key]
    value = options.get(key, spec.default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise InputError(f"option {key!r} must be {'an integer' if kind is int else 'a number'} "
                         f"from {spec.minimum:g} to {spec.maximum:g}, not {value!r}")
    if not spec.minimum <= value <= spec.maximum:
        raise InputError(f"option {key!r} must be from {spec.minimum:g} to {spec.maximum:g}, not {value!r}")
    return kind(value)


def params(options: dict[str, Any] | None) -> Params:
    """``options`` (defaults filled in for missing keys) -> ``Params``; InputError naming the option."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"option key must be one of {', '.join(sorted(OPTIONS))} for the systolic backend, "
                         f"not {unknown[0]!r}")
    ints = {k: _number(options, k, int) for k, spec in OPTIONS.items() if isinstance(spec.default, int)}
    if ints["rows"] > ints["cols"]:
        raise InputError(f"option 'rows' must be at most cols={ints['cols']} (one scratchpad port feeds R rows "
                         f"in each C-cycle window), not {ints['rows']}")
    top = options.get("top", OPTIONS["top"].default)
    if (not isinstance(top, str) or not _VERILOG_IDENT.fullmatch(top) or top in RESERVED
            or top.lower() in RESERVED or (top.startswith("nnf_") and top != OPTIONS["top"].default)):
        raise InputError(f"option 'top' must be a Verilog identifier (a letter, then letters, digits or _; at most "
                         f"63; no keyword; no nnf_ prefix other than the default), not {top!r}")
    part = options.get("part", OPTIONS["part"].default)
    if not isinstance(part, str) or not _PART.fullmatch(part):
        raise InputError(f"option 'part' must be a part name like 'ecp5-85k', not {part!r}")
    clock = _number(options, "clock_mhz", float)
    return Params(Machine(**ints), top, part, clock)


__all__ = ["OPTIONS", "Params", "params"]
