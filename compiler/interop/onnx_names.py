"""nnforge tensor names (a model input, a layer name) <-> the ONNX tensors that hold them, for
the exports (which tensor carries a scale) and the imports (whose scale a layer takes)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..errors import ModelError

__all__ = ["onnx_tensor_names", "var_key"]


def var_key(name: str) -> str:
    """The Relax variable name TVM gives an ONNX node's result (it replaces '.' by '_')."""
    return name.replace(".", "_")


def onnx_tensor_names(model: Any, layers: list) -> dict[str, str]:
    """nnforge tensor name (a model input or a layer name) -> the ONNX tensor holding it.

    ``layers`` are the model's float layers as the quantizer named them (``qmodel.layers``).

    A layer's output is a Relax variable the importer named after an ONNX node (its name, or
    its first output's name; TVM writes '.' as '_' and counts repeated names); that node's
    first output is the ONNX tensor.  ``model.onnx_names`` (Relax name -> ONNX node name),
    where the model has it, is used first.  A layer whose output is the function's result
    maps to the graph output at the same position.
    """
    from ..frontend.relax_import import node_display_name
    from ..frontend.relax_utils import output_exprs

    by_key: dict[str, str] = {}
    by_display: dict[str, list[str]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for node in model.onnx.graph.node:
        if not node.output:
            continue
        display = node_display_name(node)
        by_display[display].append(node.output[0])
        key = var_key(display)
        n = seen[key]
        seen[key] += 1
        by_key[key if n == 0 else f"{key}{n}"] = node.output[0]
    known = getattr(model, "onnx_names", None) or {}
    results = output_exprs(model.relax["main"])
    names = {s.name: s.name for s in model.inputs}
    outputs = getattr(known, "outputs", {})  # recorded by the importer: exact for repeated names
    for layer in layers:
        var = layer.output
        if var.name in outputs:
            names[layer.name] = outputs[var.name]
            continue
        if len(by_display.get(known.get(var.name, ""), ())) == 1:
            names[layer.name] = by_display[known[var.name]][0]
            continue
        if var.name in by_key:
            names[layer.name] = by_key[var.name]
            continue
        index = next((i for i, r in enumerate(results) if r.same_as(var)), None)
        if index is not None:
            names[layer.name] = model.output_names[index]
            continue
        raise ModelError(f"layer {layer.name!r}: its output (Relax variable {var.name!r}) matches no "
                         "ONNX node name or graph output, so it has no ONNX tensor to carry its scale")
    return names
