"""The backend API: what every nnforge backend implements, and what the core hands it.

A backend is a small class::

    class MyBackend(Backend):
        name = "mine"
        description = "one line for `nnforge backends`"
        ops = {"dense", "conv2d", "reshape"}          # the QGraph ops it takes
        options = {"lanes": Option(8, "MACs per cycle", minimum=1)}

        def codegen(self, design, options) -> dict[str, str | bytes]: ...   # required: the sources
        def simulate(self, project, inputs, trace=True) -> Simulation: ...   # optional

``nnforge.compile.compile_model`` calls, in this order: the generic option parse (``Option``:
types, unknown keys, choices, ranges) -> ``check_options`` -> partition -> ``check_design`` ->
``codegen`` -> ``estimate`` -> ``layer_info`` -> golden vectors -> ``project_files`` -> one
atomic write.  ``nnforge.verify`` and ``Project.predict/run_codes/trace`` call ``simulate`` on
the written project and compare its tensors with the numpy reference.

The core does everything else: it lowers the quantized model to the integer Relax module,
partitions it with the patterns of ``ops`` (``backends/partition.py``) through
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

from nnforge.compiler.errors import InputError
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


@dataclass(frozen=True)
class Option:
    """One backend option, as ``nnforge backends`` lists it and ``--option KEY=VALUE`` sets it.

    The type of ``default`` is the option's type: a string from the command line is converted
    to it (``bool``: 0/1/true/false; ``int``; ``float``, finite only).  ``choices`` lists the
    allowed values; ``minimum``/``maximum`` bound a number, inclusive.  ``per_layer`` allows,
    from Python, ``{layer name: value, "default": value}`` as well (each value checked alike;
    the backend checks that the names are layers, in ``check_design``).
    """

    default: Any
    help: str
    choices: tuple | None = None  # allowed values
    minimum: float | None = None  # numeric range, inclusive
    maximum: float | None = None
    per_layer: bool = False
    keywords: tuple[str, ...] = ()  # words accepted besides values of the type (hls reuse_factor: "auto")


@dataclass
class Simulation:
    """What ``Backend.simulate`` returns for a batch of input codes.

    ``tensors``: tensor name -> codes ``[n, *sample_shape]`` for every node output the hardware
    exposes, at least the graph outputs (names as in ``design.graph``, like ``reference.run``).
    ``layers``: node name -> measured figures, e.g. ``{"measured_cycles": 1234, "utilization":
    0.41}`` (per sample, identical for every sample); ``nnforge verify`` reports them.
    """

    tensors: dict[str, np.ndarray]
    layers: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Backend(abc.ABC):
    """The abstract surface of a backend (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    ops: ClassVar[frozenset[str] | set[str]] = frozenset()
    # option name -> Option (or, from older third-party backends, a plain default value);
    # unknown options are errors
    options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def option_specs(cls) -> dict[str, Option]:
        """``options`` with every plain default value wrapped in an ``Option``."""
        return {k: v if isinstance(v, Option) else Option(v, "") for k, v in (cls.options or {}).items()}

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Option name -> default value."""
        return {k: spec.default for k, spec in cls.option_specs().items()}

    @property
    def codegen_name(self) -> str:
        """The BYOC codegen name (``Codegen`` attribute, prefix of the composite names)."""
        return "nnforge_" + re.sub(r"\W", "_", self.name)

    def host_reason(self, node: QNode) -> str:
        """Why ``node`` stays on the host; override to be more specific."""
        return f"the {self.name} backend has no kernel for '{node.op}'"

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Cross-field checks after the generic parse (which did types, unknown keys, choices and
        ranges); the options to use.  Raise ``InputError`` naming the option."""
        return options

    def check_design(self, design: Design, options: dict[str, Any]) -> None:
        """Checks that need the partitioned model (capacity, per-layer option names); raise
        ``InputError`` naming the layer."""

    @abc.abstractmethod
    def codegen(self, design: Design, options: dict[str, Any]) -> dict[str, str | bytes]:
        """The generated sources: relative path -> file content.  Must be deterministic."""

    def estimate(self, design: Design, options: dict[str, Any]) -> list[LayerEstimate]:
        """Per-kernel cost estimates (empty when the backend has no model)."""
        return []

    def layer_info(self, design: Design, options: dict[str, Any]) -> list[dict[str, Any]]:
        """Per kernel, for report.json's kernel rows: ``name``, ``op``, ``storage``,
        ``weight_bytes``, ``macs``, and backend extras (e.g. ``predicted_cycles``)."""
        return []

    def project_files(self, design: Design, options: dict[str, Any], sources: dict[str, str | bytes],
                      golden: Any, report: dict) -> dict[str, str | bytes]:
        """Files around the sources: testbench, tool scripts, Makefile, README, report.md.

        ``sources`` is everything written so far (codegen's files and the golden vectors),
        ``golden`` the ``backends.golden.Golden`` vectors, ``report`` the report.json content."""
        return {}

    def simulate(self, project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        """Run the written project on input codes (one array ``[n, *shape]`` per graph input).

        With ``trace``, every node output the hardware exposes; without, at least the graph
        outputs.  A missing simulator (tool not installed) is an ``InputError`` that says so."""
        raise InputError(f"the {self.name} backend cannot simulate a project: it does not implement "
                         f"Backend.simulate")
