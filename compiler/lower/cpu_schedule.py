"""Tuning-free CPU schedule for the Relax modules nnforge builds (float, traced, integer).

One of the few modules that import tvm.  ``build`` compiles for ``cpu_target()`` (llvm, ``-mcpu``
= this CPU: not portable, so caches key on its str) with cpu_generic's Relax pipeline (fusion)
and the rule ``inner_spatial_vectorize`` for each fused PrimFunc with one reduction, elementwise
producers/epilogues inlined (pads kept, as k phases if read with stride k):

* a conv2d whose input is shared by its output channels (not depthwise), with whole vectors of
  output channels (``_conv_by_channels``): vectorized over output channels, 16 lanes with AVX-512
  (else 8).  A register tile is P pixels x R rows x V channel vectors (``_conv_tiles``: P | width,
  R | height, at most 24 accumulators, the most multiply-adds per load); each reduction step
  loads V weight vectors and broadcasts P x R inputs.  Constant weights are laid out
  channels-last before fusion (``channels_last_weights``: OIHW -> IHWO, a Relax rewrite), so the
  vectors load straight from them; other weights are copied per tile.  Any width (ResNet's 28,
  14 and 7 are no multiple of 8) and stride.
* anything else: loops ``S.. tile R.. rows cols lanes`` (innermost spatial loop vectorized by 8,
  <= 8 vector accumulators unrolled), and for a conv whose channels are not whole vectors
  ``S.. tile R.. chans rows cols lanes`` with 4 channels x 2 rows.

The epilogue runs per tile.  Arithmetic and summation order never change (each output sums its
reduction in order): integer builds stay bit-exact, float ones differ only by FMA contraction.
If the pipeline raises, the plain ``tvm.compile(mod, target="llvm")``; ``stats`` counts the
paths (logging: DEBUG only).

Parallel loops run inside a sample, so batch 1 uses every core: images fused with output-channel
tiles (conv), channels (depthwise, pools) or all tiles (dense), on TVM's thread pool, which
nnforge sizes to every core, as onnxruntime does (TVM's own default is half the hardware threads,
and it pins the calling thread to a core, which then slows onnxruntime or numpy in the same
process); set TVM_NUM_THREADS / TVM_BIND_THREADS yourself to override.  Pads get their own
parallel pass.  Idle workers keep TVM's default spin: without it (TVM_THREAD_POOL_SPIN_COUNT=0)
every parallel loop pays a wake-up, and batch-1 float runs fell from 5.0k to 1.3k samples/s on
the digits CNN.
"""

from __future__ import annotations

import functools
import logging
import math
import os

# must precede the first parallel launch, when TVM creates its pool
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("TVM_BIND_THREADS", "0")

import numpy as np  # noqa: E402
import tvm  # noqa: E402
from tvm import relax, s_tir, tirx  # noqa: E402
from tvm.relax.backend.cpu_generic import pipeline as cpu  # noqa: E402
from tvm.s_tir import dlight as dl  # noqa: E402
from tvm.s_tir.dlight.analysis import normalize_prim_func  # noqa: E402
from tvm.target import codegen  # noqa: E402

_log = logging.getLogger(__name__)
VECTOR = 8  # lanes: 8 x f32/i32 = one AVX2 register
# conv2d vectorized over output channels (``_conv_by_channels``): 16 lanes and 24 accumulator
# vectors with AVX-512 (32 registers), else 8 and 12 (16 registers): the rest hold the weights
# and the broadcast inputs
_AVX512 = codegen.target_has_features("avx512f", tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}))
WIDE_VECTOR = 16 if _AVX512 else 8
CONV_ACCUMULATORS = 24 if _AVX512 else 12
CHANNELS = 4  # conv output channels per register tile (each input vector feeds CHANNELS of them)
ACCUMULATORS = 8  # vector partial sums per tile (hide the add latency, fit 16 registers)
stats = {"custom": 0, "fallback": 0, "unscheduled": 0, "by_channels": 0}  # builds per path; PrimFuncs left
# as is; convolutions vectorized over output channels


@dl.ScheduleRule.from_callable("InnerSpatialVectorize")
def inner_spatial_vectorize(func, target, _tunable):
    """One reduction block: vectorized register tiles, fused epilogue (see the module doc)."""
    try:
        return _schedule(s_tir.Schedule(func))
    except Exception as err:  # noqa: BLE001  (a primitive refused: keep the function as is)
        stats["unscheduled"] += 1
        _log.debug("inner_spatial_vectorize skipped a function: %s", err)
        return None


def _schedule(sch):
    infos = normalize_prim_func(sch)
    reds = [b for b in infos or [] if not b.is_injective()]
    if len(reds) != 1 or set(reds[0].dom_kind()) != {"S", "R"}:
        return None
    block, kinds, loops = reds[0].block_rv, reds[0].dom_kind(), sch.get_loops(reds[0].block_rv)
    if len(kinds) != len(loops):
        return None
    for info in infos:  # elementwise chains -> one block per output; pads stay separate
        if info.block_rv != block and "if_then_else" not in sch.get(info.block_rv).body.script():
            _try(sch.compute_inline, info.block_rv)
    s = [l for l, k in zip(loops, kinds) if k == "S"]
    r = [l for l, k in zip(loops, kinds) if k == "R"]
    spatial_vars = [i.var for i in reds[0].iters if i.kind == "S"]
    _deinterleave(sch, block, spatial_vars[-1])
    if len(s) in (3, 4) and _reused_along(sch, block, spatial_vars[-3]):
        weights = _weight_read(sch, block, spatial_vars[-2:])
        if weights is not None and _conv_tiles(sch, s, weights) is not None:
            return _conv_by_channels(sch, block, s, r, weights, spatial_vars[-3], *_conv_tiles(sch, s, weights))
    last = _extent(sch, s[-1])  # None: dynamic
    lanes = min(last, VECTOR) if last else VECTOR
    col, vec = sch.split(s[-1], factors=[None, lanes])
    col, cols = sch.split(col, factors=[None, _divisor(-(-(last or 1) // lanes), ACCUMULATORS)])
    tile, inner, outer = [col], [cols], s[:-1]
    if len(s) > 3 and _reused_along(sch, block, [i.var for i in reds[0].iters if i.kind == "S"][-3]):
        # output channels (conv: the input is read once for CHANNELS of them)
        most = ACCUMULATORS // _extent(sch, cols)
        chan, chans = sch.split(s[-3], factors=[None, _divisor(_extent(sch, s[-3]) or 1, min(CHANNELS, most))])
        tile, inner, outer = [chan, col], [chans, cols], s[:-3]
    if len(s) > 1:  # rows of the next spatial loop fill the tile up to ACCUMULATORS vectors
        most = ACCUMULATORS // math.prod(_extent(sch, l) for l in inner)
        row, rows = sch.split(s[-2], factors=[None, _divisor(_extent(sch, s[-2]) or 1, most)])
        tile, inner = [*tile[:-1], row, tile[-1]], [*inner[:-1], rows, inner[-1]]
        outer = [l for l in outer if not l.same_as(s[-2])]
    sch.reorder(*outer, *tile, *r, *inner, vec)
    # Parallel inside a sample, so batch 1 uses every core: the images (or leading loops) fused
    # with the first tile loop (conv: output-channel tiles; depthwise/pool: channels; dense: all
    # tiles).  Each register tile still sums its whole reduction in order: no result changes.
    fused = outer + tile[:1] if outer else tile
    par = sch.fuse(*fused) if len(fused) > 1 else fused[0]
    sch.parallel(par)
    at = tile[-1] if len(tile) > len(fused) - len(outer) else par  # the innermost loop left over the tile
    for loop in inner:
        sch.unroll(loop)
    sch.vectorize(vec)
    for consumer in sch.get_consumers(block):  # epilogue per tile, from registers/L1
        _try(sch.reverse_compute_at, consumer, at)
        _try(_vectorize_inner, sch, consumer, lanes)
    for producer in sch.get_producers(block):  # pads: their own parallel pass over the whole input
        _try(_parallel_outer, sch, producer)
    sch.decompose_reduction(block, r[0])
    return sch


def _weight_read(sch, block, pixel_vars) -> int | None:
    """The index of the read of ``block`` that no output pixel indexes: conv2d's weights."""
    stmt = sch.get(block)
    out = [w.source for w in stmt.writes]
    found = [i for i, read in enumerate(stmt.reads)
             if not any(read.source.same_as(o) for o in out) and len(read.region) == 4
             and not any(v.same_as(p) for rg in read.region for v in tirx.analysis.undefined_vars(rg.min)
                         for p in pixel_vars)]
    return found[0] if len(found) == 1 else None


def _indexed_last_by(sch, block, read: int, var) -> bool:
    """Whether read ``read`` of ``block`` has iteration variable ``var`` (the output channel) in its
    last index: the weights are channels-last already."""
    region = sch.get(block).reads[read].region
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(region[-1].min))


def _conv_tiles(sch, s, weights) -> tuple[int, int, int] | None:
    """(pixels P, rows R, channel vectors V) of the register tile of ``_conv_by_channels``, or None
    when the output channels are not whole vectors.  P divides the output width, R its height and V
    the channel vectors; P * R * V accumulators (at most CONV_ACCUMULATORS) and the most multiply-adds
    per load: each step loads V weight vectors and broadcasts P * R inputs for P * R * V MACs; on a
    tie the widest P, whose epilogue stores runs of P pixels (1 x 4 pixels instead of 4 x 1 made a
    1x1 conv with a residual epilogue 5x faster)."""
    oc, oh, ow = (_extent(sch, l) for l in s[-3:])
    if None in (oc, oh, ow) or oc % WIDE_VECTOR:
        return None
    vectors = oc // WIDE_VECTOR
    best = None
    for p in (d for d in range(1, min(ow, 16) + 1) if ow % d == 0):
        for rr in (d for d in (1, 2, 3, 4) if oh % d == 0):
            for v in (d for d in (1, 2, 3, 4) if vectors % d == 0):
                acc = p * rr * v
                if acc <= CONV_ACCUMULATORS:
                    key = (acc / (v + p * rr), acc, p)  # ties: wider rows of pixels (longer stores)
                    if best is None or key > best[0]:
                        best = (key, (p, rr, v))
    return None if best is None else best[1]


def _conv_by_channels(sch, block, s, r, weights: int, oc_var, p: int, rows: int, v: int):
    """A conv2d vectorized over output channels (any width, any stride): each register tile holds
    P x R output pixels of V x WIDE_VECTOR channels; each step of the reduction (input channel,
    kernel row, kernel column, in that order: sums are unchanged) loads V weight vectors (from
    channels-last weights, or a per-tile copy laid out so) and broadcasts each input once."""
    lead = [s[0]] if len(s) == 4 else []
    oc, oh, ow = s[-3:]
    oc_o, oc_v, oc_i = sch.split(oc, factors=[None, v, WIDE_VECTOR])
    oh_o, oh_r = sch.split(oh, factors=[None, rows])
    ow_o, ow_p = sch.split(ow, factors=[None, p])
    sch.reorder(*lead, oc_o, oh_o, ow_o, *r, oh_r, ow_p, oc_v, oc_i)
    par = sch.fuse(*lead, oc_o) if lead else oc_o
    sch.parallel(par)  # images x channel tiles
    # the accumulator tile channels-last, so each vector is stored whole (in a copy when the conv
    # writes the function's output, whose layout is fixed); weights channels-last too, so each
    # vector is loaded whole
    out = sch.get(block).writes[0].source
    if not any(b.same_as(out) for b in sch.get(sch.get_sblock("root")).alloc_buffers):  # a parameter
        sch.cache_write(block, 0, "global")
    sch.transform_layout(block, ("write", 0), lambda n, c, h, w: (n, h, w, c))
    cached = None
    if not _indexed_last_by(sch, block, weights, oc_var):  # OIHW: copied per tile
        cached = sch.cache_read(block, weights, "global")
        sch.compute_at(cached, par)
        sch.transform_layout(cached, ("write", 0), lambda o, i, kh, kw: (i, kh, kw, o))
    for loop in (oh_r, ow_p, oc_v):
        sch.unroll(loop)
    sch.vectorize(oc_i)
    for consumer in sch.get_consumers(block):  # epilogue per tile (vectorized over channels, NCHW stores were slower)
        _try(sch.reverse_compute_at, consumer, ow_o)
    for producer in sch.get_producers(block):
        if cached is None or not producer.same_as(cached):
            _try(_parallel_outer, sch, producer)
    sch.decompose_reduction(block, r[0])
    stats["by_channels"] += 1
    return sch


def _parallel_outer(sch, block) -> None:
    """The two outermost loops of an elementwise block (a pad) fused and run in parallel."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:2]) if len(loops) > 1 else loops[0])


def _deinterleave(sch, block, var) -> None:
    """A producer (pad) read with stride k > 1 along ``var`` (strided conv): store it as k phases,
    ``[..., w] -> [..., w % k, w // k]``, so that each phase is read contiguously."""
    for producer in sch.get_producers(block):
        buf = sch.get(producer).writes[0].source
        for read in (r for r in sch.get(block).reads if r.source.same_as(buf)):
            coef = tvm.sym.detect_linear_equation(read.region[-1].min, [var])
            k = coef[0].value if coef and isinstance(coef[0], tirx.IntImm) else 1
            if k > 1 and isinstance(buf.shape[-1], tirx.IntImm) and buf.shape[-1].value % k == 0:
                phases = lambda *i: (*i[:-1], i[-1] % k, i[-1] // k)  # noqa: E731
                _try(sch.transform_layout, producer, ("write", 0), phases)


def _reused_along(sch, block, var) -> bool:
    """Whether one input of ``block`` is read independently of ``var`` while another is not
    (conv2d's data and weights along the output channel; not a depthwise conv)."""
    stmt = sch.get(block)
    out = [w.source for w in stmt.writes]
    uses = [any(v.same_as(var) for r in read.region for v in tirx.analysis.undefined_vars(r.min))
            for read in stmt.reads if not any(read.source.same_as(o) for o in out)]
    return any(uses) and not all(uses)


def _vectorize_inner(sch, block, lanes: int) -> None:
    loop = sch.get_loops(block)[-1]
    if (_extent(sch, loop) or 1) % lanes == 0:
        sch.vectorize(sch.split(loop, factors=[None, lanes])[1])


def _extent(sch, loop) -> int | None:
    ext = sch.get(loop).extent
    return ext.value if isinstance(ext, tirx.IntImm) else None


def _divisor(n: int, most: int) -> int:
    """The largest of 8, 4, 2, 1 that divides n and is at most ``most``."""
    return next(f for f in (8, 4, 2, 1) if f <= most and n % f == 0)


def _try(primitive, *args) -> None:
    """Apply a schedule primitive where it applies (tvm checks before changing anything)."""
    try:
        primitive(*args)
    except Exception:  # noqa: BLE001, S110  (e.g. an output block cannot be inlined)
        pass


@functools.lru_cache(maxsize=None)
def cpu_target() -> tvm.target.Target:
    """llvm for this machine's CPU (``-mcpu``): part of any cache key for what it builds."""
    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})


def _conv_pattern():
    from tvm.relax.dpl import is_const, is_op, wildcard

    return is_op("relax.nn.conv2d")(wildcard(), is_const())


def _channels_last_weights(call, _matches):
    """``conv2d(x, W[O, I, kh, kw])`` -> ``conv2d(x, W[I, kh, kw, O], kernel_layout="IHWO")`` for a
    constant W whose output channels are whole vectors: ``_conv_by_channels`` then loads weight
    vectors straight from the constant instead of copying them per tile.  The same products in
    the same order (input channel, kernel row, kernel column)."""
    a = call.attrs
    if (str(a.kernel_layout) != "OIHW" or str(a.data_layout) != "NCHW" or str(a.out_layout) not in ("", "NCHW")
            or int(a.groups) != 1):
        return call
    from ..frontend.relax_utils import const, const_value

    w = const_value(call.args[1])
    if w.ndim != 4 or w.shape[0] % WIDE_VECTOR:
        return call
    return relax.op.nn.conv2d(call.args[0], const(np.ascontiguousarray(w.transpose(1, 2, 3, 0))), strides=a.strides,
                              padding=a.padding, dilation=a.dilation, groups=1, data_layout="NCHW",
                              kernel_layout="IHWO", out_layout="NCHW", out_dtype=a.out_dtype)


@tvm.transform.module_pass(opt_level=0, name="nnforge.ChannelsLastWeights")
def channels_last_weights(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """``_channels_last_weights`` on every Relax function of ``mod``."""
    from tvm.relax.dpl import rewrite_call

    pattern = _conv_pattern()
    out = mod.clone()
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            out[gv] = rewrite_call(pattern, _channels_last_weights, func)
    return out


def relax_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    """cpu_generic's default Relax pipeline plus ``inner_spatial_vectorize`` after fusion.
    ``ConvertToDataflow`` first: fusion only works inside dataflow blocks, and the traced float
    module (``layers.traced_module``, built from ``ToNonDataflow``) has none; then the conv
    weights channels-last (``channels_last_weights``)."""
    passes = [relax.transform.ConvertToDataflow(), channels_last_weights]
    passes += cpu.library_dispatch_passes(target) + cpu.legalize_passes(target)  # ends with FuseTIR
    passes += [dl.ApplyDefaultSchedule(inner_spatial_vectorize), *cpu.dataflow_lower_passes(target)]
    return tvm.transform.Sequential(passes + cpu.finalize_passes(target))


def _exported(mod: tvm.IRModule) -> tvm.IRModule:
    """A copy with a global_symbol on every Relax function (fusion's DCE drops the others)."""
    mod = mod.clone()
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function) and "global_symbol" not in (func.attrs or {}):
            mod[gv] = func.with_attr("global_symbol", gv.name_hint)
    return mod


def build(mod: tvm.IRModule):
    """Compile a Relax module for this CPU; the plain llvm build if the custom pipeline fails."""
    target = cpu_target()
    try:
        lib = tvm.compile(_exported(mod), target=target, relax_pipeline=relax_pipeline(target))
        stats["custom"] += 1
    except Exception as err:  # noqa: BLE001
        _log.debug("cpu_schedule pipeline failed, plain llvm build: %s", err)
        lib = tvm.compile(mod, target="llvm")
        stats["fallback"] += 1
    return lib
