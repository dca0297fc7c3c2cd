"""``auto`` bit widths: the narrowest widths whose quantization error stays small.

For each layer, and independently for its weights and its output activation, the
quantizer tries widths from 2 bits up to the config's maximum and keeps the first whose
signal-to-quantization-noise ratio reaches ``TARGET_SQNR_DB``:

* weights: SQNR of quantize-dequantize of the actual weights, with the layer's per-channel
  (or per-tensor) thresholds;
* activations: SQNR estimated from the calibration histogram of |x| (bin centres weighted by
  their counts), with the threshold the layer's calibration method picks at that width.

Each decision records the SQNR it reached and the SQNR one bit narrower, so reports can say
what was chosen and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .calibration import TensorStats, choose_threshold, quantize_dequantize
from .weight_calibration import weight_thresholds
from .quant_config import LayerQuant

TARGET_SQNR_DB = 30.0  # about 5 effective bits of signal above the quantization noise


@dataclass(frozen=True)
class WidthChoice:
    layer: str
    kind: str  # "weights" or "activations"
    bits: int
    sqnr_db: float
    narrower_sqnr_db: float | None

    def reason(self) -> str:
        why = f"{self.kind} {self.bits} bits: SQNR {self.sqnr_db:.1f} dB"
        if self.narrower_sqnr_db is None:
            return why + f" (>= {TARGET_SQNR_DB:g} dB target at the narrowest width)"
        if self.sqnr_db < TARGET_SQNR_DB:
            return why + f" (the maximum width; the {TARGET_SQNR_DB:g} dB target is not reached)"
        return why + f" >= {TARGET_SQNR_DB:g} dB target; {self.bits - 1} bits gives {self.narrower_sqnr_db:.1f} dB"


def _db(signal: float, noise: float) -> float:
    return math.inf if noise == 0 else (-math.inf if signal == 0 else 10 * math.log10(signal / noise))


def _pick(name: str, kind: str, max_bits: int, sqnr_at) -> WidthChoice:
    previous = None
    for bits in range(2, max_bits + 1):
        sqnr = sqnr_at(bits)
        if sqnr >= TARGET_SQNR_DB or bits == max_bits:
            return WidthChoice(name, kind, bits, sqnr, previous)
        previous = sqnr
    raise AssertionError("unreachable")


def weight_width(name: str, w: np.ndarray, lq: LayerQuant, axis: int) -> WidthChoice:
    moved = np.moveaxis(np.asarray(w, np.float64), axis, 0)
    signal = float(np.sum(moved * moved))
    method = "mse" if lq.calibration == "mse" else "minmax"

    def sqnr_at(bits: int) -> float:
        t = np.broadcast_to(weight_thresholds(moved, bits, lq.per_channel, method, axis=0), (moved.shape[0],))
        qmax = (1 << (bits - 1)) - 1
        scale = np.where(t > 0, t / qmax, 1.0).reshape((-1,) + (1,) * (moved.ndim - 1))
        err = moved - quantize_dequantize(moved, scale, bits, True)
        return _db(signal, float(np.sum(err * err)))

    return _pick(name, "weights", lq.weight_bits, sqnr_at)


def activation_width(name: str, stats: TensorStats, lq: LayerQuant, signed: bool) -> WidthChoice:
    counts, edges = stats.histogram
    centres = (edges[:-1] + edges[1:]) / 2
    signal = float(np.sum(counts * centres**2))

    def sqnr_at(bits: int) -> float:
        t = choose_threshold(stats, lq.calibration, bits, signed, lq.percentile)
        qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        scale = t / qmax if t > 0 else 1.0
        err = centres - quantize_dequantize(centres, scale, bits, False if not signed else True)
        return _db(signal, float(np.sum(counts * err * err)))

    return _pick(name, "activations", lq.act_bits, sqnr_at)
