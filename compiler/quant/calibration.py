"""Calibration: choose the clipping threshold of each quantized tensor.

A quantized tensor is integer codes ``q`` with a scale ``s`` (real = ``q * s``, zero point 0;
see docs/numerics.md).  Calibration picks a threshold ``T >= 0`` per tensor, and the scale is
``T / qmax`` with the symmetric ``qmax = 2**(bits-1) - 1`` for signed tensors and
``2**bits - 1`` for unsigned ones (after ReLU).  In ``pow2`` mode the quantizer rounds that
scale up to a power of two with :func:`pow2_scale`.

Activations are seen one batch at a time: feed every batch of a tensor to one
:class:`TensorStats`, then call :func:`choose_threshold` with one of :data:`METHODS`.
Weights are at hand in full, so ``weight_calibration.weight_thresholds`` works on them directly,
per tensor or per output channel.

Pure numpy; nothing here needs TVM.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

METHODS = ("minmax", "percentile", "mse", "entropy")

# A tensor that was zero on every calibration value gets this pow2 scale: every value seen is
# exact (code 0), anything else saturates near 0, and 2**-24 is still a normal float32 and a
# 24-bit shift in hardware rather than an absurd one.
ZERO_RANGE_POW2_SCALE = 2.0**-24

_MSE_COARSE_CANDIDATES = 256
_ENTROPY_EPS = 1e-4  # in counts: what a zero bin becomes before the KL divergence


# --- quantization helpers ---------------------------------------------------------------------

def qmax_for(bits: int, signed: bool) -> int:
    """The largest code used to choose scales: ``2**(bits-1) - 1`` signed, else ``2**bits - 1``."""
    low = 2 if signed else 1
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not low <= bits <= 32:
        kind = "signed" if signed else "unsigned"
        raise ValueError(f"bits must be an integer from {low} to 32 for {kind} tensors, "
                         f"not {bits!r}")
    return 2 ** (int(bits) - 1) - 1 if signed else 2 ** int(bits) - 1


def quantize_dequantize(x: np.ndarray, scale: float | np.ndarray, bits: int,
                        signed: bool) -> np.ndarray:
    """``clip(floor(x / scale + 0.5)) * scale`` as float64: round half up, then saturate.

    Codes are clipped to ``[-2**(bits-1), 2**(bits-1) - 1]`` (signed) or ``[0, 2**bits - 1]``
    (unsigned).  ``scale`` may be an array that broadcasts against ``x`` (per channel).
    """
    top = qmax_for(bits, signed)
    lo, hi = (-top - 1, top) if signed else (0, top)
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(scale > 0):
        raise ValueError(f"scale must be positive, not {scale!r}")
    codes = np.clip(np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5), lo, hi)
    return codes * scale


def pow2_scale(threshold: float, qmax: int) -> float:
    """The smallest ``2**k`` with ``2**k * qmax >= threshold``.

    A threshold of 0 (the tensor was always zero) gives :data:`ZERO_RANGE_POW2_SCALE`.
    """
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, not {threshold!r}")
    if isinstance(qmax, bool) or not isinstance(qmax, (int, np.integer)) or qmax < 1:
        raise ValueError(f"qmax must be a positive integer, not {qmax!r}")
    if threshold == 0:
        return ZERO_RANGE_POW2_SCALE
    scale = math.ldexp(1.0, math.frexp(threshold / qmax)[1])
    # threshold / qmax was rounded; settle k on exact products (a power of two times an int).
    while scale * qmax < threshold:
        scale *= 2
    while scale / 2 * qmax >= threshold:
        scale /= 2
    return scale


def check_finite(x: np.ndarray, what: str) -> None:
    """A ValueError counting the NaNs and infinities in ``x`` (``what``: the data it names)."""
    finite = np.isfinite(x)
    if not finite.all():
        nan = int(np.isnan(x).sum())
        inf = x.size - int(finite.sum()) - nan
        raise ValueError(f"{what} must be finite, not contain {nan} NaN and {inf} Inf "
                         f"among {x.size} values")


# --- activation statistics --------------------------------------------------------------------

class TensorStats:
    """Streaming statistics of one activation tensor over many calibration batches.

    Keeps count, min, max, absmax and a histogram of ``|x|`` with a fixed number of bins over
    ``[0, absmax]``.  Old batches are never read again: when a batch raises absmax, the
    histogram so far is re-binned into the wider range assuming each old bin's count is spread
    evenly over the bin (like onnxruntime's HistogramCollector or TensorRT's calibrator).  So
    counts are floats; the total stays exact, and a re-binning moves a count by less than one
    new bin width.  Exact zeros are also counted: they always stay in bin 0.
    """

    def __init__(self, bins: int = 2048) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, not {bins!r}")
        self._counts = np.zeros(bins)
        self._top = 0.0  # the histogram's upper edge; always equal to absmax
        self._count = 0
        self._zeros = 0
        self._min = math.inf
        self._max = -math.inf

    def update(self, x: np.ndarray) -> None:
        """Accumulate one batch; NaN or Inf is a ValueError (the caller adds the tensor name)."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        check_finite(x, "calibration data")
        if x.size == 0:
            return
        # min, max and |x| are exact in the data's own float type; only the histogram needs float64
        a = np.abs(x).ravel()
        top = float(a.max())
        if top > self._top:
            self._rebin(top)
        zeros = int(a.size - np.count_nonzero(a))
        if self._top == 0.0:
            self._counts[0] += a.size
        else:
            # exact zeros always fall in bin 0: count them there and bin only the rest
            # (a ReLU output is about half zeros); the counts are the same as binning everything
            rest = a[a != 0] if zeros > a.size // 8 else a
            self._counts += np.histogram(rest.astype(np.float64), bins=self.bins, range=(0.0, self._top))[0]
            if rest.size != a.size:
                self._counts[0] += zeros
        self._count += int(x.size)
        self._zeros += zeros
        self._min = min(self._min, float(x.min()))
        self._max = max(self._max, float(x.max()))

    def _rebin(self, top: float) -> None:
        """Re-bin the counts so far from ``[0, self._top]`` into ``[0, top]``."""
        if self._top == 0.0:  # everything so far was exactly 0
            counts = np.zeros_like(self._counts)
            counts[0] = self._counts.sum()
        else:
            # The cumulative count is piecewise linear under "evenly spread within a bin".
            cum = np.concatenate([[0.0], np.cumsum(self._counts)])
            cum_at_new_edges = np.interp(self._edges(top), self._edges(self._top), cum)
            counts = np.maximum(np.diff(cum_at_new_edges), 0.0)  # no -1e-13 from rounding
        self._counts, self._top = counts, top

    def _edges(self, top: float) -> np.ndarray:
        return np.linspace(0.0, top, self.bins + 1)

    @property
    def bins(self) -> int:
        return len(self._counts)

    @property
    def count(self) -> int:
        """Number of values seen."""
        return self._count

    @property
    def zeros(self) -> int:
        """Number of values exactly 0 (all in histogram bin 0)."""
        return self._zeros

    @property
    def min(self) -> float:
        """Smallest value seen (+inf before any data)."""
        return self._min

    @property
    def max(self) -> float:
        """Largest value seen (-inf before any data)."""
        return self._max

    @property
    def absmax(self) -> float:
        """Largest ``|x|`` seen (0 before any data)."""
        return self._top

    @property
    def nonnegative(self) -> bool:
        """Whether every value seen is >= 0, so the tensor can be unsigned."""
        return self._min >= 0

    @property
    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` of ``|x|``: float counts, and edges from 0 to absmax."""
        return self._counts.copy(), self._edges(self._top)

    def state(self) -> dict[str, np.ndarray]:
        """Everything the statistics hold, as arrays (``from_state`` restores it exactly)."""
        return {"counts": self._counts.copy(),
                "scalars": np.array([self._top, self._min, self._max], dtype=np.float64),
                "totals": np.array([self._count, self._zeros], dtype=np.int64)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "TensorStats":
        """The statistics ``state()`` described (an on-disk cache entry, ``nnforge/quant_cache.py``)."""
        stats = cls(len(state["counts"]))
        stats._restore(state)
        return stats

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self._counts = np.asarray(state["counts"], dtype=np.float64).copy()
        self._top, self._min, self._max = (float(v) for v in state["scalars"])
        self._count, self._zeros = (int(v) for v in state["totals"])


# --- threshold selection for activations ------------------------------------------------------

def choose_threshold(stats: TensorStats, method: str, bits: int, signed: bool,
                     percentile: float = 99.99) -> float:
    """The clipping threshold ``T`` for a tensor, by one of :data:`METHODS`.

    ``minmax``: absmax (max, for unsigned).  ``percentile``: that percentile of ``|x|``.
    ``mse``: the threshold minimizing the expected quantize-dequantize squared error.
    ``entropy``: TensorRT's KL-divergence calibration.  Details in ``_minmax``, ``_percentile``,
    ``_mse`` and ``_entropy``.
    Unsigned needs nonnegative data, since the histogram is of ``|x|``.
    """
    if method not in _METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, not {method!r}")
    qmax_for(bits, signed)
    if stats.count == 0:
        raise ValueError("calibration statistics must hold data before choosing a threshold, "
                         "not be empty (update() was never called)")
    if not signed and not stats.nonnegative:
        raise ValueError(f"data quantized as unsigned must be nonnegative, not reach "
                         f"{stats.min!r}; calibrate the tensor after its ReLU or quantize it "
                         "as signed")
    if method == "percentile" and not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
    if stats.absmax == 0:
        return 0.0
    return float(_METHODS[method](stats, bits, signed, percentile))


def _minmax(stats: TensorStats, bits: int, signed: bool, percentile: float) -> float:
    return stats.absmax if signed else stats.max


def _percentile(stats: TensorStats, bits: int, signed: bool, percentile: float) -> float:
    """Interpolates linearly within the histogram bin where the cumulative count crosses."""
    counts, edges = stats.histogram
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    target = percentile / 100 * cum[-1]
    j = min(max(int(np.searchsorted(cum, target, side="left")), 1), len(counts))
    inside = counts[j - 1]
    frac = (target - cum[j - 1]) / inside if inside > 0 else 1.0
    return float(edges[j - 1] + min(max(frac, 0.0), 1.0) * (edges[j] - edges[j - 1]))


def _mse(stats: TensorStats, bits: int, signed: bool, percentile: float) -> float:
    """Search thresholds on the bin edges: a coarse geometric grid, then every edge near its best.

    The geometric grid (every edge near 0, about 3% apart near absmax) finds optima far below
    absmax as well as near it; the refinement tries every edge between the best's neighbours.
    """
    counts, edges = _nonzero_histogram(stats)
    qmax = qmax_for(bits, signed)
    coarse = np.unique(np.rint(np.geomspace(1, len(counts), _MSE_COARSE_CANDIDATES)).astype(int))
    best = coarse[np.argmin(_expected_sq_error(edges[coarse], counts, edges, qmax))]
    k = int(np.searchsorted(coarse, best))
    fine = np.arange(coarse[max(k - 1, 0)], coarse[min(k + 1, len(coarse) - 1)] + 1)
    return float(edges[fine[np.argmin(_expected_sq_error(edges[fine], counts, edges, qmax))]])


def _expected_sq_error(thresholds: np.ndarray, counts: np.ndarray, edges: np.ndarray,
                       qmax: int) -> np.ndarray:
    """Total squared quantize-dequantize error of the histogrammed values, per threshold.

    Exact if values are spread evenly within each bin: a bin's error is the integral of the
    squared error over it, the difference of an antiderivative at its edges, times count/width.
    Below ``c = T + s/2`` the error is the rounding sawtooth ``v - s*round(v/s)``, whose square
    integrates to ``s**3 * (m/12 + t**3/3)`` from 0 to ``v = s*(m + t)``, ``m = round(v/s)``.
    Beyond ``c`` the code saturates at qmax and the error is ``v - T``.  The histogram is of
    ``|x|``, so negative values are modelled as clipping at ``-T`` too (the extra negative code
    ``-(qmax+1)`` is ignored, a slight overestimate of their clipping error).
    """
    t_ = thresholds[:, None]
    s = t_ / qmax
    c = t_ + s / 2
    u = np.minimum(edges, c) / s
    m = np.floor(u + 0.5)
    t = u - m
    beyond = np.maximum(edges - t_, s / 2)  # s/2 (no clipping error yet) up to c
    antiderivative = s**3 * (m / 12 + t * t * t / 3) + (beyond * beyond * beyond - (s / 2) ** 3) / 3
    return (np.diff(antiderivative, axis=1) @ counts) / (edges[1] - edges[0])


def _entropy(stats: TensorStats, bits: int, signed: bool, percentile: float) -> float:
    """TensorRT's entropy calibration: the threshold whose clipped-and-quantized histogram
    loses least information (minimum KL divergence) against the clipped reference.

    Levels are ``2**(bits-1)`` signed (the |x| half of the range) or ``2**bits`` unsigned.
    With more levels than half the bins (signed bits >= 12, unsigned >= 11 with 2048 bins) there
    is almost nothing to merge, clipping gains nothing measurable, and it falls back to minmax.
    """
    counts, edges = _nonzero_histogram(stats)
    levels = 2 ** (bits - 1) if signed else 2**bits
    if levels > len(counts) // 2:
        return _minmax(stats, bits, signed, percentile)
    divergences = [_clipped_kl(counts, i, levels) for i in range(levels, len(counts) + 1)]
    return float(edges[levels + int(np.argmin(divergences))])


def _nonzero_histogram(stats: TensorStats) -> tuple[np.ndarray, np.ndarray]:
    """The histogram without the exact zeros.

    Zero point 0 makes 0.0 exact at every threshold, so exact zeros (half of a ReLU output)
    neither cost error nor carry information about the threshold.  Left in, their spike in bin
    0 dominates the KL divergence and drags ``entropy`` to small thresholds (e.g. 8-bit
    unsigned, 200k ReLU'd standard normals: T = 1.65 with zeros, 4.40 without; absmax 4.41).
    """
    counts, edges = stats.histogram
    counts[0] = max(counts[0] - stats.zeros, 0.0)
    return counts, edges


def _clipped_kl(counts: np.ndarray, i: int, levels: int) -> float:
    """KL(P || Q) for the threshold at edge ``i``.

    P: the first ``i`` bins, with every count beyond them added to the last one.  Q: the same
    ``i`` bins (without the outliers) merged into ``levels`` groups of ``i // levels`` bins (the
    last group takes the remainder), then expanded back by spreading each group's count evenly
    over the group's bins that are nonzero in P.
    """
    kept = counts[:i]
    p = kept.copy()
    p[-1] += counts[i:].sum()
    nonzero = p > 0
    group = np.minimum(np.arange(i) // (i // levels), levels - 1)
    merged = np.bincount(group, weights=kept, minlength=levels)
    occupied = np.bincount(group, weights=nonzero, minlength=levels)
    q = np.where(nonzero, merged[group] / np.maximum(occupied[group], 1), 0.0)
    p, q = _smooth(p), _smooth(q)
    return float(np.sum(p * np.log(p / q)))


def _smooth(counts: np.ndarray) -> np.ndarray:
    """Normalize to a distribution after giving zero bins a tiny count, so KL stays finite."""
    counts = np.where(counts > 0, counts, _ENTROPY_EPS)
    return counts / counts.sum()


_METHODS: dict[str, Callable[[TensorStats, int, bool, float], float]] = {
    "minmax": _minmax, "percentile": _percentile, "mse": _mse, "entropy": _entropy,
}


class ActivationStats(TensorStats):
    """``TensorStats`` plus the running mean of each channel (axis 1), for bias correction."""

    def __init__(self, bins: int = 2048) -> None:
        super().__init__(bins)
        self._channel_sum: np.ndarray | None = None
        self._per_channel = 0

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        x = np.asarray(x)
        if x.ndim < 2:
            return
        axes = tuple(i for i in range(x.ndim) if i != 1)
        s = x.astype(np.float64).sum(axis=axes)
        self._channel_sum = s if self._channel_sum is None else self._channel_sum + s
        self._per_channel += x.size // x.shape[1]

    def state(self) -> dict[str, np.ndarray]:
        out = super().state()
        if self._channel_sum is not None:
            out["channel_sum"] = np.asarray(self._channel_sum, dtype=np.float64)
        out["totals"] = np.append(out["totals"], self._per_channel)
        return out

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        totals = np.asarray(state["totals"])
        super()._restore({**state, "totals": totals[:2]})
        self._per_channel = int(totals[2]) if len(totals) > 2 else 0
        self._channel_sum = np.asarray(state["channel_sum"], np.float64).copy() if "channel_sum" in state else None

    @property
    def channel_mean(self) -> np.ndarray | None:
        """Mean of each channel over every calibration sample and position; None for 1-D data."""
        return None if self._channel_sum is None else self._channel_sum / self._per_channel
