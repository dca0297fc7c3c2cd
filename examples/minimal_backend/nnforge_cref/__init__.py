"""cref: a minimal nnforge backend that turns dense layers into plain C (docs/backends.md)."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import numpy as np

from nnforge.backends import Backend, Design, Kernel, LayerEstimate, Option, Simulation
from nnforge.backends.requant import effective_clamp, requant_constants
from nnforge.compiler.errors import InputError

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _csv(values) -> str:
    return ", ".join(str(int(v)) for v in np.ravel(values))


def dense_spec(kernel: Kernel, design: Design) -> dict:
    """Every number the template needs for one dense layer, computed here in Python."""
    node, a = kernel.node, kernel.node.attrs
    out = design.graph.tensors[node.output].qtype
    if a.overflow != "SAT":
        raise InputError(f"overflow of layer {node.name!r} must be SAT for the cref backend, not {a.overflow!r}")
    k, n = a.weight.shape
    mul, shift, half = (np.broadcast_to(c, (n,)) for c in requant_constants(a, node, n))  # no negative shifts
    lo, hi = effective_clamp(out, a.lo, a.hi)  # the type's range and a fused ReLU, as one clamp
    return {
        "ident": kernel.ident, "k": int(k), "n": int(n),
        "weight": _csv(a.weight), "bias": _csv(a.bias),
        "mul": _csv(mul), "half": _csv(half), "shift": _csv(shift), "lo": lo, "hi": hi,
    }


class CRefBackend(Backend):
    name = "cref"
    description = "plain C, one function per dense layer (the docs/backends.md tutorial)"
    ops = {"dense"}
    options = {"macs_per_cycle": Option(1, "multiply-accumulates the core issues per cycle (for estimate)",
                                        minimum=1, maximum=64)}

    def codegen(self, design: Design, options: dict) -> dict[str, str]:
        layers = [dense_spec(k, design) for k in design.kernels]
        manifest = {
            "inputs": [t.name for t in design.graph.inputs],
            "kernels": [{"ident": k.ident, "input": k.node.inputs[0], "output": k.node.output,
                         "k": spec["k"], "n": spec["n"]} for k, spec in zip(design.kernels, layers)],
        }
        return {"src/cref.c": TEMPLATES.get_template("cref.c.j2").render(layers=layers),
                "cref.json": json.dumps(manifest, indent=1) + "\n"}

    def simulate(self, project: Path, inputs: list[np.ndarray], trace: bool = True) -> Simulation:
        project = Path(project)
        manifest = json.loads((project / "cref.json").read_text())
        lib = build(project)
        values = {name: np.ascontiguousarray(x, dtype=np.int64) for name, x in zip(manifest["inputs"], inputs)}
        ptr = ctypes.POINTER(ctypes.c_int64)
        for k in manifest["kernels"]:
            if k["input"] not in values:
                raise InputError(f"layer {k['ident']} reads {k['input']!r}, which a host layer computes; "
                                 f"the cref backend simulates models whose every layer is dense")
            x = np.ascontiguousarray(values[k["input"]].reshape(-1, k["k"]))
            y = np.empty((len(x), k["n"]), dtype=np.int64)
            getattr(lib, k["ident"])(ctypes.c_int64(len(x)), x.ctypes.data_as(ptr), y.ctypes.data_as(ptr))
            values[k["output"]] = y
        return Simulation({k["output"]: values[k["output"]] for k in manifest["kernels"]})  # every layer

    def estimate(self, design: Design, options: dict) -> list[LayerEstimate]:
        # an in-order core: macs_per_cycle multiply-accumulates a cycle, then one requantization per output
        out = []
        for kernel in design.kernels:
            k, n = kernel.node.attrs.weight.shape
            cycles = int(-(-k * n // options["macs_per_cycle"]) + n)
            out.append(LayerEstimate(kernel.node.name, kernel.op, cycles, cycles, notes=f"macs={k * n}"))
        return out


def build(project: Path) -> ctypes.CDLL:
    """Compile ``src/cref.c`` into ``build/libcref.so`` and load it."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise InputError("the cref backend needs a C compiler (cc or gcc) on PATH to simulate")
    so = project / "build" / "libcref.so"
    so.parent.mkdir(exist_ok=True)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(project / "src" / "cref.c")], check=True)
    return ctypes.CDLL(str(so.resolve()))
