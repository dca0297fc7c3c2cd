"""``nnforge synth OUTDIR``: synthesis, place and route and a bitstream for a systolic project.

The steps, in order:

1. check the options (target, package, frequency, seed) and open the project (``systolic.json``,
   ``rtl/``, ``mem/``);
2. fit before synthesizing: the analytic model's DSPs and block RAMs against the device;
3. yosys (``synth.synthesize``), then the measured figures against the device;
4. with ``pnr``: nextpnr-ecp5 (``pnr.place_and_route``); with ``bitstream``: ecppack;
5. write ``OUTDIR/synth/`` and add the figures to ``report.json`` / ``report.md``
   (``synth_report``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnforge.compiler.errors import InputError
from nnforge.hw_sim import resource_model
from nnforge.hw_sim.devices import DEVICES, UNITS, Device, check_freq, check_package, check_seed, get_device
from nnforge.hw_sim.pnr import SEED, PnrResult, bitstream as make_bitstream, lpf_template, place_and_route
from nnforge.hw_sim.synth import RTL_SUFFIXES, Design, SynthResult, synthesize

DEFAULT_TARGET = "ecp5-85k"
LIBRARY_TOP = "nnf_systolic_top"


@dataclass
class SystolicProject:
    """The parts of a compiled systolic project that synthesis reads."""

    path: Path
    manifest: dict[str, Any]  # systolic.json
    report: dict[str, Any] | None  # report.json, when present
    design: Design

    @property
    def parameters(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.manifest["parameters"].items() if not isinstance(v, str)}


def open_systolic_project(path: str | Path) -> SystolicProject:
    """Read ``path/systolic.json`` and find the RTL and memory images it names."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"OUTDIR must be a project directory written by `nnforge compile`, not {str(path)!r}")
    report = json.loads((path / "report.json").read_text()) if (path / "report.json").is_file() else None
    manifest_path = path / "systolic.json"
    if not manifest_path.is_file():
        backend = f"; it is a {report.get('backend')!r} project" if report and report.get("backend") else ""
        raise InputError(f"OUTDIR must be a systolic project (`nnforge compile --backend systolic`, with a "
                         f"systolic.json), not {str(path)!r}{backend}")
    manifest = json.loads(manifest_path.read_text())
    if not str(manifest.get("format", "")).startswith("nnforge-systolic/") or "parameters" not in manifest:
        raise InputError(f"systolic.json in {str(path)!r} must be an nnforge-systolic manifest with 'parameters', "
                         f"not format {manifest.get('format')!r}")
    rtl = sorted(p for p in (path / "rtl").glob("*") if p.suffix in RTL_SUFFIXES) if (path / "rtl").is_dir() else []
    if not rtl:
        raise InputError(f"the project {str(path)!r} must hold its Verilog in rtl/, not have none")
    memories = {}
    for name, mem in sorted(manifest.get("memories", {}).items()):
        image = path / mem["file"]
        if not image.is_file():
            raise InputError(f"memory image {mem['file']!r} of {name} must exist in {str(path)!r}, not be missing")
        memories[Path(mem["file"]).name] = image  # $readmemh opens prog.hex etc. in the working directory
    # A `top` option other than the library's is a wrapper that only fixes the parameters (no ports or
    # logic of its own): synthesize the accelerator itself, with the parameters, so the tables show its units.
    top = LIBRARY_TOP if any(p.name == f"{LIBRARY_TOP}.v" for p in rtl) else manifest.get("top") or LIBRARY_TOP
    return SystolicProject(path, manifest, report, Design.make(rtl, top, manifest["parameters"], memories))


def default_target(manifest: dict[str, Any]) -> str:
    """The project's ``part`` option when it names a target, else ECP5-85F."""
    part = str(manifest.get("part") or "")
    if part in DEVICES:
        return part
    return "xc7" if part.lower().startswith("xc7") else DEFAULT_TARGET


# -- fitting ------------------------------------------------------------------------------------------

def check_fit(device: Device, need: dict[str, int], source: str, detail: dict[str, str] | None = None) -> None:
    """An InputError with the numbers when ``need`` exceeds ``device`` (``source``: model or yosys)."""
    if device.family == "generic":
        return
    cap = device.capacity()
    over = [k for k in ("dsp", "bram", "lut", "ff") if k in need and need[k] > cap[k]]
    if not over:
        return
    units = UNITS[device.family]
    parts = [f"{need[k]} {units[k]}" + (f" ({detail[k]})" if detail and k in detail else "") + f" where it has {cap[k]}"
             for k in over]
    fits = [d.target for d in DEVICES.values()
            if d.family == device.family and all(need.get(k, 0) <= d.capacity()[k] for k in ("dsp", "bram", "lut", "ff"))]
    hint = f"choose --target {' or '.join(fits)}" if fits else "no device of this family is large enough"
    raise InputError(f"the design must fit the {device.part}, not need {'; '.join(parts)} ({source}); {hint}, "
                     f"or compile a smaller array or shallower memories (--option rows=/cols=/*_depth=)")


def _model_detail(rows: list[resource_model.UnitEstimate]) -> dict[str, str]:
    out = {}
    for k in ("dsp", "bram"):
        parts = [f"{r.name} {getattr(r, k)}" for r in rows if getattr(r, k)]
        out[k] = ", ".join(parts)
    return out


# -- the run ------------------------------------------------------------------------------------------

@dataclass
class SynthRun:
    """Everything one ``nnforge synth`` produced."""

    project: SystolicProject
    device: Device
    package: str
    freq_mhz: float
    model: list[resource_model.UnitEstimate]
    synth: SynthResult
    pnr: PnrResult | None = None
    bitstream: Path | None = None
    files: list[str] = field(default_factory=list)  # written under OUTDIR/synth/
    times: dict[str, Any] = field(default_factory=dict)  # seconds and cache hits of each step
    entry: dict[str, Any] = field(default_factory=dict)  # what report.json["synthesis"][target] got


def run_synth(project_dir: str | Path, target: str | None = None, pnr: bool = False, bitstream: bool = False,
              freq: float | str | None = None, package: str | None = None, use_cache: bool = True,
              seed: int | str | None = None) -> SynthRun:
    """Synthesize a systolic project for ``target`` (and place, route and pack it); see the module doc."""
    from nnforge.hw_sim import synth_report

    t_start = time.perf_counter()
    if target is not None:
        get_device(target)  # an unknown target is an error before anything is read
    if freq is not None:
        check_freq(freq)
    seed = SEED if seed is None else check_seed(seed)
    project = open_systolic_project(project_dir)
    device = get_device(target or default_target(project.manifest))
    freq_mhz = check_freq(freq if freq is not None else project.manifest.get("clock_mhz", 100.0))
    pnr = pnr or bitstream
    if pnr and not device.can_pnr:
        raise InputError(f"--pnr/--bitstream need an ECP5 target (ecp5-25k, ecp5-45k, ecp5-85k), not "
                         f"{device.target!r}: no open place and route for it installs from PyPI")
    package = check_package(device, package)

    model = resource_model.estimate(project.parameters, device.family)
    need = resource_model.totals(model)
    check_fit(device, {"dsp": need["dsp"], "bram": need["bram"]}, "analytic model", _model_detail(model))

    t0 = time.perf_counter()
    synth = synthesize(project.design, device.target, use_cache=use_cache)
    times: dict[str, Any] = {"synth_s": round(time.perf_counter() - t0, 2), "synth_cached": synth.cached,
                             "synth_cold_s": synth.seconds}
    check_fit(device, synth.totals, "measured by yosys")

    run = SynthRun(project, device, package, freq_mhz, model, synth, times=times)
    lpf = None
    if device.family == "ecp5":
        lpf = lpf_template([tuple(p) for p in synth.ports], device.part, package, freq_mhz)
    if pnr:
        t0 = time.perf_counter()
        run.pnr, lpf = place_and_route(synth, device, package, freq_mhz, use_cache=use_cache, seed=seed)
        times.update(pnr_s=round(time.perf_counter() - t0, 2), pnr_cached=run.pnr.cached, pnr_cold_s=run.pnr.seconds)
    out = project.path / "synth"
    staged = _stage_outputs(project.path, synth, run.pnr, lpf)
    if bitstream:
        _bit, secs, hit = make_bitstream(run.pnr, staged / "top.bit")
        times.update(bitstream_s=secs, bitstream_cached=hit)
    _replace_dir(staged, out)
    run.bitstream = out / "top.bit" if bitstream else None
    run.files = sorted(f"synth/{p.name}" for p in out.iterdir())
    times["total_s"] = round(time.perf_counter() - t_start, 2)
    run.entry = synth_report.update_project(run)
    return run


def _stage_outputs(project: Path, synth: SynthResult, pnr: PnrResult | None, lpf: str | None) -> Path:
    """A fresh sibling of OUTDIR/synth holding this run's files (renamed into place at the end)."""
    staged = Path(tempfile.mkdtemp(prefix=".synth-", dir=project))
    src = Path(synth.workdir)
    for name, dest in (("netlist.json", "netlist.json"), ("yosys.log", "yosys.log"), ("stat.json", "stat.json"),
                       ("synth.ys", "synth.ys")):
        shutil.copyfile(src / name, staged / dest)
    if lpf is not None:
        (staged / "top.lpf").write_text(lpf)
    if pnr is not None:
        p = Path(pnr.workdir)
        for name, dest in (("nextpnr.log", "nextpnr.log"), ("report.json", "nextpnr-report.json"),
                           ("top.config", "top.config")):
            shutil.copyfile(p / name, staged / dest)
    return staged


def _replace_dir(staged: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".synth-old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staged, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
