"""The memory images (``mem/*.hex``) and the program listing (``program.lst``) of a plan.

Every image is a ``$readmemh`` file of ``isa.hex_words`` lines, one word a line, **padded with
zero words to the memory's depth**, so the RTL's memories are fully defined by their files (an
all-zero program word is ``END``).  The listing shows each instruction's address, opcode,
layer, predicted cycles, MACs and every non-zero field, with a summary line per layer.
"""

from __future__ import annotations

import json

from . import isa
from .mapping import Plan

_OPS = {v: k for k, v in isa.OPCODES.items()}
_SUBS = {isa.OP_WINDOW: {isa.WIN_MAX: "MAX", isa.WIN_SUM: "SUM", isa.WIN_COPY: "COPY"},
         isa.OP_ELTWISE: {isa.ELT_ADD: "ADD", isa.ELT_MUL: "MUL", isa.ELT_REQUANT: "REQUANT", isa.ELT_CLIP: "CLIP",
                          isa.ELT_LUT: "LUT"}}


def widths(plan: Plan) -> dict[str, int]:
    """Word width, bits, of each memory."""
    m = plan.params.machine
    return {"prog": isa.INSTR_BITS, "wmem": m.cols * m.in_bits, "imem": m.cols * m.idx_bits,
            "pmem": m.cols * isa.pmem_lane_bits(m.acc_bits)}


def depths(plan: Plan) -> dict[str, int]:
    m = plan.params.machine
    return {"prog": m.prog_depth, "wmem": m.wmem_depth, "imem": m.imem_depth, "pmem": m.pmem_depth}


def words(plan: Plan) -> dict[str, list[int]]:
    """The used words of each memory (the images before padding)."""
    return {"prog": [isa.encode(i) for i in plan.program], "wmem": plan.wmem, "imem": plan.imem, "pmem": plan.pmem}


def hex_images(plan: Plan) -> dict[str, str]:
    """``mem/<name>.hex`` -> text, each padded to its memory's depth."""
    w, d = widths(plan), depths(plan)
    return {f"mem/{name}.hex": isa.hex_words(used + [0] * (d[name] - len(used)), w[name])
            for name, used in words(plan).items()}


def _name(text: str) -> str:
    """An ONNX name as inert one-line text (quoted, control characters escaped)."""
    return json.dumps(str(text))


def listing(plan: Plan, idents: dict[str, str]) -> str:
    """``program.lst``: one line per instruction, and a summary line before each layer."""
    m = plan.params.machine
    head = ", ".join(f"{k}={v}" for k, v in plan.params.verilog_parameters().items())
    lines = [f"; nnforge systolic program: {len(plan.program)} instructions; {head}",
             "; addr  opcode        cycles        macs  layer / fields"]
    starts = {l.start: l for l in plan.layers}
    macs_of = {l.node.name: l.spec.macs for l in plan.layers}
    total = 0
    for addr, ins in enumerate(plan.program):
        layer = starts.get(addr)
        if layer is not None:
            bound = layer.spec.macs / (layer.cycles * m.rows * m.cols) if layer.cycles else 0.0
            lines.append(f"; layer {layer.ident} {idents.get(layer.node.name, '?')} = {_name(layer.node.name)} "
                         f"({layer.node.op}): {layer.cycles} cycles, {layer.spec.macs} MACs, "
                         f"utilization bound {bound:.3f}")
        cyc = isa.cycles(ins, m.shape)
        total += cyc
        op = _OPS[ins.op] + ("." + _SUBS[ins.op][ins.get("sub")] if ins.op in _SUBS else "")
        macs = macs_of.get(ins.layer, 0) if ins.op == isa.OP_GEMM else 0
        fields = " ".join(f"{k}={ins.fields[k]}" for k in isa.LAYOUT if k in ins.fields and ins.fields[k]
                          and k not in ("op", "sub"))
        if ins.op == isa.OP_SYNC:  # its operand is the layer id
            fields = f"layer={ins.get('count')}"
        lines.append(f"{addr:04d}  {op:<12} {cyc:>8} {macs:>11}  {fields}")
    lines.append(f"; total {total} cycles per sample")
    return "\n".join(lines) + "\n"


__all__ = ["depths", "hex_images", "listing", "widths", "words"]
