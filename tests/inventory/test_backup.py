"""`collect_backups` against real restic and borg repositories, a real PostgreSQL primary, standby
and failing archiver started for the session, and files with set mtimes; then `backup.rpo` and
`backup.offsite` on the gathered facts. The pure parsers run on output captured from the same
tools (tests/fixtures/raw/backup/).

The gatherer's runner has TZ=Asia/Shanghai throughout: every age must still come out right.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.backup import (
    BackupFacts,
    BackupSource,
    BackupStatus,
    BorgArchives,
    PathFiles,
    PostgresArchiving,
    RecoveryPoint,
    ResticSnapshots,
    UnarchivedWal,
    WalRecords,
)
from checks.host import backup as backup_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import evaluate
from inventory.host.backup import (
    collect_backups,
    collect_source,
    dsn_has_password,
    find_argv,
    parse_borg_list,
    parse_find_output,
    parse_postgres_status,
    parse_restic_snapshots,
    parse_timestamp,
    plan_glob,
)
from inventory.runner import CommandResult, CommandTimeout, LocalRunner
from tests.inventory.pg_cluster import FAST, Cluster, free_port, sql, wait_for

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "backup"
REGISTRY = Registry.from_modules([backup_checks])
SHANGHAI = {"TZ": "Asia/Shanghai"}
PASSWORD = "correct horse battery staple"  # noqa: S105 — a test repository's password


def _runner() -> LocalRunner:
    return LocalRunner(env=SHANGHAI)


def _results(facts: BackupFacts) -> list[Result]:
    return evaluate(REGISTRY, HostFacts(backups=facts))


def _rpo(facts: BackupFacts) -> dict[str | None, Result]:
    return {r.target: r for r in _results(facts) if r.check_id == "backup.rpo"}


def _point(status: BackupStatus) -> RecoveryPoint:
    assert isinstance(status.reading, RecoveryPoint), status.reading
    return status.reading


def _ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Set-up commands (not the gatherer's): a failure shows the tool's own message."""
    base = {"PATH": os.environ["PATH"], "LC_ALL": "C", "HOME": "/nonexistent"}
    proc = subprocess.run(
        argv, env={**base, **(env or {})}, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")


def _in_parallel(*steps: Callable[[], object]) -> None:
    """Independent set-up steps side by side (restic's scrypt makes each command ~0.5 s)."""
    with ThreadPoolExecutor(len(steps)) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()


# ----------------------------------------------------------------------------- restic


@dataclasses.dataclass(frozen=True)
class ResticRepos:
    fresh: str
    """Snapshots 5 (host h1) and 20 (host h2) minutes old, the older one made last."""
    stale: str
    """One snapshot, 20 minutes old."""
    password_file: str
    wrong_password_file: str


@pytest.fixture(scope="module")
def restic_repos(tmp_path_factory: pytest.TempPathFactory) -> ResticRepos:
    _need("restic")
    work = tmp_path_factory.mktemp("restic")
    (work / "pw").write_text(PASSWORD + "\n")
    (work / "wrong").write_text("not the password\n")
    data = work / "data"
    data.mkdir()
    (data / "his.dump").write_bytes(b"patient records\n")
    env = {"TZ": "UTC0", "RESTIC_PASSWORD_FILE": str(work / "pw"), "RESTIC_CACHE_DIR": str(work)}
    _run(["restic", "-r", str(work / "fresh"), "init"], env)
    # A copy of an initialised repository is a second repository: one `init` (scrypt) saved.
    shutil.copytree(work / "fresh", work / "stale")

    def backup(repo: str, minutes: int, host: str) -> None:
        stamp = _ago(minutes).strftime("%Y-%m-%d %H:%M:%S")  # local time of restic: UTC0
        _run(
            [
                "restic",
                "-r",
                str(work / repo),
                "backup",
                "--time",
                stamp,
                "--host",
                host,
                str(data),
            ],
            env,
        )

    _in_parallel(
        lambda: (backup("fresh", 5, "h1"), backup("fresh", 20, "h2")),
        lambda: backup("stale", 20, "h1"),
    )
    return ResticRepos(
        str(work / "fresh"), str(work / "stale"), str(work / "pw"), str(work / "wrong")
    )


def _restic(name: str, repo: str, password_file: str) -> BackupSource:
    return BackupSource(name=name, kind="restic", repository=repo, password_file=password_file)


class Recording(LocalRunner):
    """The local runner, remembering every argv and environment value it was given."""

    def __init__(self) -> None:
        super().__init__(env=SHANGHAI)
        self.seen: list[str] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.seen.extend([*argv, *(env or {}).values()])
        return super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)


def test_restic_newest_snapshot_by_time_not_creation_order(restic_repos: ResticRepos) -> None:
    runner = Recording()
    facts = collect_backups(
        runner,
        [
            _restic("fresh", restic_repos.fresh, restic_repos.password_file),
            _restic("stale", restic_repos.stale, restic_repos.password_file),
            _restic("locked-out", restic_repos.fresh, restic_repos.wrong_password_file),
        ],
        "dc-main",
    )
    fresh, stale, locked_out = facts.sources
    point = _point(fresh)
    assert isinstance(point.detail, ResticSnapshots)
    assert point.detail.snapshot_count == 2
    assert point.detail.hostname == "h1"
    assert point.age_seconds is not None
    assert 290 < point.age_seconds < 360
    assert (_point(stale).age_seconds or 0) > 1190
    assert isinstance(locked_out.reading, Unavailable)
    assert locked_out.reading.reason == "restic: wrong password or no key found"

    results = _rpo(facts)
    assert results["fresh"].status is Status.PASS
    assert results["stale"].status is Status.FAIL
    assert "older than the RPO of 15 min" in results["stale"].message
    assert results["locked-out"].status is Status.ERROR
    assert "wrong password" in results["locked-out"].message

    # Neither password went through argv or the environment, nor into the facts.
    assert runner.seen
    assert not any(PASSWORD in item or "not the password" in item for item in runner.seen)
    assert "not the password" not in json.dumps(dataclasses.asdict(facts), default=str)


def test_restic_missing_password_file_is_named(tmp_path: Path) -> None:
    _need("restic")
    status = collect_source(
        _runner(), _restic("r", str(tmp_path / "repo"), str(tmp_path / "no-such-pw"))
    )
    assert status.reading == Unavailable(f"password file {tmp_path / 'no-such-pw'} does not exist")


def test_missing_tool_is_unavailable_and_the_next_source_still_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x")
    (tmp_path / "dump.sql").write_text("x")
    runner = LocalRunner(env={"PATH": str(tmp_path / "empty-bin") + ":/usr/bin:/bin"})
    runner_without_restic = LocalRunner(env={"PATH": str(tmp_path / "empty-bin")})
    sources = [
        _restic("r", str(tmp_path / "repo"), str(tmp_path / "pw")),
        BackupSource(name="dump", kind="path", glob=str(tmp_path / "*.sql")),
    ]
    missing = collect_backups(runner_without_restic, sources[:1], None)
    assert missing.sources[0].reading == Unavailable("restic is not installed")
    both = collect_backups(runner, sources, None)
    assert isinstance(both.sources[1].reading, RecoveryPoint)


def test_slow_repository_times_out_and_the_run_continues(tmp_path: Path) -> None:
    """A REST repository that accepts the connection and never answers: a real hang."""
    _need("restic")
    (tmp_path / "pw").write_text("x")
    (tmp_path / "dump.sql").write_text("x")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        facts = collect_backups(
            _runner(),
            [
                _restic("hung", f"rest:http://127.0.0.1:{port}/", str(tmp_path / "pw")),
                BackupSource(name="dump", kind="path", glob=str(tmp_path / "*.sql")),
            ],
            None,
            timeout=0.5,
        )
    # The reading names the timeout that cut the hang short; the next source was still read.
    assert facts.sources[0].reading == Unavailable("restic did not finish within 0.5 s")
    assert isinstance(facts.sources[1].reading, RecoveryPoint)
    assert _rpo(facts)["hung"].status is Status.ERROR


def test_timeout_from_any_runner_becomes_unavailable() -> None:
    """An SSH runner raises the same typed timeout; the source says so, nothing else breaks."""

    class Hanging(LocalRunner):
        def run(self, argv: Sequence[str], **kw: object) -> CommandResult:
            raise CommandTimeout(f"{argv[0]} did not finish within 20 s")

    source = BackupSource(name="pg", kind="postgres", dsn="postgresql://backup@db/his")
    assert collect_source(Hanging(), source).reading == Unavailable(
        "psql did not finish within 20 s"
    )


# ----------------------------------------------------------------------------- borg


@dataclasses.dataclass(frozen=True)
class BorgRepos:
    fresh: str
    stale: str
    passphrase_file: str


@pytest.fixture(scope="module")
def borg_repos(tmp_path_factory: pytest.TempPathFactory) -> BorgRepos:
    _need("borg")
    work = tmp_path_factory.mktemp("borg")
    (work / "pass").write_text(PASSWORD + "\n")
    data = work / "data"
    data.mkdir()
    (data / "his.dump").write_bytes(b"patient records\n")
    # TZ deliberately not UTC: borg takes --timestamp as UTC whatever TZ says.
    env = {"BORG_PASSPHRASE": PASSWORD, **SHANGHAI}
    init_env = {**env, "BORG_BASE_DIR": str(work / "base-fresh")}
    _run(["borg", "init", "--encryption=repokey", str(work / "fresh")], init_env)
    # A copy is a second repository (same id, so each gets its own borg security directory).
    shutil.copytree(work / "fresh", work / "stale")

    def create(repo: str, archive: str, minutes: int) -> None:
        stamp = _ago(minutes).strftime("%Y-%m-%dT%H:%M:%S")
        argv = ["borg", "create", "--timestamp", stamp, f"{work / repo}::{archive}", str(data)]
        _run(argv, {**env, "BORG_BASE_DIR": str(work / f"base-{repo}")})

    _in_parallel(
        lambda: (create("fresh", "five", 5), create("fresh", "twenty", 20)),
        lambda: create("stale", "twenty", 20),
    )
    return BorgRepos(str(work / "fresh"), str(work / "stale"), str(work / "pass"))


def test_borg_ages_are_right_in_any_local_timezone(borg_repos: BorgRepos) -> None:
    before = set(glob.glob("/tmp/medsec-backup.*"))
    sources = [
        BackupSource(
            name=name, kind="borg", repository=repo, password_file=borg_repos.passphrase_file
        )
        for name, repo in (("fresh", borg_repos.fresh), ("stale", borg_repos.stale))
    ]
    facts = collect_backups(_runner(), sources, None)
    fresh = _point(facts.sources[0])
    assert isinstance(fresh.detail, BorgArchives)
    assert fresh.detail == BorgArchives(archive_count=2, archive="five")
    # Read as Shanghai local time the age would be 8 h off.
    assert fresh.age_seconds is not None
    assert 290 < fresh.age_seconds < 360
    stale = _point(facts.sources[1])
    assert stale.age_seconds is not None
    assert 1190 < stale.age_seconds < 1260
    results = _rpo(facts)
    assert (results["fresh"].status, results["stale"].status) == (Status.PASS, Status.FAIL)
    # BORG_BASE_DIR was private and is gone again.
    assert set(glob.glob("/tmp/medsec-backup.*")) <= before


def test_borg_wrong_passphrase_gives_borgs_reason(borg_repos: BorgRepos, tmp_path: Path) -> None:
    (tmp_path / "wrong").write_text("not the passphrase\n")
    source = BackupSource(
        name="b", kind="borg", repository=borg_repos.fresh, password_file=str(tmp_path / "wrong")
    )
    reading = collect_source(_runner(), source).reading
    assert isinstance(reading, Unavailable)
    assert reading.reason.startswith("borg: passphrase supplied")
    assert "incorrect" in reading.reason
    assert "not the passphrase" not in reading.reason


def test_borg_refuses_an_unencrypted_repository(tmp_path: Path) -> None:
    _need("borg")
    env = {"BORG_BASE_DIR": str(tmp_path / "base")}
    _run(["borg", "init", "--encryption=none", str(tmp_path / "plain")], env)
    source = BackupSource(name="b", kind="borg", repository=str(tmp_path / "plain"))
    reading = collect_source(_runner(), source).reading
    assert isinstance(reading, Unavailable)
    assert "unencrypted" in reading.reason


# ----------------------------------------------------------------------------- postgres


@dataclasses.dataclass(frozen=True)
class PgServers:
    archiving: str
    """Primary archiving every switched segment with cp."""
    failing: str
    """Primary that archived once, then its archive_command became `false`."""
    off: str
    """Primary with archive_mode=off."""
    standby: str
    """Streaming standby of `archiving`."""


@pytest.fixture(scope="session")
def pg_servers() -> Iterator[PgServers]:
    cluster = Cluster("medsec-pg-")
    work = cluster.work
    try:
        cluster.folder("archive")
        template = cluster.initdb("template")
        for name in ("archiving", "failing", "off"):
            cluster.copy(template, name)
        archive_cp = f"archive_mode=on\narchive_command='cp %p {work}/archive/%f'\n"
        archiving = cluster.start(work / "archiving", free_port(), FAST + archive_cp)
        failing = cluster.start(work / "failing", free_port(), FAST + archive_cp)
        off = cluster.start(work / "off", free_port(), FAST + "archive_mode=off\n")

        for dsn in (archiving, failing, off):
            sql(
                dsn,
                "CREATE TABLE visit (id int)",
                "INSERT INTO visit VALUES (1)",
                "SELECT pg_switch_wal()",
            )
        for dsn in (archiving, failing):
            wait_for(dsn, "SELECT archived_count > 0 FROM pg_stat_archiver", "first archive")
        sql(failing, "ALTER SYSTEM SET archive_command = 'false'", "SELECT pg_reload_conf()")
        time.sleep(0.2)  # the archiver reads the new command on SIGHUP
        sql(failing, "INSERT INTO visit VALUES (2)", "SELECT pg_switch_wal()")
        wait_for(failing, "SELECT failed_count > 0 FROM pg_stat_archiver", "an archive failure")

        port = archiving.rsplit(":", 1)[1].split("/")[0]
        cluster.pg("pg_basebackup", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-R",
                   "-D", str(work / "standby"), "-X", "stream", "--no-sync",
                   "--checkpoint=fast")  # fmt: skip
        standby = cluster.start(work / "standby", free_port(), "")
        _replay_a_commit(archiving, standby)
        yield PgServers(archiving, failing, off, standby)
    finally:
        cluster.stop_all()


def _replay_a_commit(primary: str, standby: str) -> None:
    """Commit on the primary until the standby has replayed a commit since it started (so it
    has a replay time): one replayed while the standby was still starting may not count (seen
    under load)."""
    for _ in range(20):
        sql(primary, "INSERT INTO visit VALUES (3)")
        lsn = sql(primary, "SELECT pg_current_wal_lsn()")
        wait_for(standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'", "standby replay")
        if sql(standby, "SELECT pg_last_xact_replay_timestamp() IS NOT NULL") == "t":
            return
        time.sleep(0.2)
    raise AssertionError("the standby replayed no commit")


def _pg(name: str, dsn: str, site: str | None = None) -> BackupSource:
    return BackupSource(name=name, kind="postgres", dsn=dsn, site=site)


def test_postgres_primary_standby_failing_and_off(pg_servers: PgServers) -> None:
    facts = collect_backups(
        _runner(),
        [
            _pg("archiving", pg_servers.archiving),
            _pg("failing", pg_servers.failing),
            _pg("off", pg_servers.off),
            _pg("standby", pg_servers.standby, site="dr-site"),
        ],
        "dc-main",
    )
    archiving, failing, off, standby = (_point(s) for s in facts.sources)

    assert isinstance(archiving.detail, PostgresArchiving)
    assert archiving.detail.role == "primary"
    assert archiving.detail.archived_count >= 1
    assert archiving.detail.archiving_broken is False
    # The commits made for the standby wait in the current segment: the oldest is the recovery
    # point, whatever the time of the last archived file (a base backup's history file here).
    unarchived = archiving.detail.unarchived
    assert isinstance(unarchived, UnarchivedWal)
    assert isinstance(unarchived.records, WalRecords)
    assert unarchived.records.first_commit_time is not None
    assert archiving.newest == unarchived.records.first_commit_time
    assert archiving.age_seconds is not None
    assert 0 <= archiving.age_seconds < 60
    assert archiving.detail.last_archived_wal

    assert isinstance(failing.detail, PostgresArchiving)
    assert failing.detail.archiving_broken is True
    assert failing.detail.failed_count >= 1
    assert (failing.age_seconds or 0) < 60  # recent, yet broken

    assert off.newest is None
    assert off.missing_reason == "archive_mode is off, so no WAL is archived"

    assert isinstance(standby.detail, PostgresArchiving)
    assert standby.detail.role == "standby"
    assert standby.newest == standby.detail.replay_time
    assert standby.detail.replay_lag_seconds is not None
    assert standby.detail.replay_lsn == standby.detail.receive_lsn

    results = _rpo(facts)
    assert results["archiving"].status is Status.PASS
    assert results["failing"].status is Status.FAIL
    assert f"{failing.detail.last_failed_wal} could not be archived" in results["failing"].message
    assert results["off"].status is Status.FAIL
    assert "archive_mode is off" in results["off"].message
    assert results["standby"].status is Status.PASS
    offsite = [r for r in _results(facts) if r.check_id == "backup.offsite"]
    assert [(r.status, r.target) for r in offsite] == [(Status.PASS, "dc-main")]


def test_postgres_unreachable_or_misconfigured(pg_servers: PgServers) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        facts = collect_backups(
            _runner(),
            [
                _pg("down", f"postgresql://postgres@127.0.0.1:{port}/postgres"),
                _pg("nodb", pg_servers.archiving.rsplit("/", 1)[0] + "/no_such_db"),
                _pg("secret", "postgresql://postgres:hunter2@127.0.0.1/postgres"),
            ],
            None,
        )
    down, nodb, secret = (s.reading for s in facts.sources)
    assert isinstance(down, Unavailable)
    assert "Connection refused" in down.reason
    assert isinstance(nodb, Unavailable)
    assert 'database "no_such_db" does not exist' in nodb.reason
    assert secret == Unavailable("the dsn contains a password; use passfile= or ~/.pgpass instead")


# ----------------------------------------------------------------------------- path


def _touch(path: Path, minutes_ago: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    stamp = _ago(minutes_ago).timestamp()
    os.utime(path, (stamp, stamp))


def test_path_newest_matching_file(tmp_path: Path) -> None:
    dumps = tmp_path / "dumps"
    _touch(dumps / "his" / "his-0700.dump", 65)
    _touch(dumps / "his" / "his-0755.dump", 5)
    _touch(dumps / "lis" / "his-0730.dump", 30)
    _touch(dumps / "his" / "his-0759.log", 1)  # newer, but not a dump
    _touch(dumps / "his" / "old" / "his-0759.dump", 1)  # newer, but one level deeper
    (tmp_path / "link").symlink_to(dumps)
    source = BackupSource(name="dumps", kind="path", glob=f"{tmp_path}/link/*/his-*.dump")
    facts = collect_backups(_runner(), [source], None)
    point = _point(facts.sources[0])
    assert point.detail == PathFiles(
        files_matched=3, newest_file=f"{tmp_path}/link/his/his-0755.dump"
    )
    assert point.age_seconds is not None
    assert 290 < point.age_seconds < 320
    assert _rpo(facts)["dumps"].status is Status.PASS


def test_path_stale_and_missing(tmp_path: Path) -> None:
    _touch(tmp_path / "nightly.tar.gz", 9 * 60)
    facts = collect_backups(
        _runner(),
        [
            BackupSource(name="nightly", kind="path", glob=str(tmp_path / "nightly.tar.gz")),
            BackupSource(name="nas", kind="path", glob=str(tmp_path / "nas" / "*.tar")),
            BackupSource(name="nothing", kind="path", glob=str(tmp_path / "*.bak")),
            BackupSource(name="relative", kind="path", glob="backups/*.tar"),
        ],
        None,
    )
    results = _rpo(facts)
    assert results["nightly"].status is Status.FAIL
    assert "9 h 0 min old" in results["nightly"].message
    assert results["nas"].status is Status.FAIL
    assert f"{tmp_path / 'nas'} does not exist" in results["nas"].message
    assert results["nothing"].status is Status.FAIL
    assert "no file matches" in results["nothing"].message
    assert results["relative"].status is Status.ERROR
    assert "not an absolute path" in results["relative"].message


# ----------------------------------------------------------------------------- parsers


def test_parse_restic_nanoseconds_and_offsets() -> None:
    text = (RAW / "restic-0.14-snapshots.json").read_text()
    now = datetime(2026, 11, 28, 18, 30, tzinfo=UTC)
    point = parse_restic_snapshots(text, now)
    # 2026-11-29T02:23:36.758955931+08:00 is the newest although listed times mix Z and +08:00.
    assert point.newest == datetime(2026, 11, 28, 18, 23, 36, 758955, tzinfo=UTC)
    assert point.detail == ResticSnapshots(
        snapshot_count=3,
        snapshot_id="ed7875be2208d70951dc23669208433c93832988b72f20c78ebc2192db3138a7",
        hostname="his-db-01",
        paths=("/tmp/rx/data",),
    )
    assert parse_restic_snapshots("[]", now).missing_reason == "the repository holds no snapshot"


def test_parse_borg_skips_checkpoints() -> None:
    now = datetime(2026, 11, 28, 18, 30, tzinfo=UTC)
    point = parse_borg_list((RAW / "borg-1.2.4-list-checkpoint.json").read_text(), now)
    assert point.detail == BorgArchives(archive_count=3, archive="now", checkpoints_ignored=1)
    assert point.newest == datetime(2026, 11, 28, 18, 18, 35, tzinfo=UTC)
    empty = parse_borg_list((RAW / "borg-1.2.4-list-empty.json").read_text(), now)
    assert empty.newest is None
    assert empty.missing_reason == "the repository holds no complete archive"


def test_parse_postgres_recorded_states() -> None:
    now = datetime(2026, 11, 28, 18, 25, tzinfo=UTC)
    primary = parse_postgres_status((RAW / "pg15-primary.json").read_text(), now)
    assert primary.newest == datetime(2026, 11, 28, 18, 19, 39, 149431, tzinfo=UTC)
    failing = parse_postgres_status((RAW / "pg15-primary-failing.json").read_text(), now)
    assert isinstance(failing.detail, PostgresArchiving)
    assert failing.detail.archiving_broken
    assert failing.detail.last_failed_wal == "000000010000000000000004"
    standby = parse_postgres_status((RAW / "pg15-standby.json").read_text(), now)
    assert isinstance(standby.detail, PostgresArchiving)
    assert standby.detail.role == "standby"
    assert standby.age_seconds == pytest.approx(236.744899)
    off = parse_postgres_status((RAW / "pg15-archive-off.json").read_text(), now)
    assert off.newest is None
    assert off.missing_reason == "archive_mode is off, so no WAL is archived"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "2026-11-29T02:23:36.758955931+08:00",
            datetime(2026, 11, 28, 18, 23, 36, 758955, tzinfo=UTC),
        ),
        ("2026-11-28T17:58:16Z", datetime(2026, 11, 28, 17, 58, 16, tzinfo=UTC)),
        ("2026-11-28T17:58:16.5-0130", datetime(2026, 11, 28, 19, 28, 16, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2026-11-28T17:58:16", "yesterday"]
)
def test_parse_timestamp_refuses_placeholders_and_naive_times(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


def test_zero_time_snapshot_makes_the_source_unreadable_not_ancient() -> None:
    text = json.dumps([{"time": "0001-01-01T00:00:00Z", "id": "ab", "paths": [], "hostname": "h"}])
    with pytest.raises(ValueError, match="placeholder"):
        parse_restic_snapshots(text, datetime.now(UTC))


def test_glob_plan_and_fnmatch_filter() -> None:
    plan = plan_glob("/backup/his/*/db-[0-9]*.dump")
    assert plan.prefix == "/backup/his"
    assert find_argv(plan)[:8] == [
        "find",
        "-H",
        "/backup/his",
        "-mindepth",
        "2",
        "-maxdepth",
        "2",
        "-type",
    ]
    out = (
        "1764353700.25 /backup/his/a/db-1.dump\0"
        "1764353800.0 /backup/his/a/db-x.dump\0"
        "1764353900.0 /backup/his/.b/db-2.dump\0"
    )
    assert [p for p, _ in parse_find_output(out, plan)] == [
        "/backup/his/a/db-1.dump",
        "/backup/his/.b/db-2.dump",  # fnmatch: '*' matches a leading dot
    ]
    with pytest.raises(ValueError, match=r"\*\*"):
        plan_glob("/backup/**/x")


def test_dsn_password_detection() -> None:
    assert dsn_has_password("postgresql://u:pw@h/db")
    assert dsn_has_password("postgresql://u@h/db?password=pw")
    assert dsn_has_password("host=h user=u password=pw")
    assert not dsn_has_password("postgresql://u@h/db?passfile=/etc/medsec/pgpass")
    assert not dsn_has_password("host=h user=u passfile=/etc/medsec/pgpass")
