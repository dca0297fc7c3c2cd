"""TVM stays behind its adapters: which library modules import tvm, and what the Relax IR adapter
(``compiler/frontend/relax_utils.py``) gives the rest of the compiler.

The import scan reads the sources (no import), so a new ``import tvm`` / ``from tvm...`` (or
``tvm_ffi``) anywhere else in the library fails here with the file named.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nnforge.compiler.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ["nnforge", "compiler", "backends", "hw_sim", "templates"]
ADAPTERS = {
    "compiler/frontend/relax_import.py",  # the ONNX importer
    "compiler/frontend/relax_utils.py",  # the Relax IR adapter
    "compiler/lower/lower_relax.py",  # the lowering
    "compiler/lower/executor.py",  # the CPU build and the VM
    "compiler/lower/cpu_schedule.py",  # the CPU schedule
    "backends/partition.py",  # patterns, partition, BYOC runtime calls
}
_IMPORT = re.compile(r"^\s*(import tvm|from tvm)", re.MULTILINE)


def _importers() -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in LIBRARY for p in (ROOT / folder).rglob("*.py")
            if _IMPORT.search(p.read_text())}


def test_only_the_adapters_import_tvm():
    assert _importers() == ADAPTERS


def test_the_scan_sees_an_import_inside_a_function():
    assert _IMPORT.search("def f():\n    from tvm import relax\n")
    assert _IMPORT.search("import tvm_ffi\n")
    assert not _IMPORT.search("# the tvm import lives in relax_utils\n")


def test_console_needs_no_tvm():
    import subprocess
    import sys

    code = "import sys, nnforge.console; print('tvm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the Relax IR adapter on a small module ---------------------------------------------------------

@pytest.fixture(scope="module")
def mod():
    """main(x[1, 4]): a = x + c; b = a * a; returns (b, a)."""
    from tvm import relax

    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        a = bb.emit(relax.op.add(x, relax.const(np.ones((1, 4), np.float32))), name_hint="a")
        b = bb.emit(relax.op.multiply(a, a), name_hint="b")
        bb.emit_func_output(relax.Tuple([b, a]))
    return bb.get()


def _bindings(mod):
    return {b.var.name: b for blk in mod["main"].body.blocks for b in blk.bindings}


def test_reading_expressions(mod):
    from nnforge.compiler.frontend import relax_utils as ru

    func = mod["main"]
    b = _bindings(mod)
    a_call, b_call = b["a"].value, b["b"].value
    assert ru.call_op_name(a_call) == "relax.add" and ru.call_op_name(b_call) == "relax.multiply"
    assert ru.is_constant(a_call.args[1]) and not ru.is_constant(a_call.args[0])
    np.testing.assert_array_equal(ru.const_value(a_call.args[1]), np.ones((1, 4), np.float32))
    assert ru.is_var(a_call.args[0]) and not ru.is_var(a_call)
    assert ru.static_shape(b["a"].var) == (1, 4) and ru.dtype_of(b["a"].var) == "float32"
    outs = ru.output_exprs(func)  # the fields of the returned tuple, in order
    assert len(outs) == 2 and outs[0].same_as(b["b"].var) and outs[1].same_as(b["a"].var)
    uses = ru.var_uses(func)
    assert uses[b["a"].var] == 3  # b reads it twice, the output tuple once
    assert uses[b["b"].var] == 1 and uses[func.params[0]] == 1


def test_returning_gives_the_bindings_in_order(mod):
    import tvm

    from nnforge.compiler.frontend import relax_utils as ru

    b = _bindings(mod)
    traced = ru.returning(mod, [("b", b["b"].var), ("a", b["a"].var)])
    vm = tvm.relax.VirtualMachine(tvm.compile(traced, target="llvm"), tvm.cpu())
    from nnforge.compiler.lower import executor

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    got_b, got_a = executor.call(vm, "main", [x])
    np.testing.assert_array_equal(got_a, x + 1)
    np.testing.assert_array_equal(got_b, (x + 1) * (x + 1))


def test_returning_refuses_a_var_that_is_no_binding(mod):
    from tvm import relax

    from nnforge.compiler.frontend import relax_utils as ru

    stray = relax.Var("stray", relax.TensorType((1, 4), "float32"))
    with pytest.raises(ModelError, match=r"layer outputs must be bindings of 'main', not \['stray'\]"):
        ru.returning(mod, [("stray", stray)])


def test_apply_rules_rewrites_every_match(mod):
    from nnforge.compiler.frontend import relax_utils as ru

    # x * x -> x + x everywhere in main
    pat = ru.is_op("relax.multiply")(ru.wildcard(), ru.wildcard())
    new = ru.apply_rules(mod, [(pat, lambda call, m: ru.op.add(call.args[0], call.args[1]))])
    ops = [ru.call_op_name(b.value) for blk in new["main"].body.blocks for b in blk.bindings]
    assert "relax.multiply" not in ops and ops.count("relax.add") == 2
