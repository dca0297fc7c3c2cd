"""Map a partitioned model onto the systolic accelerator: the program and the memory images.

``plan(design, params)`` runs these steps, in order:

1. map every layer, in graph order, to a ``LayerSpec`` (``gemm``/``window``/``eltwise``/``views``);
   a layer the array cannot take, and everything after it, stays on the host, which is
   allowed only when no conv2d/dense layer has to follow it there (a trailing layer);
2. place tensors: one buffer per produced tensor, views share their input's, a concat's
   inputs written in place into its buffer;
3. allocate the scratchpad by liveness (``alloc.py``);
4. emit ``INPUT`` + ``SYNC 0``, each layer's instructions + ``SYNC id``, ``OUTPUT`` + ``END``,
   appending each layer's weights, indices and parameters to WMEM, IMEM and PMEM;
5. check every memory's capacity, naming the layer and the option that raises it.

Layer ids (the SYNC operand) are 0 for the input and 1, 2, ... for the accelerated layers in
program order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QNode

from ..base import Design, HostItem
from ..golden import sample_shape
from ..macs import layer_macs
from . import eltwise, gemm, isa, views, window
from .alloc import Allocation, Buffer, allocate
from .layout import Layout, Placement, Shape
from .params import Params
from .spec import Context, Emitter, LayerSpec, Unsupported, instr

SPECS = {
    "conv2d": gemm.conv2d, "dense": gemm.dense,
    "max_pool2d": window.max_pool2d, "avg_pool2d": window.avg_pool2d,
    "global_avg_pool": window.global_avg_pool, "pad": window.pad,
    "add": eltwise.add, "mul": eltwise.mul, "requant": eltwise.requant, "clip": eltwise.clip, "lut": eltwise.lut,
    "hard_swish": eltwise.hard_swish, "reshape": views.reshape,
}  # concat needs the set of tensors already placed; see _spec
ACCELERATED_OPS = frozenset(SPECS) | {"concat"}
MAC_OPS = ("conv2d", "dense")


@dataclass
class Layer:
    """One accelerated layer in the program."""

    ident: int  # the SYNC operand
    spec: LayerSpec
    instrs: list[isa.Instr]  # its instructions, its SYNC last
    start: int  # program address of its first instruction
    w_base: int
    i_base: int
    p_base: int
    cycles: int  # predicted: isa.cycles of its instructions, SYNC included

    @property
    def node(self) -> QNode:
        return self.spec.node


@dataclass
class StreamTensor:
    """A tensor on the AXI stream: ``count`` words from word ``offset`` of the stream."""

    name: str
    layout: Layout
    offset: int
    count: int


@dataclass
class Plan:
    params: Params
    program: list[isa.Instr]
    wmem: list[int]
    imem: list[int]
    pmem: list[int]
    layers: list[Layer]
    layouts: dict[str, Layout]
    inputs: list[StreamTensor]
    outputs: list[StreamTensor]
    host: list[HostItem]  # integer-graph layers the host runs after the array (mapping's and partition's)
    allocation: Allocation
    buffers: list[Buffer] = field(default_factory=list)

    def trace_regions(self) -> dict[str, list[list[int]]]:
        """Layer id -> the scratchpad words holding its output at its SYNC."""
        return {str(l.ident): [self.layouts[l.node.output].region()] for l in self.layers}

    def cycles(self) -> list[int]:
        shape = self.params.machine.shape
        return [isa.cycles(i, shape) for i in self.program]


def _host_split(design: Design, params: Params) -> tuple[list[LayerSpec], dict[str, str], dict[str, Shape]]:
    """Specs of the accelerated layers, and the host layers with their reasons (step 1)."""
    graph = design.graph
    cols = params.cols
    partition_host = {h.name: h.reason for h in design.host}
    shapes = {t.name: Shape.plain(sample_shape(graph, t.name), cols) for t in graph.inputs}
    ctx = Context(graph, params, shapes, {})
    specs: list[LayerSpec] = []
    host: dict[str, str] = {}
    root_of: dict[str, str] = {}  # host tensor -> the layer that sent it to the host
    placed: set[str] = set()
    for node in graph.nodes:
        root = next((root_of[t] for t in node.inputs if t in root_of), None)
        if root is not None:
            reason = f"it follows host layer {root!r}"
            if node.op in MAC_OPS:  # only trailing layers may stay on the host
                raise InputError(f"{host[root]} (layer {root!r} cannot stay on the host: {node.op} layer "
                                 f"{node.name!r} after it needs the array)")
        elif node.name in partition_host:
            reason, root = partition_host[node.name], node.name
        elif node.op not in ACCELERATED_OPS:
            reason, root = f"the systolic array has no instruction for '{node.op}'", node.name
        else:
            try:
                spec = views.concat(ctx, node, placed) if node.op == "concat" else SPECS[node.op](ctx, node)
            except Unsupported as err:
                spec, reason, root = None, str(err), node.name
            else:
                spec.macs = layer_macs(graph, node)
                shapes[node.output] = spec.out
                ctx.producers[node.output] = spec
                specs.append(spec)
                continue
        host[node.name] = reason
        root_of[node.output] = root
    return specs, host, shapes


def _place(design: Design, specs: list[LayerSpec], shapes: dict[str, Shape], stream_out: list[str]
           ) -> tuple[list[Buffer], dict[str, Placement]]:
    """Buffers and where each tensor lies in them, with live ranges (steps 2 and 3's input)."""
    buffers: list[Buffer] = []
    placement: dict[str, Placement] = {}

    def new(tensor: str) -> Placement:
        s = shapes[tensor]
        buffers.append(Buffer(len(buffers), s.pixels * s.words, 0, 0, tensor))
        return Placement(len(buffers) - 1, 0, s.words)

    used = {t for s in specs for t in s.node.inputs}
    for t in design.graph.inputs:
        if t.name in used or t.name in stream_out:
            placement[t.name] = new(t.name)
    in_concat: dict[str, Placement] = {}
    for s in specs:
        if s.kind == "concat":
            placement[s.node.output] = p = new(s.node.output)
            for t in s.in_place:
                in_concat[t] = Placement(p.buffer, s.offsets[t], p.ps)
    for s in specs:
        out = s.node.output
        if s.kind == "view":
            placement[out] = placement[s.node.inputs[0]]
        elif s.kind != "concat":
            placement[out] = in_concat.get(out) or new(out)
    # live ranges in layer ids: inputs are written at 0, layer i at i, the outputs read at the end
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(tensor: str, when: int) -> None:
        b = placement[tensor].buffer
        first[b] = min(first.get(b, when), when)
        last[b] = max(last.get(b, when), when)

    for t in design.graph.inputs:
        if t.name in placement:
            touch(t.name, 0)
    for i, s in enumerate(specs, 1):
        for t in s.node.inputs:
            touch(t, i)
        touch(s.node.output, i)
    for t in stream_out:
        touch(t, len(specs) + 1)
    for b in buffers:
        b.first, b.last = first.get(b.ident, 0), last.get(b.ident, 0)
    return buffers, placement


def _capacity(what: str, option: str, need: int, depth: int, unit: str, where: str) -> None:
    if need > depth:
        raise InputError(f"the {what} must fit {option}={depth} {unit}, but {where} needs {need}; "
                         f"raise it with --option {option}={need}")


def plan(design: Design, params: Params) -> Plan:
    """The whole mapping (see the module docstring)."""
    graph = design.graph
    m = params.machine
    specs, host_reasons, shapes = _host_split(design, params)
    if not specs:
        raise InputError("the model must have at least one layer the systolic array can run, not none "
                         f"(host layers: {', '.join(host_reasons) or 'none'})")
    produced = {s.node.output for s in specs} | {t.name for t in graph.inputs}
    host_nodes = [n for n in graph.nodes if n.name in host_reasons]
    stream_out: list[str] = []
    for t in list(graph.outputs) + [t for n in host_nodes for t in n.inputs]:
        if t in produced and t not in stream_out and t not in {x.name for x in graph.inputs}:
            stream_out.append(t)
    buffers, placement = _place(design, specs, shapes, stream_out)
    alloc = allocate(buffers)
    at = specs[alloc.peak_layer - 1].node.name if alloc.peak_layer >= 1 else "the input"
    _capacity("scratchpad", "spad_depth", alloc.peak, m.spad_depth, "words",
              f"layer {at!r} (live: {', '.join(alloc.live_at_peak)})")
    layouts = {t: Layout(buffers[p.buffer].base + p.offset, p.ps, shapes[t]) for t, p in placement.items()}

    first_node = specs[0].node
    program: list[isa.Instr] = []
    inputs: list[StreamTensor] = []
    offset = 0
    for t in graph.inputs:
        if t.name in layouts:
            lay = layouts[t.name]
            program.append(instr(first_node, isa.OP_INPUT, note=f"input {t.name}", count=lay.span,
                                 out_base=lay.base))
            program[-1].layer = "input"
            inputs.append(StreamTensor(t.name, lay, offset, lay.span))
            offset += lay.span
    program.append(isa.Instr(isa.OP_SYNC, {"count": 0}, layer="input"))
    wmem: list[int] = []
    imem: list[int] = []
    pmem: list[int] = []
    layers: list[Layer] = []
    for ident, spec in enumerate(specs, 1):
        e = Emitter(layouts, len(wmem), len(imem), len(pmem))
        code = spec.emit(e) + [isa.Instr(isa.OP_SYNC, {"count": ident}, layer=spec.node.name)]
        layers.append(Layer(ident, spec, code, len(program), e.w_base, e.i_base, e.p_base,
                            sum(isa.cycles(i, m.shape) for i in code)))
        program += code
        if spec.wmem is not None:
            wmem += isa.pack_lanes(spec.wmem, m.in_bits)
        if spec.imem is not None:
            imem += isa.pack_lanes(spec.imem, m.idx_bits)
        pmem += spec.pmem
        for what, option, image, depth in (("weights", "wmem_depth", wmem, m.wmem_depth),
                                           ("shared-weight indices", "imem_depth", imem, m.imem_depth),
                                           ("parameters", "pmem_depth", pmem, m.pmem_depth)):
            if len(image) > depth:  # name the first layer that does not fit, and the total need
                total = len(image) + sum(_words(s, m)[option] for s in specs[ident:])
                _capacity(what, option, total, depth, "words", f"the model (from layer {spec.node.name!r} on)")
    outputs: list[StreamTensor] = []
    offset = 0
    for t in stream_out:
        lay = layouts[t]
        program.append(isa.Instr(isa.OP_OUTPUT, {"count": lay.span, "in_base": lay.base}, layer="output",
                                 note=f"output {t}"))
        outputs.append(StreamTensor(t, lay, offset, lay.span))
        offset += lay.span
    program.append(isa.Instr(isa.OP_END, {}, layer="end"))
    _capacity("program", "prog_depth", len(program), m.prog_depth, "instructions", "the model")
    host = [HostItem(n.name, n.op, host_reasons[n.name]) for n in host_nodes]
    return Plan(params, program, wmem, imem, pmem, layers, layouts, inputs, outputs, host, alloc, buffers)


def _words(spec: LayerSpec, m) -> dict[str, int]:
    """Memory words one layer adds, by the option that bounds them."""
    return {"wmem_depth": 0 if spec.wmem is None else len(spec.wmem),
            "imem_depth": 0 if spec.imem is None else len(spec.imem), "pmem_depth": len(spec.pmem)}


__all__ = ["ACCELERATED_OPS", "Layer", "Plan", "StreamTensor", "plan"]
