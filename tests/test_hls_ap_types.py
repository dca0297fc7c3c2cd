"""The hls backend's C simulation against Xilinx's real ap_int (the ap_types headers in hls4ml).

``NNF_USE_AP_INT`` makes every ``nnf_int<W>``/``nnf_uint<W>``/``nnf_acc<W>`` the vendor's
``ap_int``/``ap_uint``; the traces must equal the numpy reference exactly, so ``nnf_int.h`` and
``ap_int`` have the same semantics on every op the kernels emit.  Covered:

* every example and zoo model (w8a8; the MLP at w4a8), on random inputs and inputs at the
  type's extremes, through ap_int and through the kernels' synthesis loop nests;
* >= 200 graphs drawn by the hypothesis strategies of ``test_bitexact.py`` (every single-input
  op, the three chains), on its five input sets (uniform, extremes, ramps over every code,
  constants at lo / hi), through the ap_int build and the plain nnf_int build;
* the strict front end (g++ -Wall -Wextra -Werror) on all of their sources in the C-simulation
  form, the NNF_USE_AP_INT form and the synthesis form;
* ``nnforge verify OUTDIR --ap-types [DIR]`` end to end, and its errors.

The graphs go into a few unity builds per form (``hw_sim/csim_unity.py``, cached by content),
since most of a small project's build is parsing ap_int.h; graphs with a 16-bit lut (65,536
literals, which double the g++ time of the whole test) skip the ap_int form.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import nnforge
from nnforge.backends.hls import HLSBackend
from nnforge.backends.partition import partition
from nnforge.cli import main
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.hw_sim import ap_types, csim, csim_unity
from conftest import EXAMPLES, ZOO

sys.path.insert(0, str(Path(__file__).parent))
import test_bitexact as tb  # noqa: E402  (the hypothesis graph strategies)
from test_hls_codegen import _quantize, _test_codes  # noqa: E402

try:
    AP_DIR = ap_types.find()
except InputError as err:
    AP_DIR = None
    WHY = str(err)

pytestmark = [pytest.mark.skipif(shutil.which("g++") is None, reason="C simulation needs g++ on PATH"),
              pytest.mark.skipif(AP_DIR is None, reason="the ap_types headers need hls4ml (pip install -e '.[test]')")]

BACKEND = HLSBackend()
GRAPHS = 260  # drawn; those the hls backend takes (one graph input and output, rank-2 dense) are kept
MIN_GRAPHS = 200
CHUNK = 40  # projects per unity build
LUT_AP_MAX = 4096  # tables larger than this skip the ap_int build (below)
MODELS = [(EXAMPLES / "digits_cnn.onnx", "w8a8"), (EXAMPLES / "digits_mlp.onnx", "w4a8")] + [
    (ZOO / f"{n}.onnx", "w8a8") for n in ("dwsep", "residual", "fire", "factorised", "mlp_bn_train")]
# (pow2 / TRN / WRAP: the generated graphs draw them all, through ap_int too)
STRATEGY = st.one_of(
    tb.conv2d_case(), tb.dense_case(), tb.conv2d_case(prop="int64_acc", force_int64=True),
    tb.pool_case("max_pool2d", "pool[max_pool2d]"), tb.pool_case("avg_pool2d", "pool[avg_pool2d]"), tb.gap_case(),
    *(tb.elementwise_case(op, f"elementwise[{op}]") for op in ("requant", "clip", "lut")),
    *(tb.shape_case(op, f"shape_ops[{op}]") for op in ("reshape", "transpose", "pad")),
    *(tb.chain_case(t, f"chain[{t}]") for t in "ABC"))


def _draw_graphs() -> list:
    out = []

    @settings(max_examples=GRAPHS, **tb.SETTINGS)
    @given(STRATEGY)
    def collect(case):
        out.append(case)

    collect()
    return out


def _write(files: dict, root: Path) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


FORMS = {  # name -> (ap_types folder or None, defines, g++ optimisation)
    "ap_int": ("ap", (), "-Og"),  # the vendor's types, the C-simulation loop nests
    "nnf_int": (None, (), "-O1"),  # nnf_int.h's own types
    "synthesis_loops": (None, ("NNF_SYNTHESIS_FORM",), "-O1"),  # the loop nests Vitis reads
}


def _form_args(form: str) -> dict:
    ap, defines, opt = FORMS[form]
    return dict(ap_dir=AP_DIR if ap else None, defines=defines, opt=opt)


class GraphBuilds:
    """The generated graphs, in unity builds of CHUNK projects per form (one unit of every graph
    costs g++ more than the sum of smaller ones)."""

    def __init__(self, work: Path):
        self.work, self.graphs, self.refused = work, [], 0
        projects: list[tuple[Path, str]] = []
        for i, (graph, rng) in enumerate(_draw_graphs()):
            top = f"g{i}"
            try:
                files = BACKEND.codegen(partition(graph, BACKEND), {"top": top})
            except InputError:  # two graph inputs, rank-3 dense, a transpose of the batch axis
                self.refused += 1
                continue
            projects.append((_write(files, work / top), top))
            self.graphs.append((graph, rng, top, json.loads(files["csim.json"])))
        # a 16-bit lut's 65,536 literals double the test's g++ time (measured: 44 -> 101 s of unity
        # builds, 29 -> 88 s of strict passes): those graphs run in the two nnf_int forms only
        big = {top for graph, _, top, _ in self.graphs
               if any(n.op == "lut" and np.size(n.attrs.table) > LUT_AP_MAX for n in graph.nodes)}
        self.so: dict[str, dict[str, Path]] = {f: {} for f in FORMS}
        self.units: list[tuple[str, Path]] = []
        t0 = time.perf_counter()
        for form in FORMS:
            a = _form_args(form)
            todo = [p for p in projects if a["ap_dir"] is None or p[1] not in big]
            for c in range(0, len(todo), CHUNK):
                chunk = todo[c:c + CHUNK]
                unit = work / f"unity_{form}{c}"
                so = csim_unity.build(chunk, unit, ap_types_dir=a["ap_dir"], opt=a["opt"], defines=a["defines"])
                self.units.append((form, unit / "src"))
                for _, top in chunk:
                    self.so[form][top] = so
        self.build_s = time.perf_counter() - t0

    def sims(self, top: str, m: dict) -> dict[str, csim.CSim]:
        nodes = [(n["name"], n["shape"]) for n in m["nodes"]]
        return {form: csim.CSim(so[top], top, m["in_size"], m["out_size"], m["trace_size"], nodes=nodes)
                for form, so in self.so.items() if top in so}


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> GraphBuilds:
    return GraphBuilds(tmp_path_factory.mktemp("ap_graphs"))


def _compare(graph, sims: dict[str, csim.CSim], x: np.ndarray, counts: dict) -> None:
    ref = reference.run(graph, [x])
    for form, sim in sims.items():
        got = sim.trace(x)
        for node in graph.nodes:
            want = ref[node.output]
            g = got[node.name].reshape(want.shape)
            bad = int(np.count_nonzero(g != want))
            assert bad == 0, (f"{form}: node {node.name!r} ({node.op}) differs from the reference in {bad} of "
                              f"{want.size} codes; first at {tuple(np.argwhere(g != want)[0])}")
            counts[form] = counts.get(form, 0) + 1
            counts["informative"] = counts.get("informative", 0) + int(form == "ap_int" and np.unique(want).size > 1)
        out = sim.run(x)
        assert np.array_equal(out.reshape(ref[graph.outputs[0]].shape), ref[graph.outputs[0]]), form


@pytest.mark.slow
def test_generated_graphs_bit_exact_under_ap_int(graphs):
    counts: dict[str, int] = {}
    ops = set()
    for graph, rng, top, m in graphs.graphs:
        sims = graphs.sims(top, m)
        for inputs in tb.input_sets(graph, rng):
            _compare(graph, sims, inputs[0].astype(np.int64), counts)
        ops.update(n.op for n in graph.nodes)
    print(f"\n[ap_types] {len(graphs.graphs)} generated graphs ({graphs.refused} of {GRAPHS} drawn not hls graphs), "
          f"{counts['ap_int']} traced tensors x {len(FORMS)} forms, 0 mismatches; ops {sorted(ops)}; "
          f"{len(graphs.units)} unity builds {graphs.build_s:.1f} s")
    ap_graphs = len({top for top in graphs.so["ap_int"]})
    print(f"[ap_types] {ap_graphs} of them through ap_int (the rest hold a lut of more than {LUT_AP_MAX} entries)")
    assert ap_graphs >= MIN_GRAPHS
    assert counts["nnf_int"] == counts["synthesis_loops"] >= counts["ap_int"] > 0
    assert counts["informative"] >= 0.5 * counts["ap_int"], "most compared tensors are constant: a weak check"
    assert ops >= {"conv2d", "dense", "max_pool2d", "avg_pool2d", "global_avg_pool", "requant", "clip", "lut",
                   "reshape", "transpose", "pad", "add", "mul", "concat"}


@pytest.mark.slow
@pytest.mark.parametrize("path,config", MODELS, ids=[f"{p.stem}-{c}" for p, c in MODELS])
def test_every_example_and_zoo_model_bit_exact_under_ap_int(path, config, tmp_path):
    q = _quantize(path, config)
    files = BACKEND.codegen(partition(q.graph, BACKEND), {})
    root = _write(files, tmp_path)
    m = json.loads(files["csim.json"])
    nodes = [(n["name"], n["shape"]) for n in m["nodes"]]
    sims = {}
    for form in ("ap_int", "synthesis_loops"):  # nnf_int.h's types on these models: test_hls_codegen.py
        a = _form_args(form)
        so = csim.build(root / "src", "nnforge_top", opt=a["opt"], defines=(*((ap_types.DEFINE,) if a["ap_dir"] else ()),
                                                                            *a["defines"]),
                        system_includes=(a["ap_dir"],) if a["ap_dir"] else ())
        sims[form] = csim.CSim(so, "nnforge_top", m["in_size"], m["out_size"], m["trace_size"], nodes=nodes)
    counts: dict[str, int] = {}
    x = _test_codes(path, q)
    t = q.graph.inputs[0].qtype
    extreme = np.random.default_rng(2).choice(np.array([t.lo, t.hi]), size=(16, *x.shape[1:]))
    for codes in (x, extreme):
        _compare(q.graph, sims, np.asarray(codes, np.int64), counts)
    assert counts["ap_int"] == counts["synthesis_loops"] == 2 * len(q.graph.nodes)
    assert counts["informative"] >= len(q.graph.nodes)
    # the strict front end on the form Vitis reads (the other two: the graphs' units, and verify's test)
    ap_types.check_form(root / "src", "nnforge_top", "synthesis", AP_DIR)


@pytest.mark.slow
def test_strict_front_end_on_every_generated_source(graphs):
    """-Wall -Wextra -Werror over all the generated graphs' sources, in each of the three forms."""
    for form, src in graphs.units:
        if form == "nnf_int":
            ap_types.check_form(src, csim_unity.UNITY_TOP, "csim")
        elif form == "ap_int":
            ap_types.check_form(src, csim_unity.UNITY_TOP, "csim_ap", AP_DIR)
            ap_types.check_form(src, csim_unity.UNITY_TOP, "synthesis", AP_DIR)


def test_strict_front_end_rejects_a_warning(tmp_path):
    """The check can fail: an unused variable in a kernel (what -Wall warns about) stops it."""
    graph, _ = _digits_like_graph()
    src = _write(BACKEND.codegen(partition(graph, BACKEND), {}), tmp_path) / "src"
    assert ap_types.strict_check(src, "nnforge_top", AP_DIR)[-1].startswith("synthesis form (")
    kernel = next((src / "kernels").glob("*.h"))
    kernel.write_text(kernel.read_text().replace("{\n", "{\n    int nnf_unused_probe = 0;\n", 2))
    for form in ("csim", "csim_ap", "synthesis"):
        with pytest.raises(csim.CSimError, match="unused variable"):
            ap_types.check_form(src, "nnforge_top", form, AP_DIR)


def _digits_like_graph():
    """A small conv -> pool -> dense graph (test_bitexact's chain A), hypothesis-free."""
    from nnforge.compiler.quant.numerics import QType
    from nnforge.compiler.qgraph import QNode

    rng = np.random.default_rng(3)
    xt = QType(8, True)
    w = rng.integers(-8, 8, (3, 2, 3, 3))
    conv = dict(weight=w, bias=rng.integers(-50, 50, 3), strides=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1),
                groups=1, acc_dtype="int32", multiplier=np.int64(3), shift=np.int64(7), lo=0, hi=None,
                rounding="RND", overflow="SAT")
    nodes = [(QNode("conv2d", "conv", ["x"], "conv", conv), QType(8, False))]
    return tb.make_graph([("x", (2, 2, 5, 5), xt)], nodes), rng


@pytest.fixture(scope="module")
def cnn_project(tmp_path_factory) -> Path:
    q = _quantize(EXAMPLES / "digits_cnn.onnx", "w4a8")
    out = tmp_path_factory.mktemp("verify") / "cnn"
    nnforge.compile_model(q, "hls", out)
    return out


@pytest.mark.slow
def test_verify_ap_types_cli(cnn_project):
    res = CliRunner().invoke(main, ["verify", str(cnn_project), "--ap-types", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["passed"] and doc["mismatches"] == 0 and doc["compared_tensors"] == 7
    note = next(n for n in doc["notes"] if "ap_types" in n)
    assert str(AP_DIR) in note and "synthesis form (__SYNTHESIS__, ap_int.h)" in note
    # an explicit DIR, the same headers
    res = CliRunner().invoke(main, ["verify", str(cnn_project), "--ap-types", str(AP_DIR)])
    assert res.exit_code == 0 and "PASS: bit-exact" in res.output, res.output


def test_verify_ap_types_errors(cnn_project, tmp_path):
    res = CliRunner().invoke(main, ["verify", str(cnn_project), "--ap-types", str(tmp_path)])
    assert res.exit_code == 2
    assert "--ap-types DIR must be a folder holding ap_int.h" in res.output and str(tmp_path) in res.output
