"""The user-facing model object: ``nnforge.load(path)`` returns a ``Model``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx

from nnforge.compiler.lower import executor
from nnforge.compiler.frontend import onnx_frontend
from nnforge.compiler.errors import InputError, ModelError
from nnforge.compiler.spelling import option
from nnforge.compiler.frontend.onnx_frontend import BATCH, TensorSpec
from nnforge.console import plain_tvm_show

plain_tvm_show()  # model.relax.show() into a pipe or a file: no ANSI colour codes


class Model:
    """An imported, cleaned-up float model.

    Attributes:
        onnx: the ONNX model as given.
        inputs: resolved input specs (only the batch dimension may be symbolic).
        output_names: the ONNX graph's output names, in order.
        relax: the cleaned float Relax module (after the cleanup pipeline).
    """

    def __init__(self, proto: onnx.ModelProto, inputs: list[TensorSpec], relax_mod, source: str, importer=None):
        self.onnx = proto
        self.inputs = inputs
        self.output_names = [o.name for o in proto.graph.output]
        self._relax = relax_mod
        self._importer = importer  # () -> (relax module, onnx_names), run on first use when relax_mod is None
        self.source = source
        self._onnx_names: dict[str, str] = {}  # Relax var name -> ONNX node name
        self._compiled = None
        # what a pre-quantized model (QDQ, QOperator, QONNX) carries; None for a float model
        self.prequantized = None
        self._fingerprint = hashlib.sha256(
            proto.SerializeToString(deterministic=True)
            + repr([(s.name, s.shape, s.dtype) for s in inputs]).encode()
        ).digest()

    @property
    def fingerprint(self) -> bytes:
        """A digest of the ONNX model and its input specs: the key of its builds and cached statistics."""
        return self._fingerprint

    @property
    def relax(self):
        """The cleaned float Relax module (imported on first use by a lazily loaded model)."""
        if self._relax is None:
            self._relax, self._onnx_names = self._importer()
            self._importer = None
        return self._relax

    @relax.setter
    def relax(self, mod) -> None:
        self._relax = mod

    @property
    def onnx_names(self) -> dict[str, str]:
        """Relax var name -> ONNX node name."""
        if self._relax is None:
            self.relax  # noqa: B018  (imports the model)
        return self._onnx_names

    @onnx_names.setter
    def onnx_names(self, names: dict[str, str]) -> None:
        self._onnx_names = names

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        return f"<nnforge.Model {self.source} inputs=({ins}) outputs={self.output_names}>"

    def compile(self, cache_dir: str | Path | None = None) -> executor.CompiledModule:
        """Build (or load from the cache) the llvm executable of the float module."""
        if self._compiled is None:
            self._compiled = executor.build(
                self.relax, self.inputs, self.output_names, self._fingerprint, cache_dir
            )
        return self._compiled

    def run(self, *arrays: np.ndarray, cache_dir: str | Path | None = None, **named: np.ndarray) -> dict[str, np.ndarray]:
        """Run the float model: positional arrays in input order, or keyword arrays by input name."""
        if named:
            if arrays:
                raise TypeError("pass inputs either positionally or by name, not both")
            missing = [s.name for s in self.inputs if s.name not in named]
            extra = [k for k in named if k not in {s.name for s in self.inputs}]
            if missing or extra:
                raise ModelError(
                    f"inputs must be named {[s.name for s in self.inputs]}, not {sorted(named)}"
                )
            arrays = tuple(named[s.name] for s in self.inputs)
        checked = executor.check_inputs(self.inputs, list(arrays), allow_empty=True)
        outs = self.compile(cache_dir)(checked)
        return dict(zip(self.output_names, outs))

    def predict(
        self, arrays: list[np.ndarray] | np.ndarray, batch_size: int = 256, progress=None
    ) -> dict[str, np.ndarray]:
        """Run over a whole dataset in batches; outputs are concatenated along axis 0.

        ``arrays``: one array per input, in input order; a single-input model also takes the bare
        array (as ``run``, ``Project.predict`` and ``verify`` do).

        With a symbolic batch dimension, up to ``batch_size`` samples go in one call; with a
        fixed batch B, the data is cut into chunks of B.  ``progress(done, total)`` is called
        after each batch.
        """
        checked = executor.check_inputs(
            [TensorSpec(s.name, (BATCH,) + s.shape[1:], s.dtype) for s in self.inputs], arrays
        )
        n = len(checked[0])
        if any(len(a) != n for a in checked):
            raise InputError(f"all inputs must have the same number of samples, not {[len(a) for a in checked]}")
        fixed = self.inputs[0].shape[0]
        step = fixed if isinstance(fixed, int) else max(1, batch_size)
        if isinstance(fixed, int) and n % step:
            raise InputError(
                f"the model's batch dimension is fixed at {step}, so the number of samples must be "
                f"a multiple of {step}, not {n}; re-import with {option('input_shape')} to change it"
            )
        compiled = self.compile()
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, step):
            chunks.append(compiled([a[start : start + step] for a in checked]))
            if progress is not None:
                progress(min(start + step, n), n)
        return {
            name: np.concatenate([c[i] for c in chunks]) for i, name in enumerate(self.output_names)
        }

    def summary(self):
        """Per-layer op, shapes, parameter count and MACs (``nnforge inspect``)."""
        from nnforge.compiler.frontend.summary import summarize

        return summarize(self.relax, self.output_names, self.onnx_names)


def load(
    source: str | Path | onnx.ModelProto,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    max_elements: int | None = None,
    lazy: bool = False,
) -> Model:
    """Read, validate and import an ONNX model, then run the cleanup pipeline.

    Args:
        source: a path to an ``.onnx`` file, or an ``onnx.ModelProto``.
        input_shapes: fixed shapes by input name; only the batch dimension may be left
            symbolic without one.
        max_elements: the most values one tensor may hold (declared, folded or imported);
            default ``compiler.limits.DEFAULT_MAX_ELEMENTS`` (2^28).
        lazy: import into Relax (the costly part: seconds for ResNet-50) only when ``relax`` is
            first used; for a model known to import, e.g. the one a saved quantized model holds.
    """
    from nnforge.compiler.frontend import limits

    if lazy:
        proto, carried = _strip_prequantized(onnx_frontend.read_model(source))
        specs = onnx_frontend.resolve_inputs(proto, input_shapes)

        def importer():
            with limits.element_cap(max_elements):
                model = _load(proto, input_shapes)
            return model.relax, model.onnx_names

        name = str(source) if not isinstance(source, onnx.ModelProto) else (proto.graph.name or "<ModelProto>")
        model = Model(proto, specs, None, name, importer)
        model.prequantized = carried
        return model
    with limits.element_cap(max_elements):
        return _load(source, input_shapes)


def _strip_prequantized(proto: onnx.ModelProto):
    """``(float model, Prequantized)`` for a pre-quantized model (compiler/interop/prequant.py), else
    ``(proto, None)``."""
    from nnforge.compiler.errors import NNForgeError
    from nnforge.compiler.interop.prequant import detect_format, read_prequantized

    try:
        found = read_prequantized(proto)
    except NNForgeError:
        raise
    except Exception as err:  # noqa: BLE001 - a malformed graph fails in onnx or numpy; name the cause
        raise ModelError(f"the pre-quantized ({detect_format(proto)}) model must be well formed, not "
                         f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    return (proto, None) if found is None else found


def _load(source, input_shapes) -> Model:
    from nnforge.compiler.frontend import relax_import
    from nnforge.compiler.frontend.onnx_fold import fold_constant_nodes
    from nnforge.compiler.passes import cleanup

    proto, carried = _strip_prequantized(onnx_frontend.read_model(source))
    onnx_frontend.check_model(proto)
    onnx_frontend.warn_nonfinite(proto)
    specs = onnx_frontend.resolve_inputs(proto, input_shapes)
    fixed = fold_constant_nodes(onnx_frontend.with_input_shapes(proto, specs))
    shapes = {s.name: list(s.shape) for s in specs if all(isinstance(d, int) for d in s.shape)}
    dtypes = {s.name: s.dtype for s in specs}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown dimension shapes.*")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the importer prints on failure
                mod, names = relax_import.import_onnx(fixed, shapes, dtypes, onnx_frontend.model_opset(proto))
        except Exception as err:  # noqa: BLE001 - TVM raises many types; name the cause
            raise ModelError(
                f"TVM's ONNX importer could not import the model (opset "
                f"{onnx_frontend.model_opset(proto)}): {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err
    relax_import.check_tensor_sizes(mod, names)  # before cleanup folds (allocates) constants
    name = str(source) if not isinstance(source, onnx.ModelProto) else (proto.graph.name or "<ModelProto>")
    model = Model(proto, specs, cleanup(mod), name)
    model.onnx_names = names
    model.prequantized = carried
    return model
