"""Every check, on recorded facts, gives the status and message a sysadmin would expect."""

from __future__ import annotations

import pytest

from checks.registry import builtin_registry
from checks.runner import run_check
from tests.checks.cases import CASES

PARAMS = [
    pytest.param(check_id, facts, status, words, id=f"{check_id}:{name}")
    for check_id, cases in CASES.items()
    for name, facts, status, words in cases
]


@pytest.mark.parametrize(("check_id", "facts", "status", "words"), PARAMS)
def test_check_on_recorded_facts(check_id, facts, status, words):
    results = run_check(builtin_registry().get(check_id), facts)
    assert [r.status for r in results] == [status], results
    assert words in results[0].message
    assert results[0].check_id == check_id
