"""The hls backend's C simulation of a written project: ``csim.json``, g++, and the runs.

``codegen`` writes ``csim.json`` next to ``src/``: the top's name, its sizes, the input and
output types, and every node's name, output tensor, shape and trace offset.  ``build``
compiles ``src/`` with g++ into a shared library cached by source content
(``nnforge.hw_sim.csim``, under ``$XDG_CACHE_HOME/nnforge/csim``); ``ProjectSim`` runs it on
input codes and names the traced buffers by tensor, as ``reference.run`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnforge.compiler.errors import InputError

from ..base import Simulation

MANIFEST = "csim.json"


def read_manifest(project: Path) -> dict:
    """The project's ``csim.json``; an InputError when ``project`` is not an hls project."""
    path = Path(project) / MANIFEST
    if not path.is_file():
        raise InputError(f"{str(project)!r} must be an hls project with a {MANIFEST}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ok = (isinstance(doc, dict) and isinstance(doc["top"], str)
              and all(isinstance(doc[k], int) and doc[k] >= 0 for k in ("in_size", "out_size", "trace_size"))
              and all(isinstance(n["name"], str) and isinstance(n["output"], str)
                      and all(isinstance(d, int) and d > 0 for d in n["shape"]) for n in doc["nodes"])
              and isinstance(doc["input"]["lo"], int) and isinstance(doc["input"]["hi"], int)
              and isinstance(doc["output"]["name"], str) and all(isinstance(d, int) for d in doc["output"]["shape"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{MANIFEST} of project {str(project)!r} must be the JSON the hls backend wrote, not "
                         f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:100]})") from None
    if not ok:
        raise InputError(f"{MANIFEST} of project {str(project)!r} must be the JSON the hls backend wrote, not one "
                         f"with missing or mistyped fields")
    return doc


def build(project: Path, ap_dir: Path | None = None) -> Path:
    """g++ the project's ``src/`` into a shared library (reused when the sources are unchanged);
    its path.  With ``ap_dir`` (``hw_sim.ap_types.find``), against the vendor's ap_int there
    (``NNF_USE_AP_INT``) instead of nnf_int.h's own integer classes."""
    from nnforge.hw_sim import ap_types, csim

    if ap_dir is None:
        return csim.build(Path(project) / "src", read_manifest(project)["top"])
    return csim.build(Path(project) / "src", read_manifest(project)["top"], defines=(ap_types.DEFINE,),
                      system_includes=(ap_dir,))


class ProjectSim:
    """One project's compiled C: ``simulate(inputs, trace)`` as ``Backend.simulate`` returns it."""

    def __init__(self, project: Path, ap_dir: Path | None = None):
        from nnforge.hw_sim import ap_types, csim

        self.project = Path(project)
        self.manifest = m = read_manifest(project)
        self.notes: list[str] = []
        if ap_dir is not None:  # the strict front end first: its messages are clearer than a failed build's
            checked = ap_types.strict_check(self.project / "src", m["top"], ap_dir)
            self.notes.append(f"C simulation compiled against the ap_types headers in {ap_dir} ({ap_types.DEFINE}); "
                              f"g++ {' '.join(ap_types.STRICT[2:5])} clean on: {'; '.join(checked)}")
        self.so_path = build(project, ap_dir)
        weights = m.get("weights")  # the file weight form: binaries under the project, loaded at run time
        if weights is not None and (not isinstance(weights, str) or weights != "weights"):
            raise InputError(f"{MANIFEST} of project {str(project)!r} must name 'weights' as its weight folder, "
                             f"not {weights!r}")
        self.csim = csim.CSim(self.so_path, m["top"], m["in_size"], m["out_size"], m["trace_size"],
                              nodes=[(n["name"], n["shape"]) for n in m["nodes"]],
                              weights_dir=None if weights is None else self.project / weights)

    def _codes(self, inputs: list[np.ndarray]) -> np.ndarray:
        m = self.manifest
        if len(inputs) != 1:
            raise InputError(f"the generated top takes one input, not {len(inputs)}")
        codes = np.asarray(inputs[0])
        lo, hi = m["input"]["lo"], m["input"]["hi"]
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise InputError(f"input codes must lie in [{lo}, {hi}] ({m['input']['type']}), "
                             f"not [{codes.min()}, {codes.max()}]")
        return np.ascontiguousarray(codes, dtype=np.int64)

    def simulate(self, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        """Every node's output codes by tensor name (``trace``), or the graph output alone."""
        codes = self._codes(inputs)
        out = self.manifest["output"]
        if not trace:
            y = self.csim.run(codes)
            return Simulation({out["name"]: y.reshape((len(codes), *out["shape"]))}, notes=list(self.notes))
        by_name = self.csim.trace(codes)
        return Simulation({n["output"]: by_name[n["name"]] for n in self.manifest["nodes"]}, notes=list(self.notes))


__all__ = ["MANIFEST", "ProjectSim", "build", "read_manifest"]
