"""The files of a generated HLS project around the kernel sources.

``project_files(design, options, sources, golden, report)`` returns, for the sources the
``hls`` codegen wrote (``src/`` and ``csim.json``) and the golden vectors every project gets
(``tb/inputs.dat``, ``tb/golden.dat``: ``backends/golden.py``):

=====================  ==================================================================
``tb/<top>_tb.cpp``     testbench: reads ``tb/inputs.dat``, runs the top, compares every
                        output code with ``tb/golden.dat``; prints PASS/FAIL, exit status =
                        failing samples
``script.tcl``          Vitis HLS (``vitis_hls -f script.tcl``): csim, csynth, optional cosim
                        and export
``hls_config.cfg``      the same for the unified flow (``v++ -c --mode hls --config ...``)
``Makefile``            ``make csim`` (g++, no vendor tools), ``vitis``, ``vpp``, ``clean``
``README.md``           what each file is and how to run it, storage forms, estimates
``report.md``           the human-readable ``report.json``
=====================  ==================================================================

Templates live in ``templates/hls/project/``; Python computes every number and name, and
every name that reaches a Makefile, tcl or C++ file is checked to be a plain identifier or
relative path first (ONNX names never get there: they are sanitised by ``backends/naming.py``
and only appear, escaped, in the markdown).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2

from nnforge.compiler.errors import InputError

from .codegen import WEIGHTS_MANIFEST

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\Z")
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
# Vitis HLS takes C++14 and uses its own ap_int (nnf_int.h switches on NNF_USE_AP_INT); g++ C
# simulation uses nnforge's own integer types, which need C++17.
VITIS_CFLAGS = "-std=c++14 -DNNF_USE_AP_INT"
GXX_CFLAGS = "-std=c++17"


def _templates_dir() -> Path:
    import nnforge.templates

    return Path(nnforge.templates.__file__).parent / "hls" / "project"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_templates_dir())), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["md"] = md_escape
    env.filters["num"] = lambda v: "-" if v is None else f"{v:,}"
    return env


def md_escape(text: Any) -> str:
    """Any string (an ONNX name) as inert markdown table text."""
    s = str(text).replace("\\", "\\\\")
    for ch in "`*_[]<>|#":
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ").replace("\r", " ")


def _code_span(value: Any) -> str:
    """Text for inside a markdown `code span` in a table cell."""
    return str(value).replace("`", "'").replace("|", "\\|").replace("\n", " ")


def check_options(options: dict[str, Any]) -> None:
    """The options that reach tcl, cfg and Makefile text must be plain tokens."""
    top = options["top"]
    if not isinstance(top, str) or not _IDENT.match(top):
        raise InputError(f"option 'top' must be a C identifier (letters, digits, _), not {top!r}")
    part = options["part"]
    if not isinstance(part, str) or not _PART.match(part):
        raise InputError(f"option 'part' must be a Xilinx part name like 'xcu250-figd2104-2L-e', not {part!r}")
    clock = options["clock_ns"]
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
        raise InputError(f"option 'clock_ns' must be a positive number of nanoseconds, not {clock!r}")


def _paths(names) -> list[str]:
    out = sorted(names)
    for n in out:
        if not _PATH.match(n) or ".." in n.split("/"):
            raise ValueError(f"generated source path must be a plain relative path, not {n!r}")
    return out


def _fmt_clock(clock: float) -> str:
    return f"{float(clock):g}"


def project_files(design, options: dict[str, Any], sources: dict[str, str | bytes], golden, report: dict
                  ) -> dict[str, str]:
    """testbench, golden vectors, script.tcl, hls_config.cfg, Makefile, README.md, report.md."""
    check_options(options)
    top = options["top"]
    src = _paths(p for p in sources if p.startswith("src/"))
    ctx = {
        "top": top,
        "version": report["nnforge_version"],
        "part": options["part"],
        "clock": _fmt_clock(options["clock_ns"]),
        "cflags": VITIS_CFLAGS,
        "gxx_cflags": GXX_CFLAGS,
        "cpp_files": [p for p in src if p.endswith(".cpp")],
        "headers": [p for p in src if p.endswith(".h")],
        "tb": f"tb/{top}_tb.cpp",
        "in_size": sum(_size(t["shape"]) for t in report["inputs"]),
        "out_size": sum(_size(t["shape"]) for t in report["outputs"]),
        "samples": golden.samples,
        "report": report,
        "options": options,
    }
    known = {f"src/{top}.cpp", f"src/{top}.h"}
    roles = {"src/nnf_int.h": "arbitrary-width integers: `ap_int`/`ap_uint` under Vitis HLS "
                              "(`-DNNF_USE_AP_INT`), nnforge's own equivalent for g++",
             "src/nnf_kernels.h": "helpers every kernel shares (rounding shift, saturation, requantization)",
             "src/nnf_types.h": "the integer type of every tensor"}
    ctx.update(
        other_sources=[p for p in src if p not in known and not p.startswith(("src/kernels/", "src/weights/"))],
        source_roles={p: roles.get(p, "shared header") for p in src},
        kernel_headers=[Path(p).stem for p in src if p.startswith("src/kernels/")],
        weight_headers=[p for p in src if p.startswith("src/weights/")],
        option_rows=[(k, _code_span(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v))
                     for k, v in sorted(options.items())],
    )
    ctx["option_map"] = dict(ctx["option_rows"])
    ctx["weight_files"] = WEIGHTS_MANIFEST in sources  # the file weight form (codegen.py)
    env = _env()
    files = {
        f"tb/{top}_tb.cpp": env.get_template("tb.cpp.j2").render(ctx),
        "script.tcl": env.get_template("script.tcl.j2").render(ctx),
        "hls_config.cfg": env.get_template("hls_config.cfg.j2").render(ctx),
        "Makefile": env.get_template("Makefile.j2").render(ctx),
        "README.md": env.get_template("README.md.j2").render(ctx),
        "report.md": env.get_template("report.md.j2").render(ctx),
    }
    if ctx["weight_files"]:
        files["tools/weights_to_literals.py"] = env.get_template("weights_to_literals.py.j2").render(ctx)
    return files


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
