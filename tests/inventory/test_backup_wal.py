"""`backup.rpo` on a PostgreSQL primary judged by what it wrote after its last archived segment,
against a real server whose archiver the test can hold back, and the pure WAL parsers on
`pg_waldump` output captured from PostgreSQL 15 (tests/fixtures/raw/backup/).

The differential test generates workloads (commits, aborts, open and prepared transactions,
checkpoints, segment switches, VACUUM; archiver free or held back) and compares medsec's verdict
with a truth computed without medsec's code: the archive folder's own files say where the
archive ends, and the test's client knows where each transaction it saw committed (or prepared)
ended in the WAL. Truth rule: the RPO fails exactly when some such transaction ends after the
archive's end; the clock is moved 30 minutes ahead, past the 15-minute RPO, so any committed
transaction still waiting fails and an idle server passes however old its last segment is.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.backup import (
    BackupFacts,
    BackupSource,
    PostgresArchiving,
    RecoveryPoint,
    UnarchivedWal,
    WalRecords,
)
from checks.host import backup as backup_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.backup import (
    archive_end,
    collect_source,
    commit_time,
    parse_postgres_row,
    parse_waldump,
    summarize,
)
from inventory.host.backup.wal import RECORD_LIMIT, WalPosition, read_wal_records
from inventory.runner import CommandResult, LocalRunner, SourceMissing
from tests.inventory.pg_cluster import FAST, Cluster, free_port, sql, wait_for

psycopg = pytest.importorskip("psycopg")

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "backup"
REGISTRY = Registry.from_modules([backup_checks])
SEGMENT = 1 << 20  # the clusters are made with --wal-segsize=1
AHEAD = timedelta(minutes=30)
"""How far the gathering clock is moved: past the 15-minute RPO of every source here."""


# ----------------------------------------------------------------------------- parsers


def test_waldump_records_classified() -> None:
    records = parse_waldump((RAW / "pg15-waldump-mixed.txt").read_text())
    assert [r.kind for r in records][:4] == [
        "XLOG/CHECKPOINT_SHUTDOWN",
        "XLOG/PARAMETER_CHANGE",
        "Heap/INSERT",
        "Transaction/PREPARE",
    ]
    summary = summarize(records, "0/A00000", "0/A030C8", None)
    # A prepared transaction is durable: it is the oldest committed change waiting.
    assert summary.first_commit_lsn == "0/00A00A28"
    assert summary.first_commit_time == datetime(2026, 12, 6, 19, 36, 19, 125210, tzinfo=UTC)
    assert summary.bookkeeping == 3  # shutdown checkpoint, parameter change, running xacts
    assert summary.first_change == "Heap/INSERT at 0/00A000D8"
    assert summary.undated == ("LogicalMessage/MESSAGE at 0/00A00BB8",)
    assert summary.counts["Transaction/ABORT"] == 1


def test_waldump_idle_server_writes_only_bookkeeping() -> None:
    records = parse_waldump((RAW / "pg15-waldump-idle.txt").read_text())
    summary = summarize(records, "0/C00000", "0/C000D8", None)
    assert summary.counts == {"Standby/RUNNING_XACTS": 1, "XLOG/CHECKPOINT_ONLINE": 1}
    assert (summary.bookkeeping, summary.changes, summary.first_commit_time) == (2, 0, None)


def test_commit_time_must_be_utc() -> None:
    line = (
        "rmgr: Transaction len (rec/tot):     34/    34, tx:        725, lsn: 0/00627B30, "
        "prev 0/00627AF0, desc: COMMIT 2026-12-06 19:30:11.758383 CST"
    )
    (record,) = parse_waldump(line)
    with pytest.raises(ValueError, match="not UTC"):
        commit_time(record)
    with pytest.raises(ValueError, match="unexpected pg_waldump line"):
        parse_waldump("pg_waldump: error: could not find file")


@pytest.mark.parametrize(
    ("name", "size", "end"),
    [
        ("000000010000000000000006", SEGMENT, 0x700000),
        ("0000000200000001000000FF", SEGMENT, (0x100000000 // SEGMENT + 0xFF + 1) * SEGMENT),
        ("00000001000000000000000A", 16 << 20, 0xB000000),
        # A partial segment and a backup history file vouch only for the segments before.
        ("000000010000000000000005.partial", SEGMENT, 0x500000),
        ("000000010000000000000003.00000028.backup", SEGMENT, 0x300000),
    ],
)
def test_archive_end(name: str, size: int, end: int) -> None:
    assert archive_end(name, size) == end


@pytest.mark.parametrize(
    ("name", "match"),
    [("00000002.history", "timeline history"), ("backup.tar", "not a WAL file name")],
)
def test_archive_end_refuses(name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        archive_end(name, SEGMENT)


def test_status_row_places_the_archive_end() -> None:
    status = parse_postgres_row((RAW / "pg15-primary-idle.json").read_text())
    unarchived = status.detail.unarchived
    assert isinstance(unarchived, UnarchivedWal)
    assert (unarchived.start_lsn, unarchived.insert_lsn) == ("0/C00000", "0/C000D8")
    assert unarchived.bytes_written == 0xD8
    assert unarchived.records == Unavailable("pg_waldump was not run")
    assert status.position is not None
    assert status.position.system_identifier == "7716275584305014831"
    assert status.position.wal_writer_delay_s == 0.2
    # Rows of the earlier query carry no position: said so, never guessed.
    old = parse_postgres_row((RAW / "pg15-primary.json").read_text())
    assert old.detail.unarchived == Unavailable("the server reported no WAL position")


class FakeHost:
    """A host with a server's data directory and a pg_waldump that prints canned records: the
    reading logic without a server (the real one is exercised below)."""

    SYSID = 7716275584305014831

    def __init__(self, dumps: dict[str, str], *, sysid: int = SYSID, version: int = 15) -> None:
        self.dumps, self.sysid, self.version = dumps, sysid, version
        self.ends: list[str] = []
        self.programs: set[str] = set()

    def realpath(self, path: str) -> str:
        links = {"/proc/11/cwd": "/srv/pg", "/proc/11/exe": "/srv/evil/bin/postgres"}
        return links.get(path, path)

    def read_bytes(self, path: str) -> bytes:
        if path != "/srv/pg/global/pg_control":
            raise SourceMissing(f"{path} does not exist")
        return self.sysid.to_bytes(8, sys.byteorder) + bytes(8184)

    def exists(self, path: str) -> bool:
        # Never asked about /srv/evil/bin: the server's executable folder is not trusted.
        return path in ("/usr/lib/postgresql/15/bin/pg_waldump", "/srv/evil/bin/pg_waldump")

    def which(self, name: str) -> str | None:
        return None

    def run(self, argv: Sequence[str], **kw: object) -> CommandResult:
        self.programs.add(argv[0])
        if argv[1:] == ["--version"]:
            return CommandResult(tuple(argv), 0, f"pg_waldump (PostgreSQL) {self.version}.2\n", "")
        (end,) = [a.removeprefix("--end=") for a in argv if a.startswith("--end=")]
        self.ends.append(end)
        return CommandResult(tuple(argv), 0, self.dumps[end], "")


RUNNING = (
    "rmgr: Standby     len (rec/tot):     50/    50, tx:          0, lsn: 0/00C00028, "
    "prev 0/00B00148, desc: RUNNING_XACTS nextXid 742 latestCompletedXid 741 oldestRunningXid 742\n"
)
INSERT = (
    "rmgr: Heap        len (rec/tot):     59/    59, tx:        742, lsn: 0/00C00060, "
    "prev 0/00C00028, desc: INSERT off 66 flags 0x00, blkref #0: rel 1663/5/16384 blk 13\n"
)
COMMIT = (
    "rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/00C000A0, "
    "prev 0/00C00060, desc: COMMIT 2026-12-06 19:50:00.000001 UTC\n"
)


def position(**changes: object) -> WalPosition:
    base = WalPosition(
        insert_lsn=0xC000C8,
        write_lsn=0xC00060,
        segment_size=SEGMENT,
        timeline=1,
        major_version=15,
        system_identifier=str(FakeHost.SYSID),
        data_directory=None,
        server_pids=(11,),
        wal_writer_delay_s=0.01,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_commit_still_in_buffers_is_read_after_the_wal_writer_delay() -> None:
    host = FakeHost({"0/C00060": RUNNING, "0/C000C8": RUNNING + INSERT + COMMIT})

    records = read_wal_records(host, position(), "0/C00000", 20.0, lambda: 0xC000C8)

    assert host.ends == ["0/C00060", "0/C000C8"]
    assert host.programs == {"/usr/lib/postgresql/15/bin/pg_waldump"}
    assert isinstance(records, WalRecords)
    assert records.first_commit_lsn == "0/00C000A0"
    assert records.unwritten_bytes == 0


def test_open_transaction_left_in_buffers_is_no_commit() -> None:
    host = FakeHost({"0/C00060": RUNNING, "0/C000A0": RUNNING + INSERT})

    records = read_wal_records(host, position(), "0/C00000", 20.0, lambda: 0xC000A0)

    assert isinstance(records, WalRecords)
    assert (records.first_commit_time, records.unread_reason) == (None, None)
    assert records.unwritten_bytes == 0x28
    assert records.first_change == "Heap/INSERT at 0/00C00060"


@pytest.mark.parametrize(
    ("host", "pos", "reason"),
    [
        (FakeHost({}, sysid=42), position(), "belongs to another server (system identifier 42"),
        (FakeHost({}, version=16), position(), "no pg_waldump for PostgreSQL 15"),
        (FakeHost({}), position(server_pids=(12,)), "not visible from this host"),
        (
            FakeHost({"0/C00060": RUNNING}),
            position(wal_writer_delay_s=10.0),
            "3 × wal_writer_delay (30.1 s) is longer than medsec waits",
        ),
    ],
)
def test_wal_that_cannot_be_read_is_unavailable(
    host: FakeHost, pos: WalPosition, reason: str
) -> None:
    records = read_wal_records(host, pos, "0/C00000", 20.0, lambda: 0xC000C8)
    assert isinstance(records, Unavailable)
    assert reason in records.reason


# ----------------------------------------------------------------------------- a real server


@dataclasses.dataclass
class WalLab:
    """A primary whose archive_command waits while `hold` exists (an archiver that lags)."""

    dsn: str
    mon_dsn: str
    """The same server as a role without privileges: pg_wal found through /proc."""
    archive: Path
    hold: Path
    conn: psycopg.Connection[tuple[object, ...]]
    side: psycopg.Connection[tuple[object, ...]]
    """Holds transactions left open."""
    prepared: list[str] = dataclasses.field(default_factory=list)

    def one(self, query: str) -> object:
        row = self.conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    def lsn(self) -> int:
        hi, lo = str(self.one("SELECT pg_current_wal_insert_lsn()")).split("/")
        return int(hi, 16) << 32 | int(lo, 16)

    def settle(self) -> None:
        """Wait until the archiver has nothing ready (it is free, or stuck on a held file)."""
        ready = "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
        for _ in range(400):
            if self.one(ready) == 0:
                return
            self.conn.execute("SELECT pg_sleep(0.02)")
        raise AssertionError("the archiver did not catch up")

    def reset(self) -> None:
        """Archiver free, nothing open or prepared, every segment before the current archived."""
        self.hold.unlink(missing_ok=True)
        self.side.execute("ROLLBACK")
        for gid in self.prepared:
            self.conn.execute(f"ROLLBACK PREPARED '{gid}'")
        self.prepared.clear()
        self.conn.execute("SELECT pg_switch_wal()")
        self.settle()

    def archive_end(self) -> int:
        """Truth, from the archive folder: the end of the highest segment it holds."""
        names = [p.name for p in self.archive.iterdir() if re.fullmatch(r"[0-9A-F]{24}", p.name)]
        top = max(names)
        segno = int(top[8:16], 16) * (0x100000000 // SEGMENT) + int(top[16:24], 16)
        return (segno + 1) * SEGMENT

    # Operations: each returns the WAL position just after a change the client saw become
    # durable (commit, prepare), else None.

    def commit(self) -> int | None:
        self.conn.execute("INSERT INTO visit VALUES (1)")
        return self.lsn()

    def abort(self) -> int | None:
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO visit VALUES (2)")
        self.conn.execute("ROLLBACK")
        return None

    def leave_open(self) -> int | None:
        if self.side.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.side.execute("BEGIN")
        self.side.execute("INSERT INTO visit VALUES (3)")
        return None

    def prepare(self) -> int | None:
        gid = f"g{len(self.prepared)}"
        self.conn.execute("BEGIN")
        self.conn.execute("INSERT INTO visit VALUES (4)")
        self.conn.execute(f"PREPARE TRANSACTION '{gid}'")
        self.prepared.append(gid)
        return self.lsn()

    def checkpoint(self) -> int | None:
        self.conn.execute("CHECKPOINT")
        return None

    def switch(self) -> int | None:
        self.conn.execute("SELECT pg_switch_wal()")
        return None

    def vacuum(self) -> int | None:
        # No truncation: it would take a lock logged with a transaction id and a commit.
        self.conn.execute("VACUUM (TRUNCATE false) visit")
        return None


@pytest.fixture(scope="module")
def lab() -> Iterator[WalLab]:
    cluster = Cluster("medsec-wal-")
    archive = cluster.folder("archive")
    hold = cluster.work / "hold"
    # Bounded wait (60 s), so a held command can never outlive the test by long.
    command = (
        f"for i in $(seq 1200); do [ -e {hold} ] || break; sleep 0.05; done; cp %p {archive}/%f"
    )
    settings = (
        f"{FAST}archive_mode=on\narchive_command='{command}'\nautovacuum=off\n"
        "max_prepared_transactions=4\nwal_writer_delay=10ms\n"
    )
    try:
        dsn = cluster.start(cluster.initdb("primary"), free_port(), settings)
        sql(dsn, "CREATE TABLE visit (id int)", "CREATE ROLE mon LOGIN", "SELECT pg_switch_wal()")
        wait_for(dsn, "SELECT archived_count > 0 FROM pg_stat_archiver", "first archive")
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            psycopg.connect(dsn, autocommit=True) as side,
        ):
            lab = WalLab(dsn, dsn.replace("postgres@", "mon@"), archive, hold, conn, side)
            yield lab
            hold.unlink(missing_ok=True)
    finally:
        hold.unlink(missing_ok=True)
        cluster.stop_all()


class Remote(LocalRunner):
    """Commands run here, but no file of the database server is visible: a server elsewhere."""

    def read_bytes(self, path: str) -> bytes:
        raise SourceMissing(f"{path} does not exist")

    def realpath(self, path: str) -> str:
        return path


def gather(
    dsn: str, *, ahead: timedelta = AHEAD, runner: LocalRunner | None = None
) -> tuple[RecoveryPoint, Result]:
    source = BackupSource(name="his-pg", kind="postgres", dsn=dsn, rpo_minutes=15)
    status = collect_source(
        runner or LocalRunner(env={"TZ": "Asia/Shanghai"}),
        source,
        now=datetime.now(UTC) + ahead,
    )
    facts = HostFacts(backups=BackupFacts(host_site=None, sources=(status,)))
    (result,) = [r for r in evaluate(REGISTRY, facts) if r.check_id == "backup.rpo"]
    assert isinstance(status.reading, RecoveryPoint), status.reading
    return status.reading, result


def records_of(point: RecoveryPoint) -> WalRecords:
    assert isinstance(point.detail, PostgresArchiving)
    unarchived = point.detail.unarchived
    assert isinstance(unarchived, UnarchivedWal), unarchived
    assert isinstance(unarchived.records, WalRecords), unarchived.records
    return unarchived.records


def test_idle_primary_passes_however_old_its_last_segment(lab: WalLab) -> None:
    lab.reset()
    lab.checkpoint()  # an idle server's own records: a checkpoint and running-xacts snapshots

    point, result = gather(lab.dsn, ahead=timedelta(hours=3))

    assert result.status is Status.PASS, result.message
    assert "no transaction committed since WAL segment" in result.message
    records = records_of(point)
    assert records.changes == 0
    assert records.counts["XLOG/CHECKPOINT_ONLINE"] == 1
    assert set(records.counts) <= {"XLOG/CHECKPOINT_ONLINE", "Standby/RUNNING_XACTS"}
    # Seen from a host without the server's files, the same server cannot be told idle.
    _, remote = gather(lab.dsn, ahead=timedelta(hours=3), runner=Remote())
    assert remote.status is Status.ERROR
    assert "cannot tell whether transactions committed since wait" in remote.message
    assert "global/pg_control does not exist" in remote.message


def test_lagging_archiver_with_committed_transactions_fails(lab: WalLab) -> None:
    lab.reset()
    lab.hold.touch()
    first = lab.commit()
    lab.switch()
    lab.commit()

    point, result = gather(lab.dsn)

    assert result.status is Status.FAIL, result.message
    assert "are not archived yet" in result.message
    records = records_of(point)
    assert records.first_commit_lsn is not None
    assert first is not None
    hi, lo = records.first_commit_lsn.split("/")
    assert (int(hi, 16) << 32 | int(lo, 16)) < first
    assert point.age_seconds is not None
    assert AHEAD.total_seconds() - 60 < point.age_seconds < AHEAD.total_seconds() + 60
    # Now, before the RPO has passed, the same wait is within it.
    _, now = gather(lab.dsn, ahead=timedelta(0))
    assert now.status is Status.PASS, now.message
    _, remote = gather(lab.dsn, runner=Remote())
    assert remote.status is Status.ERROR


def test_role_without_privileges_finds_pg_wal_through_proc(lab: WalLab) -> None:
    lab.reset()
    lab.commit()

    point, result = gather(lab.mon_dsn)

    assert records_of(point).first_commit_time is not None
    assert result.status is Status.FAIL


def test_commit_after_more_records_than_one_pass_reads(lab: WalLab) -> None:
    lab.reset()
    rows = RECORD_LIMIT + 500
    lab.side.execute("BEGIN")
    lab.side.execute(f"INSERT INTO visit SELECT generate_series(1, {rows})")

    uncommitted, open_result = gather(lab.dsn)
    lab.side.execute("COMMIT")
    committed, commit_result = gather(lab.dsn)

    # Only row inserts so far: nothing committed is at risk.
    assert open_result.status is Status.PASS, open_result.message
    assert records_of(uncommitted).first_commit_time is None
    assert records_of(uncommitted).records_read == RECORD_LIMIT
    assert commit_result.status is Status.FAIL, commit_result.message
    assert records_of(committed).first_commit_time is not None


OPERATIONS = ("commit", "abort", "leave_open", "prepare", "checkpoint", "switch", "vacuum")


def test_differential_verdicts_match_the_archive(lab: WalLab) -> None:
    rng = random.Random(20261206)  # noqa: S311 — reproducible workloads, not secrets
    seen: Counter[str] = Counter()
    disagreements = []
    for case in range(40):
        lab.reset()
        held = rng.random() < 0.5
        if held:
            lab.hold.touch()
        ops = [rng.choice(OPERATIONS) for _ in range(rng.randint(1, 4))]
        durable = [lsn for op in ops if (lsn := getattr(lab, op)()) is not None]
        if not held:
            lab.settle()
        end = lab.archive_end()
        expected = Status.FAIL if any(lsn > end for lsn in durable) else Status.PASS
        _, result = gather(lab.mon_dsn if case % 2 else lab.dsn)
        seen[f"{'held' if held else 'free'} {expected.value}"] += 1
        if result.status is not expected:
            disagreements.append(f"{ops} held={held}: {result.status.value}: {result.message}")
    assert disagreements == []
    # Both verdicts, with the archiver free and held back, were exercised.
    assert all(
        seen[f"{mode} {status}"] >= 3 for mode in ("held", "free") for status in ("pass", "fail")
    ), seen
