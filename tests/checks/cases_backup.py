"""Recorded backup facts for `backup.rpo` and `backup.offsite`, with the status each must produce.

Same shape as `tests/checks/cases.py`: check id → [(case name, facts, expected status, words the
message must contain)]. Every case has one source per `backup.rpo` case, so one result.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from checks.facts import HostFacts
from checks.facts.backup import (
    BackupFacts,
    BackupKind,
    BackupSource,
    BackupStatus,
    BorgArchives,
    PathFiles,
    PostgresArchiving,
    RecoveryPoint,
    ResticSnapshots,
    SourceDetail,
)
from checks.model import Status, Unavailable

NOW = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
HOST_SITE = "dc-main"

RESTIC = ResticSnapshots(
    snapshot_count=96, snapshot_id="3f2a1b7c" + "0" * 56, hostname="his-db-01", paths=("/srv",)
)
BORG = BorgArchives(archive_count=40, archive="his-db-01-2026-03-02T07:50")


def point(
    age_minutes: float | None, detail: SourceDetail, missing: str | None = None
) -> RecoveryPoint:
    if age_minutes is None:
        return RecoveryPoint(None, None, detail, missing_reason=missing)
    return RecoveryPoint(NOW - timedelta(minutes=age_minutes), age_minutes * 60, detail)


def source(
    name: str, kind: BackupKind, *, site: str | None = HOST_SITE, rpo: int | None = None
) -> BackupSource:
    return BackupSource(name=name, kind=kind, site=site, rpo_minutes=rpo, repository="/backup")


def status(
    name: str,
    kind: BackupKind,
    reading: RecoveryPoint | Unavailable,
    *,
    site: str | None = HOST_SITE,
    rpo: int | None = None,
) -> BackupStatus:
    return BackupStatus(source(name, kind, site=site, rpo=rpo), reading)


def backups(*statuses: BackupStatus, host_site: str | None = HOST_SITE) -> HostFacts:
    return HostFacts(backups=BackupFacts(host_site=host_site, sources=statuses))


def pg_primary(age_minutes: float, *, broken: bool = False) -> RecoveryPoint:
    archived = NOW - timedelta(minutes=age_minutes)
    detail = PostgresArchiving(
        role="primary",
        archive_mode="on",
        archived_count=120,
        last_archived_wal="000000010000000000000006",
        last_archived_time=archived,
        failed_count=3 if broken else 0,
        last_failed_wal="000000010000000000000007" if broken else None,
        last_failed_time=NOW - timedelta(seconds=30) if broken else None,
        stats_reset=NOW - timedelta(days=3),
        archiving_broken=broken,
    )
    return RecoveryPoint(archived, age_minutes * 60, detail)


ARCHIVE_OFF = RecoveryPoint(
    None,
    None,
    PostgresArchiving(
        role="primary",
        archive_mode="off",
        archived_count=0,
        last_archived_wal=None,
        last_archived_time=None,
        failed_count=0,
        last_failed_wal=None,
        last_failed_time=None,
        stats_reset=NOW - timedelta(days=3),
        archiving_broken=False,
    ),
    missing_reason="archive_mode is off, so no WAL is archived",
)


def pg_standby(lag_minutes: float) -> RecoveryPoint:
    replay = NOW - timedelta(minutes=lag_minutes)
    detail = PostgresArchiving(
        role="standby",
        archive_mode="on",
        archived_count=0,
        last_archived_wal=None,
        last_archived_time=None,
        failed_count=0,
        last_failed_wal=None,
        last_failed_time=None,
        stats_reset=NOW - timedelta(days=3),
        archiving_broken=False,
        replay_time=replay,
        replay_lag_seconds=lag_minutes * 60,
        receive_lsn="0/5000148",
        replay_lsn="0/5000148",
    )
    return RecoveryPoint(replay, lag_minutes * 60, detail)


WRONG_PASSWORD = Unavailable("restic: wrong password or no key found")

CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "backup.rpo": [
        (
            "restic 5 min old",
            backups(status("restic-local", "restic", point(5, RESTIC))),
            Status.PASS,
            "within the RPO of 15 min",
        ),
        (
            "restic 20 min old",
            backups(status("restic-local", "restic", point(20, RESTIC))),
            Status.FAIL,
            "20 min old, older than the RPO of 15 min",
        ),
        (
            "source rpo wins",
            backups(status("restic-local", "restic", point(20, RESTIC), rpo=30)),
            Status.PASS,
            "RPO of 30 min",
        ),
        (
            "borg empty",
            backups(
                status(
                    "borg-nas",
                    "borg",
                    point(None, BorgArchives(0), "the repository holds no complete archive"),
                )
            ),
            Status.FAIL,
            "no backup found: the repository holds no complete archive",
        ),
        (
            "wrong password",
            backups(status("restic-local", "restic", WRONG_PASSWORD)),
            Status.ERROR,
            "wrong password",
        ),
        (
            "postgres archiving broken though recent",
            backups(status("his-pg", "postgres", pg_primary(2, broken=True))),
            Status.FAIL,
            "000000010000000000000007 could not be archived",
        ),
        (
            "postgres archiving recent",
            backups(status("his-pg", "postgres", pg_primary(2))),
            Status.PASS,
            "archived WAL segment 000000010000000000000006",
        ),
        (
            "postgres archive_mode off",
            backups(status("his-pg", "postgres", ARCHIVE_OFF)),
            Status.FAIL,
            "archive_mode is off",
        ),
        (
            "standby replaying",
            backups(status("his-pg-standby", "postgres", pg_standby(1))),
            Status.PASS,
            "replayed on the standby",
        ),
        (
            "dump file 3 h old",
            backups(
                status(
                    "nightly-dump",
                    "path",
                    point(185, PathFiles(7, newest_file="/backup/his-0500.dump")),
                )
            ),
            Status.FAIL,
            "/backup/his-0500.dump",
        ),
        (
            "clock ahead",
            backups(status("restic-local", "restic", point(-60, RESTIC))),
            Status.ERROR,
            "in the future",
        ),
        ("no source configured", backups(), Status.FAIL, "no backup source configured"),
        (
            "facts unavailable",
            HostFacts(backups=Unavailable("backup configuration unreadable")),
            Status.ERROR,
            "backup configuration unreadable",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
    "backup.offsite": [
        (
            "recent copy at the DR site",
            backups(
                status("restic-local", "restic", point(5, RESTIC)),
                status("borg-dr", "borg", point(10, BORG), site="dr-site"),
            ),
            Status.PASS,
            "borg-dr at site dr-site",
        ),
        (
            "standby at the DR site",
            backups(
                status("his-pg", "postgres", pg_primary(1, broken=True)),
                status("his-pg-standby", "postgres", pg_standby(1), site="dr-site"),
            ),
            Status.PASS,
            "his-pg-standby",
        ),
        (
            "all copies on site",
            backups(
                status("restic-local", "restic", point(5, RESTIC)),
                status("borg-nas", "borg", point(5, BORG), site="DC-Main"),
            ),
            Status.FAIL,
            "at the host's own site dc-main",
        ),
        (
            "no site declared",
            backups(status("restic-local", "restic", point(5, RESTIC), site=None)),
            Status.FAIL,
            "set site",
        ),
        (
            "off-site copy stale",
            backups(
                status("restic-local", "restic", point(5, RESTIC)),
                status("borg-dr", "borg", point(26 * 60, BORG), site="dr-site"),
            ),
            Status.FAIL,
            "borg-dr at dr-site: 1 d 2 h old",
        ),
        (
            "off-site repository empty",
            backups(
                status(
                    "borg-dr",
                    "borg",
                    point(None, BorgArchives(0), "the repository holds no complete archive"),
                    site="dr-site",
                )
            ),
            Status.FAIL,
            "no backup (the repository holds no complete archive)",
        ),
        (
            "off-site archiving broken",
            backups(status("his-pg", "postgres", pg_primary(1, broken=True), site="dr-site")),
            Status.FAIL,
            "WAL archiving failing since 000000010000000000000007",
        ),
        (
            "off-site copy unreadable",
            backups(
                status("restic-local", "restic", point(5, RESTIC)),
                status("restic-dr", "restic", WRONG_PASSWORD, site="dr-site"),
            ),
            Status.ERROR,
            "could not be judged: restic-dr",
        ),
        (
            "host site unknown",
            backups(status("borg-dr", "borg", point(5, BORG), site="dr-site"), host_site=None),
            Status.ERROR,
            "site is not configured",
        ),
        ("no source configured", backups(), Status.FAIL, "no backup source configured"),
    ],
}
