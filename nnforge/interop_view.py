"""What the CLI shows of a pre-quantized model: the carried widths and scales per layer
(``inspect``) and the agreement with the model's own runtime (``simulate``)."""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from rich.table import Table


def carried_layers(model) -> list[dict]:
    """Per model input and layer: the carried activation type and scale, and the weights' type and
    scale range, as the model as given says (before nnforge builds its graph)."""
    from nnforge.compiler.quant.layers import float_layers
    from nnforge.compiler.interop.prequant_graph import linear_node
    from nnforge.compiler.interop.onnx_names import onnx_tensor_names

    pre = model.prequantized
    layers, host = float_layers(model.relax, model.output_names, model.onnx_names)
    names = onnx_tensor_names(model, layers)
    rows = []
    for name, op in [(s.name, "input") for s in model.inputs] + [(l.name, l.op) for l in layers if l.name not in host]:
        t = pre.activations.get(names.get(name, ""))
        row = {"name": name, "op": op, "onnx_tensor": names.get(name),
               "type": None if t is None else str(t.qtype), "scale": None if t is None else t.scale,
               "source": None if t is None else t.what, "exact": None if t is None else t.exact,
               "weight_type": None, "weight_scales": None}
        if op in ("conv2d", "dense"):
            node = linear_node(model.onnx.graph, names.get(name, ""))
            w = pre.weights.get(node.input[1]) if node is not None and len(node.input) > 1 else None
            if w is not None:
                s = np.asarray(w.scale, np.float64)
                row.update(weight_type=str(w.qtype), weight_scales=[float(s.min()), float(s.max()), int(s.size)])
        rows.append(row)
    return rows


def print_carried(model, console) -> None:
    """The ``inspect`` table of a pre-quantized model's carried quantization."""
    pre = model.prequantized
    table = Table(title=f"carried quantization ({pre.format})", header_style="bold")
    for col in ("layer", "op", "type", "scale", "source", "weights", "weight scales (min..max, count)"):
        table.add_column(col, overflow="fold")
    for r in carried_layers(model):
        ws = r["weight_scales"]
        table.add_row(escape(r["name"]), r["op"], r["type"] or "float (not quantized)",
                      "-" if r["scale"] is None else f"{r['scale']:.6g}", escape(r["source"] or "-"),
                      r["weight_type"] or ("float" if r["op"] in ("conv2d", "dense") else "-"),
                      "-" if ws is None else f"{ws[0]:.4g}..{ws[1]:.4g} ({ws[2]})")
    console.print(table)
    for note in pre.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def print_runtime_agreement(doc: dict, console) -> None:
    """The ``simulate`` lines comparing nnforge with the runtime of the model as given."""
    say = lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True)
    acc = "-" if doc["runtime_accuracy"] is None else f"{doc['runtime_accuracy']:.4f}"
    say(f"{doc['runtime']} on the {doc['format']} model: accuracy {acc}   top-1 agreement with nnforge: "
        f"{doc['top1_agreement']:.4f}")
    table = Table(title=f"codes against {doc['runtime'].split(' (')[0]} (first {doc['traced_samples']} samples)",
                  header_style="bold")
    for col in ("tensor", "type", "identical", "max steps"):
        table.add_column(col, overflow="fold", justify="left" if col in ("tensor", "type") else "right")
    for t in doc["tensors"]:
        table.add_row(escape(t["tensor"]), t["type"] + ("" if t["exact"] else " (re-centred)"),
                      f"{t['codes_identical']:.2%}", str(t["max_step_difference"]))
    console.print(table)
    say(f"note: {doc['note']}")
    for note in doc["import_notes"]:
        say(f"import: {note}")
