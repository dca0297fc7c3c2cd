#!/usr/bin/env python3
"""Train the two bundled example models on scikit-learn's 8x8 digits data set.

Run from the repository root:

    python examples/train_digits.py

Everything is deterministic (fixed seeds, 2 threads) and nothing is downloaded:
``sklearn.datasets.load_digits`` ships with scikit-learn.  Training takes well
under a minute on two CPU cores.

Data
----
* 1,797 grey-scale 8x8 images, pixel values 0..16, divided by 16.0 to give
  float32 values in [0, 1].
* Stratified split, 25 % held out for testing (``random_state=0``).

Outputs (all written next to this script, in ``examples/``)
-----------------------------------------------------------
* ``digits_cnn.onnx``  - small CNN.  Input ``input`` float32 [batch, 1, 8, 8],
  output ``logits`` float32 [batch, 10].
* ``digits_mlp.onnx``  - MLP 64-128-64-10.  Input ``input`` float32
  [batch, 64], output ``logits`` float32 [batch, 10].
  **The MLP takes the flattened image: ``x.reshape(N, 64)``** (row-major, so
  pixel (r, c) is feature 8*r + c).
* ``digits_test.npz``  - the held-out test split: ``x`` float32 [N, 1, 8, 8],
  ``y`` int64 [N].
* ``digits_calib.npz`` - 256 samples drawn from the TRAINING split (for
  quantisation calibration): ``x`` float32 [256, 1, 8, 8], ``y`` int64 [256].
* ``digits_mlp_test.npz``, ``digits_mlp_calib.npz`` - the same two sets flattened
  for the MLP: ``x`` float32 [N, 64].

Both ONNX files are exported from ``model.eval()`` with opset 17 and the
TorchScript-based exporter (``dynamo=False``) with ``do_constant_folding=True``
and a symbolic batch dimension named ``batch``.  In eval mode Dropout is an
identity and the exporter folds BatchNorm into the preceding Conv, so the
graphs contain inference semantics only.

The script checks each file with ``onnx.checker.check_model`` and compares
onnxruntime's accuracy (and logits) with torch's.
"""

from __future__ import annotations

import random
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 0
OPSET = 17
EPOCHS = 60
BATCH_SIZE = 64
N_CALIB = 256
HERE = Path(__file__).resolve().parent

# The TorchScript-based exporter is deprecated in favour of the dynamo one; it is
# used deliberately (simple dynamic_axes, same exporter as tests/models/).
warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")


def set_seeds(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
def load_data():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]  # [N,1,8,8]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=SEED
    )
    return x_train, x_test, y_train, y_test


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
class DigitsCNN(nn.Module):
    """[B,1,8,8] -> [B,10].  Two Conv-BN-ReLU blocks, a MaxPool, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(16, 16, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(16 * 2 * 2, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsMLP(nn.Module):
    """[B,64] -> [B,10].  64-128-64-10 with ReLU and Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------
# Training / evaluation
# ---------------------------------------------------------------------------
def train(model: nn.Module, x: np.ndarray, y: np.ndarray, name: str) -> None:
    g = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        total = 0.0
        for i in range(0, len(xt), BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if (epoch + 1) % 20 == 0:
            print(f"  [{name}] epoch {epoch + 1:3d}  loss {total / len(xt):.4f}")


@torch.no_grad()
def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).numpy()


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": x})[0]


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean())


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------
def export(model: nn.Module, example: np.ndarray, path: Path) -> None:
    import onnx

    model.eval()
    torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
        dynamo=False,
    )
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = Counter(n.op_type for n in m.graph.node)
    print(f"  wrote {path.relative_to(HERE.parent)} ({path.stat().st_size} bytes) ops={dict(ops)}")


def main() -> int:
    set_seeds()
    x_train, x_test, y_train, y_test = load_data()
    print(f"train {x_train.shape}  test {x_test.shape}")

    # Calibration subset: 256 samples of the training split, fixed seed.
    rng = np.random.default_rng(SEED)
    calib_idx = np.sort(rng.choice(len(x_train), size=N_CALIB, replace=False))
    np.savez_compressed(HERE / "digits_test.npz", x=x_test, y=y_test)
    np.savez_compressed(HERE / "digits_calib.npz", x=x_train[calib_idx], y=y_train[calib_idx])
    # the same samples flattened for the MLP, so its commands need no reshape (and print no warning)
    for name in ("digits_test", "digits_calib"):
        with np.load(HERE / f"{name}.npz") as d:
            np.savez_compressed(HERE / f"{name.replace('digits', 'digits_mlp')}.npz",
                                x=d["x"].reshape(len(d["x"]), 64), y=d["y"])

    results = {}
    specs = [
        ("cnn", DigitsCNN, lambda a: a),
        ("mlp", DigitsMLP, lambda a: a.reshape(len(a), 64)),  # MLP: flattened input
    ]
    for name, cls, prep in specs:
        set_seeds()  # each model is independent of the other's RNG consumption
        model = cls()
        print(f"{name}: {n_params(model)} parameters")
        train(model, prep(x_train), y_train, name)
        path = HERE / f"digits_{name}.onnx"
        export(model, prep(x_test[:2]), path)
        t = torch_logits(model, prep(x_test))
        o = ort_logits(path, prep(x_test))
        results[name] = (accuracy(t, y_test), accuracy(o, y_test), float(np.abs(t - o).max()))

    print()
    ok = True
    for name, (acc_t, acc_o, diff) in results.items():
        print(
            f"digits_{name}: torch acc {acc_t:.4f}  onnxruntime acc {acc_o:.4f}  "
            f"max|logit diff| {diff:.2e}"
        )
        ok &= acc_t >= 0.95 and acc_o == acc_t and diff < 1e-4
    if not ok:
        print("FAILED: accuracy below 95% or torch/onnxruntime mismatch", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
