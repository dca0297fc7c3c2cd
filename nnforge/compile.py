"""Compile a quantized model into a hardware project, reopen it, and run it through the hardware.

    qmodel = nnforge.quantize(model, [x_calib], "w8a8")
    project = nnforge.compile_model(qmodel, "hls", "out/digits", golden_inputs=[x_test])
    probs = project.predict(x_test)["logits"]          # through the backend's simulation
    report = nnforge.verify("out/digits", x_test, y_test)
    assert report.mismatches == 0

``compile_model`` runs one straight pipeline for every backend, and writes nothing until the end:

1. options: the generic parse of the backend's ``Option`` table, then ``check_options``;
2. partition the integer graph for the backend (``backends/partition.py``), then ``check_design``;
3. codegen: the backend's sources;
4. estimates and layer info: analytic per-layer costs and per-kernel facts (may be empty);
5. golden vectors: up to 32 samples through the numpy reference (the spec), as
   ``tb/inputs.dat`` and ``tb/golden.dat`` (``backends/golden.py``);
6. project files: the backend's testbench, tool scripts, Makefile, README (``project_files``),
   report.json, and the quantized model under ``model/`` so that ``verify`` can rebuild the
   reference;
7. write everything into a temporary sibling of OUTDIR and rename it into place, so an
   interrupted compile leaves nothing behind and ``force`` replaces OUTDIR only once the new
   project is complete.

``open_project`` reopens a project; ``Project.run_codes``/``trace``/``predict`` and ``verify``
run it through ``Backend.simulate`` of the backend named in its report.json.  Every generated
file is deterministic: no timestamps, no absolute paths.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.backends.base import Simulation
from nnforge.backends.golden import (GOLDEN_SAMPLES, INPUTS_FILE, OUTPUTS_FILE, Golden, golden_files, golden_vectors,
                                     read_codes, sample_shape, split_codes, write_codes)
from nnforge.backends.macs import layer_macs
from nnforge.backends.options import parse_option_strings, parse_options, resolve_options
from nnforge.backends.registry import BackendError
from nnforge.compiler.errors import InputError
from nnforge.compiler.spelling import option
from nnforge.compiler.output_tree import MANIFEST, check_manifest, check_output, write_tree
from nnforge.compiler.qgraph import QGraph

# progress(phase, done, total): one phase at a time, in pipeline order
CompileProgress = Callable[[str, int, int], None] | None

MODEL_DIR = "model"


def _nnforge_version() -> str:
    from nnforge import __version__

    return __version__


# -- the report --------------------------------------------------------------------------------------

_EST_FIELDS = ("latency_cycles", "ii", "dsp", "bram18", "lut", "ff")


def _jsonable(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def compress_settings_text(comp) -> str:
    """The compression settings as one readable line for report.md (report.json keeps the dict)."""
    from nnforge.compiler.compress.compression_report import settings_text

    return settings_text(comp)


def exact_storage_form(form: str | None, node) -> str | None:
    """A backend's storage token as exact words: ``sparse`` of a layer with a codebook stores codebook
    indices, so it is ``codebook + sparse indices``; ``codebook`` is ``codebook + dense indices``."""
    from nnforge.compiler.compress.compression_report import storage_name

    shared = node.attrs.get("codebook") is not None
    if form == "dense":
        return storage_name(False, False)
    if form == "codebook":
        return storage_name(True, False)
    if form == "sparse":
        return storage_name(shared, True)
    return form


def build_report(qmodel, design, options: dict, layer_info: list[dict], estimates: list, golden: Golden) -> dict:
    """report.json: kernels (op, shapes, storage, weight bytes, MACs, estimates, the backend's
    layer info), host items, totals."""
    graph = design.graph
    est = {e.name: e for e in estimates}
    info = {d["name"]: d for d in layer_info}
    kernels = []
    for k in design.kernels:
        node = k.node
        row = {"name": node.name, "ident": k.ident, "op": node.op,
               "input_shapes": [list(sample_shape(graph, i)) for i in node.inputs],
               "output_shape": list(sample_shape(graph, node.output)),
               "output_type": str(graph.tensors[node.output].qtype)}
        extra = dict(info.get(node.name, {}))
        for key in ("name", "ident", "op"):
            extra.pop(key, None)
        row.update(_jsonable(extra))
        row.setdefault("storage", None)
        row["storage_form"] = exact_storage_form(row["storage"], node)  # a shared layer's "sparse": codebook + sparse indices
        row.setdefault("weight_bytes", 0)
        row.setdefault("macs", layer_macs(graph, node))
        e = est.get(node.name)
        row["estimate"] = None if e is None else {f: getattr(e, f) for f in _EST_FIELDS} | {"notes": e.notes}
        kernels.append(row)
    totals: dict[str, Any] = {"kernels": len(kernels), "host_items": len(design.host),
                              "weight_bytes": int(sum(int(r.get("weight_bytes") or 0) for r in kernels))}
    rows = [r["estimate"] for r in kernels if r["estimate"] is not None]
    if rows:
        for f in _EST_FIELDS:
            vals = [r[f] for r in rows]
            if any(v is None for v in vals):
                totals[f] = None
            elif f == "ii":  # under DATAFLOW the slowest stage sets the interval
                totals[f] = max(vals)
            else:  # latency: the layers in sequence; resources: the sum
                totals[f] = int(sum(vals))
        totals["estimated_kernels"] = len(rows)
    storage: dict[str, int] = {}
    for r in kernels:
        if r.get("storage_form"):
            storage[r["storage_form"]] = storage.get(r["storage_form"], 0) + 1
    tensors = lambda names: [{"name": n, "shape": list(sample_shape(graph, n)), "type": str(graph.tensors[n].qtype),
                              "scale": float(graph.tensors[n].scale)} for n in names]
    comp = qmodel.compress
    return {
        "format": "nnforge-project/1",
        "nnforge_version": _nnforge_version(),
        "backend": design.backend,
        "options": _jsonable(dict(sorted(options.items()))),
        "inputs": tensors([t.name for t in graph.inputs]),
        "outputs": tensors(graph.outputs),
        "quantization": {"config": qmodel.config.describe(),
                         "compress": None if comp is None else _jsonable(comp.to_dict()),
                         "compress_text": None if comp is None else compress_settings_text(comp),
                         "decisions": list(graph.decisions)},
        "kernels": kernels,
        "host": [asdict(h) for h in design.host],
        "storage_forms": dict(sorted(storage.items())),
        "totals": totals,
        "golden": {"samples": golden.samples, "source": golden.source, "inputs": INPUTS_FILE,
                   "outputs": OUTPUTS_FILE},
    }


# -- atomic output -----------------------------------------------------------------------------------

def write_project(out: Path, files: dict[str, str | bytes], force: bool, inputs=()) -> None:
    """Write ``files`` plus ``manifest.json`` (their SHA-256, which ``verify`` checks) as directory
    ``out``, atomically: a temporary sibling, then a rename that never replaces an existing
    ``out`` without ``force``; ``force`` replaces only a directory nnforge wrote, never one that
    holds ``inputs`` (``compiler/output_tree.py``).  On any failure ``out`` is left as it was.
    """
    write_tree(out, files, force, inputs=inputs)


def _model_inputs(qmodel) -> list[str]:
    """The files a compile reads: the float model's file, when it came from one."""
    source = getattr(qmodel.float_model, "source", "")
    return [source] if source and Path(source).is_file() else []


# -- compile -----------------------------------------------------------------------------------------

def compile_model(qmodel, backend: str = "hls", out_dir: str | Path = "nnforge_project",
                  options: dict[str, Any] | None = None, force: bool = False,
                  golden_inputs: list[np.ndarray] | None = None, progress: CompileProgress = None) -> "Project":
    """Compile ``qmodel`` for ``backend`` into the project directory ``out_dir``.

    ``options`` are the backend's options (``nnforge backends``); ``golden_inputs`` (float
    arrays, one per model input) give the testbench's golden vectors (up to 32 samples).
    ``progress(phase, done, total)`` is called as the pipeline goes.
    """
    from nnforge.backends import get_backend
    from nnforge.backends.partition import partition
    from nnforge.quantized import saved_files
    from nnforge.report_html import project_html

    out = check_output(out_dir, directory=True, force=force, inputs=_model_inputs(qmodel))  # before any work
    be = get_backend(backend)
    opts = resolve_options(be, options)  # Option table (types, keys, choices, ranges), then check_options
    step = progress or (lambda phase, done, total: None)

    step("partition", 0, 1)
    design = partition(qmodel.graph, be)  # the BYOC split: kernels and host items
    be.check_design(design, opts)  # capacity, per-layer option names
    step("partition", 1, 1)
    step("codegen", 0, 1)
    files: dict[str, str | bytes] = dict(be.codegen(design, opts))  # the backend's sources
    step("codegen", 1, 1)
    step("estimates", 0, 1)
    estimates = list(be.estimate(design, opts) or [])  # analytic costs (empty without a model)
    layer_info = list(be.layer_info(design, opts) or [])  # per kernel: storage, MACs, backend extras
    step("estimates", 1, 1)
    step("golden vectors", 0, 1)
    golden = golden_vectors(qmodel, golden_inputs)  # the numpy reference on up to 32 samples
    files.update(golden_files(golden))  # tb/inputs.dat, tb/golden.dat
    step("golden vectors", 1, 1)
    step("project files", 0, 1)
    report = build_report(qmodel, design, opts, layer_info, estimates, golden)
    files.update(be.project_files(design, opts, dict(files), golden, report) or {})  # testbench, scripts, docs
    files["report.html"] = project_html(report, qmodel)  # the page an engineer reads (nnforge/report_html.py)
    for name, data in saved_files(qmodel).items():  # so verify can rebuild the reference
        files[f"{MODEL_DIR}/{name}"] = data
    report["files"] = sorted(files) + ["report.json", MANIFEST]
    files["report.json"] = json.dumps(report, indent=1, sort_keys=False) + "\n"
    step("project files", 1, 1)
    step("writing", 0, len(files))
    write_project(out, files, force, inputs=_model_inputs(qmodel))  # temp dir, manifest, one rename
    step("writing", len(files), len(files))
    return open_project(out)


# -- reopening a project and running it --------------------------------------------------------------

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
        from nnforge.quantized import fixed_batch, host_outputs

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
        real = host_outputs(self.graph, name, out_codes, fixed_batch(qmodel.float_model))
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


# -- verify ------------------------------------------------------------------------------------------

@dataclass
class LayerMismatch:
    """One compared layer: differing codes, and the cycle figures where the backend has them."""

    name: str
    op: str
    mismatches: int
    codes: int  # codes compared
    predicted_cycles: int | None = None  # report.json (layer info, else the estimate's latency)
    measured_cycles: int | None = None  # the simulation, per sample
    macs: int | None = None  # per sample, report.json
    utilization: float | None = None  # the simulation (e.g. macs / (measured_cycles * rows * cols))


@dataclass
class VerifyReport:
    samples: int
    mismatches: int  # differing codes over every compared tensor
    compared_tensors: int
    source: str
    backend: str = ""
    accuracy: float | None = None  # top-1 through the generated hardware (with labels)
    quant_accuracy: float | None = None  # top-1 of the TVM integer build (the two must agree)
    output_mismatches: int = 0
    layers: list[LayerMismatch] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)  # node outputs the simulation does not expose
    notes: list[str] = field(default_factory=list)
    golden_mismatches: int = 0  # codes where tb/golden.dat differs from the reference on tb/inputs.dat
    changed_files: list[str] = field(default_factory=list)  # differ from (or missing in) manifest.json
    modified_allowed: bool = False  # allow_modified: changed files are reported, the simulation decides

    @property
    def passed(self) -> bool:
        return (self.mismatches == 0 and self.golden_mismatches == 0
                and (self.modified_allowed or not self.changed_files))

    @property
    def csim_accuracy(self) -> float | None:
        """``accuracy`` under its hls name (through the C simulation)."""
        return self.accuracy

    def to_dict(self) -> dict:
        return asdict(self) | {"csim_accuracy": self.accuracy, "passed": self.passed}


def _tvm_accuracy(qmodel, inputs: list[np.ndarray], labels: np.ndarray, batch_size: int,
                  notes: list[str]) -> float | None:
    """Top-1 accuracy of the TVM integer build on the same codes (argmax of the output codes, as simulate)."""
    from nnforge.quantized import batch_size_for

    bs = batch_size_for(qmodel.float_model, batch_size)
    n = len(inputs[0])
    if isinstance(qmodel.float_model.inputs[0].shape[0], int) and n % bs:
        notes.append(f"quant_accuracy not computed: the model's batch dimension is fixed at {bs}, "
                     f"which does not divide {n} samples")
        return None
    inputs = [a.astype(t.qtype.storage) for a, t in zip(inputs, qmodel.graph.inputs)]
    preds = [qmodel._call("main", [a[s:s + bs] for a in inputs])[0].reshape(min(bs, n - s), -1).argmax(1)
             for s in range(0, n, bs)]
    return float(np.mean(np.concatenate(preds) == labels)) if preds else None


def _kernel_figures(row: dict | None) -> tuple[int | None, int | None]:
    """(predicted cycles, MACs) of a report.json kernel row."""
    if row is None:
        return None, None
    predicted = row.get("predicted_cycles")
    if predicted is None and row.get("estimate"):
        predicted = row["estimate"].get("latency_cycles")
    return predicted, row.get("macs")


def files_failure(path: str | Path, allow_modified: bool = False) -> "VerifyReport | None":
    """The FAIL report of a project whose files differ from its manifest.json, before anything
    in it is parsed (a damaged report.json or model/ is then named, not a traceback); None when
    the files are intact, when there is no manifest, or with ``allow_modified``."""
    check = check_manifest(path)
    if allow_modified or not check.present or check.intact:
        return None
    changed = [MANIFEST] if check.error else check.changed + check.missing
    try:
        backend = str(json.loads((Path(path) / "report.json").read_text(encoding="utf-8")).get("backend", ""))
    except (OSError, ValueError, AttributeError):
        backend = ""
    return VerifyReport(samples=0, mismatches=0, compared_tensors=0, backend=backend,
                        source="not simulated: the project's files changed", changed_files=changed,
                        notes=[f"changed since `nnforge compile` ({MANIFEST}): {', '.join(changed)}; "
                               f"recompile, or verify the edited project with {option('allow_modified')}"])


def _changed_files(project: Project, notes: list[str]) -> list[str]:
    """The project's files that differ from its manifest.json (or are missing), by name."""
    check = check_manifest(project.path)
    if check.error:
        return [MANIFEST]
    if not check.present:
        if MANIFEST in project.report.get("files", []):
            return [MANIFEST]  # the project was written with one: deleting it hides every change
        notes.append(f"the project has no {MANIFEST} (written by an older nnforge): its files were not checked")
        return []
    return check.changed + check.missing


def verify(path: "str | Path | Project", data_x=None, labels: np.ndarray | None = None, batch_size: int = 256,
           progress: Callable[[int, int], None] | None = None, allow_modified: bool = False,
           ap_types: str | Path | bool | None = None) -> VerifyReport:
    """Check the project's files, then run its simulation on every input and compare every node
    output it exposes with the numpy reference (``reference.run`` on the same codes).

    1. Files: every file is compared with ``manifest.json`` (SHA-256 written at compile time).
       A changed or missing file fails verify without simulating, unless ``allow_modified``
       (hand-edited sources): then the changed files are reported and the simulation decides.
    2. Golden vectors: ``tb/golden.dat`` must equal the reference on ``tb/inputs.dat``.
    3. Without data, the golden inputs are simulated.  With labels, ``accuracy`` is the top-1
       accuracy through the hardware and ``quant_accuracy`` the one of the TVM integer build
       of the same model (they must agree).
    4. ``ap_types`` (hls): the C simulation is compiled against Xilinx's ap_int (``True``: the
       headers in the installed hls4ml; or their folder) after a strict g++ front-end pass.
    """
    from nnforge.compiler import reference

    failure = files_failure(path.path if isinstance(path, Project) else path, allow_modified)
    if failure is not None:
        return failure
    project = path if isinstance(path, Project) else open_project(path)
    file_notes: list[str] = []
    changed = _changed_files(project, file_notes)
    if changed and not allow_modified:  # the manifest itself is gone although report.json lists it
        return VerifyReport(samples=0, mismatches=0, compared_tensors=0, backend=project.backend_name,
                            source="not simulated: the project's files changed", changed_files=changed,
                            notes=file_notes + [f"{', '.join(changed)} is missing: the project's files cannot be "
                                                f"checked; recompile, or verify it with {option('allow_modified')}"])
    qmodel = project.qmodel
    graph = qmodel.graph
    golden_in, golden_out = project.golden_codes()
    golden_ref = reference.run(graph, golden_in)
    golden_mismatches = sum(int(np.count_nonzero(g != golden_ref[o])) for g, o in zip(golden_out, graph.outputs))
    if golden_mismatches:
        file_notes.append(f"{OUTPUTS_FILE} differs from the numpy reference on {INPUTS_FILE} in "
                          f"{golden_mismatches} codes: the testbench checks against wrong vectors")
    if changed:
        file_notes.append(f"changed since `nnforge compile` ({MANIFEST}), simulated as edited: {', '.join(changed)}")
    if data_x is None:
        inputs = golden_in
        source = f"golden vectors ({INPUTS_FILE})"
        labels = None
    else:
        arrays = [data_x] if isinstance(data_x, np.ndarray) else list(data_x)
        inputs = [c.astype(np.int64) for c in qmodel.quantize_inputs(arrays)]
        source = "given data"
    n = len(inputs[0])
    by_output = {nd.output: nd for nd in graph.nodes}
    counts = {nd.output: 0 for nd in graph.nodes}
    sizes = {nd.output: 0 for nd in graph.nodes}
    seen: set[str] = set()
    measured: dict[str, dict] = {}
    notes: list[str] = []
    out_mismatch = 0
    preds = []
    for start in range(0, n, batch_size):
        batch = [a[start:start + batch_size] for a in inputs]
        sim = project.simulate(batch, trace=True, ap_types=ap_types)
        ref = reference.run(graph, batch)
        for name, arr in sim.tensors.items():
            if name not in counts:  # graph inputs, or names the graph does not have
                continue
            seen.add(name)
            counts[name] += int(np.count_nonzero(arr.astype(np.int64) != ref[name]))
            sizes[name] += int(ref[name].size)
        for name in graph.outputs:
            out_mismatch += int(np.count_nonzero(sim.tensors[name].astype(np.int64) != ref[name]))
        preds.append(sim.tensors[graph.outputs[0]].reshape(len(batch[0]), -1).argmax(1))
        for layer, figures in sim.layers.items():
            first = measured.setdefault(layer, dict(figures))
            if any(first.get(k) != v for k, v in figures.items()):
                notes.append(f"layer {layer!r}: measured figures differ between batches ({first} and {figures}); "
                             f"the first are reported")
        notes.extend(note for note in sim.notes if note not in notes)
        if progress:
            progress(min(start + batch_size, n), n)
    rows = {r["name"]: r for r in project.report.get("kernels", [])}
    layers = []
    for t in counts:
        if t not in seen:
            continue
        node = by_output[t]
        predicted, macs = _kernel_figures(rows.get(node.name))
        m = measured.get(node.name, {})
        layers.append(LayerMismatch(node.name, node.op, counts[t], sizes[t], predicted, m.get("measured_cycles"),
                                    macs, m.get("utilization")))
    report = VerifyReport(samples=n, mismatches=sum(l.mismatches for l in layers), compared_tensors=len(layers),
                          source=source, backend=project.backend_name, output_mismatches=out_mismatch,
                          layers=layers, not_compared=[by_output[t].name for t in counts if t not in seen],
                          notes=file_notes + notes, golden_mismatches=golden_mismatches, changed_files=changed,
                          modified_allowed=allow_modified)
    if labels is not None:
        labels = np.asarray(labels)
        pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
        report.accuracy = float(np.mean(pred == labels))
        report.quant_accuracy = _tvm_accuracy(qmodel, inputs, labels, batch_size, report.notes)
    return report


__all__ = ["compile_model", "open_project", "verify", "Project", "VerifyReport", "LayerMismatch",
           "parse_options", "parse_option_strings", "resolve_options", "Golden", "GOLDEN_SAMPLES",
           "golden_vectors", "write_codes", "read_codes", "sample_shape"]
