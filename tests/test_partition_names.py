"""``partition`` maps host bindings to nodes by Relax variable name: a guard that this stays exact.

Names are safe there because ``lower`` emits every binding of ``main`` through one BlockBuilder,
which makes names unique (a second ``lv3`` becomes ``lv31``; ``a.b`` and ``a_b`` become ``a_b``
and ``a_b1``), and ``partition`` reads each node's final name back from it (``var_names``).
Node names that look like TVM's generated ones, or that collide after Relax rewrites them, must
still map one to one, on a backend that leaves most nodes on the host (where the names decide).
"""

from __future__ import annotations

import copy

import pytest

from nnforge.backends.hls import HLSBackend
from nnforge.backends.partition import partition
from nnforge.compiler.qgraph import QGraph, QTensor
from test_partition import build_graph


class _ConvOnly(HLSBackend):
    name = "conv_only"
    ops = frozenset({"conv2d"})


class _Nothing(HLSBackend):
    name = "nothing"
    ops = frozenset()


def _renamed(graph: QGraph, names: list[str]) -> QGraph:
    g = copy.deepcopy(graph)
    new = dict(zip([n.name for n in g.nodes], names))
    for n in g.nodes:
        n.inputs = [new.get(i, i) for i in n.inputs]
        n.name = n.output = new[n.name]
    g.tensors = {new.get(k, k): QTensor(new.get(k, k), t.shape, t.qtype, t.scale) for k, t in g.tensors.items()}
    g.outputs = [new.get(o, o) for o in g.outputs]
    return g


NAMES = {
    "generated": lambda k: ["lv"] + [f"lv{i}" for i in range(1, k)],
    "generated-shifted": lambda k: [f"lv{i + 3}" for i in range(k)],
    "generated-descending": lambda k: [f"lv{40 - 3 * i}" for i in range(k)],
    "gv": lambda k: ["gv"] + [f"gv{i}" for i in range(1, k)],
    "sanitized-collisions": lambda k: [f"a.{i}" if i % 2 else f"a_{i - 1}" for i in range(k)],
}


@pytest.mark.parametrize("backend", [_ConvOnly(), _Nothing()], ids=lambda b: b.name)
@pytest.mark.parametrize("style", sorted(NAMES))
def test_host_nodes_map_one_to_one_whatever_their_names(backend, style):
    base = build_graph()
    g = _renamed(base, NAMES[style](len(base.nodes)))
    design = partition(g, backend)
    placed = [(k.node.name, "kernel") for k in design.kernels] + [(h.name, "host") for h in design.host]
    assert sorted(placed) == sorted((n.name, "kernel" if n.op in backend.ops else "host") for n in g.nodes)
    # kernels in graph order, each the node its composite implements
    assert [k.node.name for k in design.kernels] == [n.name for n in g.nodes if n.op in backend.ops]
    assert all(k.pattern == f"{backend.codegen_name}.{k.node.op}" for k in design.kernels)
