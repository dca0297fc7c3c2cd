"""Compile the digits MLP with the cref backend and check the C bit-exactly (docs/backends.md)."""

from pathlib import Path

import numpy as np

import nnforge

EXAMPLES = Path(__file__).resolve().parents[1]


def main(out_dir: str = "cref_digits") -> int:
    model = nnforge.load(EXAMPLES / "digits_mlp.onnx")
    calib = np.load(EXAMPLES / "digits_calib.npz")["x"].reshape(-1, 64)
    test = np.load(EXAMPLES / "digits_test.npz")["x"].reshape(-1, 64)
    qmodel = nnforge.quantize(model, [calib], "w8a8")

    project = nnforge.compile_model(qmodel, "cref", out_dir, force=True,  # partition, codegen, estimate, write
                                    options={"macs_per_cycle": 4})
    report = nnforge.verify(project, test)  # simulate() on every sample against the numpy reference
    print(f"{len(report.layers)} layers, {report.samples} samples, {report.mismatches} differing codes")
    return report.mismatches


if __name__ == "__main__":
    raise SystemExit(main())
