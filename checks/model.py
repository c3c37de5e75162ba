"""The result model every check, renderer and the collector share.

A check yields `Outcome`s (status, message, evidence, target); the runner stamps them with the
check's identity and turns them into frozen `Result`s. `Unavailable` is how a gatherer says
"I could not find out" — it is never a boolean default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

F = TypeVar("F")


class Status(enum.StrEnum):
    """What a check concluded. "Could not check" is `ERROR`, never `PASS` or `FAIL`."""

    PASS = "pass"  # noqa: S105 — a status, not a password
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    MANUAL = "manual"


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Unavailable:
    """A fact that could not be gathered, and why (missing tool, no permission, no source)."""

    reason: str

    def __bool__(self) -> bool:
        # An unknown fact must never read as a truthy "yes" in a careless `if`.
        return False


@dataclass(frozen=True)
class Msg:
    """One message in both languages the reports speak: hospital staff and assessors read Chinese,
    vendors and logs often English. Every outcome carries both; renderers pick one."""

    en: str
    zh: str


@dataclass(frozen=True)
class Outcome:
    """What a check function yields: one per examined object."""

    status: Status
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    message_zh: str | None = None
    """The message in Chinese; None only for outcomes not yet translated (a meta-test fails)."""


def outcome(
    status: Status,
    message: Msg | str,
    evidence: Mapping[str, Any] | None = None,
    *,
    target: str | None = None,
) -> Outcome:
    if isinstance(message, Msg):
        return Outcome(status, message.en, dict(evidence or {}), target, message.zh)
    return Outcome(status, message, dict(evidence or {}), target)


def require(value: object, kind: type[F]) -> F:
    """A fact a check declared in `needs=`, typed for the check's body.

    The runner reports a missing or unavailable needed fact as `error` before the check runs, so
    anything else reaching here is a programming error, raised as such.
    """
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__} facts, got {type(value).__name__}")
    return value


def available(value: F | Unavailable) -> F:
    """A sub-fact a check declared in `needs=` (`"disk.volumes"`), typed for the check's body.

    The runner reports an unavailable needed sub-fact as `error` before the check runs, so an
    `Unavailable` reaching here is a programming error, raised as such.
    """
    if isinstance(value, Unavailable):
        raise TypeError(f"needed fact unavailable: {value.reason}")
    return value


def passed(
    message: Msg | str, evidence: Mapping[str, Any] | None = None, *, target: str | None = None
) -> Outcome:
    return outcome(Status.PASS, message, evidence, target=target)


def failed(
    message: Msg | str, evidence: Mapping[str, Any] | None = None, *, target: str | None = None
) -> Outcome:
    return outcome(Status.FAIL, message, evidence, target=target)


def errored(
    message: Msg | str, evidence: Mapping[str, Any] | None = None, *, target: str | None = None
) -> Outcome:
    return outcome(Status.ERROR, message, evidence, target=target)


def not_applicable(
    message: Msg | str, evidence: Mapping[str, Any] | None = None, *, target: str | None = None
) -> Outcome:
    return outcome(Status.NOT_APPLICABLE, message, evidence, target=target)


@dataclass(frozen=True)
class Result:
    """One evaluated check on one target. Clause ids are joined from the catalogs at render time."""

    check_id: str
    status: Status
    message: str
    severity: Severity
    title_en: str
    title_zh: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    message_zh: str | None = None

    def message_in(self, lang: str) -> str:
        """The message a reader of `lang` sees; English where no Chinese exists."""
        return self.message_zh or self.message if lang == "zh" else self.message

    def to_dict(self) -> dict[str, Any]:
        item = {
            "check_id": self.check_id,
            "status": self.status.value,
            "severity": self.severity.value,
            "title": {"en": self.title_en, "zh": self.title_zh},
            "target": self.target,
            "message": self.message,
            "evidence": dict(self.evidence),
        }
        if self.message_zh is not None:
            item["message_zh"] = self.message_zh
        return item


def jsonable(value: Any) -> Any:  # noqa: PLR0911 — one return per JSON kind
    """Facts and results as plain JSON data; an `Unavailable` stays visible as such."""
    import dataclasses  # local: only serialisation needs it

    if isinstance(value, Unavailable):
        return {"unavailable": value.reason}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return value
