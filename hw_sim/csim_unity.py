"""Many hls C simulations in one g++ run: a unity build of several generated projects.

Most of a small project's build time is g++ parsing the same headers (ap_int.h above all), so a
test that checks hundreds of generated graphs compiles them into one shared library:
``nnf_unity.cpp`` includes each project's ``<top>.cpp`` inside its own namespace, after the
standard (and ap_types) headers they use, whose include guards keep them at global scope.  Every
project keeps its C ABI (``<top>_csim``, ``<top>_trace_size``), so the tops must differ; each
is then run through ``csim.CSim`` as if built alone.  The sources are copied next to the unity
file, so ``csim.build``'s cache key covers all of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nnforge.compiler.errors import InputError

from . import ap_types, csim

UNITY_TOP = "nnf_unity"
# every system header the generated sources include (templates/hls), included once, outside the namespaces
_PRELUDE = ("cstdint", "cstdio", "mutex", "string", "type_traits", "vector")


def unity_sources(projects: list[tuple[Path, str]], work: Path, ap_types_dir: Path | None = None) -> Path:
    """``work/src`` holding a copy of each project's ``src/`` and ``nnf_unity.cpp``; its path.

    ``projects``: (project directory, top name) pairs, tops distinct."""
    tops = [top for _, top in projects]
    if len(set(tops)) != len(tops):
        raise InputError(f"the projects of a unity build must have distinct tops, not {sorted(tops)}")
    src = Path(work) / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    lines = ["// Several generated hls projects in one translation unit (nnforge.hw_sim.csim_unity).",
             *(f"#include <{h}>" for h in _PRELUDE)]
    if ap_types_dir is not None:
        lines.append("#include <ap_int.h>")
    for i, (project, top) in enumerate(projects):
        shutil.copytree(Path(project) / "src", src / f"p{i}")
        # g++'s #pragma once takes files of equal content and time for one file: make each copy unique
        for h in sorted((src / f"p{i}").rglob("*.h")):
            h.write_text(f"// unity part {i}\n" + h.read_text())
        lines += [f"namespace nnf_unit_{i} {{", f'#include "p{i}/{top}.cpp"', "}"]
    (src / f"{UNITY_TOP}.cpp").write_text("\n".join(lines) + "\n")
    return src


def build(projects: list[tuple[Path, str]], work: Path, *, ap_types_dir: Path | None = None,
          opt: str = "-O1", defines: tuple[str, ...] = ()) -> Path:
    """One shared library exporting every project's C ABI (``ap_types_dir``: against ap_int;
    ``defines``: more macros, e.g. ``NNF_SYNTHESIS_FORM`` for the kernels' synthesis loop nests)."""
    src = unity_sources(projects, work, ap_types_dir)
    if ap_types_dir is None:
        return csim.build(src, UNITY_TOP, opt=opt, defines=defines)
    return csim.build(src, UNITY_TOP, opt=opt, defines=(ap_types.DEFINE, *defines), system_includes=(ap_types_dir,))


__all__ = ["UNITY_TOP", "build", "unity_sources"]
