"""QONNX export (compiler/interop/qonnx_export.py): nnforge's quantized models as Quant nodes, read back by
nnforge.load into the same QGraph, and run by qonnx's own executor (the independent oracle).

Claims tested exactly:
* round trip: export -> nnforge.load -> quantize gives the same QGraph (every tensor's type and
  float64 scale, every node attribute) and the numpy reference gives the same codes on data;
* qonnx.core.onnx_exec on a pow2 export: every code equals nnforge's except on an exact tie (a
  value half-way between two codes), which nnforge's RND rounds up, ROUND to even and HALF_UP away
  from zero: nnforge's code is qonnx's + 1 at a tie whose floor is even (ROUND) or that is negative
  (HALF_UP), and nowhere else, in every sample whose earlier tensors agree; with TRN (FLOOR) every
  code is equal;
* with float-mode scales a code differs (by one step) only within float32's reach (the input) or
  the 15-bit multiplier's (a layer) of half-way.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import nnforge
from nnforge.cli import main
from nnforge.compiler import reference
from nnforge.compiler.errors import InputError
from nnforge.compiler.interop.qdq import onnx_tensor_names
from nnforge.compiler.interop.qonnx_export import export_qonnx

from conftest import EXAMPLES
from interop_assets import digits_arrays, digits_npz

pytest.importorskip("qonnx")

SAMPLES = 120  # test images per check: enough ties and every code path, a fraction of the CPU
TRN_POW2 = {"default": {"weight_bits": 4, "act_bits": 4, "scale_mode": "pow2", "rounding": "TRN"}}
CASES = {"mlp-w8a8": ("mlp", "w8a8"), "cnn-w4a8-pow2": ("cnn", "w4a8-pow2"), "mlp-w4a4-pow2-trn": ("mlp", TRN_POW2)}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """{case: (nnforge's QuantizedModel, exported path, the model nnforge.load reads back)}."""
    d = tmp_path_factory.mktemp("qonnx_export")
    out = {}
    for case, (name, bits) in CASES.items():
        calib = digits_arrays(name)[0]
        qmodel = nnforge.quantize(nnforge.load(EXAMPLES / f"digits_{name}.onnx"), [calib], bits)
        path = d / f"{case}.onnx"
        export_qonnx(qmodel, path)
        out[case] = qmodel, path, nnforge.quantize(nnforge.load(path), None)
    return out


def _attrs_equal(a, b) -> bool:
    try:
        return np.array_equal(np.asarray(a), np.asarray(b))
    except (TypeError, ValueError):
        return a == b


@pytest.mark.parametrize("case", CASES)
def test_round_trip_gives_the_same_qgraph_and_codes(exported, case):
    qmodel, path, again = exported[case]
    g1, g2 = qmodel.graph, again.graph
    assert again.float_model.prequantized.format == "qonnx"
    assert list(g1.tensors) == list(g2.tensors)
    for name, t in g1.tensors.items():  # types and float64 scales, bit for bit
        assert (g2.tensors[name].qtype, g2.tensors[name].scale) == (t.qtype, t.scale), name
    assert [(n.op, n.name, n.inputs) for n in g1.nodes] == [(n.op, n.name, n.inputs) for n in g2.nodes]
    for n1, n2 in zip(g1.nodes, g2.nodes):
        d1, d2 = n1.attrs.to_dict(), n2.attrs.to_dict()  # the attrs as saved, key by key
        for key in ("weight", "bias", "multiplier", "shift", "lo", "hi", "rounding", "overflow", "weight_bits",
                    "weight_scale", "acc_dtype", "strides", "padding", "pool_size"):
            if key in d1 or key in d2:
                assert _attrs_equal(d1.get(key), d2.get(key)), (n1.name, key)
    x = digits_arrays(case.split("-")[0])[1][:SAMPLES]
    codes1, codes2 = g1.quantize_inputs([x]), g2.quantize_inputs([x])
    assert np.array_equal(codes1[0], codes2[0])
    r1, r2 = reference.run(g1, codes1), reference.run(g2, codes2)
    assert r1.keys() == r2.keys() and all(np.array_equal(r1[k], r2[k]) for k in r1)


def test_exported_nodes_carry_widths_sign_narrow_and_rounding(exported):
    qmodel, path, _ = exported["mlp-w4a4-pow2-trn"]
    proto = onnx.load(str(path))
    quants = [n for n in proto.graph.node if n.op_type == "Quant"]
    assert all(n.domain == "qonnx.custom_op.general" for n in quants)
    assert any(o.domain == "qonnx.custom_op.general" for o in proto.opset_import)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    attrs = {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in quants}
    weights = [n for n in quants if n.input[0] in inits and "weight" in n.name]
    acts = [n for n in quants if n.input[0] not in inits]
    assert len(weights) == 3 and len(acts) == 4  # input, two Relu outputs, logits
    for n in weights:  # signed 4-bit codes; narrow range [-7, 7] exactly where no code is -8
        assert float(inits[n.input[3]]) == 4 and attrs[n.name]["signed"] == 1
        codes = inits[n.input[0]] / inits[n.input[1]]
        assert np.array_equal(codes, np.round(codes)) and -8 <= codes.min() and codes.max() <= 7
        assert attrs[n.name]["narrow"] == int(codes.min() > -8)
    modes = [attrs[n.name]["rounding_mode"].decode() for n in acts]
    assert modes == ["ROUND", "FLOOR", "FLOOR", "FLOOR"]  # model input: the boundary's RND; layers: TRN
    types = [(float(inits[n.input[3]]), attrs[n.name]["signed"]) for n in acts]
    assert types == [(4.0, 0), (4.0, 0), (4.0, 0), (4.0, 1)]
    scales = [float(inits[n.input[1]]) for n in acts]
    assert scales == [qmodel.graph.tensors[t].scale for t in ("input", "/net/net.0/Gemm", "/net/net.3/Gemm", "logits")]
    assert not [p for p in proto.metadata_props if p.key == "nnforge.scales"]  # pow2: float32 holds them


def _qonnx_context(path, x):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = len(x)
    del proto.graph.value_info[:]
    model = ModelWrapper(proto).transform(InferShapes())
    return proto, execute_onnx(model, {proto.graph.input[0].name: x.astype(np.float32)},
                               return_full_exec_context=True)


@pytest.mark.parametrize("case, rounding", [("cnn-w4a8-pow2", "ROUND"), ("cnn-w4a8-pow2", "HALF_UP"),
                                            ("mlp-w4a4-pow2-trn", "ROUND"), ("mlp-w4a4-pow2-trn", "HALF_UP")])
def test_qonnx_executor_differs_only_on_ties(exported, case, rounding, tmp_path):
    qmodel, path, again = exported[case]
    if rounding != "ROUND":
        path = tmp_path / "half_up.onnx"
        export_qonnx(qmodel, path, rounding=rounding)
    x = digits_arrays(case.split("-")[0])[1][:SAMPLES]
    proto, ctx = _qonnx_context(path, x)
    codes = qmodel.graph.quantize_inputs([x])
    ours = {qmodel.graph.inputs[0].name: codes[0]} | reference.run(qmodel.graph, codes)
    names = onnx_tensor_names(again.float_model, again.layers)  # nnforge tensor -> float tensor of the export
    quant_of = {n.input[0]: n for n in proto.graph.node if n.op_type == "Quant"}
    clean = np.ones(len(x), bool)  # samples whose earlier tensors all agree
    ties = {}
    for t in qmodel.graph.tensors.values():
        if t.name not in names:
            continue
        src = names[t.name] if names[t.name] in quant_of else f"{names[t.name]}_Quant_Input"
        node = quant_of[src]
        s = float(np.float32(t.scale))
        unrounded = np.clip(ctx[src].astype(np.float64) / s, t.qtype.lo, t.qtype.hi)
        theirs = ctx[node.output[0]].astype(np.float64) / s
        assert np.array_equal(theirs, np.round(theirs))  # pow2: qonnx's float32 values are exact codes
        mode = next(a.s.decode() for a in node.attribute if a.name == "rounding_mode")
        tie = unrounded - np.floor(unrounded) == 0.5
        differs = tie & ((unrounded < 0) if mode == "HALF_UP" else (np.floor(unrounded) % 2 == 0) if mode == "ROUND"
                         else np.zeros_like(tie))
        diff = np.asarray(ours[t.name], np.int64) - theirs.astype(np.int64)
        assert np.array_equal(diff[clean], differs[clean].astype(np.int64)), (t.name, mode)
        ties[t.name] = int(differs[clean].sum())
        clean &= (diff == 0).reshape(len(x), -1).all(axis=1)
    if case.endswith("trn"):  # FLOOR layers never differ; the input (k/16 at scale 1/8) has ties
        assert [k for k, n in ties.items() if n] == (["input"] if rounding == "ROUND" else [])
        assert clean.all() == (rounding == "HALF_UP")  # HALF_UP is RND on the nonnegative pixels
    else:  # the claim is exercised: such ties occur (with ROUND, in every sample's first conv already)
        assert sum(ties.values()) > 0 and ties["input"] == 0


def test_float32_readers_and_edited_scales(exported, tmp_path):
    """Without the recorded float64 scales the model is its float32 scales; an edited scale wins."""
    qmodel, path, _ = exported["mlp-w8a8"]
    proto = onnx.load(str(path))
    recorded = json.loads(next(p.value for p in proto.metadata_props if p.key == "nnforge.scales"))
    assert recorded  # float-mode scales are float64: recorded
    plain = onnx.ModelProto()
    plain.CopyFrom(proto)
    del plain.metadata_props[:]
    g = nnforge.quantize(nnforge.load(plain), None).graph
    for name, t in qmodel.graph.tensors.items():
        assert g.tensors[name].qtype == t.qtype and g.tensors[name].scale == float(np.float32(t.scale))
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    init = next(i for i in edited.graph.initializer if i.name == "logits_scale")
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(2), init.name))
    g = nnforge.quantize(nnforge.load(edited), None).graph
    assert g.tensors["logits"].scale == float(np.float32(qmodel.graph.tensors["logits"].scale) * np.float32(2))


def test_wrap_overflow_is_refused(exported):
    qmodel = exported["mlp-w8a8"][0]
    graph = dataclasses.replace(qmodel.graph, nodes=[dataclasses.replace(n) for n in qmodel.graph.nodes])
    graph.nodes[0].attrs = dataclasses.replace(graph.nodes[0].attrs, overflow="WRAP")
    with pytest.raises(InputError, match=r"layer '/net/net.0/Gemm': overflow must be SAT to export QONNX"):
        export_qonnx(dataclasses.replace(qmodel, graph=graph))
    with pytest.raises(InputError, match="the export format must be one of qonnx, qdq, not 'tflite'"):
        nnforge.export(qmodel, None, "tflite")
    with pytest.raises(InputError, match="rounding must be one of ROUND, HALF_UP, not 'HALF_EVEN'"):
        export_qonnx(qmodel, rounding="HALF_EVEN")


def test_cli_quantize_exports_qonnx_and_qdq(exported, tmp_path):
    """`nnforge quantize --export qonnx --export qdq` writes both next to the saved model: the QONNX
    file is the API's byte for byte; a QDQ model read back keeps every weight code."""
    qmodel = exported["mlp-w8a8"][0]
    calib, _ = digits_npz(tmp_path, "mlp")
    out = tmp_path / "q"
    res = CliRunner().invoke(main, ["quantize", str(EXAMPLES / "digits_mlp.onnx"), "--calib", str(calib), "--bits",
                                    "w8a8", "-o", str(out), "--export", "qonnx", "--export", "qdq"])
    assert res.exit_code == 0, res.output
    assert "QONNX model" in res.output and "QDQ model" in res.output
    assert (out / "model_qonnx.onnx").read_bytes() == export_qonnx(qmodel).SerializeToString()
    back = nnforge.quantize(nnforge.load(out / "model_qdq.onnx"), None).graph
    for n1, n2 in zip(qmodel.graph.nodes, back.nodes):
        if n1.op == "dense":
            assert np.array_equal(n1.attrs.weight, n2.attrs.weight)
    bad = CliRunner().invoke(main, ["quantize", str(EXAMPLES / "digits_mlp.onnx"), "--calib", str(calib), "-o",
                                    str(tmp_path / "r"), "--export", "tflite"])
    assert bad.exit_code == 2 and "'tflite' is not one of 'qonnx', 'qdq'" in bad.output


def test_qonnx_executor_float_scales_differ_only_near_half_way(exported):
    """float-mode scales: a code differs from qonnx's only where qonnx's unrounded value lies within
    what float32 (the input: x / float32(s) against nnforge's float64 division) or nnforge's 15-bit
    multiplier (a layer: 2^-15 of its largest code) can move it of half-way, by one step, in every
    sample whose earlier tensors agree."""
    qmodel, path, again = exported["mlp-w8a8"]
    x = digits_arrays("mlp")[1][:SAMPLES]
    proto, ctx = _qonnx_context(path, x)
    codes = qmodel.graph.quantize_inputs([x])
    ours = {"input": codes[0]} | reference.run(qmodel.graph, codes)
    names = onnx_tensor_names(again.float_model, again.layers)
    quant_of = {n.input[0]: n for n in proto.graph.node if n.op_type == "Quant"}
    clean = np.ones(len(x), bool)
    differing = 0
    for t in qmodel.graph.tensors.values():
        src = names[t.name] if names[t.name] in quant_of else f"{names[t.name]}_Quant_Input"
        s = float(np.float32(t.scale))
        unrounded = np.clip(ctx[src].astype(np.float64) / s, t.qtype.lo, t.qtype.hi)
        theirs = np.round(ctx[quant_of[src].output[0]].astype(np.float64) / s)
        diff = np.asarray(ours[t.name], np.int64) - theirs.astype(np.int64)
        near = 1e-5 if t.name == "input" else max(abs(t.qtype.lo), t.qtype.hi) * 2.0**-15 + 1e-4
        off = np.abs(unrounded - np.floor(unrounded) - 0.5)
        assert np.all(np.abs(diff[clean]) <= 1) and np.all(off[clean][diff[clean] != 0] <= near), t.name
        differing += int(np.count_nonzero(diff[clean]))
        clean &= (diff == 0).reshape(len(x), -1).all(axis=1)
    assert differing > 0  # the pixels' float64 ties (0.5 at scale 1/255) are not float32 ones
