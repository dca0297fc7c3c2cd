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


def ort_quantized(path: Path, name: str, fmt: str = "QDQ", per_channel: bool = True, activations: str = "QUInt8",
                  weights: str = "QInt8", source: Path | None = None) -> Path:
    """``quantize_static`` of the digits model (or ``source``); 16-bit types convert it to opset 21
    first, the first opset whose QuantizeLinear/DequantizeLinear take them."""
    from onnx import version_converter
    from onnxruntime import quantization as q

    source = source or EXAMPLES / f"digits_{name}.onnx"
    if "16" in activations + weights:
        converted = path.with_name(path.stem + "_opset21.onnx")
        onnx.save(version_converter.convert_version(onnx.load(str(source)), 21), converted)
        source = converted
    input_name = onnx.load(str(source)).graph.input[0].name
    calib = digits_arrays(name)[0]

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter([{input_name: calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self._it, None)

    q.quantize_static(str(source), str(path), Reader(), quant_format=getattr(q.QuantFormat, fmt),
                      per_channel=per_channel, weight_type=getattr(q.QuantType, weights),
                      activation_type=getattr(q.QuantType, activations))
    return path


def mlp_without_relu(path: Path) -> Path:
    """The digits MLP with its second Relu removed: a hidden tensor with negative values, which
    onnxruntime quantizes with an asymmetric zero point (neither 0 nor the container's middle)."""
    m = onnx.load(str(EXAMPLES / "digits_mlp.onnx"))
    relu = next(n for n in m.graph.node if n.op_type == "Relu" and n.name == "/net/net.4/Relu")
    for n in m.graph.node:
        for i, t in enumerate(n.input):
            if t == relu.output[0]:
                n.input[i] = relu.input[0]
    m.graph.node.remove(relu)
    onnx.save(m, path)
    return path


def integer_ops_model(path: Path, seed: int = 0) -> Path:
    """ConvInteger and MatMulInteger in the static pattern, on the digits input [N, 1, 8, 8]:

    x -Q(1/16, u8)-> ConvInteger(W1 int8 [8,1,3,3], pad 1) -Cast-Mul(sx*sw1, per channel)-Add(b1)-Relu
      -Q(s1, u8)-> Flatten -> MatMulInteger(W2 int8 [512,10]) -Cast-Mul(s1*sw2)-Add(b2) -Q/DQ(s2, int8)-> logits

    Weights are seeded random codes; the activation scales come from the float model's own ranges
    on the calibration images, so codes use their range without saturating everywhere."""
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    calib = digits_arrays("cnn")[0]
    w1 = rng.integers(-127, 128, (8, 1, 3, 3))
    sw1 = rng.uniform(0.004, 0.012, 8)
    w2 = rng.integers(-127, 128, (512, 10))
    sw2 = rng.uniform(0.0005, 0.0015, 10)
    b1, b2 = rng.normal(0, 0.2, 8), rng.normal(0, 0.5, 10)
    sx = 1 / 16  # the pixels are multiples of 1/16 in [0, 1]: float32-exact codes 0..16

    def conv_float(x):  # float forward of layer 1 on the calibration images, for its output scale
        xp = np.pad(np.floor(x / sx + 0.5) * sx, ((0, 0), (0, 0), (1, 1), (1, 1)))
        cols = np.stack([xp[:, 0, i:i + 8, j:j + 8] for i in range(3) for j in range(3)], -1)
        return np.maximum(cols @ (w1 * sw1[:, None, None, None]).reshape(8, 9).T + b1, 0).transpose(0, 3, 1, 2)

    h = conv_float(calib)
    s1 = float(np.float32(h.max() / 255))
    logits = np.floor(h / s1 + 0.5).clip(0, 255).reshape(len(h), -1) * s1 @ (w2 * sw2) + b2
    s2 = float(np.float32(np.abs(logits).max() / 127))
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(v, k) for k, v in {
        "sx": f32(sx), "zx": np.uint8(0), "w1": w1.astype(np.int8), "c1": f32(sx * sw1).reshape(1, 8, 1, 1),
        "b1": f32(b1).reshape(1, 8, 1, 1), "s1": f32(s1), "z1": np.uint8(0), "w2": w2.astype(np.int8),
        "c2": f32(s1 * sw2), "b2": f32(b2), "s2": f32(s2), "z2": np.int8(0)}.items()]
    nodes = [helper.make_node("QuantizeLinear", ["input", "sx", "zx"], ["xq"], name="quant_input"),
             helper.make_node("ConvInteger", ["xq", "w1", "zx"], ["acc1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Cast", ["acc1"], ["acc1_f"], name="cast1", to=TP.FLOAT),
             helper.make_node("Mul", ["acc1_f", "c1"], ["y1"], name="scale1"),
             helper.make_node("Add", ["y1", "b1"], ["z1_f"], name="bias1"),
             helper.make_node("Relu", ["z1_f"], ["r1"], name="relu1"),
             helper.make_node("QuantizeLinear", ["r1", "s1", "z1"], ["q1"], name="quant1"),
             helper.make_node("Flatten", ["q1"], ["q1_flat"], name="flatten"),
             helper.make_node("MatMulInteger", ["q1_flat", "w2", "z1"], ["acc2"], name="fc"),
             helper.make_node("Cast", ["acc2"], ["acc2_f"], name="cast2", to=TP.FLOAT),
             helper.make_node("Mul", ["acc2_f", "c2"], ["y2"], name="scale2"),
             helper.make_node("Add", ["y2", "b2"], ["y2_b"], name="bias2"),
             helper.make_node("QuantizeLinear", ["y2_b", "s2", "z2"], ["q2"], name="quant_logits"),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["logits"], name="dequant_logits")]
    graph = helper.make_graph(nodes, "integer_ops", [helper.make_tensor_value_info("input", TP.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TP.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path
