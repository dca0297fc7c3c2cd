"""nnforge: compile trained neural networks into bit-exact hardware sources.

    import nnforge
    model = nnforge.load("examples/digits_cnn.onnx")
    print(model.summary().total_macs)
    logits = model.run(x)["logits"]
"""

from nnforge.compiler.errors import InputError, ModelError, NNForgeError
from nnforge.model import Model, load

__all__ = ["load", "Model", "NNForgeError", "ModelError", "InputError"]
__version__ = "0.1.0"
