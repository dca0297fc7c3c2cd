"""Compression against accuracy on the digits examples (issue 4's table), without retraining.

For each setting: ``nnforge.quantize(model, [calib], "w8a8", compress=...)``, top-1 on the 450
test images through the TVM integer build, and ``compression_report`` ratios against float32
(fixed-width and Huffman-coded streams).  Measurement only.

    python bench/compression_accuracy.py [--models mlp,cnn]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import nnforge
from nnforge.compiler.compress.compression_report import compression_report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MLP_LAYERS = ("/net/net.0/Gemm", "/net/net.3/Gemm", "logits")


def _per_layer(a: float, b: float, c: float) -> dict:
    return dict(zip(MLP_LAYERS, (a, b, c)))


SETTINGS = {
    "mlp": [
        ("prune 80%, share 4", dict(sparsity=0.8, share_bits=4), ("lsq", "kmeans")),
        ("prune 80%, share 3", dict(sparsity=0.8, share_bits=3), ("lsq",)),
        ("prune 90%, share 4", dict(sparsity=0.9, share_bits=4), ("lsq",)),
        ("prune 93/93/50%, share 4", dict(layer_sparsity=_per_layer(0.93, 0.93, 0.5), share_bits=4), ("lsq", "kmeans")),
        ("prune 93/93/50%, share 3", dict(layer_sparsity=_per_layer(0.93, 0.93, 0.5), share_bits=3), ("lsq",)),
        ("prune 95/95/60%, share 4", dict(layer_sparsity=_per_layer(0.95, 0.95, 0.6), share_bits=4), ("lsq",)),
    ],
    "cnn": [
        ("prune 30%, share 3", dict(sparsity=0.3, share_bits=3), ("lsq", "kmeans")),
        ("prune 30%, share 4", dict(sparsity=0.3, share_bits=4), ("lsq", "kmeans")),
        ("prune 50%, share 4", dict(sparsity=0.5, share_bits=4), ("lsq",)),
        ("prune 70%, share 3", dict(sparsity=0.7, share_bits=3), ("lsq", "kmeans")),
    ],
}


def run(which: str) -> None:
    model = nnforge.load(EXAMPLES / f"digits_{which}.onnx")
    test, calib = np.load(EXAMPLES / "digits_test.npz"), np.load(EXAMPLES / "digits_calib.npz")
    x, y, c = test["x"], test["y"], calib["x"]
    if len(model.inputs[0].shape) == 2:
        x, c = x.reshape(len(x), -1), c.reshape(len(c), -1)
    out = model.output_names[0]
    fa = float((model.predict([x])[out].argmax(-1) == y).mean())
    print(f"\n{which.upper()}: float top-1 {fa:.3f}")
    print("| model | setting | refine | top-1 | drop | ratio | ratio (Huffman) | bytes (Huffman) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, cfg, refines in SETTINGS[which]:
        for refine in refines:
            q = nnforge.quantize(model, [c], "w8a8", compress=dict(cfg, refine=refine))
            acc = float((q.predict([x])[out].argmax(-1) == y).mean())
            fixed, huff = compression_report(q, huffman=False), compression_report(q, huffman=True)
            print(f"| {which.upper()} | {label} | {refine} | {acc:.3f} | {100 * (fa - acc):+.1f}% | "
                  f"{fixed.compression_ratio:.1f}x | {huff.compression_ratio:.1f}x | {huff.total_bytes:,} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn")
    for which in ap.parse_args().models.split(","):
        run(which)


if __name__ == "__main__":
    main()
