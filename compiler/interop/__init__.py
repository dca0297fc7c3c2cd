"""The ONNX quantization ecosystem: QDQ, QOperator and QONNX models in and out."""
