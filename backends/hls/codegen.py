"""Source generation for the hls backend: a Design in, ``src/`` files and ``csim.json`` out.

The steps, in order:

1. per-sample shapes of every tensor (the batch axis dropped);
2. one ``KernelSpec`` per node (``kernels.py``: every number the templates need);
3. the buffer plan of the top function: one buffer per tensor, a reshape between equal types
   aliases its input (no kernel), a buffer read twice gets a fork (DATAFLOW wants one reader
   per buffer), the last kernel writes ``out`` directly when nothing else reads it;
4. rendering: ``nnf_types.h``, one header per kernel family, one ``weights/<layer>.h`` per
   layer with constants, the top ``<top>.cpp``/``<top>.h``, and the static ``nnf_int.h`` and
   ``nnf_kernels.h``;
5. ``csim.json``: the top's sizes and every node's name, shape and trace offset.  ONNX names
   appear only there (JSON-escaped), never in C++.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np

from nnforge.compiler.errors import InputError
from nnforge.compiler.qgraph import QGraph

from ..base import Design
from ..macs import layer_macs
from ..naming import identifiers
from . import kernels as K
from . import weights as wts

STATIC = ("nnf_int.h", "nnf_kernels.h")

# -- the weight forms --------------------------------------------------------------------------------------
# ``inline``: every constant is a C array literal in src/weights/<layer>.h (small models; what Vitis
# and g++ read directly).  ``file``: arrays of FILE_MIN_VALUES or more values go to binary files,
# weights/<layer>.<array>.bin (little-endian integers, the narrowest of 1/2/4/8 bytes), listed in
# weights/weights.json; the C simulation and testbench load them at run time (src/nnf_weights.h), so
# g++ never parses them (ResNet-50 inline: 126 MB of literals, g++ killed at 24 GB), and synthesis
# reads literal .inc files that `make literals` (tools/weights_to_literals.py) writes from the same
# binaries.  ``auto``: file from FILE_AUTO_VALUES constant values in all, else inline.
WEIGHT_FORMS = ("auto", "inline", "file")
FILE_AUTO_VALUES = 1_000_000
FILE_MIN_VALUES = 256
WEIGHTS_DIR = "weights"
WEIGHTS_MANIFEST = "weights/weights.json"
WEIGHTS_FORMAT = "nnforge-hls-weights/1"


def weight_form(option: str, specs: dict[str, K.KernelSpec | None]) -> str:
    """``inline`` or ``file`` for the ``weights`` option (``auto`` decides by the number of values)."""
    if option not in WEIGHT_FORMS:
        raise InputError(f"option 'weights' must be one of {', '.join(WEIGHT_FORMS)}, not {option!r}")
    if option != "auto":
        return option
    total = sum(a.length for s in specs.values() if s is not None for a in s.consts if a.length >= FILE_MIN_VALUES)
    return "file" if total >= FILE_AUTO_VALUES else "inline"


def _to_files(spec: K.KernelSpec, headers: dict[str, str], files: dict[str, str | bytes],
              records: list[dict[str, Any]]) -> K.KernelSpec:
    """``spec`` with its large arrays moved to binary files (added to ``files`` and ``records``)."""
    stem = headers[spec.ident][: -len(".h")]
    consts = []
    for a in spec.consts:
        if a.length < FILE_MIN_VALUES:
            consts.append(a)
            continue
        nbytes, signed = wts.file_encoding(a.values)
        data = wts.file_bytes(a.values, nbytes, signed)
        name = f"{stem}.{a.name.split('_', 1)[0]}.bin"  # W_<ident> -> <header stem>.W.bin
        files[f"{WEIGHTS_DIR}/{name}"] = data
        records.append(dict(array=a.name, file=name, include=f"src/weights/{name[:-len('.bin')]}.inc",
                            count=a.length, bytes=nbytes, signed=signed, suffix=a.suffix,
                            checksum=str(wts.checksum(data))))
        consts.append(dataclasses.replace(a, file=name))
    return dataclasses.replace(spec, consts=tuple(consts))


def environment() -> jinja2.Environment:
    try:
        loader: jinja2.BaseLoader = jinja2.PackageLoader("nnforge.templates", "hls")
    except (ValueError, ModuleNotFoundError):  # an unusual install: fall back to the folder
        import nnforge.templates
        from pathlib import Path

        loader = jinja2.FileSystemLoader(str(Path(nnforge.templates.__file__).parent / "hls"))
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True, autoescape=False)


_ENV: jinja2.Environment | None = None


def env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = environment()
    return _ENV


# -- shapes and names ----------------------------------------------------------------------------------

def sample_shapes(graph: QGraph) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every tensor; from the graph, or (hand-built graphs without shapes)
    from one all-zero sample through the numpy reference."""
    names = [t.name for t in graph.inputs] + graph.node_outputs()
    shapes = {n: graph.tensors[n].shape for n in names}
    if all(len(s) >= 1 and all(isinstance(d, (int, np.integer)) for d in s[1:]) for s in shapes.values()):
        return {n: tuple(int(d) for d in s[1:]) for n, s in shapes.items()}
    from nnforge.compiler import reference

    zeros = []
    for t in graph.inputs:
        if len(t.shape) < 1 or not all(isinstance(d, (int, np.integer)) for d in t.shape[1:]):
            raise InputError(f"input {t.name!r} must have a known per-sample shape, not {t.shape}")
        zeros.append(np.zeros((1, *[int(d) for d in t.shape[1:]]), dtype=np.int64))
    values = reference.run(graph, zeros)
    return {n: tuple(int(d) for d in values[n].shape[1:]) for n in names}


def tensor_idents(design: Design) -> dict[str, str]:
    """tensor -> identifier: a node's output takes its kernel's identifier, an input its own."""
    graph = design.graph
    out = {n.output: design.idents[n.name] for n in graph.nodes}
    taken = set(out.values())
    for t in graph.inputs:
        ident = design.idents.get(t.name)
        if ident is None or ident in taken:  # a node named like the input: derive another one
            ident = identifiers([t.name], prefix="t", taken=taken)[t.name]
        out[t.name] = ident
        taken.add(ident)
    return out


def check_design(design: Design) -> None:
    graph = design.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise InputError(f"the hls backend needs one input and one output, not {len(graph.inputs)} input(s) and "
                         f"{len(graph.outputs)} output(s)")
    if not graph.nodes:
        raise InputError("the graph must have at least one node")
    node_names = {n.name for n in graph.nodes}
    for h in design.host:
        if h.name in node_names:
            raise InputError(f"node {h.name!r} ({h.op}) stays on the host ({h.reason}), but the generated C runs "
                             f"the whole integer graph; the hls backend must take every integer node")
    kernel_nodes = [k.node.name for k in design.kernels]
    if kernel_nodes != [n.name for n in graph.nodes]:
        raise InputError("the design's kernels must be the graph's nodes in order")


# -- the buffer plan --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Buffer:
    ctype: str
    name: str
    size: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[str, ...]


def plan(design: Design, ctx: K.Context, specs: dict[str, K.KernelSpec | None], io: str
         ) -> tuple[list[Buffer], list[Call], list[K.KernelSpec], dict[str, str]]:
    """Buffers, kernel calls (in order), extra kernels (forks, copies) and tensor -> buffer."""
    graph = design.graph
    inp = graph.inputs[0].name
    output = graph.outputs[0]
    tid = ctx.tensor_ident
    buf_of: dict[str, str] = {}  # tensor -> its buffer (aliases share)
    owner: dict[str, str] = {}  # buffer -> the tensor that names it
    in_buf = "in" if io == "array" else f"b_{tid[inp]}"
    buf_of[inp], owner[in_buf] = in_buf, inp
    for node in graph.nodes:
        if specs[node.name] is None:  # reshape between equal types: an alias
            buf_of[node.output] = buf_of[node.inputs[0]]
        else:
            buf_of[node.output] = f"b_{tid[node.output]}"
            owner[buf_of[node.output]] = node.output
    readers: dict[str, list[tuple[int, int]]] = {b: [] for b in owner}
    for i, node in enumerate(graph.nodes):
        if specs[node.name] is not None:
            for slot, t in enumerate(node.inputs):
                readers[buf_of[t]].append((i, slot))
    out_reader = (len(graph.nodes), 0)
    readers[buf_of[output]].append(out_reader)
    direct_out = (io == "array" and buf_of[output] != in_buf and readers[buf_of[output]] == [out_reader])
    if direct_out:  # the last kernel writes `out` itself
        b = buf_of[output]
        for t in list(buf_of):
            if buf_of[t] == b:
                buf_of[t] = "out"
        owner["out"] = owner.pop(b)
        readers["out"] = readers.pop(b)

    buffers: list[Buffer] = []
    calls: list[Call] = []
    extra: list[K.KernelSpec] = []
    source: dict[tuple[int, int], str] = {}  # (reader, slot) -> the buffer it reads

    def produced(buf: str) -> None:
        """After a buffer's producer: fork it when it has several readers."""
        rs = readers[buf]
        if len(rs) <= 1:
            for r in rs:
                source[r] = buf
            return
        ident = tid[owner[buf]]
        ctype, size = ctx.ctype(owner[buf]), ctx.size(owner[buf])
        copies = [f"f{j}_{ident}" for j in range(len(rs))]
        buffers.extend(Buffer(ctype, c, size) for c in copies)
        spec = K.copy(ident, f"fk_{ident}", ctype, size, len(rs))
        extra.append(spec)
        calls.append(Call(spec.func, (buf, *copies)))
        for r, c in zip(rs, copies):
            source[r] = c

    if io == "axis":  # read the stream once, in order
        spec = K.copy(tid[inp], f"ci_{tid[inp]}", ctx.ctype(inp), ctx.size(inp))
        extra.append(spec)
        buffers.append(Buffer(ctx.ctype(inp), in_buf, ctx.size(inp)))
        calls.append(Call(spec.func, ("in", in_buf)))
    produced(in_buf)
    for i, node in enumerate(graph.nodes):
        spec = specs[node.name]
        if spec is None:
            continue
        buf = buf_of[node.output]
        if buf != "out":
            buffers.append(Buffer(ctx.ctype(node.output), buf, ctx.size(node.output)))
        calls.append(Call(spec.func, (*[source[(i, s)] for s in range(len(node.inputs))], buf)))
        produced(buf)
    if not direct_out:  # the output is also read by another layer, or a stream: copy it out
        ident = tid[output]
        spec = K.copy(ident, f"co_{ident}", ctx.ctype(output), ctx.size(output))
        extra.append(spec)
        calls.append(Call(spec.func, (source[out_reader], "out")))
    return buffers, calls, extra, buf_of


# -- rendering --------------------------------------------------------------------------------------------

def _header_names(specs: list[K.KernelSpec]) -> dict[str, str]:
    """ident -> weights header file name; unique even on case-insensitive file systems."""
    seen: set[str] = set()
    out = {}
    for s in specs:
        if not s.consts:
            continue
        name = s.ident
        i = 2
        while name.lower() in seen:
            name, i = f"{s.ident}_{i}", i + 1
        seen.add(name.lower())
        out[s.ident] = f"{name}.h"
    return out


def generate(design: Design, options: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The sources (relative path -> text) and the per-layer notes for the report."""
    check_design(design)
    graph = design.graph
    top, io = options["top"], options["io"]
    ctx = K.Context(graph, sample_shapes(graph), tensor_idents(design), reuse=options["reuse_factor"])
    specs: dict[str, K.KernelSpec | None] = {}
    for kernel in design.kernels:
        node = kernel.node
        alias = node.op == "reshape" and ctx.qtype(node.inputs[0]) == ctx.qtype(node.output)
        if alias:
            K.reshape(ctx, node, kernel.ident)  # checks the sizes
        specs[node.name] = None if alias else K.kernel_spec(ctx, node, kernel.ident)
    headers = _header_names([s for s in specs.values() if s is not None])
    files: dict[str, str | bytes] = {}
    weight_records: list[dict[str, Any]] = []
    if weight_form(options.get("weights", "auto"), specs) == "file":
        specs = {name: _to_files(s, headers, files, weight_records) if s is not None and s.consts else s
                 for name, s in specs.items()}
    buffers, calls, extra, buf_of = plan(design, ctx, specs, io)
    layer_specs = [s for s in specs.values() if s is not None]
    all_specs = layer_specs + extra
    e = env()
    for name in STATIC:
        files[f"src/{name}"] = e.loader.get_source(e, name)[0]

    types: list[tuple[str, str]] = []
    for t in [graph.inputs[0].name] + graph.node_outputs():
        types.append((ctx.ctype(t), K.c_type(ctx.qtype(t))))
    for s in layer_specs:
        types.extend(s.types)
    files["src/nnf_types.h"] = e.get_template("nnf_types.h.j2").render(types=types)

    for s in layer_specs:
        if s.consts:
            what = f"{s.store.form} weights, bias and requantization" if s.store else f"{s.kind} constants"
            files[f"src/weights/{headers[s.ident]}"] = e.get_template("weights.h.j2").render(
                what=what, arrays=s.consts, store=s.store, p=s.p)
    families = [f for f in K.FAMILIES if any(s.family == f for s in all_specs)]
    for f in families:
        members = [s for s in all_specs if s.family == f]
        files[f"src/kernels/{f}.h"] = e.get_template(f"{f}.h.j2").render(
            kernels=members, headers=[headers[s.ident] for s in members if s.ident in headers and s.consts])

    # trace: every node's output in graph order
    trace, nodes, offset = [], [], 0
    for node in graph.nodes:
        size = ctx.size(node.output)
        trace.append(dict(buffer=buf_of[node.output], size=size, offset=offset))
        nodes.append(dict(name=node.name, output=node.output, ident=ctx.tensor_ident[node.output], op=node.op,
                          shape=list(ctx.shapes[node.output]), offset=offset, size=size))
        offset += size
    inp, out = graph.inputs[0].name, graph.outputs[0]
    sizes = dict(in_size=ctx.size(inp), out_size=ctx.size(out), trace_size=offset)
    interface = ([f"mode=ap_memory port={p}" for p in ("in", "out")] if io == "array"
                 else [f"mode=axis port={p}" for p in ("in", "out")])
    files[f"src/{top}.h"] = e.get_template("top.h.j2").render(
        top=top, in_type=ctx.ctype(inp), out_type=ctx.ctype(out), **sizes)
    files[f"src/{top}.cpp"] = e.get_template("top.cpp.j2").render(
        top=top, io=io, families=families, interface=interface, buffers=buffers, calls=calls, trace=trace,
        weight_files=bool(weight_records))
    if weight_records:
        files["src/nnf_weights.h"] = e.get_template("nnf_weights.h.j2").render(arrays=weight_records)
        files[WEIGHTS_MANIFEST] = json.dumps({"format": WEIGHTS_FORMAT, "arrays": weight_records}, indent=1) + "\n"

    def tensor_doc(name: str) -> dict[str, Any]:
        t = graph.tensors[name]
        return dict(name=name, ident=ctx.tensor_ident[name], shape=list(ctx.shapes[name]), type=str(t.qtype),
                    lo=t.qtype.lo, hi=t.qtype.hi, scale=float(t.scale))

    manifest = dict(top=top, io=io, **sizes, input=tensor_doc(inp), output=tensor_doc(out), nodes=nodes)
    if weight_records:
        manifest["weights"] = WEIGHTS_DIR
    files["csim.json"] = json.dumps(manifest, indent=1) + "\n"
    return files, layer_info(design, ctx, specs, headers)


def layer_info(design: Design, ctx: K.Context | None = None, specs: dict | None = None,
               headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per kernel: name, ident, op, storage form and bytes, MACs, shapes (for the report)."""
    graph = design.graph
    if ctx is None:
        ctx = K.Context(graph, sample_shapes(graph), tensor_idents(design))
    rows = []
    for kernel in design.kernels:
        node = kernel.node
        spec = (specs or {}).get(node.name)
        store = spec.store if spec is not None else (K.mac_store(node) if node.op in ("conv2d", "dense") else None)
        row: dict[str, Any] = dict(
            name=node.name, ident=kernel.ident, op=node.op,
            form=store.form if store else None, storage=store.form if store else None,
            weight_bytes=store.bytes if store else 0, dense_weight_bytes=(store.dense_bits + 7) // 8 if store else 0,
            macs=layer_macs(graph, node),
            input_shapes=[list(ctx.shapes[i]) for i in node.inputs], output_shape=list(ctx.shapes[node.output]))
        if store:
            row.update(weight_shape=list(np.shape(node.attrs.weight)), weight_bits=store.wbits, nnz=store.nnz,
                       codebook_size=store.codebook_size or None)
            if store.form == "codebook":
                row.update(index_bits=store.index_bits, word_bits=store.word_bits)
        if headers and kernel.ident in headers:
            row["header"] = f"src/weights/{headers[kernel.ident]}"
        rows.append(row)
    return rows
