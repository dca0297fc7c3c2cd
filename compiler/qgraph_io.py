"""Save and load a ``QGraph`` losslessly: structure in JSON, arrays in one ``.npz``.

Layout of a saved quantized model directory (``nnforge quantize ... -o OUT``)::

    OUT/qgraph.json   inputs, tensors (name, shape, bits, signed, scale), nodes (op, name,
                      inputs, output, scalar attrs), outputs, host ops
    OUT/qgraph.npz    every array attribute, keyed "<node index>/<attr>"
    OUT/model.onnx    the float model it was quantized from
    OUT/config.json   the quantization config (QuantConfig.to_dict())
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .quant.numerics import QType
from .qgraph import HostOp, QGraph, QNode, QTensor

FORMAT = "nnforge-qgraph/1"


def _tensor_doc(t: QTensor) -> dict:
    return {"name": t.name, "shape": list(t.shape), "bits": t.qtype.bits, "signed": t.qtype.signed,
            "scale": float(t.scale).hex()}  # hex: exact round trip of the float


def _tensor(d: dict) -> QTensor:
    return QTensor(d["name"], tuple(d["shape"]), QType(d["bits"], d["signed"]), float.fromhex(d["scale"]))


def _encode(value):
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, float):
        return {"float": value.hex()}
    return value


def _decode(value):
    if isinstance(value, dict) and "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    if isinstance(value, dict) and "float" in value:
        return float.fromhex(value["float"])
    return value


def to_files(graph: QGraph) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for i, node in enumerate(graph.nodes):
        scalars = {}
        for key, value in node.attrs.to_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"{i}/{key}"] = value
            else:
                scalars[key] = _encode(value)
        nodes.append({"op": node.op, "name": node.name, "inputs": node.inputs, "output": node.output, "attrs": scalars})
    doc = {
        "format": FORMAT,
        "inputs": [t.name for t in graph.inputs],
        "tensors": [_tensor_doc(t) for t in graph.tensors.values()],
        "nodes": nodes,
        "outputs": graph.outputs,
        "host_ops": [h.__dict__ for h in graph.host_ops],
    }
    return doc, arrays


def from_files(doc: dict, arrays) -> QGraph:
    if doc.get("format") != FORMAT:
        raise InputError(f"a saved quantized model must have format {FORMAT!r}, not {doc.get('format')!r}")
    widened = doc.get("narrowed", {})  # arrays saved in a narrower integer type: back to theirs
    arrays = {k: (np.asarray(v).astype(widened[k]) if k in widened else v) for k, v in arrays.items()}
    tensors = {d["name"]: _tensor(d) for d in doc["tensors"]}
    nodes = []
    for i, nd in enumerate(doc["nodes"]):
        attrs = {k: _decode(v) for k, v in nd["attrs"].items()}
        prefix = f"{i}/"
        for key in arrays:
            if key.startswith(prefix):
                attrs[key[len(prefix):]] = np.asarray(arrays[key])
        nodes.append(QNode(nd["op"], nd["name"], list(nd["inputs"]), nd["output"], attrs))
    return QGraph([tensors[n] for n in doc["inputs"]], tensors, nodes, list(doc["outputs"]),
                  [HostOp(**h) for h in doc["host_ops"]])


def save_dir(out: Path, files: dict[str, bytes], force: bool = False, inputs=()) -> None:
    """Write ``files`` into directory ``out`` atomically, with a ``manifest.json``
    (``output_tree.write_tree``: never over an existing ``out`` without ``force``, and with it
    only over a directory nnforge wrote that holds none of ``inputs``)."""
    from .output_tree import write_tree

    write_tree(out, files, force, inputs=inputs)


def deterministic_zip(data: bytes) -> bytes:
    """Rewrite a zip (numpy's .npz) with fixed timestamps and order, so the same arrays give the
    same bytes.  Deflated (level 1): the int64 weight codes of a large model shrink several-fold."""
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for item in sorted(src.infolist(), key=lambda i: i.filename):
            info = zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            dst.writestr(info, src.read(item.filename), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return buf.getvalue()


def narrowed(a: np.ndarray) -> np.ndarray:
    """int64 codes in the narrowest of int8/int16/int32 that holds them (weights: int8 mostly)."""
    if a.dtype != np.int64 or a.size == 0:
        return a
    lo, hi = int(a.min()), int(a.max())
    for t in (np.int8, np.int16, np.int32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return a.astype(t)
    return a


def graph_files(graph: QGraph) -> dict[str, bytes]:
    """The saved form of ``graph``; byte-identical for the same graph.  Integer arrays are stored
    in the narrowest type that holds them and listed under ``narrowed`` with their own type
    (ResNet-50's int64 weight codes: 204 MB -> 26 MB before compression, much faster to write)."""
    import io

    doc, arrays = to_files(graph)
    small = {k: narrowed(np.asarray(v)) for k, v in arrays.items()}
    doc["narrowed"] = {k: np.asarray(arrays[k]).dtype.str for k in sorted(small) if small[k].dtype != np.asarray(arrays[k]).dtype}
    arrays = small
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return {"qgraph.json": json.dumps(doc, indent=1, sort_keys=True).encode(),
            "qgraph.npz": deterministic_zip(buf.getvalue())}


def read_graph(directory: Path) -> QGraph:
    directory = Path(directory)
    for name in ("qgraph.json", "qgraph.npz"):
        if not (directory / name).is_file():
            raise InputError(f"{str(directory)!r} must be a saved quantized model directory with {name}")
    try:
        doc = json.loads((directory / "qgraph.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{str(directory / 'qgraph.json')!r} must be the JSON nnforge saved, not unreadable "
                         f"({' '.join(str(err).split())[:120]})") from None
    try:
        with np.load(directory / "qgraph.npz", allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}  # read every member here, not lazily later
    except Exception as err:  # noqa: BLE001 - zipfile, numpy's header parser and pickle refusal raise many types
        raise InputError(f"{str(directory / 'qgraph.npz')!r} must be the arrays nnforge saved, not unreadable "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None
    try:
        return from_files(doc, data)
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
        raise InputError(f"{str(directory / 'qgraph.json')!r} must describe the saved graph, not a damaged one "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None
