"""Relax patterns for the integer op chains of ``compiler/lower/lower_relax.py``, one per QGraph op.

Each op's pattern sits in its module of the op table (``compiler/ops/``, ``OpSpec.pattern``),
next to the lowering it matches; it is written against ``PatternBuilder`` (this module), which
holds the ``tvm.relax.dpl`` calls and the parts every requantizing chain shares.

A backend declares which QGraph ops it takes (``Backend.ops``); ``patterns_for`` turns those
into ``FusionPattern`` objects named ``<backend>.<op>`` (the prefix before the dot becomes the
codegen name after ``MergeCompositeFunctions``).  Each pattern matches exactly one node's
whole chain, e.g. for conv2d::

    astype -> conv2d -> add(bias) -> [astype(int64)] -> multiply(M) -> [left_shift]
        -> [add(half)] -> [right_shift] -> saturate -> astype(storage)

where saturate is ``maximum -> minimum`` (SAT) or the WRAP form ``[add] -> bitwise_and ->
[subtract]`` with an optional clamp.  ``tests/test_op_table.py`` checks each op's pattern against
its own lowering; ``tests/test_partition.py`` and ``tests/test_backend_api.py`` that every op of
every example model is matched whole.
"""

from __future__ import annotations

from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard

from nnforge.compiler.ops import OPS, SPECS

QGRAPH_OPS = frozenset(OPS)


class PatternBuilder:
    """What an op's ``pattern(p)`` builds with: the dpl primitives and the shared chain parts."""

    is_op = staticmethod(is_op)
    is_const = staticmethod(is_const)
    wildcard = staticmethod(wildcard)

    @staticmethod
    def optional(op: str, inner: DFPattern) -> DFPattern:
        """``op(inner, const)`` or ``inner`` itself."""
        return is_op(op)(inner, is_const()) | inner

    @staticmethod
    def clamp(inner: DFPattern) -> DFPattern:
        """``minimum(maximum(inner, const), const)``."""
        return is_op("relax.minimum")(is_op("relax.maximum")(inner, is_const()), is_const())

    @classmethod
    def round_shift(cls, v: DFPattern) -> DFPattern:
        """``Lowerer.round_shift``: [left_shift] -> [add(half)] -> [right_shift]."""
        v = cls.optional("relax.left_shift", v)  # negative shifts
        v = cls.optional("relax.add", v)  # RND: + 2^(n-1)
        return cls.optional("relax.right_shift", v)  # n > 0

    @classmethod
    def saturate(cls, v: DFPattern) -> DFPattern:
        """``Lowerer.saturate``: SAT clamp, or WRAP (signed / unsigned) with an optional clamp; then the cast."""
        wrap_signed = is_op("relax.subtract")(
            is_op("relax.bitwise_and")(is_op("relax.add")(v, is_const()), is_const()), is_const())
        wrap = wrap_signed | is_op("relax.bitwise_and")(v, is_const())
        return is_op("relax.astype")(cls.clamp(v) | cls.clamp(wrap) | wrap)

    @classmethod
    def requant_tail(cls, acc: DFPattern) -> DFPattern:
        """``Lowerer.requant``: every variant it emits, nothing else."""
        v = is_op("relax.astype")(acc) | acc  # an int64 accumulator is not cast again
        return cls.saturate(cls.round_shift(is_op("relax.multiply")(v, is_const())))


def pattern(op: str) -> DFPattern:
    """The pattern of one QGraph op's chain."""
    return OPS[op].pattern(PatternBuilder)


def patterns_for(codegen: str, ops) -> list[relax.transform.FusionPattern]:
    """``FusionPattern`` objects named ``<codegen>.<op>`` for ``ops``, most specific first."""
    unknown = set(ops) - QGRAPH_OPS
    if unknown:
        raise ValueError(f"no pattern for QGraph op(s) {sorted(unknown)}; known: {sorted(QGRAPH_OPS)}")
    return [relax.transform.FusionPattern(f"{codegen}.{s.name}", s.pattern(PatternBuilder)) for s in SPECS
            if s.name in ops]
