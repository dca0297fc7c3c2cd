"""Interop with the ONNX quantization ecosystem: QDQ models (QuantizeLinear/DequantizeLinear).

* ``export_qdq(qmodel, path)`` writes the float ONNX graph of a quantized model with a
  QuantizeLinear/DequantizeLinear pair on every tensor nnforge quantizes and the weights and
  biases as DequantizeLinear of integer initializers, so onnxruntime (or any QDQ consumer)
  runs nnforge's quantization (``qdq_export.py``).
* ``import_qdq(model)`` reads a QDQ model (e.g. from ``onnxruntime.quantization.
  quantize_static(..., quant_format=QuantFormat.QDQ)``), strips the pairs to recover the float
  graph (dequantized weights as float initializers) and returns the activations'
  scale / zero point / type (``qdq_import.py``; ``QDQParam``: ``qdq_params.py``).
* ``nnforge_scales`` maps those onto nnforge's contract (zero point always 0);
  ``nnforge.interop.quantize_with_scales`` builds a quantized model that keeps them.
* ``compare_with_onnxruntime`` measures how closely onnxruntime runs an exported model
  (``ort_compare.py``).

This module is the QDQ side's one import; ``docs/interop.md`` documents the mapping and where
onnxruntime and nnforge differ.
"""

from __future__ import annotations

from .onnx_names import onnx_tensor_names
from .ort_compare import Agreement, compare_with_onnxruntime
from .qdq_export import export_qdq
from .qdq_import import QDQWeight, StrippedQDQ, import_qdq, nnforge_scales, strip_qdq
from .qdq_params import CONTAINERS, ZERO_POINT_MODES, QDQParam

__all__ = [
    "QDQParam", "Agreement", "export_qdq", "import_qdq", "onnx_tensor_names", "nnforge_scales",
    "compare_with_onnxruntime", "ZERO_POINT_MODES", "CONTAINERS", "QDQWeight", "StrippedQDQ", "strip_qdq",
]
