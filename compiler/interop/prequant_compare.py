"""A pre-quantized model as its own runtime executes it, against nnforge's integer model.

The runtime is the independent oracle: onnxruntime for QDQ and QOperator models, with its
graph optimizations off (``ORT_DISABLE_ALL``: every node as written, no fused kernels), and
qonnx's executor (``qonnx.core.onnx_exec.execute_onnx``) for QONNX models.  Measured:

* top-1 agreement between nnforge and the runtime, and the runtime's accuracy;
* per carried tensor (model inputs and layer outputs), over the first ``trace_samples``
  samples: the fraction of nnforge's codes equal to the runtime's (on nnforge's grid) and the
  largest difference in steps;
* a note that names the first tensor whose codes differ and why they can (docs/interop.md).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper

from ..quant.numerics import MULT_BITS  # M in [2^14, 2^15): M / 2^n is within 2^-15 of the ratio
from .prequant import Prequantized

TRACE_SAMPLES = 512


def run_original(pre: Prequantized, arrays: list[np.ndarray], names: list[str], extra: list[str],
                 batch_size: int = 256) -> dict[str, np.ndarray]:
    """The model as given on ``arrays`` (inputs ``names``): its graph outputs and the ``extra``
    tensors, concatenated over batches."""
    if pre.format == "qonnx":
        return _run_qonnx(pre.original, arrays, names, extra)
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(pre.original)
    have = {o.name for o in proto.graph.output}
    types = {t.source: t.source_type for t in pre.activations.values()}
    for name in extra:
        if name not in have:
            proto.graph.output.append(helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in pre.original.graph.output] + [e for e in extra if e not in have]
    out: dict[str, list] = defaultdict(list)
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        feeds = {k: np.asarray(a[start:start + batch_size], np.float32) for k, a in zip(names, arrays)}
        for name, value in zip(wanted, sess.run(wanted, feeds)):
            out[name].append(value)
    return {k: np.concatenate(v) for k, v in out.items()}


def _run_qonnx(model: onnx.ModelProto, arrays: list[np.ndarray], names: list[str], extra: list[str]
               ) -> dict[str, np.ndarray]:
    """qonnx's node-by-node executor over all samples at once (it needs every shape fixed)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    n = len(arrays[0])
    for vi in proto.graph.input:
        if vi.name in names:
            vi.type.tensor_type.shape.dim[0].ClearField("dim_param")
            vi.type.tensor_type.shape.dim[0].dim_value = n
    del proto.graph.value_info[:]
    for vi in proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    wrapper = ModelWrapper(proto).transform(InferShapes())
    ctx = execute_onnx(wrapper, {k: np.asarray(a, np.float32) for k, a in zip(names, arrays)},
                       return_full_exec_context=True)
    keep = [o.name for o in model.graph.output] + list(extra)
    return {k: np.asarray(ctx[k]) for k in keep if k in ctx}


def compare(qmodel, data: list[np.ndarray], labels: np.ndarray | None, q_pred: np.ndarray,
            trace_samples: int = TRACE_SAMPLES, batch_size: int = 256) -> dict:
    """The runtime's figures against nnforge's integer model (``q_pred``: its top-1 per sample)."""
    from .onnx_names import onnx_tensor_names

    model = qmodel.float_model
    pre: Prequantized = model.prequantized
    graph = qmodel.graph
    names = onnx_tensor_names(model, qmodel.layers)
    carried = {nn: pre.activations[o] for nn, o in names.items() if o in pre.activations and nn in graph.tensors}
    in_names = [s.name for s in model.inputs]
    k = min(len(data[0]), trace_samples)
    extra = [t.source for t in carried.values()] + [t.unrounded for t in carried.values() if t.unrounded]
    ran = run_original(pre, data, in_names, list(dict.fromkeys(extra)), batch_size)
    first = ran[pre.original.graph.output[0].name]
    rt_pred = first.reshape(len(first), -1).argmax(1)
    codes = graph.quantize_inputs([a[:k] for a in data])
    ours = dict(zip(in_names, codes)) | qmodel.reference(codes)
    tensors = []
    for nn, t in carried.items():
        if t.source not in ran or nn not in ours:
            continue
        theirs = ran[t.source][:k].astype(np.float64)
        real = (theirs - t.zero_point) * t.source_scale if t.codes else theirs
        s = graph.tensors[nn].scale
        mine = np.asarray(ours[nn], np.float64)
        if mine.shape != real.shape:
            continue
        steps = np.abs(np.floor((real - mine * s) / s + 0.5))
        tie = None
        if t.unrounded in ran and np.any(steps) and t.exact:  # how close to half-way the differing values were
            v = ran[t.unrounded][:k].astype(np.float64)[steps > 0] / t.source_scale
            tie = float(np.max(np.abs(v - np.floor(v) - 0.5)))
        qt = graph.tensors[nn].qtype
        tensors.append({"boundary_distance": tie, "tensor": nn, "source": t.source, "type": str(qt), "exact": t.exact,
                        # how far nnforge's 15-bit multiplier (relative error <= 2^-15) can move the largest code
                        "multiplier_steps": max(abs(qt.lo), qt.hi) * 2.0 ** -MULT_BITS,
                        "codes_identical": float(np.mean(steps == 0)) if steps.size else 1.0,
                        "max_step_difference": int(steps.max(initial=0))})
    agreement = float(np.mean(q_pred == rt_pred))
    runtime = ("onnxruntime " + _version("onnxruntime") + " (ORT_DISABLE_ALL)" if pre.runtime == "onnxruntime"
               else "qonnx " + _version("qonnx") + " (qonnx.core.onnx_exec)")
    return {"format": pre.format, "runtime": runtime, "samples": len(q_pred),
            "runtime_accuracy": None if labels is None else float(np.mean(rt_pred == labels)),
            "top1_agreement": agreement, "traced_samples": k, "tensors": tensors,
            "note": _note(pre, tensors, agreement), "import_notes": list(pre.notes)}


def _version(package: str) -> str:
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001 - a missing distribution: no version to show
        return "?"


def _note(pre: Prequantized, tensors: list[dict], agreement: float) -> str:
    """Why the codes differ, naming the first tensor that does."""
    first = next((t for t in tensors if t["codes_identical"] < 1), None)
    if first is None:
        return f"every traced code equals the runtime's; top-1 agreement {agreement:.2%}"
    where = (f"codes first differ at {first['tensor']!r} ({first['codes_identical']:.2%} identical, at most "
             f"{first['max_step_difference']} step(s) apart)")
    if first.get("boundary_distance") == 0:
        where += "; every differing code's unrounded value (the runtime's input to its rounding) was an exact tie (half-way)"
    elif first.get("boundary_distance") is not None:
        where += (f"; every differing code's unrounded value (the runtime's float32 input to its rounding) lay within "
                  f"{first['boundary_distance']:.2g} of a step of half-way between two codes")
    if first.get("multiplier_steps", 0) >= 0.25 and pre.format != "qonnx":
        where += (f"; a {first['type']} tensor's codes reach {first['multiplier_steps'] * 2 ** MULT_BITS:.0f}, so "
                  f"nnforge's 15-bit multiplier (within 2^-15 of s_x*s_w/s_y) can move a code by up to "
                  f"{first['multiplier_steps']:.2g} of a step: wider codes than the multiplier resolves")
    rounding = {t.rounding for t in pre.activations.values()}
    if pre.format == "qonnx":
        why = ("qonnx computes each layer in float32 (float conv/matmul on dequantized values, then "
               "x / scale rounded with the Quant's rounding_mode); nnforge accumulates integers exactly and "
               "requantizes with an integer multiplier M / 2^n and rounds half up (RND) or floors (TRN): "
               + ("ties (a value exactly half-way, common with power-of-two scales) round to even in qonnx's ROUND "
                  "and up in nnforge's RND" if "half_even" in rounding else
                  "results within float32's rounding error of a boundary can land on either side"))
    elif pre.format == "qoperator":
        why = ("onnxruntime runs the QOperator kernels (QLinearConv, QGemm, ...: int32 accumulation, then a float32 "
               "multiplier s_x*s_w/s_y and rounding half to even); nnforge quantizes the input in float64 rounding "
               "half up and requantizes with a 15-bit integer multiplier M / 2^n: a value near a rounding boundary "
               "can land on either side, and a one-step difference propagates to later layers")
    else:
        why = ("onnxruntime (ORT_DISABLE_ALL) dequantizes, computes each float op in float32 and quantizes "
               "x / float32(scale) with rounding half to even; nnforge quantizes the input in float64 rounding "
               "half up, accumulates integers exactly and requantizes with a 15-bit integer multiplier M / 2^n "
               "(within 2^-15 of s_x*s_w/s_y): a value near a rounding boundary can land on either side, and a "
               "one-step difference propagates to later layers")
    recentred = [name for name, t in pre.activations.items() if not t.exact]
    extra = (f"; re-centred asymmetric tensors ({', '.join(recentred)}) are on a coarser grid than the runtime's, "
             "so their codes are compared after rounding onto nnforge's" if recentred else "")
    return f"{where}: {why}{extra}; top-1 agreement {agreement:.2%}"
