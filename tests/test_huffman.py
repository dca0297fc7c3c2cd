"""Sparse relative-index layout and Huffman coding: hand-worked layouts and exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnforge.compiler.errors import ModelError
from nnforge.compiler.compress.huffman import dense_codes, huffman_decode, huffman_encode, sparse_layout


def _round_trip(stream: np.ndarray) -> None:
    coded = huffman_encode(stream)
    decoded = huffman_decode(coded)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, np.asarray(stream, dtype=np.int64).reshape(-1))


# ---- sparse layout, worked by hand -------------------------------------------------------------

def test_layout_hand_worked_with_filler():
    # positions 1, 6, 7, 9 are nonzero; 2-bit gaps hold at most 3 skipped zeros, so the run of
    # 4 zeros at positions 2..5 needs one filler (a stored zero at position 5, after 3 zeros)
    w = np.array([0, 5, 0, 0, 0, 0, 5, 5, 0, -3])
    lay = sparse_layout(w, 2)
    assert lay.gaps.tolist() == [1, 3, 0, 0, 1]
    assert lay.values.tolist() == [5, 0, 5, 5, -3]
    assert lay.fillers == 1 and lay.size == 10
    np.testing.assert_array_equal(dense_codes(lay), w)


def test_layout_filler_boundaries():
    # 3-bit gaps: a run of 7 zeros fits, 8 zeros take one filler, 16 take two, 15 take one
    for run, fillers, gaps in [(7, 0, [7]), (8, 1, [7, 0]), (15, 1, [7, 7]), (16, 2, [7, 7, 0])]:
        w = np.zeros(run + 1, dtype=np.int64)
        w[-1] = 4
        lay = sparse_layout(w, 3)
        assert lay.fillers == fillers, run
        assert lay.gaps.tolist() == gaps, run
        np.testing.assert_array_equal(dense_codes(lay), w)


def test_layout_no_trailing_zeros_and_empty():
    lay = sparse_layout(np.array([3, 0, 0, 0, 0, 0]), 1)
    assert lay.gaps.tolist() == [0] and lay.values.tolist() == [3]
    np.testing.assert_array_equal(dense_codes(lay), [3, 0, 0, 0, 0, 0])
    for w in (np.zeros(0, np.int64), np.zeros((4, 5), np.int64)):
        lay = sparse_layout(w, 8)
        assert len(lay.gaps) == 0 and len(lay.values) == 0
        np.testing.assert_array_equal(dense_codes(lay), w.reshape(-1))


def test_layout_long_gap():
    w = np.zeros(100_003, dtype=np.int64)
    w[0], w[-1] = -1, 2
    lay = sparse_layout(w, 5)  # a run of 100,001 zeros: 100001 // 32 = 3125 fillers
    assert lay.fillers == 3125
    assert int(lay.gaps.max()) == 31
    np.testing.assert_array_equal(dense_codes(lay), w)


@pytest.mark.parametrize("bad", [0, 33, 2.5, True, "8"])
def test_layout_gap_bits_must_be_valid(bad):
    with pytest.raises(ModelError, match="sparse index width must be an integer from 1 to 32"):
        sparse_layout(np.ones(3, np.int64), bad)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 400), elements=st.sampled_from([0, 0, 0, 0, 0, 1, -1, 7, -8])),
       st.integers(1, 9))
def test_layout_round_trip_random(w, gap_bits):
    lay = sparse_layout(w, gap_bits)
    assert lay.gaps.min(initial=0) >= 0 and lay.gaps.max(initial=0) <= 2 ** gap_bits - 1
    assert np.count_nonzero(lay.values) == np.count_nonzero(w)
    np.testing.assert_array_equal(dense_codes(lay), w)


# ---- Huffman ---------------------------------------------------------------------------------

def test_huffman_hand_worked_lengths():
    # frequencies 3, 1, 1: the frequent symbol gets a 1-bit code, the two others 2 bits
    coded = huffman_encode(np.array([7, 7, 1, 7, 2]))
    assert coded.payload_bits == 3 * 1 + 2 * 2
    assert coded.count == (0, 1, 2) and coded.symbols[0] == 7 and set(coded.symbols) == {1, 2, 7}
    # table: 8 (max length) + 2 lengths * bit_length(3 symbols)=2 + 3 symbols * 4 bits
    assert coded.table_bits(4) == 8 + 2 * 2 + 3 * 4
    _round_trip(np.array([7, 7, 1, 7, 2]))


@pytest.mark.parametrize("stream", [
    np.zeros(0, np.int64),                       # empty layer
    np.array([5]),                               # a single symbol, once
    np.full(1000, -3),                           # a single symbol, many times
    np.zeros(777, np.int64),                     # all zeros
    np.arange(256),                              # 256 symbols, once each
    np.repeat(np.arange(256), np.arange(1, 257)),  # 256 symbols, skewed
    np.array([0, 2 ** 31 - 1, -2 ** 31]),        # extreme values
])
def test_huffman_round_trip_edges(stream):
    _round_trip(stream)


def test_huffman_single_symbol_costs_one_bit_each():
    coded = huffman_encode(np.full(1000, 9))
    assert coded.payload_bits == 1000
    assert coded.table_bits(4) == 8 + 1 * 1 + 1 * 4


def test_huffman_empty_costs_nothing():
    coded = huffman_encode(np.zeros(0, np.int64))
    assert coded.payload_bits == 0 and coded.table_bits(8) == 0 and coded.length == 0


def test_huffman_rejects_floats():
    with pytest.raises(ModelError, match="must hold integers"):
        huffman_encode(np.array([0.5, 1.0]))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 500), elements=st.integers(-200, 200)))
def test_huffman_round_trip_random(stream):
    _round_trip(stream)


def test_huffman_round_trip_laplacian_and_gaps():
    rng = np.random.default_rng(0)
    codes = np.clip(np.round(rng.laplace(0, 6, 50_000)), -127, 127).astype(np.int64)
    codes[rng.random(codes.size) < 0.85] = 0
    _round_trip(codes)
    lay = sparse_layout(codes, 5)
    _round_trip(lay.gaps)
    _round_trip(lay.values)
    np.testing.assert_array_equal(dense_codes(lay), codes)
    # Huffman never does worse than the fixed-width code on payload alone
    assert huffman_encode(lay.gaps).payload_bits <= 5 * len(lay.gaps)
