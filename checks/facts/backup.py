"""Backup facts: the configured backup sources, and the newest recovery point each one offers.

A source is a restic or borg repository, a PostgreSQL server's WAL archiving (or a standby's
replay), or files matched by a glob. `BackupStatus` keeps the source's configuration next to what
was read from it, so a source that could not be read (`Unavailable`) still carries its name, kind
and site into the report. A source that offers no recovery point at all has `newest=None` and a
`missing_reason`; no epoch or zero timestamp ever stands in for "none".
"""

from __future__ import annotations

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
    primary's `last_archived_time`, a standby's `replay_time`, the newest file's mtime.
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
