"""Backup facts: the configured backup sources, and the newest recovery point each one offers.

A source is a restic or borg repository, a PostgreSQL server's WAL archiving (or a standby's
replay), or files matched by a glob. `BackupStatus` keeps the source's configuration next to what
was read from it, so a source that could not be read (`Unavailable`) still carries its name, kind
and site into the report. A source that offers no recovery point at all has `newest=None` and a
`missing_reason`; no epoch or zero timestamp ever stands in for "none".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from checks.model import Unavailable

BackupKind = Literal["restic", "borg", "postgres", "path"]


@dataclass(frozen=True)
class BackupSource:
    """One configured backup source (an entry of the agent config's `backups:` list)."""

    name: str
    """The name the report uses as the result's target."""
    kind: BackupKind
    """How the source is read: `restic snapshots`, `borg list`, `psql` or `find`."""
    rpo_minutes: int | None = None
    """This source's recovery point objective; None: the check's `default_rpo_minutes`."""
    site: str | None = None
    """Where the copy lives (a data-centre or building name), compared with the host's site."""
    repository: str | None = None
    """restic/borg: the repository location (path or URL) passed with `-r` / as REPO."""
    password_file: str | None = None
    """restic: the `--password-file`; borg: the passphrase file read by
    `BORG_PASSCOMMAND="cat FILE"`. The file's content is never read into medsec."""
    dsn: str | None = None
    """postgres: a libpq connection string or URI for `psql -d`. Never contains a password
    (use `passfile=` or ~/.pgpass): argv is visible to every user of the host."""
    glob: str | None = None
    """path: an absolute glob; `*`, `?` and `[...]` match within one path component
    (Python `fnmatch` per component: a leading `*` also matches dot-files); no `**`."""


@dataclass(frozen=True)
class ResticSnapshots:
    """From `restic snapshots --json` (every snapshot in the repository, all hosts)."""

    snapshot_count: int
    """Snapshots listed."""
    snapshot_id: str | None = None
    """`id` of the newest snapshot by `time`."""
    hostname: str | None = None
    """`hostname` of the newest snapshot."""
    paths: tuple[str, ...] = ()
    """`paths` of the newest snapshot."""


@dataclass(frozen=True)
class BorgArchives:
    """From `borg list --json REPO` (checkpoint archives excluded: they are not restorable)."""

    archive_count: int
    """Complete archives listed."""
    archive: str | None = None
    """`name` of the newest archive by `time`."""
    checkpoints_ignored: int = 0
    """Archives named `*.checkpoint` (or `.checkpoint.N`) that were not counted."""


@dataclass(frozen=True)
class WalRecords:
    """From `pg_waldump` over the WAL a primary wrote after its last archived segment, read from
    the server's own pg_wal on this host (read-only), with every record classified."""

    start_lsn: str
    """Where the reading started: `UnarchivedWal.start_lsn`."""
    end_lsn: str
    """Where it stopped: the server's write position (`pg_current_wal_lsn()`). Every commit made
    before the status query lies before it: PostgreSQL writes a commit at once, or within
    3 × wal_writer_delay when synchronous_commit is off, and medsec waits that long and asks
    again when WAL was still in the server's buffers and no commit was found before them."""
    records_read: int
    """Records `pg_waldump` printed (at most its `--limit`)."""
    counts: Mapping[str, int]
    """Records read, by `rmgr/TYPE` as pg_waldump names them (`XLOG/CHECKPOINT_ONLINE`,
    `Standby/RUNNING_XACTS`, `Heap/INSERT`, `Transaction/COMMIT`)."""
    bookkeeping: int
    """Records that hold no data: checkpoints, segment switches, running-transactions snapshots,
    hint-bit page images and the like, which an idle server writes on its own."""
    changes: int
    """Every other record: changes of transactions (committed or not) and maintenance (VACUUM)."""
    first_change: str | None
    """The first change record, `rmgr/TYPE at LSN`; None when only bookkeeping was read."""
    first_commit_time: datetime | None
    """Commit time (UTC) of the first `COMMIT`, `COMMIT_PREPARED` or `PREPARE` record read: the
    oldest committed transaction missing from the archive. None: no commit in what was read."""
    first_commit_lsn: str | None
    """LSN of that record."""
    unread_reason: str | None
    """Why not every record up to `end_lsn` was looked at for a commit (more records than the
    limit, pg_waldump stopped on an error); None when all were, so that `first_commit_time`
    None means no transaction committed since `start_lsn`. Past the first records (`--limit`)
    only Transaction records are read."""
    unwritten_bytes: int = 0
    """WAL inserted before the status query but still in the server's buffers when read (changes
    of open transactions; no commit, see `end_lsn`)."""
    undated: tuple[str, ...] = ()
    """Records among those classified that may make data durable without a commit record medsec
    can date (a custom resource manager, a non-transactional logical message), as
    `rmgr/TYPE at LSN`."""


@dataclass(frozen=True)
class UnarchivedWal:
    """What a primary wrote after the end of its last archived WAL segment: the data that a
    restore from the archive would lose if the server were lost now."""

    start_lsn: str
    """The first byte not in the archive: the end of `last_archived_wal` (its start for a
    `.partial` or `.backup` file, whose own segment may not be archived yet)."""
    insert_lsn: str
    """`pg_current_wal_insert_lsn()` when gathered."""
    bytes_written: int
    """`insert_lsn` − `start_lsn`: WAL written since (a new segment's 40-byte page header
    counts as nothing written)."""
    records: WalRecords | Unavailable | None
    """What those bytes are; None when nothing was written. Unavailable when pg_waldump could not
    read them (the server's pg_wal is not on this host or not readable, pg_waldump missing)."""


@dataclass(frozen=True)
class PostgresArchiving:
    """From one `psql` query: `pg_is_in_recovery()`, `pg_stat_archiver` and, on a standby,
    `pg_last_xact_replay_timestamp()`, `pg_last_wal_receive_lsn()`, `pg_last_wal_replay_lsn()`."""

    role: Literal["primary", "standby"]
    """`pg_is_in_recovery()`: true → standby."""
    archive_mode: str
    """`current_setting('archive_mode')`: off, on or always."""
    archived_count: int
    """`pg_stat_archiver.archived_count` since `stats_reset`."""
    last_archived_wal: str | None
    """`pg_stat_archiver.last_archived_wal`."""
    last_archived_time: datetime | None
    """`pg_stat_archiver.last_archived_time` (UTC): the recovery point of a primary."""
    failed_count: int
    """`pg_stat_archiver.failed_count` since `stats_reset`."""
    last_failed_wal: str | None
    """`pg_stat_archiver.last_failed_wal`."""
    last_failed_time: datetime | None
    """`pg_stat_archiver.last_failed_time` (UTC)."""
    stats_reset: datetime | None
    """`pg_stat_archiver.stats_reset` (UTC): the counters and times above start here."""
    archiving_broken: bool
    """A failure is newer than the last success (`last_failed_time > last_archived_time`, or a
    failure and no success): the archive chain has a gap from `last_failed_wal` on."""
    replay_time: datetime | None = None
    """Standby: `pg_last_xact_replay_timestamp()` (UTC), the primary's commit time of the last
    replayed transaction: the recovery point of a standby. An idle primary makes it age too."""
    replay_lag_seconds: float | None = None
    """Standby: gathering time − `replay_time`."""
    receive_lsn: str | None = None
    """Standby: `pg_last_wal_receive_lsn()`."""
    replay_lsn: str | None = None
    """Standby: `pg_last_wal_replay_lsn()`."""
    unarchived: UnarchivedWal | Unavailable | None = None
    """Primary with a last archived segment: what was written after it. Unavailable when the
    server's WAL position could not be placed against the archive (the last archived file is a
    timeline history file, the server did not report its position). None on a standby, with
    archive_mode off, or when nothing was archived since the statistics reset."""


@dataclass(frozen=True)
class PathFiles:
    """From `find PREFIX -mindepth N -maxdepth N -type f -printf '%T@ %p\\0'`, filtered by the
    glob with Python's `fnmatch`, component by component."""

    files_matched: int
    """Regular files matching the glob."""
    newest_file: str | None = None
    """The matching file with the latest mtime."""


SourceDetail = ResticSnapshots | BorgArchives | PostgresArchiving | PathFiles


@dataclass(frozen=True)
class RecoveryPoint:
    """What one readable source said about its newest recovery point."""

    newest: datetime | None
    """UTC time of the newest recovery point: restic snapshot `time`, borg archive `time`, a
    standby's `replay_time`, the newest file's mtime. A primary: the commit time of the oldest
    transaction missing from the archive (`WalRecords.first_commit_time`); the gathering time
    when no transaction committed after the last archived segment (only bookkeeping records, or
    nothing, written since); else `last_archived_time`, a bound that holds for a busy server but
    not for an idle one (see `PostgresArchiving.unarchived`).
    None when the source offers none (see `missing_reason`); never a placeholder epoch."""
    age_seconds: float | None
    """Gathering time − `newest`; negative when the source's clock is ahead of this host's."""
    detail: SourceDetail
    """Kind-specific evidence."""
    missing_reason: str | None = None
    """Why `newest` is None ("the repository holds no snapshot", "archive_mode is off", ...)."""


@dataclass(frozen=True)
class BackupStatus:
    """One configured source and what it said, or why it could not be read."""

    source: BackupSource
    """The source as configured."""
    reading: RecoveryPoint | Unavailable
    """Unavailable: the tool is missing, timed out, the password was wrong, the repository or
    server could not be reached, or its output could not be parsed (reason says which)."""


@dataclass(frozen=True)
class BackupFacts:
    """Every configured backup source of this host."""

    host_site: str | None
    """The host's own site (agent config), compared with each source's `site` for off-site
    copies; None when not configured."""
    sources: tuple[BackupStatus, ...]
    """One entry per configured source, in configuration order."""
