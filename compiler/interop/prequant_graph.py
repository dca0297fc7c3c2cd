"""A pre-quantized model's ``QGraph``: the carried types, scales and weight codes, kept.

``quantize_prequantized(model, calib, config, calibrate=...)`` is what ``nnforge.quantize`` does for
a model ``nnforge.load`` recognised as pre-quantized (``model.prequantized``); the caller passes the
calibration run (``calibrate(layers) -> statistics``) and wraps the graph it returns:

1. every model input and requantizing layer (conv, dense, add, mul, lookup table, global
   average pool) whose output tensor the model quantizes gets that tensor's type and scale
   (``quantize_model(..., fixed_scales=, fixed_types=)``); pass-through layers copy their
   input's, as always;
2. every conv / dense layer whose weight is carried as integer codes gets those codes and
   per-channel scales (checked: codes x scales must be the float weight nnforge imported);
3. the layers the model leaves in float ("a mixed graph") are calibrated on ``calib`` with
   ``config``; without ``calib`` they are refused, listed by name;
4. biases become codes at ``s_x * s_w`` as for any model (the carried int32 codes come back
   exactly; a float bias is rounded, and the note says by how much).

Requantization uses nnforge's integer multiplier (``scale_mode="float"``), or shifts alone
(``pow2``) where every scale the model carries is a power of two, and rounds half up (``RND``),
or floors (``TRN``) where the source floors; the notes list what differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..quant.calibration import ActivationStats
from ..errors import InputError, ModelError
from ..quant.layers import FloatLayer, float_layers
from ..qgraph import QGraph
from .prequant import CarriedTensor, CarriedWeight, Prequantized
from ..quant.quant_config import QuantConfig, parse_config
from ..quant.quantize import quantize_model

_REQUANTIZING = {"conv2d", "dense", "add", "mul", "lut", "global_avg_pool"}
_LINEAR_ONNX = {"Conv", "Gemm", "MatMul"}
_THROUGH_ONNX = {"Relu", "Clip", "Add", "Max", "Min", "Identity"}  # between a linear node and its layer's output


def quantize_prequantized(model, calib: list[np.ndarray] | None, config=None, progress=None, stats=None,
                          compress=None, *, calibrate: Callable[[list[FloatLayer]], dict]
                          ) -> tuple[QGraph, list[FloatLayer], QuantConfig]:
    """The quantized graph of a pre-quantized ``model`` (``model.prequantized``), the float layers
    it was built from and the config it used; see the module doc.  ``calibrate(layers)`` gives the
    statistics of the layers the model leaves float (called only when there are some)."""
    from .onnx_names import onnx_tensor_names

    pre: Prequantized = model.prequantized
    if compress is not None:
        raise InputError("pruning and weight sharing (--prune, --share, --prune-config) must not be given for a "
                         f"pre-quantized model ({pre.format}): its weights are kept as they are")
    cfg = parse_config(config)
    layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
    names = onnx_tensor_names(model, layers)
    fixed: dict[str, CarriedTensor] = {}
    missing: list[str] = []
    for spec in model.inputs:
        t = pre.activations.get(names.get(spec.name, spec.name))
        if t is None:
            missing.append(f"input {spec.name!r}")
        else:
            fixed[spec.name] = t
    by_name = {l.name: l for l in layers}
    new_layers: list[FloatLayer] = []
    weights_of: dict[str, CarriedWeight] = {}
    overrides = {name: dict(v) for name, v in cfg.layers.items()}
    notes = list(pre.notes)
    scale_mode = "pow2" if _all_pow2(pre) else "float"  # pure fixed point: M = 1, shifts only
    for layer in layers:
        if layer.name in host:
            new_layers.append(layer)
            continue
        t = pre.activations.get(names.get(layer.name, ""))
        if layer.op in _REQUANTIZING:
            if t is None:
                missing.append(f"layer {layer.name!r} ({layer.op}: its output is not quantized)")
            else:
                fixed[layer.name] = t
        if layer.op in ("conv2d", "dense"):
            found = _layer_weight(model, pre, layer, names)
            if found is None:
                missing.append(f"layer {layer.name!r} ({layer.op}: its weight is float)")
            else:
                w, codes, scales = found
                weights_of[layer.name] = w
                layer = dataclasses.replace(layer, attrs={**layer.attrs, "weight_codes": codes,
                                                          "weight_scales": scales})
        if layer.name in fixed or layer.name in weights_of:
            entry = overrides.setdefault(layer.name, {})
            entry.update(scale_mode=scale_mode, bias_correction=False)
            if layer.name in fixed:
                t = fixed[layer.name]
                entry.update(act_bits=t.qtype.bits, act_signed=t.qtype.signed,
                             rounding="TRN" if t.rounding == "floor" else "RND")
            if layer.name in weights_of:
                w = weights_of[layer.name]
                entry.update(weight_bits=min(w.qtype.bits, 16), weight_signed=w.qtype.signed,
                             per_channel=np.size(w.scale) > 1)
        new_layers.append(layer)
    if missing and calib is None and stats is None:
        raise InputError(
            f"a pre-quantized model ({pre.format}) must quantize every layer to run without calibration data, not "
            f"leave {len(missing)} in float: {'; '.join(missing)}. Give --calib (calib=...) to quantize these by "
            f"calibration with the config, or quantize them in the model")
    if missing:
        notes.append(f"calibrated with the config ({cfg.describe()}), since the model leaves them float: "
                     + "; ".join(missing))
    cfg = QuantConfig(default=cfg.default, op_types=cfg.op_types, layers=overrides, auto=False)
    if stats is None and missing:
        stats = calibrate(layers)
    elif stats is None:
        stats = {}
    stats = dict(stats)
    for name in [s.name for s in model.inputs] + [l.name for l in layers]:
        stats.setdefault(name, ActivationStats())  # read only for tensors the model leaves float
    graph = quantize_model(new_layers, host, model.inputs, stats, cfg, model.output_names,
                           {k: t.scale for k, t in fixed.items()}, {k: t.qtype for k, t in fixed.items()})
    notes += _narrow_ranges(graph, fixed)
    notes += _kept(graph, fixed, layers, by_name, names, pre)
    notes += _bias_notes(graph, model, pre, new_layers, names)
    pre.notes[:] = list(dict.fromkeys(notes))
    if progress and calib is not None:
        progress(len(calib[0]), len(calib[0]))
    return graph, new_layers, cfg


def _all_pow2(pre: Prequantized) -> bool:
    """Whether every carried activation and weight scale is an exact power of two."""
    scales = [np.asarray([t.scale for t in pre.activations.values()], np.float64)]
    scales += [np.asarray(w.scale, np.float64).reshape(-1) for w in pre.weights.values()]
    values = np.concatenate(scales) if scales else np.zeros(0)
    return bool(values.size) and bool(np.all((values > 0) & (np.frexp(values)[0] == 0.5)))


def linear_node(g, tensor: str):
    """The Conv/Gemm/MatMul an nnforge layer's ONNX output tensor comes from (through its fused
    bias add and activation), or None."""
    producer = {o: n for n in g.node for o in n.output}
    node = producer.get(tensor)
    for _ in range(8):
        if node is None:
            return None
        if node.op_type in _LINEAR_ONNX:
            return node
        if node.op_type not in _THROUGH_ONNX:
            return None
        inputs = [producer.get(i) for i in node.input if i in producer]
        node = next((n for n in inputs if n is not None and n.op_type in _LINEAR_ONNX | _THROUGH_ONNX), None)
    return None


def _layer_weight(model, pre: Prequantized, layer: FloatLayer, names: dict[str, str]
                  ) -> tuple[CarriedWeight, np.ndarray, np.ndarray] | None:
    """(carried weight, codes, per-channel scales) in nnforge's layout for a conv/dense layer.

    nnforge's conv weight is [O, I/g, kh, kw] (channels on axis 0), its dense weight [K, N]
    (channels on axis 1); an ONNX Gemm with transB holds [N, K]."""
    node = linear_node(model.onnx.graph, names.get(layer.name, ""))
    if node is None or len(node.input) < 2 or node.input[1] not in pre.weights:
        return None
    w = pre.weights[node.input[1]]
    if w.qtype.bits > 16:
        raise ModelError(f"node {w.node!r}: a weight must have at most 16 bits, not {w.qtype.bits}")
    ref = np.asarray(layer.attrs["weight"], np.float64)
    axis = 0 if layer.op == "conv2d" else 1
    for codes, channel_axis in ((w.codes, w.axis), (w.codes.T, None if w.axis is None else 1 - w.axis % 2)):
        if codes.shape != ref.shape or (w.axis is not None and channel_axis % codes.ndim != axis):
            continue
        if np.size(w.scale) not in (1, ref.shape[axis]):
            continue
        scales = w.per_channel(ref.shape[axis], axis)
        shape = [1] * ref.ndim
        shape[axis] = ref.shape[axis]
        real = codes * scales.reshape(shape)
        if np.allclose(real, ref, rtol=2.0**-20, atol=0.0):
            return w, np.asarray(codes, np.int64), scales
    if w.axis is not None and (w.codes.shape == ref.shape or w.codes.T.shape == ref.shape):
        raise ModelError(f"node {w.node!r}: the per-axis weight scale must be along the output channel (axis "
                         f"{'0' if layer.op == 'conv2d' or node.op_type == 'Gemm' else '1'} of {node.input[1]!r} "
                         f"for {node.op_type} {node.name!r}), not axis {w.axis}")
    raise ModelError(f"layer {layer.name!r}: its weight must be the codes x scales {w.node!r} carries, not "
                     f"something else (a BatchNormalization or a scale folded into it after quantization?); "
                     f"quantize the model with the fold done first")


def _narrow_ranges(graph, fixed: dict[str, CarriedTensor]) -> list[str]:
    """Clamp the codes of narrow-range tensors (QONNX ``narrow``) inside their layer's saturation."""
    notes = []
    nodes = {n.output: n for n in graph.nodes}
    for name, t in fixed.items():
        if t.lo is None and t.hi is None:
            continue
        node = nodes.get(name)
        if node is None or not hasattr(node.attrs, "lo"):
            notes.append(f"tensor {name!r}: its narrow code range [{t.lo}, {t.hi}] is not kept ({t.qtype}'s full "
                         f"range is used): nnforge clamps codes only where a layer saturates")
            continue
        lo, hi = node.attrs.lo, node.attrs.hi
        if t.lo is not None:
            node.attrs = dataclasses.replace(node.attrs, lo=t.lo if lo is None else max(int(lo), t.lo))
        if t.hi is not None:
            node.attrs = dataclasses.replace(node.attrs, hi=t.hi if hi is None else min(int(hi), t.hi))
    return notes


def _kept(graph, fixed, layers, by_name, names, pre: Prequantized) -> list[str]:
    """Carried parameters the graph does not keep (a concat's common scale, a pass-through layer
    with its own Q node), named."""
    lost = [f"{name} ({graph.tensors[name].qtype} scale {graph.tensors[name].scale:.6g} instead of "
            f"{t.qtype} scale {t.scale:.6g})"
            for name, t in fixed.items() if name in graph.tensors
            and (graph.tensors[name].qtype, graph.tensors[name].scale) != (t.qtype, t.scale)]
    for layer in layers:
        t = pre.activations.get(names.get(layer.name, ""))
        if t is None or layer.name in fixed or layer.name not in graph.tensors:
            continue
        q = graph.tensors[layer.name]
        if (q.qtype, q.scale) != (t.qtype, t.scale):
            lost.append(f"{layer.name} ({layer.op} copies its input's {q.qtype} scale {q.scale:.6g}; the model "
                        f"quantizes it again as {t.qtype} scale {t.scale:.6g})")
    return ["these carried activation parameters are not kept: " + "; ".join(lost)] if lost else []


def _bias_notes(graph, model, pre: Prequantized, layers, names) -> list[str]:
    """Whether each layer's bias codes equal the carried int32 codes (or how far a float bias moved)."""
    notes = []
    by_name = {l.name: l for l in layers}
    for node in graph.nodes:
        if node.op not in ("conv2d", "dense") or node.name not in by_name:
            continue
        onnx_node = linear_node(model.onnx.graph, names.get(node.name, ""))
        if onnx_node is None or "weight_codes" not in by_name[node.name].attrs:
            continue
        bias_name = onnx_node.input[2] if onnx_node.op_type != "MatMul" and len(onnx_node.input) > 2 else None
        carried = pre.weights.get(bias_name) if bias_name else None
        if carried is not None and carried.codes.shape == np.shape(node.attrs.bias):
            diff = int(np.count_nonzero(carried.codes != node.attrs.bias))
            if diff:
                notes.append(f"layer {node.name!r}: {diff} of {carried.codes.size} bias codes differ from the "
                             f"carried int32 codes by at most {int(np.abs(carried.codes - node.attrs.bias).max())} "
                             f"(the bias scale is not s_x * s_w)")
        elif np.any(np.asarray(by_name[node.name].attrs["bias"]) != 0):
            notes.append(f"layer {node.name!r}: its float bias is rounded to codes at s_x * s_w (within half a step "
                         f"of the accumulator)")
    return notes
