"""The objectives ``nnforge explore`` optimizes, and the checks on them before any work.

One *quality* objective, maximized: ``accuracy`` (top-1 against the labels) or ``agreement``
(top-1 agreement with the float model; the fallback when the data has no labels).  One or more
*costs*, minimized:

* ``bytes``: the compressed weight storage, the compression report's exact accounting with
  Huffman coding (``compiler/compress/compression_report.py``, ``nnforge compress --huffman``);
* ``bytes-fixed``: the same without Huffman coding (fixed-width streams);
* ``macs-bits``: sum over conv2d/dense layers of MACs x weight bits x input activation bits, a
  hardware-neutral cost of the arithmetic (MACs as ``nnforge inspect`` counts them);
* ``dsp``, ``lut``, ``cycles``, ``latency`` (microseconds): a backend's ``estimate`` API
  (``backends/base.py``), summed over its kernels; they need ``--backend``.
"""

from __future__ import annotations

from collections.abc import Iterable

from nnforge.compiler.errors import InputError, shown

QUALITY = ("accuracy", "agreement")
MODEL_COSTS = ("bytes", "bytes-fixed", "macs-bits")
BACKEND_COSTS = ("dsp", "lut", "cycles", "latency")
COSTS = MODEL_COSTS + BACKEND_COSTS
ALL = QUALITY + COSTS


def resolve(names: Iterable[str], has_labels: bool, backend: str | None) -> tuple[str, list[str], list[str]]:
    """``(quality, costs, notes)`` from the ``--objective`` values.

    No quality name: ``accuracy``, or ``agreement`` without labels (said in ``notes``).  No cost:
    ``bytes``.  Unknown names, a backend cost without a backend, accuracy without labels, are
    ``InputError``s naming the objective."""
    names = list(names)
    notes: list[str] = []
    for n in names:
        if n not in ALL:
            raise InputError(f"--objective must be one of {', '.join(ALL)}, not {shown(n)}")
    qualities = [n for n in names if n in QUALITY]
    if len(set(qualities)) > 1:
        raise InputError(f"--objective must name at most one of accuracy, agreement, not {', '.join(qualities)}")
    quality = qualities[0] if qualities else ("accuracy" if has_labels else "agreement")
    if quality == "accuracy" and not has_labels:
        raise InputError("--objective accuracy must be given data with labels (key y in --data), not data without "
                         "them; use --objective agreement (top-1 agreement with the float model)")
    if not qualities and not has_labels:
        notes.append("the data has no labels (no key y): optimizing top-1 agreement with the float model "
                     "instead of accuracy")
    costs = list(dict.fromkeys(n for n in names if n in COSTS)) or ["bytes"]
    needs = [c for c in costs if c in BACKEND_COSTS]
    if needs and backend is None:
        raise InputError(f"--objective {needs[0]} must be given with --backend (a backend's estimate), not alone")
    return quality, costs, notes


def check_backend_costs(backend: str, costs: list[str], totals: dict[str, float | None]) -> None:
    """Raise unless ``backend``'s estimate of a baseline point has every requested backend cost."""
    for c in costs:
        if c in BACKEND_COSTS and totals.get(c) is None:
            offered = [k for k in BACKEND_COSTS if totals.get(k) is not None]
            raise InputError(f"--objective {c} must be one the {backend} backend estimates "
                             f"({', '.join(offered) or 'none'}), not {c!r}")


__all__ = ["QUALITY", "COSTS", "MODEL_COSTS", "BACKEND_COSTS", "ALL", "resolve", "check_backend_costs"]
