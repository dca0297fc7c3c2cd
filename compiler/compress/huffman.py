"""Deep Compression storage streams: the sparse relative-index layout and Huffman coding.

Han et al. (ICLR 2016, §2 and §4) store a pruned layer as a list of entries, each an index
difference and a value, and then Huffman-code both streams.  Here:

* **Sparse layout.**  The flattened weight codes (C order) become entries ``(gap, value)``,
  where ``gap`` is the number of zeros skipped since the previous entry (the paper's index
  difference minus one), stored in ``b`` bits.  When a run of zeros is longer than
  ``2^b - 1`` a *filler* entry is inserted: a stored zero that skips ``2^b - 1`` zeros, so a
  run of ``g`` zeros costs ``g // 2^b`` fillers.  Zeros after the last nonzero are not stored
  (the layer's size is known).  ``b`` defaults to 8 for conv and 5 for fc, as in the paper.
* **Huffman coding.**  Canonical Huffman codes (``bitarray.util.canonical_huffman``) of a
  stream of integer symbols.  A canonical code is fully described by its symbols in
  canonical order and the number of codes of each length, which is what a decoder stores;
  ``table_bits`` counts exactly that (see docs/compression.md).

Everything here is lossless, and the tests check that decoding gives back the streams and
the weights with exact equality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman

from ..errors import ModelError

CONV_GAP_BITS = 8  # Han et al. 2016: 8 bits for conv layers
FC_GAP_BITS = 5  # ... and 5 bits for fully connected layers


@dataclass(frozen=True)
class SparseLayout:
    """Relative-index entries of one flattened layer: ``gaps[i]`` zeros, then ``values[i]``."""

    gaps: np.ndarray  # int64, each in [0, 2^gap_bits - 1]
    values: np.ndarray  # int64 codes; a filler entry has value 0
    size: int  # number of weights in the layer
    gap_bits: int

    @property
    def fillers(self) -> int:
        return int(len(self.values) - np.count_nonzero(self.values))


def sparse_layout(codes: np.ndarray, gap_bits: int) -> SparseLayout:
    """The relative-index layout of ``codes`` (flattened in C order) with ``gap_bits``-bit gaps."""
    if not isinstance(gap_bits, (int, np.integer)) or isinstance(gap_bits, bool) or not 1 <= gap_bits <= 32:
        raise ModelError(f"the sparse index width must be an integer from 1 to 32 bits, not {gap_bits!r}")
    flat = np.asarray(codes).reshape(-1).astype(np.int64)
    period = 1 << int(gap_bits)  # a filler stands for 2^b - 1 skipped zeros plus itself
    pos = np.flatnonzero(flat)
    runs = np.diff(pos, prepend=-1) - 1  # zeros before each nonzero
    fillers = runs // period
    n_entries = int(len(pos) + fillers.sum())
    gaps = np.full(n_entries, period - 1, dtype=np.int64)
    values = np.zeros(n_entries, dtype=np.int64)
    last = np.cumsum(fillers + 1) - 1  # where each nonzero's own entry lands
    gaps[last] = runs - fillers * period
    values[last] = flat[pos]
    return SparseLayout(gaps, values, int(flat.size), int(gap_bits))


def dense_codes(layout: SparseLayout) -> np.ndarray:
    """The flat codes a sparse layout stores (inverse of ``sparse_layout``)."""
    out = np.zeros(layout.size, dtype=np.int64)
    positions = np.cumsum(layout.gaps + 1) - 1
    if len(positions) and positions[-1] >= layout.size:
        raise ModelError(f"a sparse layout of {layout.size} weights must end inside the layer, "
                         f"not at position {int(positions[-1])}")
    out[positions] = layout.values
    return out


@dataclass(frozen=True)
class HuffmanStream:
    """A stream of integer symbols, canonical-Huffman coded."""

    bits: bitarray  # the coded payload
    count: tuple[int, ...]  # count[l]: number of codes of length l (canonical table)
    symbols: tuple[int, ...]  # symbols in canonical order
    length: int  # number of symbols coded

    @property
    def payload_bits(self) -> int:
        return len(self.bits)

    def table_bits(self, symbol_bits: int) -> int:
        """Bits to store the code table: the max code length (8 bits), the count of each length
        1..L in ``bit_length(#symbols)`` bits, and the symbols in ``symbol_bits`` bits each."""
        if not self.symbols:
            return 0
        max_len = len(self.count) - 1
        return 8 + max_len * len(self.symbols).bit_length() + len(self.symbols) * symbol_bits

    def total_bits(self, symbol_bits: int) -> int:
        return self.payload_bits + self.table_bits(symbol_bits)


def huffman_encode(stream: np.ndarray) -> HuffmanStream:
    """Canonical Huffman code of a 1-D integer stream (a single symbol gets the 1-bit code '0')."""
    values = np.asarray(stream).reshape(-1)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ModelError(f"a Huffman stream must hold integers, not {values.dtype}")
    if values.size == 0:
        return HuffmanStream(bitarray(), (0,), (), 0)
    symbols, counts = np.unique(values, return_counts=True)
    code, count, order = canonical_huffman(dict(zip(symbols.tolist(), counts.tolist())))
    bits = bitarray()
    bits.encode(code, values.tolist())
    return HuffmanStream(bits, tuple(count), tuple(order), int(values.size))


def huffman_decode(coded: HuffmanStream) -> np.ndarray:
    """The int64 symbol stream a ``HuffmanStream`` codes."""
    if coded.length == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.fromiter(canonical_decode(coded.bits, list(coded.count), list(coded.symbols)),
                      dtype=np.int64, count=coded.length)
    return out
