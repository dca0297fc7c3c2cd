"""ONNX frontend: read, validate and import a model into Relax.

``read_model`` and ``check_model`` turn anything a user can hand us into either a checked
``onnx.ModelProto`` or one ``ModelError`` that says what is wrong.  ``import_model`` then
imports it with TVM's ONNX importer (through ``relax_import``), with input shapes resolved:
the batch dimension may stay symbolic, every other dimension must be known.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from ..errors import ModelError, shown
from .limits import check_shape
from .onnx_ops import MIN_OPSET, SUPPORTED_OPS

BATCH = "batch"  # name of the symbolic batch dimension


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, shape (ints, or a str for a symbolic dim), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def describe(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"


def read_model(source: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Read an ONNX model from a path (or pass a ModelProto through), with clear errors.

    External data (tensors stored next to the model) must be relative paths to regular files
    inside the model's folder, and each reference must lie within its file."""
    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except OSError as err:  # a name too long, a loop of links
        raise ModelError(f"model file must be an existing ONNX file, not {shown(str(path))} "
                         f"({err.strerror or err})") from None
    if not exists:
        raise ModelError(f"model file must exist, not {str(path)!r} (no such file)")
    if is_dir:
        raise ModelError(f"model path must be an ONNX file, not the directory {str(path)!r}")
    if not is_file:
        raise ModelError(f"model path must be a regular ONNX file, not {str(path)!r} (a device, FIFO or socket)")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ModelError(f"model file {str(path)!r} must be readable, not {err.strerror or err}") from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as err:
        raise ModelError(
            f"{str(path)!r} must be an ONNX model (a ModelProto protobuf), but it could not "
            f"be parsed: {' '.join(str(err).split())[:200]}"
        ) from None
    if model.ir_version == 0 and not model.HasField("graph"):
        raise ModelError(
            f"{str(path)!r} must be an ONNX model, but it parsed as an empty ModelProto "
            "(no IR version, no graph: is it really an .onnx file?)"
        )
    if len(model.graph.node) == 0:
        raise ModelError(f"the graph of {str(path)!r} must have at least one node, not 0")
    _load_external_data(model, path)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Check every external-data reference, then read the data into the model."""
    from onnx import external_data_helper as ext

    tensors = [t for t in ext._get_all_tensors(model) if ext.uses_external_data(t)]
    if not tensors:
        return
    base = path.resolve().parent
    for t in tensors:
        info = {e.key: e.value for e in t.external_data}
        location = info.get("location", "")
        where = f"external data of tensor {t.name!r} in {str(path)!r}"
        if not location:
            raise ModelError(f"{where} must name a file (its 'location'), not nothing")
        rel = Path(location)
        if rel.is_absolute() or ".." in rel.parts:
            raise ModelError(f"{where} must be a relative path inside the model's folder, not {location!r}")
        target = (base / rel).resolve()
        if not target.is_relative_to(base):
            raise ModelError(f"{where} must stay inside the model's folder, not {location!r} (a link outside it)")
        if not target.is_file():
            raise ModelError(f"{where} must be an existing file next to the model, not {location!r} "
                             f"({'a directory' if target.is_dir() else 'no such file'})")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise ModelError(f"{where} must have integer offset and length, not {info}") from None
        size = target.stat().st_size
        if offset < 0 or offset > size or (length >= 0 and offset + length > size):
            raise ModelError(f"{where} must lie within {location!r} ({size} bytes), not offset {offset} "
                             f"length {length}")
    try:
        ext.load_external_data_for_model(model, str(base))
    except (OSError, ValueError, onnx.checker.ValidationError) as err:
        raise ModelError(f"the external data of {str(path)!r} must be readable: "
                         f"{' '.join(str(err).split())[:200]}") from None


def model_opset(model: onnx.ModelProto) -> int:
    """The opset of the default ONNX domain."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def check_model(model: onnx.ModelProto) -> None:
    """Validate the model: opset, ONNX checker, shape inference and the supported op set."""
    opset = model_opset(model)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ModelError(
            f"the model's ONNX opset must be between {MIN_OPSET} and {newest}, not {opset}; "
            f"re-export it with an opset in that range (e.g. torch.onnx.export(..., opset_version=17))"
        )
    check_supported_ops(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(f"the ONNX checker rejected the model: {first}") from None
    try:
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(f"ONNX shape inference failed on the model: {first}") from None


def check_supported_ops(model: onnx.ModelProto) -> None:
    """Fail with one message listing every unsupported op type and the nodes that use it."""
    from .relax_import import known_converter, node_display_name

    # Constant subgraphs (shape arithmetic, pads computed by an exporter) fold away during
    # import, so any op TVM can convert is accepted there; only compute on data must be in
    # the supported set.  Shape of a tensor counts as constant: input shapes are resolved.
    constant = {init.name for init in model.graph.initializer}
    bad: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        data_free = node.op_type in ("Constant", "Shape") or all(
            not i or i in constant for i in node.input
        )
        if data_free and node.domain in ("", "ai.onnx") and known_converter(node.op_type):
            constant.update(node.output)
        elif op not in SUPPORTED_OPS:
            bad[op].append(node_display_name(node))
    if bad:
        lines = []
        for op, names in sorted(bad.items()):
            shown = ", ".join(repr(n) for n in names[:8])
            more = f" and {len(names) - 8} more" if len(names) > 8 else ""
            lines.append(f"  {op}: {shown}{more}")
        raise ModelError(
            "the model uses operators nnforge does not support:\n"
            + "\n".join(lines)
            + "\nSupported operators: "
            + ", ".join(sorted(SUPPORTED_OPS))
        )


def nonfinite_weights(model: onnx.ModelProto) -> list[str]:
    """Names of initializers (weights) that contain NaN or Inf."""
    bad = []
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            if not np.all(np.isfinite(numpy_helper.to_array(init))):
                bad.append(init.name)
    return bad


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs: graph inputs that are not initializers (old exports list both)."""
    inits = {init.name for init in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _elem_dtype(vi: onnx.ValueInfoProto) -> str:
    return str(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def resolve_inputs(
    model: onnx.ModelProto, overrides: dict[str, tuple[int, ...]] | None = None
) -> list[TensorSpec]:
    """Input specs with every dimension known, except a symbolic batch (dimension 0).

    ``overrides`` (from ``--input-shape NAME=1,3,32,32``) fixes shapes by input name.
    """
    overrides = dict(overrides or {})
    inputs = graph_inputs(model)
    names = [vi.name for vi in inputs]
    for name in overrides:
        if name not in names:
            raise ModelError(
                f"--input-shape names an input the model does not have: {name!r}; "
                f"the model's inputs are {names}"
            )
    specs = []
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"input {vi.name!r} must be a tensor, not {vi.type.WhichOneof('value')}")
        dims = vi.type.tensor_type.shape.dim
        if vi.name in overrides:
            shape = tuple(BATCH if isinstance(d, str) else d for d in overrides[vi.name])
            if vi.type.tensor_type.HasField("shape") and len(shape) != len(dims):
                raise ModelError(
                    f"--input-shape for {vi.name!r} must have rank {len(dims)}, "
                    f"not {len(shape)} ({','.join(map(str, shape))})"
                )
            for i, (given, dim) in enumerate(zip(shape, dims)):
                if isinstance(given, str) and i > 0:
                    raise ModelError(f"--input-shape for {vi.name!r}: only dimension 0 (the batch) may be N, "
                                     f"not dimension {i}")
                if dim.HasField("dim_value") and dim.dim_value > 0 and dim.dim_value != given and i > 0:
                    raise ModelError(
                        f"--input-shape for {vi.name!r}: dimension {i} must be {dim.dim_value} "
                        f"(fixed in the model), not {given}"
                    )
        else:
            if not vi.type.tensor_type.HasField("shape"):
                raise ModelError(
                    f"input {vi.name!r} has no shape in the model; give one with "
                    f"--input-shape {vi.name}=1,3,32,32"
                )
            shape_list: list[int | str] = []
            for i, dim in enumerate(dims):
                if dim.HasField("dim_value") and dim.dim_value > 0:
                    shape_list.append(dim.dim_value)
                elif i == 0:  # the batch: symbolic (some exporters write 0 for "any batch")
                    shape_list.append(BATCH)
                elif dim.HasField("dim_value"):  # a fixed size of 0 (or less) is not dynamic, it is empty
                    raise ModelError(f"input {vi.name!r} dimension {i} must be a positive size, not {dim.dim_value}")
                else:
                    label = dim.dim_param or "unnamed"
                    raise ModelError(
                        f"input {vi.name!r} dimension {i} must be a fixed size, not the dynamic "
                        f"{label!r}; only the batch dimension (0) may stay symbolic. Fix it with "
                        f"--input-shape {shape_hint(vi.name, dims)}, each <dI> a positive size"
                    )
            shape = tuple(shape_list)
        check_shape(f"input {vi.name!r}", shape)  # a tiny file must not declare unbounded tensors
        specs.append(TensorSpec(vi.name, shape, _elem_dtype(vi)))
    return specs


def shape_hint(name: str, dims) -> str:
    """``NAME=N,64,<d2>``: the ``--input-shape`` value to give, N for the batch and a placeholder
    for each unknown dimension (the parser takes N for dimension 0)."""
    parts = ["N"] + [str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else f"<d{j}>"
                     for j, d in enumerate(dims) if j > 0]
    return f"{name}=" + ",".join(parts)


def with_input_shapes(model: onnx.ModelProto, specs: list[TensorSpec]) -> onnx.ModelProto:
    """A copy of the model whose graph inputs carry exactly the resolved shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    by_name = {s.name: s for s in specs}
    for vi in fixed.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in spec.shape:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = d
    # Stale value_info/output shapes (e.g. a batch of 1 baked into an export) would fight
    # the new input shapes; the importer infers its own.
    del fixed.graph.value_info[:]
    return fixed


def warn_nonfinite(model: onnx.ModelProto) -> list[str]:
    """Warn (naming each tensor) about NaN/Inf weights; returns their names."""
    bad = nonfinite_weights(model)
    for name in bad:
        warnings.warn(f"weight tensor {name!r} contains NaN or Inf values", stacklevel=3)
    return bad
