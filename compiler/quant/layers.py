"""Group a cleaned float Relax module into layers, the unit the quantizer works on.

A layer is an anchor op plus what fuses into it, e.g. ``conv2d -> add(bias) -> relu``.
Each layer records its float parameters and the Relax variable holding its output, so that
calibration can observe exactly the tensors the integer model will produce.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import ops
from ..errors import ModelError
from ..frontend.relax_utils import (call_op_name, const_value, is_constant, is_var, output_exprs, returning,
                                   static_shape, var_uses)

_GENERATED = re.compile(r"^(lv|gv)\d*$")

# ops that move codes without changing scale
PASSTHROUGH = ops.PASSTHROUGH  # the op table's flag: the output keeps the input's type and scale


@dataclass
class FloatLayer:
    op: str
    name: str
    inputs: list  # relax vars (activations)
    output: Any  # relax var holding the layer's float output
    attrs: dict[str, Any] = field(default_factory=dict)
    onnx_name: str = ""  # the ONNX node's own name, where ``name`` needed a suffix to be unique

    @property
    def act(self) -> tuple[float | None, float | None]:
        """Fused activation clamp (lo, hi) in real units; (None, None) when none."""
        return self.attrs.get("act", (None, None))


def unique_names(names: list[str], reserved: list[str] = ()) -> list[str]:
    """``names`` made unique in order: a repeat, or a name in ``reserved`` (the model's input
    names), gets the first free suffix ``#2``, ``#3``, ...; the others are kept."""
    used = set(reserved)
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate in used:
            candidate, k = f"{name}#{k}", k + 1
        used.add(candidate)
        out.append(candidate)
    return out


def binding_names(func, onnx_names: dict[str, str]) -> dict:
    """Relax var -> (unique name, ONNX name) for every binding of ``func`` that carries an ONNX
    node's name, made unique in binding order with ``unique_names`` (the inputs' names reserved).
    ``float_layers`` and ``summary.summarize`` both name layers from it, so ``inspect`` and the
    integer graph give one layer one name even where the ONNX names repeat."""
    inputs = [onnx_names.get(p.name, p.name) for p in func.params]
    named = [b.var for blk in func.body.blocks for b in blk.bindings
             if not _GENERATED.match(b.var.name) and b.var.name in onnx_names]
    originals = [onnx_names[v.name] for v in named]
    return {v: (u, o) for v, u, o in zip(named, unique_names(originals, inputs), originals)}


def _name(var, op: str, index: int) -> str:
    return f"{op}_{index}" if _GENERATED.match(var.name) else var.name


def binding_positions(func) -> dict:
    """Relax var -> (position among ``func``'s bindings, bound value)."""
    return {b.var: (i, b.value) for i, b in enumerate(b for blk in func.body.blocks for b in blk.bindings)}


def generated_name(call, position: int) -> str:
    """The name of a layer whose output var carries no ONNX name (the importer made it up): its
    Relax op and its binding's position in ``main``, e.g. ``softmax_39``.  ``inspect``
    (summary.py) and the integer graph (``float_layers``) both name such layers with it, so a
    host layer has one name in every command."""
    op = call_op_name(call) or "layer"
    short = op.removeprefix("relax.").removeprefix("nn.")
    if op == "relax.matmul" and is_constant(call.args[1]):
        short = "dense"
    return f"{short}_{position}"


class LayerBuilder:
    """What a float rule gets (``OpSpec.float_rules`` and ``float_chain``, compiler/ops/*.py): the
    Relax readers of the adapter (``frontend/relax_utils``: op modules never import tvm) and the
    layers made so far, with the three things a rule does to them: ``new`` (a layer from this
    binding), ``fusable`` (the layer a binding may fuse into) and ``extend`` (fuse it)."""

    call_op_name = staticmethod(call_op_name)
    const_value = staticmethod(const_value)
    is_constant = staticmethod(is_constant)
    is_var = staticmethod(is_var)
    static_shape = staticmethod(static_shape)
    fuses_act = ops.FUSES_ACT  # the op table's flag: a following clamp becomes the op's lo/hi

    def __init__(self, func, onnx_names: dict[str, str]) -> None:
        self.onnx_names = onnx_names
        self.users = var_uses(func)
        self.bindings = {b.var: b.value for blk in func.body.blocks for b in blk.bindings}  # var -> call
        self.layers: list[FloatLayer] = []
        self.producer: dict = {}  # var -> layer index whose output it is
        self.activations = set(func.params)
        self.alias: dict = {}  # var bound to another var -> the var it names
        self.canon = binding_names(func, onnx_names)  # var -> (unique name, ONNX name)
        self.positions = binding_positions(func)
        self.original: dict[str, str] = {}  # unique name -> the ONNX name it stands for

    def label(self, var, call) -> str:
        """How errors name the binding: ``layer 'x' (nn.conv2d)``."""
        return f"layer {var.name!r} ({call_op_name(call).removeprefix('relax.')})"

    def scalar(self, expr) -> float | None:
        """The value of a one-element constant, else None."""
        if is_constant(expr) and const_value(expr).size == 1:
            return float(const_value(expr).reshape(()))
        return None

    def single_use(self, expr, op: str):
        """The call bound to ``expr`` when ``expr`` is a var used once and that call is ``op``; else None."""
        v = self.bindings.get(expr) if is_var(expr) and self.users.get(expr, 0) == 1 else None
        return v if v is not None and call_op_name(v) == op else None

    def _named(self, var, fallback: str) -> str:
        if var in self.canon:
            unique, onnx_name = self.canon[var]
            self.original[unique] = onnx_name
            return unique
        return self.onnx_names.get(fallback, fallback)

    def new(self, op: str, var, inputs, **attrs) -> FloatLayer:
        """A new layer ``op`` whose output is ``var``."""
        position, value = self.positions[var]
        fallback = generated_name(value, position) if _GENERATED.match(var.name) else var.name
        self.layers.append(FloatLayer(op, self._named(var, fallback), list(inputs), var, attrs))
        self.producer[var] = len(self.layers) - 1
        self.activations.add(var)
        return self.layers[-1]

    def fusable(self, var, ops) -> FloatLayer | None:
        """The layer of one of ``ops`` whose output ``var`` is, when nothing else uses ``var``."""
        if var in self.producer and self.users.get(var, 0) == 1 and var not in self.alias.values():
            layer = self.layers[self.producer[var]]
            if layer.op in ops and layer.output.same_as(var):
                return layer
        return None

    def extend(self, layer: FloatLayer, var) -> FloatLayer:
        """``layer`` now ends at ``var`` (a bias or clamp fused into it)."""
        if _GENERATED.match(layer.output.name) and layer.name not in self.original and not _GENERATED.match(var.name):
            layer.name = self._named(var, var.name)  # the ONNX name sits on the last binding
        layer.output = var
        self.producer[var] = self.layers.index(layer)
        self.activations.add(var)
        return layer


def _softmax(b: LayerBuilder, var, call, args, acts):
    return b.new("softmax", var, acts, axis=int(call.attrs.axis))


# The float rules, (relax op name, rule), tried in this order on each binding of that op: every op
# module's own (compiler/ops/*.py, in the table's order), then the host's.  A rule makes a layer
# and returns it, or returns None for a binding that is not its.
RULES: list[tuple[str, Callable]] = [rule for spec in ops.SPECS for rule in spec.float_rules] + [
    ("relax.nn.softmax", _softmax),  # softmax(x) -> softmax (left on the host, in float, when last)
]
_RULES_BY_OP: dict[str, list[Callable]] = {}
for _op, _rule in RULES:
    _RULES_BY_OP.setdefault(_op, []).append(_rule)


def float_layers(mod, output_names: list[str] | None = None,
                 onnx_names: dict[str, str] | None = None) -> tuple[list[FloatLayer], list[str]]:
    """The layers of ``mod['main']`` in order, and the names of ops left on the host.

    A layer whose name TVM made up and whose output is a graph output takes the ONNX
    output's name from ``output_names``; others are named by their ONNX node (``onnx_names``)."""
    onnx_names = onnx_names or {}
    func = mod["main"]
    b = LayerBuilder(func, onnx_names)
    host: list[str] = []
    anchors, inner = {}, set()  # several bindings taken whole as one layer (LRN, HardSwish)
    for spec in ops.SPECS:
        if spec.float_chain is not None:
            found, steps = spec.float_chain(b)
            anchors.update({v: (spec.name, x, attrs) for v, (x, attrs) in found.items()})
            inner |= steps
    for block in func.body.blocks:
        for binding in block.bindings:
            var, call = binding.var, binding.value
            if is_var(call):  # `gv = lv`: an alias, e.g. of the graph output
                b.alias[var] = b.alias.get(call, call)
                continue
            if var in inner:  # a step of a chain, taken whole at its last binding
                continue
            if var in anchors:
                op, x, attrs = anchors[var]
                b.new(op, var, [b.alias.get(x, x)], **attrs)
                continue
            op = call_op_name(call)
            if op is None:
                raise ModelError(f"layer {var.name!r}: a {type(call).__name__} binding has no integer form")
            args = [b.alias.get(a, a) if is_var(a) else a for a in call.args]
            acts = [a for a in args if a in b.activations]
            if not any(rule(b, var, call, args, acts) is not None for rule in _RULES_BY_OP.get(op, ())):
                raise ModelError(f"{b.label(var, call)}: nnforge has no integer form for {op.removeprefix('relax.')}")
    layers, original, alias = b.layers, b.original, b.alias
    # a trailing softmax stays on the host, in float
    out_vars = [alias.get(v, v) for v in output_exprs(func)]
    for var, name in zip(out_vars, output_names or []):
        for layer in layers:
            if layer.output.same_as(var) and layer.name.startswith(f"{layer.op}_"):
                layer.name = name
    # names are tensor names in the integer graph: unique, and never an input's name
    inputs = [onnx_names.get(p.name, p.name) for p in func.params]
    for layer, name in zip(layers, unique_names([l.name for l in layers], inputs)):
        layer.onnx_name, layer.name = original.get(layer.name, layer.name), name
    for layer in [l for l in layers if l.op == "softmax"]:
        if any(layer.output.same_as(v) for v in out_vars):
            host.append(layer.name)
            continue
        # opset-9 Softmax imports as reshape -> softmax -> reshape: the trailing reshape stays too
        after = [l for l in layers if any(v.same_as(layer.output) for v in l.inputs)]
        if (len(after) == 1 and after[0].op == "reshape" and layers[-1] is after[0]
                and any(after[0].output.same_as(v) for v in out_vars)):
            host.extend([layer.name, after[0].name])
            continue
        raise ModelError(f"layer {layer.name!r}: softmax is only supported as the model's last op (on the host)")
    return layers, host


def traced_module(mod, layers: list[FloatLayer]):
    """A copy of ``mod`` whose ``main`` returns every layer's output (for calibration and SQNR),
    found by identity, never by name (``relax_utils.returning``: Relax names repeat)."""
    return returning(mod, [(layer.name, layer.output) for layer in layers])


def tensor_names(func, layers: list[FloatLayer], input_names: list[str]) -> dict:
    """Relax var -> the tensor name it holds: a model input's name (``func.params`` in order) or
    its layer's name.  By identity, like ``traced_module``: var names may repeat."""
    names = dict(zip(func.params, input_names))
    names.update({layer.output: layer.name for layer in layers})
    return names
