"""The quantize pass: float layers + calibration statistics + config -> ``QGraph``.

Python computes every number here (tensor types and scales, weight codes, biases,
multipliers, shifts, clamps, lookup tables); executors only apply them.

Order of decisions:

1. every layer's output tensor gets a type and scale: requantizing layers from their
   calibration statistics and config; pass-through layers (max pool, reshape, transpose,
   pad, clip) copy their input's; average pools keep their input's scale;
2. concat inputs are unified: a single-use requantizing producer is given the concat's
   scale and type directly (concat then copies codes); any other input gets a ``requant``;
3. node attributes (weight codes, biases, M and n) follow from the final scales: each op's own
   quantize rule (``OpSpec.quantize`` in compiler/ops/) through an ``OpQuantizer``, which holds
   the machinery they share (multipliers, int64 range checks, the weighted ops' weights and bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .calibration import TensorStats, choose_threshold, pow2_scale
from .weight_calibration import weight_thresholds
from ..errors import ModelError
from .layers import PASSTHROUGH, FloatLayer
from .numerics import QType, quantize, quantize_multiplier
from ..frontend.onnx_frontend import TensorSpec
from ..ops import OPS, REQUANTIZING
from ..qgraph import HostOp, QGraph, QNode, QTensor
from .quant_config import LayerQuant, QuantConfig

@dataclass
class _Param:
    qtype: QType
    scale: float


def _scale(threshold: float, qtype: QType, mode: str) -> float:
    if threshold <= 0:
        return 1.0  # an all-zero tensor: any scale represents it; 1 keeps ratios finite
    return pow2_scale(threshold, qtype.qmax) if mode == "pow2" else threshold / qtype.qmax


def _act_param(stats: TensorStats, lq: LayerQuant, act: tuple, name: str,
               fixed_scale: float | None = None, fixed_type: QType | None = None) -> _Param:
    if fixed_type is not None and fixed_scale is not None:  # imported (pre-quantized models): kept as given
        return _Param(fixed_type, float(fixed_scale))
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

    def code(v: float, bound: int) -> int:
        q = v / p.scale + 0.5
        return bound if not math.isfinite(q) else int(math.floor(q))  # a tiny scale: the type's bound

    qlo = None if lo is None else max(p.qtype.lo, min(p.qtype.hi, code(lo, p.qtype.lo if lo < 0 else p.qtype.hi)))
    qhi = None if hi is None else min(p.qtype.hi, max(p.qtype.lo, code(hi, p.qtype.hi if hi > 0 else p.qtype.lo)))
    return qlo, qhi


# Every integer the quantizer produces is range-checked here, before a cast: the executors compute
# in int64, and a value that does not fit would wrap in every one of them alike (so --check would
# not notice), giving plausible-looking garbage.
_INT64_MAX = (1 << 63) - 1
MAX_SHIFT = 62  # right shifts of int64 values by 63 or more are undefined in C and numpy


def _multiplier(layer: str, what: str, ratio, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_multiplier`` with its ValueError (a non-finite ratio) as a ModelError naming the layer."""
    try:
        return quantize_multiplier(ratio, mode)
    except ValueError as err:
        raise ModelError(f"layer {layer!r}: the {what} scale ratio must be a finite positive number, not one "
                         f"that over- or underflows ({err})") from None


def _check_requant(layer: str, what: str, bound, multiplier, shift) -> None:
    """ModelError unless ``|acc| * M`` (with the rounding half, or shifted left) stays inside int64
    for every ``|acc| <= bound`` and the shift is at most MAX_SHIFT (per channel where arrays)."""
    bounds = np.atleast_1d(np.asarray(bound, dtype=object))
    ms, ns = np.atleast_1d(np.asarray(multiplier)), np.atleast_1d(np.asarray(shift))
    bounds = np.broadcast_to(bounds, ms.shape) if bounds.size == 1 else bounds
    for b, m, n in zip(bounds, ms, ns):
        b, m, n = int(b), int(m), int(n)
        if n > MAX_SHIFT:
            raise ModelError(f"layer {layer!r}: the {what} requantization shift must be at most {MAX_SHIFT}, not "
                             f"{n} (its scale ratio is about 2^-{n - 14}: the layer's scales are too far apart)")
        prod = b * m << -n if n < 0 else b * m + ((1 << (n - 1)) if n > 0 else 0)
        if prod > _INT64_MAX:
            raise ModelError(f"layer {layer!r}: the {what} requantization must stay inside int64, not reach about "
                             f"2^{prod.bit_length()} (accumulator bound {b:,} x multiplier {m} "
                             f"{'<< ' + str(-n) if n < 0 else '+ rounding'}); the layer's scales are too far apart")



def quantize_weights(w: np.ndarray, lq: LayerQuant, axis: int) -> tuple[np.ndarray, np.ndarray]:
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
    fixed_scales: dict[str, float] | None = None, fixed_types: dict[str, QType] | None = None,
) -> QGraph:
    """Build the quantized graph. ``stats`` holds calibration statistics by tensor name:
    each model input's name and each layer's name (never a Relax var name: those repeat).  ``fixed_scales`` pins the
    scale of activations (by model input name or layer name), e.g. scales imported from an
    ONNX QDQ model; their types still come from the config and the statistics, unless
    ``fixed_types`` pins them too (pre-quantized models: compiler/interop/prequant_graph.py)."""
    fixed_scales = dict(fixed_scales or {})
    fixed_types = dict(fixed_types or {})
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
        p = _act_param(stats[spec.name], default, (None, None), spec.name, fixed_scales.get(spec.name),
                       fixed_types.get(spec.name))
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
                params[layer.name] = _act_param(stats[layer.name], lq, layer.act, layer.name,
                                                fixed_scales.get(layer.name), fixed_types.get(layer.name))

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
                if src in by_name and by_name[src].op in REQUANTIZING and users[src] == 1:
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
                    m, n = _multiplier(layer.name, "concat input", p.scale / out.scale, lq.scale_mode)
                    _check_requant(layer.name, "concat input", max(abs(p.qtype.lo), p.qtype.hi), m, n)
                    rq = f"{src}/requant"
                    nodes.append(QNode("requant", rq, [src], rq, dict(multiplier=m, shift=n, lo=None, hi=None,
                                                                       rounding=lq.rounding, overflow="SAT")))
                    tensors[rq] = QTensor(rq, tensors[src].shape, out.qtype, out.scale)
                    params[rq] = out  # the concat's own attrs read their inputs' parameters
                    src = rq
                fixed.append(src)
            in_names = fixed
        in_stats = stats.get(_tensor(layer, layer.inputs[0])) if layer.inputs else None
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
        st = stats[layer.name]
        lo = layer.act[0]
        signed = (not (st.nonnegative or (lo is not None and lo >= 0))) if lq.act_signed is None else lq.act_signed
        choice = activation_width(layer.name, st, lq, signed)
        entry["act_bits"] = choice.bits
        decisions.append(choice)
    return dataclasses.replace(config, layers=overrides, auto=False), decisions


def _shape(var):
    from ..frontend.relax_utils import static_shape

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


@dataclass
class OpQuantizer:
    """What an op's quantize rule (``OpSpec.quantize``, compiler/ops/*.py) gets: the float layer,
    its inputs' and output's (type, scale), its config, the output clamp in codes, and the
    shared checks (every integer is range-checked before it becomes an attr)."""

    layer: FloatLayer
    ins: list[_Param]
    out: _Param
    lq: LayerQuant
    input_mean: np.ndarray | None
    lo: int | None  # the fused activation's clamp as output codes (None: the type's bound)
    hi: int | None

    @property
    def attrs(self) -> dict:
        """The float layer's attrs (a plain dict)."""
        return self.layer.attrs

    @property
    def common(self) -> dict:
        """The config's rounding and overflow, which every requantizing op records."""
        return dict(rounding=self.lq.rounding, overflow=self.lq.overflow)

    def error(self, message: str) -> ModelError:
        """A ModelError naming the layer."""
        return ModelError(f"layer {self.layer.name!r}: {message}")

    def multiplier(self, what: str, ratio, mode: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(M, n) for a scale ratio, in ``mode`` (default: the config's scale mode)."""
        return _multiplier(self.layer.name, what, ratio, self.lq.scale_mode if mode is None else mode)

    def check_requant(self, what: str, bound, multiplier, shift) -> None:
        """ModelError unless ``|acc| <= bound`` times M stays inside int64 (``_check_requant``)."""
        _check_requant(self.layer.name, what, bound, multiplier, shift)

    def input_shape(self, i: int = 0) -> tuple | None:
        """The static shape of input ``i``."""
        return _shape(self.layer.inputs[i])

    def weighted(self, axis: int) -> dict:
        """The attrs every weighted op (conv2d: ``axis`` 0, dense: 1) shares: weight codes, bias
        codes at the accumulator scale, (M, n), clamp, accumulator type, and the record."""
        return _weighted_attrs(self, axis)


def _node_attrs(layer: FloatLayer, ins: list[_Param], out: _Param, lq: LayerQuant,
                input_mean: np.ndarray | None = None) -> dict:
    spec = OPS.get(layer.op)
    if spec is None or spec.quantize is None:
        raise ModelError(f"layer {layer.name!r}: no integer form for {layer.op}")
    lo, hi = _clamp_codes(layer.act, out)
    return spec.quantize(OpQuantizer(layer, ins, out, lq, input_mean, lo, hi))


def _weighted_attrs(q: OpQuantizer, axis: int) -> dict:
    layer, a, ins, out, lq, lo, hi, input_mean = q.layer, q.attrs, q.ins, q.out, q.lq, q.lo, q.hi, q.input_mean
    common = q.common
    if not np.all(np.isfinite(np.asarray(a["weight"], np.float64))) or not np.all(np.isfinite(a["bias"])):
        bad = int(np.size(a["weight"]) - np.count_nonzero(np.isfinite(a["weight"])))
        raise ModelError(f"layer {layer.name!r}: weights and bias must be finite to quantize, not NaN/Inf "
                         f"({bad} weights)")
    if "weight_codes" in a:  # shared weights: codes from the layer's codebook (compress.py)
        w_codes, w_scales = a["weight_codes"], a["weight_scales"]
    else:
        w_codes, w_scales = quantize_weights(np.asarray(a["weight"], np.float64), lq, axis)
    s_x = ins[0].scale
    b = np.asarray(a["bias"], np.float64)
    if lq.bias_correction and input_mean is not None:
        w = np.asarray(a["weight"], np.float64)
        w_hat = w_codes * (w_scales.reshape(-1, 1, 1, 1) if axis == 0 else w_scales.reshape(1, -1))
        b = b + _bias_correction(layer, w, w_hat, input_mean)
    acc_scale = s_x * w_scales
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        bias_real = np.floor(b / acc_scale + 0.5)
    too_big = ~np.isfinite(bias_real) | (np.abs(bias_real) >= 2.0**62)
    if np.any(too_big):
        c = int(np.argmax(too_big))
        raise ModelError(
            f"layer {layer.name!r}: its bias must be representable at the accumulator scale s_x*s_w, not "
            f"{b[c]:.4g} at scale {acc_scale[c]:.3g} (code {bias_real[c]:.3g}, beyond int64; output channel {c}): "
            f"the weights (max |w| {float(np.max(np.abs(a['weight']))):.3g}) are too small next to the bias "
            f"to quantize; rescale the layer (weights up, the next layer's down) or give it more weight bits")
    bias = bias_real.astype(np.int64)
    m, n = _multiplier(layer.name, "output", acc_scale / out.scale, lq.scale_mode)
    xmax = max(abs(ins[0].qtype.lo), abs(ins[0].qtype.hi))
    w_sum = np.abs(np.moveaxis(np.asarray(w_codes, np.int64), axis, 0)).reshape(np.shape(w_codes)[axis], -1).sum(1)
    _check_requant(layer.name, "output", [xmax * int(ws) + abs(int(bc)) for ws, bc in zip(w_sum, bias)], m, n)
    attrs = dict(weight=w_codes, bias=bias, multiplier=m, shift=n, lo=lo, hi=hi,
                 acc_dtype=_acc_dtype(ins[0].qtype, w_codes, bias, axis), **common)
    attrs.update(weight_bits=lq.weight_bits, weight_scale=w_scales)  # storage/report only, not numerics
    return attrs
