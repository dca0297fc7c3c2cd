"""Partition a quantized model for one backend: the BYOC step every backend shares, and the one
module of ``backends/`` that imports tvm (TVM's API moves between releases).

**Patterns.**  Each QGraph op's pattern sits in its module of the op table (``compiler/ops/``,
``OpSpec.pattern``), next to the lowering it matches; it is written against ``PatternBuilder``
(here), which holds the ``tvm.relax.dpl`` calls and the parts every requantizing chain shares.
A backend declares which QGraph ops it takes (``Backend.ops``); ``patterns_for`` turns those
into ``FusionPattern`` objects named ``<backend>.<op>`` (the prefix before the dot becomes the
codegen name after ``MergeCompositeFunctions``).  Each pattern matches exactly one node's
whole chain, e.g. for conv2d::

    astype -> conv2d -> add(bias) -> [astype(int64)] -> multiply(M) -> [left_shift]
        -> [add(half)] -> [right_shift] -> saturate -> astype(storage)

where saturate is ``maximum -> minimum`` (SAT) or the WRAP form ``[add] -> bitwise_and ->
[subtract]`` with an optional clamp.  ``tests/test_op_table.py`` checks each op's pattern against
its own lowering; ``tests/test_partition.py`` and ``tests/test_backend_api.py`` that every op of
every example model is matched whole.  (``backends/patterns.py`` re-exports these names.)

**Partition.**  ``partition(graph, backend)`` lowers the ``QGraph`` to the integer Relax module, keeps ``main``
(TVM 0.27's ``MergeCompositeFunctions`` cannot handle the ``trace`` function next to it), runs
``FuseOpsByPattern`` with the backend's patterns and ``MergeCompositeFunctions``, and maps
every composite call back to the ``QNode`` it implements.

The mapping walks ``main`` in binding order.  The lowering emits each node's chain
contiguously, in graph order, and reports the name of each chain's last binding; every
pattern matches one whole chain.  So each composite call is the next node, and a host binding
named after the current node ends that node on the host.  Anything else (a pattern matching
part of a chain, or a node split between host and kernel) is a bug and raises.

**BYOC runtime** (what ``backends/byoc.py`` builds on): ``register_global`` (a Python function as a
TVM global: ``relax.ext.<codegen>`` for ``RunCodegen``, or a composite's symbol to simulate it),
``c_source_module`` / ``json_source_module`` (the runtime modules a codegen returns) and
``run_codegen_pass``.  TVM 0.27 facts: ``RunCodegen`` calls ``relax.ext.<codegen>(funcs, options,
const_names)``, which returns one runtime module per function; globals are registered with
``tvm_ffi.register_global_func(name, f, override=True)``.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard

from nnforge.compiler.lower.lower_relax import lower
from nnforge.compiler.ops import OPS, SPECS
from nnforge.compiler.qgraph import QGraph

from .base import Backend, Design, HostItem, Kernel
from .naming import identifiers

QGRAPH_OPS = frozenset(OPS)


# -- patterns ----------------------------------------------------------------------------------------

class PatternBuilder:
    """What an op's ``pattern(p)`` builds with: the dpl primitives and the shared chain parts."""

    is_op = staticmethod(is_op)
    is_const = staticmethod(is_const)
    wildcard = staticmethod(wildcard)

    @staticmethod
    def optional(op: str, inner: DFPattern) -> DFPattern:
        """``op(inner, const)`` or ``inner`` itself."""
        return is_op(op)(inner, is_const()) | inner

    @staticmethod
    def clamp(inner: DFPattern) -> DFPattern:
        """``minimum(maximum(inner, const), const)``."""
        return is_op("relax.minimum")(is_op("relax.maximum")(inner, is_const()), is_const())

    @classmethod
    def round_shift(cls, v: DFPattern) -> DFPattern:
        """``Lowerer.round_shift``: [left_shift] -> [add(half)] -> [right_shift]."""
        v = cls.optional("relax.left_shift", v)  # negative shifts
        v = cls.optional("relax.add", v)  # RND: + 2^(n-1)
        return cls.optional("relax.right_shift", v)  # n > 0

    @classmethod
    def saturate(cls, v: DFPattern) -> DFPattern:
        """``Lowerer.saturate``: SAT clamp, or WRAP (signed / unsigned) with an optional clamp; then the cast."""
        wrap_signed = is_op("relax.subtract")(
            is_op("relax.bitwise_and")(is_op("relax.add")(v, is_const()), is_const()), is_const())
        wrap = wrap_signed | is_op("relax.bitwise_and")(v, is_const())
        return is_op("relax.astype")(cls.clamp(v) | cls.clamp(wrap) | wrap)

    @classmethod
    def requant_tail(cls, acc: DFPattern) -> DFPattern:
        """``Lowerer.requant``: every variant it emits, nothing else."""
        v = is_op("relax.astype")(acc) | acc  # an int64 accumulator is not cast again
        return cls.saturate(cls.round_shift(is_op("relax.multiply")(v, is_const())))


def pattern(op: str) -> DFPattern:
    """The pattern of one QGraph op's chain."""
    return OPS[op].pattern(PatternBuilder)


def patterns_for(codegen: str, ops) -> list[relax.transform.FusionPattern]:
    """``FusionPattern`` objects named ``<codegen>.<op>`` for ``ops``, most specific first."""
    unknown = set(ops) - QGRAPH_OPS
    if unknown:
        raise ValueError(f"no pattern for QGraph op(s) {sorted(unknown)}; known: {sorted(QGRAPH_OPS)}")
    return [relax.transform.FusionPattern(f"{codegen}.{s.name}", s.pattern(PatternBuilder)) for s in SPECS
            if s.name in ops]


# -- partition ---------------------------------------------------------------------------------------

class PartitionError(RuntimeError):
    """The partitioned module does not map one-to-one onto the graph's nodes (a pattern bug)."""


def _callee(value) -> str | None:
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar):
        return value.op.name_hint
    return None


def partition(graph: QGraph, backend: Backend) -> Design:
    """The Design of ``graph`` for ``backend``: its kernels (composite calls, one per node it takes)
    and its host items (every other node, with the reason)."""
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


# -- BYOC runtime ------------------------------------------------------------------------------------

def register_global(name: str, fn) -> None:
    """Register the Python function ``fn`` as TVM global ``name``, replacing an earlier one."""
    tvm_ffi.register_global_func(name, fn, override=True)


def c_source_module(source: str, symbol: str):
    """A runtime module of C/C++ ``source`` that defines the function ``symbol`` (``CSourceModuleCreate``)."""
    return tvm_ffi.get_global_func("runtime.CSourceModuleCreate")(source, "cc", [symbol], [])


def json_source_module(text: str):
    """A runtime module holding ``text`` as a JSON source (``SourceModuleCreate``)."""
    return tvm_ffi.get_global_func("runtime.SourceModuleCreate")(text, "json")


def run_codegen_pass(mod: tvm.IRModule) -> tvm.IRModule:
    """``relax.transform.RunCodegen()``: each external function to its ``relax.ext.<codegen>`` runtime module."""
    return relax.transform.RunCodegen()(mod)
