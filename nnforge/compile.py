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

``open_project`` reopens a project (``nnforge/project.py``); ``Project.run_codes``/``trace``/
``predict`` and ``verify`` (``nnforge/verification.py``) run it through ``Backend.simulate`` of the
backend named in its report.json; report.json is ``nnforge/project_report.py``'s.  Every generated
file is deterministic: no timestamps, no absolute paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnforge.backends.golden import (GOLDEN_SAMPLES, Golden, golden_files, golden_vectors, read_codes, sample_shape,
                                     write_codes)
from nnforge.backends.options import parse_option_strings, parse_options, resolve_options
from nnforge.compiler.errors import InputError
from nnforge.compiler.output_tree import MANIFEST, check_output, write_tree
from nnforge.project import MODEL_DIR, Project, open_project
from nnforge.project_report import build_report, exact_storage_form
from nnforge.verification import LayerMismatch, VerifyReport, files_failure, verify

# progress(phase, done, total): one phase at a time, in pipeline order
CompileProgress = Callable[[str, int, int], None] | None


def _model_inputs(qmodel) -> list[str]:
    """The files a compile reads: the float model's file, when it came from one."""
    source = getattr(qmodel.float_model, "source", "")
    return [source] if source and Path(source).is_file() else []


# -- the backend and its options, checked once ---------------------------------------------------------

@dataclass(frozen=True)
class BackendRequest:
    """A backend and its options, validated once: the generic parse of its ``Option`` table, then
    its ``check_options``.  ``nnforge compile`` builds it before any work and hands it to
    ``compile_model``, which then checks nothing again."""

    name: str
    backend: Any  # the registered Backend instance (one per compile: it may cache builds)
    options: Mapping[str, Any]  # resolved: every key, typed, defaults filled in

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any] | None = None) -> "BackendRequest":
        """``get_backend(name)`` and ``resolve_options``: an InputError naming the backend or option."""
        from nnforge.backends import get_backend

        backend = get_backend(name)
        return cls(name, backend, resolve_options(backend, dict(options) if options is not None else None))


# -- compile -----------------------------------------------------------------------------------------

def compile_model(qmodel, backend: "str | BackendRequest" = "hls", out_dir: str | Path = "nnforge_project",
                  options: dict[str, Any] | None = None, force: bool = False,
                  golden_inputs: list[np.ndarray] | None = None, progress: CompileProgress = None) -> "Project":
    """Compile ``qmodel`` for ``backend`` into the project directory ``out_dir``.

    ``options`` are the backend's options (``nnforge backends``); or ``backend`` is a
    ``BackendRequest`` that holds them, checked already.  ``golden_inputs`` (float arrays, one per
    model input) give the testbench's golden vectors (up to 32 samples).
    ``progress(phase, done, total)`` is called as the pipeline goes.
    """
    from nnforge.backends.partition import partition
    from nnforge.quantized import saved_files
    from nnforge.report_html import project_html

    out = check_output(out_dir, directory=True, force=force, inputs=_model_inputs(qmodel))  # before any work
    if not isinstance(backend, BackendRequest):  # Option table (types, keys, choices, ranges), then check_options
        backend = BackendRequest.build(backend, options)
    elif options is not None:
        raise InputError("options must be None when the backend is a BackendRequest (it holds them), "
                         f"not {options!r}")
    be, opts = backend.backend, dict(backend.options)
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
    write_tree(out, files, force, inputs=_model_inputs(qmodel))  # temp dir, manifest, one rename (output_tree.py)
    step("writing", len(files), len(files))
    return open_project(out)


__all__ = ["BackendRequest", "compile_model", "open_project", "verify", "Project", "VerifyReport", "LayerMismatch",
           "parse_options", "parse_option_strings", "resolve_options", "Golden", "GOLDEN_SAMPLES",
           "golden_vectors", "write_codes", "read_codes", "sample_shape", "build_report", "exact_storage_form",
           "files_failure", "MODEL_DIR"]
