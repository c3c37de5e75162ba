"""Every check, on recorded facts, gives the status and message a sysadmin would expect."""

from __future__ import annotations

import pytest

from checks.registry import builtin_registry
from checks.runner import run_check
from tests.checks.all_cases import ALL_CASES as CASES

PARAMS = [
    pytest.param(check_id, facts, status, words, id=f"{check_id}:{name}")
    for check_id, cases in CASES.items()
    for name, facts, status, words in cases
]


@pytest.mark.parametrize(("check_id", "facts", "status", "words"), PARAMS)
def test_check_on_recorded_facts(check_id, facts, status, words):
    results = run_check(builtin_registry().get(check_id), facts)
    # A check over several objects yields one result each; every one must say the same here.
    assert results
    assert {r.status for r in results} == {status}, results
    assert any(words in r.message for r in results), [r.message for r in results]
    assert {r.check_id for r in results} == {check_id}
