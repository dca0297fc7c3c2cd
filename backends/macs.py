"""Multiply-accumulates per layer, as every backend counts them for report.json.

The convention of ``nnforge inspect`` (``compiler/frontend/summary.py``): conv2d and dense only, per
sample; pruned weights count (the model's MACs, not the hardware's skipped ones), so that a
backend's utilization ``macs / (cycles * multipliers)`` compares like with like.
"""

from __future__ import annotations

import numpy as np

from nnforge.compiler.qgraph import QGraph, QNode

from .golden import sample_shape


def layer_macs(graph: QGraph, node: QNode) -> int:
    """MACs of one sample through ``node``: output elements x weights per output; 0 for ops
    without weights (pools, add, lookups, data movement)."""
    if node.op not in ("conv2d", "dense"):
        return 0
    w = np.shape(node.attrs.weight)
    out = int(np.prod(sample_shape(graph, node.output), dtype=np.int64))
    per_output = int(np.prod(w[1:], dtype=np.int64)) if node.op == "conv2d" else int(w[0])  # [O, I/g, kh, kw] | [K, N]
    return out * per_output


__all__ = ["layer_macs"]
