"""The compression pass: prune and share the weights of float layers before quantization.

Runs between calibration and quantization (calibrate -> prune / share -> quantize), on the
float layers, and returns new layers; the quantize pass then treats them like any others.

1. structured pruning removes whole output channels (and the consumer's matching inputs,
   see prune.py) or, where that is not safe, zeroes them and says why;
2. magnitude pruning zeroes each layer's smallest weights;
3. weight sharing clusters each layer's nonzero weight codes into a codebook (k-means,
   weight_sharing.py); with ``refine="lsq"`` and calibration data, the centroids are then
   fitted to the layer's float outputs by least squares and the bias absorbs the mean
   output error that remains (bias correction).

A shared layer carries ``weight_codes`` (int64, drawn from ``codebook``) and
``weight_scales`` that the quantizer uses as they are, and ``weight`` = codes * scales, the
real weights they stand for.  Zero is always its own codebook entry, so pruned weights stay
exactly zero.  Numerics are unchanged: only which codes the weights take.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping

import numpy as np

from .compress_config import CompressConfig, LayerCompress
from ..quant.layers import FloatLayer
from ..quant.numerics import QType
from ..quant.float_forward import run_layer
from .prune import channel_keep, magnitude_mask, output_axis, remove_channels
from ..quant.quant_config import ConfigError, QuantConfig
from .weight_sharing import kmeans_codebook, layer_output, layer_rows, lsq_centroids, lsq_kept_weights

WEIGHTED = ("conv2d", "dense")


def compress_layers(layers: list[FloatLayer], host: list[str], qconfig: QuantConfig, comp: CompressConfig,
                    traced: Mapping[str, np.ndarray] | None = None) -> tuple[list[FloatLayer], list[str]]:
    """Pruned and shared copies of ``layers``, and one line per decision taken on the way.

    ``traced`` maps each model input's name and each weighted layer's input tensor (by the name
    of the layer producing it: ``layers.tensor_names``) to its float value over (a sample of)
    the calibration data, from the uncompressed model.  With
    ``refine="lsq"`` each layer is fitted, in order, to the float model's outputs from the
    inputs the already-compressed layers before it produce.  Without ``traced``, lsq
    refinement and bias correction are skipped (a recorded decision)."""
    weighted = [l.name for l in layers if l.op in WEIGHTED and l.name not in host]
    if not weighted and (comp.shares or comp.sparsity or comp.quality is not None):
        raise ConfigError("compression needs a model with conv2d or dense layers; this one has none")
    comp.check_names(weighted)
    decisions: list[str] = []
    original = {l.name: l for l in layers}
    final = layers[-1].inputs[0] if layers[-1].name in host else layers[-1].output
    layers = list(layers)

    def index(name: str) -> int:
        return next(i for i, l in enumerate(layers) if l.name == name)

    unstructured = set()
    for name in weighted:
        lc = comp.for_layer(name)
        if not lc.prunes:
            continue
        if not comp.structured:
            unstructured.add(name)
            continue
        i = index(name)
        layer = layers[i]
        axis = output_axis(layer)
        keep = channel_keep(layer.attrs["weight"], axis, lc.sparsity, lc.quality)
        channels = layer.attrs["weight"].shape[axis]
        if keep.size == channels:
            continue
        result = remove_channels(layers, i, keep, final)
        if not isinstance(result, str):
            layers = result
            decisions.append(f"{name}: structured pruning removed {channels - keep.size} of {channels} output "
                             "channels (and the next layer's matching inputs)")
        elif "model's output" in result:
            unstructured.add(name)
            decisions.append(f"{name}: output channels kept ({result}); pruned weight by weight instead")
        else:
            drop = np.setdiff1d(np.arange(channels), keep)
            w = layer.attrs["weight"].copy()
            np.moveaxis(w, axis, 0)[drop] = 0.0
            bias = np.asarray(layer.attrs["bias"], np.float64).copy()
            bias[drop] = 0.0
            layers[i] = dataclasses.replace(layer, attrs=dict(layer.attrs, weight=w, bias=bias))
            decisions.append(f"{name}: {drop.size} of {channels} output channels zeroed, not removed ({result})")
    for name in unstructured:
        i = index(name)
        lc = comp.for_layer(name)
        w = layers[i].attrs["weight"]
        layers[i] = dataclasses.replace(layers[i], attrs=dict(layers[i].attrs,
                                                              weight=w * magnitude_mask(w, lc.sparsity, lc.quality)))
    data = traced is not None and comp.refine == "lsq"
    if comp.refine == "lsq" and traced is None:
        decisions.append("lsq refinement and bias correction skipped: no calibration data")
    values = {k: v for k, v in traced.items()} if data else {}  # the compressed model's float values
    produced = {l.output: l.name for l in layers}  # by identity: Relax var names may repeat
    key = lambda var: produced.get(var, var.name)  # noqa: E731  (a layer's name, or the model input's)
    for i, layer in enumerate(layers):
        if layer.name in host:
            continue
        lc = comp.for_layer(layer.name) if layer.name in weighted else None
        if lc is not None and (lc.prunes or lc.share_bits is not None or "kept_inputs" in layer.attrs):
            xs = None
            if data:
                orig = original[layer.name]
                xs = (traced[key(orig.inputs[0])], values[key(layer.inputs[0])])
            layers[i], notes = _finish_layer(layer, original[layer.name], lc, qconfig, xs)
            decisions += [f"{layer.name}: {n}" for n in notes]
        if data:
            values[layer.name] = run_layer(layers[i], [values[key(v)] for v in layers[i].inputs])
    return layers, decisions


def _finish_layer(layer: FloatLayer, orig: FloatLayer, lc: LayerCompress, qconfig: QuantConfig,
                  xs: tuple[np.ndarray, np.ndarray] | None) -> tuple[FloatLayer, list[str]]:
    """Refit (lsq), share (k-means, then lsq) and bias-correct one pruned or shared layer.

    ``xs``: the layer's input in the float model, and in the compressed model so far."""
    from ..quant.quantize import quantize_weights

    attrs = dict(layer.attrs)
    notes: list[str] = []
    w = np.asarray(attrs["weight"], np.float64)
    axis = output_axis(layer)
    groups = attrs.get("groups", 1)
    fit = None
    if xs is not None:
        x_float, x_comp = xs
        kept_out = attrs.get("kept_channels")
        target_w = orig.attrs["weight"] if kept_out is None else np.take(orig.attrs["weight"], kept_out, axis=axis)
        rows_float = layer_rows(layer.op, orig.attrs, x_float, np.random.default_rng(0))
        rows = layer_rows(layer.op, attrs, x_comp, np.random.default_rng(0))  # the same rows (positions)
        fit = rows, layer_output(layer.op, rows_float, np.asarray(target_w, np.float64), groups)
    if lc.prunes or "kept_inputs" in attrs:  # removed or zero, as a fraction of the original weights
        attrs["pruned_sparsity"] = 1.0 - np.count_nonzero(w) / np.asarray(orig.attrs["weight"]).size
        if fit is not None:
            w = lsq_kept_weights(layer.op, fit[0], fit[1], w, groups)
    if lc.share_bits is not None:
        lq = qconfig.for_layer(layer.name, layer.op)
        codes0, scales = quantize_weights(w, lq, axis)
        shape = [1] * w.ndim
        shape[axis] = -1
        scales_b = scales.reshape(shape)
        nz = w != 0
        n_clusters = 2**lc.share_bits - (1 if not nz.all() else 0)
        distinct = np.unique(codes0[nz & (codes0 != 0)])
        if distinct.size <= n_clusters:
            msg = (f"a codebook of 2^{lc.share_bits} = {2**lc.share_bits} entries is not smaller than the layer's "
                   f"{distinct.size + int((codes0 == 0).any())} distinct {lq.weight_bits}-bit codes; kept its codes as"
                   " they are (codebook = those codes)")
            warnings.warn(f"layer {layer.name!r}: {msg}", UserWarning, stacklevel=2)
            notes.append(msg)
            codes = codes0.astype(np.int64)
        else:
            qtype = QType(lq.weight_bits, lq.weight_signed)
            centroids, labels = kmeans_codebook((w / scales_b)[nz], n_clusters)
            if fit is not None:
                label_map = np.full(w.shape, -1)
                label_map[nz] = labels
                centroids = lsq_centroids(layer.op, fit[0], fit[1], label_map, scales, centroids, groups)
            values = np.clip(np.floor(centroids + 0.5), qtype.lo, qtype.hi).astype(np.int64)
            codes = np.zeros(w.shape, np.int64)
            codes[nz] = values[labels]
        w = codes * scales_b
        attrs.update(weight_codes=codes, weight_scales=scales, codebook=np.unique(codes))
    if fit is not None:
        rows, target = fit
        shift = (target - layer_output(layer.op, rows, w, groups)).mean(axis=0)
        attrs["bias"] = np.asarray(attrs["bias"], np.float64) + shift
    attrs["weight"] = w
    return dataclasses.replace(layer, attrs=attrs), notes
