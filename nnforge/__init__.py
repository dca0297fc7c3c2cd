"""nnforge: compile trained neural networks into bit-exact hardware sources.

    import nnforge
    model = nnforge.load("examples/digits_cnn.onnx")
    print(model.summary().total_macs)
    logits = model.run(x)["logits"]
    qmodel = nnforge.quantize(model, [x_calib], "w4a8")
    project = nnforge.compile_model(qmodel, "hls", "out/prj", golden_inputs=[x])
    report = nnforge.verify("out/prj", x, y)        # generated C vs the numpy reference
"""

from nnforge.compiler.errors import InputError, ModelError, NNForgeError
from nnforge.model import Model, load
from nnforge.quantized import QuantizedModel, load_quantized, quantize, save
from nnforge.compile import Project, VerifyReport, compile_model, open_project, verify

__all__ = ["load", "Model", "quantize", "QuantizedModel", "save", "load_quantized",
           "NNForgeError", "ModelError", "InputError", "compile_model", "open_project", "verify", "Project",
           "VerifyReport"]
__version__ = "0.1.0"
