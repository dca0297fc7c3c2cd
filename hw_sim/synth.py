"""Synthesis with yosys (YoWASP): the accelerator's resources per module, read from ``stat -json``.

``synthesize(design, target)`` runs one of three flows on a :class:`Design` (Verilog sources, a
top module, its parameters and the ``$readmemh`` images it opens):

* ``ecp5-*``: ``synth_ecp5`` (LUT4, TRELLIS_FF, CCU2C carries, MULT18X18D, DP16KD);
* ``xc7``: ``synth_xilinx -family xc7`` (LUT6, FDRE, CARRY4, DSP48E1, RAMB18E1/RAMB36E1);
* ``generic``: technology-independent gates (``abc -g cmos``) and ``stat -tech cmos``, the
  transistor estimate an ASIC team can read before choosing a PDK.  Inferred memories stay
  ``$mem_v2`` cells (SRAM macros, counted in bits), not thousands of flip-flops.

The hierarchy is kept (``-noflatten``): each module is synthesized once however many times it
is instantiated (one PE, not 64), the per-module table comes straight from ``stat``, and
nextpnr flattens the netlist when it reads it.  Every result is cached under
``$XDG_CACHE_HOME/nnforge/synth/<key>/``, the key a digest of the flow, the script (target,
top, parameters), every source and memory image, and the tool's version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnforge.compiler.errors import InputError
from nnforge.hw_sim import yowasp
from nnforge.hw_sim.cells import resources
from nnforge.hw_sim.devices import Device, get_device

FLOW_VERSION = "nnforge-synth-1"
RTL_SUFFIXES = (".v", ".vh", ".sv", ".svh")


@dataclass(frozen=True)
class Design:
    """What to synthesize.  ``memories`` maps the file name ``$readmemh`` opens to its image."""

    rtl: tuple[Path, ...]  # every source and header; the .v/.sv ones are read, in this order
    top: str
    parameters: tuple[tuple[str, int | str], ...] = ()
    memories: tuple[tuple[str, Path], ...] = ()

    @staticmethod
    def make(rtl, top: str, parameters: dict | None = None, memories: dict | None = None) -> "Design":
        params = tuple(sorted((str(k), v if isinstance(v, str) else int(v)) for k, v in (parameters or {}).items()))
        mems = tuple(sorted((str(k), Path(v)) for k, v in (memories or {}).items()))
        return Design(tuple(sorted((Path(p) for p in rtl), key=lambda p: p.name)), top, params, mems)

    @property
    def sources(self) -> list[Path]:
        return [p for p in self.rtl if p.suffix in (".v", ".sv")]

    def parameter_dict(self) -> dict[str, int | str]:
        return dict(self.parameters)

    def digest(self) -> str:
        """A digest of every input file's name and bytes, and the parameters."""
        h = hashlib.sha256()
        for tag, files in (("rtl", [(p.name, p) for p in self.rtl]), ("mem", list(self.memories))):
            for name, path in files:
                h.update(f"{tag}:{name}\0".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
        h.update(json.dumps([self.top, list(self.parameters)]).encode())
        return h.hexdigest()


@dataclass
class SynthResult:
    """The measured figures of one synthesis.  Resource counts are in the device's units."""

    target: str
    family: str
    part: str
    top: str
    parameters: dict[str, Any]
    tool: str
    totals: dict[str, int]  # lut, ff, carry, dsp, bram, lutram, mux, other
    cells: dict[str, int]  # every cell type of the whole design
    instances: list[dict[str, Any]]  # one row per instance under the top (subtree totals), plus the top's own
    modules: list[dict[str, Any]]  # one row per module: instances and resources of one instance
    transistors: int | None = None  # generic: stat -tech cmos over the logic (memories excluded)
    transistors_complete: bool = True  # False when stat met cells it has no transistor count for
    sram_bits: int = 0  # generic: bits held in inferred memories ($mem_v2 macros)
    memories: list[dict[str, Any]] = field(default_factory=list)  # generic: every $mem_v2 cell
    rams: list[dict[str, Any]] = field(default_factory=list)  # FPGA: every instance holding block or LUT RAM
    ports: list[list] = field(default_factory=list)  # the top's [name, direction, bits], for the LPF and IO check
    seconds: float = 0.0  # wall time of the run that made this result (not of a cache hit)
    cached: bool = False
    key: str = ""
    workdir: str = ""  # the cache entry: netlist.json, stat.json, yosys.log

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report_dict(self) -> dict[str, Any]:
        """The deterministic part, for a project's report.json (no paths, no timings)."""
        d = self.to_dict()
        for k in ("seconds", "cached", "workdir"):
            d.pop(k)
        return d


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnforge" / "synth"


def _param_value(name: str, value: int | str) -> str:
    if isinstance(value, str):
        if any(c in value for c in '"\\\n ;'):
            raise InputError(f"parameter {name} must be a plain file name, not {value!r}")
        return f'"{value}"'
    return str(int(value))


def yosys_script(design: Design, family: str, flatten: bool = False) -> str:
    """The yosys script of one flow; it runs in a directory holding rtl/ and the memory images."""
    top = design.top
    lines = ["read_verilog -defer -I rtl " + " ".join(f"rtl/{p.name}" for p in design.sources)]
    if family == "ecp5":
        # NNF_ECP5: the RTL instantiates MULT18X18D with its own registers (nnf_mul_reg.v), whose
        # black box must be known before `hierarchy -check`
        lines = ["read_verilog -lib +/lattice/cells_bb_ecp5.v",
                 lines[0].replace("read_verilog -defer", "read_verilog -defer -D NNF_ECP5")]
    if design.parameters:
        sets = " ".join(f"-set {k} {_param_value(k, v)}" for k, v in design.parameters)
        lines.append(f"chparam {sets} {top}")
    lines.append(f"hierarchy -check -top {top}")
    if family == "ecp5":
        lines.append(f"synth_ecp5 -top {top}{'' if flatten else ' -noflatten'}")
    elif family == "xc7":  # synth_xilinx keeps the hierarchy unless told to flatten
        lines.append(f"synth_xilinx -family xc7 -top {top}{' -flatten' if flatten else ''}")
    else:
        # synth up to (not including) memory_map: memories stay $mem_v2 (SRAM macros); then fine-grained
        # cells, enables/sync resets as muxes (the cmos transistor table counts plain $_DFF_P_ only),
        # and CMOS gates.
        # abc's default gate-mapping script (&dch, &nf) took 185 s on a 2x2 array for 0.3% fewer transistors
        lines += [f"synth -top {top}{' -flatten' if flatten else ''} -run :fine", "opt -fast -full", "techmap",
                  "opt -fast", "dffunmap", "abc -g cmos -script +strash;dc2;dretime;map", "opt_clean"]
    stat = "stat -tech cmos -json" if family == "generic" else "stat -json"
    lines += [f"tee -q -o stat.json {stat}", "write_json netlist.json", ""]
    return "\n".join(lines)


def cache_key(*parts: str) -> str:
    """A cache entry's name: the digest of ``parts`` (the flow version, the step, its inputs, the tool's version)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:32]


def _stage(design: Design, work: Path) -> None:
    (work / "rtl").mkdir(parents=True)
    names = [p.name for p in design.rtl]
    if len(set(names)) != len(names):
        raise InputError(f"RTL file names must be unique, not {sorted(names)}")
    for p in design.rtl:
        shutil.copyfile(p, work / "rtl" / p.name)
    for name, path in design.memories:
        if Path(name).name != name:
            raise InputError(f"memory image names must be plain file names, not {name!r}")
        shutil.copyfile(path, work / name)


def cached_run(key: str, build) -> tuple[Path, bool]:
    """The cache entry ``key``, made by ``build(tmpdir)`` when absent.  Returns (dir, was_cached)."""
    root = cache_root()
    entry = root / key
    if (entry / "result.json").is_file():
        return entry, True
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        build(tmp)
        if entry.exists():  # a concurrent run finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return entry, False


def synthesize(design: Design, target: str, flatten: bool = False, use_cache: bool = True) -> SynthResult:
    """Run yosys for ``target`` (see devices.DEVICES) and read its ``stat -json``; cached."""
    device = get_device(target)
    script = yosys_script(design, device.family, flatten)
    key = cache_key(FLOW_VERSION, "synth", device.family, script, design.digest(), yowasp.version("yosys"))

    def build(work: Path) -> None:
        _stage(design, work)
        (work / "synth.ys").write_text(script)
        t0 = time.perf_counter()
        yowasp.run("yosys", ["-q", "-l", "yosys.log", "-s", "synth.ys"], work, "yosys.out")
        result = _parse(work, design, device)
        result.seconds = round(time.perf_counter() - t0, 2)
        result.key = key
        (work / "result.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")

    if not use_cache:
        shutil.rmtree(cache_root() / key, ignore_errors=True)
    entry, hit = cached_run(key, build)
    data = json.loads((entry / "result.json").read_text())
    data.update(cached=hit, workdir=str(entry))
    if not data.get("ports"):  # an entry written before results kept the ports
        top = json.loads((entry / "netlist.json").read_text())["modules"]
        mod = next(m for m in top.values() if m.get("attributes", {}).get("top"))
        data["ports"] = [[n, p["direction"], len(p["bits"])] for n, p in mod["ports"].items()]
    return SynthResult(**data)


# -- reading yosys' machine-readable output -------------------------------------------------------------

def module_name(raw: str) -> str:
    """``$paramod$<hash>\\nnf_sdp_ram`` / ``$paramod\\nnf_pe\\IN_W=8`` / ``\\top`` -> the Verilog name."""
    if raw.startswith("$paramod"):
        return raw.split("\\")[1]
    return raw[1:] if raw.startswith("\\") else raw


def _plain(raw: str) -> str:
    return raw[1:] if raw.startswith("\\") else raw


def _own_cells(stat_module: dict, modules: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    cells, subs = {}, {}
    for cell, n in stat_module["num_cells_by_type"].items():
        (subs if _plain(cell) in modules else cells)[cell] = int(n)
    return cells, subs


def _transistors(value) -> tuple[int | None, bool]:
    if value is None:
        return None, True
    text = str(value)
    return int(text.rstrip("+")), not text.endswith("+")


def _parse(work: Path, design: Design, device: Device) -> SynthResult:
    stat = json.loads((work / "stat.json").read_text())
    netlist = json.loads((work / "netlist.json").read_text())["modules"]
    # stat names public modules "\\name", write_json "name"; use write_json's spelling throughout
    smods = {_plain(m): v for m, v in stat["modules"].items()}
    names = set(smods)
    top_raw = next((m for m in smods if m in netlist and netlist[m].get("attributes", {}).get("top")), design.top)
    family = device.family

    own: dict[str, dict[str, int]] = {}
    children: dict[str, list[tuple[str, str]]] = {}  # module -> [(instance, module)]
    for m in smods:
        own[m] = _own_cells(smods[m], names)[0]
        children[m] = [(inst, c["type"]) for inst, c in netlist.get(m, {}).get("cells", {}).items()
                       if c["type"] in names]

    def subtree(m: str) -> dict[str, int]:
        total = dict(own[m])
        for _inst, child in children[m]:
            for cell, n in subtree(child).items():
                total[cell] = total.get(cell, 0) + n
        return total

    counts: dict[str, int] = {}

    def count(m: str, k: int) -> None:
        counts[m] = counts.get(m, 0) + k
        for _inst, child in children[m]:
            count(child, k)

    count(top_raw, 1)
    all_cells = subtree(top_raw)

    def row(label: str, m: str, cells: dict[str, int], n: int = 1) -> dict[str, Any]:
        r = {"instance": label, "module": module_name(m), **resources(family, cells)}
        if family == "generic":
            r["transistors"], r["transistors_complete"] = _transistors(smods[m].get("estimated_num_transistors"))
            if label == "(top logic)":
                r["transistors"] = None  # stat counts a module with its submodules; no own figure
        return r

    instances = [row(inst, child, subtree(child)) for inst, child in sorted(children[top_raw])]
    instances.append(row("(top logic)", top_raw, own[top_raw]))
    modules = []
    for m in sorted(counts, key=lambda m: (module_name(m), m)):
        r = row("", m, own[m])
        r.pop("instance")
        r["instances"] = counts[m]
        r["params"] = _paramod_params(netlist.get(m, {}))
        modules.append(r)

    result = SynthResult(
        target=device.target, family=family, part=device.part, top=design.top,
        parameters=design.parameter_dict(), tool=yowasp.version("yosys"),
        totals=resources(family, all_cells), cells=dict(sorted(all_cells.items())),
        instances=instances, modules=modules)
    result.rams = _rams(family, top_raw, own, children)
    result.ports = [[name, p["direction"], len(p["bits"])] for name, p in netlist[top_raw]["ports"].items()]
    if family == "generic":
        result.transistors, result.transistors_complete = _transistors(
            stat["design"].get("estimated_num_transistors"))
        result.memories = _memories(netlist, top_raw, children)
        result.sram_bits = sum(m["bits"] for m in result.memories)
        if result.memories:  # the $mem_v2 cells are what stat could not count: accounted for in sram_bits
            others = {c for c in all_cells if not c.startswith("$_") and not c.startswith("$mem")}
            result.transistors_complete = not others
    return result


def _rams(family: str, top: str, own: dict, children: dict) -> list[dict[str, Any]]:
    """Instances whose own cells include block or LUT RAM: path, module, counts."""
    out = []

    def walk(m: str, path: str) -> None:
        res = resources(family, own[m])
        if path and (res["bram"] or res["lutram"]):
            out.append({"path": path, "module": module_name(m), "bram": res["bram"], "lutram": res["lutram"]})
        for inst, child in children[m]:
            walk(child, f"{path}.{inst}" if path else inst)

    walk(top, "")
    return sorted(out, key=lambda r: r["path"])


def _paramod_params(mod: dict) -> dict[str, Any]:
    """The parameter values a derived module was built with (yosys keeps them as attributes... or not)."""
    out = {}
    for k, v in mod.get("parameter_default_values", {}).items():
        out[k] = _bits_value(v)
    return out


def _bits_value(v):
    if isinstance(v, str) and v and set(v) <= {"0", "1"} and len(v) >= 32:
        return int(v, 2)
    return v


def _memories(netlist: dict, top: str, children: dict) -> list[dict[str, Any]]:
    """Every $mem_v2 cell under the top: hierarchical path, depth, width and bits."""
    out = []

    def walk(m: str, path: str) -> None:
        for inst, cell in netlist.get(m, {}).get("cells", {}).items():
            if cell["type"].startswith("$mem"):
                p = cell["parameters"]
                depth, width = _bits_value(p["SIZE"]), _bits_value(p["WIDTH"])
                depth = int(depth, 2) if isinstance(depth, str) else int(depth)
                width = int(width, 2) if isinstance(width, str) else int(width)
                out.append({"path": f"{path}{inst}", "depth": depth, "width": width, "bits": depth * width})
        for inst, child in children.get(m, []):
            walk(child, f"{path}{inst}.")

    walk(top, "")
    return sorted(out, key=lambda r: r["path"])
