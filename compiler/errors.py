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
