"""User-facing errors.

Every error a user can cause (bad file, unsupported op, wrong shape, bad config) is an
``NNForgeError``.  The CLI prints its message and exits with status 2, without a traceback
unless ``--debug`` is given.  Messages follow the form "X must be Y, not Z" and name the
node, layer, tensor or key they are about.
"""

from __future__ import annotations


class NNForgeError(Exception):
    """An error caused by the user's input; the message says what was expected."""

    exit_code = 2


class ModelError(NNForgeError):
    """The ONNX model is missing, malformed or uses something nnforge does not support."""


class InputError(NNForgeError):
    """Input data (shapes, dtypes, keys, values) does not fit the model."""


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, bounded: long strings, big containers, deep nesting
    and huge integers are cut (``reprlib``), so a hostile value never makes a message expensive.

    Messages name user values with ``shown(v)`` instead of ``{v!r}``."""
    import reprlib

    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<an integer of {value.bit_length()} bits>"  # str() of a huge int is slow, then refused
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 6
    r.maxlevel = 3
    r.maxlong = 60
    try:
        text = r.repr(value)
    except Exception:  # noqa: BLE001 - a value whose own __repr__ fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 4 * limit else text[: 4 * limit] + "...'"
