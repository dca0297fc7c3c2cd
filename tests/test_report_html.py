"""report.html (issue 15): one self-contained page per compiled project (hls and systolic) and for
simulate/compress/verify --report, with the dataflow, per-layer widths, the bottleneck flagged,
utilization, latency and throughput at the clock, accuracy, histograms and per-layer SQNR; rendered
in headless Chromium where it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from nnforge.cli import main as cli
from nnforge.report_html import bottlenecks, dataflow_svg, Box, html_page, Section, table

from conftest import EXAMPLES

CALIB, TEST = str(EXAMPLES / "digits_calib.npz"), str(EXAMPLES / "digits_test.npz")
CNN = str(EXAMPLES / "digits_cnn.onnx")


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page), "a resource outside the page"
    assert not re.search(r"url\((?!#)", page)  # CSS urls: only the SVG's own markers
    assert "/tmp/" not in page and "/work/" not in page  # no absolute paths


def test_bottleneck_rule_by_hand():
    # the digits CNN's pipeline: MaxPool's II of 1,024 against the convs' 100
    assert bottlenecks({"conv0": 100, "conv3": 100, "pool6": 1024, "conv7": 36, "pool10": 256, "fc": 1}) == ["pool6"]
    assert bottlenecks({"a": 100, "b": 150}) == []  # 1.5x is no bottleneck
    assert bottlenecks({"a": 100}) == [] and bottlenecks({"a": None, "b": 5}) == []


def test_page_parts_escape_names():
    page = html_page("t<", [Section("s", table(["h"], [["<script>x</script>"]])
                                    + dataflow_svg([Box("<b>", "conv2d", "8x8", "u8", "hardware")]))])
    assert "<script>x" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    _self_contained(page)


def test_histograms_svg_by_hand():
    from nnforge.compiler.compress.compression_report import WeightHistogram
    from nnforge.report_html import histograms_svg

    # stored 0.5 x3 and 1.0 x1 on the range [-1, 1] (the float weights' min to the stored max): 64 bins
    # of 1/32, so 0.5 falls in bin 48 and 1.0 in the last one; the codebook's two lines; the legend
    h = WeightHistogram("fc<1>", "dense", "weight", np.array([0.5, 0.5, 0.5, 1.0]), np.array([-1.0, 0.4, 0.6, 0.9]),
                        np.array([0.5, 1.0]), 0.25)
    svg = histograms_svg([h])
    bars = re.findall(r'<rect class="bar" x="([\d.]+)"[^>]* data-n="(\d+)"', svg)
    assert [int(n) for _, n in bars] == [3, 1]
    assert float(bars[0][0]) == pytest.approx(34 + 48 * (1300 - 44) / 64, abs=0.1)
    assert svg.count('class="code"') == 2 and svg.count('class="orig"') == 1
    assert "fc&lt;1&gt; (dense, K=2, 25% zero)" in svg and "float before compression" in svg
    assert "codebook (K=2)" in svg and svg == histograms_svg([h])  # deterministic


@pytest.fixture(scope="module")
def hls_project(tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "hls"
    res = _cli("compile", CNN, "--backend", "hls", "--calib", CALIB, "--bits", "w4a8", "--prune", "0.8", "--share", "4",
               "--refine", "lsq", "-o", out)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.slow
def test_hls_project_report_html(hls_project):
    report = json.loads((hls_project / "report.json").read_text())
    page = (hls_project / "report.html").read_text(encoding="utf-8")
    assert "report.html" in report["files"]
    assert "report.html" in json.loads((hls_project / "manifest.json").read_text())["files"]
    _self_contained(page)
    # the bottleneck: MaxPool's II against the convs'
    iis = {k["name"]: k["estimate"]["ii"] for k in report["kernels"]}
    worst = max(iis, key=iis.get)
    assert worst == "/features/features.6/MaxPool" and iis[worst] == 1024
    section = page.split("<h2>Bottleneck</h2>")[1].split("</section>")[0]
    assert worst in section and "II 1,024" in section and "10.2x" in section
    # latency and throughput at the clock (5 ns: 200 MHz), utilization of the xcu250 (12,288 DSP)
    t = report["totals"]
    assert f"{t['latency_cycles'] / 200:,.2f} µs" in page
    assert f"{200e6 / t['ii']:,.0f} /s" in page
    assert f"{100 * t['dsp'] / 12_288:.2f} %" in page and "DSP " + f"{t['dsp']:,} of 12,288" in page
    # per-layer widths and the exact storage form; the dataflow picture; histograms inline
    assert "int32 (bound 16 b)" in page  # conv 0: u8 input, i4 weights, K = 1*3*3 -> 8 + 4 + 4
    assert "codebook + sparse indices" in page and "<svg" in page
    # the weight histograms as inline SVG, one plot per weight layer: its bars count the layer's
    # nonzero stored codes, and it draws one dashed line per shared value (K <= 2**4)
    import nnforge
    from nnforge.compiler.compress.compression_report import weight_histograms

    hists = weight_histograms(nnforge.open_project(hls_project).qmodel.graph)
    plots = page.split("<h2>Weight histograms</h2>")[1].split("</section>")[0].split('<g class="hist"')[1:]
    assert len(plots) == len(hists) > 0
    for plot, h in zip(plots, hists):
        assert sum(int(n) for n in re.findall(r'class="bar"[^>]* data-n="(\d+)"', plot)) == h.stored.size
        assert plot.count('class="code"') == h.codebook.size and 0 < h.codebook.size <= 16
        assert f"codebook (K={h.codebook.size})" in plot
    # the settings readable in report.md too (not escaped JSON)
    md = (hls_project / "report.md").read_text()
    assert "compression: prune 80% of each layer's weights" in md and '{"' not in md
    assert "codebook + sparse indices" in md


@pytest.mark.slow
def test_project_html_is_deterministic(hls_project):
    import nnforge
    from nnforge.report_html import project_html

    project = nnforge.open_project(hls_project)
    again = project_html(project.report, project.qmodel, name="digits_cnn.onnx")
    assert again == project_html(project.report, project.qmodel, name="digits_cnn.onnx")
    # the page written at compile time, less its title (the reopened model has no file name)
    strip = lambda p: re.sub(r"<title>.*?</h1>", "", p, flags=re.S)
    assert strip(again) == strip((hls_project / "report.html").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_systolic_project_report_html(tmp_path):
    res = _cli("compile", CNN, "--backend", "systolic", "--calib", CALIB, "--bits", "w4a8", "-o", tmp_path / "s")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "s" / "report.html").read_text(encoding="utf-8")
    _self_contained(page)
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    cycles = {k["name"]: k["predicted_cycles"] for k in report["kernels"]}
    assert bottlenecks(cycles) == [max(cycles, key=cycles.get)]
    assert max(cycles, key=cycles.get) in page.split("<h2>Bottleneck</h2>")[1].split("</section>")[0]
    lat = report["totals"]["latency_cycles"]
    assert f"{lat / 100:,.2f} µs" in page and f"{100e6 / lat:,.0f} /s" in page  # one array: layers in sequence
    assert "nnforge synth OUTDIR" in page  # where its part utilization comes from
    # after `nnforge synth` (report.json gains "synthesis"): utilization of the part and Fmax, hand-made figures
    import nnforge
    from nnforge.report_html import project_html

    project = nnforge.open_project(tmp_path / "s")
    report["synthesis"] = {"ecp5-85k": {"part": "LFE5U-85F", "capacity": {"lut": 83_640, "ff": 83_640, "dsp": 156,
                                                                           "bram": 208},
                                        "resources": {"lut": 20_910, "ff": 8_364, "dsp": 64, "bram": 52},
                                        "units": {"lut": "LUT4", "ff": "FF", "dsp": "MULT18X18D", "bram": "DP16KD"},
                                        "pnr": {"fmax_mhz": 67.7}}}
    page = project_html(report, project.qmodel)
    assert "25.0 %" in page and "LUT4 20,910 of 83,640" in page and "41.0 %" in page and "67.7 MHz" in page
    assert "nnforge synth OUTDIR" not in page


@pytest.mark.slow
def test_simulate_and_compress_reports(tmp_path):
    import nnforge
    from nnforge.report_html import simulate_html
    from nnforge.simulate import simulate

    res = _cli("simulate", CNN, "--data", TEST, "--calib", CALIB, "--bits", "w4a8", "--report", tmp_path / "sim.html")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "sim.html").read_text(encoding="utf-8")
    _self_contained(page)
    # the oracle: the same simulation through the Python API
    model = nnforge.load(CNN)
    x, y = np.load(TEST)["x"], np.load(TEST)["y"]
    qmodel, sim = simulate(model, [x], y, "w4a8", calib=[np.load(CALIB)["x"]])
    assert page == simulate_html(CNN, sim, qmodel)
    for layer in sim.layers:
        assert f"{layer.sqnr_db:.1f}" in page and layer.name in page
    assert f"{sim.quant_accuracy:.4f}" in page and f"{sim.float_accuracy:.4f}" in page
    assert _cli("simulate", CNN, "--data", TEST, "--report", tmp_path / "sim.html").exit_code == 2  # no --force
    res = _cli("compress", CNN, "--calib", CALIB, "--data", TEST, "--share", "4", "--prune", "0.8", "--huffman",
               "--json", "--report", tmp_path / "comp.html")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.splitlines()[-1])
    page = (tmp_path / "comp.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert f"{doc['compression_ratio']:.2f}x" in page and f"{doc['total_bytes']:,} B" in page
    assert "codebook + sparse indices" in page and "(fixed)" in page  # a stream Huffman would enlarge


@pytest.mark.slow
def test_verify_report_has_the_hardware_accuracy(hls_project, tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: verify builds the C simulation")
    res = _cli("verify", hls_project, "--data", TEST, "--json", "--report", tmp_path / "v.html")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.splitlines()[-1])
    page = (tmp_path / "v.html").read_text(encoding="utf-8")
    acc = page.split("<h2>Accuracy</h2>")[1].split("</section>")[0]
    assert f"{doc['accuracy']:.4f}" in acc and "mismatching codes" in acc and "PASS" in acc
    assert doc["mismatches"] == 0


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian: apt-get install "
                                                  "chromium); the page is checked as text only")
def test_report_renders_in_headless_chromium(hls_project, tmp_path):
    import matplotlib.image

    shot = tmp_path / "shot.png"
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", f"--screenshot={shot}", "--window-size=1280,1600",
                           (hls_project / "report.html").as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert "Failed to load resource" not in done.stderr and "Uncaught" not in done.stderr
    pixels = matplotlib.image.imread(shot)[..., :3]
    ink = (pixels.min(axis=2) < 0.8).mean()  # anything darker than light grey: text, boxes, bars
    assert pixels.shape[:2] == (1600, 1280) and ink > 0.02, f"the screenshot is blank ({ink:.2%} ink)"
    red = ((pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).mean()
    assert red > 0.0002, "the bottleneck's red outline and badge are drawn"


@pytest.mark.slow
def test_sweep_report_plots_per_layer_sqnr_against_bits(tmp_path):
    mlp, data, calib = (str(EXAMPLES / f) for f in ("digits_mlp.onnx", "digits_mlp_test.npz", "digits_mlp_calib.npz"))
    res = _cli("sweep", mlp, "--data", data, "--calib", calib, "--weight-bits", "3,8", "-o", tmp_path / "sw",
               "--report", tmp_path / "sw.html")
    assert res.exit_code == 0, res.output
    points = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [p["weight_bits"] for p in points] == [3, 8]
    for p in points:  # the per-layer figures agree with the point's own minimum
        finite = [v for v in p["layer_sqnr_db"].values() if v is not None]
        assert min(finite) == pytest.approx(p["min_sqnr_db"])
    assert points[1]["layer_sqnr_db"]["logits"] > points[0]["layer_sqnr_db"]["logits"]  # more bits, less noise
    page = (tmp_path / "sw.html").read_text(encoding="utf-8")
    _self_contained(page)
    section = page.split("Per-layer SQNR against weight bits")[1].split("</section>")[0]
    assert section.count("<polyline") == len(points[0]["layer_sqnr_db"]) == 3  # one line per layer
    assert all(f"{p['quant_accuracy']:.4f}" in page for p in points)
    assert "layer_sqnr_db" not in (tmp_path / "sw" / "sweep.csv").read_text()  # one value per CSV cell
