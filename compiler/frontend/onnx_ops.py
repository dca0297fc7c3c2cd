"""The ONNX operator set nnforge accepts (float path).

One table, so the frontend check, the docs and the conformance tests agree.
"""

from __future__ import annotations

# Compute and structure ops, as listed in the foundation issue.
SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "Conv", "Gemm", "MatMul",
        "Add", "Sub", "Mul", "Div", "Sum",
        "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softmax",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Pad",
        "BatchNormalization", "Dropout", "Identity", "Constant", "ConstantOfShape", "LRN",
    }
)

# Besides these, any op TVM can import is accepted where it computes only on constants
# and shapes (x.view(x.size(0), -1), pads computed by an exporter): it folds away during
# import.  See onnx_frontend.check_supported_ops.

# Opsets of the default ONNX domain that nnforge imports. Below 9 the TVM importer's
# converters do not match the old operator semantics (e.g. BatchNormalization spatial,
# Upsample); above the installed onnx's newest opset the checker cannot validate the model.
MIN_OPSET = 9
