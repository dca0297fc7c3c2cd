"""How closely onnxruntime runs a QDQ export of a quantized model: argmax, output codes and the
largest difference of the dequantized outputs (``compare_with_onnxruntime``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_names import onnx_tensor_names

__all__ = ["Agreement", "compare_with_onnxruntime"]


@dataclass(frozen=True)
class Agreement:
    """nnforge's integer model vs onnxruntime on a QDQ export, over one output."""

    samples: int
    argmax: float  # fraction of samples with the same argmax
    max_abs_diff: float  # of the dequantized outputs
    codes: float  # fraction of identical output codes (elementwise)
    max_code_diff: int

    def __str__(self) -> str:
        return (f"{self.samples} samples: argmax {self.argmax:.2%} identical, codes {self.codes:.2%} "
                f"identical (max difference {self.max_code_diff}), max |diff| {self.max_abs_diff:.4g}")


def compare_with_onnxruntime(qmodel: Any, qdq: onnx.ModelProto | str | Path,
                             arrays: list[np.ndarray], optimize: bool = True,
                             batch_size: int = 256) -> dict[str, Agreement]:
    """Run ``qmodel.predict`` and onnxruntime on the QDQ model; compare every output.

    ``optimize=False`` disables onnxruntime's graph optimizations, so it runs the QDQ graph as
    written (DequantizeLinear -> float op -> QuantizeLinear) instead of its fused integer
    kernels (QLinearConv, QGemm, ...).  Codes are compared on the quantized tensors that feed
    the outputs (before a host softmax).
    """
    import onnxruntime as ort

    proto = onnx.load(str(qdq)) if isinstance(qdq, str | Path) else qdq
    names = onnx_tensor_names(qmodel.float_model, qmodel.layers)
    graph = qmodel.graph
    code_tensors = [names[o] for o in graph.outputs]
    run_proto = onnx.ModelProto()
    run_proto.CopyFrom(proto)
    have = {o.name for o in run_proto.graph.output}
    for t in code_tensors:
        if t not in have:
            run_proto.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(run_proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_names = [s.name for s in qmodel.float_model.inputs]
    out_names = qmodel.float_model.output_names
    ort_outs: dict[str, list[np.ndarray]] = defaultdict(list)
    n = len(arrays[0])
    wanted = list(dict.fromkeys(out_names + code_tensors))
    for start in range(0, n, batch_size):
        feeds = {k: np.asarray(a[start:start + batch_size], np.float32) for k, a in zip(in_names, arrays)}
        for name, value in zip(wanted, sess.run(wanted, feeds)):
            ort_outs[name].append(value)
    ours = qmodel.predict(arrays, batch_size=batch_size)
    if graph.host_ops:
        ref = qmodel.reference(qmodel.quantize_inputs(arrays))
        our_codes = [ref[o] for o in graph.outputs]
    else:
        our_codes = [np.floor(ours[n_] / graph.tensors[o].scale + 0.5).astype(np.int64)
                     for n_, o in zip(out_names, graph.outputs)]
    result = {}
    for i, name in enumerate(out_names):
        theirs = np.concatenate(ort_outs[name])
        mine = ours[name]
        s32 = float(np.float32(graph.tensors[graph.outputs[i]].scale))
        tc = np.floor(np.concatenate(ort_outs[code_tensors[i]]) / s32 + 0.5).astype(np.int64)
        diff = np.abs(tc - our_codes[i])
        same_arg = np.mean(np.argmax(mine.reshape(n, -1), 1) == np.argmax(theirs.reshape(n, -1), 1))
        result[name] = Agreement(n, float(same_arg), float(np.max(np.abs(mine.astype(np.float64) - theirs))),
                                 float(np.mean(diff == 0)), int(diff.max(initial=0)))
    return result
