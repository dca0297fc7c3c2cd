"""Xilinx's open-source arbitrary-precision types (ap_int.h) for the C simulation, and a strict
C++ front-end pass over the generated sources.

The headers (Apache-2.0) ship in the ``hls4ml`` wheel under ``hls4ml/templates/vivado/ap_types``;
nnforge copies none of them.  ``find(directory)`` locates them: in ``directory`` when given,
else in the installed hls4ml (found without importing it).

``strict_check(src_dir, top, ap_dir)`` runs g++'s front end with ``-Wall -Wextra -Werror`` over
the two forms of the generated code, so that code a synthesis tool would reject fails here:

1. the C-simulation form (``nnf_int.h``'s own integer classes, the trace and the C ABI);
2. the synthesis form (``__SYNTHESIS__`` defined: ``ap_int``, no statics, no trace), against
   the real headers.  The open-source headers refuse ``__SYNTHESIS__`` themselves (they carry
   no synthesis models), so a forced include parses them first with it undefined; their
   include guards then keep our ``#include <ap_int.h>`` from reading them again.

``-Wno-unknown-pragmas``: g++ does not know ``#pragma HLS``; every other warning is an error.
The vendor headers are ``-isystem`` (their own warnings are not ours to fix).
"""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path

from nnforge.compiler.errors import InputError

HEADER = "ap_int.h"
WHEEL_PATH = ("templates", "vivado", "ap_types")  # inside the hls4ml package
DEFINE = "NNF_USE_AP_INT"  # nnf_int.h: nnf_int<W> is ap_int<W>
STRICT = ("-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas")
# parsed before the generated code in the synthesis form (see the module docstring)
_SYNTHESIS_PRELUDE = "#undef __SYNTHESIS__\n#include <ap_int.h>\n#define __SYNTHESIS__ 1\n"


def find(directory: str | Path | None = None) -> Path:
    """The folder holding ``ap_int.h``: ``directory``, or the installed hls4ml's copy."""
    if directory not in (None, ""):
        d = Path(directory)
        if not (d / HEADER).is_file():
            raise InputError(f"--ap-types DIR must be a folder holding {HEADER} (Xilinx's ap_types), not {str(d)!r}")
        return d.resolve()
    spec = importlib.util.find_spec("hls4ml")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        d = Path(root).joinpath(*WHEEL_PATH)
        if (d / HEADER).is_file():
            return d.resolve()
    raise InputError("--ap-types needs Xilinx's ap_types headers: they must be in the installed hls4ml "
                     "(pip install 'hls4ml==1.3.0') or in --ap-types DIR, not missing"
                     + ("" if spec is None else f" (hls4ml at {roots} has no {'/'.join(WHEEL_PATH)}/{HEADER})"))


def _run(cmd: list[str], what: str) -> None:
    from nnforge.hw_sim.csim import CSimError

    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-30:])
        raise CSimError(f"the generated C++ must pass g++ {' '.join(STRICT[2:])} ({what}), not fail:\n{tail}")


FORMS = ("csim", "csim_ap", "synthesis")


def check_form(src_dir: str | Path, top: str, form: str, ap_dir: Path | None = None) -> None:
    """One form of ``src_dir/<top>.cpp`` through g++ -Wall -Wextra -Werror: ``csim`` (nnf_int.h),
    ``csim_ap`` (``NNF_USE_AP_INT``) or ``synthesis`` (``__SYNTHESIS__``); the last two need
    ``ap_dir``.  A warning raises ``CSimError`` with g++'s messages."""
    from nnforge.hw_sim.csim import cxx_compiler

    src_dir = Path(src_dir)
    cmd = [cxx_compiler(), *STRICT]
    if form == "csim":
        _run([*cmd, "-I", str(src_dir), str(src_dir / f"{top}.cpp")], "C-simulation form")
        return
    if form not in FORMS or ap_dir is None:
        raise InputError(f"form must be one of {', '.join(FORMS)} (the last two with the ap_types folder), "
                         f"not {form!r}")
    if form == "csim_ap":
        _run([*cmd, f"-D{DEFINE}", "-isystem", str(ap_dir), "-I", str(src_dir), str(src_dir / f"{top}.cpp")],
             f"C-simulation form with {DEFINE}")
        return
    with tempfile.TemporaryDirectory(prefix="nnforge-strict-") as tmp:
        prelude = Path(tmp) / "nnf_synthesis_prelude.h"
        prelude.write_text(_SYNTHESIS_PRELUDE)
        _run([*cmd, "-D__SYNTHESIS__", "-include", str(prelude), "-isystem", str(ap_dir), "-I", str(src_dir),
              str(src_dir / f"{top}.cpp")], "synthesis form, __SYNTHESIS__ with ap_int.h")


def strict_check(src_dir: str | Path, top: str, ap_dir: Path | None) -> list[str]:
    """Every form of ``src_dir/<top>.cpp`` through g++ -Wall -Wextra -Werror (the ap_int forms
    only with ``ap_dir``; the synthesis form only where every constant is in the sources, or
    after ``make literals``); what was checked, one line per form."""
    src_dir = Path(src_dir)
    check_form(src_dir, top, "csim")
    done = ["C-simulation form (nnf_int.h)"]
    if ap_dir is None:
        return done
    check_form(src_dir, top, "csim_ap", ap_dir)
    done.append(f"C-simulation form with {DEFINE}")
    if any(src_dir.glob("weights/*.inc")) or not _has_weight_files(src_dir):
        check_form(src_dir, top, "synthesis", ap_dir)
        done.append("synthesis form (__SYNTHESIS__, ap_int.h)")
    else:
        done.append("synthesis form not checked: the weights are in files (run `make literals` first)")
    return done


def _has_weight_files(src_dir: Path) -> bool:
    """The file weight form: some array is filled from weights/*.bin at run time."""
    return (src_dir / "nnf_weights.h").is_file()


__all__ = ["DEFINE", "FORMS", "HEADER", "check_form", "find", "strict_check"]
