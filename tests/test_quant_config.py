"""The quantization config: shorthands, files, precedence, round trip and every error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nnforge.compiler.errors import NNForgeError
from nnforge.compiler.quant.quant_config import ConfigError, LayerQuant, QuantConfig, parse_config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "quant_config.md"

# The config of the docs' TOML and YAML examples, written out by hand.
EXAMPLE = QuantConfig(
    default=LayerQuant(weight_bits=8, act_bits=8, calibration="percentile", percentile=99.9),
    op_types={"conv2d": {"weight_bits": 4}, "add": {"act_bits": 16, "rounding": "TRN"}},
    layers={"/features/features.0/Conv": {"weight_bits": 8, "act_bits": 16},
            "/classifier/Gemm": {"act_signed": True, "calibration": "minmax"}},
)
EXAMPLE_DICT = {
    "bits": "w8a8",
    "default": {"calibration": "percentile", "percentile": 99.9},
    "op_types": {"conv2d": {"weight_bits": 4}, "add": {"act_bits": 16, "rounding": "TRN"}},
    "layers": {"/features/features.0/Conv": {"weight_bits": 8, "act_bits": 16},
               "/classifier/Gemm": {"act_signed": True, "calibration": "minmax"}},
}


def doc_block(lang: str) -> str:
    """The first fenced ``lang`` block of docs/quant_config.md."""
    return re.search(rf"```{lang}\n(.*?)```", DOCS.read_text(), re.S)[1]


def error(spec) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(spec)
    return str(info.value)


# --- shorthands -------------------------------------------------------------------------


@pytest.mark.parametrize("spec, weight_bits, act_bits, scale_mode, auto", [
    (None, 8, 8, "float", False),
    ("w8a8", 8, 8, "float", False),
    ("w4a8", 4, 8, "float", False),
    ("w16a16", 16, 16, "float", False),
    ("w2a2", 2, 2, "float", False),
    ("w8a8-pow2", 8, 8, "pow2", False),
    ("auto", 8, 8, "float", True),
    ("auto-w8a8", 8, 8, "float", True),
    ("auto-w4a16", 4, 16, "float", True),
    ("auto-w4a8-pow2", 4, 8, "pow2", True),
])
def test_shorthand(spec, weight_bits, act_bits, scale_mode, auto):
    config = parse_config(spec)
    assert config == QuantConfig(
        default=LayerQuant(weight_bits=weight_bits, act_bits=act_bits, scale_mode=scale_mode),
        auto=auto)


def test_defaults_of_layer_quant():
    q = parse_config(None).default
    assert (q.weight_signed, q.act_signed, q.per_channel, q.scale_mode, q.rounding, q.overflow,
            q.calibration, q.percentile, q.bias_correction) == (
        True, None, True, "float", "RND", "SAT", "mse", 99.99, False)


def test_config_object_is_returned_as_is():
    config = parse_config("w4a8")
    assert parse_config(config) is config


# --- precedence -------------------------------------------------------------------------


def test_precedence_default_then_op_type_then_layer():
    config = parse_config({
        "default": {"weight_bits": 8, "act_bits": 8, "calibration": "entropy"},
        "op_types": {"conv2d": {"weight_bits": 4, "act_bits": 6}, "add": {"act_bits": 12}},
        "layers": {"conv_a": {"act_bits": 16}, "fc": {"rounding": "TRN"}},
    })
    # layer override beats op-type override field by field; the rest falls through
    assert config.for_layer("conv_a", "conv2d") == LayerQuant(
        weight_bits=4, act_bits=16, calibration="entropy")
    assert config.for_layer("conv_b", "conv2d") == LayerQuant(
        weight_bits=4, act_bits=6, calibration="entropy")
    assert config.for_layer("fc", "dense") == LayerQuant(
        weight_bits=8, act_bits=8, rounding="TRN", calibration="entropy")
    assert config.for_layer("sum", "add") == LayerQuant(
        weight_bits=8, act_bits=12, calibration="entropy")
    assert config.for_layer("pool", "max_pool2d") == LayerQuant(
        weight_bits=8, act_bits=8, calibration="entropy")


def test_layer_override_can_reset_act_signed_to_quantizer_choice():
    config = parse_config({"default": {"act_signed": True},
                           "layers": {"relu": {"act_signed": None}}})
    assert config.for_layer("relu", "relu").act_signed is None
    assert config.for_layer("other", "relu").act_signed is True


# --- files ------------------------------------------------------------------------------


def test_dict_example_matches_hand_written_config():
    assert parse_config(EXAMPLE_DICT) == EXAMPLE


def test_toml_file(tmp_path):
    path = tmp_path / "quant.toml"
    path.write_text(doc_block("toml"))
    assert parse_config(path) == EXAMPLE
    assert parse_config(str(path)) == EXAMPLE


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_file(tmp_path, suffix):
    pytest.importorskip("yaml", reason="PyYAML is needed to read YAML configs")
    path = tmp_path / f"quant{suffix}"
    path.write_text(doc_block("yaml"))
    assert parse_config(path) == EXAMPLE


def test_json_file(tmp_path):
    path = tmp_path / "quant.json"
    path.write_text(json.dumps(EXAMPLE_DICT))
    assert parse_config(str(path)) == EXAMPLE


def test_small_toml_with_auto_and_bits(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text('bits = "w4a8"\nauto = true\n[default]\nscale_mode = "pow2"\n')
    assert parse_config(path) == QuantConfig(
        default=LayerQuant(weight_bits=4, act_bits=8, scale_mode="pow2"), auto=True)


def test_percentile_integer_is_a_number():
    config = parse_config({"default": {"calibration": "percentile", "percentile": 100}})
    assert config.default.percentile == 100.0
    assert isinstance(config.default.percentile, float)


# --- round trip and description ---------------------------------------------------------


@pytest.mark.parametrize("spec", [None, "w4a8", "auto-w4a8-pow2", EXAMPLE_DICT,
                                  {"layers": {"x": {"act_signed": None}}}])
def test_round_trip(spec):
    config = parse_config(spec)
    assert parse_config(config.to_dict()) == config


def test_to_dict_writes_every_default_field():
    assert parse_config("w4a8").to_dict() == {
        "auto": False,
        "default": {"weight_bits": 4, "act_bits": 8, "weight_signed": True, "per_channel": True,
                    "scale_mode": "float", "rounding": "RND", "overflow": "SAT",
                    "calibration": "mse", "percentile": 99.99, "bias_correction": False},
        "op_types": {},
        "layers": {},
    }


def test_to_dict_is_a_copy():
    config = parse_config(EXAMPLE_DICT)
    config.to_dict()["layers"]["/classifier/Gemm"]["act_bits"] = 2
    assert config == EXAMPLE


@pytest.mark.parametrize("spec, line", [
    ({"bits": "w4a8", "default": {"calibration": "entropy"},
      "layers": {"a": {"act_bits": 16}, "b": {"act_bits": 16}}},
     "w4a8 per-channel float-scale RND/SAT entropy; 2 layer overrides"),
    ("w8a8", "w8a8 per-channel float-scale RND/SAT mse"),
    ("auto-w4a8-pow2", "auto-w4a8 per-channel pow2-scale RND/SAT mse"),
    (EXAMPLE_DICT, "w8a8 per-channel float-scale RND/SAT percentile-99.9;"
                   " 2 op-type overrides, 2 layer overrides"),
    ({"default": {"per_channel": False, "rounding": "TRN", "overflow": "WRAP", "act_signed": False,
                  "bias_correction": True}, "op_types": {"add": {"act_bits": 9}}},
     "w8a8 per-tensor float-scale TRN/WRAP mse unsigned-acts bias-correction; 1 op-type override"),
])
def test_describe(spec, line):
    assert parse_config(spec).describe() == line


# --- errors -----------------------------------------------------------------------------


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, NNForgeError)


def test_unknown_top_level_key():
    message = error({"defaults": {"weight_bits": 4}})
    assert "top-level key must be one of bits, auto, default, op_types, layers" in message
    assert "not 'defaults'" in message and "did you mean 'default'" in message


@pytest.mark.parametrize("spec, where", [
    ({"default": {"weight_bit": 4}}, "default key"),
    ({"op_types": {"conv2d": {"weight_bit": 4}}}, "op_types.conv2d key"),
    ({"layers": {"/a/Conv": {"weight_bit": 4}}}, 'layers."/a/Conv" key'),
])
def test_unknown_field(spec, where):
    message = error(spec)
    assert message.startswith(f"{where} must be one of weight_bits, act_bits, weight_signed,")
    assert "not 'weight_bit'" in message and "did you mean 'weight_bits'" in message


@pytest.mark.parametrize("value", [1, 17, 0, -8, "8", 8.5, 8.0, True, None])
def test_bad_bits(value):
    assert error({"default": {"weight_bits": value}}) == (
        f"default.weight_bits must be an integer from 2 to 16, not {value!r}")


def test_bad_bits_in_override_names_the_layer():
    assert error({"layers": {"/b/Relu": {"act_bits": 17}}}) == (
        'layers."/b/Relu".act_bits must be an integer from 2 to 16, not 17')


@pytest.mark.parametrize("field, value, message", [
    ("rounding", "rnd", "default.rounding must be one of 'RND', 'TRN', not 'rnd'"),
    ("overflow", "CLIP", "default.overflow must be one of 'SAT', 'WRAP', not 'CLIP'"),
    ("scale_mode", "log2", "default.scale_mode must be one of 'float', 'pow2', not 'log2'"),
    ("calibration", "kl", "default.calibration must be one of 'minmax', 'percentile', 'mse',"
                          " 'entropy', not 'kl'"),
    ("per_channel", 1, "default.per_channel must be true or false, not 1"),
    ("act_signed", "no", "default.act_signed must be true, false or null (decided by the"
                         " quantizer), not 'no'"),
    ("percentile", 50, "default.percentile must be a number in (50, 100], not 50"),
    ("percentile", 100.5, "default.percentile must be a number in (50, 100], not 100.5"),
    ("percentile", True, "default.percentile must be a number in (50, 100], not True"),
])
def test_bad_field_value(field, value, message):
    assert error({"default": {field: value}}) == message


def test_layer_quant_validates_itself():
    with pytest.raises(ConfigError, match="weight_bits must be an integer from 2 to 16, not 1"):
        LayerQuant(weight_bits=1, act_bits=8)
    with pytest.raises(ConfigError, match="overflow must be one of 'SAT', 'WRAP', not 'wrap'"):
        LayerQuant(weight_bits=8, act_bits=8, overflow="wrap")


@pytest.mark.parametrize("spec, message", [
    ({"auto": "yes"}, "auto must be true or false, not 'yes'"),
    ({"bits": "w4"}, "bits must be a string wNaM such as 'w4a8', not 'w4'"),
    ({"bits": "w4a1"}, "act_bits in bits = 'w4a1' must be from 2 to 16, not 1"),
    ({"bits": "w4a8", "default": {"weight_bits": 8}},
     "default.weight_bits must be left out when bits is given, not 8 (bits = 'w4a8')"),
    ({"op_types": {"conv2d": 4}}, "op_types.conv2d must be a table, not 4"),
    ({"layers": ["a"]}, "layers must be a table, not ['a']"),
    ({"default": 8}, "default must be a table, not 8"),
    (42, "quantization config must be None, a shorthand string, a file path, a dict or a"
         " QuantConfig, not 42"),
])
def test_bad_structure(spec, message):
    assert error(spec) == message


@pytest.mark.parametrize("spec", ["w9", "w8", "int8", "w8a8-float", ""])
def test_unknown_shorthand_lists_the_forms(spec):
    message = error(spec)
    assert message.startswith("quantization config must be a shorthand (w8a8, w4a8, w16a16,"
                              " w8a8-pow2, auto, auto-w8a8;")
    assert message.endswith(f"not {spec!r}")


@pytest.mark.parametrize("spec, message", [
    ("w8a1", "activation bits in shorthand 'w8a1' must be from 2 to 16, not 1"),
    ("w17a8", "weight bits in shorthand 'w17a8' must be from 2 to 16, not 17"),
    ("auto-w8a32", "activation bits in shorthand 'auto-w8a32' must be from 2 to 16, not 32"),
])
def test_shorthand_bits_out_of_range(spec, message):
    assert error(spec) == message


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "missing.toml"
    assert error(missing) == f"config file must be an existing file, not {str(missing)!r}"
    assert error(str(missing)) == f"config file must be an existing file, not {str(missing)!r}"


def test_wrong_suffix(tmp_path):
    path = tmp_path / "quant.ini"
    path.write_text("[default]\n")
    assert error(path).startswith("config file suffix must be one of .toml, .yaml, .yml, .json,"
                                  " not '.ini'")


def test_bad_value_in_file_names_the_file(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text('[default]\nweight_bits = "8"\n')
    assert error(path) == "q.toml: default.weight_bits must be an integer from 2 to 16, not '8'"


def test_invalid_toml(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text("[default\n")
    assert error(path).startswith(f"config file {str(path)!r} must be valid TOML: ")


# --- names checked against a model ------------------------------------------------------


LAYERS = ["/features/features.0/Conv", "/features/features.3/Conv", "/classifier/Gemm"]
OP_TYPES = ["conv2d", "dense", "conv2d", "relu"]


def test_check_names_accepts_known_names():
    parse_config(EXAMPLE_DICT | {"op_types": {"conv2d": {"weight_bits": 4}}}).check_names(
        LAYERS, OP_TYPES)


def test_unknown_layer_name_suggests_close_match():
    config = parse_config({"layers": {"/features/features.O/Conv": {"act_bits": 16}}})
    with pytest.raises(ConfigError) as info:
        config.check_names(LAYERS, OP_TYPES)
    assert str(info.value) == (
        "layers key must be a layer name in the model, not '/features/features.O/Conv'"
        " (did you mean '/features/features.0/Conv' or '/features/features.3/Conv'?);"
        " the model's layer names: '/features/features.0/Conv', '/features/features.3/Conv',"
        " '/classifier/Gemm'")


def test_unknown_layer_name_lists_only_a_few_layers():
    config = parse_config({"layers": {"zzz": {"act_bits": 16}}})
    with pytest.raises(ConfigError) as info:
        config.check_names([f"layer{i}" for i in range(10)], [])
    assert str(info.value) == (
        "layers key must be a layer name in the model, not 'zzz'; the model's layer names:"
        " 'layer0', 'layer1', 'layer2', 'layer3', 'layer4', 'layer5', ... (4 more)")


def test_unknown_op_type_lists_all_op_types():
    config = parse_config({"op_types": {"conv": {"weight_bits": 4}}})
    with pytest.raises(ConfigError) as info:
        config.check_names(LAYERS, OP_TYPES)
    assert str(info.value) == (
        "op_types key must be an op type in the model, not 'conv' (did you mean 'conv2d'?);"
        " the model's op types: 'conv2d', 'dense', 'relu'")


def test_every_unknown_name_is_reported():
    config = parse_config({"layers": {"a": {"act_bits": 9}, "b": {"act_bits": 9}},
                           "op_types": {"gemm": {"weight_bits": 4}}})
    with pytest.raises(ConfigError) as info:
        config.check_names(LAYERS, OP_TYPES)
    lines = str(info.value).splitlines()
    assert [line.split(";")[0] for line in lines] == [
        "layers key must be a layer name in the model, not 'a'",
        "layers key must be a layer name in the model, not 'b'",
        "op_types key must be an op type in the model, not 'gemm'",
    ]
