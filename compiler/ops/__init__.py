"""The op table: every quantized (QGraph) op, one module each, registered here once.

Each module holds, side by side, the op's typed attrs, its flags, its numpy reference, its Relax
lowering and the Relax pattern that matches that lowering (``spec.OpSpec``).  The reference
interpreter (``compiler/reference.py``), the lowering (``compiler/lower/lower_relax.py``) and the
backends' partition patterns (``backends/patterns.py``) all read this table; backends keep only
their kernels, keyed by the same names.

Each module also holds the op's float side: the rules that recognise it in the float Relax module
(``float_rules``, ``float_chain``: compiler/quant/layers.py runs them), its quantize rule
(``quantize``: compiler/quant/quantize.py) and its float function (``float_forward``).

Adding an op: a module like ``mul.py`` with its ``SPEC``, one line in ``SPECS`` below, and a
kernel in each backend that takes it (docs/adding_an_op.md).
"""

from __future__ import annotations

from . import (add, avg_pool2d, clip, concat, conv2d, dense, global_avg_pool, hard_swish, lrn, lut, max_pool2d,
               mul, pad, requant, reshape, transpose)
from .spec import Attrs, OpSpec, Requant

# Most specific first: this is the order backends try the patterns in (FuseOpsByPattern takes
# the first that matches), so an op whose chain ends another's comes after it.
SPECS: list[OpSpec] = [
    conv2d.SPEC,
    dense.SPEC,
    avg_pool2d.SPEC,
    global_avg_pool.SPEC,
    add.SPEC,
    mul.SPEC,
    lut.SPEC,
    lrn.SPEC,
    hard_swish.SPEC,  # before requant, whose pattern would take its requantization tail
    requant.SPEC,
    clip.SPEC,
    max_pool2d.SPEC,
    concat.SPEC,
    reshape.SPEC,
    transpose.SPEC,
    pad.SPEC,
]

OPS: dict[str, OpSpec] = {s.name: s for s in SPECS}

REQUANTIZING = frozenset(s.name for s in SPECS if s.requantizes)
PASSTHROUGH = frozenset(s.name for s in SPECS if s.passthrough)
CHANNELWISE = frozenset(s.name for s in SPECS if s.channelwise)
FUSES_ACT = frozenset(s.name for s in SPECS if s.fuses_act)


def attrs_of(op: str, values: dict, node: str = "") -> Attrs:
    """The typed attrs of a node of ``op`` from a plain dict (errors name the node and the key)."""
    from ..errors import InputError

    if op not in OPS:
        raise InputError(f"the op of node {node!r} must be one of {sorted(OPS)}, not {op!r}")
    return OPS[op].attrs.from_dict(values, f"{op} node {node!r}")


__all__ = ["Attrs", "CHANNELWISE", "FUSES_ACT", "OPS", "OpSpec", "PASSTHROUGH", "REQUANTIZING", "Requant", "SPECS", "attrs_of"]
