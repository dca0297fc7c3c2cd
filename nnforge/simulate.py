"""Bit-accurate accuracy simulation of a quantized model over a dataset.

Everything runs batched through TVM builds: the float model (traced, for per-layer error)
and the integer model (``trace``).  Accuracy and agreement cover every sample; the per-layer
SQNR covers the first ``sqnr_samples`` (default 512): past them only the float logits and the
integer ``main`` run, which is several times faster than tracing every layer of both models.
With ``check=True`` every sample is traced, the numpy reference runs on the same input codes
and every traced tensor is compared code by code.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, field

import numpy as np

from nnforge.compiler.quant.calibration import TensorStats
from nnforge.compiler.quant.layers import tensor_names
from nnforge.model import Model
from nnforge.compiler.quant.calibrate import Progress, batch_size_for, batched_specs, batches, check_divisible
from nnforge.quantized import FloatTrace, QuantizedModel, quantize


@dataclass
class LayerError:
    name: str
    op: str
    qtype: str
    scale: float
    sqnr_db: float


@dataclass
class SimulationReport:
    samples: int
    config: str
    calibration: str
    float_accuracy: float | None
    quant_accuracy: float | None
    agreement: float
    layers: list[LayerError] = field(default_factory=list)
    sqnr_samples: int = 0  # the per-layer SQNR covers the first sqnr_samples samples
    host_ops: list[dict] = field(default_factory=list)
    reference_mismatches: int | None = None
    auto_decisions: list[str] = field(default_factory=list)
    compression: dict | None = None  # settings, per-layer sparsity/codebook size (when compressed)
    prequantized: dict | None = None  # a pre-quantized model against its own runtime (compiler/interop/prequant_compare.py)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.compression is None:
            d.pop("compression")
        for layer in d["layers"]:  # JSON has no infinity: an exact layer has no error to report
            if not math.isfinite(layer["sqnr_db"]):
                layer["sqnr_db"] = None
        if self.reference_mismatches is None:
            d.pop("reference_mismatches")
        if self.prequantized is None:
            d.pop("prequantized")
        return d


def split_calibration(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Without separate calibration data, the first 10% of the data (32 to 512 samples) calibrates."""
    n = len(arrays[0])
    k = min(512, max(32, n // 10), n)
    return [a[:k] for a in arrays], arrays, k


SQNR_SAMPLES = 512


_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {layer names: FloatTrace}


def _float_trace(model: Model, layers) -> FloatTrace:
    """``FloatTrace(model, layers)``, loaded once per model and layer list in this process
    (sweeps and repeated runs skip even the build cache's library load)."""
    per_model = _TRACES.setdefault(model, {})
    key = tuple(l.name for l in layers)
    if key not in per_model:
        per_model[key] = FloatTrace(model, layers)
    return per_model[key]


def _logits(model: Model, qmodel: QuantizedModel, name: str) -> FloatTrace | None:
    """The float model returning only layer ``name`` (the logits before a host softmax), or None."""
    layer = next((l for l in qmodel.layers if l.name == name), None)
    return None if layer is None else _float_trace(model, [layer])


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def simulate(
    model: Model, data: list[np.ndarray], labels: np.ndarray | None, config=None,
    calib: list[np.ndarray] | None = None, check: bool = False, batch_size: int = 256,
    progress: Progress = None, stats: dict[str, TensorStats] | None = None, compress=None,
    sqnr_samples: int | None = SQNR_SAMPLES, qmodel: QuantizedModel | None = None,
) -> tuple[QuantizedModel, SimulationReport]:
    """Quantize ``model`` (pruned and shared first with ``compress``) and measure it against
    the float model on ``data``.  Per-layer SQNR over the first ``sqnr_samples`` samples
    (``None``: all of them); accuracy and agreement over all.  ``qmodel``: measure this
    quantized model of ``model`` instead of quantizing (its build is reused)."""
    from nnforge.compiler.errors import InputError
    from nnforge.compiler.lower.executor import check_inputs

    data = check_inputs(batched_specs(model.inputs), list(data))  # dtype, shape, samples: before any work
    if labels is not None and (np.ndim(labels) != 1 or len(labels) != len(data[0])):
        raise InputError(f"labels must be 1-D with one label per sample ({len(data[0])}), "
                         f"not shape {list(np.shape(labels))}")
    pre = getattr(model, "prequantized", None)
    if qmodel is not None:
        calib_note = "the given quantized model's"
    elif pre is not None:  # the model carries its quantization; calib only for layers it leaves float
        calib_note = (f"none: the {pre.format} model carries its quantization"
                      + (f" ({len(calib[0])} calibration samples for float layers)" if calib is not None else ""))
    elif calib is None and stats is None:
        calib, _, k = split_calibration(data)
        calib_note = f"first {k} samples of the test data (no --calib given)"
    else:
        calib_note = "precomputed statistics" if calib is None else f"{len(calib[0])} calibration samples"
    if qmodel is None:
        qmodel = quantize(model, calib, config, batch_size, stats=stats, compress=compress)
    batch_size = batch_size_for(model.inputs, batch_size)
    check_divisible(data, batch_size, model.inputs)
    graph = qmodel.graph
    trace = _float_trace(model, qmodel.layers)
    float_var = {layer.name: layer.name for layer in qmodel.layers}  # node -> its float layer (trace keys)
    compared = [n for n in graph.node_outputs() if n in float_var]
    # structured pruning removed channels: compare the float model's kept channels only
    kept = {n.output: n.attrs.kept_channels for n in graph.nodes if n.attrs.kept_channels is not None}
    signal = dict.fromkeys(compared, 0.0)
    noise = dict.fromkeys(compared, 0.0)
    mismatches = 0 if check else None
    out_name = graph.outputs[0]
    if graph.host_ops:  # the float tensor the integer output stands for: the host softmax's input
        first_host = next(l for l in qmodel.layers if l.name == graph.host_ops[0].name)
        last_float = tensor_names(model.relax["main"], qmodel.layers, [s.name for s in model.inputs])[first_host.inputs[0]]
    else:
        last_float = float_var[out_name]
    f_pred, q_pred = [], []
    n = len(data[0])
    traced = n if check or sqnr_samples is None else min(n, sqnr_samples)
    logits = _logits(model, qmodel, last_float) if traced < n else None
    if logits is None:
        traced = n
    for start, batch in batches(data, batch_size):
        codes = graph.quantize_inputs(batch)
        if start >= traced:  # past the SQNR samples: the outputs only
            f_pred.append(logits(batch)[last_float].reshape(len(batch[0]), -1).argmax(1))
            q_pred.append(qmodel.integer_outputs(codes)[0].reshape(len(batch[0]), -1).argmax(1))
            if progress:
                progress(min(start + batch_size, n), n)
            continue
        f_vals = trace(batch)
        q_vals = qmodel.trace(codes)
        rows = min(len(batch[0]), traced - start)
        for name in compared:
            f = f_vals[float_var[name]][:rows]
            if name in kept:
                f = np.take(f, kept[name], axis=1)
            f = f.astype(np.float64).ravel()
            d = q_vals[name][:rows].astype(np.float64).ravel()
            d *= graph.tensors[name].scale  # dequantized, as graph.dequantize; then the error, in place
            d -= f
            signal[name] += float(f @ f)
            noise[name] += float(d @ d)
        if check:
            ref = qmodel.reference(codes)
            mismatches += sum(int(np.count_nonzero(q_vals[k].astype(np.int64) != ref[k])) for k in q_vals)
        f_pred.append(f_vals[last_float].reshape(len(batch[0]), -1).argmax(1))
        q_pred.append(q_vals[out_name].reshape(len(batch[0]), -1).argmax(1))
        if progress:
            progress(min(start + batch_size, n), n)
    f_pred, q_pred = np.concatenate(f_pred), np.concatenate(q_pred)
    layers = []
    for node in graph.nodes:
        if node.output in signal:
            t = graph.tensors[node.output]
            layers.append(LayerError(node.name, node.op, str(t.qtype), t.scale, _sqnr(signal[node.output], noise[node.output])))
    report = SimulationReport(
        samples=n,
        config=qmodel.config.describe(),
        calibration=calib_note,
        float_accuracy=None if labels is None else float(np.mean(f_pred == labels)),
        quant_accuracy=None if labels is None else float(np.mean(q_pred == labels)),
        agreement=float(np.mean(f_pred == q_pred)),
        layers=layers,
        sqnr_samples=traced,
        host_ops=[asdict(h) for h in graph.host_ops],
        reference_mismatches=mismatches,
        auto_decisions=list(graph.decisions),
        compression=None if qmodel.compress is None else compression_summary(qmodel),
    )
    if pre is not None and qmodel.float_model is model:
        from nnforge.compiler.interop.prequant_compare import compare

        report.config = f"pre-quantized ({pre.format}), kept as carried"
        report.prequantized = compare(qmodel, data, labels, q_pred, batch_size=batch_size)
    return qmodel, report


def compression_summary(qmodel: QuantizedModel) -> dict:
    """The compression settings and, per weighted layer, its zeros and codebook size."""
    layers = []
    for node in qmodel.graph.nodes:
        if node.op in ("conv2d", "dense"):
            w = node.attrs.weight
            layers.append({"name": node.name, "params": int(w.size), "nonzeros": int(np.count_nonzero(w)),
                           "pruned_sparsity": node.attrs.pruned_sparsity,
                           "codebook_size": len(node.attrs.codebook) if node.attrs.codebook is not None else None,
                           "shape": list(w.shape)})
    return {"settings": qmodel.compress.to_dict(), "describe": qmodel.compress.describe(), "layers": layers}


__all__ = ["simulate", "compression_summary", "SimulationReport", "LayerError", "split_calibration"]
