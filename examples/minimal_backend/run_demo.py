"""Compile the digits MLP with the cref backend and check the C bit-exactly (docs/backends.md)."""

from pathlib import Path

import numpy as np

import nnforge
from nnforge.backends import get_backend
from nnforge.compiler import reference

EXAMPLES = Path(__file__).resolve().parents[1]


def main(out_dir: str = "cref_digits") -> int:
    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64)
    test = np.load(EXAMPLES / "digits_test.npz")["x"].reshape(-1, 64)
    qmodel = nnforge.quantize(model, [calib], "w8a8")

    project = nnforge.compile_model(qmodel, "cref", out_dir, force=True)  # partition, codegen, estimate, write
    codes = qmodel.graph.quantize_inputs([test])
    got = get_backend("cref").simulate(project.path, codes)  # through the generated C
    want = reference.run(qmodel.graph, codes)  # the numpy reference: the spec
    mismatches = sum(int(np.count_nonzero(got[t] != want[t])) for t in got)
    print(f"{len(got)} layers, {len(test)} samples, {mismatches} differing codes")
    return mismatches


if __name__ == "__main__":
    raise SystemExit(main())
