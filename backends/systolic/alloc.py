"""Scratchpad allocation by liveness: buffers whose lifetimes do not overlap share words.

Time is the program's layer index.  A buffer is live from the layer that first writes it to the
last layer that reads it (inclusive; graph outputs to the end).  Buffers are placed first-fit,
lowest address first, in the order they are defined; a buffer is free for reuse only by buffers
defined strictly after its last reader, so no instruction ever writes words it reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Buffer:
    """One allocation: ``words`` long, live over layers ``[first, last]``."""

    ident: int
    words: int
    first: int
    last: int
    label: str  # the tensor it holds first (for error messages and the listing)
    base: int = -1


@dataclass(frozen=True)
class Allocation:
    peak: int  # words used at most (the highest address + 1)
    peak_layer: int  # the layer at which it was reached
    live_at_peak: tuple[str, ...]  # labels of the buffers live there


def allocate(buffers: list[Buffer]) -> Allocation:
    """Set ``base`` of every buffer (deterministic first-fit); the peak footprint."""
    live: list[Buffer] = []
    peak, peak_layer, peak_live = 0, 0, ()
    for buf in sorted(buffers, key=lambda b: (b.first, b.ident)):
        live = [b for b in live if b.last >= buf.first]
        addr = 0
        for other in sorted(live, key=lambda b: b.base):
            if addr + buf.words <= other.base:
                break
            addr = max(addr, other.base + other.words)
        buf.base = addr
        live.append(buf)
        if addr + buf.words > peak:
            peak, peak_layer = addr + buf.words, buf.first
            peak_live = tuple(b.label for b in sorted(live, key=lambda b: b.base))
    return Allocation(peak, peak_layer, peak_live)


__all__ = ["Allocation", "Buffer", "allocate"]
