"""ONNX backend node conformance for the supported ops (see tests/conformance/node_cases.py).

One test per selected case, named after it.  A case outside nnforge's float32 inference
scope skips with its stated reason; anything else that goes wrong fails with nnforge's
error or the output mismatch.  ``python bench/conformance_report.py`` prints the summary.
"""

from __future__ import annotations

import pytest

from conformance.node_cases import FAILED, SKIPPED, NodeCase, run_case, selected_cases


def _deselects_slow(config: pytest.Config) -> bool:
    """Whether ``-m`` leaves out slow tests, so the suite (~15 s to build) need not load."""
    markexpr = config.getoption("markexpr", "")
    if not markexpr:
        return False
    try:
        from _pytest.mark.expression import Expression  # private; fall back to loading

        return not Expression.compile(markexpr).evaluate(lambda name, **_: name == "slow")
    except Exception:  # noqa: BLE001
        return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    if _deselects_slow(metafunc.config):
        # Deselected anyway: one placeholder, instead of loading the 1,884 node cases.
        metafunc.parametrize("case", [None], ids=["deselected"])
        return
    cases = selected_cases()
    metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@pytest.mark.slow
def test_node_case(case: NodeCase):
    result = run_case(case)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    if result.status == FAILED:
        pytest.fail(f"{case.name} ({', '.join(case.ops)}): {result.reason}", pytrace=False)
