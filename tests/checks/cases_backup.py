"""Recorded backup facts for `backup.rpo` and `backup.offsite`, with the status each must produce.

Same shape as `tests/checks/cases.py`: check id → [(case name, facts, expected status, words the
message must contain)]. Every case has one source per `backup.rpo` case, so one result.
"""

from __future__ import annotations

from dataclasses import replace
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
    UnarchivedWal,
    WalRecords,
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


IDLE_RECORDS = WalRecords(
    start_lsn="0/7000000",
    end_lsn="0/7000110",
    records_read=3,
    counts={"Standby/RUNNING_XACTS": 2, "XLOG/CHECKPOINT_ONLINE": 1},
    bookkeeping=3,
    changes=0,
    first_change=None,
    first_commit_time=None,
    first_commit_lsn=None,
    unread_reason=None,
)


def commit_records(commit_minutes_ago: float) -> WalRecords:
    return WalRecords(
        start_lsn="0/7000000",
        end_lsn="0/70A1B28",
        records_read=812,
        counts={"Heap/INSERT": 800, "Standby/RUNNING_XACTS": 1, "Transaction/COMMIT": 11},
        bookkeeping=1,
        changes=811,
        first_change="Heap/INSERT at 0/7000060",
        first_commit_time=NOW - timedelta(minutes=commit_minutes_ago),
        first_commit_lsn="0/7000A28",
        unread_reason=None,
    )


def pg_after(
    archived_minutes_ago: float, records: WalRecords | Unavailable | None, *, written: int = 272
) -> RecoveryPoint:
    """A primary whose last segment was archived that long ago, and what it wrote since; the
    recovery point as the gatherer sets it (`inventory.host.backup.postgres`)."""
    base = pg_primary(archived_minutes_ago)
    assert isinstance(base.detail, PostgresArchiving)
    detail = replace(
        base.detail,
        unarchived=UnarchivedWal("0/7000000", f"0/{0x7000000 + written:X}", written, records),
    )
    newest = base.newest
    if records is None:
        newest = NOW
    elif isinstance(records, WalRecords) and records.first_commit_time is not None:
        newest = records.first_commit_time
    elif isinstance(records, WalRecords) and records.unread_reason is None and not records.undated:
        newest = NOW
    assert newest is not None
    return RecoveryPoint(newest, (NOW - newest).total_seconds(), detail)


NOT_LOCAL = Unavailable(
    "the server's data directory is not visible from this host (data_directory needs "
    "pg_read_all_settings, and none of its processes is in /proc here)"
)

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
            "idle postgres: last segment 3 h old, only checkpoints since",
            backups(status("his-pg", "postgres", pg_after(180, IDLE_RECORDS))),
            Status.PASS,
            "no transaction committed since WAL segment 000000010000000000000006 was archived",
        ),
        (
            "idle postgres: nothing written since the last segment",
            backups(status("his-pg", "postgres", pg_after(600, None, written=40))),
            Status.PASS,
            "nothing was written since WAL segment 000000010000000000000006",
        ),
        (
            "postgres: uncommitted changes only",
            backups(
                status(
                    "his-pg",
                    "postgres",
                    pg_after(
                        180,
                        replace(
                            IDLE_RECORDS,
                            counts={"Heap2/PRUNE": 1, "Heap2/VACUUM": 1},
                            bookkeeping=0,
                            changes=2,
                            first_change="Heap2/PRUNE at 0/7000028",
                        ),
                    ),
                )
            ),
            Status.PASS,
            "2 changes of transactions not committed or of maintenance such as VACUUM",
        ),
        (
            "postgres: archiver lagging behind committed transactions",
            backups(status("his-pg", "postgres", pg_after(45, commit_records(44)))),
            Status.FAIL,
            "not archived yet: 44 min of commits at risk, longer than the RPO of 15 min",
        ),
        (
            "postgres: busy, commits waiting 2 min",
            backups(status("his-pg", "postgres", pg_after(3, commit_records(2)))),
            Status.PASS,
            "not archived yet: 2 min of commits at risk, within the RPO of 15 min",
        ),
        (
            "postgres: WAL after the archive not readable here, segment old",
            backups(status("his-pg", "postgres", pg_after(180, NOT_LOCAL))),
            Status.ERROR,
            "cannot tell whether transactions committed since wait for the archive",
        ),
        (
            "postgres: WAL after the archive not readable here, segment recent",
            backups(status("his-pg", "postgres", pg_after(4, NOT_LOCAL))),
            Status.PASS,
            "newest archived WAL segment 000000010000000000000006",
        ),
        (
            "postgres: a record medsec cannot date",
            backups(
                status(
                    "his-pg",
                    "postgres",
                    pg_after(
                        180,
                        replace(IDLE_RECORDS, undated=("custom129/INSERT at 0/7000060",)),
                    ),
                )
            ),
            Status.ERROR,
            "records medsec cannot date (custom129/INSERT at 0/7000060)",
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
            "idle primary archiving to the DR site",
            backups(status("his-pg", "postgres", pg_after(300, IDLE_RECORDS), site="dr-site")),
            Status.PASS,
            "his-pg at site dr-site",
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
