"""Hand a quantized model to another tool: ``nnforge.export(qmodel, path, "qonnx" | "qdq")``.

* ``qonnx``: ``Quant`` nodes (``qonnx.custom_op.general``) on weights, biases and activations,
  what FINN, hls4ml and qonnx's executor read (``compiler/interop/qonnx_export.py``); ``nnforge.load``
  reads it back into the same ``QGraph``.
* ``qdq``: ``QuantizeLinear``/``DequantizeLinear`` pairs, what onnxruntime and TensorRT read
  (``compiler/interop/qdq.py: export_qdq``).

``quantize_with_scales`` quantizes a float model keeping the activation scales a QDQ model gave
(``compiler/interop/qdq.py: import_qdq``).

docs/interop.md says what each format keeps exactly and where its runtime computes differently.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnforge.compiler.errors import InputError

if TYPE_CHECKING:
    import onnx

    from nnforge.compiler.interop.qdq import QDQParam
    from nnforge.compiler.quant.numerics import QType
    from nnforge.model import Model
    from nnforge.quantized import QuantizedModel

EXPORT_FORMATS = ("qonnx", "qdq")


def export(qmodel: QuantizedModel, path: str | Path | None = None, format: str = "qonnx"):  # noqa: A002
    """Write ``qmodel`` as a ``format`` ONNX model at ``path`` (when given) and return the ModelProto."""
    if format == "qonnx":
        from nnforge.compiler.interop.qonnx_export import export_qonnx

        return export_qonnx(qmodel, path)
    if format == "qdq":
        from nnforge.compiler.interop.qdq import export_qdq

        return export_qdq(qmodel, path)
    raise InputError(f"the export format must be one of {', '.join(EXPORT_FORMATS)}, not {format!r}")


def exported_bytes(qmodel: QuantizedModel, format: str) -> bytes:  # noqa: A002
    """The serialized export (``export`` without a file), for writing next to a saved model."""
    model: onnx.ModelProto = export(qmodel, None, format)
    return model.SerializeToString()


def quantize_with_scales(model: Model, calib: list[np.ndarray], scales: dict[str, QDQParam | tuple[QType, float]],
                         config=None, zero_point: str = "recentre", batch_size: int = 256) -> QuantizedModel:
    """Quantize ``model`` keeping the given activation types and scales (e.g. from ``import_qdq``).

    ``scales`` is keyed by ONNX tensor name (``QDQParam``, or ``(QType, scale)``).  Every
    requantizing layer whose output has an entry gets that scale (``quantize(...,
    fixed_scales=...)``) and that type (a per-layer ``act_bits``/``act_signed`` override added
    to ``config``); a model input gets the scale, its type comes from the config and the
    calibration data as usual.  Pass-through layers (max pool, reshape, ...) copy their input's
    parameters and a concat's inputs take the concat's, as always.  Weights, biases and the
    requantization multipliers follow from the scales; tensors ``scales`` leaves out are
    calibrated on ``calib``.  An imported parameter that the result does not keep is named in
    a warning.
    """
    from nnforge.compiler.interop.qdq import nnforge_scales
    from nnforge.compiler.quant.quant_config import QuantConfig, parse_config
    from nnforge.quantized import calibrate, quantize

    cfg = parse_config(config)
    stats = calibrate(model, calib, batch_size=batch_size)
    # a first build, only to learn the layers under the names the quantizer gives them
    layers = quantize(model, None, cfg, batch_size=batch_size, stats=stats).layers
    fixed = nnforge_scales(model, scales, layers, zero_point)
    overrides = {name: dict(values) for name, values in cfg.layers.items()}
    for layer in layers:
        if layer.name in fixed:
            qtype, _ = fixed[layer.name]
            overrides.setdefault(layer.name, {}).update(act_bits=qtype.bits, act_signed=qtype.signed)
    cfg = QuantConfig(default=cfg.default, op_types=cfg.op_types, layers=overrides, auto=cfg.auto)
    qmodel = quantize(model, None, cfg, batch_size=batch_size, stats=stats,
                      fixed_scales={name: scale for name, (_, scale) in fixed.items()})
    lost = [f"{name} ({t.qtype}, {t.scale:.6g} instead of {fixed[name][0]}, {fixed[name][1]:.6g})"
            for name, t in qmodel.graph.tensors.items()
            if name in fixed and (t.qtype, t.scale) != fixed[name]]
    if lost:
        warnings.warn("these imported activation parameters were not kept: " + "; ".join(lost), stacklevel=2)
    return qmodel
