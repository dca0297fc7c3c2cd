"""Adapter around TVM's ONNX importer (``tvm.relax.frontend.onnx``).

One of the few modules that import tvm.  It changes two things in the stock importer:

* each ONNX node's result is bound to a Relax variable named after the node, so that layer
  names survive into the Relax module, the inspect table, per-layer reports and,
  sanitised, generated sources;
* Clip and constant Pad become the high-level ``R.clip`` / ``R.nn.pad`` instead of opaque
  ``call_tir`` kernels, and an n-ary Sum a chain of adds (instead of broadcast copies stacked
  and summed), so the quantizer and backends can match them.
"""

from __future__ import annotations

import numpy as np
import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _tvm_onnx

from .onnx_ops import SUPPORTED_OPS
from .relax_utils import const, const_value, is_constant

# Ops whose result is worth a name: real compute on activations.  Constant-producing ops
# are left unbound, because the stock converters look through them for constant values.
_NAMED_OPS = SUPPORTED_OPS - {"Constant", "ConstantOfShape", "Identity", "Dropout"}


class OnnxNames(dict):
    """Relax var name -> ONNX node name, plus ``outputs``: Relax var name -> the ONNX tensor (its
    node's first output) the var holds.  Node names may repeat and TVM renames repeats in its own
    scheme (``conv, conv, conv1`` become ``conv, conv1, conv11``), so only ``outputs``, recorded
    while importing, finds a repeated node's tensor exactly."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.outputs: dict[str, str] = {}


def node_display_name(node: onnx.NodeProto) -> str:
    """The name nnforge uses for an ONNX node: its name, or its first output's name."""
    return node.name or (node.output[0] if node.output else node.op_type)


def _const_scalar(expr) -> float | None:
    if expr is None:
        return None
    if not is_constant(expr):
        raise _NotHighLevel
    return float(const_value(expr).reshape(()))


class _NotHighLevel(Exception):
    pass


def _clip(inputs, attrs, opset):
    """Clip with constant bounds as ``R.clip`` (the stock converter emits opaque call_tir)."""
    try:
        if opset < 11:
            lo, hi = attrs.get("min"), attrs.get("max")
        else:
            lo = _const_scalar(inputs[1] if len(inputs) > 1 else None)
            hi = _const_scalar(inputs[2] if len(inputs) > 2 else None)
    except _NotHighLevel:
        return None
    x = inputs[0]
    dtype = str(x.ty.dtype)
    if lo is not None and hi is not None:
        # ONNX Clip is min(max(x, lo), hi): with lo > hi every output is hi
        return relax.op.clip(x, float(min(lo, hi)), float(hi))
    if lo is not None:
        return relax.op.maximum(x, const(np.asarray(lo, dtype=dtype)))
    if hi is not None:
        return relax.op.minimum(x, const(np.asarray(hi, dtype=dtype)))
    return x


def _pad(inputs, attrs, opset):
    """Constant-mode Pad with constant pads as ``R.nn.pad`` (the stock one emits call_tir)."""
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        return None
    if opset < 11:
        pads, value = attrs.get("pads"), float(attrs.get("value", 0.0))
    else:
        if len(inputs) > 3 and inputs[3] is not None:  # explicit axes: leave to TVM
            return None
        if not is_constant(inputs[1]):
            return None
        pads = const_value(inputs[1]).tolist()
        try:
            value = _const_scalar(inputs[2] if len(inputs) > 2 else None) or 0.0
        except _NotHighLevel:
            return None
    half = len(pads) // 2
    width = [int(v) for pair in zip(pads[:half], pads[half:]) for v in pair]
    if any(v < 0 for v in width):
        return None  # negative pads crop; TVM's converter handles them
    return relax.op.nn.pad(inputs[0], width, pad_value=float(value))


_HIGH_LEVEL = {"Clip": _clip, "Pad": _pad}


class _NamingImporter(_tvm_onnx.ONNXGraphImporter):
    """The stock importer, binding each compute node's result to a var named after it."""

    onnx_names: OnnxNames
    _node_outputs: list[str] = []

    def _parse_value_proto(self, value_proto):
        # called once per node, just before its _convert_operator: remember the node's outputs
        if isinstance(value_proto, onnx.NodeProto):
            self._node_outputs = list(value_proto.output)
        return super()._parse_value_proto(value_proto)

    def _convert_operator(self, op_name, inputs, attrs, opset):
        if op_name == "Sum" and len(inputs) > 1:
            # a chain of broadcasting adds (the stock converter stacks broadcast copies and sums
            # them, which has no integer form); ONNX Sum broadcasts like Add
            xs = [inputs[i] for i in range(len(inputs))]  # onnx_input does not slice like a list
            acc = xs[0]
            for x in xs[1:-1]:
                acc = self.bb.emit(relax.op.add(acc, x))
            sym = self.bb.normalize(relax.op.add(acc, xs[-1]))
        else:
            sym = _HIGH_LEVEL.get(op_name, lambda *_: None)(inputs, attrs, opset)
        if sym is None:
            sym = super()._convert_operator(op_name, inputs, attrs, opset)
        else:
            sym = self.bb.normalize(sym)
        name = attrs.get("tvm_custom", {}).get("name", "")
        if (
            name
            and op_name in _NAMED_OPS
            and isinstance(sym, relax.Call)
            and isinstance(sym.ty, relax.TensorType)
            and any(not is_constant(arg) for arg in sym.args)
        ):
            sym = self.bb.emit(sym, name_hint=name)
            # the builder sanitises names ('.' -> '_'); remember the ONNX spelling
            self.onnx_names[sym.name] = name
            if self._node_outputs:
                self.onnx_names.outputs[sym.name] = self._node_outputs[0]
        return sym


def import_onnx(
    model: onnx.ModelProto, shapes: dict[str, tuple], dtypes: dict[str, str], opset: int
) -> tuple[tvm.IRModule, dict[str, str]]:
    """Import a checked ONNX model into a Relax IRModule with parameters bound as constants.

    Also returns the ONNX node name of every named Relax variable (var name -> ONNX name)."""
    # Give unnamed nodes the name of their first output, so every layer has a name.
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for node in named.graph.node:
        node.name = node_display_name(node)
    importer = _NamingImporter(shapes, dtypes, keep_params_in_input=False, sanitize=True)
    importer.onnx_names = OnnxNames()
    mod = importer.from_onnx(named.graph, opset)
    # the graph inputs too (param -> ONNX input name), so no layer is named like an input
    from .onnx_frontend import graph_inputs

    for param, vi in zip(mod["main"].params, graph_inputs(named)):
        importer.onnx_names.setdefault(param.name, vi.name)
    return mod, importer.onnx_names


def check_tensor_sizes(mod: tvm.IRModule, onnx_names: dict[str, str]) -> None:
    """ModelError (``limits.check_shape``) for the first tensor of ``main`` with more values than
    the cap, before any pass folds or allocates it."""
    from .limits import check_shape
    from .relax_utils import static_shape

    func = mod["main"]
    for block in func.body.blocks:
        for b in block.bindings:
            shape = static_shape(b.var)
            if shape is not None:
                name = onnx_names.get(b.var.name, b.var.name)
                check_shape(f"tensor {name!r}", shape)


def known_converter(op_type: str) -> bool:
    """Whether TVM's ONNX importer has a converter for ``op_type``."""
    return op_type in _tvm_onnx._get_convert_map() or op_type == "Constant"
