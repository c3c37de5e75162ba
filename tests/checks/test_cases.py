"""Every check, host or network, on its recorded facts gives the status and message a sysadmin
would expect, in English and in Chinese (one harness, one rule: `meta.case_problem`)."""

from __future__ import annotations

import json

import pytest

from tests.checks.all_cases import ALL_CASES, registry_of
from tests.checks.meta import case_problem, run_case, untranslated

PARAMS = [
    pytest.param(check_id, facts, status, words, id=f"{check_id}:{name}")
    for check_id, cases in ALL_CASES.items()
    for name, facts, status, words in cases
]


@pytest.mark.parametrize(("check_id", "facts", "status", "words"), PARAMS)
def test_check_on_recorded_facts(check_id, facts, status, words):
    results = run_case(registry_of(check_id), check_id, facts)
    assert {r.check_id for r in results} == {check_id}
    assert case_problem(results, status, words) is None


@pytest.mark.parametrize(("check_id", "facts", "status", "words"), PARAMS)
def test_every_message_has_chinese(check_id, facts, status, words):
    results = run_case(registry_of(check_id), check_id, facts)
    assert untranslated(results) == []


@pytest.mark.parametrize(("check_id", "facts", "status", "words"), PARAMS)
def test_evidence_is_plain_json(check_id, facts, status, words):
    # Evidence travels in the signed report and is stored as JSON: it must round-trip unchanged.
    for result in run_case(registry_of(check_id), check_id, facts):
        evidence = dict(result.evidence)
        assert json.loads(json.dumps(evidence)) == evidence
