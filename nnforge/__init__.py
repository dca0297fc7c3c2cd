"""nnforge: compile trained neural networks into bit-exact hardware sources.

    import nnforge
    model = nnforge.load("examples/digits_cnn.onnx")
    print(model.summary().total_macs)
    logits = model.run(x)["logits"]
    qmodel = nnforge.quantize(model, [x_calib], "w4a8")
    project = nnforge.compile_model(qmodel, "hls", "out/prj", golden_inputs=[x])
    report = nnforge.verify("out/prj", x, y)        # generated C vs the numpy reference
    result = nnforge.explore(model, [x_calib], [x], y, max_drop=0.01, objectives=["bytes"])  # result.best
    nnforge.export(qmodel, "model_qonnx.onnx", "qonnx")  # or "qdq"; nnforge.load reads either back
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from nnforge.compiler.errors import InputError, ModelError, NNForgeError

# The public names below import TVM and onnx (over a second); they load on first use (PEP 562), so
# `import nnforge.cli` and `nnforge --help` stay fast.  name -> module that defines it.
_LAZY = {
    "Model": "nnforge.model", "load": "nnforge.model",
    "QuantizedModel": "nnforge.quantized", "load_quantized": "nnforge.quantized", "quantize": "nnforge.quantized",
    "save": "nnforge.quantized",
    "compile_model": "nnforge.compile", "Project": "nnforge.project", "open_project": "nnforge.project",
    "VerifyReport": "nnforge.verification", "verify": "nnforge.verification",
    "explore": "nnforge.explore",  # the package, callable as the function (nnforge/explore/__init__.py)
    "export": "nnforge.interop",
}

if TYPE_CHECKING:
    from nnforge.compile import compile_model
    from nnforge.interop import export
    from nnforge.model import Model, load
    from nnforge.project import Project, open_project
    from nnforge.quantized import QuantizedModel, load_quantized, quantize, save
    from nnforge.verification import VerifyReport, verify


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nnforge' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"nnforge.{name}" else getattr(imported, name)  # a package is the name itself
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["load", "Model", "quantize", "QuantizedModel", "save", "load_quantized",
           "NNForgeError", "ModelError", "InputError", "compile_model", "open_project", "verify", "Project",
           "VerifyReport", "explore", "export"]
__version__ = "0.1.0"
