"""Every bad input to the systolic backend is an InputError that names the option, layer or memory,
says what was expected, and (where an option raises a limit) which one and to what."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nnforge.backends.options import resolve_options
from nnforge.cli import main
from nnforge.compiler.errors import InputError
from conftest import EXAMPLES
from systolic_util import BACKEND, design, options, quantized


@pytest.mark.parametrize("given,message", [
    ({"rows": 0}, "option 'rows' must be from 1 to 64, not 0"),
    ({"cols": 65}, "option 'cols' must be from 1 to 64, not 65"),
    ({"rows": 8, "cols": 4}, "option 'rows' must be at most cols=4"),
    ({"in_bits": 1}, "option 'in_bits' must be from 2 to 16, not 1"),
    ({"acc_bits": 64}, "option 'acc_bits' must be from 8 to 48, not 64"),
    ({"idx_bits": 8}, "option 'idx_bits' must be from 1 to 7, not 8"),
    ({"spad_depth": 8}, "option 'spad_depth' must be from 16 to"),
    ({"prog_depth": 1 << 17}, "option 'prog_depth' must be from 8 to 65536, not 131072"),
    ({"rows": "four"}, "option 'rows' must be an integer like 8, not 'four'"),
    ({"rows": 2.5}, "option 'rows' must be an integer like 8, not 2.5"),
    ({"top": "module"}, "option 'top' must be a Verilog identifier"),
    ({"top": 'x"); $finish; //'}, "option 'top' must be a Verilog identifier"),
    ({"top": "nnf_alu"}, "no nnf_ prefix other than the default"),
    ({"part": "ecp5 85k; rm"}, "option 'part' must be a part name like 'ecp5-85k'"),
    ({"clock_mhz": 0}, "option 'clock_mhz' must be from 1 to 1000, not 0"),
    ({"lanes": 4}, "option key must be one of acc_bits, clock_mhz, cols, idx_bits, imem_depth, in_bits, part, "
                   "pmem_depth, prog_depth, rows, spad_depth, top, wmem_depth for the systolic backend, not 'lanes'"),
])
def test_bad_options(given, message):
    with pytest.raises(InputError) as err:
        resolve_options(BACKEND, given)
    assert message in str(err.value)


def test_good_options_pass_through():
    opts = resolve_options(BACKEND, {"rows": "4", "cols": "16", "top": "my_accel", "clock_mhz": "125"})
    assert (opts["rows"], opts["cols"], opts["top"], opts["clock_mhz"]) == (4, 16, "my_accel", 125.0)


def _check(name: str, **given):
    BACKEND.check_design(design(quantized(name).graph), options(**given))


@pytest.mark.parametrize("given,message", [
    (dict(spad_depth=128), r"the scratchpad must fit spad_depth=128 words, but layer '/features/features.3/Conv' "
                           r"\(live: .*\) needs 256; raise it with --option spad_depth=256"),
    # weights at C = 8: 72 + 144 + 288 words for the convs (504 fit in 512), then logits' 128
    (dict(wmem_depth=512), r"the weights must fit wmem_depth=512 words, but the model \(from layer "
                           r"'logits' on\) needs 632; raise it with --option wmem_depth=632"),
    (dict(prog_depth=16), r"the program must fit prog_depth=16 instructions, but the model needs 17; raise it with "
                          r"--option prog_depth=17"),
    (dict(acc_bits=16), r"the accumulator of layer '/features/features.0/Conv' must fit acc_bits=16 bits, but its "
                        r"bound \d+ needs \d+; raise it with --option acc_bits=\d+"),
    (dict(in_bits=6), r"the input of layer '/features/features.0/Conv' \(u8\) must be at most in_bits=6 bits wide, "
                      r"not 8; raise it with --option in_bits=8"),
])
def test_what_does_not_fit_names_the_layer_or_memory_and_the_option(given, message):
    with pytest.raises(InputError, match=message):
        _check("digits_cnn", **given)


def test_lookup_tables_need_parameter_memory():
    # one PMEM word for the first conv's 8 channels, then the first 256-entry table: 257 > 256
    with pytest.raises(InputError, match=r"the parameters must fit pmem_depth=256 words, but the model \(from layer "
                                         r"'/c31/c31.2/LeakyRelu' on\) needs 1290; raise it with --option "
                                         r"pmem_depth=1290"):
        _check("factorised", pmem_depth=256)


def test_four_bit_storage_refuses_eight_bit_weights():
    q = quantized("digits_mlp", "w8a8")
    with pytest.raises(InputError, match=r"must be at most in_bits=4 bits wide, not 8; raise it with --option "
                                         r"in_bits=8"):
        BACKEND.check_design(design(q.graph), options(in_bits=4))


def test_cli_compile_reports_a_bad_option_with_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["compile", str(EXAMPLES / "digits_cnn.onnx"), "--calib",
                                    str(EXAMPLES / "digits_calib.npz"), "--backend", "systolic", "--option",
                                    "rows=99", "-o", str(tmp_path / "p")])
    assert res.exit_code == 2 and "option 'rows' must be from 1 to 64, not 99" in res.output
    assert not (tmp_path / "p").exists()
