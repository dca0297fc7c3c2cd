"""Tensor layouts in the scratchpad (docs/systolic.md, "Memories and layouts"), and packing.

A tensor with per-sample shape ``[C, H, W]`` (or ``[K]``: one pixel of K channels) is stored
pixel-major: pixel ``p = h*W + w`` starts at word ``p * ps``; its channels are grouped in
*segments* (one per concat input, otherwise one), segment ``s`` of ``c_s`` channels starting at
word ``word_s`` of the pixel, channel ``c`` of the segment in word ``word_s + c // C``, lane
``c % C``.

A ``Shape`` is that physical structure without an address.  A reshape changes only the logical
shape: the logical element order is the C order of ``[C, H, W]``, which a flatten keeps, so a
reshape is a view of the same words (``shape`` differs, ``chw`` does not).  A consumer that
needs pixels (conv2d, pools, pad) checks that its input's logical shape is its ``chw``.

``pack`` / ``unpack`` convert between codes ``[n, *shape]`` and words ``[n, words, C]`` of raw
``IN_W``-bit lanes; they are what the host side (``simulate``) and the manifest use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Shape:
    """The physical structure of a tensor: pixels, segments, the logical shape."""

    chw: tuple[int, int, int]
    segments: tuple[tuple[int, int], ...]  # (channels, first word within the pixel)
    shape: tuple[int, ...]  # the logical per-sample shape (prod == C*H*W)
    cols: int
    # every padding lane holds 0 (so a weight there multiplies 0): true for the input (the host
    # packs zeros) and for every op that maps 0 to 0; a lookup table may not
    zero_pad: bool = True

    @staticmethod
    def plain(shape: tuple[int, ...], cols: int) -> "Shape":
        """A freshly produced tensor: one segment."""
        chw = chw_of(shape)
        return Shape(chw, ((chw[0], 0),), tuple(shape), cols)

    @property
    def pixels(self) -> int:
        return self.chw[1] * self.chw[2]

    @property
    def words(self) -> int:
        """Words per pixel that hold its channels (the span of the segments)."""
        ch, w0 = self.segments[-1]
        return w0 + ceil_div(ch, self.cols)

    def channel_words(self) -> tuple[np.ndarray, np.ndarray]:
        """``(word[c], lane[c])`` of every channel ``c`` within a pixel."""
        word, lane = [], []
        for ch, w0 in self.segments:
            c = np.arange(ch)
            word.append(w0 + c // self.cols)
            lane.append(c % self.cols)
        return np.concatenate(word).astype(np.int64), np.concatenate(lane).astype(np.int64)

    def lane_channels(self) -> np.ndarray:
        """``[words, C]``: the channel in each lane of a pixel's words, -1 for padding lanes."""
        out = np.full((self.words, self.cols), -1, dtype=np.int64)
        word, lane = self.channel_words()
        out[word, lane] = np.arange(len(word))
        return out

    def reshaped(self, shape: tuple[int, ...]) -> "Shape":
        return replace(self, shape=tuple(shape))

    def with_zero_pad(self, zero_pad: bool) -> "Shape":
        return replace(self, zero_pad=bool(zero_pad))

    def same_words(self, other: "Shape") -> bool:
        """Same pixels and channel-to-word map: elementwise ops pair word ``c`` with word ``c``."""
        return self.chw == other.chw and self.segments == other.segments


def chw_of(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Per-sample logical shape -> (C, H, W): ``[K]`` is one pixel, ``[C, H, W]`` itself."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    return (int(np.prod(shape, dtype=np.int64)), 1, 1)


@dataclass(frozen=True)
class Placement:
    """Where a tensor lies: a buffer, the word offset of its pixel 0 in it, the pixel stride."""

    buffer: int
    offset: int
    ps: int


@dataclass(frozen=True)
class Layout:
    """A placed tensor: ``base`` is the absolute SPAD address of pixel 0's first word."""

    base: int
    ps: int
    shape: Shape

    @property
    def span(self) -> int:
        """Words from ``base`` to the tensor's last word, inclusive."""
        return (self.shape.pixels - 1) * self.ps + self.shape.words

    def region(self) -> list[int]:
        return [self.base, self.span]

    def to_json(self, offset: int, signed: bool, bits: int) -> dict:
        """The manifest's layout: ``offset`` is pixel 0's word in the word array it describes."""
        s = self.shape
        return {"offset": offset, "ps": self.ps, "chw": list(s.chw), "segments": [list(x) for x in s.segments],
                "shape": list(s.shape), "signed": bool(signed), "bits": int(bits)}


def _indices(doc: dict, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Word and lane of every logical element (C order of ``chw``) of a layout document."""
    shape = Shape(tuple(doc["chw"]), tuple(tuple(x) for x in doc["segments"]), tuple(doc["shape"]), cols)
    word, lane = shape.channel_words()  # [C]
    pix = np.arange(shape.pixels)
    words = doc["offset"] + pix[None, :] * doc["ps"] + word[:, None]  # [C, P]
    return words.reshape(-1), np.broadcast_to(lane[:, None], words.shape).reshape(-1)


def unpack(doc: dict, words: np.ndarray, in_bits: int) -> np.ndarray:
    """Raw lane words ``[n, W, C]`` -> codes ``[n, *shape]`` (sign-extended when ``signed``)."""
    words = np.asarray(words, dtype=np.int64)
    w, lane = _indices(doc, words.shape[2])
    raw = words[:, w, lane] & ((1 << in_bits) - 1)
    if doc["signed"]:
        raw = np.where(raw >= (1 << (in_bits - 1)), raw - (1 << in_bits), raw)
    return raw.reshape((words.shape[0],) + tuple(doc["shape"]))


def pack(doc: dict, codes: np.ndarray, out: np.ndarray) -> None:
    """Codes ``[n, *shape]`` -> their lanes in ``out`` (``[n, W, C]``, modified in place)."""
    codes = np.asarray(codes, dtype=np.int64).reshape(codes.shape[0], -1)
    w, lane = _indices(doc, out.shape[2])
    out[:, w, lane] = codes


__all__ = ["Layout", "Placement", "Shape", "ceil_div", "chw_of", "pack", "unpack"]
