"""Group a cleaned float Relax module into layers, the unit the quantizer works on.

A layer is an anchor op plus what fuses into it, e.g. ``conv2d -> add(bias) -> relu``.
Each layer records its float parameters and the Relax variable holding its output, so that
calibration can observe exactly the tensors the integer model will produce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ops
from ..errors import ModelError
from ..frontend.relax_utils import (call_op_name, const_value, is_constant, is_var, output_exprs, returning,
                                   static_shape, var_uses)

_GENERATED = re.compile(r"^(lv|gv)\d*$")

LUT_FUNCS = {
    "relax.sigmoid": ("sigmoid", lambda x, a: 1.0 / (1.0 + np.exp(-x))),
    "relax.tanh": ("tanh", lambda x, a: np.tanh(x)),
    "relax.nn.leakyrelu": ("leaky_relu", lambda x, a: np.where(x >= 0, x, x * a["alpha"])),
}
# ops that move codes without changing scale
PASSTHROUGH = ops.PASSTHROUGH  # the op table's flag: the output keeps the input's type and scale
# layers that may absorb a following bias add / activation clamp
_FUSES_BIAS = {"conv2d", "dense"}
_FUSES_ACT = {"conv2d", "dense", "add", "mul", "avg_pool2d", "global_avg_pool"}


@dataclass
class FloatLayer:
    op: str
    name: str
    inputs: list  # relax vars (activations)
    output: Any  # relax var holding the layer's float output
    attrs: dict[str, Any] = field(default_factory=dict)
    onnx_name: str = ""  # the ONNX node's own name, where ``name`` needed a suffix to be unique

    @property
    def act(self) -> tuple[float | None, float | None]:
        """Fused activation clamp (lo, hi) in real units; (None, None) when none."""
        return self.attrs.get("act", (None, None))


def unique_names(names: list[str], reserved: list[str] = ()) -> list[str]:
    """``names`` made unique in order: a repeat, or a name in ``reserved`` (the model's input
    names), gets the first free suffix ``#2``, ``#3``, ...; the others are kept."""
    used = set(reserved)
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate in used:
            candidate, k = f"{name}#{k}", k + 1
        used.add(candidate)
        out.append(candidate)
    return out


def binding_names(func, onnx_names: dict[str, str]) -> dict:
    """Relax var -> (unique name, ONNX name) for every binding of ``func`` that carries an ONNX
    node's name, made unique in binding order with ``unique_names`` (the inputs' names reserved).
    ``float_layers`` and ``summary.summarize`` both name layers from it, so ``inspect`` and the
    integer graph give one layer one name even where the ONNX names repeat."""
    inputs = [onnx_names.get(p.name, p.name) for p in func.params]
    named = [b.var for blk in func.body.blocks for b in blk.bindings
             if not _GENERATED.match(b.var.name) and b.var.name in onnx_names]
    originals = [onnx_names[v.name] for v in named]
    return {v: (u, o) for v, u, o in zip(named, unique_names(originals, inputs), originals)}


def _name(var, op: str, index: int) -> str:
    return f"{op}_{index}" if _GENERATED.match(var.name) else var.name


def binding_positions(func) -> dict:
    """Relax var -> (position among ``func``'s bindings, bound value)."""
    return {b.var: (i, b.value) for i, b in enumerate(b for blk in func.body.blocks for b in blk.bindings)}


def generated_name(call, position: int) -> str:
    """The name of a layer whose output var carries no ONNX name (the importer made it up): its
    Relax op and its binding's position in ``main``, e.g. ``softmax_39``.  ``inspect``
    (summary.py) and the integer graph (``float_layers``) both name such layers with it, so a
    host layer has one name in every command."""
    op = call_op_name(call) or "layer"
    short = op.removeprefix("relax.").removeprefix("nn.")
    if op == "relax.matmul" and is_constant(call.args[1]):
        short = "dense"
    return f"{short}_{position}"


def _clamp_bounds(call) -> tuple[float | None, float | None] | None:
    """(lo, hi) of relu / clip / maximum(x, c) / minimum(x, c); None for other ops."""
    op = call_op_name(call)
    if op == "relax.nn.relu":
        return 0.0, None
    if op == "relax.clip":
        return float(call.args[1].value), float(call.args[2].value)
    if op in ("relax.maximum", "relax.minimum") and is_constant(call.args[1]):
        c = const_value(call.args[1])
        if c.size == 1:
            v = float(c.reshape(()))
            return (v, None) if op == "relax.maximum" else (None, v)
    return None


def _merge_act(old, new):
    lo = max(x for x in (old[0], new[0]) if x is not None) if (old[0] is not None or new[0] is not None) else None
    hi = min(x for x in (old[1], new[1]) if x is not None) if (old[1] is not None or new[1] is not None) else None
    return lo, hi


def _pool_attrs(call) -> dict:
    a = call.attrs
    pad = [int(p) for p in a.padding]
    return dict(pool_size=tuple(int(p) for p in a.pool_size), strides=tuple(int(s) for s in a.strides),
                padding=tuple(pad), dilation=tuple(int(d) for d in a.dilation), ceil_mode=bool(a.ceil_mode),
                count_include_pad=bool(getattr(a, "count_include_pad", False)))


_LRN_STEPS = ("relax.power", "relax.add", "relax.multiply", "relax.squeeze", "relax.nn.avg_pool3d",
              "relax.expand_dims", "relax.multiply")  # from the divisor up to the square


def _lrn_chains(func, users: dict) -> tuple[dict, set]:
    """The local response normalizations of ``func`` as TVM's ONNX importer writes them::

        divide(x, power(add(multiply(squeeze(avg_pool3d(expand_dims(multiply(x, x)))), alpha), bias), beta))

    (the 3-d pool, over channels only and counting its padding, is the window mean of the squares).
    Returns {divide var: (x, attrs)} and the vars of the inner steps (each used only by the next)."""
    value = {b.var: b.value for blk in func.body.blocks for b in blk.bindings}

    def scalar(expr) -> float | None:
        if is_constant(expr) and const_value(expr).size == 1:
            return float(const_value(expr).reshape(()))
        return None

    chains, inner = {}, set()
    for var, call in value.items():
        if call_op_name(call) != "relax.divide":
            continue
        x, arg, steps = call.args[0], call.args[1], []
        for op in _LRN_STEPS:  # each step's first argument is the previous step, used only there
            v = value.get(arg) if is_var(arg) and users.get(arg, 0) == 1 else None
            if v is None or call_op_name(v) != op:
                break
            steps.append((arg, v))
            arg = v.args[0]
        if len(steps) != len(_LRN_STEPS):
            continue
        (_, power), (_, add), (_, mul), (_, squeeze), (_, pool), (_, expand), (_, square) = steps
        beta, bias, alpha = scalar(power.args[1]), scalar(add.args[1]), scalar(mul.args[1])
        pa = pool.attrs
        size, pad = [int(v) for v in pa.pool_size], [int(v) for v in pa.padding]
        if (not (square.args[0].same_as(x) and square.args[1].same_as(x)) or None in (beta, bias, alpha)
                or [int(a) for a in expand.attrs.axis] != [1] or [int(a) for a in squeeze.attrs.axis] != [1]
                or size[1:] != [1, 1] or pad[1:3] + pad[4:] != [0] * 4 or [int(v) for v in pa.strides] != [1] * 3
                or not bool(pa.count_include_pad) or pad[0] + pad[3] + 1 != size[0]
                or len(static_shape(x) or ()) != 4):
            continue
        # the pool divides by size: y = x / (bias + alpha/size * sum of squares)^beta, as ONNX LRN
        chains[var] = (x, dict(size=size[0], before=pad[0], after=pad[3], alpha=alpha, beta=beta, bias=bias))
        inner.update(v for v, _ in steps)
    return chains, inner


def _hard_swish_chains(func, users: dict) -> tuple[dict, set]:
    """ONNX HardSwish as TVM's importer writes it: ``multiply(x, divide(clip(add(x, 3), 0, 6), 6))``.
    Returns {multiply var: x} and the vars of the inner steps (each used only by the next)."""
    value = {b.var: b.value for blk in func.body.blocks for b in blk.bindings}

    def step(expr, op: str):  # the binding of ``expr`` when it is a single-use call to ``op``
        v = value.get(expr) if is_var(expr) and users.get(expr, 0) == 1 else None
        return v if v is not None and call_op_name(v) == op else None

    def scalar(expr) -> float | None:
        return float(const_value(expr).reshape(())) if is_constant(expr) and const_value(expr).size == 1 else None

    chains, inner = {}, set()
    for var, call in value.items():
        if call_op_name(call) != "relax.multiply":
            continue
        x, div = call.args
        d = step(div, "relax.divide")
        c = None if d is None else step(d.args[0], "relax.clip")
        a = None if c is None else step(c.args[0], "relax.add")
        if (a is None or not a.args[0].same_as(x) or scalar(a.args[1]) != 3.0 or scalar(d.args[1]) != 6.0
                or [float(v.value) for v in c.args[1:]] != [0.0, 6.0]):
            continue
        chains[var] = x
        inner.update((div, d.args[0], c.args[0]))
    return chains, inner


def float_layers(mod, output_names: list[str] | None = None,
                 onnx_names: dict[str, str] | None = None) -> tuple[list[FloatLayer], list[str]]:
    """The layers of ``mod['main']`` in order, and the names of ops left on the host.

    A layer whose name TVM made up and whose output is a graph output takes the ONNX
    output's name from ``output_names``; others are named by their ONNX node (``onnx_names``)."""
    onnx_names = onnx_names or {}
    func = mod["main"]
    users = var_uses(func)
    layers: list[FloatLayer] = []
    producer: dict = {}  # var -> layer index whose output it is
    activations = set(func.params)
    host: list[str] = []

    def fusable(var, ops) -> FloatLayer | None:
        if var in producer and users.get(var, 0) == 1 and var not in alias.values():
            layer = layers[producer[var]]
            if layer.op in ops and layer.output.same_as(var):
                return layer
        return None

    alias: dict = {}  # var bound to another var -> the var it names
    lrn_chains, lrn_inner = _lrn_chains(func, users)
    hs_chains, hs_inner = _hard_swish_chains(func, users)
    canon = binding_names(func, onnx_names)  # var -> (unique name, ONNX name)
    positions = binding_positions(func)
    original: dict[str, str] = {}  # unique name -> the ONNX name it stands for

    def named(var, fallback: str) -> str:
        if var in canon:
            unique, onnx_name = canon[var]
            original[unique] = onnx_name
            return unique
        return onnx_names.get(fallback, fallback)

    def new(op, var, inputs, **attrs):
        fallback = generated_name(positions[var][1], positions[var][0]) if _GENERATED.match(var.name) else var.name
        layers.append(FloatLayer(op, named(var, fallback), list(inputs), var, attrs))
        producer[var] = len(layers) - 1
        activations.add(var)

    def extend(layer, var):
        if _GENERATED.match(layer.output.name) and layer.name not in original and not _GENERATED.match(var.name):
            layer.name = named(var, var.name)  # the ONNX name sits on the last binding
        layer.output = var
        producer[var] = layers.index(layer)
        activations.add(var)

    for block in func.body.blocks:
        for b in block.bindings:
            var, call = b.var, b.value
            if is_var(call):  # `gv = lv`: an alias, e.g. of the graph output
                alias[var] = alias.get(call, call)
                continue
            if var in lrn_inner or var in hs_inner:  # a step of an LRN or a HardSwish, taken whole below
                continue
            if var in hs_chains:
                new("hard_swish", var, [alias.get(hs_chains[var], hs_chains[var])])
                continue
            if var in lrn_chains:
                x, attrs = lrn_chains[var]
                new("lrn", var, [alias.get(x, x)], **attrs)
                continue
            op = call_op_name(call)
            if op is None:
                raise ModelError(f"layer {var.name!r}: a {type(call).__name__} binding has no integer form")
            args = [alias.get(a, a) if is_var(a) else a for a in call.args]
            acts = [a for a in args if a in activations]
            label = f"layer {var.name!r} ({op.removeprefix('relax.')})"
            bounds = _clamp_bounds(call)
            if bounds is not None and acts:
                layer = fusable(args[0], _FUSES_ACT)
                if layer is not None:
                    layer.attrs["act"] = _merge_act(layer.act, bounds)
                    extend(layer, var)
                else:
                    new("clip", var, acts, act=bounds)
            elif op == "relax.nn.conv2d" and is_constant(args[1]):
                a = call.attrs
                if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
                    raise ModelError(f"{label}: conv2d must be NCHW/OIHW, not {a.data_layout}/{a.kernel_layout}")
                w = const_value(args[1])
                new("conv2d", var, acts, weight=w, bias=np.zeros(w.shape[0]),
                    strides=tuple(int(s) for s in a.strides), padding=tuple(int(p) for p in a.padding),
                    dilation=tuple(int(d) for d in a.dilation), groups=int(a.groups))
            elif op == "relax.matmul" and is_constant(args[1]) and const_value(args[1]).ndim == 2:
                w = const_value(args[1])
                new("dense", var, acts, weight=w, bias=np.zeros(w.shape[1]))
            elif op in ("relax.add", "relax.multiply") and len(acts) == 1 and is_constant(args[1]):
                c = const_value(args[1]).astype(np.float64)
                layer = fusable(args[0], _FUSES_BIAS) if op == "relax.add" else None
                if layer is not None and "act" not in layer.attrs:
                    n = layer.attrs["bias"].shape[0]
                    layer.attrs["bias"] = layer.attrs["bias"] + np.broadcast_to(c.reshape(-1), (n,)) if c.size in (1, n) else None
                    if layer.attrs["bias"] is None:
                        raise ModelError(f"{label}: bias of shape {list(c.shape)} does not fit {n} channels")
                    extend(layer, var)
                    continue
                # a per-channel affine (standalone BatchNorm): a depthwise 1x1 conv or diagonal dense
                shape = static_shape(var)
                ch = shape[1] if shape and len(shape) >= 2 else None
                if not isinstance(ch, int) or c.size not in (1, ch) or len(shape) not in (2, 4):
                    raise ModelError(f"{label}: elementwise {op.removeprefix('relax.')} with a constant of "
                                     f"shape {list(c.shape)} has no integer form (per-channel on axis 1 only)")
                vec = np.broadcast_to(c.reshape(-1), (ch,)).astype(np.float64)
                scale = vec if op == "relax.multiply" else np.ones(ch)
                bias = vec if op == "relax.add" else np.zeros(ch)
                if len(shape) == 4:
                    new("conv2d", var, acts, weight=scale.reshape(ch, 1, 1, 1), bias=bias, strides=(1, 1),
                        padding=(0, 0, 0, 0), dilation=(1, 1), groups=ch)
                else:
                    new("dense", var, acts, weight=np.diag(scale), bias=bias)
            elif op in ("relax.add", "relax.multiply") and len(acts) == 2:
                new("add" if op == "relax.add" else "mul", var, acts)
            elif op == "relax.nn.max_pool2d":
                new("max_pool2d", var, acts, **_pool_attrs(call))
            elif op == "relax.nn.avg_pool2d":
                attrs = _pool_attrs(call)
                if attrs["dilation"] != (1, 1) or attrs["ceil_mode"]:
                    raise ModelError(f"{label}: average pooling with dilation or ceil_mode has no integer form")
                new("avg_pool2d", var, acts, **attrs)
            elif op in ("relax.mean", "relax.max") and [int(x) for x in call.attrs.axis] in ([2, 3], [-2, -1]):
                shape = static_shape(args[0])
                if op == "relax.mean":
                    new("global_avg_pool", var, acts, keepdims=bool(call.attrs.keepdims), window=shape[2] * shape[3])
                else:
                    new("max_pool2d", var, acts, pool_size=(shape[2], shape[3]), strides=(1, 1),
                        padding=(0, 0, 0, 0), dilation=(1, 1), ceil_mode=False, keepdims=bool(call.attrs.keepdims))
            elif op in LUT_FUNCS:
                fname, fn = LUT_FUNCS[op]
                attrs = {"alpha": float(call.attrs.alpha)} if op == "relax.nn.leakyrelu" else {}
                new("lut", var, acts, fn=fn, fn_name=fname, **attrs)
            elif op == "relax.reshape":
                shape = static_shape(var)
                new("reshape", var, acts, shape=tuple(-1 if isinstance(d, str) else d for d in shape))
            elif op == "relax.permute_dims":
                axes = call.attrs.axes
                new("transpose", var, acts, axes=None if axes is None else tuple(int(x) for x in axes))
            elif op == "relax.concat":
                new("concat", var, [alias.get(f, f) for f in call.args[0].fields], axis=int(call.attrs.axis))
            elif op == "relax.nn.pad":
                width = [int(x) for x in call.attrs.pad_width]
                if float(call.attrs.pad_value) != 0.0:
                    raise ModelError(f"{label}: padding with {float(call.attrs.pad_value)} has no integer form (only 0)")
                new("pad", var, acts, pads=tuple(width[0::2]) + tuple(width[1::2]))
            elif op == "relax.nn.softmax":
                new("softmax", var, acts, axis=int(call.attrs.axis))
            else:
                raise ModelError(f"{label}: nnforge has no integer form for {op.removeprefix('relax.')}")
    # a trailing softmax stays on the host, in float
    out_vars = [alias.get(v, v) for v in output_exprs(func)]
    for var, name in zip(out_vars, output_names or []):
        for layer in layers:
            if layer.output.same_as(var) and layer.name.startswith(f"{layer.op}_"):
                layer.name = name
    # names are tensor names in the integer graph: unique, and never an input's name
    inputs = [onnx_names.get(p.name, p.name) for p in func.params]
    for layer, name in zip(layers, unique_names([l.name for l in layers], inputs)):
        layer.onnx_name, layer.name = original.get(layer.name, layer.name), name
    for layer in [l for l in layers if l.op == "softmax"]:
        if any(layer.output.same_as(v) for v in out_vars):
            host.append(layer.name)
            continue
        # opset-9 Softmax imports as reshape -> softmax -> reshape: the trailing reshape stays too
        after = [l for l in layers if any(v.same_as(layer.output) for v in l.inputs)]
        if (len(after) == 1 and after[0].op == "reshape" and layers[-1] is after[0]
                and any(after[0].output.same_as(v) for v in out_vars)):
            host.extend([layer.name, after[0].name])
            continue
        raise ModelError(f"layer {layer.name!r}: softmax is only supported as the model's last op (on the host)")
    return layers, host


def traced_module(mod, layers: list[FloatLayer]):
    """A copy of ``mod`` whose ``main`` returns every layer's output (for calibration and SQNR),
    found by identity, never by name (``relax_utils.returning``: Relax names repeat)."""
    return returning(mod, [(layer.name, layer.output) for layer in layers])


def tensor_names(func, layers: list[FloatLayer], input_names: list[str]) -> dict:
    """Relax var -> the tensor name it holds: a model input's name (``func.params`` in order) or
    its layer's name.  By identity, like ``traced_module``: var names may repeat."""
    names = dict(zip(func.params, input_names))
    names.update({layer.output: layer.name for layer in layers})
    return names
