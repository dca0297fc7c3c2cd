"""Per-layer summary of a cleaned float module: op, shapes, parameters and MACs.

A layer is one compute binding of ``main``; a constant bias add that directly follows a
conv2d or matmul is part of that layer, as in the ONNX Conv/Gemm it came from.  MACs count
multiply-accumulates of conv2d and matmul only (the usual convention); a symbolic batch
dimension is counted as 1.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from math import prod

from .relax_utils import call_op_name, const_value, is_constant, is_var, output_exprs, static_shape

_ANCHORS = {"relax.nn.conv2d", "relax.matmul"}


@dataclass
class Layer:
    name: str
    op: str
    input_shapes: list[list[int | str]]
    output_shape: list[int | str]
    params: int
    macs: int
    onnx_name: str = ""  # the ONNX node's own name (``name`` has a suffix where it was not unique)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Summary:
    layers: list[Layer] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "total_params": self.total_params,
            "total_macs": self.total_macs,
        }


def _numel(shape) -> int:
    return prod(d if isinstance(d, int) else 1 for d in shape)


def _macs(op: str, call, out_shape) -> int:
    if op == "relax.nn.conv2d":
        w = static_shape(call.args[1])
        return _numel(out_shape) * prod(w[1:])  # [O, I/groups, kh, kw]
    if op == "relax.matmul":
        k = static_shape(call.args[0])[-1]
        return _numel(out_shape) * (k if isinstance(k, int) else 1)
    return 0


def _params(call) -> int:
    return sum(const_value(a).size for a in call.args if is_constant(a) and const_value(a).size > 1)


_GENERATED = re.compile(r"^(lv|gv)\d*$")  # names the BlockBuilder makes up


def summarize(mod, output_names: list[str] | None = None, onnx_names: dict[str, str] | None = None) -> Summary:
    """The layer table of ``mod['main']``; graph outputs are named by ``output_names`` and
    variables by their ONNX node names (``onnx_names``)."""
    from ..quant.layers import binding_names, binding_positions, generated_name, unique_names  # one naming rule with
    # the integer graph's layers (layers.float_layers)

    onnx_names = onnx_names or {}
    func = mod["main"]
    canon = binding_names(func, onnx_names)  # var -> (unique name, ONNX name)
    positions = binding_positions(func)
    original: dict[str, str] = {}

    def _layer_name(var, anchor, outputs: dict) -> str:
        if var in outputs:
            return outputs[var]
        if _GENERATED.match(var.name):
            return generated_name(positions[anchor][1], positions[anchor][0])
        if var in canon:
            original[canon[var][0]] = canon[var][1]
            return canon[var][0]
        return onnx_names.get(var.name, var.name)

    bindings = [b for block in func.body.blocks for b in block.bindings]
    layers: list[Layer] = []
    by_var: dict = {}  # var -> index of the anchor layer it is the output of
    outputs = {v: n for v, n in zip(output_exprs(func), output_names or []) if is_var(v)}
    for binding in bindings:
        value, var = binding.value, binding.var
        op = call_op_name(value)
        if op is None:
            continue
        out_shape = static_shape(var) or []
        # bias add directly after an anchor: extend the anchor's layer
        if (
            op == "relax.add"
            and value.args[0] in by_var
            and is_constant(value.args[1])
        ):
            layer = layers[by_var[value.args[0]]]
            layer.params += const_value(value.args[1]).size
            layer.name = _layer_name(var, value.args[0], outputs)
            continue
        in_shapes = [
            list(static_shape(a) or []) for a in value.args if is_var(a)
        ]
        short = op.removeprefix("relax.").removeprefix("nn.")
        if op == "relax.matmul" and is_constant(value.args[1]):
            short = "dense"
        layer = Layer(
            name=_layer_name(var, var, outputs),
            op=short,
            input_shapes=in_shapes,
            output_shape=list(out_shape),
            params=_params(value),
            macs=_macs(op, value, out_shape),
        )
        if op in _ANCHORS:
            by_var[var] = len(layers)
        layers.append(layer)
    inputs = [onnx_names.get(p.name, p.name) for p in func.params]
    for layer, name in zip(layers, unique_names([l.name for l in layers], inputs)):
        layer.onnx_name, layer.name = original.get(layer.name, layer.name), name
    return Summary(layers)
