"""The backend API: what every nnforge backend implements, and what the core hands it.

A backend is a small class::

    class MyBackend(Backend):
        name = "mine"
        description = "one line for `nnforge backends`"
        ops = {"dense", "conv2d", "reshape"}          # the QGraph ops it takes

        def codegen(self, design, options) -> dict[str, str | bytes]: ...   # the project files
        def simulate(self, project, inputs) -> dict[str, np.ndarray]: ...  # optional
        def estimate(self, design, options) -> list[LayerEstimate]: ...    # optional

The core does everything else: it lowers the quantized model to the integer Relax module,
partitions it with the patterns of ``ops`` (``backends/patterns.py``) through
``FuseOpsByPattern`` + ``MergeCompositeFunctions``, hands the backend a ``Design`` (each
offloaded layer as a ``Kernel`` with its ``QNode``, whose attrs hold every number), writes the
returned files atomically, and compares simulation results against the numpy reference.
Python computes every number; a backend only lays them out.

Register a backend with ``nnforge.backends.register_backend(MyBackend)`` or, from another
package, an entry point in the group ``nnforge.backends`` (see docs/backends.md).
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nnforge.compiler.qgraph import QGraph, QNode


@dataclass
class Kernel:
    """One offloaded layer: a composite function the backend implements."""

    node: QNode  # the layer; attrs hold weights, multipliers, shifts, clamps, ...
    pattern: str  # the composite's name, "<codegen>.<op>"
    symbol: str  # global symbol of the external function that holds it
    ident: str  # a C/Verilog-safe, collision-free identifier derived from the node name

    @property
    def op(self) -> str:
        return self.node.op


@dataclass
class HostItem:
    """A layer that stays on the host (TVM llvm), with the reason."""

    name: str
    op: str
    reason: str


@dataclass
class Design:
    """A quantized model partitioned for one backend."""

    backend: str
    graph: QGraph
    module: Any  # tvm.IRModule: ``main`` partitioned, external functions annotated with the codegen
    kernels: list[Kernel]  # in execution order
    host: list[HostItem]  # host layers inside the integer graph, and float host ops after it
    idents: dict[str, str] = field(default_factory=dict)  # tensor name -> identifier

    def kernel(self, name: str) -> Kernel:
        return next(k for k in self.kernels if k.node.name == name)


@dataclass
class LayerEstimate:
    """Analytic cost of one kernel.  ``None`` means the backend does not model that resource."""

    name: str
    op: str
    latency_cycles: int
    ii: int  # initiation interval, cycles between successive inputs
    dsp: int | None = None
    bram18: int | None = None
    lut: int | None = None
    ff: int | None = None
    notes: str = ""


class Backend(abc.ABC):
    """The abstract surface of a backend (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    ops: ClassVar[frozenset[str] | set[str]] = frozenset()
    options: ClassVar[dict[str, Any]] = {}  # option name -> default; unknown options are errors

    @property
    def codegen_name(self) -> str:
        """The BYOC codegen name (``Codegen`` attribute, prefix of the composite names)."""
        return "nnforge_" + re.sub(r"\W", "_", self.name)

    def host_reason(self, node: QNode) -> str:
        """Why ``node`` stays on the host; override to be more specific."""
        return f"the {self.name} backend has no kernel for '{node.op}'"

    @abc.abstractmethod
    def codegen(self, design: Design, options: dict[str, Any]) -> dict[str, str | bytes]:
        """The generated project: relative path -> file content.  Must be deterministic."""

    def simulate(self, project: Path, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Run the generated project on input codes; every compared tensor by name."""
        raise NotImplementedError(f"the {self.name} backend cannot simulate")

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        """Per-kernel cost estimates (empty when the backend has no model)."""
        return []
