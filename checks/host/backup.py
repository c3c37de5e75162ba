"""Backup checks: every source's newest recovery point is within its RPO, and a recent copy lives
at a site other than the host's. Pure functions of `BackupFacts`; one result per source for the
RPO, one per host for the off-site copy.

Decisions: an unreadable source is `error`, never `pass`; a source with no recovery point at all
fails; a PostgreSQL primary whose last archiving failure is newer than its last success fails
however recent that success is, because the WAL chain has a gap from the failed segment on; a
recovery point more than five minutes in the future is `error` (a clock is wrong, the age means
nothing). For the off-site check the whole host is one dataset: it passes when at least one
source declared at another site has a recovery point within its RPO.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from checks.facts import HostFacts
from checks.facts.backup import (
    BackupFacts,
    BackupStatus,
    BorgArchives,
    PathFiles,
    PostgresArchiving,
    RecoveryPoint,
    ResticSnapshots,
)
from checks.model import Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check

FUTURE_TOLERANCE_S = 300
"""A recovery point this far ahead of the agent's clock is still taken at face value."""


def _backups(facts: Any) -> BackupFacts:
    return require(facts.backups, BackupFacts)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A short human duration: 45 s, 4 min 59 s, 2 h 5 min, 3 d 4 h."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _evidence(status: BackupStatus, rpo_minutes: int | None = None) -> dict[str, Any]:
    source = status.source
    evidence: dict[str, Any] = {"kind": source.kind, "site": source.site}
    if rpo_minutes is not None:
        evidence["rpo_seconds"] = rpo_minutes * 60
    reading = status.reading
    if isinstance(reading, Unavailable):
        evidence["unavailable"] = reading.reason
        return evidence
    evidence["timestamp"] = rfc3339(reading.newest) if reading.newest else None
    evidence["age_seconds"] = (
        round(reading.age_seconds, 3) if reading.age_seconds is not None else None
    )
    if reading.missing_reason:
        evidence["missing_reason"] = reading.missing_reason
    for f in dataclasses.fields(reading.detail):
        evidence[f.name] = _plain(getattr(reading.detail, f.name))
    return evidence


def _what(reading: RecoveryPoint) -> str:
    """The recovery point in a sysadmin's words."""
    detail = reading.detail
    if isinstance(detail, ResticSnapshots):
        return f"restic snapshot {(detail.snapshot_id or '?')[:8]}"
    if isinstance(detail, BorgArchives):
        return f"borg archive {detail.archive}"
    if isinstance(detail, PostgresArchiving):
        if detail.role == "standby":
            return "transaction replayed on the standby"
        return f"archived WAL segment {detail.last_archived_wal}"
    if isinstance(detail, PathFiles):
        return f"file {detail.newest_file}"
    raise TypeError(f"unknown source detail {type(detail).__name__}")


def _broken_archiving(detail: PostgresArchiving) -> str:
    since = rfc3339(detail.last_failed_time) if detail.last_failed_time else "?"
    last_ok = (
        f"last success {detail.last_archived_wal} at {rfc3339(detail.last_archived_time)}"
        if detail.last_archived_time
        else "no success since the statistics reset"
    )
    return (
        f"WAL archiving is failing: {detail.last_failed_wal} could not be archived at {since} "
        f"({detail.failed_count} failures; {last_ok}); the archive has a gap from there on"
    )


def _rpo_of(status: BackupStatus, default_rpo_minutes: int) -> int:
    own = status.source.rpo_minutes
    return own if own is not None else default_rpo_minutes


def _fresh(status: BackupStatus, rpo_minutes: int) -> bool | None:
    """Within the RPO (True), not (False), or unknown (None: the source could not be read)."""
    reading = status.reading
    if isinstance(reading, Unavailable):
        return None
    detail = reading.detail
    if (
        isinstance(detail, PostgresArchiving)
        and detail.role == "primary"
        and detail.archiving_broken
    ):
        return False
    if reading.newest is None or reading.age_seconds is None:
        return False
    if reading.age_seconds < -FUTURE_TOLERANCE_S:
        return None
    return reading.age_seconds <= rpo_minutes * 60


def _rpo_outcome(status: BackupStatus, rpo_minutes: int) -> Outcome:
    name = status.source.name
    evidence = _evidence(status, rpo_minutes)
    reading = status.reading
    if isinstance(reading, Unavailable):
        return errored(f"source unreadable: {reading.reason}", evidence, target=name)
    detail = reading.detail
    if (
        isinstance(detail, PostgresArchiving)
        and detail.role == "primary"
        and detail.archiving_broken
    ):
        return failed(_broken_archiving(detail), evidence, target=name)
    if reading.newest is None or reading.age_seconds is None:
        return failed(f"no backup found: {reading.missing_reason}", evidence, target=name)
    what, when = _what(reading), rfc3339(reading.newest)
    age = reading.age_seconds
    if age < -FUTURE_TOLERANCE_S:
        return errored(
            f"newest {what} ({when}) lies {duration(age)} in the future: a clock is wrong",
            evidence,
            target=name,
        )
    rpo = duration(rpo_minutes * 60)
    if age > rpo_minutes * 60:
        return failed(
            f"newest {what} ({when}) is {duration(age)} old, older than the RPO of {rpo}",
            evidence,
            target=name,
        )
    return passed(
        f"newest {what} ({when}) is {duration(max(age, 0))} old, within the RPO of {rpo}",
        evidence,
        target=name,
    )


@check(
    "backup.rpo",
    title_en="Each backup source's newest recovery point is within its RPO",
    title_zh="各备份源最近一次可恢复的备份时间满足恢复点目标（RPO）",
    severity=Severity.HIGH,
    needs=("backups",),
    params={"default_rpo_minutes": 15},
)
def backup_rpo(facts: HostFacts, default_rpo_minutes: int) -> Iterator[Outcome]:
    backups = _backups(facts)
    if not backups.sources:
        yield failed(
            "no backup source configured: list this host's backups under `backups:` in the config",
            {"sources": 0},
        )
        return
    for status in backups.sources:
        yield _rpo_outcome(status, _rpo_of(status, default_rpo_minutes))


def _same_site(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


@check(
    "backup.offsite",
    title_en="A recent copy of the host's data is kept at another site",
    title_zh="重要数据已通过网络实时备份至异地备份场地",
    severity=Severity.HIGH,
    needs=("backups",),
    params={"default_rpo_minutes": 15},
)
def backup_offsite(facts: HostFacts, default_rpo_minutes: int) -> Iterator[Outcome]:
    backups = _backups(facts)
    host_site = backups.host_site
    if host_site is None or not host_site.strip():
        yield errored(
            "the host's site is not configured: set site in the agent config so off-site "
            "copies can be told apart",
            {"host_site": None},
            target="host",
        )
        return
    offsite = [
        s for s in backups.sources if s.source.site and not _same_site(s.source.site, host_site)
    ]
    evidence: dict[str, Any] = {
        "host_site": host_site,
        "sources": {s.source.name: _evidence(s, _rpo_of(s, default_rpo_minutes)) for s in offsite},
    }
    if not offsite:
        unsited = [s.source.name for s in backups.sources if not s.source.site]
        onsite = [s.source.name for s in backups.sources if s.source.site]
        evidence["on_site"] = onsite
        evidence["without_site"] = unsited
        if not backups.sources:
            reason = "no backup source configured"
        elif unsited:
            reason = (
                f"no backup source is declared at another site (sources without a site: "
                f"{', '.join(unsited)}; set site for each)"
            )
        else:
            reason = f"every backup source is at the host's own site {host_site}"
        yield failed(reason, evidence, target=host_site)
        return
    verdicts = {s.source.name: _fresh(s, _rpo_of(s, default_rpo_minutes)) for s in offsite}
    for status in offsite:
        reading = status.reading
        if verdicts[status.source.name] and isinstance(reading, RecoveryPoint):
            yield passed(
                f"{status.source.name} at site {status.source.site} holds a recovery point "
                f"{duration(max(reading.age_seconds or 0, 0))} old, within its RPO",
                evidence,
                target=host_site,
            )
            return
    unknown = [name for name, verdict in verdicts.items() if verdict is None]
    if unknown:
        yield errored(
            "no off-site copy is known to be within its RPO, and these off-site sources could "
            f"not be judged: {', '.join(unknown)}",
            evidence,
            target=host_site,
        )
        return
    stale = "; ".join(f"{s.source.name} at {s.source.site}: {_why_stale(s)}" for s in offsite)
    yield failed(
        f"off-site copies exist but none is within its RPO ({stale})", evidence, target=host_site
    )


def _why_stale(status: BackupStatus) -> str:
    reading = status.reading
    if isinstance(reading, Unavailable):  # not reached: unreadable sources make the check error
        return reading.reason
    detail = reading.detail
    if (
        isinstance(detail, PostgresArchiving)
        and detail.role == "primary"
        and detail.archiving_broken
    ):
        return f"WAL archiving failing since {detail.last_failed_wal}"
    if reading.age_seconds is None:
        return f"no backup ({reading.missing_reason})"
    return f"{duration(reading.age_seconds)} old"
