"""The quantize pass: float layers + calibration statistics + config -> ``QGraph``.

Python computes every number here (tensor types and scales, weight codes, biases,
multipliers, shifts, clamps, lookup tables); executors only apply them.

Order of decisions:

1. every layer's output tensor gets a type and scale: requantizing layers from their
   calibration statistics and config; pass-through layers (max pool, reshape, transpose,
   pad, clip) copy their input's; average pools keep their input's scale;
2. concat inputs are unified: a single-use requantizing producer is given the concat's
   scale and type directly (concat then copies codes); any other input gets a ``requant``;
3. node attributes (weight codes, biases, M and n) follow from the final scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .calibration import TensorStats, choose_threshold, pow2_scale, weight_thresholds
from .errors import ModelError
from .layers import PASSTHROUGH, FloatLayer
from .numerics import QType, quantize, quantize_multiplier
from .onnx_frontend import TensorSpec
from .qgraph import HostOp, QGraph, QNode, QTensor
from .quant_config import LayerQuant, QuantConfig

_REQUANTIZING = {"conv2d", "dense", "add", "mul", "lut", "global_avg_pool"}


@dataclass
class _Param:
    qtype: QType
    scale: float


def _scale(threshold: float, qtype: QType, mode: str) -> float:
    if threshold <= 0:
        return 1.0  # an all-zero tensor: any scale represents it; 1 keeps ratios finite
    return pow2_scale(threshold, qtype.qmax) if mode == "pow2" else threshold / qtype.qmax


def _act_param(stats: TensorStats, lq: LayerQuant, act: tuple, name: str,
               fixed_scale: float | None = None) -> _Param:
    lo, hi = act
    nonneg = stats.nonnegative or (lo is not None and lo >= 0)
    signed = (not nonneg) if lq.act_signed is None else lq.act_signed
    qtype = QType(lq.act_bits, signed)
    threshold = choose_threshold(stats, lq.calibration, lq.act_bits, signed, lq.percentile)
    if hi is not None:
        threshold = min(threshold, hi)  # ReLU6: nothing above 6 is ever produced
    if fixed_scale is not None:
        return _Param(qtype, float(fixed_scale))
    return _Param(qtype, _scale(threshold, qtype, lq.scale_mode))


def _clamp_codes(act: tuple, p: _Param) -> tuple[int | None, int | None]:
    lo, hi = act
    qlo = None if lo is None else max(p.qtype.lo, int(math.floor(lo / p.scale + 0.5)))
    qhi = None if hi is None else min(p.qtype.hi, int(math.floor(hi / p.scale + 0.5)))
    return qlo, qhi


def _quantize_weights(w: np.ndarray, lq: LayerQuant, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (along ``axis``) or per-tensor weight codes and scales."""
    qtype = QType(lq.weight_bits, lq.weight_signed)
    moved = np.moveaxis(w, axis, 0)
    method = "mse" if lq.calibration == "mse" else "minmax"
    thresholds = np.broadcast_to(weight_thresholds(moved, lq.weight_bits, lq.per_channel, method, axis=0),
                                 (moved.shape[0],))
    scales = np.array([_scale(float(t), qtype, lq.scale_mode) for t in thresholds])
    codes = quantize(moved, scales.reshape((-1,) + (1,) * (moved.ndim - 1)), qtype)
    return np.moveaxis(codes, 0, axis), scales


def _acc_dtype(x: QType, w_codes: np.ndarray, bias: np.ndarray, axis: int) -> str:
    """int32 if the exact bound max|x| * sum|w| + |b| (per output) fits in 31 bits + sign."""
    xmax = max(abs(x.lo), abs(x.hi))
    moved = np.abs(np.moveaxis(w_codes, axis, 0)).reshape(w_codes.shape[axis], -1).sum(axis=1)
    bound = int((xmax * moved + np.abs(bias)).max()) if moved.size else 0
    return "int32" if bound < 2**31 else "int64"


def quantize_model(
    layers: list[FloatLayer], host: list[str], inputs: list[TensorSpec],
    stats: dict[str, TensorStats], config: QuantConfig, output_names: list[str],
    fixed_scales: dict[str, float] | None = None,
) -> QGraph:
    """Build the quantized graph. ``stats`` holds calibration statistics by tensor name:
    each model input's name and each layer's output var name.  ``fixed_scales`` pins the
    scale of activations (by model input name or layer name), e.g. scales imported from an
    ONNX QDQ model; their types still come from the config and the statistics."""
    fixed_scales = dict(fixed_scales or {})
    if len(output_names) != 1:
        raise ModelError(
            f"quantization supports models with one output for now, not {len(output_names)} ({output_names})"
        )
    config.check_names([l.name for l in layers], {l.op for l in layers})
    decisions: list = []
    if config.auto:
        config, decisions = _auto_config(layers, host, inputs, stats, config)
    default = config.default
    params: dict[str, _Param] = {}
    tensor_of: dict = {}  # relax var -> tensor name
    qinputs = []
    for spec in inputs:
        p = _act_param(stats[spec.name], default, (None, None), spec.name, fixed_scales.get(spec.name))
        params[spec.name] = p
        qinputs.append(QTensor(spec.name, spec.shape, p.qtype, p.scale))
    compute = [l for l in layers if l.name not in host]

    def assign(forced: dict[str, _Param]) -> None:
        for layer in compute:
            ins = [params[_tensor(layer, v)] for v in layer.inputs]
            lq = config.for_layer(layer.name, layer.op)
            if layer.name in forced:
                params[layer.name] = forced[layer.name]
            elif layer.op in PASSTHROUGH - {"concat"}:
                params[layer.name] = ins[0]
            elif layer.op == "concat":
                params[layer.name] = _Param(
                    QType(max(p.qtype.bits for p in ins), any(p.qtype.signed for p in ins)),
                    max(p.scale for p in ins),
                )
            elif layer.op == "avg_pool2d":
                params[layer.name] = ins[0]
            else:
                params[layer.name] = _act_param(stats[layer.output.name], lq, layer.act, layer.name,
                                                fixed_scales.get(layer.name))

    def _tensor(layer, var) -> str:
        return tensor_of.get(var, var.name)

    for layer in compute:
        tensor_of[layer.output] = layer.name
    assign({})
    # concat: give single-use requantizing producers the concat's parameters
    users: dict[str, int] = {}
    for layer in compute:
        for v in layer.inputs:
            users[_tensor(layer, v)] = users.get(_tensor(layer, v), 0) + 1
    by_name = {l.name: l for l in compute}
    forced: dict[str, _Param] = {}
    for layer in compute:
        if layer.op == "concat":
            for v in layer.inputs:
                src = _tensor(layer, v)
                if src in by_name and by_name[src].op in _REQUANTIZING and users[src] == 1:
                    forced[src] = params[layer.name]
    if forced:
        assign(forced)

    nodes: list[QNode] = []
    tensors = {t.name: t for t in qinputs}
    for layer in compute:
        lq = config.for_layer(layer.name, layer.op)
        out = params[layer.name]
        in_names = [_tensor(layer, v) for v in layer.inputs]
        if layer.op == "concat":  # inputs that still differ get an explicit requant
            fixed = []
            for src in in_names:
                p = params[src]
                if (p.qtype, p.scale) != (out.qtype, out.scale):
                    m, n = quantize_multiplier(p.scale / out.scale, lq.scale_mode)
                    rq = f"{src}/requant"
                    nodes.append(QNode("requant", rq, [src], rq, dict(multiplier=m, shift=n, lo=None, hi=None,
                                                                       rounding=lq.rounding, overflow="SAT")))
                    tensors[rq] = QTensor(rq, tensors[src].shape, out.qtype, out.scale)
                    src = rq
                fixed.append(src)
            in_names = fixed
        in_stats = stats.get(layer.inputs[0].name) if layer.inputs else None
        attrs = _node_attrs(layer, [params[n] for n in in_names], out, lq,
                            getattr(in_stats, "channel_mean", None))
        shape = tuple("batch" if isinstance(d, str) else d for d in _shape(layer.output))
        if "kept_channels" in layer.attrs:  # structured pruning removed channels (compress.py)
            shape = shape[:1] + (len(layer.attrs["kept_channels"]),) + shape[2:]
        # for the record only (storage, reports, float comparison); executors never read these
        attrs.update({k: layer.attrs[k] for k in ("codebook", "pruned_sparsity", "kept_channels") if k in layer.attrs})
        nodes.append(QNode(layer.op, layer.name, in_names, layer.name, attrs))
        tensors[layer.name] = QTensor(layer.name, shape, out.qtype, out.scale)
    host_layers = [l for l in layers if l.name in host]
    host_ops = [HostOp("softmax", l.name, "softmax stays float on the host (argmax is unchanged)")
                if l.op == "softmax" else
                HostOp(l.op, l.name, "reshape after the host softmax", {"shape": list(l.attrs["shape"])})
                for l in host_layers]
    # the final compute layer is the output, or feeds the host softmax
    final = host_layers[0].inputs[0] if host_layers else layers[-1].output
    graph = QGraph(qinputs, tensors, nodes, [tensor_of.get(final, qinputs[0].name)], host_ops)
    graph.decisions = [f"{d.layer}: {d.reason()}" for d in decisions]
    return graph


def _auto_config(layers, host, inputs, stats, config: QuantConfig):
    """Per-layer widths from calibration statistics (see auto_bits.py), as layer overrides."""
    import dataclasses

    from .auto_bits import activation_width, weight_width

    overrides = {name: dict(v) for name, v in config.layers.items()}
    decisions = []
    for layer in layers:
        if layer.name in host or layer.op in PASSTHROUGH or layer.op == "avg_pool2d":
            continue
        lq = config.for_layer(layer.name, layer.op)
        entry = overrides.setdefault(layer.name, {})
        if layer.op in ("conv2d", "dense"):
            choice = weight_width(layer.name, layer.attrs["weight"], lq, 0 if layer.op == "conv2d" else 1)
            entry["weight_bits"] = choice.bits
            decisions.append(choice)
        st = stats[layer.output.name]
        lo = layer.act[0]
        signed = (not (st.nonnegative or (lo is not None and lo >= 0))) if lq.act_signed is None else lq.act_signed
        choice = activation_width(layer.name, st, lq, signed)
        entry["act_bits"] = choice.bits
        decisions.append(choice)
    return dataclasses.replace(config, layers=overrides, auto=False), decisions


def _shape(var):
    from .relax_utils import static_shape

    return static_shape(var)


def _bias_correction(layer: FloatLayer, w: np.ndarray, w_hat: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """E[x] . (W - W_hat): the expected output shift the weight rounding causes, per channel."""
    diff = w - w_hat
    if layer.op == "dense":
        return mean @ diff if mean.shape[0] == diff.shape[0] else np.zeros(diff.shape[1])
    o, ipg = diff.shape[:2]
    groups = layer.attrs["groups"]
    if mean.shape[0] != ipg * groups:
        return np.zeros(o)
    per_in = diff.sum(axis=(2, 3))  # [O, I/g]
    opg = o // groups
    return np.array([per_in[c] @ mean[(c // opg) * ipg : (c // opg + 1) * ipg] for c in range(o)])


def _node_attrs(layer: FloatLayer, ins: list[_Param], out: _Param, lq: LayerQuant,
                input_mean: np.ndarray | None = None) -> dict:
    a = layer.attrs
    common = dict(rounding=lq.rounding, overflow=lq.overflow)
    lo, hi = _clamp_codes(layer.act, out)
    if layer.op in ("conv2d", "dense"):
        axis = 0 if layer.op == "conv2d" else 1
        if "weight_codes" in a:  # shared weights: codes from the layer's codebook (compress.py)
            w_codes, w_scales = a["weight_codes"], a["weight_scales"]
        else:
            w_codes, w_scales = _quantize_weights(np.asarray(a["weight"], np.float64), lq, axis)
        s_x = ins[0].scale
        b = np.asarray(a["bias"], np.float64)
        if lq.bias_correction and input_mean is not None:
            w = np.asarray(a["weight"], np.float64)
            w_hat = w_codes * (w_scales.reshape(-1, 1, 1, 1) if axis == 0 else w_scales.reshape(1, -1))
            b = b + _bias_correction(layer, w, w_hat, input_mean)
        bias = np.floor(b / (s_x * w_scales) + 0.5).astype(np.int64)
        m, n = quantize_multiplier(s_x * w_scales / out.scale, lq.scale_mode)
        attrs = dict(weight=w_codes, bias=bias, multiplier=m, shift=n, lo=lo, hi=hi,
                     acc_dtype=_acc_dtype(ins[0].qtype, w_codes, bias, axis), **common)
        attrs.update(weight_bits=lq.weight_bits, weight_scale=w_scales)  # storage/report only, not numerics
        if layer.op == "conv2d":
            attrs.update(strides=a["strides"], padding=a["padding"], dilation=a["dilation"], groups=a["groups"])
        return attrs
    if layer.op in ("max_pool2d",):
        return {k: a[k] for k in ("pool_size", "strides", "padding", "dilation", "ceil_mode")}
    if layer.op == "avg_pool2d":
        kh, kw = a["pool_size"]
        m, n = quantize_multiplier(ins[0].scale / (out.scale * kh * kw), "float")
        return dict(pool_size=a["pool_size"], strides=a["strides"], padding=a["padding"],
                    multiplier=m, shift=n, lo=lo, hi=hi, **common)
    if layer.op == "global_avg_pool":
        m, n = quantize_multiplier(ins[0].scale / (out.scale * a["window"]), "float")
        return dict(multiplier=m, shift=n, lo=lo, hi=hi, keepdims=a["keepdims"], **common)
    if layer.op == "add":
        (ma, na), (mb, nb) = (quantize_multiplier(p.scale / out.scale, lq.scale_mode) for p in ins)
        return dict(multipliers=(int(ma), int(mb)), shifts=(int(na), int(nb)), lo=lo, hi=hi, **common)
    if layer.op == "mul":
        m, n = quantize_multiplier(ins[0].scale * ins[1].scale / out.scale, lq.scale_mode)
        return dict(multiplier=m, shift=n, lo=lo, hi=hi, **common)
    if layer.op == "lut":
        qin = ins[0].qtype
        if qin.bits > 16:
            raise ModelError(f"layer {layer.name!r}: a lookup table needs an input of at most 16 bits, not {qin.bits}")
        codes = np.arange(qin.lo, qin.hi + 1, dtype=np.int64)
        table = quantize(a["fn"](codes * ins[0].scale, a), out.scale, out.qtype, lq.rounding)
        return dict(table=table, offset=qin.lo)
    if layer.op == "clip":
        return dict(lo=lo if lo is not None else out.qtype.lo, hi=hi if hi is not None else out.qtype.hi)
    if layer.op == "reshape":
        return dict(shape=a["shape"])
    if layer.op == "transpose":
        return dict(axes=a["axes"])
    if layer.op == "pad":
        return dict(pads=a["pads"])
    if layer.op == "concat":
        return dict(axis=a["axis"])
    raise ModelError(f"layer {layer.name!r}: no integer form for {layer.op}")
