#!/usr/bin/env python3
"""Generate the small ONNX test-model zoo in tests/models/.

Run from the repository root:

    python tests/models/make_zoo.py

The models are untrained but non-trivial: weights come from a seeded random
init and every BatchNorm gets random running statistics and affine parameters
(running_var ~ U(0.5, 2), running_mean ~ 0.1 * N(0, 1), weight ~ U(0.5, 1.5),
bias ~ 0.1 * N(0, 1)), so that BatchNorm folding in a compiler is really
exercised.  Nothing is downloaded; everything is deterministic.

Each model is exported twice with the TorchScript-based exporter
(``dynamo=False``), opset 17, input ``input`` / output ``logits`` with a
symbolic batch dimension ``batch``:

* ``<name>.onnx``       - ``model.eval()``, ``TrainingMode.EVAL``,
  ``do_constant_folding=True``.  Checked against torch eval output in
  onnxruntime (max abs diff < 1e-5).
* ``<name>_train.onnx`` - ``TrainingMode.PRESERVE`` on a model left in
  ``train()`` mode, ``do_constant_folding=False``.  Keeps ``Dropout`` nodes and
  ``BatchNormalization`` with ``training_mode=1`` and its extra running-stat
  outputs, which a compiler has to strip / convert to inference form.
  onnxruntime would compute batch statistics for these, so they are not
  compared numerically; the script asserts that they contain Dropout and
  BatchNormalization nodes and prints their op histogram.
"""

from __future__ import annotations

import random
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

SEED = 0
OPSET = 17
HERE = Path(__file__).resolve().parent
MAX_BYTES = 200 * 1024

# The legacy exporter warns that it is deprecated; it is still the one that
# supports TrainingMode.PRESERVE and dynamic_axes, so we use it on purpose.
warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export")
# PRESERVE export drops the num_batches_tracked += 1 side effect; expected.
warnings.filterwarnings("ignore", message=r".*Removing mutation from node aten::add_")
# ZeroPad2d's pads are computed by a small constant subgraph containing a
# Slice with step -1, which the legacy exporter does not fold; expected.
warnings.filterwarnings("ignore", message=r".*Only steps=1 can be constant folded")


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)


def randomise_bn(model: nn.Module) -> None:
    """Give every BatchNorm non-trivial running stats and affine parameters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c) * 0.1)
                m.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0))
                m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5))
                m.bias.copy_(torch.randn(c) * 0.1)


def conv_bn(cin, cout, k, stride=1, padding=0, groups=1, dilation=1):
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups,
                  dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
    ]


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
class DWSep(nn.Module):
    """MobileNet-style depthwise-separable blocks, ReLU6 (-> Clip), GAP, Linear.
    Input [B,3,16,16]."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(
                # depthwise 3x3 (groups = C) + BN + ReLU6
                *conv_bn(cin, cin, 3, stride=stride, padding=1, groups=cin), nn.ReLU6(),
                # pointwise 1x1 + BN + ReLU6
                *conv_bn(cin, cout, 1), nn.ReLU6(),
            )

        self.stem = nn.Sequential(*conv_bn(3, 8, 3, stride=2, padding=1), nn.ReLU6())  # 8x8
        self.blocks = nn.Sequential(block(8, 16, 1), block(16, 32, 2))  # 8x8 -> 4x4
        self.pool = nn.AdaptiveAvgPool2d(1)  # -> GlobalAveragePool
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(self.drop(torch.flatten(x, 1)))


class BasicBlock(nn.Module):
    """ResNet basic block; identity shortcut, or 1x1-conv+BN projection."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, cout, 3, stride=stride, padding=1), nn.ReLU(),
            *conv_bn(cout, cout, 3, padding=1),
        )
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride=stride))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Residual(nn.Module):
    """Stem, identity block, projection block (stride 2), AvgPool, Linear.
    Input [B,3,16,16]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 8, 3, padding=1), nn.ReLU())  # 16x16
        self.block1 = BasicBlock(8, 8)  # identity shortcut
        self.block2 = BasicBlock(8, 16, stride=2)  # 1x1 projection shortcut, 8x8
        self.pool = nn.AvgPool2d(4)  # 8x8 -> 2x2
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(self.block2(self.block1(self.stem(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


class FireModule(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Sequential(*conv_bn(cin, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(*conv_bn(squeeze, expand, 1), nn.ReLU())
        self.expand3 = nn.Sequential(*conv_bn(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], dim=1)


class Fire(nn.Module):
    """SqueezeNet-style: conv, MaxPool (ceil_mode=False), fire module (Concat),
    Dropout, 1x1 conv classifier, GlobalAveragePool, Flatten.
    Input [B,3,16,16]."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 3, padding=1), nn.ReLU())  # 16x16
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=False)  # 16 -> 7
        self.fire = FireModule(16, 8, 16)  # -> 32 channels
        self.drop = nn.Dropout(0.5)
        self.classifier = nn.Conv2d(32, 10, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.fire(self.pool(self.stem(x)))
        x = self.gap(torch.relu(self.classifier(self.drop(x))))
        return torch.flatten(x, 1)


class Factorised(nn.Module):
    """Factorised 3x1 / 1x3 convs with asymmetric padding (ZeroPad2d -> Pad,
    padding=(1,0) / (0,1)), a stride-2 conv, a dilation-2 conv, LeakyReLU,
    Sigmoid gate, Tanh, Linear.  Input [B,1,8,8]."""

    def __init__(self) -> None:
        super().__init__()
        self.c31 = nn.Sequential(*conv_bn(1, 8, (3, 1), padding=(1, 0)), nn.LeakyReLU(0.1))
        self.c13 = nn.Sequential(*conv_bn(8, 8, (1, 3), padding=(0, 1)), nn.LeakyReLU(0.1))
        # asymmetric pad (left 0, right 1, top 0, bottom 1) then 2x2 stride-2 conv: 8x8 -> 4x4
        self.down = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.Conv2d(8, 16, 2, stride=2, bias=True),
            nn.BatchNorm2d(16),
            nn.Tanh(),
        )
        # dilated 3x3, dilation 2, padding 2 keeps 4x4
        self.dil = nn.Sequential(*conv_bn(16, 16, 3, padding=2, dilation=2), nn.LeakyReLU(0.2))
        self.gate = nn.Sequential(nn.Conv2d(16, 16, 1), nn.Sigmoid())
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = self.c13(self.c31(x))
        x = self.dil(self.down(x))
        x = x * self.gate(x)
        return self.fc(self.drop(torch.flatten(x, 1)))


class MLPBN(nn.Module):
    """Linear + BatchNorm1d + ReLU + Dropout + Linear.  Input [B,64]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.net(x)


# name -> (class, input shape without batch)
ZOO = {
    "dwsep": (DWSep, (3, 16, 16)),
    "residual": (Residual, (3, 16, 16)),
    "fire": (Fire, (3, 16, 16)),
    "factorised": (Factorised, (1, 8, 8)),
    "mlp_bn": (MLPBN, (64,)),
}


# ---------------------------------------------------------------------------
# Export and checks
# ---------------------------------------------------------------------------
def export(model, example, path, training):
    kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    if training:
        model.train()
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        model.eval()
        kwargs.update(training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
    # Quirk: a PRESERVE export runs the model in train() mode while tracing,
    # which updates the BN running stats *before* they are captured as
    # initializers.  Restore the module afterwards and overwrite the exported
    # initializers with the pre-export values, so that the eval export and the
    # training export carry identical parameters and buffers.
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), **kwargs)
    model.load_state_dict(state)
    m = onnx.load(str(path))
    if training:
        inits = {i.name: i for i in m.graph.initializer}
        for n in m.graph.node:
            if n.op_type == "BatchNormalization":
                assert all(name in inits and name in state for name in n.input[1:5]), n.input
        for name, init in inits.items():
            if name in state:
                init.CopyFrom(onnx.numpy_helper.from_array(state[name].numpy(), name))
        onnx.save(m, str(path))
    onnx.checker.check_model(m, full_check=True)
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{path.name} is {size} bytes"
    return m, size


def strip_training(m: onnx.ModelProto) -> onnx.ModelProto:
    """Reference 'inference-ise' of a PRESERVE export, as a compiler must do it:
    BatchNormalization(training_mode=1) -> training_mode=0 with one output,
    Dropout -> Identity.  Used only to check that the training export carries
    the same parameters as the eval export."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            for a in list(n.attribute):
                if a.name in ("training_mode", "momentum"):
                    n.attribute.remove(a)
            del n.output[1:]
        elif n.op_type == "Dropout":
            n.op_type = "Identity"
            del n.input[1:]
            del n.output[1:]
    onnx.checker.check_model(m)
    return m


def histogram(m):
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))


def main() -> int:
    ok = True
    for i, (name, (cls, shape)) in enumerate(ZOO.items()):
        set_seeds(SEED + i)
        model = cls()
        randomise_bn(model)
        model.eval()
        nparams = sum(p.numel() for p in model.parameters())
        x = torch.randn(4, *shape)

        with torch.no_grad():
            ref = model(x).numpy()

        eval_path = HERE / f"{name}.onnx"
        m_eval, sz_eval = export(model, x[:2], eval_path, training=False)
        sess = ort.InferenceSession(str(eval_path), providers=["CPUExecutionProvider"])
        got = sess.run(["logits"], {"input": x.numpy()})[0]
        diff = float(np.abs(got - ref).max())
        eval_ok = got.shape == (4, 10) and diff < 1e-5

        train_path = HERE / f"{name}_train.onnx"
        m_train, sz_train = export(model, x[:2], train_path, training=True)
        model.eval()
        h_train = histogram(m_train)
        bn_train = [
            n for n in m_train.graph.node
            if n.op_type == "BatchNormalization"
            and any(a.name == "training_mode" and a.i == 1 for a in n.attribute)
        ]
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the now-unused Dropout ratio constants warn
        stripped = ort.InferenceSession(
            strip_training(m_train).SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        got_s = stripped.run(["logits"], {"input": x.numpy()})[0]
        diff_s = float(np.abs(got_s - ref).max())
        train_ok = h_train.get("Dropout", 0) > 0 and len(bn_train) > 0 and diff_s < 1e-5
        # sanity: the torch model was not modified by the exports
        with torch.no_grad():
            assert np.array_equal(model(x).numpy(), ref)

        print(f"{name}: {nparams} params, input [batch, {', '.join(map(str, shape))}]")
        print(f"  {eval_path.name:24s} {sz_eval:7d} B  max|ort-torch| {diff:.2e}  "
              f"{'OK' if eval_ok else 'FAIL'}  ops {histogram(m_eval)}")
        print(f"  {train_path.name:24s} {sz_train:7d} B  BN(training_mode=1) x{len(bn_train)}  "
              f"stripped max|ort-torch| {diff_s:.2e}  "
              f"{'OK' if train_ok else 'FAIL'}  ops {h_train}")
        ok &= eval_ok and train_ok
    if not ok:
        print("FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
