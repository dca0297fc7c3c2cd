"""Measured array utilization of the systolic accelerator on GEMMs at least 4x the array size.

    .venv/bin/python bench/systolic_utilization.py [--rows 8 --cols 8] [--samples 4]

One conv2d layer per run (3x3, pad 1, random weights), with M = output pixels, N = output
channels and K = 9 * input channels all at least 4x the array's rows/columns; compiled for
``systolic`` at w8a8 and verified through the RTL (every code against the numpy reference).
Printed: MACs, predicted and measured cycles, MAC/cycle and utilization =
MACs / (measured cycles * rows * cols).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nnforge


def conv_model(cin: int, cout: int, hw: int, path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32) * 0.1, "b")
    node = helper.make_node("Conv", ["input", "w", "b"], ["out"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", cin, hw, hw])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", cout, hw, hw])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    r, c = args.rows, args.cols
    print(f"{'M x N x K':>16} {'MACs':>10} {'predicted':>9} {'measured':>9} {'MAC/cycle':>9} {'util':>6} {'mismatch':>8}")
    bad = 0
    for cin, cout, hw in [(4 * c, 4 * c, 8), (4 * c, 8 * c, 8), (8 * c, 4 * c, 16)]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "conv.onnx"
            conv_model(cin, cout, hw, path)
            model = nnforge.load(path)
            x = np.random.default_rng(1).standard_normal((max(args.samples, 16), cin, hw, hw)).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                q = nnforge.quantize(model, [x], "w8a8")
            prj = nnforge.compile_model(q, "systolic", Path(tmp) / "prj", options={"rows": r, "cols": c},
                                        golden_inputs=[x[:args.samples]])
            rep = nnforge.verify(prj, [x[:args.samples]])
        layer = rep.layers[0]
        util = layer.macs / (layer.measured_cycles * r * c)
        bad += rep.mismatches != 0 or layer.measured_cycles != layer.predicted_cycles
        print(f"{f'{hw * hw}x{cout}x{9 * cin}':>16} {layer.macs:>10,} {layer.predicted_cycles:>9,} "
              f"{layer.measured_cycles:>9,} {layer.macs / layer.measured_cycles:>9.2f} {util:>6.1%} {rep.mismatches:>8}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
