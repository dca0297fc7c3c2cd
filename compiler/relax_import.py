"""Adapter around TVM's ONNX importer (``tvm.relax.frontend.onnx``).

One of the few modules that import tvm.  It adds one thing to the stock importer: each
ONNX node's result is bound to a Relax variable named after the node, so that layer names
survive into the Relax module, the inspect table, per-layer reports and, sanitised,
generated sources.
"""

from __future__ import annotations

import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _tvm_onnx

from .ops import SUPPORTED_OPS
from .relax_utils import is_constant

# Ops whose result is worth a name: real compute on activations.  Constant-producing ops
# are left unbound, because the stock converters look through them for constant values.
_NAMED_OPS = SUPPORTED_OPS - {"Constant", "ConstantOfShape", "Identity", "Dropout"}


def node_display_name(node: onnx.NodeProto) -> str:
    """The name nnforge uses for an ONNX node: its name, or its first output's name."""
    return node.name or (node.output[0] if node.output else node.op_type)


class _NamingImporter(_tvm_onnx.ONNXGraphImporter):
    """The stock importer, binding each compute node's result to a var named after it."""

    def _convert_operator(self, op_name, inputs, attrs, opset):
        sym = super()._convert_operator(op_name, inputs, attrs, opset)
        name = attrs.get("tvm_custom", {}).get("name", "")
        if (
            name
            and op_name in _NAMED_OPS
            and isinstance(sym, relax.Call)
            and isinstance(sym.ty, relax.TensorType)
            and any(not is_constant(arg) for arg in sym.args)
        ):
            sym = self.bb.emit(sym, name_hint=name)
        return sym


def import_onnx(
    model: onnx.ModelProto, shapes: dict[str, tuple], dtypes: dict[str, str], opset: int
) -> tvm.IRModule:
    """Import a checked ONNX model into a Relax IRModule with parameters bound as constants."""
    # Give unnamed nodes the name of their first output, so every layer has a name.
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for node in named.graph.node:
        node.name = node_display_name(node)
    importer = _NamingImporter(shapes, dtypes, keep_params_in_input=False, sanitize=True)
    return importer.from_onnx(named.graph, opset)


def known_converter(op_type: str) -> bool:
    """Whether TVM's ONNX importer has a converter for ``op_type``."""
    return op_type in _tvm_onnx._get_convert_map() or op_type == "Constant"
