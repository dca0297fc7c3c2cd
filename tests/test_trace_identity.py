"""Traced float tensors are found by identity, not by Relax var name (names repeat after cleanup).

``tests/models/residual_train.onnx`` holds two bindings named ``lv9`` after BatchNorm folding,
like the light ResNet-50 (12 names twice); a by-name trace handed one layer another layer's
tensor.  The oracle is ``float_forward.run_layer``: the float layers executed one by one in
numpy, independent of TVM.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

import nnforge
from conftest import LIGHT, ZOO
from nnforge.compiler.quant.float_forward import run_layer
from nnforge.compiler.quant.layers import float_layers, tensor_names, traced_module
from nnforge.compiler.frontend.relax_utils import static_shape
from nnforge.quantized import FloatTrace, calibrate

DUPLICATED = ZOO / "residual_train.onnx"


def _duplicate_names(mod) -> list[str]:
    func = mod["main"]
    counts = collections.Counter(b.var.name for blk in func.body.blocks for b in blk.bindings)
    return sorted(name for name, n in counts.items() if n > 1)


def _numpy_forward(model, layers, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's float output by layer name, through numpy only."""
    names = tensor_names(model.relax["main"], layers, [s.name for s in model.inputs])
    values = {model.inputs[0].name: x.astype(np.float64)}
    for layer in layers:
        values[layer.name] = run_layer(layer, [values[names[v]] for v in layer.inputs])
    return values


def _layer_shape(layer, n: int) -> tuple[int, ...]:
    return tuple(n if isinstance(d, str) else d for d in static_shape(layer.output))


@pytest.fixture(scope="module")
def duplicated():
    model = nnforge.load(DUPLICATED)
    layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
    return model, [l for l in layers if l.name not in host]


def test_the_model_really_has_duplicate_var_names(duplicated):
    model, layers = duplicated
    dups = _duplicate_names(model.relax)
    assert dups, "the test model must produce duplicate Relax names, or this file tests nothing"
    # and a layer's output carries one of them, so a by-name lookup can pick the wrong binding
    assert any(l.output.name in dups for l in layers)


def test_traced_module_returns_each_layers_own_tensor(duplicated):
    model, layers = duplicated
    ret = traced_module(model.relax, layers)["main"].ret_ty.fields
    assert len(ret) == len(layers)
    for layer, ty in zip(layers, ret):
        want = [str(d) if isinstance(d, str) else d for d in static_shape(layer.output)]
        got = [int(d) if hasattr(d, "value") else str(d) for d in ty.shape.values]
        assert got == want, layer.name


def test_float_trace_values_equal_numpy_layer_by_layer(duplicated, rng):
    model, layers = duplicated
    x = rng.standard_normal((3,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    traced = FloatTrace(model, layers)([x])
    expected = _numpy_forward(model, layers, x)
    assert list(traced) == [l.name for l in layers]
    for layer in layers:
        assert traced[layer.name].shape == _layer_shape(layer, 3), layer.name
        np.testing.assert_allclose(traced[layer.name], expected[layer.name], rtol=1e-4, atol=1e-4,
                                   err_msg=layer.name)


def test_calibration_statistics_come_from_each_layers_own_tensor(duplicated, rng):
    model, layers = duplicated
    x = rng.standard_normal((8,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    stats = calibrate(model, [x], layers, batch_size=3)
    expected = _numpy_forward(model, layers, x)
    for layer in layers:
        st, want = stats[layer.name], expected[layer.name]
        assert st.count == want.size, layer.name
        assert st.max == pytest.approx(want.max(), rel=1e-4, abs=1e-5), layer.name
        assert st.min == pytest.approx(want.min(), rel=1e-4, abs=1e-5), layer.name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["light_resnet50", "light_squeezenet", "light_densenet121", "light_inception_v1",
                                  "light_inception_v2"])
def test_light_model_traces_every_layer_with_its_own_shape(name):
    """Structural (no build): the traced module's i-th output has layer i's shape."""
    model = nnforge.load(LIGHT / f"{name}.onnx")
    layers, _ = float_layers(model.relax, model.output_names, model.onnx_names)
    ret = traced_module(model.relax, layers)["main"].ret_ty.fields
    for layer, ty in zip(layers, ret):
        assert [int(d) for d in ty.shape.values] == list(static_shape(layer.output)), layer.name
    if name == "light_resnet50":  # the model of the bug report: the names really repeat
        assert len(_duplicate_names(model.relax)) == 12
    if name == "light_inception_v1":  # its two LRNs are layers of their own (found whole), not on the host
        assert [l.name for l in layers if l.op == "lrn"] == ["n3", "n8"]
    if name == "light_inception_v2":  # average pools that exclude their padding (count_include_pad=0)
        assert sum(l.op == "avg_pool2d" and not l.attrs["count_include_pad"] for l in layers) == 8
