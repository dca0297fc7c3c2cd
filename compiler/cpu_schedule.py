"""Tuning-free CPU schedule for the Relax modules nnforge builds (float, traced, integer).

One of the few modules that import tvm.  ``build`` compiles for ``cpu_target()`` (llvm, ``-mcpu``
= this CPU: not portable, so caches key on its str) with cpu_generic's Relax pipeline (fusion)
and the rule ``inner_spatial_vectorize`` for each fused PrimFunc with one reduction: elementwise
producers/epilogues inlined (pads kept, one image at a time, as k phases if read with stride k);
loops ``S.. tile R.. rows cols lanes`` (innermost spatial loop vectorized by 8, <= 8 vector
accumulators unrolled), and for a conv whose input is shared by its output channels (not
depthwise) ``S.. tile R.. chans rows cols lanes`` with 4 channels x 2 rows: each loaded input
vector feeds 4 accumulators and each broadcast weight 2 (6 loads per 8 FMAs instead of 9);
epilogue per tile.  Arithmetic and summation order never change: integer builds stay
bit-exact, float ones differ only by FMA contraction.  If the pipeline raises, the plain
``tvm.compile(mod, target="llvm")``; ``stats`` counts the paths (logging: DEBUG only).
Images (conv) or row tiles (dense) run in parallel on TVM's thread pool, which nnforge sizes
to every core, as onnxruntime does (TVM's own default is half the hardware threads, and it pins
the calling thread to a core, which then slows onnxruntime or numpy in the same process); set
TVM_NUM_THREADS / TVM_BIND_THREADS yourself to override.  Idle workers keep TVM's default spin:
without it (TVM_THREAD_POOL_SPIN_COUNT=0) every parallel loop pays a wake-up, and batch-1 float
runs fell from 5.0k to 1.3k samples/s on the digits CNN.
"""

from __future__ import annotations

import functools
import logging
import math
import os

# must precede the first parallel launch, when TVM creates its pool
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("TVM_BIND_THREADS", "0")

import tvm  # noqa: E402
from tvm import relax, s_tir, tirx  # noqa: E402
from tvm.relax.backend.cpu_generic import pipeline as cpu  # noqa: E402
from tvm.s_tir import dlight as dl  # noqa: E402
from tvm.s_tir.dlight.analysis import normalize_prim_func  # noqa: E402
from tvm.target import codegen  # noqa: E402

_log = logging.getLogger(__name__)
VECTOR = 8  # lanes: 8 x f32/i32 = one AVX2 register
CHANNELS = 4  # conv output channels per register tile (each input vector feeds CHANNELS of them)
ACCUMULATORS = 8  # vector partial sums per tile (hide the add latency, fit 16 registers)
stats = {"custom": 0, "fallback": 0, "unscheduled": 0}  # builds per path; PrimFuncs left as is


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
    _deinterleave(sch, block, [i.var for i in reds[0].iters if i.kind == "S"][-1])
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
    # images (conv) or row tiles (dense) in parallel: no reduction order changes
    sch.parallel(s[0] if len(s) > 2 else tile[0])
    for loop in inner:
        sch.unroll(loop)
    sch.vectorize(vec)
    for consumer in sch.get_consumers(block):  # epilogue per tile, from registers/L1
        _try(sch.reverse_compute_at, consumer, tile[-1])
        _try(_vectorize_inner, sch, consumer, lanes)
    if len(s) > 2:
        for producer in sch.get_producers(block):  # pad per image
            _try(sch.compute_at, producer, sch.get_loops(block)[0])
    sch.decompose_reduction(block, r[0])
    return sch


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


def relax_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    """cpu_generic's default Relax pipeline plus ``inner_spatial_vectorize`` after fusion.
    ``ConvertToDataflow`` first: fusion only works inside dataflow blocks, and the traced float
    module (``layers.traced_module``, built from ``ToNonDataflow``) has none."""
    passes = [relax.transform.ConvertToDataflow()]
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
