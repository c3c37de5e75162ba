"""The fault tests' rig: the real collector (`medsec serve` in its own process group, killed with
SIGKILL and started again on the same port), agents with their credential and spool (enrolled
over HTTPS; delivering through the agent's own push code, `agent.push.deliver`, or as the
installed `medsec-agent` console script), a private PostgreSQL cluster, and what every fault test
ends with: each report stored exactly once, the audit log intact, the database sound.

Nothing here listens on or talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import trustme

from agent.config import CollectorConfig, load_config
from agent.enroll import EnrollRequest, enroll
from agent.push import PushJob, deliver
from checks.registry import builtin_registry
from collector.settings import audit_key, load_settings, write_audit_key
from collector.store import Store
from tests.pg import free_port

BIN = Path(sys.executable).parent
MEDSEC = str(BIN / "medsec")
AGENT = str(BIN / "medsec-agent")
REPORTS = "POST /api/v1/reports"


def tool(name: str) -> str:
    """The absolute path of a system program (sbin included: tests may run without it in PATH)."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


def quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


# --------------------------------------------------------------------------- the collector


@dataclass
class Collector:
    """One collector's folder (settings, TLS pair, audit key) over `database`, served by
    `medsec serve` on a fixed loopback port so that agents find it again after a restart."""

    folder: Path
    database: str
    ca: Path = field(init=False)
    port: int = field(init=False)
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    starts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tls = self.folder / "tls"
        tls.mkdir(exist_ok=True)
        ca = trustme.CA()  # valid from 2000: an agent whose clock is behind still trusts it
        leaf = ca.issue_cert("127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(tls / "key.pem"))
        (tls / "key.pem").chmod(0o600)
        self.ca = tls / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        write_audit_key(self.folder / "audit.key")
        self.port = free_port()
        self.write_settings()

    def use_own_certificate(self) -> None:
        """Replace the TLS pair with one `medsec init` would make (valid from five minutes ago):
        agents then trust that certificate itself. Takes effect at the next start."""
        from collector.tls import make_self_signed

        tls = self.folder / "tls"
        for name in ("cert.pem", "key.pem"):
            (tls / name).unlink()
        make_self_signed(tls / "cert.pem", tls / "key.pem")
        self.ca = tls / "cert.pem"

    def write_settings(self, extra: str = "") -> None:
        """collector.yaml: this collector's port, TLS pair, database and audit key, and `extra`
        (more YAML sections). Takes effect at the next start."""
        (self.folder / "collector.yaml").write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            "tls: {cert_file: tls/cert.pem, key_file: tls/key.pem}\n"
            f"database: {json.dumps(self.database)}\n"
            "audit: {key_file: audit.key}\n" + extra,
            encoding="utf-8",
        )

    @property
    def config(self) -> Path:
        return self.folder / "collector.yaml"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "serve.log"

    def client(self, token: str | None = None, timeout: float = 10) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=timeout)

    def start(self, *, wait: bool = True) -> None:
        """`medsec serve`, in a process group of its own (SIGKILL takes all of it)."""
        assert self.process is None or self.process.poll() is not None
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"---- start {self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [MEDSEC, "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its scans may touch the lab's range only, whatever a zones file says.
                env=quiet_env(MEDSEC_SCAN_CONFINE="198.18.0.0/15"),
                process_group=0,
            )
        if wait:
            try:
                self.wait_up()
            except BaseException:
                self.kill()  # never left running behind a failed test
                raise

    def wait_up(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        with self.client(timeout=2) as client:
            while True:
                assert self.process is not None
                assert self.process.poll() is None, f"medsec serve exited:\n{self.log_tail()}"
                assert time.monotonic() < deadline, f"medsec serve not up:\n{self.log_tail()}"
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, to the whole process group: no handler runs, nothing is flushed."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop); its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    @property
    def sqlite_file(self) -> Path | None:
        if not self.database.startswith("sqlite:///"):
            return None
        return Path(self.database.removeprefix("sqlite:///"))

    def open_store(self) -> Store:
        return Store.open(self.database, audit_key=audit_key(load_settings(self.config)))

    def enrollment_token(self, name: str) -> str:
        store = self.open_store()
        try:
            return store.create_enrollment(name, timedelta(hours=1), datetime.now(UTC))
        finally:
            store.close()

    def medsec(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MEDSEC, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=quiet_env(),
        )

    def stored(self) -> Counter[str]:
        """How many times each report id is stored (more than once would be a doubled report)."""
        engine = sa.create_engine(self.database)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT report_id FROM reports").scalars()
                return Counter(str(r) for r in rows)
        finally:
            engine.dispose()

    def report_document(self, report_id: str) -> dict[str, Any]:
        """A stored report, as its agent (or the collector's scanner) wrote it."""
        engine = sa.create_engine(self.database)
        try:
            with engine.connect() as conn:
                body = conn.execute(
                    sa.text("SELECT body FROM reports WHERE report_id = :r"), {"r": report_id}
                ).scalar_one()
        finally:
            engine.dispose()
        document: dict[str, Any] = json.loads(body)
        return document

    def incomplete_reports(self) -> list[str]:
        """Stored reports whose result rows are not all there (a half-written report)."""
        engine = sa.create_engine(self.database)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT r.report_id, r.body, count(x.report_pk) AS n FROM reports AS r"
                        " LEFT JOIN results AS x ON x.report_pk = r.pk GROUP BY r.pk"
                    )
                ).all()
        finally:
            engine.dispose()
        return [row.report_id for row in rows if len(json.loads(row.body)["results"]) != row.n]

    def report_outcomes(self) -> Counter[str]:
        """The audit log's outcomes of report requests (201 stored, 200 duplicate, ...)."""
        engine = sa.create_engine(self.database)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT outcome FROM audit_log WHERE action = :a"), {"a": REPORTS}
                ).scalars()
                return Counter(str(r) for r in rows)
        finally:
            engine.dispose()

    def assert_sound(self) -> str:
        """The audit chain verifies (`medsec audit verify`, exit 0) and, on SQLite, the file
        passes `PRAGMA integrity_check`; the verify line."""
        path = self.sqlite_file
        if path is not None:
            with closing(sqlite3.connect(path)) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        done = self.medsec("audit", "verify")
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("audit log intact: "), done.stdout
        return done.stdout.strip()


# --------------------------------------------------------------------------- agents


REPORT_TEMPLATE: dict[str, Any] = {}


def report_template(work: Path) -> dict[str, Any]:
    """A report exactly as the real agent renders it (one cheap check), made once."""
    if not REPORT_TEMPLATE:
        host = AgentHost(work / "template-host", None)
        done = host.run("--no-push")
        assert done.returncode == 0, done.stderr
        REPORT_TEMPLATE.update(json.loads(done.stdout))
    return REPORT_TEMPLATE


@dataclass
class AgentHost:
    """One agent's files: config, credential, spool, and the backup its one check reads."""

    root: Path
    collector: Collector | None
    name: str = "agent"
    spool_dir: Path | None = None
    """Where the spool is, when not in `root`."""
    made: list[str] = field(default_factory=list)
    """Ids of the reports this agent made (and so must reach the collector, or be refused)."""

    def __post_init__(self) -> None:
        (self.root / "backup").mkdir(parents=True, exist_ok=True)
        (self.root / "backup" / "latest.tar").touch()
        self.write_config()

    @property
    def config(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def credential(self) -> Path:
        return self.root / "agent.cred"

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.root / "spool"

    def write_config(self, *, retries: int = 2) -> None:
        section = ""
        if self.collector is not None:
            collector = {
                "url": self.collector.url,
                "ca_file": str(self.collector.ca),
                "credential_file": str(self.credential),
                "timeout_seconds": 5,
                "retries": retries,
            }
            section = f"collector: {json.dumps(collector)}\n"
        self.config.write_text(
            "checks: {only: [backup.rpo]}\n"
            f"backups: [{{name: t, kind: path, glob: '{self.root}/backup/*.tar'}}]\n"
            f"{section}spool_dir: {self.spool}\n",
            encoding="utf-8",
        )

    def enrol(self) -> None:
        assert self.collector is not None
        config = load_config(self.config, builtin_registry())
        request = EnrollRequest(
            self.collector.url, self.collector.enrollment_token(self.name), None, self.name, False
        )
        out, err = io.StringIO(), io.StringIO()
        assert enroll(config, str(self.config), request, out, err) == 0, err.getvalue()

    def report(self, template: dict[str, Any], when: datetime | None = None) -> tuple[str, bytes]:
        """A new report of this host (its own id): (id, the JSON bytes the agent would seal)."""
        doc = dict(template)
        doc["report_id"] = str(uuid.uuid4())
        doc["host"] = {
            "id": "sha256:" + uuid.uuid5(uuid.NAMESPACE_DNS, self.name).hex * 2,
            "hostname": self.name,
        }
        moment = (when or datetime.now(UTC)).astimezone(UTC)
        doc["generated_at"] = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
        return doc["report_id"], (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()

    def deliver(self, template: dict[str, Any]) -> tuple[int, str]:
        """One run's delivery through the agent's own push code: spool first, then send what
        waits oldest first. (exit code, what it said on stderr)."""
        assert self.collector is not None
        report_id, body = self.report(template)
        self.made.append(report_id)
        job = PushJob(
            collector=CollectorConfig(
                url=self.collector.url,
                ca_file=str(self.collector.ca),
                credential_file=str(self.credential),
                timeout_seconds=5,
                retries=2,
            ),
            spool_dir=str(self.spool),
            spool_max_mb=50,
            crypto="ed25519",
            report_id=report_id,
            hostname=self.name,
        )
        err = io.StringIO()
        code = deliver(job, body, err, backoff=0.05)
        return code, err.getvalue()

    def run(self, *args: str, faketime: str | None = None) -> subprocess.CompletedProcess[str]:
        """`medsec-agent run --format json` (optionally under libfaketime)."""
        argv = [AGENT, "run", "--config", str(self.config), "--format", "json", *args]
        if faketime is not None:
            argv = [tool("faketime"), "-f", faketime, *argv]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, env=quiet_env()
        )
        assert "Traceback" not in done.stderr, done.stderr
        if done.stdout.startswith("{"):
            self.made.append(str(json.loads(done.stdout)["report_id"]))
        return done

    def waiting(self) -> list[str]:
        return sorted(p.name for p in self.spool.glob("*.msr"))

    def rejected(self) -> dict[str, str]:
        """Rejected item name → its reason."""
        folder = self.spool / "rejected"
        return {
            p.name: (folder / f"{p.name}.reason").read_text(encoding="utf-8").strip()
            for p in sorted(folder.glob("*.msr"))
        }


class Burst:
    """Agents delivering report after report, each on its own thread, until `stop()`; what each
    delivery exited with and said is kept. `pause`: seconds between two runs of one agent (at
    least 0.2 s after a run that could not deliver: a dead collector costs nothing to meet, and
    a thousand spooled reports would prove no more than a hundred)."""

    def __init__(self, agents: list[AgentHost], template: dict[str, Any], pause: float) -> None:
        self.agents = agents
        self.codes: list[int] = []
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(a, template, pause), daemon=True)
            for a in agents
        ]

    def _run(self, agent: AgentHost, template: dict[str, Any], pause: float) -> None:
        while not self._stop.is_set():
            code, err = agent.deliver(template)
            self.codes.append(code)  # list.append is atomic: no lock needed
            self.lines.extend(err.splitlines())
            self._stop.wait(max(pause, 0.2) if err else pause)

    def __enter__(self) -> Burst:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "an agent's delivery hung"

    def answered(self) -> Counter[str]:
        """The HTTP statuses the agents' lines report the collector answered (not 2xx)."""
        return Counter(m.group(1) for line in self.lines for m in _ANSWERED.finditer(line))


_ANSWERED = re.compile(r"answered (\d{3})")


def finish_delivery(agents: list[AgentHost], template: dict[str, Any]) -> None:
    """Each agent's next run, the collector up: it sends everything its spool kept."""
    for agent in agents:
        code, err = agent.deliver(template)
        assert (code, err) == (0, ""), err
        assert agent.waiting() == []
        assert agent.rejected() == {}


def assert_each_stored_once(collector: Collector, agents: list[AgentHost]) -> Counter[str]:
    """Every report the agents made is stored exactly once, and the audit log says 201 once per
    report (a report whose answer was lost comes again: 200, duplicate). The outcomes."""
    made = [r for a in agents for r in a.made]
    assert len(made) == len(set(made))
    stored = collector.stored()
    missing = set(made) - set(stored)
    doubled = {r: n for r, n in stored.items() if n > 1}
    assert not missing, f"{len(missing)} of {len(made)} reports lost"
    assert not doubled, f"reports stored more than once: {doubled}"
    assert set(stored) == set(made), "the store holds reports no agent made"
    assert collector.incomplete_reports() == []
    outcomes = collector.report_outcomes()
    assert outcomes["201"] == len(made), outcomes
    return outcomes


# --------------------------------------------------------------------------- a small file system

_TMPFS = "medsec-fault-"


class Tmpfs:
    """A tmpfs of `size` bytes mounted on `mountpoint` (a temporary folder) until `close`. Its
    source names this process (`medsec-fault-PID`): a run killed before `close` leaves a mount
    that `sweep_tmpfs` of a later run removes."""

    def __init__(self, mountpoint: Path, size: int) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mountpoint = mountpoint
        done = subprocess.run(
            [tool("mount"), "-t", "tmpfs", "-o", f"size={size},mode=0755",
             f"{_TMPFS}{os.getpid()}", str(mountpoint)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise MountUnavailable(done.stderr.strip() or f"mount exited {done.returncode}")

    def fill(self) -> int:
        """Fill what is left with one file; the bytes written."""
        fd = os.open(self.mountpoint / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        written = 0
        chunk = b"\0" * 4096
        try:
            while True:
                written += os.write(fd, chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        (self.mountpoint / "filler").unlink()

    def close(self) -> None:
        _umount(self.mountpoint)


class MountUnavailable(Exception):
    """No tmpfs can be mounted here (not root, or no CAP_SYS_ADMIN)."""


def _umount(mountpoint: Path | str) -> None:
    umount = tool("umount")
    done = subprocess.run([umount, str(mountpoint)], capture_output=True, timeout=30, check=False)
    if done.returncode != 0:  # still busy (a process of a failed test): detach it
        subprocess.run([umount, "-l", str(mountpoint)], capture_output=True, timeout=30,
                       check=False)  # fmt: skip


def sweep_tmpfs() -> None:
    """Unmount the tmpfs left by fault-test runs that were killed (their PID is gone)."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            source, target = line.split()[:2]
            owner = source.removeprefix(_TMPFS)
            if (
                source.startswith(_TMPFS)
                and owner.isdigit()
                and not Path(f"/proc/{owner}").exists()
            ):
                _umount(target.replace("\\040", " "))
