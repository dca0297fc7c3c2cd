"""TVM BYOC end to end: ``relax.ext.nnforge_hls`` under ``RunCodegen``, and the Relax VM running a
partitioned model whose offloaded parts execute the generated C (``backends/byoc.py``).

The model keeps a host layer in the middle: a lookup-table activation between two convs (a
variant of the hls backend without the ``lut`` kernel leaves it to TVM llvm), then a pool and a
dense layer.  Every output code must equal the numpy reference, and each external function
must really have run through its compiled C.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from tvm import relax

from nnforge.backends import byoc
from nnforge.backends.base import Design
from nnforge.backends.hls import HLSBackend
from nnforge.backends.partition import partition
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.quant.numerics import QType
from nnforge.compiler.qgraph import QNode
from test_bitexact import make_graph

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the external functions run as C under g++")


class HostLutHLS(HLSBackend):
    """The hls backend without its lut kernel: lookup tables stay on the host."""

    ops = HLSBackend.ops - {"lut"}


def _graph():
    rng = np.random.default_rng(0)

    def rq(**kw):
        return dict(multiplier=np.int64(3), shift=np.int64(8), lo=None, hi=None, rounding="RND", overflow="SAT", **kw)

    def conv(name, src, c, o):
        return QNode("conv2d", name, [src], name, dict(
            weight=rng.integers(-8, 8, (o, c, 3, 3)), bias=rng.integers(-50, 50, o), strides=(1, 1),
            padding=(1, 1, 1, 1), dilation=(1, 1), groups=1, acc_dtype="int32", **rq()))

    t8 = QType(8, True)
    table = np.clip(np.arange(-128, 128) // 2 + rng.integers(-3, 4, 256), -128, 127)  # a made-up activation
    nodes = [(conv("c1", "x", 2, 3), t8),
             (QNode("lut", "act", ["c1"], "act", dict(table=table, offset=-128)), t8),
             (conv("c2", "act", 3, 4), t8),
             (QNode("max_pool2d", "pool", ["c2"], "pool", dict(pool_size=(2, 2), strides=(2, 2), padding=(0, 0, 0, 0),
                                                                 dilation=(1, 1), ceil_mode=False)), t8),
             (QNode("reshape", "flat", ["pool"], "flat", dict(shape=(-1, 36))), t8),
             (QNode("dense", "fc", ["flat"], "fc", dict(weight=rng.integers(-8, 8, (36, 5)), bias=rng.integers(-9, 9, 5),
                                                        acc_dtype="int32", **rq())), t8)]
    return make_graph([("x", (2, 2, 6, 6), t8)], nodes, symbolic_batch=True)


@pytest.fixture(scope="module")
def design():
    return partition(_graph(), HostLutHLS())


def test_partition_has_a_host_layer_between_two_external_functions(design):
    assert [h.name for h in design.host] == ["act"]
    assert len(byoc.symbols(design)) == 2
    first, second = byoc.parts(design, HostLutHLS().check_options({}))
    assert [n.name for n in first.design.graph.nodes] == ["c1"] and first.input == "x" and first.output == "c1"
    assert [n.name for n in second.design.graph.nodes] == ["c2", "pool", "flat", "fc"] and second.input == "act"
    assert (first.options["top"], second.options["top"]) == ("nnforge_top_p0", "nnforge_top_p1")


def test_run_codegen_through_relax_ext_nnforge_hls(design, tmp_path):
    be = HostLutHLS()
    assert byoc.register_codegen(be) == "relax.ext.nnforge_hls"
    assert tvm.get_global_func("relax.ext.nnforge_hls") is not None
    mod, parts = byoc.run_codegen(design, be, be.check_options({}))
    mods = list(mod.attrs["external_mods"])
    assert len(mods) == 2
    text = mod["main"].script()
    assert text.count("R.call_dps_packed") == 2 and all(p.symbol in text for p in parts)
    # each runtime module is the part's C++ in one file, which compiles on its own
    for m, p in zip(mods, parts):
        src = m.inspect_source()
        assert src.startswith(f"// {p.options['top']}: the generated C++ in one file") and '#include "' not in src
        path = tmp_path / f"{p.options['top']}.cpp"
        path.write_text(src)
        proc = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                               "-Wno-unknown-pragmas", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]


def test_relax_vm_runs_the_generated_c_bit_exact(design, tmp_path):
    graph = design.graph
    ex = byoc.MixedExecutor(design, HostLutHLS(), {}, tmp_path)
    rng = np.random.default_rng(5)
    t = graph.inputs[0].qtype
    batches = [rng.integers(t.lo, t.hi + 1, (7, 2, 6, 6)), np.full((2, 2, 6, 6), t.lo), np.full((1, 2, 6, 6), t.hi)]
    for x in batches:
        got = ex.run(x)
        want = reference.run(graph, [x.astype(np.int64)])[graph.outputs[0]]
        assert got.shape == want.shape and np.array_equal(got.astype(np.int64), want)
    assert list(ex.calls.values()) == [len(batches)] * 2  # both external functions ran as C, once per batch
    uniform = reference.run(graph, [batches[0].astype(np.int64)])
    assert np.unique(uniform[graph.outputs[0]]).size > 3  # an informative comparison
    assert not np.array_equal(uniform["act"], uniform["c1"])  # the host lut really changes the codes


def test_mixed_executor_detects_wrong_c(design, tmp_path):
    """The comparison can fail: a hand-broken generated kernel makes the VM's output differ."""
    ex = byoc.MixedExecutor(design, HostLutHLS(), {}, tmp_path)
    project = next(p for p in sorted(tmp_path.iterdir()) if p.name.startswith("p1_"))
    kernel = project / "src" / "kernels" / "dense.h"
    kernel.write_text(kernel.read_text().replace("acc = B_", "acc = 4096 + B_"))
    ex.backend._sims.clear()  # rebuild from the edited sources
    x = np.random.default_rng(6).integers(-128, 128, (4, 2, 6, 6))
    want = reference.run(design.graph, [x])[design.graph.outputs[0]]
    assert not np.array_equal(ex.run(x).astype(np.int64), want)


def test_a_part_with_two_inputs_is_refused():
    """An external function reading two tensors has no one-input top: a clear error."""
    graph = _graph()
    # the second conv's part also reads the graph input: add(x-derived, act) is not expressible
    d = partition(graph, HostLutHLS())
    bad = Design(d.backend, d.graph, d.module, d.kernels, d.host, d.idents)
    bad.kernels[1].node.inputs.append("x")
    try:
        with pytest.raises(InputError, match=r"must read one tensor and make one, not 2 \(act, x\)"):
            byoc.sub_design(bad, bad.kernels[1].symbol)
    finally:
        bad.kernels[1].node.inputs.pop()
