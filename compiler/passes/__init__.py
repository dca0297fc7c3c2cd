"""Graph passes.  The cleanup pipeline is the one list below, run top to bottom."""

from __future__ import annotations

from ..frontend.relax_utils import IRModule
from .fold_batchnorm import fold_batchnorm
from .fold_constants import fold_constants
from .normalize_dense import normalize_dense
from .strip_training import strip_training

CLEANUP = [
    strip_training,  # dropout(x)[0] -> x; batch_norm(training=True) -> inference form
    fold_constants,  # ConstantOfShape weights, reshaped biases, transposed Gemm weights -> constants
    fold_batchnorm,  # batch_norm(conv(x, W) + b) -> conv(x, W') + b'; lone BN -> x * s + t
    normalize_dense,  # Gemm, MatMul, MatMul+Add -> matmul(x, W[K, N]) + b[N]
    fold_constants,  # whatever the rewrites left constant
]


def cleanup(mod: IRModule) -> IRModule:
    """Run the cleanup pipeline on an imported float module."""
    for p in CLEANUP:
        mod = p(mod)
    return mod
