"""Hand a quantized model to another tool: ``nnforge.export(qmodel, path, "qonnx" | "qdq")``.

* ``qonnx``: ``Quant`` nodes (``qonnx.custom_op.general``) on weights, biases and activations,
  what FINN, hls4ml and qonnx's executor read (``compiler/interop/qonnx_export.py``); ``nnforge.load``
  reads it back into the same ``QGraph``.
* ``qdq``: ``QuantizeLinear``/``DequantizeLinear`` pairs, what onnxruntime and TensorRT read
  (``compiler/interop/qdq.py: export_qdq``).

docs/interop.md says what each format keeps exactly and where its runtime computes differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nnforge.compiler.errors import InputError

if TYPE_CHECKING:
    import onnx

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
