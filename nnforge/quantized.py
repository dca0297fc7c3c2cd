"""Quantized models: the facade over calibration and quantization, the integer module, and
bit-accurate simulation.

The compiler does the work (``compiler/quant/calibrate.py`` batches the data and folds it into
statistics, ``compiler/quant/quantize.py`` builds the graph); this module adds what a Python user
holds: the TVM build of the traced float model (``FloatTrace``, passed to the compiler as its
tracer), the on-disk cache (``quant_cache.py``), and ``QuantizedModel``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnforge.compiler.lower import executor
from nnforge.compiler import reference
from nnforge.compiler.quant.calibrate import (WEIGHTED_OPS, Progress, batch_size_for, batched_specs, batches,
                                              check_divisible, collect_stats, collect_tensors, fixed_batch)
from nnforge.compiler.quant.calibration import TensorStats
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.layers import FloatLayer, float_layers, tensor_names, traced_module
from nnforge.compiler.qgraph import QGraph, apply_host_ops
from nnforge.compiler.compress.compress_config import CompressConfig, parse_prune_config
from nnforge.compiler.quant.quant_config import QuantConfig, parse_config
from nnforge.model import Model


class FloatTrace:
    """The float model compiled to return every layer's output (calibration, SQNR)."""

    def __init__(self, model: Model, layers: list[FloatLayer]):
        self.model, self.layers = model, layers
        # cached on disk like the model itself: calibration, simulate and every sweep point share one build
        self._compiled = executor.build(traced_module(model.relax, layers), model.inputs, [l.name for l in layers],
                                        fingerprint=model.fingerprint + b"/trace")

    def __call__(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every layer's float output by layer name (names are unique; Relax var names are not)."""
        outs = self._compiled(arrays)
        return {layer.name: o for layer, o in zip(self.layers, outs)}


def calibrate(model: Model, arrays: list[np.ndarray], layers: list[FloatLayer] | None = None,
              batch_size: int = 256, progress: Progress = None, cache: bool = True) -> dict[str, TensorStats]:
    """Statistics of every model input and every layer output over the calibration data, by
    tensor name: the input's name, or the layer's name (``FloatLayer.name``).

    ``cache``: reuse (and keep) the statistics of the same model, layers, data and batch size
    from the on-disk cache (``nnforge/quant_cache.py``)."""
    from nnforge import quant_cache

    layers = layers if layers is not None else float_layers(model.relax, model.output_names, model.onnx_names)[0]
    arrays = executor.check_inputs(batched_specs(model.inputs), arrays)
    batch_size = batch_size_for(model.inputs, batch_size)
    check_divisible(arrays, batch_size, model.inputs)
    n = len(arrays[0])
    key = quant_cache.stats_key(model, layers, arrays, batch_size) if cache else None
    wanted = [s.name for s in model.inputs] + [l.name for l in layers]
    cached = quant_cache.load_stats(key) if key else None
    if cached is not None and sorted(cached) == sorted(wanted):
        if progress:
            progress(n, n)
        return cached
    stats = collect_stats([s.name for s in model.inputs], arrays, batch_size, FloatTrace(model, layers), progress)
    if key:
        quant_cache.save_stats(key, stats)
    return stats


@dataclass
class QuantizedModel:
    """A float model, its quantized graph, and the integer Relax module lowered from it."""

    float_model: Model
    graph: QGraph
    _layers: list[FloatLayer] | None  # None: the float model's, found on first use (load_quantized)
    config: QuantConfig
    compress: CompressConfig | None = None  # pruning / weight sharing applied before quantization
    _compiled: object = field(default=None, repr=False)

    @property
    def layers(self) -> list[FloatLayer]:
        """The float layers the graph was quantized from (compressed ones when quantized here)."""
        if self._layers is None:
            m = self.float_model
            self._layers = float_layers(m.relax, m.output_names, m.onnx_names)[0]
        return self._layers

    @property
    def relax(self):
        from nnforge.compiler.lower.lower_relax import lower

        return lower(self.graph)

    def compile(self):
        if self._compiled is None:
            from nnforge.compiler.lower.lower_relax import lower

            # the CPU simulation form: same codes as ``self.relax``, cheaper arithmetic (lower_relax);
            # cached on disk under a digest of every number in the graph and the lowering's source
            self._compiled = executor.build(lower(self.graph, fast=True), [], [],
                                            fingerprint=_graph_fingerprint(self.graph)).vm
        return self._compiled

    def _call(self, fname: str, codes: list[np.ndarray]) -> list[np.ndarray]:
        return executor.call(self.compile(), fname, codes)

    def integer_outputs(self, codes: list[np.ndarray]) -> list[np.ndarray]:
        """Every graph output's codes from the TVM integer build, for input codes (one per input)."""
        return self._call("main", codes)

    def quantize_inputs(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.graph.quantize_inputs(executor.check_inputs(batched_specs(self.float_model.inputs), arrays))

    def trace(self, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every node's output codes from the TVM integer build."""
        return dict(zip(self.graph.node_outputs(), self._call("trace", codes)))

    def reference(self, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor's codes from the numpy reference interpreter."""
        return reference.run(self.graph, codes)

    def predict(self, arrays: list[np.ndarray], batch_size: int = 256, progress: Progress = None) -> dict[str, np.ndarray]:
        """Dequantized outputs of the integer model over a dataset (host softmax applied)."""
        inputs = self.float_model.inputs
        arrays = executor.check_inputs(batched_specs(inputs), arrays)
        batch_size = batch_size_for(inputs, batch_size)
        check_divisible(arrays, batch_size, inputs)
        chunks = []
        n = len(arrays[0])
        for start, batch in batches(arrays, batch_size):
            codes = self.graph.quantize_inputs(batch)
            chunks.append(self._call("main", codes))
            if progress:
                progress(min(start + batch_size, n), n)
        outs = {}
        for i, name in enumerate(self.graph.outputs):
            real = host_outputs(self.graph, name, np.concatenate([c[i] for c in chunks]), fixed_batch(inputs))
            outs[self.float_model.output_names[i]] = real.astype(np.float32)
        return outs


def host_outputs(graph: QGraph, name: str, codes: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Output ``name``'s codes dequantized, with the host ops after it (softmax, reshape).

    A model with a fixed batch B runs its host ops on B samples at a time, as it runs
    everything else: their reshapes name B (``(1, 1000)``), so any multiple of B may be given."""
    real = graph.dequantize(name, codes)
    if batch is None or len(real) == batch or not graph.host_ops:
        return apply_host_ops(graph.host_ops, real)
    parts = [apply_host_ops(graph.host_ops, real[s:s + batch]) for s in range(0, len(real), batch)]
    return np.concatenate(parts) if parts else real


def _graph_fingerprint(graph: QGraph) -> bytes:
    """A digest of the whole quantized graph (structure, types, scales, every array attribute)
    and of the code that lowers it, for the build cache."""
    import hashlib
    import json

    from nnforge.compiler.lower import exact_narrowing, lower_relax
    from nnforge.compiler import qgraph_io

    doc, arrays = qgraph_io.to_files(graph)
    h = hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    for module in (lower_relax, exact_narrowing):
        h.update(Path(module.__file__).read_bytes())
    return b"qgraph/" + h.hexdigest().encode()


def quantize(model: Model, calib: list[np.ndarray] | None, config=None, batch_size: int = 256,
             progress: Progress = None, stats: dict[str, TensorStats] | None = None,
             fixed_scales: dict[str, float] | None = None,
             compress: CompressConfig | dict | None = None, cache: bool = True) -> QuantizedModel:
    """Calibrate ``model`` on ``calib`` (arrays, one per input) and build its integer model.

    ``stats`` (from ``calibrate``) skips calibration, e.g. across the points of a sweep;
    ``fixed_scales`` pins activation scales by tensor name (imported QDQ models).
    ``compress`` prunes and shares weights between calibration and quantization
    (docs/compression.md); its ``lsq`` refinement reads ``calib`` (given with ``stats`` too).
    ``cache``: a graph quantized before from the same model, data and settings is reused from the
    on-disk cache, and a new one is kept there (``nnforge/quant_cache.py``); so are statistics.
    """
    from nnforge import quant_cache
    from nnforge.compiler.compress.compress import compress_layers
    from nnforge.compiler.quant.quantize import quantize_model

    if getattr(model, "prequantized", None) is not None:  # QDQ / QOperator / QONNX: keep what it carries
        from nnforge.compiler.interop.prequant_graph import quantize_prequantized

        graph, layers, cfg = quantize_prequantized(
            model, calib, config, progress, stats, compress,
            calibrate=lambda layers: calibrate(model, calib, layers, batch_size, progress, cache=cache))
        return QuantizedModel(model, graph, layers, cfg, None)
    cfg = parse_config(config)
    comp = parse_prune_config(compress)
    layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
    key = None
    if stats is None:
        if calib is None:
            raise InputError("quantization needs calibration data (or precomputed statistics)")
        calib = executor.check_inputs(batched_specs(model.inputs), calib)
        if cache:
            stats_part = quant_cache.stats_key(model, layers, calib, batch_size_for(model.inputs, batch_size))
            key = quant_cache.graph_key(stats_part, cfg, comp, fixed_scales)
            hit = quant_cache.load_graph(key)
            if hit is not None:  # layers: the float model's, as load_quantized gives them
                graph, notes = hit
                for note in notes:  # what quantizing it warned about, as if it ran again
                    warnings.warn(note, UserWarning, stacklevel=2)
                if progress:
                    progress(len(calib[0]), len(calib[0]))
                return QuantizedModel(model, graph, layers, cfg, comp)
        stats = calibrate(model, calib, layers, batch_size, progress, cache=cache)
    decisions: list[str] = []
    with warnings.catch_warnings(record=True) as caught:  # kept with the cached graph, raised below
        warnings.simplefilter("always", UserWarning)
        if comp is not None:
            traced = _traced_inputs(model, layers, calib, batch_size) if calib is not None else None
            layers, decisions = compress_layers(layers, host, cfg, comp, traced)
        graph = quantize_model(layers, host, model.inputs, stats, cfg, model.output_names, fixed_scales)
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    graph.decisions += decisions
    if key:
        quant_cache.save_graph(key, graph, notes)
    return QuantizedModel(model, graph, layers, cfg, comp)


def _traced_inputs(model: Model, layers: list[FloatLayer], calib: list[np.ndarray], batch_size: int,
                   samples: int = 512) -> dict[str, np.ndarray]:
    """The model inputs and every weighted layer's float input over the first calibration samples,
    by tensor name (``layers.tensor_names``)."""
    arrays = executor.check_inputs(batched_specs(model.inputs), calib)
    batch_size = batch_size_for(model.inputs, batch_size)
    n = len(arrays[0]) if fixed_batch(model.inputs) is not None else min(len(arrays[0]), samples)
    names = tensor_names(model.relax["main"], layers, [s.name for s in model.inputs])
    needed = {names[l.inputs[0]] for l in layers if l.op in WEIGHTED_OPS and l.inputs}
    return collect_tensors([s.name for s in model.inputs], [a[:n] for a in arrays], batch_size,
                           FloatTrace(model, layers), needed)


def saved_files(qmodel: QuantizedModel) -> dict[str, bytes]:
    """The files ``save`` writes, by name (layout: compiler/qgraph_io.py); byte-identical for the
    same model, so projects that embed them are deterministic too."""
    import json

    from nnforge.compiler import qgraph_io

    files = qgraph_io.graph_files(qmodel.graph)
    files["model.onnx"] = qmodel.float_model.onnx.SerializeToString()
    files["config.json"] = json.dumps(
        {"config": qmodel.config.to_dict(),
         "compress": None if qmodel.compress is None else qmodel.compress.to_dict(),
         "decisions": list(qmodel.graph.decisions),
         "input_shapes": {s.name: list(s.shape) for s in qmodel.float_model.inputs}}, indent=1, sort_keys=True
    ).encode()
    return files


def save(qmodel: QuantizedModel, out: str | Path, force: bool = False, inputs=()) -> None:
    """Save a quantized model to directory ``out`` (see compiler/qgraph_io.py for the layout).

    ``force`` replaces only a directory nnforge wrote, never one holding the float model's file
    or any of ``inputs`` (compiler/output_tree.py)."""
    from nnforge.compiler import qgraph_io

    source = getattr(qmodel.float_model, "source", "")
    protected = list(inputs) + ([source] if source and Path(source).is_file() else [])
    qgraph_io.save_dir(Path(out), saved_files(qmodel), force, inputs=protected)


def load_quantized(directory: str | Path) -> QuantizedModel:
    """Reload a model saved by ``save`` / ``nnforge quantize -o``; the graph is identical."""
    import json

    from nnforge.compiler import qgraph_io
    from nnforge.compiler.frontend.onnx_frontend import read_model
    from nnforge.model import load

    directory = Path(directory)
    graph = qgraph_io.read_graph(directory)  # InputErrors name qgraph.json / qgraph.npz
    config_path = directory / "config.json"
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        shapes = {k: tuple(v) for k, v in meta["input_shapes"].items() if all(isinstance(d, int) for d in v)}
        config, compress = meta["config"], meta.get("compress")
        decisions = list(meta.get("decisions", []))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"{str(config_path)!r} must be the config nnforge saved, not unreadable "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None
    # lazily: compiling the saved model needs no Relax import (seconds for ResNet-50); simulating does
    model = load(read_model(directory / "model.onnx"), shapes or None, lazy=True)
    graph.decisions = decisions
    return QuantizedModel(model, graph, None, parse_config(config), parse_prune_config(compress))
