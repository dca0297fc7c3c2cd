"""ONNX in: read and check the model, import it into Relax (the TVM adapter), summarise it."""
