"""Evaluates checks over gathered facts: the one place where a check's failure is contained.

A needed fact that is missing or `Unavailable` becomes `error` naming the reason; a check that
raises becomes `error` with the exception's class and message; a declared inapplicability becomes
`not_applicable` with its reason. Parameters are the check's defaults overlaid with site overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from checks.model import Msg, Outcome, Result, Status, Unavailable, outcome
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
        chosen = registry.get(check_id)
        resolve_params(chosen, values)
        for name in values:
            owner = chosen.shares.get(name)
            if owner is not None:
                raise ParameterError(
                    f"check {check_id} parameter {name!r} is shared with {owner}: set it there"
                )


def overrides_for(check: Check, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A check's own overrides, with the shared parameters its owners were given."""
    own = dict(overrides.get(check.id, {}))
    for name, owner in check.shares.items():
        if name in overrides.get(owner, {}):
            own[name] = overrides[owner][name]
    return own


def _result(check: Check, found: Outcome) -> Result:
    return Result(
        check_id=check.id,
        status=found.status,
        message=found.message,
        severity=check.severity,
        title_en=check.title_en,
        title_zh=check.title_zh,
        evidence=found.evidence,
        target=found.target,
        message_zh=found.message_zh,
    )


def _missing_fact(check: Check, facts: Any) -> Outcome | None:
    """The first needed fact, or sub-fact (`disk.volumes`), that is missing or unavailable."""
    for need in check.needs:
        value = facts
        for depth, part in enumerate(need.split("."), start=1):
            value = getattr(value, part, None)
            name = ".".join(need.split(".")[:depth])
            if value is None:
                return outcome(
                    Status.ERROR,
                    Msg(f"fact {name!r} was not gathered", f"未采集事实 {name}"),
                    {"fact": name},
                )
            if isinstance(value, Unavailable):
                return outcome(
                    Status.ERROR,
                    Msg(f"{name} unavailable: {value.reason}", f"无法获取 {name}：{value.reason}"),
                    {"fact": name},
                )
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
                return [_result(check, outcome(Status.NOT_APPLICABLE, reason))]
        outcomes = list(check(facts, **params))
    except Exception as exc:  # the runner boundary: a broken check is an error result
        return [
            _result(
                check,
                outcome(
                    Status.ERROR,
                    Msg(
                        f"check raised {type(exc).__name__}: {exc}",
                        f"检查项执行出错 {type(exc).__name__}：{exc}",
                    ),
                    {"exception": type(exc).__name__, "detail": str(exc)},
                ),
            )
        ]
    if not outcomes:
        silent = Msg("check produced no outcome", "检查项未给出结论")
        return [_result(check, outcome(Status.ERROR, silent))]
    return [_result(check, o) for o in outcomes]


def evaluate(
    checks: Iterable[Check],
    facts: Any,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Result]:
    overrides = overrides or {}
    results: list[Result] = []
    for c in checks:
        results.extend(run_check(c, facts, overrides_for(c, overrides)))
    return results
