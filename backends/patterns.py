"""The Relax patterns of the QGraph ops' integer chains: ``PatternBuilder``, ``pattern``,
``patterns_for`` and ``QGRAPH_OPS`` live in ``backends/partition.py``, the one backends module that
imports tvm; these names stay importable from here.  Each op's own pattern is in its op-table
module (``compiler/ops/<op>.py``, ``OpSpec.pattern``)."""

from __future__ import annotations

from .partition import QGRAPH_OPS, PatternBuilder, pattern, patterns_for

__all__ = ["QGRAPH_OPS", "PatternBuilder", "pattern", "patterns_for"]
