"""Editing an ONNX graph in place: ``OnnxGraph`` (nodes, initializers, fresh names, producers and
consumers, dead-node removal and topological order on ``finish``) and the small attribute helpers.
The QDQ, QONNX and QOperator imports and exports all edit graphs through it."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError

__all__ = ["OnnxGraph", "attr", "opset_of", "rename", "set_attr", "toposort"]


class OnnxGraph:
    """A mutable view of an ONNX graph: nodes, initializers, fresh names."""

    def __init__(self, graph: onnx.GraphProto):
        self.g = graph
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.outputs = [o.name for o in graph.output]
        self.inputs = [i.name for i in graph.input if i.name not in self.inits]
        self.used = {n for node in self.nodes for n in (*node.input, *node.output)} | set(self.inits)
        self.used |= {i.name for i in graph.input} | set(self.outputs)
        self.used |= {n.name for n in self.nodes}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        return next((n for n in self.nodes if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if tensor in n.input]

    def redirect(self, tensor: str, new: str) -> None:
        """Every consumer of ``tensor`` reads ``new`` instead."""
        for node in self.consumers(tensor):
            node.input[:] = [new if name == tensor else name for name in node.input]

    def reproduce(self, tensor: str, new: str, missing: str) -> None:
        """``tensor``'s producer writes ``new`` instead (so an inserted node can produce ``tensor``);
        ModelError "tensor 'T'" + ``missing`` when nothing in the graph produces it."""
        node = self.producer(tensor)
        if node is None:
            raise ModelError(f"tensor {tensor!r}{missing}")
        node.output[list(node.output).index(tensor)] = new

    def add_init(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def constant(self, tensor: str) -> np.ndarray | None:
        if tensor in self.inits:
            return numpy_helper.to_array(self.inits[tensor])
        node = self.producer(tensor)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    return np.asarray(helper.get_attribute_value(a))
        return None

    def finish(self) -> None:
        """Drop dead nodes and unused initializers, sort topologically, write back."""
        live: set[str] = set(self.outputs)
        keep = []
        for node in reversed(toposort(self.nodes, set(self.inputs) | set(self.inits), strict=False)):
            if any(o in live for o in node.output):
                keep.append(node)
                live.update(i for i in node.input if i)
        nodes = toposort(list(reversed(keep)), set(self.inputs) | set(self.inits))
        used = {i for n in nodes for i in n.input} | set(self.outputs)
        del self.g.node[:]
        self.g.node.extend(nodes)
        del self.g.initializer[:]
        self.g.initializer.extend(t for name, t in self.inits.items() if name in used)
        kept_inputs = [i for i in self.g.input if i.name not in self.inits or i.name in used]
        del self.g.input[:]
        self.g.input.extend(kept_inputs)
        produced = {o for n in nodes for o in n.output}
        vi = [v for v in self.g.value_info if v.name in produced and v.name not in self.outputs]
        del self.g.value_info[:]
        self.g.value_info.extend(vi)


def toposort(nodes: list[onnx.NodeProto], available: set[str], strict: bool = True) -> list[onnx.NodeProto]:
    """Nodes in an order where each input is produced first; ``strict=False`` appends nodes
    with unproduced inputs (dead ones, dropped later) instead of raising."""
    ready = set(available) | {""}
    out, pending = [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                out.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            if not strict:
                return out + rest
            missing = sorted({i for n in rest for i in n.input if i not in ready})[:5]
            raise ModelError(f"the edited graph has no topological order (unproduced tensors {missing})")
        pending = rest
    return out


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name``; ``default`` when it has none."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value: Any) -> None:
    """Set (or replace) ``node``'s attribute ``name``."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def opset_of(model: onnx.ModelProto) -> int:
    """The model's ai.onnx opset version."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def rename(g: OnnxGraph, old: str, new: str) -> None:
    """Every node of ``g`` reads and writes ``new`` where it read or wrote ``old``."""
    for node in g.nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new
    g.used.add(new)
