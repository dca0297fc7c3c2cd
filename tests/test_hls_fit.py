"""The hls backend's fit step: estimates against a part, the warning, and reuse_factor=auto.

``auto`` is checked against a brute-force search over every reuse-factor pair of a two-layer
model (the smallest worst-layer II that fits a small made-up part), and end to end on the
digits CNN and the light SqueezeNet (which at reuse_factor=1 needs 1.2 M DSPs)."""

from __future__ import annotations

import itertools
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nnforge
from nnforge.backends.hls import HLSBackend
from nnforge.backends.hls import estimate as est
from nnforge.backends.hls.fit import PARTS, FitWarning, Part, auto_reuse, part_resources, timing, utilization
from nnforge.backends.partition import partition
from nnforge.cli import main
from nnforge.compiler.errors import InputError
from conftest import EXAMPLES, LIGHT

BACKEND = HLSBackend()


def test_part_table_by_prefix():
    assert part_resources("xcu250-figd2104-2L-e") is PARTS["xcu250"]
    assert part_resources("XCZU9EG-ffvb1156-2-e") is PARTS["xczu9eg"]
    assert part_resources("xc7z020clg400-1") is PARTS["xc7z020"]
    assert part_resources("xcvu9p-flga2104-2L-e") is None
    z = PARTS["xc7z020"]
    assert (z.dsp, z.bram18, z.lut, z.ff) == (220, 280, 53_200, 106_400)  # DS190, Z-7020


def test_utilization_and_timing_by_hand():
    from nnforge.backends.base import LayerEstimate

    ests = [LayerEstimate("a", "dense", 100, 40, dsp=110, bram18=14, lut=26_600, ff=1_000),
            LayerEstimate("b", "dense", 50, 80, dsp=0, bram18=0, lut=0, ff=0)]
    u = utilization(ests, PARTS["xc7z020"])
    assert u["used"] == {"dsp": 110, "bram18": 14, "lut": 26_600, "ff": 1_000}
    assert u["percent"] == {"dsp": 50.0, "bram18": 5.0, "lut": 50.0, "ff": 0.94} and u["fits"] is True
    t = timing(ests, 5.0)
    assert t["latency_cycles"] == 150 and t["latency_us"] == 0.75
    assert t["ii_cycles"] == 80 and t["bottleneck"] == "b" and t["throughput_per_s"] == pytest.approx(2.5e6)
    assert utilization(ests, None)["fits"] is None


@pytest.fixture(scope="module")
def mlp_design():
    q = nnforge.quantize(nnforge.load(EXAMPLES / "digits_mlp.onnx"),
                         [np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64)], "w8a8")
    return partition(q.graph, BACKEND)


def test_auto_matches_brute_force(mlp_design):
    """Every reuse-factor triple on a grid: the smallest worst II whose estimates fit the part."""
    design = mlp_design
    opts = BACKEND.check_options({})
    macs = [k.node.name for k in design.kernels if k.node.op == "dense"]
    assert len(macs) == 3
    full = est.estimate(design, {**opts, "reuse_factor": 1})
    dsp_full = sum(e.dsp for e in full)
    part = Part("toy", dsp=dsp_full // 5, bram18=10_000, lut=10**9, ff=10**9)
    rf, ests = auto_reuse(design, opts, {}, part)
    got_ii = max(e.ii for e in ests)
    assert sum(e.dsp for e in ests) <= part.dsp
    grid = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64]
    best = None
    for combo in itertools.product(grid, repeat=3):
        e = est.estimate(design, {**opts, "reuse_factor": dict(zip(macs, combo))})
        if all(sum(getattr(x, r) for x in e) <= getattr(part, r) for r in ("dsp", "bram18", "lut", "ff")):
            ii = max(x.ii for x in e)
            best = ii if best is None else min(best, ii)
    assert best is not None and got_ii <= best, (rf, got_ii, best)
    assert got_ii > 1  # the part really forced sharing


def test_fit_warning_and_auto_on_the_digits_cnn(tmp_path):
    q = nnforge.quantize(nnforge.load(EXAMPLES / "digits_cnn.onnx"), [np.load(EXAMPLES / "digits_calib.npz")["x"]],
                         "w8a8")
    design = partition(q.graph, BACKEND)
    with pytest.warns(FitWarning, match=r"does not fit part xc7z020clg400-1 by the estimates: DSP [\d,]+ of 220"):
        BACKEND.estimate(design, {"part": "xc7z020clg400-1"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        BACKEND.estimate(design, {"part": "xc7z020clg400-1", "reuse_factor": "auto"})
    with pytest.raises(InputError, match=r"reuse_factor' auto must be used with a part of the resource table"):
        BACKEND.estimate(design, {"part": "xcvu9p-flga2104-2L-e", "reuse_factor": "auto"})
    from nnforge.backends.options import parse_options

    assert parse_options(BACKEND, {"reuse_factor": "auto"})["reuse_factor"] == "auto"
    assert parse_options(BACKEND, {"reuse_factor": "8"})["reuse_factor"] == 8
    with pytest.raises(InputError, match=r"option 'reuse_factor' must be an integer like 1 or 'auto', not 'sometimes'"):
        parse_options(BACKEND, {"reuse_factor": "sometimes"})
    out = tmp_path / "cnn"
    res = CliRunner().invoke(main, ["compile", str(EXAMPLES / "digits_cnn.onnx"), "--backend", "hls", "--calib",
                                    str(EXAMPLES / "digits_calib.npz"), "--bits", "w8a8", "-o", str(out),
                                    "--option", "reuse_factor=auto", "--option", "part=xc7z020clg400-1"])
    assert res.exit_code == 0, res.output
    assert re.search(r"fit: xc7z020clg400-1: DSP [\d.]+%, BRAM18 [\d.]+%, LUT [\d.]+%, FF [\d.]+% of the part: fits;",
                     res.output), res.output
    fit = json.loads((out / "report.json").read_text())["fit"]
    assert fit["fits"] is True and fit["part"] == "xc7z020" and fit["reuse_factor_option"] == "auto"
    assert all(v <= 100 for v in fit["percent"].values()) and max(fit["reuse_factors"].values()) > 1
    assert fit["interval_us"] == pytest.approx(fit["ii_cycles"] * 5.0 / 1000)
    md = (out / "report.md").read_text()
    assert "the design\n**fits** by the estimates" in md and "% of part" in md and "samples/s" in md
    # the chosen factors reach the generated C: the codegen's reuse factor comment
    conv = (out / "src" / "kernels" / "conv2d.h").read_text()
    assert any(f"reuse factor {r}" in conv for r in fit["reuse_factors"].values() if r > 1)


@pytest.mark.slow
def test_light_squeezenet_auto_fits_xcu250():
    model = nnforge.load(LIGHT / "light_squeezenet.onnx")
    shape = [1 if isinstance(d, str) else d for d in model.inputs[0].shape]
    calib = np.random.default_rng(0).normal(size=[2] + shape[1:]).astype(np.float32)
    q = nnforge.quantize(model, [calib], "w8a8", batch_size=2 if isinstance(model.inputs[0].shape[0], str) else shape[0])
    design = partition(q.graph, BACKEND)
    with pytest.warns(FitWarning, match=r"DSP 1,2\d\d,\d{3} of 12,288"):
        BACKEND.estimate(design, {})  # reuse_factor=1: 1.2 M DSPs
    base = BACKEND.fit_report(design, {})
    auto = BACKEND.fit_report(design, {"reuse_factor": "auto"})
    print(f"\n[fit] light SqueezeNet on xcu250: rf=1 {base['percent']} II {base['ii_cycles']}; "
          f"auto {auto['percent']} II {auto['ii_cycles']} ({auto['throughput_per_s']:.0f}/s at 5 ns)")
    assert base["fits"] is False and auto["fits"] is True
    # the worst II is the floor no reuse factor can lower (a layer without MACs, or a conv reading its input)
    assert auto["ii_cycles"] == base["ii_cycles"]
