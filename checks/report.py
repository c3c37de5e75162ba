"""The host report contract, `medsec.report/v1`, in one place: how it is built (agent, scanner),
validated at the collector's boundary, counted and turned into an exit code.

A report carries, per result, the clause ids its writer's catalogs gave, for a person reading one
report, and the catalog editions it was joined with. Readers never trust those ids: they join
check ids to clauses again from their own catalogs (`rejoin`), so a catalog correction applies to
all stored evidence and agents of different versions cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

from checks.catalog import Catalogs
from checks.model import Result, Status, jsonable

SCHEMA: Literal["medsec.report/v1"] = "medsec.report/v1"
MESSAGE_LIMIT = 8000
"""Messages longer than this are clipped when a report is built (the schema accepts 8192)."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No report received is older: medsec did not exist, so an earlier time is a clock that lost its
battery or a forged report, and a year-1 time with a positive offset is not even a UTC instant."""
MAX_OFFSET = timedelta(hours=14)
"""The widest UTC offset in use (UTC+14, Kiribati; the farthest west is UTC-12)."""
MAX_HOST_ID = 200
"""Agents' ids are about 70 characters; a long one would outgrow the database's index entries."""
MAX_DEPTH = 32
"""How deep an inventory or a result's evidence may nest (an agent's go 6 deep): a document
nested some hundreds deep is stored, then no API answer can serialise it."""


def rfc3339(moment: datetime) -> str:
    """The one timestamp form reports use: RFC 3339, UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def counts(statuses: Iterable[Status | str]) -> dict[str, int]:
    """How many results have each status; every status is present, zeros included."""
    out = {s.value: 0 for s in Status}
    for status in statuses:
        out[Status(status).value] += 1
    return out


def exit_code(statuses: Iterable[Status | str]) -> int:
    """The CLI contract: 0 when nothing failed or errored, else 1."""
    bad = {Status.FAIL, Status.ERROR}
    return 1 if any(Status(s) in bad for s in statuses) else 0


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def result_item(result: Result, catalogs: Catalogs) -> dict[str, Any]:
    """One result as the report carries it, with the clause ids `catalogs` give its check."""
    item = result.to_dict()
    item["message"] = _clip(item["message"])
    if "message_zh" in item:
        item["message_zh"] = _clip(item["message_zh"])
    item["evidence"] = jsonable(item["evidence"])
    item["clauses"] = catalogs.clause_ids(result.check_id)
    return item


def build_report(
    *,
    host_id: str,
    hostname: str,
    producer: str,
    inventory: Mapping[str, Any],
    results: Sequence[Result],
    catalogs: Catalogs,
    generated_at: datetime | None = None,
    report_id: str | None = None,
) -> dict[str, Any]:
    """The `medsec.report/v1` document for one host (or one scan, whose "host" is the scan)."""
    return {
        "schema": SCHEMA,
        "report_id": report_id or str(uuid.uuid4()),
        "host": {"id": host_id, "hostname": hostname},
        "generated_at": rfc3339(generated_at or datetime.now(UTC)),
        "agent": {"version": producer},
        "catalogs": catalogs.editions(),
        "inventory": dict(inventory),
        "summary": counts(r.status for r in results),
        "results": [result_item(r, catalogs) for r in results],
    }


def rejoin(document: Mapping[str, Any], catalogs: Catalogs) -> dict[str, Any]:
    """A report document with every result's clauses, and the editions, from the reader's
    catalogs instead of the writer's."""
    out = dict(document)
    out["results"] = [
        {**item, "clauses": catalogs.clause_ids(str(item.get("check_id", "")))}
        for item in document.get("results", [])
    ]
    out["catalogs"] = catalogs.editions()
    return out


# --------------------------------------------------------------------------- validation

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Text = Annotated[str, msgspec.Meta(max_length=8192)]


class ReportHost(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+:[0-9a-f]{16,128}$")]
    hostname: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


class ReportTitle(msgspec.Struct, frozen=True):
    en: _Text
    zh: _Text


class ReportResult(msgspec.Struct, frozen=True):
    check_id: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")]
    status: Literal["pass", "fail", "error", "not_applicable", "manual"]
    severity: Literal["low", "medium", "high", "critical"]
    title: ReportTitle
    message: _Text
    target: _Id | None = None
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    clauses: Annotated[list[_Id], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)
    message_zh: _Text | None = None


class ReportAgent(msgspec.Struct, frozen=True):
    version: Annotated[str, msgspec.Meta(max_length=64)]


class ReportCatalog(msgspec.Struct, frozen=True):
    standard: _Id
    edition: _Id
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class Report(msgspec.Struct, frozen=True):
    """`medsec.report/v1` as an agent or scanner renders it (DESIGN.md, Contracts). Unknown
    top-level keys are tolerated so a newer agent can add fields; the ones below are typed.
    `catalogs` is absent from reports of agents older than it."""

    schema: Literal["medsec.report/v1"]
    report_id: Annotated[
        str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    ]
    host: ReportHost
    generated_at: datetime
    agent: ReportAgent
    results: Annotated[list[ReportResult], msgspec.Meta(max_length=10_000)]
    inventory: dict[str, Any] = msgspec.field(default_factory=dict)
    summary: dict[str, int] = msgspec.field(default_factory=dict)
    catalogs: Annotated[list[ReportCatalog], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=list
    )


class ReportInvalid(ValueError):
    """A report failed validation; the message names the field."""


def parse_report(report_bytes: bytes) -> Report:
    """Validate a report at the boundary; raises `ReportInvalid` naming the problem."""
    try:
        report = msgspec.json.decode(report_bytes, type=Report)
    except RecursionError:
        raise ReportInvalid("report: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise ReportInvalid(f"report: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ReportInvalid(f"report is not JSON: {exc}") from None
    if report.generated_at.tzinfo is None:
        raise ReportInvalid("report: generated_at has no time zone")
    return report


def check_received(report: Report) -> None:
    """What a collector requires of a report it receives, beyond its schema; `ReportInvalid`
    naming the field. Its times must be ones a clock could give: an offset within ±14:00 and an
    instant from 2000 to 9999 in UTC (a year-1 time has no UTC instant at all; how far ahead a
    report may be is the collector's clock-skew setting). Its host id and nesting must fit what
    the store indexes and the API serialises. Kept apart from `parse_report`, which also re-reads
    reports stored long ago (a snapshot's), so that a rule added here never voids evidence kept."""
    _check_time("generated_at", report.generated_at)
    if len(report.host.id) > MAX_HOST_ID:
        raise ReportInvalid(f"report: host.id is longer than {MAX_HOST_ID} characters")
    if _deeper_than(report.inventory, MAX_DEPTH):
        raise ReportInvalid(f"report: inventory nests deeper than {MAX_DEPTH} levels")
    for n, result in enumerate(report.results):
        if _deeper_than(result.evidence, MAX_DEPTH):
            raise ReportInvalid(
                f"report: results[{n}].evidence nests deeper than {MAX_DEPTH} levels"
            )


def _check_time(name: str, moment: datetime) -> None:
    offset = moment.utcoffset()
    if offset is None:
        raise ReportInvalid(f"report: {name} has no time zone")
    if abs(offset) > MAX_OFFSET:
        raise ReportInvalid(f"report: {name} {moment.isoformat()} has a UTC offset beyond ±14:00")
    try:
        instant: datetime | None = moment.astimezone(UTC)
    except OverflowError:  # its UTC instant is in year 0 or 10000
        instant = None
    if instant is None or instant < EARLIEST:
        raise ReportInvalid(
            f"report: {name} {moment.isoformat()} is outside the years {EARLIEST.year}..9999 (UTC)"
        )


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether `value` nests more than `limit` levels (itself the first), level by level with no
    recursion: the containers only, so a wide document costs little."""
    level: list[Any] = [value]
    for _ in range(limit):
        inner = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
        if not inner:
            return False
        level = inner
    return True
