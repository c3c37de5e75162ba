"""Evaluates checks over gathered facts: the one place where a check's failure is contained.

A needed fact that is missing or `Unavailable` becomes `error` naming the reason; a check that
raises becomes `error` with the exception's class and message; a declared inapplicability becomes
`not_applicable` with its reason. Parameters are the check's defaults overlaid with site overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checks.model import Outcome, Result, Status, Unavailable
from checks.registry import Check, Registry


class ParameterError(ValueError):
    """A site override names an unknown check or parameter, or has the wrong type."""


def resolve_params(check: Check, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(check.params)
    for key, value in (overrides or {}).items():
        if key not in check.params:
            known = ", ".join(sorted(check.params)) or "none"
            raise ParameterError(f"check {check.id} has no parameter {key!r} (known: {known})")
        default = check.params[key]
        if not _same_kind(default, value):
            raise ParameterError(
                f"check {check.id} parameter {key!r} must be {type(default).__name__}, "
                f"got {value!r}"
            )
        params[key] = value
    return params


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def validate_overrides(registry: Registry, overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail fast on a bad override, before any fact is gathered."""
    for check_id, values in overrides.items():
        resolve_params(registry.get(check_id), values)


def _result(check: Check, outcome: Outcome) -> Result:
    return Result(
        check_id=check.id,
        status=outcome.status,
        message=outcome.message,
        severity=check.severity,
        title_en=check.title_en,
        title_zh=check.title_zh,
        evidence=outcome.evidence,
        target=outcome.target,
    )


def _missing_fact(check: Check, facts: Any) -> Outcome | None:
    for need in check.needs:
        value = getattr(facts, need, None)
        if value is None:
            return Outcome(Status.ERROR, f"fact {need!r} was not gathered", {"fact": need})
        if isinstance(value, Unavailable):
            return Outcome(Status.ERROR, f"{need} unavailable: {value.reason}", {"fact": need})
    return None


def run_check(check: Check, facts: Any, overrides: Mapping[str, Any] | None = None) -> list[Result]:
    params = resolve_params(check, overrides)
    missing = _missing_fact(check, facts)
    if missing is not None:
        return [_result(check, missing)]
    try:
        if check.applies_to is not None:
            reason = check.applies_to(facts)
            if reason is not None:
                return [_result(check, Outcome(Status.NOT_APPLICABLE, reason))]
        outcomes = list(check(facts, **params))
    except Exception as exc:  # the runner boundary: a broken check is an error result
        return [
            _result(
                check,
                Outcome(
                    Status.ERROR,
                    f"check raised {type(exc).__name__}: {exc}",
                    {"exception": type(exc).__name__, "detail": str(exc)},
                ),
            )
        ]
    if not outcomes:
        return [_result(check, Outcome(Status.ERROR, "check produced no outcome"))]
    return [_result(check, o) for o in outcomes]


def evaluate(
    checks: Iterable[Check],
    facts: Any,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Result]:
    overrides = overrides or {}
    results: list[Result] = []
    for c in checks:
        results.extend(run_check(c, facts, overrides.get(c.id)))
    return results
