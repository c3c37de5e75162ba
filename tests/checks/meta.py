"""What every registered check owes the project, as functions over any registry, catalogs and
cases: a clause it evidences, recorded pass and fail cases, and Chinese for every message. The
meta-tests apply them to the shipped checks; the discovery test applies them to a check module
made on the fly, to show they catch one that was added without either."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from checks.catalog import Catalogs
from checks.model import Result, Status
from checks.registry import Registry
from checks.runner import run_check

Case = tuple[str, Any, Status, str]
CJK = re.compile(r"[\u4e00-\u9fff]")


def unmapped(registry: Registry, catalogs: Catalogs) -> list[str]:
    """Checks no clause of any catalog names."""
    return [c for c in registry.ids() if not catalogs.clause_ids(c)]


def without_cases(registry: Registry, cases: Mapping[str, Sequence[Case]]) -> list[str]:
    """Checks lacking a recorded `pass` case or a recorded `fail` case."""
    missing = []
    for check_id in registry.ids():
        statuses = {status for _, _, status, _ in cases.get(check_id, ())}
        if not {Status.PASS, Status.FAIL} <= statuses:
            missing.append(check_id)
    return missing


def case_problem(results: Sequence[Result], status: Status, words: str) -> str | None:
    """The one rule for a recorded case, host or network: some result has the case's status and
    says the case's words; a passing case has nothing but passes (or inapplicable objects) —
    nothing may hide behind a pass."""
    if not results:
        return "no result"
    if not any(r.status is status and words in r.message for r in results):
        return f"no {status.value} result says {words!r}: " + "; ".join(
            f"{r.status.value}: {r.message}" for r in results
        )
    if status is Status.PASS and {r.status for r in results} - {Status.PASS, Status.NOT_APPLICABLE}:
        return "a passing case has other results: " + "; ".join(
            f"{r.status.value}: {r.message}" for r in results
        )
    return None


def untranslated(results: Iterable[Result]) -> list[str]:
    """Messages with no Chinese beside the English."""
    return [r.message for r in results if not (r.message_zh and CJK.search(r.message_zh))]


def run_case(registry: Registry, check_id: str, facts: Any) -> list[Result]:
    return run_check(registry.get(check_id), facts)
