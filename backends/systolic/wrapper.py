"""The generated wrapper: only when the ``top`` option names a module other than the library's.

``rtl/nnf_systolic_top.v`` is the accelerator for every model; with ``top`` left at its
default the project instantiates it directly (parameters from ``systolic.json``).  Another
``top`` gets ``rtl/<top>.v``: that name, the same ports, this model's parameters fixed.
"""

from __future__ import annotations

from .params import OPTIONS, Params


def files(p: Params) -> dict[str, str]:
    """``{}`` for the default top, else ``{"rtl/<top>.v": wrapper}``."""
    if p.top == OPTIONS["top"].default:
        return {}
    from nnforge import __version__

    from .project import templates

    m = p.machine
    text = templates().get_template("wrapper.v.j2").render(
        top=p.top, version=__version__, params=p.verilog_parameters(), word_bits=m.cols * m.in_bits,
        dbg_addr_bits=32)  # the top's debug address is a 32-bit word address, like the instruction bases
    return {f"rtl/{p.top}.v": text}


__all__ = ["files"]
