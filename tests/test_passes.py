"""Cleanup passes, each tested as Before -> Expected (structural equality), like TVM's own
Relax pass tests, plus a numeric check of the whole pipeline against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from onnx import helper, numpy_helper
from tvm.script import ir as I
from tvm.script import relax as R

import nnforge
from nnforge.compiler.passes import fold_batchnorm, fold_constants, normalize_dense, strip_training
from conftest import ort_run

W = np.arange(12, dtype="float32").reshape(4, 3) / 10
B = np.array([0.5, -1.0, 2.0], dtype="float32")


def test_strip_training_removes_dropout_and_bn_training_mode():
    g, b, mu, var = (np.full(3, v, "float32") for v in (2.0, 0.5, 0.1, 4.0))

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3, 4, 4), "float32")):
            with R.dataflow():
                d = R.nn.dropout(x, 0.5)
                d0 = d[0]
                bn = R.nn.batch_norm(d0, R.const(g), R.const(b), R.const(mu), R.const(var), axis=1, training=True)
                y = bn[0]
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3, 4, 4), "float32")):
            with R.dataflow():
                bn = R.nn.batch_norm(x, R.const(g), R.const(b), R.const(mu), R.const(var), axis=1, training=False)
                y = bn[0]
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(strip_training(Before), Expected)


def test_fold_batchnorm_into_conv_with_bias():
    w = np.ones((3, 2, 1, 1), "float32")
    cb = np.array([1.0, 2.0, 3.0], "float32").reshape(1, 3, 1, 1)
    gamma, beta = np.array([2.0, 1.0, 0.5], "float32"), np.array([0.0, 1.0, -1.0], "float32")
    mean, var = np.array([1.0, 0.0, 1.0], "float32"), np.array([3.0, 0.0, 15.0], "float32")
    eps = 1.0  # hand-picked so that s = gamma / sqrt(var + eps) = [1, 1, 0.125] is exact
    s = np.array([1.0, 1.0, 0.125], "float32")
    w2 = w * s.reshape(3, 1, 1, 1)
    b2 = ((cb.reshape(3) - mean) * s + beta).reshape(1, 3, 1, 1)  # [0, 3, -0.75]

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w))
                cb_ = R.add(c, R.const(cb))
                bn = R.nn.batch_norm(cb_, R.const(gamma), R.const(beta), R.const(mean), R.const(var), axis=1, epsilon=eps, training=False)
                y = bn[0]
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w2))
                y = R.add(c, R.const(b2))
                R.output(y)
            return y

    assert np.array_equal(b2.reshape(3), np.array([0.0, 3.0, -0.75], "float32"))
    tvm.ir.assert_structural_equal(fold_batchnorm(Before), Expected)


def test_standalone_batchnorm_becomes_affine():
    gamma, beta = np.array([4.0, 1.0], "float32"), np.array([1.0, 0.0], "float32")
    mean, var = np.array([0.5, 2.0], "float32"), np.array([3.0, 0.0], "float32")

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                r = R.nn.relu(x)
                bn = R.nn.batch_norm(r, R.const(gamma), R.const(beta), R.const(mean), R.const(var), axis=1, epsilon=1.0, training=False)
                y = bn[0]
                R.output(y)
            return y

    s = np.array([2.0, 1.0], "float32").reshape(1, 2, 1)  # gamma / sqrt(var + 1)
    t = np.array([0.0, -2.0], "float32").reshape(1, 2, 1)  # beta - mean * s

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                r = R.nn.relu(x)
                m = R.multiply(r, R.const(s))
                y = R.add(m, R.const(t))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(fold_batchnorm(Before), Expected)


def test_normalize_dense_bias_shape_and_missing_bias():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                a = R.matmul(x, R.const(W))
                b = R.add(a, R.const(B.reshape(1, 3)))
                c = R.matmul(b, R.const(W[:3]))
                R.output(c)
            return c

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                a = R.matmul(x, R.const(W))
                b = R.add(a, R.const(B))
                c0 = R.matmul(b, R.const(W[:3]))
                c = R.add(c0, R.const(np.zeros(3, "float32")))
                R.output(c)
            return c

    tvm.ir.assert_structural_equal(normalize_dense(Before), Expected)


def test_normalize_dense_folds_gemm_alpha():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                s = R.multiply(x, R.const(0.5, "float32"))
                a = R.matmul(s, R.const(W))
                y = R.add(a, R.const(B))
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                a = R.matmul(x, R.const(W * 0.5))
                y = R.add(a, R.const(B))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(normalize_dense(Before), Expected)


def test_fold_constants_materialises_broadcast_weights():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                w = R.broadcast_to(R.const(0.25, "float32"), R.shape([4, 3]))
                y = R.matmul(x, w)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 4), "float32")):
            with R.dataflow():
                y = R.matmul(x, R.const(np.full((4, 3), 0.25, "float32")))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(fold_constants(Before), Expected)


def _gemm_model(alpha: float, beta: float, trans_b: int, bias_shape) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 4) if trans_b else (4, 3)).astype("float32")
    c = rng.normal(size=bias_shape).astype("float32")
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=alpha, beta=beta, transB=trans_b, name="fc")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "alpha,beta,trans_b,bias_shape",
    [(1.0, 1.0, 0, (3,)), (0.5, 2.0, 1, (1, 3)), (1.0, 0.25, 1, ()), (2.0, 1.0, 0, (1,))],
)
def test_gemm_variants_match_onnxruntime(alpha, beta, trans_b, bias_shape, rng):
    model = _gemm_model(alpha, beta, trans_b, bias_shape)
    m = nnforge.load(model)
    ops = [b.value.op.name for blk in m.relax["main"].body.blocks for b in blk.bindings
           if isinstance(b.value, tvm.relax.Call)]
    assert ops == ["relax.matmul", "relax.add"]  # one dense form, whatever the Gemm flags
    x = rng.normal(size=(5, 4)).astype("float32")
    # float path: TVM and onnxruntime may sum in different orders
    np.testing.assert_allclose(m.run(x)["y"], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_pipeline_map_names_the_functions_that_run():
    """Every stage of ``passes.PIPELINE`` names a function that exists, in the documented order."""
    import importlib

    from nnforge.compiler.passes import PIPELINE

    assert [stage for stage, _ in PIPELINE] == ["import", "cleanup", "group", "calibrate", "prune/share",
                                                "quantize", "lower", "partition", "codegen"]
    for stage, ref in PIPELINE:
        module, _, attr = ref.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        assert callable(obj), stage
