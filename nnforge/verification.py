"""``verify``: a project's files against its manifest, its golden vectors against the numpy
reference, and its simulation against the reference on every exposed node output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nnforge.backends.golden import INPUTS_FILE, OUTPUTS_FILE
from nnforge.compiler.output_tree import MANIFEST, check_manifest
from nnforge.compiler.spelling import option
from nnforge.project import Project, open_project


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
    from nnforge.compiler.quant.calibrate import batch_size_for, fixed_batch

    bs = batch_size_for(qmodel.float_model.inputs, batch_size)
    n = len(inputs[0])
    if fixed_batch(qmodel.float_model.inputs) is not None and n % bs:
        notes.append(f"quant_accuracy not computed: the model's batch dimension is fixed at {bs}, "
                     f"which does not divide {n} samples")
        return None
    inputs = [a.astype(t.qtype.storage) for a, t in zip(inputs, qmodel.graph.inputs)]
    preds = [qmodel.integer_outputs([a[s:s + bs] for a in inputs])[0].reshape(min(bs, n - s), -1).argmax(1)
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


__all__ = ["LayerMismatch", "VerifyReport", "files_failure", "verify"]
