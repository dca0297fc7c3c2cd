"""What one quantized op is: its typed attrs, flags, reference, Relax lowering and Relax pattern.

An ``OpSpec`` puts side by side the three readings of one op that must agree: the numpy
reference (the specification), the Relax lowering (the model of record) and the Relax pattern
that recognises that lowering in a backend's partition.  None of them imports TVM here: the
lowering gets the lowerer (``compiler/lower/lower_relax.py``) and the pattern a pattern builder
(``backends/patterns.py``), each of which holds the TVM API the ops need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # types only: the table must load without TVM or the graph module
    from ..qgraph import QNode
    from ..quant.numerics import QType


@dataclass(frozen=True, eq=False, kw_only=True)
class Attrs:
    """The attrs of one QGraph node, typed and frozen (change them with ``dataclasses.replace``).

    A field with the default ``None`` may be absent: ``to_dict`` leaves it out, so a node read
    from a dict writes back the same dict.  Arrays are int64 numpy arrays unless a field says
    otherwise."""

    kept_channels: np.ndarray | None = None
    """Record only (structured pruning, compress.py): the original channels this output keeps."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "node") -> Attrs:
        """The attrs from a plain dict; ``where`` names the node in errors ("conv2d node 'c1'")."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise InputError(f"the attrs of {where} must have keys among {sorted(names)}, not {key!r}")
        for f in dataclasses.fields(cls):
            if f.default is dataclasses.MISSING and f.name not in values:
                raise InputError(f"the attrs of {where} must include {f.name!r}, not leave it out")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The plain dict (the saved form): every field, less the absent optional ones."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = value
        return out


@dataclass(frozen=True, eq=False, kw_only=True)
class Requant(Attrs):
    """The requantization tail: ``saturate(round_shift(acc * multiplier, shift))``."""

    multiplier: Any
    """M: an int, or int64 [C] per output channel (or [OH, OW] per position, avg_pool2d)."""
    shift: Any
    """n, shaped like ``multiplier``; negative is a left shift."""
    lo: int | None
    """Output clamp below (a fused ReLU), or None: the output type's minimum."""
    hi: int | None
    """Output clamp above (ReLU6), or None: the output type's maximum."""
    rounding: str
    """"RND" (round half up) or "TRN" (floor)."""
    overflow: str
    """"SAT" (clamp) or "WRAP" (two's complement wrap)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class Weighted(Requant):
    """A requantizing op with weights (conv2d, dense): the accumulator type and the storage records."""

    acc_dtype: str
    """The accumulator type of the lowering ("int32" where it provably fits, else "int64")."""
    weight_bits: int | None = None
    """Record only (storage accounting, plots): never read by an executor."""
    weight_scale: Any = None
    """Record only: the float weight scale per output channel or column."""
    codebook: Any = None
    """Record only (weight sharing): the distinct weight codes."""
    pruned_sparsity: float | None = None
    """Record only (pruning): the fraction of weights set to zero."""


@dataclass(frozen=True)
class OpSpec:
    """One quantized op of the table (``compiler/ops/__init__.py``).

    * ``reference(node, xs, out_type) -> int64 array``: the specification (numpy);
    * ``lower(low, node, xs, out_type) -> Relax var``: the default-form chain (``low`` is the
      lowerer: ``low.op`` is ``tvm.relax.op``, plus ``emit``, ``const``, ``requant``, ...);
    * ``pattern(p) -> DFPattern``: the chain ``lower`` emits, whole (``p``: the pattern builder);
    * ``requantizes``: the output gets its own scale from calibration (and can take a concat's);
    * ``passthrough``: the output keeps the input's type and scale (no arithmetic on codes);
    * ``channelwise``: output channel c depends on input channel c only (structured pruning
      can remove channels through it);
    * ``fuses_act``: a following ReLU / clip becomes this op's output clamp (its ``lo``/``hi``).

    And the float side, what the quantizer needs to make the op from a float model:

    * ``float_rules``: ``(relax op name, rule)`` pairs; ``rule(b, var, call, args, acts)`` makes
      a float layer of one Relax binding (``b.new(...)``, returned) or returns None when the
      binding is not its (``b`` is ``compiler/quant/layers.LayerBuilder``: the Relax readers of
      the adapter and the layers so far);
    * ``float_chain(b) -> ({anchor var: (input var, attrs)}, inner vars)``: a float layer made of
      several bindings (LRN, HardSwish), found before the bindings are walked;
    * ``quantize(q) -> dict``: the node's attrs from the final scales (``q`` is
      ``compiler/quant/quantize.OpQuantizer``: the layer, its inputs' and output's types and
      scales, its config and the shared checks);
    * ``float_forward(attrs, xs) -> float64 array``: the float layer run in numpy (the
      compression passes fit layers around it).
    """

    name: str
    attrs: type[Attrs]
    reference: Callable[..., np.ndarray]
    lower: Callable[..., Any]
    pattern: Callable[..., Any]
    requantizes: bool = False
    passthrough: bool = False
    channelwise: bool = False
    fuses_act: bool = False
    float_rules: tuple[tuple[str, Callable[..., Any]], ...] = ()
    float_chain: Callable[..., tuple[dict, set]] | None = None
    quantize: Callable[..., dict] | None = None
    float_forward: Callable[..., np.ndarray] | None = None
    doc: str = field(default="", compare=False)
