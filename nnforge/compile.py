"""Compile a quantized model into a hardware project, reopen it, and run it through the C.

    qmodel = nnforge.quantize(model, [x_calib], "w8a8")
    project = nnforge.compile_model(qmodel, "hls", "out/digits", golden_inputs=[x_test])
    probs = project.predict(x_test)["logits"]          # through the generated C (g++)
    report = nnforge.verify("out/digits", x_test, y_test)
    assert report.mismatches == 0

``compile_model`` runs one straight pipeline, and writes nothing until the end:

1. partition the integer graph for the backend (``backends/partition.py``);
2. codegen: the backend's sources (for ``hls``: ``src/`` and ``csim.json``);
3. estimates: the backend's analytic per-layer costs (may be empty);
4. golden vectors: up to 32 samples through the numpy reference (the spec);
5. project files: testbench, tool scripts, Makefile, README, report.json/.md
   (``backends/<name>/project.py``), plus the quantized model under ``model/`` so that
   ``verify`` can rebuild the reference;
6. write everything into a temporary sibling of OUTDIR and rename it into place, so an
   interrupted compile leaves nothing behind and ``force`` replaces OUTDIR only once the new
   project is complete.

Every generated file is deterministic: no timestamps, no absolute paths.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph

# progress(phase, done, total): one phase at a time, in pipeline order
CompileProgress = Callable[[str, int, int], None] | None

GOLDEN_SAMPLES = 32
MODEL_DIR = "model"
# backend name -> "module:function" that lays out the project files around the sources
_PROJECT_WRITERS = {"hls": "nnforge.backends.hls.project:project_files"}


def _nnforge_version() -> str:
    from nnforge import __version__

    return __version__


# -- options -----------------------------------------------------------------------------------------

def parse_options(backend, given: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's defaults updated with ``given``; unknown keys and mistyped values are errors.

    String values (from ``--option KEY=VALUE``) are converted to the type of the default.
    """
    defaults = dict(getattr(backend, "options", {}) or {})
    out = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            valid = ", ".join(sorted(defaults)) or "(none)"
            raise InputError(f"option key must be one of {valid} for the {backend.name} backend, not {key!r}")
        default = defaults[key]
        if isinstance(value, str) and not isinstance(default, str):
            try:
                if isinstance(default, bool):
                    if value.lower() not in ("0", "1", "true", "false"):
                        raise ValueError
                    value = value.lower() in ("1", "true")
                elif isinstance(default, int):
                    value = int(value)
                elif isinstance(default, float):
                    value = float(value)
            except ValueError:
                raise InputError(f"option {key!r} must be a {type(default).__name__} like {default!r}, "
                                 f"not {value!r}") from None
        out[key] = value
    return out


def parse_option_strings(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["reuse_factor=4", "io=axis"]`` -> ``{"reuse_factor": "4", "io": "axis"}``."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option must look like KEY=VALUE, not {value!r}")
        out[key.strip()] = val.strip()
    return out


# -- golden vectors ----------------------------------------------------------------------------------

@dataclass
class Golden:
    """Input codes and the reference's output codes for the testbench."""

    inputs: list[np.ndarray]  # one array per graph input, [n, *sample_shape], int64
    outputs: list[np.ndarray]  # one array per graph output
    source: str

    @property
    def samples(self) -> int:
        return int(self.inputs[0].shape[0])


def sample_shape(graph: QGraph, name: str) -> tuple[int, ...]:
    shape = graph.tensors[name].shape
    rest = shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise InputError(f"tensor {name!r} must have a fixed shape apart from the batch dimension, not {list(shape)}")
    return tuple(int(d) for d in rest)


def golden_vectors(qmodel, golden_inputs: list[np.ndarray] | None, samples: int = GOLDEN_SAMPLES) -> Golden:
    """Up to ``samples`` inputs (float, quantized here) and the numpy reference's outputs.

    Without inputs, deterministic random codes over each input type's range stand in.
    """
    from nnforge.compiler import reference

    graph = qmodel.graph
    if golden_inputs is not None:
        n = min(samples, len(golden_inputs[0]))
        fixed = qmodel.float_model.inputs[0].shape[0]
        if isinstance(fixed, int) and n % fixed:  # a fixed batch dimension takes whole batches only
            n = fixed if len(golden_inputs[0]) >= fixed else n
        codes = qmodel.quantize_inputs([np.asarray(a)[:n] for a in golden_inputs])
        source = f"the first {n} samples of the given data"
    else:
        rng = np.random.default_rng(0)
        fixed = qmodel.float_model.inputs[0].shape[0]
        n = fixed if isinstance(fixed, int) else samples
        codes = [rng.integers(t.qtype.lo, t.qtype.hi + 1, size=(n,) + sample_shape(graph, t.name))
                 for t in graph.inputs]
        source = f"{n} random input codes (seed 0; no data given)"
    codes = [np.asarray(c, dtype=np.int64) for c in codes]
    ref = reference.run(graph, codes)
    return Golden(codes, [ref[o].astype(np.int64) for o in graph.outputs], source)


def write_codes(arrays: list[np.ndarray]) -> str:
    """One line per sample: the flattened codes of every array, space-separated."""
    n = arrays[0].shape[0]
    flat = np.concatenate([a.reshape(n, -1) for a in arrays], axis=1).astype(np.int64)
    buf = io.StringIO()
    np.savetxt(buf, flat, fmt="%d", delimiter=" ")
    return buf.getvalue()


def read_codes(text: str, width: int) -> np.ndarray:
    flat = np.loadtxt(io.StringIO(text), dtype=np.int64, ndmin=2)
    if flat.size == 0:
        return np.zeros((0, width), np.int64)
    if flat.shape[1] != width:
        raise InputError(f"golden vector lines must hold {width} codes each, not {flat.shape[1]}")
    return flat


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


def build_report(qmodel, design, options: dict, layer_info: list[dict], estimates: list, golden: Golden) -> dict:
    """report.json: kernels (op, shapes, storage, weight bytes, estimates), host items, totals."""
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
        row.setdefault("weight_bytes", 0)
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
        if r.get("storage"):
            storage[r["storage"]] = storage.get(r["storage"], 0) + 1
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
                         "decisions": list(graph.decisions)},
        "kernels": kernels,
        "host": [asdict(h) for h in design.host],
        "storage_forms": dict(sorted(storage.items())),
        "totals": totals,
        "golden": {"samples": golden.samples, "source": golden.source},
    }


# -- atomic output -----------------------------------------------------------------------------------

def _check_relpath(rel: str) -> Path:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not rel:
        raise ValueError(f"generated file paths must be relative and inside the project, not {rel!r}")
    return p


def write_project(out: Path, files: dict[str, str | bytes], force: bool) -> None:
    """Write ``files`` into a temporary sibling of ``out``, then rename it into place.

    An existing ``out`` is replaced (with ``force``) only after the new tree is complete; on
    any failure the temporary tree is removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not force:
        raise InputError(f"output directory {str(out)!r} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    old: Path | None = None
    try:
        for rel in sorted(files):
            path = tmp / _check_relpath(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = files[rel]
            path.write_bytes(data.encode() if isinstance(data, str) else data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "tree")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "tree").exists() and not out.exists():
            os.replace(old / "tree", out)  # put the previous project back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# -- compile -----------------------------------------------------------------------------------------

def _project_writer(backend_name: str):
    spec = _PROJECT_WRITERS.get(backend_name)
    if spec is None:
        return None
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


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

    out = Path(out_dir)
    if out.exists() and not force:  # refuse before any work
        raise InputError(f"output directory {str(out)!r} already exists; pass --force to replace it")
    be = get_backend(backend)
    opts = parse_options(be, options)
    if hasattr(be, "check_options"):  # the backend's own validation (value ranges, identifiers)
        opts = be.check_options(opts)
    step = progress or (lambda phase, done, total: None)

    step("partition", 0, 1)
    design = partition(qmodel.graph, be)  # the BYOC split: kernels and host items
    step("partition", 1, 1)
    step("codegen", 0, 1)
    files: dict[str, str | bytes] = dict(be.codegen(design, opts))  # the backend's sources
    step("codegen", 1, 1)
    step("estimates", 0, 1)
    estimates = list(be.estimate(design, opts) or [])  # analytic costs (empty without a model)
    layer_info = list(be.layer_info(design)) if hasattr(be, "layer_info") else []
    step("estimates", 1, 1)
    step("golden vectors", 0, 1)
    golden = golden_vectors(qmodel, golden_inputs)  # the numpy reference on up to 32 samples
    step("golden vectors", 1, 1)
    step("project files", 0, 1)
    report = build_report(qmodel, design, opts, layer_info, estimates, golden)
    writer = _project_writer(be.name)
    if writer is not None:  # testbench, tool scripts, Makefile, README, report.md
        files.update(writer(design, opts, files, golden, report))
    from nnforge.quantized import saved_files

    for name, data in saved_files(qmodel).items():  # so verify can rebuild the reference
        files[f"{MODEL_DIR}/{name}"] = data
    report["files"] = sorted(files) + ["report.json"]
    files["report.json"] = json.dumps(report, indent=1, sort_keys=False) + "\n"
    step("project files", 1, 1)
    step("writing", 0, len(files))
    write_project(out, files, force)  # temp dir, then one rename
    step("writing", len(files), len(files))
    return open_project(out)


# -- reopening a project and running the C -----------------------------------------------------------

class Project:
    """A compiled project directory: its report, its C-sim manifest, and the C behind it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "report.json").is_file():
            raise InputError(f"{str(self.path)!r} must be a project directory written by `nnforge compile` "
                             f"(it has no report.json)")
        self.report: dict = json.loads((self.path / "report.json").read_text())
        manifest = self.path / "csim.json"
        self.manifest: dict = json.loads(manifest.read_text()) if manifest.is_file() else {}
        self._qmodel = None
        self._sim = None

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r}, backend={self.report.get('backend')!r})"

    @property
    def top(self) -> str:
        return self.manifest.get("top") or self.report["options"]["top"]

    @property
    def qmodel(self):
        """The quantized model the project was compiled from (``model/``)."""
        if self._qmodel is None:
            from nnforge.quantized import load_quantized

            self._qmodel = load_quantized(self.path / MODEL_DIR)
        return self._qmodel

    @property
    def graph(self) -> QGraph:
        return self.qmodel.graph

    def build(self) -> Path:
        """g++ the sources into a shared library (cached by their content); its path."""
        if self._sim is None:
            from nnforge.hw_sim import csim

            if not self.manifest:
                raise InputError(f"project {str(self.path)!r} has no csim.json; its backend cannot run C simulation")
            m = self.manifest
            so = csim.build(self.path / "src", self.top)
            self._sim = csim.CSim(so, self.top, int(m["in_size"]), int(m["out_size"]), int(m["trace_size"]))
        return Path(self._sim.so_path)

    def _csim(self):
        self.build()
        return self._sim

    def _codes(self, codes) -> np.ndarray:
        if isinstance(codes, (list, tuple)):
            if len(codes) != 1:
                raise InputError(f"the generated top takes one input, not {len(codes)}")
            codes = codes[0]
        return np.ascontiguousarray(codes, dtype=np.int64)

    def run_codes(self, codes) -> np.ndarray:
        """Output codes of the generated C for input codes ``[n, *input_shape]``."""
        codes = self._codes(codes)
        out = np.asarray(self._csim().run(codes))
        shape = sample_shape(self.graph, self.graph.outputs[0])
        return out.reshape((codes.shape[0],) + shape)

    def trace(self, codes) -> dict[str, np.ndarray]:
        """Every node output the generated C computes, by tensor name, ``[n, *shape]``."""
        codes = self._codes(codes)
        raw = self._csim().trace(codes)
        by_node = {n.name: n.output for n in self.graph.nodes}
        out = {}
        for name, arr in raw.items():
            tensor = by_node.get(name, name)
            out[tensor] = np.asarray(arr).reshape((codes.shape[0],) + sample_shape(self.graph, tensor))
        return out

    def predict(self, arrays, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Float outputs through the generated C: quantize inputs, run, dequantize (+ host softmax)."""
        from nnforge.compiler.qgraph import apply_host_ops

        qmodel = self.qmodel
        if isinstance(arrays, np.ndarray):
            arrays = [arrays]
        codes = qmodel.quantize_inputs(list(arrays))[0]
        chunks = [self.run_codes(codes[s:s + batch_size]) for s in range(0, len(codes), batch_size)]
        out_codes = np.concatenate(chunks) if chunks else np.zeros((0,), np.int64)
        name = self.graph.outputs[0]
        real = self.graph.dequantize(name, out_codes)
        real = apply_host_ops(self.graph.host_ops, real)  # float ops after the integer outputs
        return {qmodel.float_model.output_names[0]: real.astype(np.float32)}

    def golden(self) -> tuple[np.ndarray, np.ndarray]:
        """The testbench's input codes ``[n, *input_shape]`` and golden output codes."""
        g = self.graph
        in_shape = sample_shape(g, g.inputs[0].name)
        out_shape = sample_shape(g, g.outputs[0])
        x = read_codes((self.path / "tb" / "inputs.dat").read_text(), int(np.prod(in_shape)))
        y = read_codes((self.path / "tb" / "golden.dat").read_text(), int(np.prod(out_shape)))
        return x.reshape((-1,) + in_shape), y.reshape((-1,) + out_shape)


def open_project(path: str | Path) -> Project:
    """Reopen a project written by ``compile_model`` / ``nnforge compile``."""
    return Project(path)


# -- verify ------------------------------------------------------------------------------------------

@dataclass
class LayerMismatch:
    name: str
    op: str
    mismatches: int
    codes: int  # codes compared


@dataclass
class VerifyReport:
    samples: int
    mismatches: int  # differing codes over every compared tensor
    compared_tensors: int
    source: str
    csim_accuracy: float | None = None
    quant_accuracy: float | None = None
    output_mismatches: int = 0
    layers: list[LayerMismatch] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)  # node outputs the C does not expose
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        return asdict(self)


def _tvm_accuracy(qmodel, codes: np.ndarray, labels: np.ndarray, batch_size: int, notes: list[str]) -> float | None:
    """Top-1 accuracy of the TVM integer build on the same codes (argmax of the output codes, as simulate)."""
    from nnforge.quantized import batch_size_for

    bs = batch_size_for(qmodel.float_model, batch_size)
    if isinstance(qmodel.float_model.inputs[0].shape[0], int) and len(codes) % bs:
        notes.append(f"quant_accuracy not computed: the model's batch dimension is fixed at {bs}, "
                     f"which does not divide {len(codes)} samples")
        return None
    codes = codes.astype(qmodel.graph.inputs[0].qtype.storage)
    preds = [qmodel._call("main", [codes[s:s + bs]])[0].reshape(len(codes[s:s + bs]), -1).argmax(1)
             for s in range(0, len(codes), bs)]
    return float(np.mean(np.concatenate(preds) == labels))


def verify(path: "str | Path | Project", data_x=None, labels: np.ndarray | None = None, batch_size: int = 256,
           progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Run the generated C on every input and compare every node output with the numpy reference.

    Without data, the project's golden vectors (tb/inputs.dat) are the inputs.  With labels,
    ``csim_accuracy`` is the top-1 accuracy through the C and ``quant_accuracy`` the one of the
    TVM integer build of the same model (they must agree).
    """
    from nnforge.compiler import reference

    project = path if isinstance(path, Project) else open_project(path)
    qmodel = project.qmodel
    graph = qmodel.graph
    if data_x is None:
        codes, _ = project.golden()
        source = "golden vectors (tb/inputs.dat)"
        labels = None
    else:
        arrays = [data_x] if isinstance(data_x, np.ndarray) else list(data_x)
        codes = qmodel.quantize_inputs(arrays)[0].astype(np.int64)
        source = "given data"
    n = len(codes)
    by_output = {nd.output: nd for nd in graph.nodes}
    counts = {nd.output: 0 for nd in graph.nodes}
    sizes = {nd.output: 0 for nd in graph.nodes}
    seen: set[str] = set()
    out_name = graph.outputs[0]
    out_mismatch = 0
    preds = []
    project.build()
    for start in range(0, n, batch_size):
        batch = codes[start:start + batch_size]
        ours = project.trace(batch)
        ref = reference.run(graph, [batch])
        for name, arr in ours.items():
            if name not in counts:
                continue
            seen.add(name)
            counts[name] += int(np.count_nonzero(arr.astype(np.int64) != ref[name]))
            sizes[name] += int(ref[name].size)
        out = ours[out_name] if out_name in ours else project.run_codes(batch)
        out_mismatch += int(np.count_nonzero(out.astype(np.int64) != ref[out_name]))
        if out_name not in ours:
            counts[out_name] += out_mismatch
            seen.add(out_name)
        preds.append(out.reshape(len(batch), -1).argmax(1))
        if progress:
            progress(min(start + batch_size, n), n)
    layers = [LayerMismatch(by_output[t].name, by_output[t].op, counts[t], sizes[t]) for t in counts if t in seen]
    report = VerifyReport(samples=n, mismatches=sum(l.mismatches for l in layers), compared_tensors=len(layers),
                          source=source, output_mismatches=out_mismatch, layers=layers,
                          not_compared=[by_output[t].name for t in counts if t not in seen])
    if labels is not None:
        labels = np.asarray(labels)
        pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
        report.csim_accuracy = float(np.mean(pred == labels))
        report.quant_accuracy = _tvm_accuracy(qmodel, codes, labels, batch_size, report.notes)
    return report


__all__ = ["compile_model", "open_project", "verify", "Project", "VerifyReport", "LayerMismatch",
           "parse_options", "parse_option_strings"]
