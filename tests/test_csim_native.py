"""csim.build's ``-march=native`` (the default): the same codes as the x86-64 baseline build, layer by
layer, against the numpy reference, at -O3 (where g++ vectorises the conv and dense loops with the
machine's vector width and 64-bit multiplies), and a cache entry of its own per instruction set."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import nnforge
from nnforge.backends.hls import HLSBackend
from nnforge.backends.partition import partition
from nnforge.compiler import reference
from nnforge.hw_sim import csim
from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH")


def test_native_target_digest():
    flags, isa = csim.native_target(shutil.which("g++"))
    if not flags:
        pytest.skip("this g++ does not take -march=native")
    assert flags == ("-march=native",) and len(isa) == 16
    assert csim.native_target(shutil.which("g++")) == (flags, isa)  # one probe per process


@pytest.mark.slow
def test_native_and_baseline_builds_agree_with_the_reference(tmp_path):
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"].astype(np.float32)
    q = nnforge.quantize(nnforge.load(EXAMPLES / "digits_cnn.onnx"), [calib], "w8a8")
    backend = HLSBackend()
    files = backend.codegen(partition(q.graph, backend), {})
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    m = json.loads(files["csim.json"])
    t = q.graph.inputs[0].qtype
    rng = np.random.default_rng(11)
    codes = np.concatenate([rng.integers(t.lo, t.hi + 1, size=(64, *calib.shape[1:])),
                            np.full((1, *calib.shape[1:]), t.lo), np.full((1, *calib.shape[1:]), t.hi)])
    want = reference.run(q.graph, [codes])
    libs = []
    for native in (False, True):
        so = csim.build(tmp_path / "src", "nnforge_top", tmp_path / "cache", opt="-O3", native=native)
        got = csim.CSim(so, "nnforge_top", m["in_size"], m["out_size"], m["trace_size"]).trace(codes)
        bad = {n.name: int(np.count_nonzero(got[n.name] != want[n.output])) for n in q.graph.nodes}
        assert sum(bad.values()) == 0, (native, {k: v for k, v in bad.items() if v})
        libs.append(so)
    assert libs[0] != libs[1] or not csim.native_target(shutil.which("g++"))[0]  # keyed by the instruction set
