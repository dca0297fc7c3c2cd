"""Partition a quantized model for one backend: the BYOC step every backend shares.

``partition(graph, backend)`` lowers the ``QGraph`` to the integer Relax module, keeps ``main``
(TVM 0.27's ``MergeCompositeFunctions`` cannot handle the ``trace`` function next to it), runs
``FuseOpsByPattern`` with the backend's patterns and ``MergeCompositeFunctions``, and maps
every composite call back to the ``QNode`` it implements.

The mapping walks ``main`` in binding order.  The lowering emits each node's chain
contiguously, in graph order, and reports the name of each chain's last binding; every
pattern matches one whole chain.  So each composite call is the next node, and a host binding
named after the current node ends that node on the host.  Anything else (a pattern matching
part of a chain, or a node split between host and kernel) is a bug and raises.
"""

from __future__ import annotations

import tvm
from tvm import relax

from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.qgraph import QGraph

from .base import Backend, Design, HostItem, Kernel
from .naming import identifiers
from .patterns import patterns_for


class PartitionError(RuntimeError):
    """The partitioned module does not map one-to-one onto the graph's nodes (a pattern bug)."""


def _callee(value) -> str | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
        return value.op.name_hint
    return None


def partition(graph: QGraph, backend: Backend) -> Design:
    var_names: dict[str, str] = {}
    mod = lower(graph, var_names)
    main_only = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint == "main"})
    ops = set(backend.ops)
    pats = patterns_for(backend.codegen_name, ops)
    fused = relax.transform.FuseOpsByPattern(pats, bind_constants=True, annotate_codegen=False)(main_only)
    merged = relax.transform.MergeCompositeFunctions()(fused) if pats else fused

    # external function symbol -> its composite names, in call order
    composite_of: dict[str, list[str]] = {}
    for gv, func in merged.functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and "Codegen" in func.attrs:
            inner: list[str] = []
            for block in func.body.blocks:
                for b in block.bindings:
                    if isinstance(b.value, relax.Call) and isinstance(b.value.op, relax.Var):
                        fn = next(x.value for x in block.bindings if x.var.same_as(b.value.op))
                        inner.append(str(fn.attrs["Composite"]))
            composite_of[gv.name_hint] = inner

    idents = identifiers([t.name for t in graph.inputs] + [n.name for n in graph.nodes], prefix="t")
    kernels: list[Kernel] = []
    host: list[HostItem] = []
    nodes = list(graph.nodes)
    i = 0
    for block in merged["main"].body.blocks:
        for b in block.bindings:
            sym = _callee(b.value)
            if sym in composite_of:
                for comp in composite_of[sym]:
                    if i >= len(nodes):
                        raise PartitionError(f"composite {comp} has no node left to implement")
                    node = nodes[i]
                    if comp != f"{backend.codegen_name}.{node.op}":
                        raise PartitionError(f"composite {comp} lines up with node {node.name!r} ({node.op})")
                    kernels.append(Kernel(node, comp, sym, idents[node.name]))
                    i += 1
            elif i < len(nodes) and b.var.name == var_names[nodes[i].name]:
                node = nodes[i]
                reason = (backend.host_reason(node) if node.op not in ops
                          else f"the {node.op} chain of '{node.name}' did not match the {backend.name} pattern")
                host.append(HostItem(node.name, node.op, reason))
                i += 1
    if i != len(nodes):
        raise PartitionError(f"only {i} of {len(nodes)} nodes were mapped (stopped at {nodes[i].name!r})")
    for h in graph.host_ops:
        host.append(HostItem(h.name, h.op, f"float op after the integer outputs: {h.reason}"))
    return Design(backend.name, graph, merged, kernels, host, idents)
