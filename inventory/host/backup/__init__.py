"""Backup recency: the newest recovery point of every configured source, read with the source's
own tool through the runner (`restic`, `borg`, `psql` and `pg_waldump`, `find`).

Modules: `common` (timestamps, errors, helpers), `repos` (restic and borg), `postgres` (WAL
archiving and replay), `wal` (the WAL a primary wrote after its last archived segment), `files`
(globs of backup files) and `collect` (the entry point). Every `parse_*` function is pure and
takes the tool's output. This package re-exports their public names.
"""

from __future__ import annotations

from inventory.host.backup.collect import READERS, collect_backups, collect_source
from inventory.host.backup.common import parse_timestamp
from inventory.host.backup.files import (
    GlobPlan,
    find_argv,
    parse_find_output,
    plan_glob,
    read_path,
)
from inventory.host.backup.postgres import (
    POSTGRES_QUERY,
    PostgresStatus,
    dsn_has_password,
    parse_postgres_row,
    parse_postgres_status,
    postgres_point,
    primary_recovery_point,
    read_postgres,
)
from inventory.host.backup.repos import (
    borg_env,
    parse_borg_list,
    parse_restic_snapshots,
    read_borg,
    read_restic,
)
from inventory.host.backup.wal import (
    WalPosition,
    WalRecord,
    archive_end,
    commit_time,
    format_lsn,
    parse_lsn,
    parse_waldump,
    place_after_archive,
    read_wal_records,
    summarize,
)

__all__ = [
    "POSTGRES_QUERY",
    "READERS",
    "GlobPlan",
    "PostgresStatus",
    "WalPosition",
    "WalRecord",
    "archive_end",
    "borg_env",
    "collect_backups",
    "collect_source",
    "commit_time",
    "dsn_has_password",
    "find_argv",
    "format_lsn",
    "parse_borg_list",
    "parse_find_output",
    "parse_lsn",
    "parse_postgres_row",
    "parse_postgres_status",
    "parse_restic_snapshots",
    "parse_timestamp",
    "parse_waldump",
    "place_after_archive",
    "plan_glob",
    "postgres_point",
    "primary_recovery_point",
    "read_borg",
    "read_path",
    "read_postgres",
    "read_restic",
    "read_wal_records",
    "summarize",
]
