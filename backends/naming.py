"""Identifiers for generated C++ and Verilog, derived from ONNX names.

ONNX node names are arbitrary strings (``/features/features.0/Conv``, or hostile ones such as
``x"); system("rm -rf /"); //``).  Nothing of them reaches generated code except through
``identifiers``: letters, digits and ``_`` only, never a keyword of C++ or (System)Verilog,
never a reserved ``_X`` / ``__`` form, and collision-free.  The mapping is deterministic:
the same names in the same order always give the same identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CPP = """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
char32_t class compl concept const consteval constexpr constinit const_cast continue co_await co_return
co_yield decltype default delete do double dynamic_cast else enum explicit export extern false float for
friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private
protected public register reinterpret_cast requires return short signed sizeof static static_assert
static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned
using virtual void volatile wchar_t while xor xor_eq main NULL assert std"""
_VERILOG = """always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule
endprimitive endspecify endtable endtask event for force forever fork function generate genvar highz0
highz1 if ifnone incdir include initial inout input instance integer join large liblist library localparam
macromodule medium module nand negedge nmos nor noshowcancelled not notif0 notif1 or output parameter pmos
posedge primitive pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real realtime
reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small specify
specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior
trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor logic bit byte int
shortint longint always_ff always_comb always_latch interface package import export class"""
RESERVED = frozenset(_CPP.split()) | frozenset(_VERILOG.split())


def sanitize(name: str, prefix: str = "n") -> str:
    """One name -> a safe identifier (not yet collision-checked)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    ident = re.sub(r"_+", "_", ident).strip("_")
    if not ident or ident[0].isdigit() or ident in RESERVED or ident.lower() in RESERVED:
        ident = f"{prefix}_{ident}" if ident else prefix
    return ident[:48]


def identifiers(names: Iterable[str], prefix: str = "n", taken: Iterable[str] = ()) -> dict[str, str]:
    """Map each distinct name to a unique safe identifier (``_2``, ``_3``... on collisions)."""
    used = set(taken)
    out: dict[str, str] = {}
    for name in names:
        if name in out:
            continue
        base = sanitize(name, prefix)
        ident, i = base, 2
        while ident in used or ident.lower() in RESERVED:
            ident, i = f"{base}_{i}", i + 1
        used.add(ident)
        out[name] = ident
    return out
