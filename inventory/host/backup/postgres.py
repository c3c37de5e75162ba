"""A PostgreSQL server's WAL archiving (primary) or replay (standby), read with one `psql` query,
and on a primary the WAL written after the last archived segment (see `wal`).

A primary's recovery point is the commit time of the oldest transaction the archive does not
hold yet; when none committed since the last archived segment (an idle server), everything is
recoverable and the recovery point is the gathering time. Where the WAL after the archive could
not be read, `last_archived_time` stands in, as a bound that holds only for a busy server. psql
finds its password in a passfile: the dsn must not carry one (argv is visible to every user).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from checks.facts.backup import (
    BackupSource,
    PostgresArchiving,
    RecoveryPoint,
    UnarchivedWal,
    WalRecords,
)
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.host.backup.common import (
    ConfigMissing,
    ToolSaid,
    age,
    first_line,
    parse_timestamp,
)
from inventory.host.backup.wal import (
    WalPosition,
    parse_lsn,
    place_after_archive,
    read_wal_records,
)
from inventory.runner import CommandFailed, Runner

_UTC = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
# WAL control functions raise during recovery, hence the CASEs.
POSTGRES_QUERY = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'archive_mode', current_setting('archive_mode'),
  'archived_count', a.archived_count,
  'last_archived_wal', a.last_archived_wal,
  'last_archived_time', to_char(a.last_archived_time AT TIME ZONE 'UTC', $UTC),
  'failed_count', a.failed_count,
  'last_failed_wal', a.last_failed_wal,
  'last_failed_time', to_char(a.last_failed_time AT TIME ZONE 'UTC', $UTC),
  'stats_reset', to_char(a.stats_reset AT TIME ZONE 'UTC', $UTC),
  'replay_time', to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', $UTC),
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'server_version_num', current_setting('server_version_num')::int,
  'wal_segment_size', pg_size_bytes(current_setting('wal_segment_size')),
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'data_directory', (SELECT setting FROM pg_settings WHERE name = 'data_directory'),
  'wal_writer_delay_ms', (SELECT setting::int FROM pg_settings WHERE name = 'wal_writer_delay'),
  'server_pids', (SELECT json_agg(pid) FROM (SELECT pid FROM pg_stat_activity
                  WHERE pid <> pg_backend_pid()
                  ORDER BY backend_start NULLS FIRST, pid LIMIT 8) p),
  'insert_lsn', CASE WHEN pg_is_in_recovery() THEN NULL
                ELSE pg_current_wal_insert_lsn()::text END,
  'write_lsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  'timeline', CASE WHEN pg_is_in_recovery() THEN NULL
              ELSE substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8) END
) FROM pg_stat_archiver a
""".replace("$UTC", _UTC).strip()
"""One row, one JSON object; every timestamp rendered in UTC whatever the session's TimeZone.
Nothing in it needs a privilege beyond connecting (`data_directory` is null without
pg_read_all_settings)."""


def _opt_time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a timestamp: {value!r}")
    return parse_timestamp(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} is not an integer: {value!r}")
    return value


def parse_wal_position(data: Mapping[str, Any]) -> WalPosition:
    """A primary's position from the status row. Raises ValueError when a part is missing."""
    insert, write = data.get("insert_lsn"), data.get("write_lsn")
    if not isinstance(insert, str) or not isinstance(write, str):
        raise ValueError("the server reported no WAL position")
    pids = data.get("server_pids") or []
    if not isinstance(pids, list) or not all(isinstance(p, int) for p in pids):
        raise ValueError(f"server_pids is not a list of process ids: {pids!r}")
    timeline = data.get("timeline")
    if not isinstance(timeline, str) or not re.fullmatch(r"[0-9A-F]{8}", timeline):
        raise ValueError(f"timeline is not 8 hex digits: {timeline!r}")
    return WalPosition(
        insert_lsn=parse_lsn(insert),
        write_lsn=parse_lsn(write),
        segment_size=_int(data, "wal_segment_size"),
        timeline=int(timeline, 16),
        major_version=_int(data, "server_version_num") // 10000,
        system_identifier=_opt_str(data, "system_identifier"),
        data_directory=_opt_str(data, "data_directory"),
        server_pids=tuple(pids),
        wal_writer_delay_s=_int(data, "wal_writer_delay_ms") / 1000,
    )


@dataclass(frozen=True)
class PostgresStatus:
    """The status row, parsed: the evidence, and a primary's position for reading its WAL."""

    detail: PostgresArchiving
    position: WalPosition | None


def parse_postgres_row(text: str) -> PostgresStatus:
    """The JSON row of `POSTGRES_QUERY`. On a primary with an archived segment, `unarchived`
    places the archive's end in the WAL; what was written since is left unread."""
    data = jsontext.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("in_recovery"), bool):
        raise ValueError(f"unexpected psql output {text.strip()[:80]!r}")
    archived = _opt_time(data, "last_archived_time")
    failed = _opt_time(data, "last_failed_time")
    replay = _opt_time(data, "replay_time")
    standby = data["in_recovery"]
    detail = PostgresArchiving(
        role="standby" if standby else "primary",
        archive_mode=str(data.get("archive_mode")),
        archived_count=_int(data, "archived_count"),
        last_archived_wal=_opt_str(data, "last_archived_wal"),
        last_archived_time=archived,
        failed_count=_int(data, "failed_count"),
        last_failed_wal=_opt_str(data, "last_failed_wal"),
        last_failed_time=failed,
        stats_reset=_opt_time(data, "stats_reset"),
        archiving_broken=failed is not None and (archived is None or failed > archived),
        replay_time=replay,
        receive_lsn=_opt_str(data, "receive_lsn"),
        replay_lsn=_opt_str(data, "replay_lsn"),
    )
    if standby or detail.archive_mode == "off" or detail.last_archived_wal is None:
        return PostgresStatus(detail, None)
    try:
        position = parse_wal_position(data)
        unarchived: UnarchivedWal | Unavailable = place_after_archive(
            position, detail.last_archived_wal
        )
    except ValueError as exc:
        return PostgresStatus(replace(detail, unarchived=Unavailable(str(exc))), None)
    return PostgresStatus(replace(detail, unarchived=unarchived), position)


def primary_recovery_point(detail: PostgresArchiving, now: datetime) -> datetime | None:
    """Up to when the archive holds every committed transaction (see the module docstring)."""
    if detail.last_archived_time is None:
        return None
    unarchived = detail.unarchived
    if isinstance(unarchived, UnarchivedWal):
        records = unarchived.records
        if records is None:
            return now
        if isinstance(records, WalRecords):
            if records.first_commit_time is not None:
                return records.first_commit_time
            if records.unread_reason is None and not records.undated:
                return now
    return detail.last_archived_time


def postgres_point(detail: PostgresArchiving, now: datetime) -> RecoveryPoint:
    if detail.role == "standby":
        replay = detail.replay_time
        detail = replace(detail, replay_lag_seconds=age(replay, now))
        missing = None if replay else "the standby has replayed no transaction since it started"
        return RecoveryPoint(replay, age(replay, now), detail, missing_reason=missing)
    newest = primary_recovery_point(detail, now)
    missing = None
    if detail.archive_mode == "off":
        missing = "archive_mode is off, so no WAL is archived"
    elif detail.last_archived_time is None:
        reset = detail.stats_reset.isoformat() if detail.stats_reset else "server start"
        missing = f"no WAL segment archived since the statistics reset ({reset})"
        if detail.last_failed_wal:
            missing += f"; archiving {detail.last_failed_wal} failed"
    return RecoveryPoint(newest, age(newest, now), detail, missing_reason=missing)


def parse_postgres_status(text: str, now: datetime) -> RecoveryPoint:
    """The JSON row of `POSTGRES_QUERY`, without reading the WAL after the archive."""
    return postgres_point(parse_postgres_row(text).detail, now)


_URI_SCHEMES = ("postgresql://", "postgres://")


def dsn_has_password(dsn: str) -> bool:
    """True when a libpq URI or key=value string carries a password (it would show in `ps`)."""
    if dsn.startswith(_URI_SCHEMES):
        parts = urlsplit(dsn)
        return parts.password is not None or "password" in parse_qs(parts.query)
    return re.search(r"(?:^|\s)password\s*=", dsn) is not None


WRITE_POSITION_QUERY = "SELECT pg_current_wal_lsn()"


def _query(runner: Runner, source: BackupSource, query: str, timeout: float) -> str:
    argv = [
        "psql",
        "--no-psqlrc",
        "--no-password",  # never prompt: a prompt would hang until the timeout
        "--quiet",
        "--no-align",
        "--tuples-only",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={source.dsn}",
        f"--command={query}",
    ]
    env = {
        "PGCONNECT_TIMEOUT": str(max(2, int(timeout / 2))),
        "PGAPPNAME": "medsec-agent",
    }
    try:
        return runner.run(argv, timeout=timeout, env=env).stdout
    except CommandFailed as exc:
        raise ToolSaid(first_line(exc.stderr, strip="psql: error:")) from None


def read_postgres(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.dsn:
        raise ConfigMissing("no dsn configured")
    if dsn_has_password(source.dsn):
        raise ConfigMissing("the dsn contains a password; use passfile= or ~/.pgpass instead")
    status = parse_postgres_row(_query(runner, source, POSTGRES_QUERY, timeout))
    detail, unarchived = status.detail, status.detail.unarchived
    if (
        status.position is not None
        and isinstance(unarchived, UnarchivedWal)
        and unarchived.records is not None
    ):
        records = read_wal_records(
            runner,
            status.position,
            unarchived.start_lsn,
            timeout,
            lambda: parse_lsn(_query(runner, source, WRITE_POSITION_QUERY, timeout).strip()),
        )
        detail = replace(detail, unarchived=replace(unarchived, records=records))
    return postgres_point(detail, now())
