"""Calibration: statistics, threshold methods and weight thresholds, against numpy oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnforge.compiler.quant.calibration import (
    METHODS,
    ZERO_RANGE_POW2_SCALE,
    TensorStats,
    choose_threshold,
    pow2_scale,
    qmax_for,
    quantize_dequantize,
)
from nnforge.compiler.quant.weight_calibration import weight_thresholds


def stats_of(*batches: np.ndarray, bins: int = 2048) -> TensorStats:
    stats = TensorStats(bins)
    for batch in batches:
        stats.update(batch)
    return stats


def qdq_mse(x: np.ndarray, threshold: float, bits: int, signed: bool) -> float:
    """Measured quantization error on the data itself."""
    q = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return float(np.mean((quantize_dequantize(x, threshold / q, bits, signed) - x) ** 2))


def brute_force_best_mse(x: np.ndarray, bits: int, signed: bool, points: int = 600) -> float:
    top = float(np.abs(x).max())
    return min(qdq_mse(x, t, bits, signed) for t in np.linspace(top / points, top, points))


@pytest.fixture
def gaussian_with_outliers(rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal(100_000)
    x[:10] = rng.choice([-1.0, 1.0], 10) * rng.uniform(40, 60, 10)
    return x


@pytest.fixture
def laplacian(rng: np.random.Generator) -> np.ndarray:
    return rng.laplace(size=100_000)


# --- helpers ----------------------------------------------------------------------------------

def test_quantize_dequantize_rounds_half_up_and_saturates():
    x = np.array([-10.0, -1.0, -0.25, 0.24, 0.25, 0.74, 0.75, 10.0])
    # scale 0.5, 3-bit signed codes in [-4, 3]: x/s + 0.5 = -19.5 -1.5 0 .98 1 1.98 2 20.5
    expected = np.array([-4, -2, 0, 0, 1, 1, 2, 3]) * 0.5
    np.testing.assert_array_equal(quantize_dequantize(x, 0.5, 3, True), expected)
    # unsigned 3-bit codes in [0, 7]
    expected_u = np.array([0, 0, 0, 0, 1, 1, 2, 7]) * 0.5
    np.testing.assert_array_equal(quantize_dequantize(x, 0.5, 3, False), expected_u)
    # per-channel scales broadcast
    w = np.array([[1.0, -1.0], [1.0, -1.0]])
    np.testing.assert_array_equal(quantize_dequantize(w, np.array([[0.5], [0.25]]), 3, True),
                                  [[1.0, -1.0], [0.75, -1.0]])


def test_qmax_for():
    assert qmax_for(8, True) == 127
    assert qmax_for(8, False) == 255
    assert qmax_for(4, True) == 7
    assert qmax_for(1, False) == 1
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 32 for signed"):
        qmax_for(1, True)
    with pytest.raises(ValueError, match="not 8.0"):
        qmax_for(8.0, True)


def test_pow2_scale_is_the_smallest_power_of_two_covering_the_threshold(rng):
    assert pow2_scale(1.0, 127) == 2.0**-6  # 2^-7 * 127 = 0.992 < 1
    assert pow2_scale(127 / 128, 127) == 2.0**-7  # exactly representable: no rounding up
    assert pow2_scale(508.0, 127) == 4.0
    assert pow2_scale(0.0, 127) == ZERO_RANGE_POW2_SCALE
    assert math.log2(ZERO_RANGE_POW2_SCALE).is_integer() and ZERO_RANGE_POW2_SCALE < 1e-6
    for t in rng.lognormal(0, 5, 200):
        s = pow2_scale(float(t), 255)
        assert math.log2(s).is_integer()
        assert s * 255 >= t > s / 2 * 255
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        pow2_scale(-1.0, 127)


# --- statistics -------------------------------------------------------------------------------

def test_stats_track_count_extremes_zeros_and_histogram():
    stats = stats_of(np.array([[-3.0, 0.0], [1.0, 2.5]]), np.array([0.0, -0.5]))
    assert stats.count == 6
    assert (stats.min, stats.max, stats.absmax) == (-3.0, 2.5, 3.0)
    assert stats.zeros == 2
    assert not stats.nonnegative
    counts, edges = stats.histogram
    assert counts.shape == (2048,) and edges.shape == (2049,)
    assert edges[0] == 0.0 and edges[-1] == 3.0
    assert counts.sum() == pytest.approx(6)
    assert stats_of(np.array([0.0, 1.0])).nonnegative


def test_batches_within_the_range_add_exact_counts(rng):
    a, b = rng.standard_normal(5000) * 4, rng.standard_normal(5000)
    b = b[np.abs(b) <= np.abs(a).max()]
    stats = stats_of(a, b, bins=256)
    oracle = np.histogram(np.abs(np.concatenate([a, b])), 256, range=(0, np.abs(a).max()))[0]
    np.testing.assert_array_equal(stats.histogram[0], oracle)


def test_rebinning_matches_one_batch_within_two_bin_widths(rng):
    small = rng.uniform(-1, 1, 50_000)
    wide = rng.standard_normal(50_000) * 3
    two = stats_of(small, wide)
    one = stats_of(np.concatenate([small, wide]))
    assert two.count == one.count == 100_000
    assert two.absmax == one.absmax
    assert two.histogram[0].sum() == pytest.approx(100_000, rel=1e-12)
    width = one.absmax / 2048
    everything = np.abs(np.concatenate([small, wide]))
    for p in (10, 50, 90, 99, 99.9):
        t_two = choose_threshold(two, "percentile", 8, True, percentile=p)
        assert t_two == pytest.approx(choose_threshold(one, "percentile", 8, True, percentile=p),
                                      abs=2 * width)
        assert t_two == pytest.approx(np.percentile(everything, p), abs=2 * width)


def test_rebinning_after_all_zero_batches_keeps_the_zeros_in_bin_0():
    stats = stats_of(np.zeros(10), np.array([4.0, -2.0]), bins=4)
    counts, edges = stats.histogram
    np.testing.assert_allclose(counts, [10, 0, 1, 1])
    np.testing.assert_array_equal(edges, [0, 1, 2, 3, 4])
    assert stats.zeros == 10


def test_nan_and_inf_raise_and_leave_the_stats_unchanged():
    stats = stats_of(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="must be finite, not contain 1 NaN and 0 Inf"):
        stats.update(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="0 NaN and 2 Inf"):
        stats.update(np.array([np.inf, -np.inf, 100.0]))
    assert (stats.count, stats.absmax) == (2, 2.0)
    with pytest.raises(ValueError, match="weights must be finite"):
        weight_thresholds(np.array([[np.nan, 1.0]]), 8, per_channel=True)


# --- activation thresholds --------------------------------------------------------------------

def test_minmax_on_a_known_array():
    assert choose_threshold(stats_of(np.array([-3.0, 1.0, 2.5])), "minmax", 8, True) == 3.0
    assert choose_threshold(stats_of(np.array([0.0, 1.0, 2.5])), "minmax", 8, False) == 2.5


def test_percentile_of_a_ramp():
    x = np.arange(1, 10_001, dtype=np.float64)
    stats = stats_of(x)
    width = 10_000 / 2048
    for p in (50, 99, 99.99):
        assert choose_threshold(stats, "percentile", 8, True, percentile=p) == pytest.approx(
            np.percentile(x, p), abs=width)
    assert choose_threshold(stats, "percentile", 8, True, percentile=100) == 10_000


def test_mse_clips_outliers_and_beats_minmax_at_4_bits(gaussian_with_outliers):
    x = gaussian_with_outliers
    stats = stats_of(*np.array_split(x, 10))
    t_mse = choose_threshold(stats, "mse", 4, True)
    assert t_mse < 0.2 * stats.absmax
    e_mse, e_minmax = qdq_mse(x, t_mse, 4, True), qdq_mse(x, stats.absmax, 4, True)
    assert e_mse < 0.5 * e_minmax
    assert e_mse <= 1.02 * brute_force_best_mse(x, 4, True)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_mse_is_near_the_best_threshold_found_on_the_data(rng, bits):
    # Unsigned (ReLU output, half exact zeros): the error model has no signed asymmetry here.
    x = np.maximum(rng.standard_normal(50_000), 0.0)
    t = choose_threshold(stats_of(x), "mse", bits, False)
    assert qdq_mse(x, t, bits, False) <= 1.005 * brute_force_best_mse(x, bits, False)


def test_entropy_on_a_laplacian_clips_at_8_bits(laplacian):
    x = laplacian
    stats = stats_of(x)
    t = choose_threshold(stats, "entropy", 8, True)
    assert np.percentile(np.abs(x), 99) < t < stats.absmax
    assert qdq_mse(x, t, 8, True) < qdq_mse(x, stats.absmax, 8, True)


def reference_entropy_threshold(counts: np.ndarray, edges: np.ndarray, levels: int) -> float:
    """TensorRT's entropy calibration written as plainly as its published pseudo-code."""
    best_kl, best_i = math.inf, None
    for i in range(levels, len(counts) + 1):
        p = list(counts[:i])
        p[-1] += sum(counts[i:])
        size = i // levels
        q = [0.0] * i
        for j in range(levels):
            start, stop = j * size, (i if j == levels - 1 else (j + 1) * size)
            total = sum(counts[start:stop])
            used = [k for k in range(start, stop) if p[k] > 0]
            for k in used:
                q[k] = total / len(used)
        p = [v if v > 0 else 1e-4 for v in p]
        q = [v if v > 0 else 1e-4 for v in q]
        p_sum, q_sum = sum(p), sum(q)
        kl = sum(a / p_sum * math.log((a / p_sum) / (b / q_sum)) for a, b in zip(p, q))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def test_entropy_matches_the_plain_reference(laplacian):
    for bits, signed in ((5, True), (4, False)):
        x = laplacian[:20_000] if signed else np.abs(laplacian[:20_000])
        stats = stats_of(x, bins=256)
        counts, edges = stats.histogram
        levels = 2 ** (bits - 1) if signed else 2**bits
        assert choose_threshold(stats, "entropy", bits, signed) == pytest.approx(
            reference_entropy_threshold(counts, edges, levels))


def test_entropy_falls_back_to_minmax_when_levels_near_bins(laplacian):
    stats = stats_of(laplacian)
    assert choose_threshold(stats, "entropy", 12, True) == stats.absmax
    relu = stats_of(np.maximum(laplacian, 0))
    assert choose_threshold(relu, "entropy", 11, False) == relu.max


def test_unsigned_data(rng):
    x = np.maximum(rng.standard_normal(100_000), 0.0)
    stats = stats_of(x)
    assert stats.nonnegative and stats.min == 0.0
    assert choose_threshold(stats, "minmax", 8, False) == x.max()
    # Half the values are exact zeros; they must not drag entropy to a small threshold.
    t = choose_threshold(stats, "entropy", 8, False)
    assert 0.8 * x.max() < t <= x.max()
    assert qdq_mse(x, t, 8, False) < 2 * brute_force_best_mse(x, 8, False)
    # Unsigned has twice the levels of signed, so the same data quantizes better.
    t_u, t_s = (choose_threshold(stats, "mse", 4, s) for s in (False, True))
    assert qdq_mse(x, t_u, 4, False) < qdq_mse(x, t_s, 4, True)
    with pytest.raises(ValueError, match="unsigned must be nonnegative, not reach -1.0"):
        choose_threshold(stats_of(np.array([-1.0, 2.0])), "percentile", 8, False)


@pytest.mark.parametrize("method", METHODS)
def test_all_zero_tensors_get_threshold_0(method):
    assert choose_threshold(stats_of(np.zeros(100)), method, 8, False) == 0.0


def test_bad_requests_name_what_was_expected():
    stats = stats_of(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="one of minmax, percentile, mse, entropy, not 'kl'"):
        choose_threshold(stats, "kl", 8, True)
    with pytest.raises(ValueError, match="percentile must be in"):
        choose_threshold(stats, "percentile", 8, True, percentile=0)
    with pytest.raises(ValueError, match="update\\(\\) was never called"):
        choose_threshold(TensorStats(), "minmax", 8, True)
    with pytest.raises(ValueError, match="one of minmax, mse, not 'entropy'"):
        weight_thresholds(np.ones((2, 2)), 8, True, method="entropy")


# --- weights ----------------------------------------------------------------------------------

def test_weight_thresholds_per_channel_and_per_tensor():
    w = np.array([[1.0, -3.0, 2.0],
                  [0.5, 0.25, -0.1],
                  [0.0, 0.0, 0.0]])
    per_channel = weight_thresholds(w, 8, per_channel=True)
    assert per_channel.shape == (3,)
    np.testing.assert_array_equal(per_channel, [3.0, 0.5, 0.0])
    per_tensor = weight_thresholds(w, 8, per_channel=False)
    assert per_tensor.shape == () and per_tensor == 3.0
    np.testing.assert_array_equal(weight_thresholds(w.T, 8, per_channel=True, axis=1),
                                  [3.0, 0.5, 0.0])
    assert weight_thresholds(w, 4, per_channel=True, method="mse")[2] == 0.0


def test_weight_thresholds_of_conv_weights(rng):
    w = rng.standard_normal((6, 3, 3, 3))
    np.testing.assert_array_equal(weight_thresholds(w, 8, True), np.abs(w).max(axis=(1, 2, 3)))
    np.testing.assert_array_equal(weight_thresholds(w, 8, True, axis=1),
                                  np.abs(w).max(axis=(0, 2, 3)))
    with pytest.raises(ValueError, match="axis must be in \\[-4, 4\\)"):
        weight_thresholds(w, 8, True, axis=4)


def test_weight_mse_beats_minmax_on_heavy_tailed_weights_at_4_bits(rng):
    w = rng.standard_t(df=4, size=(16, 256))  # infinite kurtosis

    def channel_errors(thresholds: np.ndarray) -> np.ndarray:
        scale = np.reshape(thresholds, (-1, 1)) / 7
        return ((quantize_dequantize(w, scale, 4, True) - w) ** 2).sum(axis=1)

    t_mse = weight_thresholds(w, 4, True, method="mse")
    t_minmax = weight_thresholds(w, 4, True, method="minmax")
    assert np.all(t_mse <= t_minmax) and np.all(t_mse >= 0.5 * t_minmax)
    assert np.all(channel_errors(t_mse) <= channel_errors(t_minmax))
    assert channel_errors(t_mse).sum() < 0.8 * channel_errors(t_minmax).sum()
    tensor_mse = weight_thresholds(w, 4, False, method="mse")
    assert channel_errors(np.full(16, tensor_mse)).sum() < 0.6 * \
        channel_errors(np.full(16, np.abs(w).max())).sum()


def test_float32_relu_data_bins_exactly_like_float64(rng):
    """Zeros are counted in bin 0 without binning them, and float32 data is binned as float64."""
    x = np.maximum(rng.standard_normal((4, 8, 9, 9)), 0).astype(np.float32)
    x[0, 0, 0, 0] = 0.0
    stats = stats_of(x)
    a = np.abs(x.astype(np.float64)).ravel()
    want, _ = np.histogram(a, bins=2048, range=(0.0, a.max()))
    counts, edges = stats.histogram
    np.testing.assert_array_equal(counts, want)
    assert stats.zeros == int((a == 0).sum()) and stats.max == float(x.max()) and stats.min == 0.0


def test_state_round_trips_every_statistic(rng):
    from nnforge.compiler.quant.calibration import ActivationStats

    stats = ActivationStats(64)
    for scale in (1.0, 3.0):  # the second batch re-bins the first
        stats.update(scale * rng.standard_normal((5, 3, 4, 4)))
    back = ActivationStats.from_state(stats.state())
    for field in ("count", "zeros", "min", "max", "absmax", "channel_mean"):
        np.testing.assert_array_equal(getattr(back, field), getattr(stats, field))
    np.testing.assert_array_equal(back.histogram[0], stats.histogram[0])
    for method in METHODS:
        assert choose_threshold(back, method, 8, True) == choose_threshold(stats, method, 8, True)


@pytest.mark.parametrize("shape, bits", [((300, 700), 8), ((7, 9), 4), ((2, 40000), 3)])
def test_weight_mse_equals_the_plain_search(shape, bits, rng):
    """The blocked in-place search gives what searching the fractions on the whole matrix gives."""
    from nnforge.compiler.quant.weight_calibration import WEIGHT_MSE_FRACTIONS

    w = rng.standard_t(3, size=shape)
    w[0] = 0.0  # an all-zero channel keeps threshold 0
    qmax = 2 ** (bits - 1) - 1
    absmax = np.abs(w).max(axis=1)
    best, best_error = absmax.copy(), np.full(len(w), np.inf)
    for f in WEIGHT_MSE_FRACTIONS:
        scale = f * np.where(absmax > 0, absmax, 1.0)[:, None] / qmax
        error = ((quantize_dequantize(w, scale, bits, True) - w) ** 2).sum(axis=1)
        better = error < best_error
        best_error[better], best[better] = error[better], f * absmax[better]
    np.testing.assert_array_equal(weight_thresholds(w, bits, True, "mse"), best)
