"""Fold an ONNX graph's constant subgraphs before import (``fold_constant_nodes``).

Exporters leave constant subgraphs behind (pads computed with Slice/Transpose/Cast, weights made
by ConstantOfShape).  TVM's importer needs some of those values as literals, so they are
evaluated here with ONNX's own reference evaluator, each output's size checked first
(``limits.check_shape``), since a tiny file must not make folding allocate unbounded memory.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .limits import check_shape
from .onnx_frontend import model_opset

_MAX_FOLD_ELEMENTS = 1 << 16  # larger constants fold in Relax (fold_constants)


# ops whose output size depends on their input values, not only on the input shapes
_VALUE_SIZED = {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot", "Gather",
                "Col2Im", "CenterCropPad"}


def _output_shapes(node: onnx.NodeProto, values: dict[str, np.ndarray], opset) -> list[tuple | None]:
    """The shapes ONNX shape inference gives ``node``'s outputs for these constant inputs (None
    where it cannot tell); small inputs are given as values, so shape arguments are known."""
    ins = [i for i in dict.fromkeys(node.input) if i]
    inits, infos = [], []
    for name in ins:
        v = values[name]
        if v.size <= 4096:
            inits.append(numpy_helper.from_array(np.asarray(v), name))
        infos.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)))
    outs = [o for o in node.output if o]
    try:
        single = onnx.helper.make_model(
            onnx.helper.make_graph([node], "size", infos, [onnx.helper.make_empty_tensor_value_info(o) for o in outs],
                                   inits), opset_imports=opset)
        inferred = onnx.shape_inference.infer_shapes(single, data_prop=True)
    except Exception:  # noqa: BLE001 - inference of a hostile node may fail any way: size unknown
        return [None] * len(outs)
    found = {vi.name: vi for vi in list(inferred.graph.output) + list(inferred.graph.value_info)}
    shapes: list[tuple | None] = []
    for o in outs:
        vi = found.get(o)
        tt = vi.type.tensor_type if vi is not None and vi.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape") or not all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes.append(None)
        else:
            shapes.append(tuple(int(d.dim_value) for d in tt.shape.dim))
    return shapes


def fold_constant_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate nodes whose inputs are all constants and store their outputs as initializers.

    Exporters leave constant subgraphs behind (pads computed with Slice/Transpose/Cast,
    weights made by ConstantOfShape).  TVM's importer needs some of those values as literals
    (``Pad`` rejects "dynamic" pads), so they are folded here, before import, with ONNX's own
    reference evaluator.  Nodes that read a graph input (or its ``Shape``) are kept.
    """
    from onnx.reference import ReferenceEvaluator

    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    values: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    initializer_names = set(values)
    keep = []
    opset = [onnx.helper.make_opsetid("", model_opset(model))]
    for node in graph.node:
        ins = [i for i in node.input if i]
        # Only small constant graphs are worth folding here; big ones (ConstantOfShape weights
        # of the light models) fold in Relax, where they are not round-tripped through protobuf.
        foldable = (
            node.domain in ("", "ai.onnx")
            and (bool(ins) or node.op_type == "Constant")
            and all(i in values for i in ins)
        )
        if foldable:
            # the output's size before computing it: a tiny file must not make folding allocate
            # unbounded memory (ConstantOfShape([1e5, 1e5]) is 37 GiB)
            sizes = _output_shapes(node, values, opset)
            for out_name, shape in zip([o for o in node.output if o], sizes):
                if shape is not None:
                    check_shape(f"constant {out_name!r} ({node.op_type} node "
                                f"{node.name or out_name!r})", shape)
                elif node.op_type in _VALUE_SIZED:
                    foldable = False  # unknown size: leave it to the import, whose shapes are checked
        if foldable and node.op_type == "ConstantOfShape":
            foldable = int(np.prod(values[ins[0]])) <= _MAX_FOLD_ELEMENTS
        if not foldable:
            keep.append(node)
            continue
        try:
            single = onnx.helper.make_model(
                onnx.helper.make_graph(
                    [node], "fold",
                    [onnx.helper.make_tensor_value_info(i, onnx.helper.np_dtype_to_tensor_dtype(values[i].dtype), values[i].shape) for i in dict.fromkeys(ins)],
                    [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o],
                ),
                opset_imports=opset,
            )
            outs = ReferenceEvaluator(single).run(None, {i: values[i] for i in ins})
        except Exception:  # noqa: BLE001 - leave anything the evaluator can't do to TVM
            keep.append(node)
            continue
        for name, value in zip([o for o in node.output if o], outs):
            values[name] = np.asarray(value)
    produced = {o for n in keep for o in n.output} | {i.name for i in graph.input}
    used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    new_inits = [
        numpy_helper.from_array(values[name], name)
        for name in values
        if name in used and name not in initializer_names and name not in produced
    ]
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    return folded
