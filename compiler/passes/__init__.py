"""Graph passes, and the map of the whole pipeline.

``PIPELINE`` is the order in which a model goes through nnforge, one stage a line, each naming
the function that runs it (module path, resolved by ``tests/test_passes.py``).  The stages run
in three calls of the facade: ``nnforge.load`` (import, cleanup), ``nnforge.quantize``
(calibrate, prune/share, quantize) and ``nnforge.compile_model`` (lower, partition, codegen).
``CLEANUP`` below is the cleanup stage itself, run top to bottom.
"""

from __future__ import annotations

PIPELINE: list[tuple[str, str]] = [
    ("import", "nnforge.compiler.frontend.relax_import:import_onnx"),  # checked ONNX -> float Relax (TVM's importer)
    ("cleanup", "nnforge.compiler.passes:cleanup"),  # CLEANUP below: Dropout/Identity, BN folding, constants
    ("group", "nnforge.compiler.quant.layers:float_layers"),  # Relax bindings -> FloatLayer (anchor + fused bias/act)
    ("calibrate", "nnforge.compiler.quant.calibrate:collect_stats"),  # traced float run -> per-tensor statistics
    ("prune/share", "nnforge.compiler.compress.compress:compress_layers"),  # magnitude pruning, k-means codebooks
    ("quantize", "nnforge.compiler.quant.quantize:quantize_model"),  # FloatLayer + stats + config -> QGraph (op table)
    ("lower", "nnforge.compiler.lower.lower_relax:lower"),  # QGraph -> integer Relax module, the model of record
    ("partition", "nnforge.backends.partition:partition"),  # the op table's patterns -> kernels + host items
    ("codegen", "nnforge.backends.base:Backend.codegen"),  # each kernel -> sources through jinja2 templates
]

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
