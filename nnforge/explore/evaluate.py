"""One trial: quantize and compress a point exactly as ``compile`` does, simulate it bit-accurately,
and measure its costs.

``Evaluator`` is built once per process (the driver, or each Ray worker): it loads nothing
twice.  The float model, its calibration statistics, the float predictions on the data and the
backend object are made in ``__init__`` and reused by every trial; a trial only quantizes (the
same ``nnforge.quantize`` with the same statistics, calibration data and compression pass that
``simulate``/``compile --config best.toml`` run) and simulates the integer graph.

Two simulators, equal code for code (the numerics contract, tests/test_bitexact.py):

* ``reference``: the numpy reference interpreter (``compiler/reference.py``); no build per
  trial, so for small models it is the faster one (digits: ~10 ms for 450 samples);
* ``tvm``: ``nnforge.simulate.simulate`` on the TVM integer build, what ``nnforge simulate``
  runs; every trial's graph has new constants, so it is one build per trial (about 1 s).

``auto`` takes ``reference`` while the model's MACs times the samples stay under 10^9.
Predictions are the arg-max of the integer output codes, as ``simulate`` takes them, so a trial's
accuracy equals ``nnforge simulate --config best.toml``'s (tests/test_explore.py checks it).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from nnforge.compiler.errors import InputError, NNForgeError

from . import space as space_mod

ENGINES = ("auto", "reference", "tvm")
REFERENCE_MACS = 10**9  # auto: the reference interpreter below this many MACs over the data


class Evaluator:
    """Evaluates points of the search space on one model and dataset (see the module docstring)."""

    def __init__(self, model, calib: list[np.ndarray], data: list[np.ndarray], labels: np.ndarray | None,
                 costs: list[str], backend: str | None = None, backend_options: dict | None = None,
                 engine: str = "auto", batch_size: int = 256):
        from nnforge.compiler.quant.layers import float_layers
        from nnforge.compiler.quant.calibrate import batch_size_for, batched_specs
        from nnforge.quantized import calibrate
        from nnforge.compiler.lower.executor import check_inputs

        if engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.model = model
        self.calib = check_inputs(batched_specs(model.inputs), list(calib))
        self.data = check_inputs(batched_specs(model.inputs), list(data))
        self.labels = None if labels is None else np.asarray(labels)
        self.costs = list(costs)
        self.batch_size = batch_size_for(model.inputs, batch_size)
        layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
        self.layers = [(l.name, l.op) for l in layers if l.op in ("conv2d", "dense") and l.name not in host]
        if not self.layers:
            raise InputError("the model must have conv2d or dense layers to explore, not none")
        self.layer_names = [n for n, _ in self.layers]
        self.stats = calibrate(model, self.calib, layers, self.batch_size)  # once: every trial reuses them
        out = model.output_names[0]
        f_out = model.predict(self.data, self.batch_size)[out]
        self.float_pred = f_out.reshape(len(f_out), -1).argmax(1)
        self.float_accuracy = None if self.labels is None else float(np.mean(self.float_pred == self.labels))
        macs = model.summary().total_macs * len(self.data[0])
        self.engine = engine if engine != "auto" else ("reference" if macs < REFERENCE_MACS else "tvm")
        self.backend_name = backend
        self.backend = self.backend_options = None
        if backend is not None:
            from nnforge.backends import get_backend
            from nnforge.compile import resolve_options

            self.backend = get_backend(backend)
            self.backend_options = resolve_options(self.backend, dict(backend_options or {}))

    # -- one point -------------------------------------------------------------------------------

    def quantize(self, quant: dict, comp: dict | None):
        """The quantized model of a point: ``nnforge.quantize`` as ``compile --config`` runs it."""
        from nnforge.quantized import quantize

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # compression fallbacks: recorded as decisions
            return quantize(self.model, self.calib, quant, self.batch_size, stats=self.stats, compress=comp,
                            cache=False)

    def evaluate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every metric of one point, or ``{"error": message}`` when it cannot be built (a width the
        backend refuses, a requantization out of range)."""
        quant, comp = space_mod.configs(params, self.layer_names)
        try:
            qmodel = self.quantize(quant, comp)
            metrics = self._quality(qmodel)
            metrics.update(self._costs(qmodel))
        except NNForgeError as err:
            return {"error": " ".join(str(err).split())[:300]}
        return metrics

    def _quality(self, qmodel) -> dict[str, Any]:
        if self.engine == "tvm":
            from nnforge.simulate import simulate

            _, report = simulate(self.model, self.data, self.labels, qmodel=qmodel, batch_size=self.batch_size,
                                 sqnr_samples=0)
            return {"accuracy": report.quant_accuracy, "agreement": report.agreement}
        from nnforge.compiler import reference
        from nnforge.compiler.quant.calibrate import batches

        graph = qmodel.graph
        preds = []
        for _, batch in batches(self.data, self.batch_size):
            codes = reference.run(graph, graph.quantize_inputs(batch))[graph.outputs[0]]
            preds.append(codes.reshape(len(batch[0]), -1).argmax(1))
        pred = np.concatenate(preds)
        return {"accuracy": None if self.labels is None else float(np.mean(pred == self.labels)),
                "agreement": float(np.mean(pred == self.float_pred))}

    def _costs(self, qmodel) -> dict[str, Any]:
        from nnforge.backends.macs import layer_macs
        from nnforge.compiler.compress.compression_report import compression_report

        graph = qmodel.graph
        huff = compression_report(qmodel, huffman=True)
        fixed = compression_report(qmodel, huffman=False)
        macs_bits = 0
        for node in graph.nodes:
            if node.op in ("conv2d", "dense"):
                w_bits = int(node.attrs.weight_bits or graph_weight_bits(qmodel, node))
                a_bits = graph.tensors[node.inputs[0]].qtype.bits
                macs_bits += layer_macs(graph, node) * w_bits * a_bits
        out = {"bytes": int(huff.total_bytes), "bytes-fixed": int(fixed.total_bytes),
               "compression_ratio": float(huff.compression_ratio), "float_bytes": int(huff.float_bytes),
               "macs-bits": int(macs_bits)}
        if self.backend is not None:
            out.update(self.backend_totals(qmodel))
        return out

    def backend_totals(self, qmodel) -> dict[str, float | None]:
        """The backend's estimate summed over its kernels: dsp, lut, cycles, latency (us)."""
        from nnforge.backends.partition import partition

        design = partition(qmodel.graph, self.backend)
        self.backend.check_design(design, self.backend_options)
        est = list(self.backend.estimate(design, self.backend_options) or [])
        total = lambda f: None if not est or any(getattr(e, f) is None for e in est) else int(  # noqa: E731
            sum(getattr(e, f) for e in est))
        cycles = total("latency_cycles")
        opts = self.backend_options
        if cycles is not None and "clock_ns" in opts:
            latency = cycles * float(opts["clock_ns"]) / 1000.0
        elif cycles is not None and "clock_mhz" in opts:
            latency = cycles / float(opts["clock_mhz"])
        else:
            latency = None
        return {"dsp": total("dsp"), "lut": total("lut"), "cycles": cycles, "latency": latency}


def graph_weight_bits(qmodel, node) -> int:
    """A layer's weight width from its quantization settings."""
    return qmodel.config.for_layer(node.name, node.op).weight_bits


__all__ = ["Evaluator", "ENGINES"]
