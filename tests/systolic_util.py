"""Shared helpers of the systolic tests: models, quantization, partition, and running a plan."""

from __future__ import annotations

import functools
import warnings

import numpy as np

import nnforge
from nnforge.backends.partition import partition
from nnforge.backends.systolic import SystolicBackend, isa_sim
from nnforge.backends.systolic.layout import pack, unpack
from nnforge.compiler.qgraph import QGraph, QTensor
from conftest import EXAMPLES, ZOO

MODELS = ["digits_cnn", "digits_mlp", "dwsep", "residual", "fire", "factorised", "mlp_bn"]
BACKEND = SystolicBackend()


def options(**given) -> dict:
    """The backend's defaults updated with ``given`` (what the generic parse hands the hooks)."""
    return {**BACKEND.option_defaults(), **given}


@functools.lru_cache(maxsize=None)
def data(name: str) -> tuple[nnforge.Model, np.ndarray, np.ndarray]:
    """(model, calibration inputs, test inputs): the digits data, or seeded normal inputs for the zoo."""
    if name.startswith("digits"):
        model = nnforge.load(EXAMPLES / f"{name}.onnx")
        calib, test = np.load(EXAMPLES / "digits_calib.npz")["x"], np.load(EXAMPLES / "digits_test.npz")["x"]
        if name == "digits_mlp":
            calib, test = calib.reshape(len(calib), -1), test.reshape(len(test), -1)
        return model, calib, test
    model = nnforge.load(ZOO / f"{name}.onnx")
    shape = [d if isinstance(d, int) else 1 for d in model.inputs[0].shape][1:]
    rng = np.random.default_rng(0)
    return model, rng.standard_normal([64] + shape).astype(np.float32), rng.standard_normal([16] + shape).astype(
        np.float32)


@functools.lru_cache(maxsize=None)
def quantized(name: str, bits: str = "w8a8", share: int | None = None):
    model, calib, _ = data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return nnforge.quantize(model, [calib], bits, compress=None if share is None else {"share_bits": share})


def design(graph: QGraph):
    return partition(graph, BACKEND)


def with_shapes(graph: QGraph, codes: list[np.ndarray]) -> QGraph:
    """A hand-built graph's tensors get their shapes from one reference run (the mapping needs them)."""
    from nnforge.compiler import reference

    values = reference.run(graph, codes)
    for name, v in values.items():
        t = graph.tensors[name]
        graph.tensors[name] = QTensor(t.name, ("batch",) + v.shape[1:], t.qtype, t.scale)
    graph.inputs = [graph.tensors[t.name] for t in graph.inputs]
    return graph


def run_plan(plan, graph: QGraph, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every layer's output (its trace region at its SYNC) and the stream outputs, through isa_sim."""
    m = plan.params.machine
    n = len(codes[0])
    words = np.zeros((n, sum(s.count for s in plan.inputs), m.cols), np.int64)
    for s, c in zip(plan.inputs, codes):
        pack(s.layout.to_json(s.offset, graph.tensors[s.name].qtype.signed, 8), c, words)
    r = isa_sim.run(m, plan.program, plan.wmem, plan.imem, plan.pmem, words, plan.trace_regions())
    out = {}
    for layer in plan.layers:
        t = layer.node.output
        out[t] = unpack(plan.layouts[t].to_json(0, graph.tensors[t].qtype.signed, 8), r.traces[layer.ident], m.in_bits)
    for s in plan.outputs:
        got = unpack(s.layout.to_json(s.offset, graph.tensors[s.name].qtype.signed, 8), r.outputs, m.in_bits)
        assert np.array_equal(got, out.get(s.name, got)), s.name  # the stream and the trace agree
        out[s.name] = got
    return out
