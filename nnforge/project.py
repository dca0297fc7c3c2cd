"""A compiled project reopened: its report, the quantized model behind it, and its backend's
simulation (``Project.simulate``/``run_codes``/``trace``/``predict``, ``golden_codes``).

The golden-vector format (one line of integer codes per sample) is ``backends/golden.py``'s."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnforge.backends.base import Simulation
from nnforge.backends.golden import INPUTS_FILE, OUTPUTS_FILE, read_codes, sample_shape, split_codes
from nnforge.backends.registry import BackendError
from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph

MODEL_DIR = "model"  # the quantized model a project embeds, so that verify can rebuild the reference


def _takes_trace(simulate) -> bool:
    """Whether a backend's ``simulate`` has the ``trace`` parameter (older ones do not)."""
    return _takes_trace_of(getattr(simulate, "__func__", simulate))


@functools.lru_cache(maxsize=64)  # once per backend class: predict calls it per batch
def _takes_trace_of(simulate) -> bool:
    try:
        params = inspect.signature(simulate).parameters
    except (TypeError, ValueError):
        return True
    return "trace" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class Project:
    """A compiled project directory: its report, the quantized model behind it, and its backend.

    ``run_codes``, ``trace`` and ``predict`` run the project through ``Backend.simulate`` of
    the backend named in report.json (``hls``: the generated C under g++)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "report.json").is_file():
            raise InputError(f"{str(self.path)!r} must be a project directory written by `nnforge compile` "
                             f"(it has no report.json)")
        self.report: dict = _read_report(self.path / "report.json")
        self._qmodel = None
        self._backend = None

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, backend={self.report.get('backend')!r})"

    @property
    def backend_name(self) -> str:
        return self.report["backend"]

    @property
    def backend(self):
        """The backend that wrote the project (one instance per Project: it may cache builds)."""
        if self._backend is None:
            from nnforge.backends import get_backend

            self._backend = get_backend(self.backend_name)
        return self._backend

    @property
    def qmodel(self):
        """The quantized model the project was compiled from (``model/``)."""
        if self._qmodel is None:
            from nnforge.quantized import load_quantized

            self._qmodel = load_quantized(self.path / MODEL_DIR)  # InputError naming a bad file
        return self._qmodel

    @property
    def graph(self) -> QGraph:
        return self.qmodel.graph

    def _inputs(self, codes) -> list[np.ndarray]:
        arrays = list(codes) if isinstance(codes, (list, tuple)) else [codes]
        want = len(self.graph.inputs)
        if len(arrays) != want:
            raise InputError(f"the model takes {want} input array(s), not {len(arrays)}")
        arrays = [np.ascontiguousarray(a, dtype=np.int64) for a in arrays]
        for a, t in zip(arrays, self.graph.inputs):
            shape = sample_shape(self.graph, t.name)
            if a.ndim < 1 or a.shape[1:] != shape or len(a) != len(arrays[0]):
                raise InputError(f"input codes for {t.name!r} must be [n, {', '.join(map(str, shape))}] "
                                 f"(n alike for every input), not {list(a.shape)}")
        return arrays

    def simulate(self, codes, trace: bool = True, ap_types: str | Path | bool | None = None) -> Simulation:
        """The backend's simulation of input codes (one ``[n, *shape]`` array, or one per input),
        each known tensor as ``[n, *shape]``; ``trace=False`` asks for the graph outputs only.
        ``ap_types`` (hls): build against Xilinx's ap_int headers (``True``: hls4ml's; or a folder)."""
        inputs = self._inputs(codes)
        be = self.backend
        extra = {}
        if ap_types is not None:
            if "ap_types" not in inspect.signature(be.simulate).parameters:
                raise InputError(f"--ap-types must be used with a backend whose C simulation takes the ap_types "
                                 f"headers (hls), not {self.backend_name}")
            extra["ap_types"] = ap_types
        result = (be.simulate(self.path, inputs, trace=trace, **extra) if _takes_trace(be.simulate)
                  else be.simulate(self.path, inputs))
        if isinstance(result, Mapping) and not isinstance(result, Simulation):  # older backends: tensors only
            result = Simulation(dict(result))
        if not isinstance(result, Simulation):
            raise BackendError(f"the {self.backend_name} backend's simulate must return a Simulation, "
                               f"not {type(result).__name__}")
        n = len(inputs[0])
        tensors = {}
        for name, arr in result.tensors.items():
            arr = np.asarray(arr)
            if name in self.graph.tensors:
                shape = (n,) + sample_shape(self.graph, name)
                if arr.size != int(np.prod(shape, dtype=np.int64)):
                    raise BackendError(f"the {self.backend_name} backend's simulate must return tensor {name!r} "
                                       f"as {list(shape)} codes, not shape {list(arr.shape)}")
                arr = arr.reshape(shape)
            tensors[name] = arr
        missing = [o for o in self.graph.outputs if o not in tensors]
        if missing:
            raise BackendError(f"the {self.backend_name} backend's simulate must return the graph outputs, "
                               f"not without {', '.join(map(repr, missing))}")
        return Simulation(tensors, dict(result.layers), list(result.notes))

    def run_codes(self, codes) -> np.ndarray:
        """Output codes (the first graph output) for input codes ``[n, *input_shape]``."""
        return self.simulate(codes, trace=False).tensors[self.graph.outputs[0]]

    def trace(self, codes) -> dict[str, np.ndarray]:
        """Every node output the hardware exposes, by tensor name, ``[n, *shape]``."""
        return self.simulate(codes, trace=True).tensors

    def predict(self, arrays, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Float outputs through the hardware: quantize inputs, run, dequantize (+ host softmax)."""
        from nnforge.compiler.quant.calibrate import fixed_batch
        from nnforge.quantized import host_outputs

        qmodel = self.qmodel
        if isinstance(arrays, np.ndarray):
            arrays = [arrays]
        arrays = [np.asarray(a) for a in arrays]
        n = len(arrays[0])
        # quantized a batch at a time: the float64 temporaries of the whole set (tens of MB for a CNN's
        # test images) cost more in fresh pages the kernel zeroes than the C simulation itself
        chunks = [self.run_codes(qmodel.quantize_inputs([a[s:s + batch_size] for a in arrays]))
                  for s in range(0, n, batch_size)]
        out_codes = np.concatenate(chunks) if chunks else np.zeros((0,), np.int64)
        name = self.graph.outputs[0]
        # float ops after the integer outputs, a fixed batch at a time
        real = host_outputs(self.graph, name, out_codes, fixed_batch(qmodel.float_model.inputs))
        return {qmodel.float_model.output_names[0]: real.astype(np.float32)}

    def golden_codes(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The golden vectors: input codes (one array per graph input) and the reference's output
        codes (one per graph output), each ``[n, *shape]``."""
        g = self.graph
        shapes_in = [sample_shape(g, t.name) for t in g.inputs]
        shapes_out = [sample_shape(g, o) for o in g.outputs]
        width = lambda shapes: sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
        for rel in (INPUTS_FILE, OUTPUTS_FILE):
            if not (self.path / rel).is_file():
                raise InputError(f"project {str(self.path)!r} must hold its golden vectors in {rel}; pass data instead")
        x = _read_codes_file(self.path, INPUTS_FILE, width(shapes_in))
        y = _read_codes_file(self.path, OUTPUTS_FILE, width(shapes_out))
        if len(x) != len(y):
            raise InputError(f"{OUTPUTS_FILE} of project {str(self.path)!r} must have one line per line of "
                             f"{INPUTS_FILE} ({len(x)}), not {len(y)}")
        return split_codes(x, shapes_in), split_codes(y, shapes_out)

    def golden(self) -> tuple[np.ndarray, np.ndarray]:
        """The testbench's input codes ``[n, *input_shape]`` and golden output codes (first input
        and output)."""
        x, y = self.golden_codes()
        return x[0], y[0]


def _read_report(path: Path) -> dict:
    """report.json as a dict with a backend name; an InputError naming the file otherwise."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{str(path)!r} must be the JSON report `nnforge compile` wrote, not unreadable "
                         f"({' '.join(str(err).split())[:120]})") from None
    if not isinstance(report, dict) or not isinstance(report.get("backend"), str):
        raise InputError(f"{str(path)!r} must be the report `nnforge compile` wrote (a JSON object with "
                         f"'backend'), not {type(report).__name__}")
    kernels, files = report.get("kernels", []), report.get("files", [])
    if (not isinstance(kernels, list) or not all(isinstance(k, dict) and isinstance(k.get("name"), str) for k in kernels)
            or not isinstance(files, list) or not all(isinstance(f, str) for f in files)):
        raise InputError(f"{str(path)!r} must be the report `nnforge compile` wrote, not one whose 'kernels' or "
                         f"'files' are damaged")
    return report


def _read_codes_file(project: Path, rel: str, width: int) -> np.ndarray:
    """The codes of a golden-vector file; an InputError naming it when it is not one."""
    try:
        return read_codes((project / rel).read_text(encoding="utf-8"), width)
    except InputError as err:
        raise InputError(f"{rel} of project {str(project)!r}: {err}") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{rel} of project {str(project)!r} must hold integer codes, {width} per line, "
                         f"not unreadable ({' '.join(str(err).split())[:120]})") from None


def open_project(path: str | Path) -> Project:
    """Reopen a project written by ``compile_model`` / ``nnforge compile``."""
    return Project(path)


__all__ = ["MODEL_DIR", "Project", "open_project"]
