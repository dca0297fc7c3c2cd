"""nnforge.backends: hardware backends and the API they implement.

See ``base.py`` for the abstract surface, ``registry.py`` for registration (including entry
points) and docs/backends.md for a tutorial that builds a complete backend.
"""

from .base import Backend, Design, HostItem, Kernel, LayerEstimate
from .registry import BackendError, broken_backends, get_backend, list_backends, register_backend

__all__ = ["Backend", "BackendError", "Design", "HostItem", "Kernel", "LayerEstimate", "broken_backends",
           "get_backend", "list_backends", "register_backend"]
