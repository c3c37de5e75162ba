"""PostgreSQL WAL written after the last archived segment: where the archive ends in the server's
WAL, and what the server wrote since, read with `pg_waldump` from the server's own pg_wal.

An idle primary stops filling segments, so its last archived segment grows old while nothing is
at risk; a busy primary whose archiver lags has committed transactions that only its pg_wal
holds. What tells them apart is the WAL after the archive's end: an idle server still writes
records of its own that hold no data (a running-transactions snapshot after a segment switch,
checkpoints), the same records PostgreSQL leaves out when `archive_timeout` decides whether an
idle server needs a switch. Every record is classified: bookkeeping, a commit (with its time), a
change of a transaction or of maintenance, or a record medsec cannot date.

Everything is read-only. Positions come from SQL functions every role may call. The pg_wal
directory is found from `data_directory` (visible to superusers and pg_read_all_settings) or
from the working directory of one of the server's own processes (`/proc/PID/cwd`: every
PostgreSQL process runs in its data directory), and is used only when its `global/pg_control`
carries the server's system identifier, so a same-named directory of another server is never
read. pg_waldump comes from the packages' paths or PATH (never from beside the running server's
executable) and must be of the server's major version.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from checks.facts.backup import UnarchivedWal, WalRecords
from checks.model import Unavailable
from inventory.host.backup.common import parse_timestamp
from inventory.runner import GatherError, Runner

LONG_PAGE_HEADER = 40
"""Bytes of a segment's first page header (SizeOfXLogLongPHD): a server that switched segments
and wrote nothing since reports its insert position just past it."""
RECORD_LIMIT = 5000
"""Records classified in one pass; a busy server shows its first commit long before this."""
TRANSACTION_LIMIT = 1000
"""Transaction records read in the second pass, when the first found no commit."""
VERSION_TIMEOUT_S = 2.0
WRITE_MARGIN_S = 0.1
"""Added to 3 × wal_writer_delay before reading WAL that was still in the server's buffers."""

BOOKKEEPING: frozenset[tuple[str, str]] = frozenset(
    {
        ("XLOG", "CHECKPOINT_SHUTDOWN"),
        ("XLOG", "CHECKPOINT_ONLINE"),
        ("XLOG", "CHECKPOINT_REDO"),
        ("XLOG", "SWITCH"),
        ("XLOG", "NOOP"),
        # A page image taken because a hint bit changed: the page's data is older WAL's.
        ("XLOG", "FPI_FOR_HINT"),
        ("XLOG", "PARAMETER_CHANGE"),
        ("XLOG", "RESTORE_POINT"),
        ("XLOG", "BACKUP_END"),
        ("XLOG", "END_OF_RECOVERY"),
        ("XLOG", "OVERWRITE_CONTRECORD"),
        ("Standby", "RUNNING_XACTS"),
    }
)
"""Records that hold no data: what an idle server writes on its own."""

COMMITS: frozenset[tuple[str, str]] = frozenset(
    {
        ("Transaction", "COMMIT"),
        ("Transaction", "COMMIT_PREPARED"),
        # A prepared transaction is durable: it is committed later without its data again.
        ("Transaction", "PREPARE"),
    }
)
"""Records that make a transaction's changes durable, each with its time."""

BUILTIN_RMGRS: frozenset[str] = frozenset(
    {
        "XLOG",
        "Transaction",
        "Storage",
        "CLOG",
        "Database",
        "Tablespace",
        "MultiXact",
        "RelMap",
        "Standby",
        "Heap2",
        "Heap",
        "Btree",
        "Hash",
        "Gin",
        "Gist",
        "Sequence",
        "SPGist",
        "BRIN",
        "CommitTs",
        "ReplicationOrigin",
        "Generic",
        "LogicalMessage",
    }
)
"""PostgreSQL 10-17's resource managers: their changes become durable through a commit."""


# ----------------------------------------------------------------------------- positions

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_SEGMENT = re.compile(
    r"(?P<tli>[0-9A-F]{8})(?P<log>[0-9A-F]{8})(?P<seg>[0-9A-F]{8})"
    r"(?P<suffix>\.partial|\.[0-9A-F]{8}\.backup)?"
)
_HISTORY = re.compile(r"[0-9A-F]{8}\.history")


def parse_lsn(text: str) -> int:
    """`0/700028` → 0x700028. Raises ValueError."""
    m = _LSN.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a WAL location: {text!r}")
    return int(m[1], 16) << 32 | int(m[2], 16)


def format_lsn(value: int) -> str:
    """As PostgreSQL prints a WAL location: `%X/%X`."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def archive_end(last_archived_wal: str, segment_size: int) -> int:
    """The first WAL byte the archive does not hold, given the archiver's last archived file.

    The archiver takes ready files in name order and retries a failing one, so every segment up
    to the last archived one is archived. A `.partial` segment (a promoted standby's last one) and
    a `.backup` history file (written when a base backup stops, possibly before its segment is
    complete) vouch only for the segments before theirs. Raises ValueError for a timeline
    history file, which names no segment, and for a name that is not a WAL file.
    """
    if _HISTORY.fullmatch(last_archived_wal):
        raise ValueError(
            f"the last archived file {last_archived_wal} is a timeline history file, "
            "which names no WAL segment"
        )
    m = _SEGMENT.fullmatch(last_archived_wal)
    if m is None:
        raise ValueError(f"the last archived file {last_archived_wal!r} is not a WAL file name")
    if segment_size <= 0 or (1 << 32) % segment_size:
        raise ValueError(f"implausible wal_segment_size {segment_size}")
    segno = int(m["log"], 16) * ((1 << 32) // segment_size) + int(m["seg"], 16)
    return (segno if m["suffix"] else segno + 1) * segment_size


@dataclass(frozen=True)
class WalPosition:
    """A primary's WAL position and what finding its pg_wal needs, from the status query."""

    insert_lsn: int
    """`pg_current_wal_insert_lsn()`."""
    write_lsn: int
    """`pg_current_wal_lsn()`: written to pg_wal, so pg_waldump can read up to it."""
    segment_size: int
    """`wal_segment_size` in bytes."""
    timeline: int
    """The timeline of the insert position (first 8 hex digits of its segment name)."""
    major_version: int
    """`server_version_num` // 10000."""
    system_identifier: str | None
    """`pg_control_system().system_identifier`, decimal."""
    data_directory: str | None
    """`data_directory` from pg_settings; None when the role may not see it."""
    server_pids: tuple[int, ...]
    """Process ids of the server's other processes (pg_stat_activity), oldest first."""
    wal_writer_delay_s: float = 0.2
    """`wal_writer_delay`: an asynchronous commit reaches pg_wal within three times this."""


def place_after_archive(position: WalPosition, last_archived_wal: str) -> UnarchivedWal:
    """Where the archive ends and how much was written since; `records` is left unread (an
    `Unavailable` placeholder) when anything was. Raises ValueError (see `archive_end`)."""
    start = archive_end(last_archived_wal, position.segment_size)
    written = position.insert_lsn - start
    if written < 0:
        raise ValueError(
            f"the last archived segment {last_archived_wal} ends at {format_lsn(start)}, beyond "
            f"the server's WAL position {format_lsn(position.insert_lsn)} (is the archive "
            "another server's?)"
        )
    nothing = written <= LONG_PAGE_HEADER
    records = None if nothing else Unavailable("pg_waldump was not run")
    return UnarchivedWal(format_lsn(start), format_lsn(position.insert_lsn), written, records)


# ----------------------------------------------------------------------------- pg_waldump output

_RECORD = re.compile(
    r"rmgr: (?P<rmgr>\S+)\s+len \(rec/tot\):\s*\d+/\s*\d+, tx:\s*\d+, "
    r"lsn: (?P<lsn>[0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (?P<desc>.*)"
)
# pg_waldump prints times with strftime("%Y-%m-%d %H:%M:%S") + ".%06d %Z" in its own TZ.
_DESC_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) (\S+?);?(?:\s|$)")


@dataclass(frozen=True)
class WalRecord:
    """One line of `pg_waldump` output."""

    rmgr: str
    type: str
    lsn: str
    desc: str

    @property
    def kind(self) -> str:
        return f"{self.rmgr}/{self.type}"


def parse_waldump(text: str) -> list[WalRecord]:
    """`pg_waldump` records, one per line. Raises ValueError on a line that is not a record."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("first record is after"):
            continue
        m = _RECORD.fullmatch(line.rstrip())
        if m is None:
            raise ValueError(f"unexpected pg_waldump line {line[:80]!r}")
        desc = m["desc"].strip()
        records.append(WalRecord(m["rmgr"], desc.split(" ", 1)[0] or "?", m["lsn"], desc))
    return records


def commit_time(record: WalRecord) -> datetime:
    """The time a COMMIT, COMMIT_PREPARED or PREPARE record carries, printed in UTC (pg_waldump
    runs with TZ=UTC0). Raises ValueError."""
    m = _DESC_TIME.search(record.desc)
    if m is None:
        raise ValueError(f"{record.kind} at {record.lsn} carries no time: {record.desc[:80]!r}")
    if m[2] not in ("UTC", "GMT", "UCT"):
        raise ValueError(f"{record.kind} at {record.lsn}: time in zone {m[2]!r}, not UTC")
    return parse_timestamp(f"{m[1]}Z")


def undatable(record: WalRecord) -> bool:
    """A record that may make data durable without a commit medsec can date."""
    if record.rmgr not in BUILTIN_RMGRS or record.type.startswith("UNKNOWN"):
        return True
    return record.rmgr == "LogicalMessage" and "non-transactional" in record.desc


def summarize(
    records: Sequence[WalRecord],
    start_lsn: str,
    end_lsn: str,
    unread_reason: str | None,
    commit: WalRecord | None = None,
    *,
    unwritten: int = 0,
) -> WalRecords:
    """Classify the records read; `commit` is the first commit found by a later pass over
    Transaction records only, when `records` held none."""
    counts = Counter(r.kind for r in records)
    bookkeeping = sum(1 for r in records if (r.rmgr, r.type) in BOOKKEEPING)
    changes = [r for r in records if (r.rmgr, r.type) not in BOOKKEEPING]
    commits = [r for r in records if (r.rmgr, r.type) in COMMITS]
    first_commit = commits[0] if commits else commit
    return WalRecords(
        start_lsn=start_lsn,
        end_lsn=end_lsn,
        records_read=len(records),
        counts=dict(sorted(counts.items())),
        bookkeeping=bookkeeping,
        changes=len(changes),
        first_change=f"{changes[0].kind} at {changes[0].lsn}" if changes else None,
        first_commit_time=commit_time(first_commit) if first_commit else None,
        first_commit_lsn=first_commit.lsn if first_commit else None,
        # Once a commit is found, later records cannot make the oldest waiting one older.
        unread_reason=None if first_commit else unread_reason,
        undated=tuple(f"{r.kind} at {r.lsn}" for r in records if undatable(r)),
        unwritten_bytes=unwritten,
    )


# ----------------------------------------------------------------------------- reading


class _NotHere(GatherError):
    """The server's pg_wal or a pg_waldump for it is not usable from this host."""


def _identifier_of(runner: Runner, data_directory: str) -> str:
    # ControlFileData starts with the 64-bit system identifier, in the host's byte order.
    control = runner.read_bytes(f"{data_directory.rstrip('/')}/global/pg_control")
    if len(control) < 8:
        raise _NotHere(f"{data_directory}/global/pg_control is too short")
    return str(int.from_bytes(control[:8], sys.byteorder))


def _resolved(runner: Runner, path: str) -> str | None:
    # A /proc link medsec may not follow (another user's process, no such process) stays as is.
    target = runner.realpath(path)
    return None if target.startswith("/proc/") or target == path else target


def locate_data_directory(runner: Runner, position: WalPosition) -> str:
    """The server's data directory on this host, checked by system identifier. Raises _NotHere
    with the reasons."""
    candidates: list[str] = []
    if position.data_directory:
        candidates.append(position.data_directory)
    for pid in position.server_pids:
        cwd = _resolved(runner, f"/proc/{pid}/cwd")
        if cwd is not None and cwd not in candidates:
            candidates.append(cwd)
    if not candidates:
        raise _NotHere(
            "the server's data directory is not visible from this host (data_directory needs "
            "pg_read_all_settings, and none of its processes is in /proc here)"
        )
    reasons = []
    for directory in candidates:
        try:
            found = _identifier_of(runner, directory)
        except GatherError as exc:
            reasons.append(str(exc))
            continue
        if position.system_identifier is None or found == position.system_identifier:
            return directory
        reasons.append(
            f"{directory} belongs to another server (system identifier {found}, "
            f"the server's is {position.system_identifier})"
        )
    raise _NotHere("the server's data directory is not readable here: " + "; ".join(reasons))


_WALDUMP_VERSION = re.compile(r"pg_waldump \(PostgreSQL\) (\d+)")


def find_waldump(runner: Runner, position: WalPosition) -> str:
    """A pg_waldump of the server's major version, from the packages' own paths or the runner's
    PATH only: never next to the running server's executable, which an unprivileged user could
    have started from a folder of their own. Raises _NotHere."""
    major = position.major_version
    candidates = [
        f"/usr/lib/postgresql/{major}/bin/pg_waldump",  # Debian, Ubuntu
        f"/usr/pgsql-{major}/bin/pg_waldump",  # PGDG RPMs
        runner.which("pg_waldump"),  # RHEL, openEuler, Kylin (postgresql-contrib)
    ]
    seen: list[str] = []
    for path in dict.fromkeys(c for c in candidates if c):
        if not runner.exists(path):
            continue
        try:
            out = runner.run([path, "--version"], timeout=VERSION_TIMEOUT_S).stdout
        except GatherError as exc:
            seen.append(f"{path}: {exc}")
            continue
        m = _WALDUMP_VERSION.search(out)
        if m and int(m[1]) == major:
            return path
        seen.append(f"{path} is not PostgreSQL {major}'s ({out.strip()[:60]})")
    detail = f" ({'; '.join(seen)})" if seen else ""
    raise _NotHere(f"no pg_waldump for PostgreSQL {major} on this host{detail}")


def _waldump(runner: Runner, argv: list[str], timeout: float) -> tuple[list[WalRecord], str | None]:
    """Records printed and, when pg_waldump stopped on an error, its message."""
    result = runner.run(argv, timeout=timeout, check=False, env={"TZ": "UTC0"})
    records = parse_waldump(result.stdout)
    if result.returncode == 0:
        return records, None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return records, (lines[-1] if lines else f"pg_waldump exited {result.returncode}")


def _read_range(
    runner: Runner, base: list[str], start: int, end: int, timeout: float
) -> tuple[list[WalRecord], str | None, WalRecord | None]:
    """Records from `start` to `end`, why not all were looked at (None: all were), and the first
    commit a second, Transaction-only pass found when the first found none."""
    if end <= start + LONG_PAGE_HEADER:
        return [], None, None
    span = [*base, f"--start={format_lsn(start)}", f"--end={format_lsn(end)}"]
    records, error = _waldump(runner, [*span, f"--limit={RECORD_LIMIT}"], timeout)
    if error is not None or len(records) < RECORD_LIMIT or any(_commits(records)):
        return records, error, None
    # Many records and no commit yet (a long load, a VACUUM): look at transactions only.
    try:
        found, error = _waldump(
            runner, [*span, "--rmgr=Transaction", f"--limit={TRANSACTION_LIMIT}"], timeout
        )
    except (GatherError, ValueError) as exc:
        found, error = [], str(exc)
    commit = next(_commits(found), None)
    if error is None and commit is None and len(found) >= TRANSACTION_LIMIT:
        error = f"more than {TRANSACTION_LIMIT} transaction records and none a commit"
    return records, error, commit


def _commits(records: Sequence[WalRecord]) -> Iterator[WalRecord]:
    return (r for r in records if (r.rmgr, r.type) in COMMITS)


def read_wal_records(
    runner: Runner,
    position: WalPosition,
    start_lsn: str,
    timeout: float,
    write_position: Callable[[], int],
) -> WalRecords | Unavailable:
    """Classify what the server wrote from `start_lsn` on.

    pg_waldump reads pg_wal only up to the server's write position. A commit is written at once,
    or within 3 × wal_writer_delay when synchronous_commit is off; so when WAL was still in the
    server's buffers and no commit was found before it, medsec waits that long, asks
    `write_position()` again and reads on: every commit made before the status query is then
    in what was read, and what is still unwritten holds no commit made before it.
    """
    start = parse_lsn(start_lsn)
    try:
        data_directory = locate_data_directory(runner, position)
        base = [
            find_waldump(runner, position),
            f"--path={data_directory.rstrip('/')}/pg_wal",
            f"--timeline={position.timeline}",
        ]
        write = position.write_lsn
        records, unread, commit = _read_range(runner, base, start, write, timeout)
        buffered = position.insert_lsn > write
        if buffered and unread is None and commit is None and not any(_commits(records)):
            wait = 3 * position.wal_writer_delay_s + WRITE_MARGIN_S
            if wait > timeout / 2:
                return Unavailable(
                    f"WAL after {format_lsn(write)} is still in the server's buffers, and "
                    f"3 × wal_writer_delay ({wait:g} s) is longer than medsec waits"
                )
            time.sleep(wait)
            write = max(write, write_position())
            records, unread, commit = _read_range(runner, base, start, write, timeout)
    except GatherError as exc:
        return Unavailable(str(exc))
    except ValueError as exc:
        return Unavailable(f"unexpected pg_waldump output: {exc}")
    try:
        return summarize(
            records,
            start_lsn,
            format_lsn(write),
            unread,
            commit,
            unwritten=max(position.insert_lsn - write, 0),
        )
    except ValueError as exc:
        return Unavailable(f"unexpected pg_waldump output: {exc}")
