"""Weight storage for the hls backend: one of three forms per layer, the smallest in bits.

The weights of a conv2d or dense layer are a matrix ``[rows, cols]``: one row per output
channel (conv2d: ``weight.reshape(O, -1)``, dense: ``weight.T``), row-major.

* ``dense``: every code, ``W_<id>[rows * cols]``.
* ``codebook``: the layer's codebook ``CB_<id>`` (``attrs.codebook``, sorted codes) and one
  index per weight (``searchsorted(codebook, w)``), packed ``k`` bits apiece into 32- or 64-bit
  words ``IX_<id>``: index ``i`` is ``(IX[i / per_word] >> ((i % per_word) * k)) & mask``.
  An index never straddles two words.
* ``sparse``: CSR per output channel, for pruned layers: row pointers ``RP_<id>[rows + 1]``,
  column indices ``CI_<id>[nnz]`` and values ``V_<id>[nnz]`` (codes, or codebook indices when
  the layer also has a codebook).

Sizes count the bits the hardware stores (each array is ``ap_uint<b>``/``ap_int<b>`` of the
narrowest width); ties go to the simpler form (dense, then codebook).  Storage never changes
the arithmetic: every form decodes to the same codes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QNode

FORMS = ("dense", "codebook", "sparse")
PLAIN_TYPES = frozenset({"int", "int8_t", "int16_t", "int32_t", "int64_t", "uint8_t", "uint16_t", "uint32_t", "uint64_t"})
PER_LINE = 24  # values per line of a generated array


@dataclass(frozen=True)
class CArray:
    """One ``static const`` array of a layer's header.

    ``values`` are its numbers; ``rows`` their formatted lines, made only when the array is
    written inline (formatting the 25 M weights of a ResNet-50 takes seconds).  ``file`` names
    the binary file under ``weights/`` that holds it instead (the ``file`` weight form,
    ``codegen.py``), or is empty."""

    name: str
    ctype: str
    length: int
    values: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(1, np.int64))
    suffix: str = ""  # literal suffix of unsigned words: U / ULL
    file: str = ""

    @functools.cached_property
    def rows(self) -> tuple[str, ...]:
        return c_rows(self.values, self.suffix)

    @functools.cached_property
    def rom_type(self) -> str:
        """The element type of the inline literal array: ``ctype`` itself when it is a plain C
        type, else ``NNF_ROM(ctype,raw)`` (nnf_int.h): ``raw`` is the narrowest standard integer
        type holding every value, which a C simulation against ap_int stores instead (ap_int's
        constructors are not constexpr, so each element would be a dynamic initialiser)."""
        if self.ctype in PLAIN_TYPES:
            return self.ctype
        v = np.asarray(self.values).reshape(-1)
        lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
        for bits in (8, 16, 32, 64):
            if lo >= 0 and hi < (1 << bits):
                raw = f"uint{bits}_t"
                break
            if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
                raw = f"int{bits}_t"
                break
        else:
            raise ValueError(f"array {self.name} holds values outside 64 bits: [{lo}, {hi}]")
        return f"NNF_ROM({self.ctype},{raw})"


@dataclass(frozen=True)
class WeightStore:
    """The storage chosen for one layer's weights."""

    form: str  # "dense" | "codebook" | "sparse"
    rows: int
    cols: int
    wbits: int  # width of one weight code
    bits: int  # storage bits of the chosen form
    dense_bits: int
    nnz: int
    codebook_size: int = 0
    index_bits: int = 0  # k: bits per codebook index
    word_bits: int = 0  # 32 or 64 (codebook form)
    per_word: int = 0
    index_mask: int = 0
    value_index: bool = False  # sparse values are codebook indices

    @property
    def bytes(self) -> int:
        return (self.bits + 7) // 8


def signed_bits(lo: int, hi: int) -> int:
    """The narrowest two's complement width (>= 2) holding ``[lo, hi]``."""
    b = 2
    while lo < -(1 << (b - 1)) or hi > (1 << (b - 1)) - 1:
        b += 1
    return b


def unsigned_bits(hi: int) -> int:
    """The narrowest unsigned width (>= 1) holding ``[0, hi]``."""
    return max(1, int(hi).bit_length())


def weight_matrix(node: QNode) -> np.ndarray:
    """``[rows, cols]`` int64, one row per output channel, in the kernels' reading order."""
    w = np.asarray(node.attrs.weight, dtype=np.int64)
    return np.ascontiguousarray(w.T if node.op == "dense" else w.reshape(w.shape[0], -1))


def weight_bits(node: QNode, mat: np.ndarray) -> int:
    """``attrs.weight_bits`` when every code fits it, else the narrowest width that does."""
    lo, hi = (int(mat.min()), int(mat.max())) if mat.size else (0, 0)
    need = signed_bits(lo, hi)
    declared = node.attrs.weight_bits
    if isinstance(declared, (int, np.integer)) and not isinstance(declared, bool) and declared >= need:
        return int(declared)
    return need


def _codebook(node: QNode, mat: np.ndarray) -> np.ndarray | None:
    cb = node.attrs.codebook
    if cb is None:
        return None
    cb = np.asarray(cb, dtype=np.int64).reshape(-1)
    if cb.size == 0 or np.any(np.diff(cb) <= 0):
        raise InputError(f"the codebook of layer {node.name!r} must be a non-empty sorted list of distinct codes, "
                         f"not {cb.tolist()[:8]}")
    if not np.all(np.isin(mat, cb)):
        bad = np.setdiff1d(mat, cb)[:4].tolist()
        raise InputError(f"every weight of layer {node.name!r} must be a codebook entry; {bad} are not in the codebook")
    return cb


def _pack_layout(n: int, k: int) -> tuple[int, int, int]:
    """(word_bits, per_word, words) with the fewest bits; 32-bit words on a tie."""
    best = None
    for word in (32, 64):
        per = word // k
        words = -(-n // per) if n else 0
        if best is None or words * word < best[2] * best[0]:
            best = (word, per, words)
    return best


def choose(node: QNode) -> tuple[WeightStore, np.ndarray, np.ndarray | None]:
    """The storage form for ``node`` (conv2d/dense), its weight matrix and codebook (or None)."""
    mat = weight_matrix(node)
    rows, cols = mat.shape
    wbits = weight_bits(node, mat)
    cb = _codebook(node, mat)
    dense_bits = mat.size * wbits
    nnz = int(np.count_nonzero(mat))
    common = dict(rows=rows, cols=cols, wbits=wbits, dense_bits=dense_bits, nnz=nnz)
    cands = [WeightStore("dense", bits=dense_bits, **common)]
    k = 0
    if cb is not None:
        k = max(1, math.ceil(math.log2(cb.size)))
        word, per, words = _pack_layout(mat.size, k)
        cands.append(WeightStore("codebook", bits=cb.size * wbits + words * word, codebook_size=cb.size,
                                 index_bits=k, word_bits=word, per_word=per, index_mask=(1 << k) - 1, **common))
    val_bits = k if cb is not None else wbits
    sparse_bits = (rows + 1) * unsigned_bits(nnz) + nnz * (unsigned_bits(max(cols - 1, 0)) + val_bits)
    cands.append(WeightStore("sparse", bits=sparse_bits, codebook_size=0 if cb is None else cb.size,
                             index_bits=k, value_index=cb is not None, **common))
    store = min(cands, key=lambda s: s.bits)  # min keeps the first on ties: dense, codebook, sparse
    return store, mat, cb


def pack_indices(idx: np.ndarray, k: int, word_bits: int) -> np.ndarray:
    """Indices (< 2^k) packed ``word_bits // k`` per word, lowest bits first; uint64 words."""
    per = word_bits // k
    words = -(-idx.size // per) if idx.size else 0
    padded = np.zeros(words * per, dtype=np.uint64)
    padded[: idx.size] = idx.astype(np.uint64)
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(k))
    return np.bitwise_or.reduce(padded.reshape(words, per) << shifts, axis=1) if words else padded


# -- C text ---------------------------------------------------------------------------------------------

_INT64_MIN = -(1 << 63)


def c_int(v: int) -> str:
    """A C++ literal for an int64 value."""
    v = int(v)
    if v == _INT64_MIN:
        return "(-9223372036854775807LL - 1)"
    return str(v) if -(1 << 31) <= v < (1 << 31) else f"{v}LL"


def c_rows(values: np.ndarray, suffix: str = "") -> tuple[str, ...]:
    """Comma-separated lines of literals (``suffix`` for unsigned words: ``U``/``ULL``)."""
    vals = np.asarray(values).reshape(-1)
    if vals.size == 0:
        return ("0",)  # C++ has no zero-length arrays: one unused element
    lo, hi = (int(vals.min()), int(vals.max())) if not suffix else (0, -1)
    if suffix:
        text = [f"{v}{suffix}" for v in vals.tolist()]
    elif hi - lo < 1 << 17 and vals.size > 4 * (hi - lo + 1):  # narrow codes: format each value once
        table = np.array([str(v) for v in range(lo, hi + 1)], dtype=object)
        text = table[vals.astype(np.int64) - lo].tolist()
    elif lo >= -(1 << 31) and hi < (1 << 31):
        text = list(map(str, vals.tolist()))
    else:
        text = [c_int(v) for v in vals.tolist()]
    return tuple(", ".join(text[i : i + PER_LINE]) for i in range(0, len(text), PER_LINE))


def carray(name: str, ctype: str, values: np.ndarray, suffix: str = "") -> CArray:
    values = np.asarray(values).reshape(-1)
    return CArray(name, ctype, max(1, values.size), values, suffix)


# -- the binary files of the ``file`` form --------------------------------------------------------------

def file_encoding(values: np.ndarray) -> tuple[int, bool]:
    """(bytes per value, signed) of the narrowest little-endian integer holding ``values``."""
    vals = np.asarray(values).reshape(-1)
    if vals.dtype == np.uint64:
        hi = int(vals.max()) if vals.size else 0
        return next(b for b in (1, 2, 4, 8) if hi < 1 << (8 * b)), False
    lo, hi = (int(vals.min()), int(vals.max())) if vals.size else (0, 0)
    return next(b for b in (1, 2, 4, 8) if -(1 << (8 * b - 1)) <= lo and hi < 1 << (8 * b - 1)), True


def file_bytes(values: np.ndarray, nbytes: int, signed: bool) -> bytes:
    """``values`` as little-endian integers of ``nbytes`` bytes each (at least one value, as C++
    has no zero-length arrays: an empty array is one 0)."""
    vals = np.asarray(values).reshape(-1)
    if vals.size == 0:
        vals = np.zeros(1, np.int64)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{nbytes}")
    return vals.astype(dtype).tobytes()


def checksum(data: bytes) -> int:
    """``sum((byte_i + 1) * (i + 1)) mod 2^64``: what the C++ loader recomputes (``nnf_weights.h``)
    to refuse a truncated, reordered or damaged weight file.  Not a cryptographic digest: the
    project's manifest.json holds SHA-256 of every file for that."""
    arr = np.frombuffer(data, dtype=np.uint8)
    total = np.uint64(0)
    step = 1 << 20
    with np.errstate(over="ignore"):
        for start in range(0, arr.size, step):
            chunk = arr[start:start + step].astype(np.uint64) + np.uint64(1)
            pos = np.arange(start + 1, start + 1 + chunk.size, dtype=np.uint64)
            total += np.sum(chunk * pos, dtype=np.uint64)
    return int(total)


def weight_arrays(store: WeightStore, mat: np.ndarray, cb: np.ndarray | None, ident: str, wtype: str
                  ) -> list[CArray]:
    """The arrays of ``store`` for layer ``ident`` (``wtype``: the C type of one weight code)."""
    if store.form == "dense":
        return [carray(f"W_{ident}", wtype, mat)]
    flat = mat.reshape(-1)
    if store.form == "codebook":
        idx = np.searchsorted(cb, flat)
        words = pack_indices(idx, store.index_bits, store.word_bits)
        utype, suffix = ("uint32_t", "U") if store.word_bits == 32 else ("uint64_t", "ULL")
        return [carray(f"CB_{ident}", wtype, cb), carray(f"IX_{ident}", utype, words, suffix)]
    # sparse: CSR per row
    nz_rows, nz_cols = np.nonzero(mat)
    rowptr = np.concatenate([[0], np.cumsum(np.count_nonzero(mat, axis=1))]).astype(np.int64)
    vals = mat[nz_rows, nz_cols]
    arrays = []
    if store.value_index:
        arrays.append(carray(f"CB_{ident}", wtype, cb))
        vals = np.searchsorted(cb, vals)
        vtype = f"nnf_uint<{store.index_bits}>"
    else:
        vtype = wtype
    arrays += [carray(f"RP_{ident}", f"nnf_uint<{unsigned_bits(store.nnz)}>", rowptr),
               carray(f"CI_{ident}", f"nnf_uint<{unsigned_bits(max(store.cols - 1, 0))}>", nz_cols),
               carray(f"V_{ident}", vtype, vals)]
    return arrays
