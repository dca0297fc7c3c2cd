"""The CPU schedule's conv path vectorized over output channels, against numpy, exactly.

Integer-valued data keeps float32 sums exact, so both int32 and float32 builds must equal the
float64 numpy convolution bit for bit (the schedule never reorders a reduction).  Each case
also checks that the channel path was really taken (``cpu_schedule.stats``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from nnforge.compiler.lower import cpu_schedule
from nnforge.compiler.ops.conv2d import float_conv2d as _conv2d

LANES = cpu_schedule.WIDE_VECTOR

CASES = [  # (channels in, out, height, width, kernel, stride, dilation, padding)
    (8, LANES, 7, 7, 3, 1, 1, 1),
    (16, 2 * LANES, 14, 9, 3, 2, 1, 1),  # stride 2, odd width
    (12, 3 * LANES, 6, 5, 1, 1, 1, 0),  # 1x1, no pad
    (4, LANES, 11, 10, 3, 1, 2, 2),  # dilated
    (3, 4 * LANES, 16, 16, 7, 2, 1, 3),  # a ResNet stem
]


def _build(case, dtype: str, epilogue: bool, weight_param: bool = False):
    c, o, h, w, k, s, d, p = case
    rng = np.random.default_rng(sum(case))
    weight = rng.integers(-3, 4, (o, c, k, k)).astype(dtype)
    bias = rng.integers(-5, 6, (1, o, 1, 1)).astype(dtype)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, h, w), dtype))
    wv = relax.Var("w", relax.TensorType(weight.shape, dtype)) if weight_param else relax.const(weight)
    with bb.function("main", [x, wv] if weight_param else [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, wv, strides=s, padding=p, dilation=d, out_dtype=dtype))
            if epilogue:  # bias and ReLU fuse into the conv's function
                y = bb.emit(relax.op.nn.relu(relax.op.add(y, relax.const(bias))))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    data = rng.integers(-4, 5, (1, c, h, w)).astype(dtype)
    want = _conv2d(dict(weight=weight, bias=np.zeros(o), groups=1, padding=(p,) * 4, strides=(s, s),
                        dilation=(d, d)), data.astype(np.float64))
    if epilogue:
        want = np.maximum(want + bias, 0)
    return bb.get(), ([data, weight] if weight_param else [data]), want


# weight_param: the weights are an input, not a constant, so they stay OIHW and are copied per tile
# epilogue False: the conv writes the function's output
@pytest.mark.parametrize("epilogue, weight_param", [(True, False), (False, False), (True, True)])
@pytest.mark.parametrize("dtype", ["int32", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_channel_vectorized_conv_is_exact(case, dtype, epilogue, weight_param):
    mod, args, want = _build(case, dtype, epilogue, weight_param)
    before = dict(cpu_schedule.stats)
    vm = relax.VirtualMachine(cpu_schedule.build(mod), tvm.cpu())
    assert cpu_schedule.stats["by_channels"] == before["by_channels"] + 1
    assert cpu_schedule.stats["unscheduled"] == before["unscheduled"]
    got = vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.astype(np.float64), want)


def test_tiles_divide_the_output_and_fit_the_registers():
    for oc, oh, ow in [(64, 56, 56), (512, 7, 7), (256, 14, 14), (2048, 7, 7), (128, 28, 28), (LANES, 3, 13)]:
        p, r, v = _tiles(oc, oh, ow)
        assert ow % p == 0 and oh % r == 0 and (oc // LANES) % v == 0
        assert p * r * v <= cpu_schedule.CONV_ACCUMULATORS
    assert _tiles(LANES + 1, 4, 4) is None  # channels not whole vectors: the other path


def _tiles(oc, oh, ow):
    class Fake:
        def get(self, loop):
            return loop

    class Loop:
        def __init__(self, n):
            self.extent = tvm.tirx.IntImm("int64", n)

    return cpu_schedule._conv_tiles(Fake(), [Loop(oc), Loop(oh), Loop(ow)], 1)
