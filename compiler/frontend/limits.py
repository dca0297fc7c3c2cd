"""Resource caps: how large a tensor a model may declare or fold, so a tiny file cannot ask for
unbounded work.

A model file of a few hundred bytes can declare an input of ``1 x 10^20`` values or a
``ConstantOfShape([100000, 100000])`` that folding would materialise (37 GiB).  Every tensor
shape nnforge resolves (inputs, ``--input-shape``, constants folded before or after import,
every tensor of the imported module) must hold at most ``max_elements()`` values:
``DEFAULT_MAX_ELEMENTS`` = 2^28 (1 GiB of float32 per tensor; VGG-19's largest weight has
1.0e8).  Raise it per call with ``nnforge.load(..., max_elements=N)`` or for one command with
``nnforge --max-elements N COMMAND ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterable, Iterator

from ..errors import ModelError

DEFAULT_MAX_ELEMENTS = 1 << 28
_cap: contextvars.ContextVar[int] = contextvars.ContextVar("nnforge_max_elements", default=DEFAULT_MAX_ELEMENTS)


def max_elements() -> int:
    """The current cap on the values of one tensor."""
    return _cap.get()


@contextlib.contextmanager
def element_cap(n: int | None) -> Iterator[None]:
    """Within the block, tensors may hold up to ``n`` values (None: leave the cap as it is)."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"max_elements must be a positive integer, not {n!r}")
    token = _cap.set(n)
    try:
        yield
    finally:
        _cap.reset(token)


def set_cap(n: int) -> contextvars.Token:
    """Set the cap until ``reset_cap(token)`` (the CLI's ``--max-elements``)."""
    return _cap.set(n)


def reset_cap(token: contextvars.Token) -> None:
    _cap.reset(token)


def _how_to_raise() -> str:
    return "raise the cap with `nnforge --max-elements N ...` (Python: nnforge.load(..., max_elements=N))"


def check_shape(what: str, shape: Iterable[int | str]) -> None:
    """ModelError unless the fixed dimensions of ``shape`` hold at most ``max_elements()`` values
    (symbolic dimensions count as 1)."""
    dims = [d for d in shape if isinstance(d, int) and not isinstance(d, bool)]
    cap = max_elements()
    count = math.prod(dims) if dims else 1
    if count > cap or any(d < 0 for d in dims):
        text = ",".join(str(d) for d in shape)
        size = f"{count:,}" if count < 10**30 else f"about 10^{len(str(count)) - 1}"
        raise ModelError(f"{what} must hold at most {cap:,} values (nnforge's tensor size cap), not {size} "
                         f"([{text}]); {_how_to_raise()}")


__all__ = ["DEFAULT_MAX_ELEMENTS", "check_shape", "element_cap", "max_elements", "reset_cap", "set_cap"]
