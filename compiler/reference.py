"""The numpy reference interpreter for quantized graphs: the specification in code.

Obviously right: one function per op, integer arithmetic throughout, with rounding,
saturation and requantization taken from ``numerics``.  Each op's function sits in its module
of the op table (``compiler/ops/``, ``OpSpec.reference``); the helpers they share are in
``compiler/ops/arrays.py``.  ``run`` returns every traced tensor, so other executors are
compared layer by layer.

Two things keep it fast enough for golden vectors of full-size models, neither changes a code:

* **MACs** (``ops.arrays.int_matmul``): conv2d is an im2col matrix product and dense a plain one.
  The product runs in float64 (BLAS) when ``max|x| * max_o sum_k |w_ok| + max|b| < 2^53``: then
  every product and every partial sum, in any order and with or without FMA, is an integer of
  magnitude below 2^53, which float64 holds exactly, so the result is the int64 sum.  Otherwise
  it runs in int64.
* **Fixed batch**: a graph whose inputs have a fixed batch B (an ONNX model exported at batch 1)
  runs B samples at a time; its reshapes name B.  ``run`` cuts more samples into such chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .ops import OPS as _TABLE
from .qgraph import QGraph

# op name -> reference function (node, input codes, output type) -> int64 codes
OPS: dict[str, Callable] = {name: spec.reference for name, spec in _TABLE.items()}


def run(graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Execute ``graph`` on input codes; returns every tensor (inputs and node outputs) by name.

    A graph with a fixed batch B runs B samples at a time (any multiple of B may be given)."""
    codes = [np.asarray(c, dtype=np.int64) for c in codes]
    fixed = graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None
    n = len(codes[0]) if codes and codes[0].ndim else 0
    if isinstance(fixed, (int, np.integer)) and fixed > 0 and n != fixed and n % fixed == 0:
        chunks = [_run(graph, [c[s:s + fixed] for c in codes]) for s in range(0, n, int(fixed))]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return _run(graph, codes)


def _run(graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {t.name: c for t, c in zip(graph.inputs, codes)}
    for node in graph.nodes:
        out_type = graph.tensors[node.output].qtype
        result = OPS[node.op](node, [values[i] for i in node.inputs], out_type)
        values[node.output] = np.asarray(result, dtype=np.int64)
    return values
