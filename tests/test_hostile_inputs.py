"""Hostile and careless inputs across every command: each one a clean error, nothing written.

The table ``CASES`` is the regression form of the hardening probe: every case runs one command
line against hostile files (data, configs, models, output paths, options) and must end with
exit status 2, exactly one error line that names the offending item, no traceback, and no
change to the file system (the inputs, and the folder the command runs in, are compared byte
for byte before and after).  The assets are built once per module in a temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from nnforge.cli import main
from conftest import EXAMPLES

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores permission bits


# -- assets --------------------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TP.FLOAT, list(shape))


def tiny_weights_model(scale: float = 1e-25) -> onnx.ModelProto:
    """x[N,4] -> Gemm (weights ~1e-25, bias 1.0) named fc1 -> Relu: the bias cannot be a code."""
    w = (np.random.default_rng(0).normal(size=(4, 3)) * scale).astype("float32")
    return _model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
                   helper.make_node("Relu", ["h"], ["y"], name="act")],
                  [_vi("x", ["N", 4])], [_vi("y", ["N", 3])],
                  [numpy_helper.from_array(w, "w1"), numpy_helper.from_array(np.ones(3, "float32"), "b1")])


def _gemm_model() -> onnx.ModelProto:
    w = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    return _model([helper.make_node("Gemm", ["x", "w1", "b1"], ["y"], name="fc")], [_vi("x", ["N", 4])],
                  [_vi("y", ["N", 3])], [numpy_helper.from_array(w, "w1"), numpy_helper.from_array(np.ones(3, "float32"), "b1")])


def _external(m: onnx.ModelProto, location: str, offset: int | None = None) -> onnx.ModelProto:
    m = onnx.ModelProto.FromString(m.SerializeToString())
    for init in m.graph.initializer:
        if init.name == "w1":
            init.data_location = TP.EXTERNAL
            del init.external_data[:]
            for key, value in (("location", location),) + ((("offset", str(offset)), ("length", "48")) if offset else ()):
                e = init.external_data.add()
                e.key, e.value = key, value
            init.ClearField("raw_data")
            del init.float_data[:]
    return m


def _yaml_bomb(depth: int = 9, key: str = "calibration") -> str:
    """An alias bomb under a valid key: 9^9 (387 million) scalars once expanded, 400 bytes on disk."""
    lines = ["default:", f"  {key}:", "    - &l0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"    - &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def build_assets(d: Path) -> dict[str, str]:
    """Every hostile file the cases use, under ``d``; returns name -> path."""
    a: dict[str, str] = {}

    def put(name: str, write) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        a[name] = str(path)

    for name in ("digits_mlp.onnx", "digits_calib.npz", "digits_test.npz"):
        put(name, lambda p, n=name: shutil.copy(EXAMPLES / n, p))
    x = np.load(EXAMPLES / "digits_calib.npz")["x"][:64].reshape(64, 64)
    y = np.load(EXAMPLES / "digits_calib.npz")["y"][:64]
    npz = lambda name, **kw: put(name, lambda p: np.savez(p, **kw))
    npz("ok.npz", x=x, y=y)
    npz("x_int.npz", x=(x * 10).astype("int32"))
    npz("x_complex.npz", x=x.astype("complex64"))
    npz("x_struct.npz", x=np.zeros(64, dtype=[("a", "f4"), ("b", "i4")]))
    npz("x_object.npz", x=np.array([x[0], None], dtype=object))  # a pickle inside the zip
    npz("x_shape.npz", x=x[:, :63])
    npz("x_zero.npz", x=x[:0])
    npz("x_0d.npz", x=np.float32(1.0))
    npz("x_bool.npz", x=x > 0)
    npz("x_str.npz", x=np.array(["a", "b"]))
    x_inf = x.copy()
    x_inf[3, 5] = np.inf
    npz("x_inf.npz", x=x_inf)
    npz("x_f64_huge.npz", x=np.full((4, 64), 1e300))  # finite in float64, inf in the model's float32
    npz("y_huge.npz", x=x, y=np.full(64, 1e20))
    npz("y_frac.npz", x=x, y=y + 0.5)
    npz("y_2d.npz", x=x, y=y.reshape(-1, 1))
    npz("y_len.npz", x=x, y=y[:5])
    npz("y_neg.npz", x=x, y=y - 5)
    npz("y_obj.npz", x=x, y=np.array([None] * 64, dtype=object))
    npz("nokeys.npz", images=x)
    raw = (d / "ok.npz").read_bytes()
    put("trunc.npz", lambda p: p.write_bytes(raw[: len(raw) // 2]))
    bad = bytearray(raw)
    bad[100:120] = b"\0" * 20  # a member whose header is damaged: read lazily by np.load
    put("crc.npz", lambda p: p.write_bytes(bytes(bad)))
    put("garbage.npz", lambda p: p.write_bytes(bytes(range(256)) * 3))
    put("zero_d.npy", lambda p: np.save(p, np.float32(3)))
    def forged(p: Path, zipped: bool) -> None:  # a header declaring 256 TB, then 64 bytes
        import zipfile

        header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 64)}
        if not zipped:
            with open(p, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                f.write(b"\0" * 64)
            return
        with zipfile.ZipFile(p, "w") as z, z.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 64)

    put("forged.npy", lambda p: forged(p, False))
    put("forged.npz", lambda p: forged(p, True))
    put("datadir/keep.txt", lambda p: p.write_text("a folder, not data"))
    a["datadir"] = str(d / "datadir")
    # configs
    put("bomb_key.yaml", lambda p: p.write_text(_yaml_bomb()))
    put("bomb_top.yaml", lambda p: p.write_text("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{k}: &{k} [" + ",".join([f"*{prev}"] * 9) + "]\n" for prev, k in zip("abcdefgh", "bcdefghi"))))
    put("bomb_prune.yaml", lambda p: p.write_text(_yaml_bomb().replace("default:", "layer_sparsity:")
                                                  .replace("calibration:", "fc:")))
    put("recursive.yaml", lambda p: p.write_text("default: &a\n  calibration: [*a]\n"))
    put("latin1.yaml", lambda p: p.write_bytes("default:\n  calibration: caf\xe9\n".encode("latin-1")))
    put("latin1.toml", lambda p: p.write_bytes('bits = "w8a8"\n# caf\xe9\n'.encode("latin-1")))
    put("latin1_prune.yaml", lambda p: p.write_bytes("sparsity: 0.5 # caf\xe9\n".encode("latin-1")))
    put("big.json", lambda p: p.write_text('{"default": {"calibration": "' + "x" * 2_000_000 + '"}}'))
    put("long.json", lambda p: p.write_text('{"default": {"calibration": "' + "x" * 500_000 + '"}}'))
    put("deep.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000))
    put("hugeint.json", lambda p: p.write_text('{"default": {"weight_bits": ' + "9" * 5000 + "}}"))
    put("ok.yaml", lambda p: p.write_text("default:\n  calibration: minmax\n"))
    # models
    save = lambda name, m: put(name, lambda p: onnx.save(m, str(p)))
    cos = helper.make_node("ConstantOfShape", ["shp"], ["big"], name="cos",
                           value=helper.make_tensor("v", TP.FLOAT, [1], [1.0]))
    save("cos_bomb.onnx", _model([cos, helper.make_node("Add", ["x", "big"], ["y"], name="add")],
                                 [_vi("x", [1, 100000])], [_vi("y", [100000, 100000])],
                                 [numpy_helper.from_array(np.array([100000, 100000], np.int64), "shp")]))
    save("expand_bomb.onnx", _model(
        [helper.make_node("Expand", ["one", "shp"], ["big"], name="expand"),
         helper.make_node("Add", ["x", "big"], ["y"], name="add")],
        [_vi("x", [1, 100000])], [_vi("y", [100000, 100000])],
        [numpy_helper.from_array(np.ones((1, 1), np.float32), "one"),
         numpy_helper.from_array(np.array([100000, 100000], np.int64), "shp")]))
    save("pad_input.onnx", _model(  # a data tensor padded to 300 million values per sample
        [helper.make_node("Pad", ["x", "pads"], ["y"], name="grow")],
        [_vi("x", ["N", 4])], [_vi("y", ["N", 300_000_004])],
        [numpy_helper.from_array(np.array([0, 0, 0, 300_000_000], np.int64), "pads")]))
    relu = lambda shape: _model([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", shape)], [_vi("y", shape)])
    save("wide_input.onnx", relu([1, 300_000_000]))
    save("zero_dim.onnx", relu(["N", 0]))
    save("dyn.onnx", relu(["N", "feat"]))
    save("nonodes.onnx", _model([], [_vi("x", ["N", 4])], [_vi("x", ["N", 4])]))
    save("tiny_weights.onnx", tiny_weights_model())
    npz("x4.npz", x=np.random.default_rng(1).normal(size=(40, 4)).astype("float32"), y=np.arange(40) % 3)
    put("weights.bin", lambda p: p.write_bytes(np.ones(12, np.float32).tobytes()))
    save("ext_missing.onnx", _external(_gemm_model(), "missing.bin"))
    save("ext_outside.onnx", _external(_gemm_model(), "../../outside.bin"))
    save("ext_abs.onnx", _external(_gemm_model(), "/etc/hostname"))
    save("ext_range.onnx", _external(_gemm_model(), "weights.bin", offset=40))
    os.symlink("/etc/hostname", d / "link.bin")
    save("ext_link.onnx", _external(_gemm_model(), "link.bin"))
    put("unreadable.onnx", lambda p: (shutil.copy(EXAMPLES / "digits_mlp.onnx", p), os.chmod(p, 0)))
    os.mkfifo(d / "fifo.onnx")
    a["fifo.onnx"] = str(d / "fifo.onnx")
    # output targets
    put("afile", lambda p: p.write_text("a regular file of the user's"))
    put("userdir/notes.txt", lambda p: p.write_text("the user's own folder"))
    a["userdir"] = str(d / "userdir")
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    a["ro"] = str(ro)
    # a folder nnforge wrote (it has a manifest) that also holds the command's inputs
    from nnforge.compiler.output_tree import write_tree

    write_tree(d / "written", {"digits_mlp.onnx": (EXAMPLES / "digits_mlp.onnx").read_bytes(),
                               "digits_calib.npz": (EXAMPLES / "digits_calib.npz").read_bytes()})
    a["written"] = str(d / "written")
    a["written_model"], a["written_calib"] = str(d / "written/digits_mlp.onnx"), str(d / "written/digits_calib.npz")
    # a compiled hls project, and copies with damaged files (verify --allow-modified parses them)
    prj = d / "prj"
    r = CliRunner().invoke(main, ["compile", a["digits_mlp.onnx"], "--calib", a["digits_calib.npz"], "-o", str(prj)])
    assert r.exit_code == 0, r.output
    a["prj"] = str(prj)
    damage = {
        "report_garbage": ("report.json", b"{not json"),
        "golden_trunc": ("tb/golden.dat", None),
        "inputs_garbage": ("tb/inputs.dat", b"1 2 x\n\x00\xff\n"),
        "qgraph_trunc": ("model/qgraph.npz", None),
        "csim_garbage": ("csim.json", b'{"top": 5}'),
        "config_garbage": ("model/config.json", b"[1, 2"),
        "report_kernels": ("report.json", b'{"backend": "hls", "kernels": 7}'),
    }
    for name, (rel, data) in damage.items():
        copy = d / f"prj_{name}"
        shutil.copytree(prj, copy)
        target = copy / rel
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2] if data is None else data)
        a[f"prj_{name}"] = str(copy)
    return a


# -- the table -----------------------------------------------------------------------------------------

M, CAL, TEST, PRJ = "{digits_mlp.onnx}", "{digits_calib.npz}", "{digits_test.npz}", "{prj}"
OUT = "{out}"  # a fresh path in the folder the command runs in

CASES: list[tuple[str, list[str], list[str]]] = [
    # 1. data files, through every command that reads them
    ("run-int-dtype", ["run", M, "--input", "{x_int.npz}", "-o", OUT], ["x_int.npz", "'x'", "int32", "float"]),
    ("simulate-complex-data", ["simulate", M, "--data", "{x_complex.npz}", "--calib", CAL], ["x_complex.npz", "complex64"]),
    ("simulate-struct-calib", ["simulate", M, "--data", TEST, "--calib", "{x_struct.npz}"], ["x_struct.npz", "'x'"]),
    ("compile-object-calib", ["compile", M, "--calib", "{x_object.npz}", "-o", OUT], ["x_object.npz", "'x'", "pickled"]),
    ("compile-data-shape", ["compile", M, "--calib", CAL, "--data", "{x_shape.npz}", "-o", OUT],
     ["x_shape.npz", "[64, 63]", "[batch, 64]"]),
    ("sweep-zero-samples", ["sweep", M, "--data", TEST, "--calib", "{x_zero.npz}", "-o", OUT], ["x_zero.npz", "at least one sample"]),
    ("verify-0d-data", ["verify", PRJ, "--data", "{x_0d.npz}"], ["x_0d.npz", "0-d"]),
    ("quantize-bool-calib", ["quantize", M, "--calib", "{x_bool.npz}", "-o", OUT], ["x_bool.npz", "bool"]),
    ("compress-str-calib", ["compress", M, "--calib", "{x_str.npz}"], ["x_str.npz", "<U1"]),
    ("simulate-inf-data", ["simulate", M, "--data", "{x_inf.npz}", "--calib", CAL], ["x_inf.npz", "finite"]),
    ("run-float64-beyond-float32", ["run", M, "--input", "{x_f64_huge.npz}", "-o", OUT], ["x_f64_huge.npz", "finite in float32"]),
    ("verify-huge-labels", ["verify", PRJ, "--data", "{y_huge.npz}"], ["'y'", "2^31"]),
    ("simulate-fractional-labels", ["simulate", M, "--data", "{y_frac.npz}", "--calib", CAL], ["'y'", "y_frac.npz", "fractional"]),
    ("verify-2d-labels", ["verify", PRJ, "--data", "{y_2d.npz}"], ["'y'", "[64, 1]"]),
    ("compress-short-labels", ["compress", M, "--calib", CAL, "--data", "{y_len.npz}"], ["'y'", "[5]"]),
    ("sweep-negative-labels", ["sweep", M, "--data", "{y_neg.npz}", "-o", OUT], ["'y'", "non-negative"]),
    ("simulate-object-labels", ["simulate", M, "--data", "{y_obj.npz}", "--calib", CAL], ["'y'", "pickled"]),
    ("sweep-missing-key", ["sweep", M, "--data", "{nokeys.npz}", "-o", OUT], ["nokeys.npz", "'x'", "'images'"]),
    ("run-truncated-npz", ["run", M, "--input", "{trunc.npz}", "-o", OUT], ["trunc.npz"]),
    ("simulate-damaged-member", ["simulate", M, "--data", "{crc.npz}", "--calib", CAL], ["crc.npz", "'x'"]),
    ("compile-garbage-calib", ["compile", M, "--calib", "{garbage.npz}", "-o", OUT], ["garbage.npz"]),
    ("simulate-0d-npy", ["simulate", M, "--data", "{zero_d.npy}"], ["zero_d.npy", "0-d"]),
    ("run-missing-data", ["run", M, "--input", "nosuch.npz", "-o", OUT], ["nosuch.npz", "no such file"]),
    ("run-forged-npy-header", ["run", M, "--input", "{forged.npy}", "-o", OUT], ["forged.npy", "declares", "64 bytes"]),
    ("compile-forged-npz-header", ["compile", M, "--calib", "{forged.npz}", "-o", OUT], ["forged.npz", "'x'", "declares"]),
    ("simulate-data-name-too-long", ["simulate", M, "--data", "d" * 300 + ".npz"], ["ddd", "too long"]),
    ("quantize-data-is-folder", ["quantize", M, "--calib", "{datadir}", "-o", OUT], ["datadir", "a directory"]),
    # 2. config files
    ("simulate-yaml-bomb", ["simulate", M, "--data", TEST, "--config", "{bomb_key.yaml}"], ["bomb_key.yaml", "100,000"]),
    ("compile-yaml-bomb-top", ["compile", M, "--calib", CAL, "--config", "{bomb_top.yaml}", "-o", OUT], ["bomb_top.yaml", "alias"]),
    ("sweep-prune-yaml-bomb", ["sweep", M, "--data", TEST, "--prune-config", "{bomb_prune.yaml}", "-o", OUT],
     ["bomb_prune.yaml", "100,000"]),
    ("simulate-recursive-yaml", ["simulate", M, "--data", TEST, "--config", "{recursive.yaml}"], ["recursive.yaml", "recursive"]),
    ("quantize-latin1-yaml", ["quantize", M, "--calib", CAL, "--config", "{latin1.yaml}", "-o", OUT], ["latin1.yaml", "UTF-8"]),
    ("simulate-latin1-toml", ["simulate", M, "--data", TEST, "--config", "{latin1.toml}"], ["latin1.toml", "UTF-8"]),
    ("compress-latin1-prune", ["compress", M, "--calib", CAL, "--prune-config", "{latin1_prune.yaml}"],
     ["latin1_prune.yaml", "UTF-8"]),
    ("simulate-oversized-config", ["simulate", M, "--data", TEST, "--config", "{big.json}"], ["big.json", "1024 KiB"]),
    ("simulate-long-value", ["simulate", M, "--data", TEST, "--config", "{long.json}"], ["long.json", "default.calibration"]),
    ("simulate-deep-json", ["simulate", M, "--data", TEST, "--config", "{deep.json}"], ["deep.json", "nested"]),
    ("simulate-huge-int", ["simulate", M, "--data", TEST, "--config", "{hugeint.json}"], ["hugeint.json"]),
    # 3. unbounded work from a tiny file
    ("inspect-constantofshape-bomb", ["inspect", "{cos_bomb.onnx}"], ["'big'", "268,435,456", "--max-elements"]),
    ("inspect-expand-bomb", ["inspect", "{expand_bomb.onnx}"], ["'big'", "--max-elements"]),
    ("simulate-pad-input", ["simulate", "{pad_input.onnx}", "--data", "{x4.npz}"], ["'grow'", "--max-elements"]),
    ("inspect-huge-shape-flag", ["inspect", "{dyn.onnx}", "--input-shape", "x=1,99999999999999999999"], ["--input-shape"]),
    ("inspect-shape-flag-over-cap", ["inspect", "{dyn.onnx}", "--input-shape", "x=100000,100000"],
     ["'x'", "268,435,456", "10,000,000,000"]),
    ("compile-wide-declared-input", ["compile", "{wide_input.onnx}", "--calib", "{x4.npz}", "-o", OUT], ["'x'", "--max-elements"]),
    ("max-elements-zero", ["--max-elements", "0", "inspect", M], ["--max-elements"]),
    # 4. model files
    ("inspect-external-missing", ["inspect", "{ext_missing.onnx}"], ["'w1'", "missing.bin", "no such file"]),
    ("compile-external-outside", ["compile", "{ext_outside.onnx}", "--calib", "{x4.npz}", "-o", OUT], ["'w1'", "../../outside.bin"]),
    ("simulate-external-absolute", ["simulate", "{ext_abs.onnx}", "--data", "{x4.npz}"], ["'w1'", "/etc/hostname"]),
    ("inspect-external-link", ["inspect", "{ext_link.onnx}"], ["'w1'", "link.bin", "outside"]),
    ("inspect-external-range", ["inspect", "{ext_range.onnx}"], ["'w1'", "weights.bin", "offset 40"]),
    pytest.param("inspect-unreadable-model", ["inspect", "{unreadable.onnx}"], ["unreadable.onnx", "readable"],
                 marks=pytest.mark.skipif(ROOT_USER, reason="root reads files whatever their permission bits")),
    ("inspect-fifo-model", ["inspect", "{fifo.onnx}"], ["fifo.onnx", "regular"]),
    ("inspect-folder-model", ["inspect", "{datadir}"], ["datadir", "directory"]),
    ("inspect-no-nodes", ["inspect", "{nonodes.onnx}"], ["nonodes.onnx", "at least one node"]),
    ("inspect-model-name-too-long", ["inspect", "m" * 300 + ".onnx"], ["mmm", "too long"]),
    # 5. output paths
    pytest.param("compile-read-only-parent", ["compile", M, "--calib", CAL, "-o", "{ro}/prj"], ["--output", "read-only"],
                 marks=pytest.mark.skipif(ROOT_USER, reason="root writes into read-only folders")),
    ("compile-parent-is-file", ["compile", M, "--calib", CAL, "-o", "{afile}/prj"], ["--output", "afile"]),
    ("compile-current-dir", ["compile", M, "--calib", CAL, "-o", "."], ["--output", "current directory"]),
    ("compile-current-dir-force", ["compile", M, "--calib", CAL, "-o", ".", "--force"], ["--output", "current directory"]),
    ("sweep-parent-dir", ["sweep", M, "--data", TEST, "-o", ".."], ["--output", "current directory"]),
    ("run-onto-directory", ["run", M, "--input", CAL, "-o", "{userdir}"], ["--output", "directory", "userdir"]),
    ("run-empty-output", ["run", M, "--input", CAL, "-o", ""], ["--output", "''"]),
    ("quantize-empty-output", ["quantize", M, "--calib", CAL, "-o", ""], ["--output", "''"]),
    ("compile-output-name-too-long", ["compile", M, "--calib", CAL, "-o", "o" * 300], ["--output", "too long"]),
    ("compress-under-file", ["compress", M, "--calib", CAL, "--prune", "0.5", "-o", "{afile}/a/b"], ["--output", "afile"]),
    # 6. --force and the no-overwrite promise
    ("compile-force-user-dir", ["compile", M, "--calib", CAL, "-o", "{userdir}", "--force"], ["userdir", "nnforge wrote"]),
    ("compile-force-regular-file", ["compile", M, "--calib", CAL, "-o", "{afile}", "--force"], ["afile", "nnforge wrote"]),
    ("compile-force-dir-of-inputs", ["compile", "{written_model}", "--calib", "{written_calib}", "-o", "{written}", "--force"],
     ["written", "holding the command's inputs"]),
    ("run-force-onto-model", ["run", M, "--input", CAL, "-o", M, "--force"], ["digits_mlp.onnx", "inputs"]),
    ("run-force-onto-data", ["run", M, "--input", CAL, "-o", CAL, "--force"], ["digits_calib.npz", "inputs"]),
    ("sweep-force-regular-file", ["sweep", M, "--data", TEST, "-o", "{afile}", "--force"], ["afile", "nnforge wrote"]),
    ("quantize-force-config-inside", ["quantize", M, "--calib", CAL, "--config", "{ok.yaml}", "-o", "{ok.yaml}", "--force"],
     ["ok.yaml", "inputs"]),
    ("compile-existing-project", ["compile", M, "--calib", CAL, "-o", PRJ], ["prj", "already exists", "--force"]),
    # 7. verify on damaged projects (--allow-modified: parse them anyway) and non-projects
    ("verify-not-a-project", ["verify", "{userdir}"], ["userdir", "report.json"]),
    ("verify-garbage-report", ["verify", "{prj_report_garbage}", "--allow-modified"], ["report.json"]),
    ("verify-damaged-report-kernels", ["verify", "{prj_report_kernels}", "--allow-modified"], ["report.json", "'kernels'"]),
    ("verify-truncated-golden", ["verify", "{prj_golden_trunc}", "--allow-modified"], ["tb/golden.dat"]),
    ("verify-garbage-inputs", ["verify", "{prj_inputs_garbage}", "--allow-modified"], ["tb/inputs.dat"]),
    ("verify-truncated-qgraph", ["verify", "{prj_qgraph_trunc}", "--allow-modified"], ["qgraph.npz"]),
    ("verify-garbage-csim-json", ["verify", "{prj_csim_garbage}", "--allow-modified"], ["csim.json"]),
    ("verify-garbage-model-config", ["verify", "{prj_config_garbage}", "--allow-modified"], ["config.json"]),
    # 9. silent numeric overflow
    ("simulate-bias-overflow", ["simulate", "{tiny_weights.onnx}", "--data", "{x4.npz}", "--check"], ["'fc1'", "bias", "int64"]),
    ("compile-bias-overflow", ["compile", "{tiny_weights.onnx}", "--calib", "{x4.npz}", "-o", OUT], ["'fc1'", "bias"]),
    # 10. non-finite and absurd options
    ("compile-clock-inf", ["compile", M, "--calib", CAL, "-o", OUT, "--option", "clock_ns=inf"], ["clock_ns", "finite"]),
    ("compile-clock-nan", ["compile", M, "--calib", CAL, "-o", OUT, "--option", "clock_ns=nan"], ["clock_ns", "finite"]),
    ("compile-clock-huge", ["compile", M, "--calib", CAL, "-o", OUT, "--option", "clock_ns=1e300"], ["clock_ns", "1000"]),
    ("compile-reuse-huge", ["compile", M, "--calib", CAL, "-o", OUT, "--option", "reuse_factor=99999999999999999999"],
     ["reuse_factor", "1048576"]),
    ("compile-option-no-key", ["compile", M, "--calib", CAL, "-o", OUT, "--option", "=3"], ["--option", "'=3'"]),
    ("compile-systolic-rows-inf", ["compile", M, "--backend", "systolic", "--calib", CAL, "-o", OUT, "--option", "rows=inf"],
     ["rows"]),
    ("sweep-empty-weight-bits", ["sweep", M, "--data", TEST, "-o", OUT, "--weight-bits", ""], ["--weight-bits", "''"]),
    ("sweep-weight-bits-range", ["sweep", M, "--data", TEST, "-o", OUT, "--weight-bits", "4,99"], ["--weight-bits", "'4,99'"]),
    ("sweep-act-bits-range", ["sweep", M, "--data", TEST, "-o", OUT, "--act-bits", "1"], ["--act-bits", "'1'"]),
    ("sweep-scale-mode", ["sweep", M, "--data", TEST, "-o", OUT, "--scale-modes", "fancy"], ["--scale-modes", "'fancy'"]),
    ("sweep-empty-calibrations", ["sweep", M, "--data", TEST, "-o", OUT, "--calibrations", ""], ["--calibrations"]),
    ("sweep-share-list", ["sweep", M, "--data", TEST, "-o", OUT, "--share", "2,x"], ["--share", "'2,x'"]),
    ("simulate-prune-nan", ["simulate", M, "--data", TEST, "--prune", "nan"], ["--prune", "nan"]),
    ("simulate-prune-inf", ["simulate", M, "--data", TEST, "--prune", "inf"], ["--prune", "inf"]),
    ("simulate-share-empty", ["simulate", M, "--data", TEST, "--share", ""], ["--share", "''"]),
    ("simulate-batch-size-zero", ["simulate", M, "--data", TEST, "--batch-size", "0"], ["--batch-size"]),
    # 11. messages
    ("inspect-size-zero-dim", ["inspect", "{zero_dim.onnx}"], ["'x'", "dimension 1", "positive size", "not 0"]),
    ("inspect-dynamic-dim", ["inspect", "{dyn.onnx}"], ["'x'", "'feat'", "--input-shape x=N,<d1>"]),
    ("inspect-n-not-batch", ["inspect", "{dyn.onnx}", "--input-shape", "x=2,N"], ["--input-shape"]),
]


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots``: kind, mode and content digest (links by target)."""
    out: dict[str, tuple] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    out[str(p)] = ("link", os.readlink(p))
                elif p.is_dir():
                    out[str(p)] = ("dir", p.stat().st_mode)
                elif p.is_fifo():
                    out[str(p)] = ("fifo",)
                elif p.is_file():
                    try:
                        data = p.read_bytes()
                    except PermissionError:
                        data = b"<unreadable>"
                    out[str(p)] = ("file", p.stat().st_mode, hashlib.sha256(data).hexdigest())
    return out


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("hostile")
    a = build_assets(base / "in")
    a["_root"] = str(base / "in")
    yield a
    Path(a["ro"]).chmod(0o755)  # let pytest clean up


def _ids(cases):
    return [c.values[0] if hasattr(c, "values") else c[0] for c in cases]


def test_the_table_is_large_and_covers_every_command():
    commands = {(c.values if hasattr(c, "values") else c)[1][0] for c in CASES}
    commands |= {c[1][2] for c in CASES if not hasattr(c, "values") and c[1][0] == "--max-elements"}
    assert len(CASES) >= 60
    assert {"inspect", "run", "simulate", "quantize", "compress", "sweep", "compile", "verify"} <= commands
    assert len(set(_ids(CASES))) == len(CASES)


@pytest.mark.parametrize("case_id,argv,expected", CASES, ids=_ids(CASES))
def test_hostile_input_is_one_clean_error(case_id, argv, expected, assets, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    subs = dict(assets, out=str(work / "out"))
    args = [re.sub(r"\{([^{}]+)\}", lambda m: subs[m.group(1)], a) for a in argv]
    before = _snapshot(Path(assets["_root"]), work)
    result = CliRunner().invoke(main, args)
    out = result.output
    assert "Traceback" not in out, out
    assert result.exit_code == 2, f"{case_id}: exit {result.exit_code}\n{out}\n{result.exception!r}"
    errors = [line for line in out.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, out
    assert len(errors[0]) < 700, errors[0]  # bounded: never a user value repr'd in full
    for text in expected:
        assert text in errors[0], f"{case_id}: {text!r} not in {errors[0]!r}"
    assert _snapshot(Path(assets["_root"]), work) == before  # nothing written, nothing replaced
