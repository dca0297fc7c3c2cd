"""report.json of a compiled project: per kernel its op, shapes, storage, weight bytes, MACs,
estimates and the backend's layer info; host items; totals (``compile_model`` step 6)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from nnforge.backends.golden import INPUTS_FILE, OUTPUTS_FILE, Golden, sample_shape
from nnforge.backends.macs import layer_macs


def _nnforge_version() -> str:
    from nnforge import __version__

    return __version__


# -- the report --------------------------------------------------------------------------------------

_EST_FIELDS = ("latency_cycles", "ii", "dsp", "bram18", "lut", "ff")


def jsonable(v):
    """``v`` with numpy scalars and arrays, tuples and dict keys made JSON types."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


def compress_settings_text(comp) -> str:
    """The compression settings as one readable line for report.md (report.json keeps the dict)."""
    from nnforge.compiler.compress.compression_report import settings_text

    return settings_text(comp)


def exact_storage_form(form: str | None, node) -> str | None:
    """A backend's storage token as exact words: ``sparse`` of a layer with a codebook stores codebook
    indices, so it is ``codebook + sparse indices``; ``codebook`` is ``codebook + dense indices``."""
    from nnforge.compiler.compress.compression_report import storage_name

    shared = getattr(node.attrs, "codebook", None) is not None
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
        row.update(jsonable(extra))
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
        "options": jsonable(dict(sorted(options.items()))),
        "inputs": tensors([t.name for t in graph.inputs]),
        "outputs": tensors(graph.outputs),
        "quantization": {"config": qmodel.config.describe(),
                         "compress": None if comp is None else jsonable(comp.to_dict()),
                         "compress_text": None if comp is None else compress_settings_text(comp),
                         "decisions": list(graph.decisions)},
        "kernels": kernels,
        "host": [asdict(h) for h in design.host],
        "storage_forms": dict(sorted(storage.items())),
        "totals": totals,
        "golden": {"samples": golden.samples, "source": golden.source, "inputs": INPUTS_FILE,
                   "outputs": OUTPUTS_FILE},
    }
