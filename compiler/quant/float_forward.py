"""Float execution of one ``FloatLayer`` in numpy, for the data-aware compression passes.

The compression pass fits each layer to the float model's outputs using the inputs the
*compressed* layers before it produce, so it runs the layers it has already changed (whose
weights, biases and shapes differ from the Relax module's).  Each op's float function is its
``OpSpec.float_forward`` (compiler/ops/), float64; the fused activation clamp is applied here.
"""

from __future__ import annotations

import numpy as np

from .layers import FloatLayer
from ..ops import OPS


def _act(layer: FloatLayer, y: np.ndarray) -> np.ndarray:
    lo, hi = layer.act
    return np.clip(y, lo, hi) if (lo is not None or hi is not None) else y


def run_layer(layer: FloatLayer, xs: list[np.ndarray]) -> np.ndarray:
    """The layer's float output (activation clamp included) for inputs ``xs``."""
    spec = OPS.get(layer.op)
    if spec is None or spec.float_forward is None:
        raise NotImplementedError(f"no float form for {layer.op}")
    return _act(layer, spec.float_forward(layer.attrs, [np.asarray(x, np.float64) for x in xs]))
