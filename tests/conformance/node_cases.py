"""The ONNX backend node conformance cases for nnforge's supported ops.

``selected_cases()`` enumerates ``onnx.backend.test.loader.load_model_tests(kind="node")``
and keeps the cases whose graph uses only ops in ``SUPPORTED_OPS`` (Constant included),
i.e. the cases that test a supported op.  ``run_case()`` runs one of them through the
public API (``nnforge.load`` + ``Model.run``) and classifies it:

* ``passed``: every output of every data set matches the expected output;
* ``failed``: nnforge raised, or an output is wrong; the reason is the error message;
* ``skipped``: the case tests something outside nnforge's float32 inference scope, or
  nnforge rejects the model deliberately with a documented ``NNForgeError``; the reason
  always says which.

A case is never skipped because it fails: the skip rules look at the model and its data
only, before anything runs, except for the short list of deliberate rejections in
``_DELIBERATE_REJECTIONS``.

Two adaptations, both of the kind a user makes when exporting or with ``--input-shape``:

* Shape-like operands (Reshape's shape, Squeeze/Unsqueeze axes, Pad's pads/value/axes,
  ConstantOfShape's shape, Dropout's ratio/training flag) are graph inputs in the node
  suite only because its generator makes every operand an input.  nnforge compiles
  static-shape graphs, and exporters emit these as constants, so they are bound as
  initializers from the case's test data.
* Inputs whose declared shape nnforge cannot resolve (a dynamic non-batch dimension, or no
  shape) get the shape of the test data through ``input_shapes``.

Each case runs as given (``AS_GIVEN``).  A case with more than one remaining input also
runs in the ``CONSTANTS`` variant, where every input after the first is an initializer with
its test-data value: that is how exported models carry weights, biases, BN statistics and
clip bounds, and it is the path through nnforge's own import and folding code (high-level
Clip/Pad, fold_batchnorm, normalize_dense) rather than TVM's generic converters.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

import nnforge
from nnforge.compiler.frontend.onnx_ops import SUPPORTED_OPS

# The float path compares float32 results of TVM's llvm build, not a bit-exact integer
# path: TVM fuses and reorders reductions (Conv, Gemm, pooling sums) and uses its own
# exp/tanh, so results differ from the numpy references by a few ulps, more where values
# cancel.  rtol=1e-4 allows a few hundred float32 ulps; atol=1e-5 covers results near zero,
# where relative error means nothing.
RTOL = 1e-4
ATOL = 1e-5

# Cases compared at the tolerance the ONNX suite itself declares for them (TestCase.rtol,
# .atol: rtol=1e-3 by default) instead of RTOL/ATOL, each with the reason.  Only cases whose
# expected data is too coarse for RTOL belong here, never a case nnforge gets wrong.
SUITE_TOLERANCE: dict[str, str] = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad": (
        "the expected output is written out by hand to 4 decimals (0.1511 for 0.15105554); "
        "onnxruntime and onnx.reference compute the same float32 values as nnforge"
    ),
}

CASE_OPS = SUPPORTED_OPS | {"Constant"}

# (op_type, input position) of operands that set shapes or modes rather than carry data.
STATIC_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Pad": (1, 2, 3),
    "ConstantOfShape": (0,),
    "Dropout": (1, 2),
}

# Messages of NNForgeErrors that reject a model on purpose, for a documented limit of
# nnforge (see compiler/frontend/onnx_ops.py and onnx_frontend.resolve_inputs).  Any other error fails.
_DELIBERATE_REJECTIONS = (
    "the model's ONNX opset must be between",
    "must be a fixed size, not the dynamic",
)

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
AS_GIVEN, CONSTANTS = "as given", "constants"


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one conformance case; ``reason`` is set unless it passed."""

    name: str
    ops: tuple[str, ...]
    status: str
    reason: str = ""
    variant: str = AS_GIVEN

    @property
    def label(self) -> str:
        return self.name if self.variant == AS_GIVEN else f"{self.name}-{self.variant}"


@dataclass(frozen=True)
class NodeCase:
    """One node test case: the model and its data sets of (inputs, expected outputs)."""

    name: str
    model: onnx.ModelProto
    data_sets: tuple[tuple[list, list], ...]
    suite_rtol: float = 1e-3  # the tolerance the ONNX suite declares for the case
    suite_atol: float = 1e-7

    @property
    def ops(self) -> tuple[str, ...]:
        return graph_ops(self.model)


def graph_ops(model: onnx.ModelProto) -> tuple[str, ...]:
    """Sorted op types of the model's nodes, domain-qualified outside the default domain."""
    return tuple(
        sorted(
            {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.graph.node}
        )
    )


@functools.cache
def selected_cases() -> tuple[NodeCase, ...]:
    """The node cases that test supported ops, in the loader's order."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators warn on purpose (overflow, log 0)
        tests = load_model_tests(kind="node")
    cases = []
    for test in tests:
        model = test.model if test.model is not None else onnx.load(os.path.join(test.model_dir, "model.onnx"))
        ops = graph_ops(model)
        if ops and set(ops) <= CASE_OPS:
            data = test.data_sets if test.data_sets is not None else _read_data_sets(test.model_dir)
            sets = tuple((list(i), list(o)) for i, o in data)
            cases.append(NodeCase(test.name, model, sets, test.rtol, test.atol))
    return tuple(cases)


def constants_variant_applies(case: NodeCase) -> bool:
    """Whether the CONSTANTS variant differs from the case as given (and is in scope)."""
    if skip_reason(case) or not case.data_sets:
        return False
    _, runtime = bind_static_operands(case.model, case.data_sets[0][0])
    return len(runtime) > 1


def _read_data_sets(model_dir: str) -> list[tuple[list, list]]:
    """test_data_set_*/input_*.pb and output_*.pb of an on-disk case (older onnx wheels)."""

    def read(path: str) -> np.ndarray:
        tensor = onnx.TensorProto()
        with open(path, "rb") as f:
            tensor.ParseFromString(f.read())
        return numpy_helper.to_array(tensor)

    def numbered(folder: str, kind: str) -> list[str]:
        paths = glob.glob(os.path.join(folder, f"{kind}_*.pb"))
        return sorted(paths, key=lambda p: int(os.path.basename(p)[len(kind) + 1 : -3]))

    sets = []
    for folder in sorted(glob.glob(os.path.join(model_dir, "test_data_set_*"))):
        sets.append(([read(p) for p in numbered(folder, "input")], [read(p) for p in numbered(folder, "output")]))
    return sets


@functools.cache
def cache_dir() -> str:
    """A per-process build cache, so the suite neither reads nor fills ~/.cache/nnforge."""
    path = tempfile.mkdtemp(prefix="nnforge-conformance-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def run_case(case: NodeCase, variant: str = AS_GIVEN) -> CaseResult:
    """Run one case through nnforge.load + Model.run and classify it."""

    def result(status: str, reason: str = "") -> CaseResult:
        return CaseResult(case.name, case.ops, status, reason, variant)

    reason = skip_reason(case)
    if reason:
        return result(SKIPPED, reason)
    for index, (inputs, expected) in enumerate(case.data_sets):
        where = f"data set {index}: " if len(case.data_sets) > 1 else ""
        model, runtime_inputs = bind_static_operands(case.model, inputs, all_but_first=variant == CONSTANTS)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = nnforge.load(model, input_shapes=_unresolved_shapes(model, runtime_inputs))
        except nnforge.NNForgeError as err:
            message = _one_line(err)
            if any(p in message for p in _DELIBERATE_REJECTIONS):
                return result(SKIPPED, f"nnforge rejects the model: {message}")
            return result(FAILED, f"{where}load: {type(err).__name__}: {message}")
        except Exception as err:  # noqa: BLE001 - any other exception is a bug to report
            return result(FAILED, f"{where}load: {type(err).__name__}: {_one_line(err)}")
        try:
            arrays = [runtime_inputs[spec.name] for spec in loaded.inputs]
            got = loaded.run(*arrays, cache_dir=cache_dir())
        except Exception as err:  # noqa: BLE001
            return result(FAILED, f"{where}run: {type(err).__name__}: {_one_line(err)}")
        rtol, atol = (case.suite_rtol, case.suite_atol) if case.name in SUITE_TOLERANCE else (RTOL, ATOL)
        mismatch = compare_outputs(loaded.output_names, got, expected, rtol, atol)
        if mismatch:
            return result(FAILED, where + mismatch)
    return result(PASSED)


def skip_reason(case: NodeCase) -> str:
    """Why the case is outside nnforge's float32 inference scope, or "" when it is inside."""
    model = case.model
    for vi in list(model.graph.input) + list(model.graph.output):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"{kind.removesuffix('_type')} inputs/outputs are outside nnforge's tensor scope"
    for node in model.graph.node:
        if node.op_type == "Dropout":
            if len([o for o in node.output if o]) > 1:
                return "Dropout mask output is a training output; nnforge strips Dropout for inference"
            if _training_dropout(node, model, case.data_sets):
                return "Dropout with training_mode=True and ratio > 0 draws a random mask (training only)"
        if node.op_type == "BatchNormalization":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("training_mode", 0) or len([o for o in node.output if o]) > 1:
                return "BatchNormalization training_mode=1 (batch statistics, running mean/var outputs)"
        if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
            return "MaxPool Indices output (int64 argmax) is outside the float path"
    static = _static_operand_names(model)
    for vi in model.graph.output:
        dtype = _dtype(vi)
        if dtype != "float32":
            return f"non-float32 dtype {dtype}: nnforge's float path computes float32"
    for vi in model.graph.input:
        dtype = _dtype(vi)
        if vi.name not in static and dtype != "float32":
            return f"non-float32 dtype {dtype}: nnforge's float path computes float32"
    return ""


def _training_dropout(node: onnx.NodeProto, model: onnx.ModelProto, data_sets) -> bool:
    """Whether a Dropout runs in training mode with a non-zero ratio in any data set."""
    if len(node.input) < 3 or not node.input[2]:
        return False
    for inputs, _ in data_sets:
        values = _input_values(model, inputs)
        training = bool(values.get(node.input[2], False))
        ratio = float(values.get(node.input[1], 0.5)) if len(node.input) > 1 and node.input[1] else 0.5
        if training and ratio > 0:
            return True
    return False


def _static_operand_names(model: onnx.ModelProto) -> set[str]:
    names = set()
    for node in model.graph.node:
        for pos in STATIC_OPERANDS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos]:
                names.add(node.input[pos])
    return names


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _input_values(model: onnx.ModelProto, inputs: Sequence) -> dict[str, np.ndarray]:
    """Test-data values by graph input name (the data follows the graph's input order)."""
    return {vi.name: np.asarray(v) for vi, v in zip(_graph_inputs(model), inputs)}


def bind_static_operands(
    model: onnx.ModelProto, inputs: Sequence, all_but_first: bool = False
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Turn shape-like graph inputs (or, with ``all_but_first``, every input after the first
    remaining one) into initializers; returns the model and the runtime inputs by name."""
    values = _input_values(model, inputs)
    static = _static_operand_names(model) & set(values)
    if all_but_first:
        static |= set([name for name in values if name not in static][1:])
    if not static:
        return model, values
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    keep = [vi for vi in bound.graph.input if vi.name not in static]
    del bound.graph.input[:]
    bound.graph.input.extend(keep)
    bound.graph.initializer.extend(numpy_helper.from_array(values[name], name) for name in sorted(static))
    return bound, {k: v for k, v in values.items() if k not in static}


def _unresolved_shapes(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]] | None:
    """Shapes from the test data for inputs whose declared shape nnforge cannot resolve."""
    shapes = {}
    for vi in _graph_inputs(model):
        tensor = vi.type.tensor_type
        dims = tensor.shape.dim
        unresolved = not tensor.HasField("shape") or any(
            not (d.HasField("dim_value") and d.dim_value > 0) for d in list(dims)[1:]
        )
        if unresolved and vi.name in values:
            shapes[vi.name] = tuple(values[vi.name].shape)
    return shapes or None


def compare_outputs(
    names: list[str],
    got: dict[str, np.ndarray],
    expected: Sequence[np.ndarray],
    rtol: float = RTOL,
    atol: float = ATOL,
) -> str:
    """"" when every output matches, else a one-line description of the first mismatch."""
    if len(got) != len(expected):
        return f"nnforge returned {len(got)} output(s), the case expects {len(expected)}"
    for name, want in zip(names, expected):
        have = np.asarray(got[name])
        want = np.asarray(want)
        if have.shape != want.shape:
            return f"output {name!r} has shape {list(have.shape)}, expected {list(want.shape)}"
        if have.dtype != want.dtype:
            return f"output {name!r} has dtype {have.dtype}, expected {want.dtype}"
        try:
            np.testing.assert_allclose(have, want, rtol=rtol, atol=atol)
        except AssertionError:
            return f"output {name!r} differs: {_mismatch_summary(have, want, rtol, atol)}"
    return ""


def _mismatch_summary(have: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str:
    h = have.astype(np.float64)
    w = want.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = ~np.isclose(h, w, rtol=rtol, atol=atol, equal_nan=True)
        diff = np.abs(h - w)[bad]
    return (
        f"{int(bad.sum())}/{bad.size} elements off by up to {np.nanmax(diff):.3g} "
        f"(rtol={rtol:g}, atol={atol:g})"
    )


def _dtype(vi: onnx.ValueInfoProto) -> str:
    return str(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
