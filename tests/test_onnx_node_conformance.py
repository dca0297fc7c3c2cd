"""ONNX backend node conformance for the supported ops (see tests/conformance/node_cases.py).

One test per selected case, named after it, plus one named ``<case>-constants`` for each
case that also runs with its non-first inputs as initializers (the way exported models
carry weights; see node_cases).  A case outside nnforge's float32 inference scope skips
with its stated reason; anything else that goes wrong fails with nnforge's error or the
output mismatch.  ``python bench/conformance_report.py`` prints the summary.
"""

from __future__ import annotations

import pytest

from conformance.node_cases import (
    AS_GIVEN,
    CONSTANTS,
    FAILED,
    SKIPPED,
    NodeCase,
    constants_variant_applies,
    run_case,
    selected_cases,
)


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
        metafunc.parametrize(("case", "variant"), [(None, AS_GIVEN)], ids=["deselected"])
        return
    cases = selected_cases()
    params = [pytest.param(c, AS_GIVEN, id=c.name) for c in cases]
    params += [pytest.param(c, CONSTANTS, id=f"{c.name}-{CONSTANTS}") for c in cases if constants_variant_applies(c)]
    metafunc.parametrize(("case", "variant"), params)


@pytest.mark.slow
def test_node_case(case: NodeCase, variant: str):
    result = run_case(case, variant)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    if result.status == FAILED:
        pytest.fail(f"{result.label} ({', '.join(case.ops)}): {result.reason}", pytrace=False)
