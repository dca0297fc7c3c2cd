"""Relax patterns for the integer op chains ``compiler/lower/lower_relax.py`` emits, one per QGraph op.

A backend declares which QGraph ops it takes (``Backend.ops``); ``patterns_for`` turns those
into ``FusionPattern`` objects named ``<backend>.<op>`` (the prefix before the dot becomes the
codegen name after ``MergeCompositeFunctions``).  Each pattern matches exactly one node's
whole chain, e.g. for conv2d::

    astype -> conv2d -> add(bias) -> [astype(int64)] -> multiply(M) -> [left_shift]
        -> [add(half)] -> [right_shift] -> saturate -> astype(storage)

where saturate is ``maximum -> minimum`` (SAT) or the WRAP form ``[add] -> bitwise_and ->
[subtract]`` with an optional clamp.  If the lowering changes, change the matching builder
here; ``tests/test_partition.py`` and ``tests/test_backend_api.py`` check that every op of
every example model is matched whole.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard


def _optional(op: str, inner: DFPattern) -> DFPattern:
    """``op(inner, const)`` or ``inner`` itself."""
    return is_op(op)(inner, is_const()) | inner


def _clamp(inner: DFPattern) -> DFPattern:
    return is_op("relax.minimum")(is_op("relax.maximum")(inner, is_const()), is_const())


def round_shift(v: DFPattern) -> DFPattern:
    """``_Lowerer.round_shift``: [left_shift] -> [add(half)] -> [right_shift]."""
    v = _optional("relax.left_shift", v)  # negative shifts
    v = _optional("relax.add", v)  # RND: + 2^(n-1)
    return _optional("relax.right_shift", v)  # n > 0


def saturate(v: DFPattern) -> DFPattern:
    """``_Lowerer.saturate``: SAT clamp, or WRAP (signed / unsigned) with an optional clamp; then the cast."""
    wrap_signed = is_op("relax.subtract")(
        is_op("relax.bitwise_and")(is_op("relax.add")(v, is_const()), is_const()), is_const())
    wrap = wrap_signed | is_op("relax.bitwise_and")(v, is_const())
    return is_op("relax.astype")(_clamp(v) | _clamp(wrap) | wrap)


def requant_tail(acc: DFPattern) -> DFPattern:
    """``_Lowerer.requant``: every variant it emits, nothing else."""
    v = is_op("relax.astype")(acc) | acc  # an int64 accumulator is not cast again
    return saturate(round_shift(is_op("relax.multiply")(v, is_const())))


def _conv2d() -> DFPattern:
    x = is_op("relax.astype")(wildcard())
    return requant_tail(is_op("relax.add")(is_op("relax.nn.conv2d")(x, is_const()), is_const()))


def _dense() -> DFPattern:
    x = is_op("relax.astype")(wildcard())
    return requant_tail(is_op("relax.add")(is_op("relax.matmul")(x, is_const()), is_const()))


def _avg_pool2d() -> DFPattern:  # window sum as a depthwise conv with ones, no bias
    return requant_tail(is_op("relax.nn.conv2d")(is_op("relax.astype")(wildcard()), is_const()))


def _global_avg_pool() -> DFPattern:
    return requant_tail(is_op("relax.sum")(is_op("relax.astype")(wildcard())))


def _add() -> DFPattern:
    def branch():
        return round_shift(is_op("relax.multiply")(is_op("relax.astype")(wildcard()), is_const()))

    return saturate(is_op("relax.add")(branch(), branch()))


def _mul() -> DFPattern:
    a, b = is_op("relax.astype")(wildcard()), is_op("relax.astype")(wildcard())
    return requant_tail(is_op("relax.multiply")(a, b))


def _requant() -> DFPattern:
    return requant_tail(wildcard())


def _clip() -> DFPattern:
    return saturate(is_op("relax.astype")(wildcard()))


def _lut() -> DFPattern:
    idx = is_op("relax.subtract")(is_op("relax.astype")(wildcard()), is_const())
    return is_op("relax.astype")(is_op("relax.take")(is_const(), idx))


def _lrn() -> DFPattern:
    """``_Lowerer.lrn``: the squares summed over channels by a conv3d, the factor looked up, then the
    requantization tail without a constant multiplier."""
    x = is_op("relax.astype")(wildcard())
    view = is_op("relax.expand_dims")(is_op("relax.multiply")(x, x))
    s = is_op("relax.squeeze")(is_op("relax.nn.conv3d")(view, is_const()))
    factor = is_op("relax.take")(is_const(), _optional("relax.right_shift", s))
    return saturate(round_shift(is_op("relax.multiply")(x, factor)))


def _single(op: str, nargs: int = 1) -> Callable[[], DFPattern]:
    return lambda: is_op(op)(*[wildcard() for _ in range(nargs)])


# Most specific first: FuseOpsByPattern tries patterns in list order.
BUILDERS: dict[str, Callable[[], DFPattern]] = {
    "conv2d": _conv2d,
    "dense": _dense,
    "avg_pool2d": _avg_pool2d,
    "global_avg_pool": _global_avg_pool,
    "add": _add,
    "mul": _mul,
    "lut": _lut,
    "lrn": _lrn,
    "requant": _requant,
    "clip": _clip,
    "max_pool2d": _single("relax.nn.max_pool2d"),
    "concat": _single("relax.concat"),
    "reshape": _single("relax.reshape", 2),  # data, shape
    "transpose": _single("relax.permute_dims"),
    "pad": _single("relax.nn.pad"),
}
QGRAPH_OPS = frozenset(BUILDERS)


def patterns_for(codegen: str, ops) -> list[relax.transform.FusionPattern]:
    """``FusionPattern`` objects named ``<codegen>.<op>`` for ``ops``, most specific first."""
    unknown = set(ops) - QGRAPH_OPS
    if unknown:
        raise ValueError(f"no pattern for QGraph op(s) {sorted(unknown)}; known: {sorted(QGRAPH_OPS)}")
    return [relax.transform.FusionPattern(f"{codegen}.{op}", build()) for op, build in BUILDERS.items()
            if op in ops]
