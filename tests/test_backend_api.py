"""The backend API: registry, identifiers from hostile ONNX names, and the BYOC partition
that maps every composite function back to the QGraph node it implements."""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnforge
from nnforge.backends import Backend, BackendError, get_backend, list_backends, register_backend
from nnforge.backends.naming import RESERVED, identifiers
from nnforge.backends.partition import partition
from nnforge.backends.patterns import QGRAPH_OPS
from conftest import EXAMPLES, ZOO


class AllOps(Backend):
    name = "test_all_ops"
    description = "takes every QGraph op"
    ops = QGRAPH_OPS

    def codegen(self, design, options):
        return {"kernels.txt": "\n".join(k.ident for k in design.kernels)}


class MacsOnly(Backend):
    name = "test_macs_only"
    ops = {"conv2d", "dense"}

    def codegen(self, design, options):
        return {}


# -- registry ---------------------------------------------------------------------------------------

def test_unknown_backend_lists_valid_names():
    register_backend(AllOps, override=True)
    with pytest.raises(BackendError, match=r"unknown backend 'nope'.*registered backends: .*test_all_ops"):
        get_backend("nope")


def test_register_and_get():
    register_backend(MacsOnly, override=True)
    b = get_backend("test_macs_only")
    assert isinstance(b, MacsOnly)
    assert any(i.name == "test_macs_only" and i.ops == ["conv2d", "dense"] for i in list_backends())
    with pytest.raises(ValueError, match="already registered"):
        register_backend(type("Other", (MacsOnly,), {}))  # same name, another class
    with pytest.raises(TypeError):
        register_backend(object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="identifier"):
        register_backend(type("Bad", (MacsOnly,), {"name": "has space"}))


# -- identifiers ------------------------------------------------------------------------------------

HOSTILE = ['x"); system("rm -rf /"); //', "/features/features.0/Conv", "/features/features_0/Conv", "int",
           "module", "1st", "", "__reserved", "a\nb", "é", "x" * 200]


def test_identifiers_are_safe_unique_and_deterministic():
    ids = identifiers(HOSTILE)
    assert identifiers(HOSTILE) == ids
    assert len(set(ids.values())) == len(set(HOSTILE))
    for ident in ids.values():
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", ident), ident
        assert ident not in RESERVED and "__" not in ident and len(ident) <= 52
    assert ids['x"); system("rm -rf /"); //'] == "x_system_rm_rf"
    assert ids["int"] != "int" and ids["module"] != "module"


# -- partition --------------------------------------------------------------------------------------

def _quantized(path, bits="w8a8"):
    model = nnforge.load(path)
    rng = np.random.default_rng(0)
    if path.name.startswith("digits"):
        x = np.load(EXAMPLES / "digits_calib.npz")["x"]
        x = x.reshape(len(x), -1) if len(model.inputs[0].shape) == 2 else x
    else:
        x = rng.normal(size=[32, *model.inputs[0].shape[1:]]).astype("float32")
    return nnforge.quantize(model, [x], bits)


MODELS = [EXAMPLES / "digits_cnn.onnx", EXAMPLES / "digits_mlp.onnx"] + [
    ZOO / f"{n}.onnx" for n in ("dwsep", "residual", "fire", "factorised", "mlp_bn_train")]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_every_node_is_one_whole_kernel(path):
    """With every op offered, each node of each example model becomes exactly one composite,
    in order, and nothing is left on the host."""
    q = _quantized(path)
    design = partition(q.graph, AllOps())
    assert [k.node.name for k in design.kernels] == [n.name for n in q.graph.nodes]
    assert all(k.pattern == f"nnforge_test_all_ops.{k.node.op}" for k in design.kernels)
    assert [h.op for h in design.host] == [h.op for h in q.graph.host_ops]
    # nothing but the external calls (and the final tuple/output) is left in main
    import tvm
    from tvm import relax

    host_calls = [b.value.op for blk in design.module["main"].body.blocks for b in blk.bindings
                  if isinstance(b.value, relax.Call) and not isinstance(b.value.op, tvm.ir.GlobalVar)]
    assert host_calls == [], host_calls


def test_unsupported_ops_stay_on_host_with_reasons():
    q = _quantized(ZOO / "residual.onnx")
    design = partition(q.graph, MacsOnly())
    macs = [n.name for n in q.graph.nodes if n.op in ("conv2d", "dense")]
    assert [k.node.name for k in design.kernels] == macs
    rest = [n for n in q.graph.nodes if n.op not in ("conv2d", "dense")]
    assert [h.name for h in design.host] == [n.name for n in rest]
    assert all(f"no kernel for '{h.op}'" in h.reason for h in design.host)
