"""Pushing reports against the real collector: `create_app` served by uvicorn on 127.0.0.1 with
trustme certificates, the SQLite store behind it, and the agent as the installed console script.

The collector is stopped and started on the same port to play an outage; what arrived is read
back from the store. Runs use one cheap, deterministic check (`backup.rpo` over a file made by
the test) so a run exits 0 unless the test wants a finding.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import CollectorConfig, ConfigError, load_config
from agent.credential import Credential, load_credential, write_credential
from agent.enroll import EnrollRequest, enroll
from agent.push import (
    CollectorClient,
    Delivered,
    PushJob,
    Rejected,
    Unreachable,
    deliver,
    tls_context,
)
from agent.spool import Spool
from checks.envelope import generate_private_key, open_envelope, seal
from checks.registry import builtin_registry

trustme = pytest.importorskip("trustme")
uvicorn = pytest.importorskip("uvicorn")

AGENT = Path(sys.executable).with_name("medsec-agent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveCollector:
    """The real collector app over a real SQLite store, startable and stoppable on one port."""

    def __init__(self, work: Path) -> None:
        from collector.settings import CollectorSettings, TlsSettings
        from collector.store import Store

        self.work = work
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        self.cert, self.key, self.ca_file = work / "cert.pem", work / "key.pem", work / "ca.pem"
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_pem.write_to_path(str(self.key))
        self.key.chmod(0o600)
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        database = f"sqlite:///{work / 'collector.db'}"
        self.store = Store.open(database)
        self.store.upgrade()
        self.settings = CollectorSettings(
            tls=TlsSettings(cert_file=str(self.cert), key_file=str(self.key)),
            database=database,
            listen=f"127.0.0.1:{self.port}",
        )
        # Strictly increasing receive times, so arrival order can be read back from the store.
        tick = itertools.count()
        self.clock = lambda: datetime.now(UTC) + timedelta(microseconds=next(tick))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from collector.app import create_app
        from collector.tls import uvicorn_config

        app = create_app(self.settings, self.store, clock=self.clock)
        config = uvicorn_config(
            app, "127.0.0.1", self.port, self.cert, self.key, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
            self._server = self._thread = None

    def enrollment_token(self, name: str) -> str:
        return str(self.store.create_enrollment(name, timedelta(hours=1), datetime.now(UTC)))

    def reports(self) -> list[str]:
        """Every stored report id of every host, in the order they arrived."""
        rows = []
        for host in self.store.list_hosts(500, 0).items:
            rows += self.store.host_reports(host.id, 500, 0).items
        return [r.report_id for r in sorted(rows, key=lambda r: r.received_at)]

    def audit_outcomes(self, action: str) -> list[str]:
        entries = self.store.audit_entries(500, 0).items
        return [e.outcome for e in entries if e.action == action]


def serve_collector(tmp_path: Path) -> Iterator[LiveCollector]:
    """A started collector for one test (test_enroll.py's fixture uses this too)."""
    work = tmp_path / "collector"
    work.mkdir()
    live = LiveCollector(work)
    live.start()
    try:
        yield live
    finally:
        live.stop()
        live.store.close()


def agent_host(tmp_path: Path, collector: LiveCollector) -> AgentHost:
    """An agent's files, configured for `collector`, with a passing backup check."""
    root = tmp_path / "host"
    root.mkdir()
    made = AgentHost(root, collector)
    made.write_config()
    made.passing()
    return made


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[LiveCollector]:
    yield from serve_collector(tmp_path)


@dataclass
class AgentHost:
    """One agent's files: its config, credential, spool and the backup file its check reads."""

    root: Path
    collector: LiveCollector

    @property
    def config(self) -> Path:
        return self.root / "agent.yaml"

    @property
    def credential(self) -> Path:
        return self.root / "agent.cred"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def write_config(self, *, crypto: str = "ed25519", extra: str = "", **collector: Any) -> None:
        (self.root / "backup").mkdir(exist_ok=True)
        section = {
            "url": self.collector.url,
            "ca_file": str(self.collector.ca_file),
            "credential_file": str(self.credential),
            "timeout_seconds": 5,
            "retries": 1,
            **collector,
        }
        self.config.write_text(
            "checks: {only: [backup.rpo]}\n"
            f"backups: [{{name: t, kind: path, glob: '{self.root}/backup/*.tar'}}]\n"
            f"collector: {json.dumps(section)}\n"
            f"spool_dir: {self.spool}\n"
            f"crypto: {crypto}\n" + extra,
            encoding="utf-8",
        )

    def passing(self) -> None:
        (self.root / "backup" / "latest.tar").touch()

    def failing(self) -> None:
        (self.root / "backup" / "latest.tar").unlink(missing_ok=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return medsec_agent("run", "--config", str(self.config), "--format", "json", *args)

    def enroll(self, name: str = "his-db-01", *args: str) -> subprocess.CompletedProcess[str]:
        token = self.collector.enrollment_token(name)
        return medsec_agent(
            "enroll",
            "--config",
            str(self.config),
            "--collector",
            self.collector.url,
            "--token",
            token,
            "--name",
            name,
            *args,
        )

    def waiting(self) -> list[str]:
        return sorted(p.name for p in self.spool.glob("*.msr"))

    def rejected(self) -> list[str]:
        return sorted(p.name for p in (self.spool / "rejected").glob("*.msr"))


def medsec_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.fixture
def host(tmp_path: Path, collector: LiveCollector) -> AgentHost:
    return agent_host(tmp_path, collector)


def report_id(proc: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(proc.stdout)["report_id"])


# --------------------------------------------------------------------------- the client


def test_unreachable_after_the_configured_attempts_with_backoff(collector):
    slept: list[float] = []
    port = free_port()  # nothing listens there
    with CollectorClient(
        f"https://127.0.0.1:{port}",
        str(collector.ca_file),
        "msa_x",
        attempts=4,
        backoff=0.5,
        sleep=slept.append,
    ) as client:
        answer = client.post_report(b"{}")
    assert isinstance(answer, Unreachable)
    assert "ConnectError" in answer.reason
    assert len(slept) == 3
    for delay, base in zip(slept, (0.5, 1.0, 2.0), strict=True):
        assert base <= delay < base + 0.5  # exponential, plus at most `backoff` of jitter
    capped = CollectorClient(collector.url, str(collector.ca_file), "msa_x", backoff_cap=8.0)
    assert all(capped.delay(n) <= 8.5 for n in range(2, 40))
    capped.close()


def test_tls_is_verified_against_the_configured_ca(collector, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with CollectorClient(collector.url, str(other), "msa_x", attempts=1) as client:
        answer = client.post_report(b"{}")
    assert isinstance(answer, Unreachable)
    assert "CERTIFICATE_VERIFY_FAILED" in answer.reason
    assert tls_context(str(collector.ca_file)).minimum_version >= ssl.TLSVersion.TLSv1_2


def test_unknown_token_is_a_rejection_with_the_collectors_code(collector):
    with CollectorClient(collector.url, str(collector.ca_file), "msa_nope", attempts=3) as client:
        answer = client.post_report(b"{}")
    assert answer == Rejected(401, "unauthenticated", answer.message)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- runs end to end


def test_run_pushes_and_the_sealed_bytes_are_the_json_report(host, collector):
    assert host.enroll().returncode == 0
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert collector.reports() == [report_id(proc)]
    assert host.waiting() == []
    # The report as sealed is the JSON renderer's bytes, byte for byte what was printed.
    cred = load_credential(host.credential)
    sealed = seal(proc.stdout.encode(), cred.agent, cred.private_key_pem, cred.alg)
    _, report, _ = open_envelope(sealed)
    assert json.loads(report)["report_id"] == report_id(proc)


def test_table_output_still_pushes_the_json_report(host, collector):
    assert host.enroll().returncode == 0
    proc = medsec_agent("run", "--config", str(host.config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("medsec host report")
    assert len(collector.reports()) == 1


def test_no_push_flag_sends_nothing(host, collector):
    assert host.enroll().returncode == 0
    assert host.run("--no-push").returncode == 0
    assert collector.reports() == []
    assert host.waiting() == []


def test_outage_then_every_report_arrives_once_in_order(host, collector):
    assert host.enroll().returncode == 0
    collector.stop()
    made = []
    for n in range(1, 4):
        proc = host.run()
        # The findings decide the exit code; the outage is a loud line, not a failure.
        assert proc.returncode == 0, proc.stderr
        assert f"collector unreachable: report spooled ({n} waiting)" in proc.stderr
        assert collector.url in proc.stderr
        made.append(report_id(proc))
    assert len(host.waiting()) == 3
    # What waits is the exact JSON that was printed, sealed and encrypted.
    cred = load_credential(host.credential)
    spool = Spool(host.spool, 50 * 2**20, cred.private_key_pem)
    first = spool.items()[0]
    envelope, report, _ = open_envelope(spool.read(first))
    assert envelope.agent == "his-db-01"
    assert json.loads(report)["report_id"] == made[0]
    assert first.report_id == made[0]
    # A crash after a send and before the delete would send an item twice: keep a copy.
    again = first.path.read_bytes()

    collector.start()
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    made.append(report_id(proc))
    assert collector.reports() == made
    assert host.waiting() == []

    first.path.write_bytes(again)  # the same bytes once more: stored once (200 duplicate)
    first.path.chmod(0o600)
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    made.append(report_id(proc))
    assert collector.reports() == made
    assert host.waiting() == []
    # One POST per report, plus the one duplicate: nothing is sent twice by the agent itself.
    assert collector.audit_outcomes("POST /api/v1/reports") == ["201"] * 4 + ["200", "201"]


def test_findings_keep_their_exit_code_while_spooling(host, collector):
    assert host.enroll().returncode == 0
    host.failing()
    collector.stop()
    proc = host.run()
    assert proc.returncode == 1
    assert "collector unreachable: report spooled (1 waiting)" in proc.stderr
    collector.start()
    host.passing()
    assert host.run().returncode == 0
    assert len(collector.reports()) == 2


def test_revoked_agent_reports_go_to_rejected_and_are_not_retried(host, collector):
    assert host.enroll().returncode == 0
    assert host.run().returncode == 0
    collector.store.revoke_agent("his-db-01", datetime.now(UTC))
    proc = host.run()
    assert proc.returncode == 1  # a person must act, though every check passed
    rid = report_id(proc)
    assert f"collector rejected report {rid}: 401 agent_revoked" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert host.waiting() == []
    [item] = host.rejected()
    assert rid in item
    reason = (host.spool / "rejected" / f"{item}.reason").read_text()
    assert reason.startswith("401 agent_revoked: ")
    assert "msa_" not in reason

    proc = host.run()
    assert proc.returncode == 1
    assert len(host.rejected()) == 2
    # One POST per report: the first rejected one was not sent again.
    assert collector.audit_outcomes("POST /api/v1/reports").count("401 agent_revoked") == 2


def test_replayed_report_is_rejected_with_reason_and_the_rest_goes_on(host, collector):
    assert host.enroll().returncode == 0
    first = host.run()
    assert first.returncode == 0
    # Same report id, other bytes: the collector must see a replay (409), not a new report.
    forged = json.loads(first.stdout)
    forged["results"][0]["message"] = "all good, honestly"
    body = (json.dumps(forged, ensure_ascii=False, indent=2) + "\n").encode()
    cred = load_credential(host.credential)
    spool = Spool(host.spool, 50 * 2**20, cred.private_key_pem)
    spool.add(forged["report_id"], seal(body, cred.agent, cred.private_key_pem, cred.alg))

    proc = host.run()
    assert proc.returncode == 1
    assert f"collector rejected report {forged['report_id']}: 409 replayed_report" in proc.stderr
    assert collector.reports() == [report_id(first), report_id(proc)]
    [item] = host.rejected()
    assert (
        (host.spool / "rejected" / f"{item}.reason").read_text().startswith("409 replayed_report: ")
    )
    assert host.run().returncode == 0  # not retried: nothing more to say


def test_corrupt_spool_item_moves_aside_and_never_crashes(host, collector):
    assert host.enroll().returncode == 0
    collector.stop()
    host.run()
    host.run()
    older, _ = sorted(host.spool.glob("*.msr"))
    data = bytearray(older.read_bytes())
    data[-1] ^= 0xFF
    older.write_bytes(bytes(data))
    collector.start()
    proc = host.run()
    assert proc.returncode == 1
    assert f"spool item {older.name.split('-', 1)[1][:-4]}: unreadable" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert host.rejected() == [older.name]
    reason = (host.spool / "rejected" / f"{older.name}.reason").read_text()
    assert "does not decrypt" in reason
    assert len(collector.reports()) == 2  # the newer spooled one and this run's


def test_spool_full_is_loud_and_exits_1(host, collector):
    host.write_config(extra="spool_max_mb: 1\n")
    assert host.enroll().returncode == 0
    collector.stop()
    host.spool.mkdir(mode=0o700, exist_ok=True)
    (host.spool / "filler").write_bytes(b"\0" * (2**20 - 1000))
    proc = host.run()
    assert proc.returncode == 1
    rid = report_id(proc)
    assert f"spool full (1.0 MB of 1): report {rid} NOT kept" in proc.stderr
    assert host.waiting() == []
    assert (host.spool / "filler").exists()  # nothing was deleted to make room

    # Collector back, spool still full: delivered from memory, still loud.
    collector.start()
    proc = host.run()
    assert proc.returncode == 1
    assert "delivered without the spool: spool full (1.0 MB of 1)" in proc.stderr
    assert collector.reports() == [report_id(proc)]


def test_not_enrolled_spools_then_enrolment_delivers(host, collector):
    proc = host.run()
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("medsec-agent: not enrolled: run medsec-agent enroll")
    assert line.endswith(f"report {report_id(proc)} spooled (1 waiting)")
    kept = host.waiting()
    assert len(kept) == 1
    assert stat.S_IMODE((host.spool / "pending.key").stat().st_mode) == 0o600

    enrolled = host.enroll("pacs-01")
    assert enrolled.returncode == 0, enrolled.stderr
    assert "1 spooled report(s) re-sealed for pacs-01" in enrolled.stderr
    assert not (host.spool / "pending.key").exists()
    assert host.waiting() == kept  # same place in the order

    proc2 = host.run()
    assert proc2.returncode == 0, proc2.stderr
    assert collector.reports() == [report_id(proc), report_id(proc2)]
    assert [a.name for a in collector.store.list_agents() if a.active] == ["pacs-01"]


def test_items_left_under_the_pending_key_are_resealed_by_a_run(host, collector):
    """Enrolment that stopped between writing the credential and re-sealing the spool (or a run
    that raced it) leaves items under the pending key: the next run re-seals and sends them."""
    first = host.run()
    assert first.returncode == 1
    [name] = host.waiting()
    under_pending = (host.spool / name).read_bytes()
    pending = (host.spool / "pending.key").read_bytes()
    assert host.enroll().returncode == 0
    # Put back the state of an enrolment cut short: the item and the pending key as they were.
    (host.spool / name).write_bytes(under_pending)
    (host.spool / "pending.key").write_bytes(pending)
    (host.spool / "pending.key").chmod(0o600)
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert collector.reports() == [report_id(first), report_id(proc)]
    assert host.rejected() == []


def test_credential_for_another_collector_is_never_used(host, collector):
    assert host.enroll().returncode == 0
    cred = json.loads(host.credential.read_text())
    cred["collector"] = "https://evil.example:8443"
    host.credential.write_text(json.dumps(cred))
    host.credential.chmod(0o600)
    proc = host.run()
    assert proc.returncode == 1
    assert "is for https://evil.example:8443, not collector.url" in proc.stderr
    assert collector.audit_outcomes("POST /api/v1/reports") == []  # no token was sent anywhere
    assert len(host.waiting()) == 1


def test_stale_temp_files_are_cleaned_by_a_later_run(host, collector):
    assert host.enroll().returncode == 0
    host.spool.mkdir(mode=0o700, exist_ok=True)
    stale = host.spool / f".tmp-{uuid.uuid4()}.msr-dead"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert host.run().returncode == 0
    assert not stale.exists()


def test_sm2_sm3_enrol_and_push_verify_on_the_collector(host, collector):
    host.write_config(crypto="sm")
    enrolled = host.enroll("his-sm-01")
    assert enrolled.returncode == 0, enrolled.stderr
    assert load_credential(host.credential).alg == "sm2-sm3"
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert collector.reports() == [report_id(proc)]
    [agent] = [a for a in collector.store.list_agents() if a.name == "his-sm-01"]
    assert agent.alg == "sm2-sm3"
    # The collector checked the SM2 signature: a flipped one is refused.
    cred = load_credential(host.credential)
    body = json.loads(seal(proc.stdout.encode(), cred.agent, cred.private_key_pem, cred.alg))
    sig = bytearray(base64.b64decode(body["signature"]))
    sig[-1] ^= 1
    body["signature"] = base64.b64encode(bytes(sig)).decode()
    with CollectorClient(collector.url, str(collector.ca_file), cred.api_token) as client:
        answer = client.post_report(json.dumps(body).encode())
    assert isinstance(answer, Rejected)
    assert answer.code == "bad_signature"


def test_crypto_changed_after_enrolment_is_refused(host, collector):
    assert host.enroll().returncode == 0
    host.write_config(crypto="sm")
    proc = host.run()
    assert proc.returncode == 1
    assert "holds an ed25519 key but crypto is sm" in proc.stderr
    assert len(host.waiting()) == 1


def test_delivered_answer_types(collector, tmp_path):
    """201 stored, then 200 duplicate for the same bytes."""
    root = tmp_path / "inproc"
    root.mkdir()
    h = AgentHost(root, collector)
    h.write_config()
    h.passing()
    config = load_config(h.config, builtin_registry())
    token = collector.enrollment_token("inproc")
    request = EnrollRequest(collector.url, token, None, "inproc", force=False)
    assert enroll(config, str(h.config), request, io.StringIO(), io.StringIO()) == 0
    proc = h.run("--no-push")
    cred = load_credential(h.credential)
    envelope = seal(proc.stdout.encode(), cred.agent, cred.private_key_pem, cred.alg)
    with CollectorClient(collector.url, str(collector.ca_file), cred.api_token) as client:
        assert client.post_report(envelope) == Delivered(201, duplicate=False)
        assert client.post_report(envelope) == Delivered(200, duplicate=True)


# --------------------------------------------------------------------------- answers a collector
# should not give: a small real HTTPS server (stdlib) that answers what the test says


class _Answering:
    """An HTTPS server on 127.0.0.1 answering every POST with `status` and `body`, recording
    each request's path and headers."""

    def __init__(self, cert: Path, key: Path, status: int, body: bytes, headers: dict[str, str]):
        import http.server

        seen = self.seen = []  # type: list[tuple[str, dict[str, str]]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                seen.append((self.path, dict(self.headers)))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[Any]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    made: list[_Answering] = []

    def serve(status: int, body: bytes = b"", **headers: str) -> tuple[_Answering, Path]:
        made.append(_Answering(cert, key, status, body, headers))
        return made[-1], ca_file

    yield serve
    for server in made:
        server.close()


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_busy_or_broken_collector_is_retried_then_spooled(tmp_path, answering, status):
    server, ca_file = answering(status, b'{"error": "database_unavailable", "message": "down"}')
    cred_file = tmp_path / "agent.cred"
    key = generate_private_key("ed25519")
    token = "msa_" + "t" * 43
    write_credential(
        cred_file, Credential(server.url, "a1", "ed25519", token, key), overwrite=False
    )
    job = PushJob(
        collector=CollectorConfig(
            url=server.url, ca_file=str(ca_file), credential_file=str(cred_file), retries=3
        ),
        spool_dir=str(tmp_path / "spool"),
        spool_max_mb=5,
        crypto="ed25519",
        report_id=str(uuid.uuid4()),
        hostname="h",
    )
    err = io.StringIO()
    assert deliver(job, b'{"report": 1}\n', err, backoff=0.01) == 0
    assert len(server.seen) == 3  # the configured attempts, then the spool
    assert {path for path, _ in server.seen} == {"/api/v1/reports"}
    assert all(h["Authorization"] == f"Bearer {token}" for _, h in server.seen)
    line = err.getvalue()
    assert "collector unreachable: report spooled (1 waiting)" in line
    assert f"answered {status}" in line
    assert token not in line
    assert len(list((tmp_path / "spool").glob("*.msr"))) == 1


def test_redirect_is_not_followed_and_the_token_stays_home(answering):
    server, ca_file = answering(308, location="https://elsewhere.example/api/v1/reports")
    with CollectorClient(
        server.url, str(ca_file), "msa_secret", attempts=2, sleep=lambda s: None
    ) as c:
        answer = c.post_report(b"{}")
    assert isinstance(answer, Unreachable)
    assert "redirect to https://elsewhere.example" in answer.reason
    assert "check collector.url" in answer.reason
    assert len(server.seen) == 1  # a redirect is not retried either


def test_a_4xx_without_the_error_body_still_has_a_code(answering):
    server, ca_file = answering(404, b"<html>not here</html>")
    with CollectorClient(server.url, str(ca_file), "msa_x", attempts=3) as c:
        answer = c.post_report(b"{}")
    assert answer == Rejected(404, "http_404", "<html>not here</html>")
    assert len(server.seen) == 1  # a rejection is never retried


# --------------------------------------------------------------------------- the config keys


@pytest.mark.parametrize(
    ("section", "words"),
    [
        (
            "collector: {url: 'http://c:8443', ca_file: CA}",
            "collector.url: must be an https:// URL",
        ),
        ("collector: {url: 'https://u:pw@c:8443', ca_file: CA}", "value not shown"),
        ("collector: {url: 'https://c:8443', ca_file: /nonexistent.pem}", "does not exist"),
        ("collector: {url: 'https://c:8443'}", "missing key collector.ca_file"),
        ("collector: {url: 'https://c:8443', ca_file: CA, retries: 0}", "collector.retries"),
        ("collector: {url: 'https://c:8443', ca_file: CA, credential_file: a.cred}", "absolute"),
        (
            "collector: {url: 'https://c:8443', ca_file: CA, token: x}",
            "unknown key collector.token",
        ),
        ("spool_dir: spool", "spool_dir: must be an absolute path"),
        ("spool_max_mb: 0", "spool_max_mb: must be between 1 and 102400"),
        ("crypto: rsa", "crypto: Invalid enum value 'rsa'"),
    ],
)
def test_push_config_is_validated_at_load(tmp_path, section, words):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = tmp_path / "agent.yaml"
    path.write_text(section.replace("CA", str(ca)) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, builtin_registry())
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)
    assert "pw" not in str(info.value)


def test_push_config_defaults(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = tmp_path / "agent.yaml"
    path.write_text(f"collector: {{url: 'https://c:8443/', ca_file: {ca}}}\n", encoding="utf-8")
    config = load_config(path, builtin_registry())
    assert config.collector is not None
    assert config.collector.credential_file == "/etc/medsec/agent.cred"
    assert (config.collector.timeout_seconds, config.collector.retries) == (10.0, 3)
    assert (config.spool_dir, config.spool_max_mb) == ("/var/lib/medsec/spool", 50)
    assert (config.crypto, config.signature_alg) == ("ed25519", "ed25519")


def test_without_a_collector_section_run_only_prints(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.tar").touch()
    path = tmp_path / "agent.yaml"
    path.write_text(
        "checks: {only: [backup.rpo]}\n"
        f"backups: [{{name: t, kind: path, glob: '{tmp_path}/b/*.tar'}}]\n"
        f"spool_dir: {tmp_path / 'spool'}\n",
        encoding="utf-8",
    )
    proc = medsec_agent("run", "--config", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not (tmp_path / "spool").exists()
