"""nnforge.compiler: ONNX frontend, graph passes, numerics and executors."""
