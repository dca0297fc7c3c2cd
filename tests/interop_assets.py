"""Pre-quantized models for the interop tests, built with onnxruntime's own quantizer.

``ort_quantized(path, name, fmt)`` quantizes ``examples/digits_{name}.onnx`` with
``quantize_static`` (per-channel int8 weights, uint8 activations, the calibration set of
examples/digits_calib.npz) in the QDQ or QOperator form and writes it to ``path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from conftest import EXAMPLES


def digits_arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration x, test x, test y) in the model's input layout (the MLP takes 64 flat pixels)."""
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"]
    test = np.load(EXAMPLES / "digits_test.npz")
    shape = (-1, 64) if name == "mlp" else (-1, 1, 8, 8)
    return calib.reshape(shape), test["x"].reshape(shape), test["y"]


def digits_npz(directory: Path, name: str) -> tuple[Path, Path]:
    """calib.npz and test.npz (x, y) in the model's layout."""
    calib, x, y = digits_arrays(name)
    c, t = directory / f"{name}_calib.npz", directory / f"{name}_test.npz"
    np.savez(c, x=calib)
    np.savez(t, x=x, y=y)
    return c, t


def ort_quantized(path: Path, name: str, fmt: str = "QDQ", per_channel: bool = True) -> Path:
    from onnxruntime import quantization as q

    source = EXAMPLES / f"digits_{name}.onnx"
    input_name = onnx.load(str(source)).graph.input[0].name
    calib = digits_arrays(name)[0]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter([{input_name: calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self._it, None)

    q.quantize_static(str(source), str(path), Reader(), quant_format=getattr(q.QuantFormat, fmt),
                      per_channel=per_channel, weight_type=q.QuantType.QInt8, activation_type=q.QuantType.QUInt8)
    return path
