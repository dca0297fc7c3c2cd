"""nnforge.backends: hardware backends and the API they implement.

See ``base.py`` for the abstract surface, ``registry.py`` for registration (including entry
points), ``options.py`` for the option parse every backend shares, ``golden.py``,
``requant.py`` and ``macs.py`` for what backends compute alike, and docs/backends.md for a
tutorial that builds a complete backend.
"""

from .base import Backend, Design, HostItem, Kernel, LayerEstimate, Option, Simulation
from .registry import BackendError, broken_backends, get_backend, list_backends, register_backend

__all__ = ["Backend", "BackendError", "Design", "HostItem", "Kernel", "LayerEstimate", "Option", "Simulation",
           "broken_backends", "get_backend", "list_backends", "register_backend"]
