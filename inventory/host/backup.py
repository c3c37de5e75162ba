"""Backup recency: the newest recovery point of every configured source, read with the source's
own tool through the runner (`restic`, `borg`, `psql`, `find`).

Each source is read on its own, bounded by `timeout`; a missing tool, a wrong password, an
unreachable repository, a timeout or unparsable output becomes `Unavailable(reason)` in that
source's slot and the next source is read. Secrets never pass through argv, the environment or
medsec's memory: restic gets `--password-file`, borg runs `cat FILE` as its `BORG_PASSCOMMAND`,
psql finds its password in a passfile. Neither tool writes caches into $HOME: restic runs with
`--no-cache`, borg with `BORG_BASE_DIR` in a private directory made (and removed) for the call,
and in `TZ=UTC0` because borg 1.2 prints archive times in local time without an offset.
Every `parse_*` function is pure and takes the tool's output.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from checks.facts.backup import (
    BackupFacts,
    BackupSource,
    BackupStatus,
    BorgArchives,
    PathFiles,
    PostgresArchiving,
    RecoveryPoint,
    ResticSnapshots,
)
from checks.model import Unavailable
from inventory.runner import CommandFailed, GatherError, Runner

# Earlier than this is a placeholder (Go's zero time, a zero epoch), never a real backup.
_PLAUSIBLE_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
_HELPER_TIMEOUT_S = 5.0


class _ConfigMissing(GatherError):
    """The source's configuration lacks what its kind needs (the config should have refused)."""


class _ToolSaid(GatherError):
    """The tool refused, with its own one-line reason (never containing a secret)."""


_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(text: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 / RFC 3339 timestamp as an aware UTC datetime.

    Accepts nanoseconds (restic, Go) by truncating to microseconds, `Z` or a numeric offset. A
    timestamp without an offset is refused unless `naive_is_utc` (borg run with TZ=UTC0).
    Raises ValueError, also for placeholder times before 2000.
    """
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {text!r}")
    frac = (m["frac"] or "")[:6].ljust(6, "0")
    tz = m["tz"]
    if tz is None:
        if not naive_is_utc:
            raise ValueError(f"timestamp {text!r} has no UTC offset")
        tz = "+00:00"
    elif tz == "Z":
        tz = "+00:00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    value = datetime.fromisoformat(f"{m['date']}T{m['time']}.{frac}{tz}").astimezone(UTC)
    if value < _PLAUSIBLE_SINCE:
        raise ValueError(f"implausible timestamp {text!r} (a placeholder, not a backup time)")
    return value


def _age(newest: datetime | None, now: datetime) -> float | None:
    return None if newest is None else (now - newest).total_seconds()


def _first_line(text: str, *, prefer: str | None = None, strip: str = "") -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if prefer is not None:
        preferred = [line for line in lines if line.startswith(prefer)]
        lines = preferred or lines
    if not lines:
        return "no message"
    line = lines[0]
    return line.removeprefix(strip).strip() if strip else line


# ----------------------------------------------------------------------------- restic


def parse_restic_snapshots(text: str, now: datetime) -> RecoveryPoint:
    """`restic snapshots --json`: the newest snapshot by `time` over every host and path.

    Not `--latest 1`: that keeps one snapshot per host/path group, not the newest overall.
    """
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("restic snapshots --json did not print a list")
    newest: tuple[datetime, Mapping[str, Any]] | None = None
    for snap in data:
        if not isinstance(snap, dict) or not isinstance(snap.get("time"), str):
            raise ValueError(f"snapshot without a time: {str(snap)[:80]}")
        when = parse_timestamp(snap["time"])
        if newest is None or when > newest[0]:
            newest = (when, snap)
    if newest is None:
        return RecoveryPoint(
            None, None, ResticSnapshots(0), missing_reason="the repository holds no snapshot"
        )
    when, snap = newest
    paths = snap.get("paths") or []
    detail = ResticSnapshots(
        snapshot_count=len(data),
        snapshot_id=str(snap.get("id") or snap.get("short_id") or "") or None,
        hostname=snap.get("hostname") if isinstance(snap.get("hostname"), str) else None,
        paths=tuple(str(p) for p in paths) if isinstance(paths, list) else (),
    )
    return RecoveryPoint(when, _age(when, now), detail)


def read_restic(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.repository:
        raise _ConfigMissing("no repository configured")
    if not source.password_file:
        raise _ConfigMissing("no password_file configured")
    _require_file(runner, source.password_file, "password file")
    argv = [
        "restic",
        "--repo",
        source.repository,
        "--password-file",
        source.password_file,
        # Read-only: no lock (a stale lock must not hide the snapshots), no cache in $HOME.
        "--no-lock",
        "--no-cache",
        "--json",
        "snapshots",
    ]
    try:
        result = runner.run(argv, timeout=timeout)
    except CommandFailed as exc:
        raise _ToolSaid(_first_line(exc.stderr, prefer="Fatal:", strip="Fatal:")) from None
    return parse_restic_snapshots(result.stdout, now())


# ----------------------------------------------------------------------------- borg

_CHECKPOINT = re.compile(r"\.checkpoint(\.\d+)?$")


def parse_borg_list(text: str, now: datetime) -> RecoveryPoint:
    """`borg list --json REPO` run with TZ=UTC0: the newest complete archive by `time`.

    borg 1.2 prints `time`/`start` in the process's local time without an offset; the gatherer
    pins that to UTC, so an offset-less time is UTC here. Checkpoint archives are skipped.
    """
    data = json.loads(text)
    archives = data.get("archives") if isinstance(data, dict) else None
    if not isinstance(archives, list):
        raise ValueError("borg list --json printed no archives list")
    complete: list[tuple[datetime, str]] = []
    checkpoints = 0
    for archive in archives:
        if not isinstance(archive, dict):
            raise ValueError(f"unexpected archive entry {str(archive)[:80]}")
        name = str(archive.get("name") or archive.get("archive") or "")
        if _CHECKPOINT.search(name):
            checkpoints += 1
            continue
        stamp = archive.get("time") or archive.get("start")
        if not isinstance(stamp, str):
            raise ValueError(f"archive {name!r} has no time")
        complete.append((parse_timestamp(stamp, naive_is_utc=True), name))
    if not complete:
        reason = "the repository holds no complete archive"
        if checkpoints:
            reason += f" (only {checkpoints} checkpoint archive(s))"
        return RecoveryPoint(
            None, None, BorgArchives(0, checkpoints_ignored=checkpoints), missing_reason=reason
        )
    when, name = max(complete)
    detail = BorgArchives(len(complete), archive=name, checkpoints_ignored=checkpoints)
    return RecoveryPoint(when, _age(when, now), detail)


@contextmanager
def _private_dir(runner: Runner) -> Iterator[str]:
    """A 0700 directory on the runner's host, removed afterwards (borg's BORG_BASE_DIR)."""
    path = runner.run(
        ["mktemp", "-d", "-t", "medsec-backup.XXXXXXXXXX"], timeout=_HELPER_TIMEOUT_S
    ).stdout.strip()
    if not path.startswith("/"):
        raise _ToolSaid(f"mktemp printed {path!r}, not a directory")
    try:
        yield path
    finally:
        runner.run(["rm", "-rf", "--", path], timeout=_HELPER_TIMEOUT_S, check=False)


def borg_env(source: BackupSource, base_dir: str) -> dict[str, str]:
    """The environment for one `borg list`: no secret in it, only the command that reads it."""
    env = {
        "BORG_BASE_DIR": base_dir,
        # A moved or unknown unencrypted repository is refused, never silently trusted.
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
        # borg 1.2 --json prints local time without an offset: make local time UTC.
        "TZ": "UTC0",
    }
    if source.password_file:
        env["BORG_PASSCOMMAND"] = f"cat {shlex.quote(source.password_file)}"
    else:
        # An empty passphrase instead of a prompt on the terminal that would hang until timeout.
        env["BORG_PASSPHRASE"] = ""
    return env


def read_borg(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.repository:
        raise _ConfigMissing("no repository configured")
    if source.password_file:
        _require_file(runner, source.password_file, "passphrase file")
    # Every archive, not `--last 1`: the manifest is small, and the count is evidence.
    argv = ["borg", "list", "--json", "--bypass-lock", source.repository]
    with _private_dir(runner) as base_dir:
        try:
            result = runner.run(argv, timeout=timeout, env=borg_env(source, base_dir))
        except CommandFailed as exc:
            reason = _first_line(exc.stderr)
            if "unknown unencrypted repository" in reason:
                reason += " (medsec reads only encrypted borg repositories)"
            raise _ToolSaid(reason) from None
    return parse_borg_list(result.stdout, now())


# ----------------------------------------------------------------------------- postgres


_UTC = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
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
  'replay_lsn', pg_last_wal_replay_lsn()::text
) FROM pg_stat_archiver a
""".replace("$UTC", _UTC).strip()
"""One row, one JSON object; every timestamp rendered in UTC whatever the session's TimeZone."""


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


def parse_postgres_status(text: str, now: datetime) -> RecoveryPoint:
    """The JSON row of `POSTGRES_QUERY`.

    Primary: the recovery point is `last_archived_time`; none while archive_mode is off or
    nothing was archived since the statistics were reset. Standby: `replay_time`.
    """
    data = json.loads(text)
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
        replay_lag_seconds=_age(replay, now),
        receive_lsn=_opt_str(data, "receive_lsn"),
        replay_lsn=_opt_str(data, "replay_lsn"),
    )
    if standby:
        newest = replay
        missing = None if replay else "the standby has replayed no transaction since it started"
    else:
        newest = archived
        missing = None
        if detail.archive_mode == "off":
            missing = "archive_mode is off, so no WAL is archived"
        elif archived is None:
            reset = detail.stats_reset.isoformat() if detail.stats_reset else "server start"
            missing = f"no WAL segment archived since the statistics reset ({reset})"
            if detail.last_failed_wal:
                missing += f"; archiving {detail.last_failed_wal} failed"
    return RecoveryPoint(newest, _age(newest, now), detail, missing_reason=missing)


_URI_SCHEMES = ("postgresql://", "postgres://")


def dsn_has_password(dsn: str) -> bool:
    """True when a libpq URI or key=value string carries a password (it would show in `ps`)."""
    if dsn.startswith(_URI_SCHEMES):
        parts = urlsplit(dsn)
        return parts.password is not None or "password" in parse_qs(parts.query)
    return re.search(r"(?:^|\s)password\s*=", dsn) is not None


def read_postgres(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.dsn:
        raise _ConfigMissing("no dsn configured")
    if dsn_has_password(source.dsn):
        raise _ConfigMissing("the dsn contains a password; use passfile= or ~/.pgpass instead")
    argv = [
        "psql",
        "--no-psqlrc",
        "--no-password",  # never prompt: a prompt would hang until the timeout
        "--quiet",
        "--no-align",
        "--tuples-only",
        "--set=ON_ERROR_STOP=1",
        f"--dbname={source.dsn}",
        f"--command={POSTGRES_QUERY}",
    ]
    env = {
        "PGCONNECT_TIMEOUT": str(max(2, int(timeout / 2))),
        "PGAPPNAME": "medsec-agent",
    }
    try:
        result = runner.run(argv, timeout=timeout, env=env)
    except CommandFailed as exc:
        raise _ToolSaid(_first_line(exc.stderr, strip="psql: error:")) from None
    return parse_postgres_status(result.stdout, now())


# ----------------------------------------------------------------------------- path

_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class GlobPlan:
    """How one glob is listed: the literal directory it starts from and the components below."""

    prefix: str
    """The longest leading run of components without wildcards."""
    parts: tuple[str, ...]
    """The remaining components; each matched with `fnmatch.fnmatchcase`. Empty: a literal file."""


def plan_glob(pattern: str) -> GlobPlan:
    """Split an absolute glob at its first wildcard component. Raises ValueError."""
    if not pattern.startswith("/"):
        raise ValueError(f"glob {pattern!r} is not an absolute path")
    components = [c for c in pattern.split("/") if c]
    if "**" in components:
        raise ValueError(f"glob {pattern!r}: '**' is not supported, one level per component")
    fixed: list[str] = []
    for component in components:
        if _MAGIC.search(component):
            break
        fixed.append(component)
    return GlobPlan("/" + "/".join(fixed), tuple(components[len(fixed) :]))


def find_argv(plan: GlobPlan) -> list[str]:
    """`find` lists candidates with their mtimes; `parse_find_output` applies the glob exactly.

    `-H` follows a symlinked starting directory (a /backup link to a mount), nothing below it.
    `-name` narrows the listing by the last component when fnmatch(3) agrees with Python's
    fnmatch on it (no backslash, which only fnmatch(3) treats as an escape).
    """
    argv = ["find", "-H", plan.prefix]
    depth = str(len(plan.parts))
    argv += ["-mindepth", depth, "-maxdepth", depth, "-type", "f"]
    if plan.parts and "\\" not in plan.parts[-1]:
        argv += ["-name", plan.parts[-1]]
    return [*argv, "-printf", "%T@ %p\\0"]


def parse_find_output(text: str, plan: GlobPlan) -> list[tuple[str, datetime]]:
    """`%T@ %p\\0` records → (path, mtime UTC) of the files whose path matches the glob."""
    matched: list[tuple[str, datetime]] = []
    base = plan.prefix.rstrip("/")
    for record in text.split("\0"):
        if not record:
            continue
        stamp, sep, path = record.partition(" ")
        if not sep:
            raise ValueError(f"unexpected find output {record[:80]!r}")
        if plan.parts:
            if not path.startswith(base + "/"):
                continue
            rest = path[len(base) + 1 :].split("/")
            if len(rest) != len(plan.parts) or not all(
                fnmatch.fnmatchcase(c, p) for c, p in zip(rest, plan.parts, strict=True)
            ):
                continue
        elif path != plan.prefix:
            continue
        mtime = datetime.fromtimestamp(float(stamp), UTC)
        if mtime >= _PLAUSIBLE_SINCE:
            matched.append((path, mtime))
    return matched


def read_path(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.glob:
        raise _ConfigMissing("no glob configured")
    try:
        plan = plan_glob(source.glob)
    except ValueError as exc:
        raise _ConfigMissing(str(exc)) from None
    if not runner.exists(plan.prefix):
        return RecoveryPoint(
            None, None, PathFiles(0), missing_reason=f"{plan.prefix} does not exist"
        )
    try:
        result = runner.run(find_argv(plan), timeout=timeout)
    except CommandFailed as exc:
        raise _ToolSaid(_first_line(exc.stderr)) from None
    files = parse_find_output(result.stdout, plan)
    if not files:
        return RecoveryPoint(
            None, None, PathFiles(0), missing_reason=f"no file matches {source.glob}"
        )
    path, mtime = max(files, key=lambda f: f[1])
    return RecoveryPoint(mtime, _age(mtime, now()), PathFiles(len(files), newest_file=path))


# ----------------------------------------------------------------------------- all sources


def _require_file(runner: Runner, path: str, what: str) -> None:
    if not runner.exists(path):
        raise _ConfigMissing(f"{what} {path} does not exist")


_TOOLS = {"restic": "restic", "borg": "borg", "postgres": "psql", "path": "find"}

Reader = Callable[[Runner, BackupSource, Callable[[], datetime], float], RecoveryPoint]

READERS: Mapping[str, Reader] = {
    "restic": read_restic,
    "borg": read_borg,
    "postgres": read_postgres,
    "path": read_path,
}


def collect_source(
    runner: Runner, source: BackupSource, *, now: datetime | None = None, timeout: float = 20.0
) -> BackupStatus:
    """Read one source; anything that stops it becomes `Unavailable` naming the tool's reason."""

    def clock() -> datetime:
        return now if now is not None else datetime.now(UTC)

    reader = READERS.get(source.kind)
    if reader is None:
        return BackupStatus(source, Unavailable(f"unknown backup kind {source.kind!r}"))
    try:
        return BackupStatus(source, reader(runner, source, clock, timeout))
    except _ToolSaid as exc:
        return BackupStatus(source, Unavailable(f"{_TOOLS[source.kind]}: {exc}"))
    except GatherError as exc:  # missing tool, timeout, access denied, missing config
        return BackupStatus(source, Unavailable(str(exc)))
    except ValueError as exc:  # also json.JSONDecodeError and UnicodeDecodeError
        return BackupStatus(
            source, Unavailable(f"unexpected output from {_TOOLS[source.kind]}: {exc}")
        )


def collect_backups(
    runner: Runner,
    sources: Sequence[BackupSource],
    host_site: str | None,
    *,
    now: datetime | None = None,
    timeout: float = 20.0,
) -> BackupFacts:
    """Every configured source, each bounded by `timeout` seconds. `now` fixes the clock (tests);
    by default each source's age is measured when its tool has answered."""
    return BackupFacts(
        host_site=host_site,
        sources=tuple(collect_source(runner, s, now=now, timeout=timeout) for s in sources),
    )
