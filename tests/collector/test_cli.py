"""`medsec` as users run it: the installed console script in a subprocess. The first-run contract
end to end (init → serve → users add → agents enroll → enrol and report over HTTPS → audit verify
→ tamper → audit verify fails), and every error as one line on stderr with exit 2, never a
traceback; the administrative commands on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import sqlite3
import ssl
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from checks import envelope as env
from tests.collector.fixtures_api import agent_report, free_port, make_report

MEDSEC = str(Path(sys.executable).parent / "medsec")
ME = pwd.getpwuid(os.geteuid()).pw_name


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.rstrip("\n").split("\n")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SUDO_USER"}


def medsec(*args: str | Path, timeout: float = 60) -> Done:
    done = subprocess.run(
        [MEDSEC, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Done(done.returncode, done.stdout, done.stderr)


def assert_usage_error(done: Done, *words: str) -> None:
    assert done.code == 2, done
    assert done.err.startswith("medsec"), done.err
    assert done.err.count("\n") == 1, done.err  # exactly one line
    for word in words:
        assert word in done.err, done.err


@pytest.fixture(scope="module")
def agent_report_template() -> dict[str, Any]:
    return agent_report()


@pytest.fixture
def collector_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "collector"
    done = medsec("init", "--dir", folder, "--hostname", "collector.hospital.example")
    assert done.code == 0, done
    return folder


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[str]
    ca: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=30)


@contextmanager
def serve(folder: Path, *extra: str) -> Iterator[Served]:
    """`medsec serve` in the background on a free loopback port, stopped with SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [
            MEDSEC,
            "serve",
            "--config",
            str(folder / "collector.yaml"),
            "--listen",
            f"127.0.0.1:{port}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    served = Served(f"https://127.0.0.1:{port}", port, process, folder / "tls" / "cert.pem")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate(timeout=10)
            assert time.monotonic() < deadline, "medsec serve did not come up"
            try:
                with served.client() as client:
                    if client.get("/healthz").status_code == 200:
                        break
            except httpx.TransportError:
                time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _tls11_refused(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw),
        ):
            return False
    except (ssl.SSLError, ConnectionResetError):
        return True


# --------------------------------------------------------------------------- the first run


def test_worker_processes_share_the_port_the_database_and_the_audit_chain(
    collector_dir: Path, agent_report_template: dict[str, Any]
) -> None:
    """`serve --workers 2`: two processes answer on one port over hardened TLS, every report
    sent to them concurrently is stored once, the audit chain stays one chain, and SIGTERM
    stops the workers and the parent cleanly."""
    config = collector_dir / "collector.yaml"
    with serve(collector_dir, "--workers", "2") as served:
        workers = [  # not multiprocessing's resource tracker, also a child
            child
            for child in psutil.Process(served.process.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
        ]
        assert len(workers) == 2
        assert _tls11_refused(served.port)
        mse = medsec("agents", "enroll", "his-db-01", "--config", config).lines[-1]
        key = env.generate_private_key("ed25519")
        with served.client() as client:
            enrolled = client.post(
                "/api/v1/enroll",
                json={
                    "token": mse,
                    "name": "his-db-01",
                    "alg": "ed25519",
                    "public_key": env.public_key_pem(key, "ed25519"),
                },
            )
        api_token = enrolled.json()["api_token"]
        bodies = [
            env.seal(
                make_report(agent_report_template, host=f"ward-{i}"), "his-db-01", key, "ed25519"
            )
            for i in range(24)
        ]

        def post(chunk: list[bytes]) -> list[int]:
            with served.client(api_token) as client:  # a connection of its own: any worker
                return [client.post("/api/v1/reports", content=b).status_code for b in chunk]

        with ThreadPoolExecutor(6) as pool:
            statuses = [
                s for done in pool.map(post, [bodies[i::6] for i in range(6)]) for s in done
            ]
        assert statuses == [201] * 24
        served.process.send_signal(signal.SIGTERM)
        _, err = served.process.communicate(timeout=60)
        assert served.process.returncode == 0, err
        assert "Traceback" not in err
        assert not any(worker.is_running() for worker in workers)
    verified = medsec("audit", "verify", "--config", config)
    assert verified.code == 0, verified
    with sqlite3.connect(collector_dir / "medsec.db") as db:
        assert db.execute("SELECT count(*) FROM reports").fetchone() == (24,)
        posts = db.execute(
            "SELECT count(*) FROM audit_log"
            " WHERE action = 'POST /api/v1/reports' AND outcome = '201'"
        ).fetchone()
    assert posts == (24,)


def test_first_run_contract(collector_dir: Path, agent_report_template: dict[str, Any]) -> None:
    config = collector_dir / "collector.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE((collector_dir / "tls" / "key.pem").stat().st_mode) == 0o600
    assert (collector_dir / "medsec.db").is_file()
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert settings["listen"] == "127.0.0.1:8443"
    assert settings["tls"] == {
        "cert_file": str(collector_dir / "tls" / "cert.pem"),
        "key_file": str(collector_dir / "tls" / "key.pem"),
    }
    assert settings["database"] == f"sqlite:///{collector_dir / 'medsec.db'}"

    with serve(collector_dir) as served:
        added = medsec("users", "add", "alice", "--role", "auditor", "--config", config)
        assert added.code == 0, added
        user_token = added.lines[-1]
        assert user_token.startswith("msu_")

        enrolled = medsec("agents", "enroll", "his-db-01", "--config", config)
        assert enrolled.code == 0, enrolled
        mse = enrolled.lines[-1]
        assert mse.startswith("mse_")
        assert enrolled.lines[-2].startswith("expires ")
        assert "(in 60 minutes)" in enrolled.lines[-2]

        key = env.generate_private_key("ed25519")
        with served.client() as client:
            response = client.post(
                "/api/v1/enroll",
                json={
                    "token": mse,
                    "name": "his-db-01",
                    "alg": "ed25519",
                    "public_key": env.public_key_pem(key, "ed25519"),
                },
            )
        assert response.status_code == 201, response.text
        api_token = response.json()["api_token"]

        report = make_report(agent_report_template, host="his-db-01")
        with served.client(api_token) as client:
            posted = client.post(
                "/api/v1/reports",
                content=env.seal(report, "his-db-01", key, "ed25519"),
                headers={"Content-Type": "application/json"},
            )
        assert posted.status_code == 201, posted.text
        with served.client(user_token) as client:
            hosts = client.get("/api/v1/hosts").json()
        assert [h["hostname"] for h in hosts["items"]] == ["his-db-01"]

        listed = medsec("agents", "list", "--config", config)
        assert listed.code == 0
        assert listed.lines[1].split()[:3] == ["his-db-01", "active", "ed25519"]
        assert _tls11_refused(served.port)

        served.process.send_signal(signal.SIGTERM)
        _, err = served.process.communicate(timeout=30)
        assert served.process.returncode == 0, err  # a graceful stop is a clean exit
        assert "Traceback" not in err
        assert "serving https://127.0.0.1:" in err

    verified = medsec("audit", "verify", "--config", config)
    assert verified.code == 0, verified
    assert verified.out.startswith("audit log intact: ")
    entries = int(verified.out.split(": ")[1].split()[0])

    with sqlite3.connect(collector_dir / "medsec.db") as db:
        rows = db.execute(
            "SELECT seq, actor, role, action, source, outcome FROM audit_log"
        ).fetchall()
    assert len(rows) == entries + 1  # the verification itself was audited too
    actions = [
        (actor, role, action, source, outcome) for _, actor, role, action, source, outcome in rows
    ]
    assert (ME, "cli", f"cli init {collector_dir}", "cli", "0") in actions
    assert (ME, "cli", "cli users add alice --role auditor", "cli", "0") in actions
    assert (ME, "cli", "cli agents enroll his-db-01", "cli", "0") in actions
    assert ("his-db-01", "agent", "POST /api/v1/enroll", "127.0.0.1", "201") in actions
    assert ("his-db-01", "agent", "POST /api/v1/reports", "127.0.0.1", "201") in actions
    assert ("alice", "auditor", "GET /api/v1/hosts", "127.0.0.1", "200") in actions
    assert (ME, "cli", "cli audit verify", "cli", "0") in actions
    assert all(token not in repr(rows) for token in (user_token, mse, api_token))

    tampered_seq = next(seq for seq, *_, action, _, _ in rows if action == "POST /api/v1/reports")
    with sqlite3.connect(collector_dir / "medsec.db") as db:
        db.execute("UPDATE audit_log SET outcome = '403 forbidden' WHERE seq = ?", (tampered_seq,))
    broken = medsec("audit", "verify", "--config", config)
    assert broken.code == 1, broken
    assert f"seq {tampered_seq}" in broken.out
    assert broken.err == ""


def test_the_audit_log_is_keyed_from_init_and_needs_its_key(collector_dir: Path) -> None:
    config = collector_dir / "collector.yaml"
    key = collector_dir / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert settings["audit"]["key_file"] == str(key)
    assert medsec("audit", "verify", "--config", config).code == 0
    with sqlite3.connect(collector_dir / "medsec.db") as db:
        assert db.execute("SELECT keyed_from FROM audit_head").fetchone() == (1,)
    # Without the key the log cannot be checked or extended: one line, exit 2.
    del settings["audit"]["key_file"]
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    refused = medsec("audit", "verify", "--config", config)
    assert refused.code == 2, refused
    assert refused.err.startswith("medsec: the audit log is keyed: set audit.key_file")
    assert refused.err.count("\n") == 1


def test_a_head_kept_elsewhere_catches_a_rollback(collector_dir: Path) -> None:
    """The log and its head row put back to an earlier state pass a plain verify (no key can
    tell); the head an earlier verify printed, kept outside the database, catches it."""
    config = collector_dir / "collector.yaml"
    database = collector_dir / "medsec.db"
    assert medsec("users", "add", "a", "--role", "auditor", "--config", config).code == 0
    assert medsec("audit", "verify", "--config", config).code == 0
    with sqlite3.connect(database) as db:
        saved = db.execute("SELECT seq, hash, keyed_from, mac FROM audit_head").fetchone()
    for name in ("b", "c"):
        assert medsec("users", "add", name, "--role", "auditor", "--config", config).code == 0
    kept = medsec("audit", "verify", "--config", config).out.rsplit("head ", 1)[1].strip()
    assert medsec("audit", "verify", "--config", config, "--expect", kept).code == 0

    with sqlite3.connect(database) as db:  # the rollback: later entries gone, old head back
        db.execute("DELETE FROM audit_log WHERE seq > ?", (saved[0],))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?, keyed_from = ?, mac = ?", saved)
    assert medsec("audit", "verify", "--config", config).code == 0  # the chain itself is whole
    caught = medsec("audit", "verify", "--config", config, "--expect", kept)
    assert caught.code == 1, caught
    assert caught.out.startswith("audit log rolled back: entry ")
    bad = medsec("audit", "verify", "--config", config, "--expect", "7:nothex")
    assert (bad.code, bad.err.count("\n")) == (2, 1)
    assert "--expect: not SEQ:HASH" in bad.err


def test_deleting_an_audit_entry_is_found(collector_dir: Path) -> None:
    config = collector_dir / "collector.yaml"
    for name in ("a", "b", "c"):
        assert medsec("users", "add", name, "--role", "auditor", "--config", config).code == 0
    with sqlite3.connect(collector_dir / "medsec.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    broken = medsec("audit", "verify", "--config", config)
    assert broken.code == 1
    assert "seq" in broken.out


def test_audit_prune_deletes_what_is_past_the_retention_and_the_chain_still_verifies(
    collector_dir: Path,
) -> None:
    from collector.settings import audit_key, load_settings
    from collector.store import Store
    from collector.store.schema import GENESIS_HASH

    config = collector_dir / "collector.yaml"
    database = collector_dir / "medsec.db"
    with sqlite3.connect(database) as db:  # an empty log, then a long history
        db.execute("DELETE FROM audit_log")
        db.execute(
            "UPDATE audit_head SET seq = 0, hash = ?, keyed_from = NULL, mac = NULL",
            (GENESIS_HASH,),
        )
    store = Store.open(f"sqlite:///{database}", audit_key=audit_key(load_settings(config)))
    try:
        now = datetime.now(UTC)
        for age in (400, 300, 184, 100, 1):
            store.append_audit(
                "alice", "auditor", "GET /api/v1/hosts", "::1", "200", now - timedelta(days=age)
            )
    finally:
        store.close()

    pruned = medsec("audit", "prune", "--config", config)
    assert pruned.code == 0, pruned
    assert pruned.out.startswith("pruned 3 audit entries older than ")
    assert pruned.out.rstrip().endswith("(audit.retention_days: 183)")
    verified = medsec("audit", "verify", "--config", config)
    assert verified.code == 0
    assert verified.out.startswith("audit log intact: 3 entries; head 6:")  # 2 + the prune
    with sqlite3.connect(database) as db:
        actions = [row[0] for row in db.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == [
        "GET /api/v1/hosts",
        "GET /api/v1/hosts",
        "cli audit prune",
        "cli audit verify",
    ]


# --------------------------------------------------------------------------- administration


def test_db_prune_deletes_reports_past_the_retention_but_each_hosts_newest(
    collector_dir: Path, agent_report_template: dict[str, Any]
) -> None:
    from collector.store import Store

    store = Store.open(f"sqlite:///{collector_dir / 'medsec.db'}")
    try:
        now = datetime.now(UTC)
        token = store.create_enrollment("his-db-01", timedelta(minutes=5), now)
        key = env.generate_private_key("ed25519")
        agent, _ = store.redeem_enrollment(
            token, "his-db-01", "ed25519", env.public_key_pem(key, "ed25519"), now
        )
        for age in (500, 450, 0):
            received = now - timedelta(days=age)
            body = make_report(agent_report_template, generated_at=received)
            store.ingest(agent, env.parse_report(body), body, received)
        results_each = len(agent_report_template["results"])
    finally:
        store.close()
    pruned = medsec("db", "prune", "--config", collector_dir / "collector.yaml")
    assert pruned.code == 0, pruned
    assert pruned.out.startswith(f"pruned 2 reports ({2 * results_each} results) received before ")
    assert pruned.out.rstrip().endswith("(reports.retention_days: 400)")
    with sqlite3.connect(collector_dir / "medsec.db") as db:
        assert db.execute("SELECT count(*) FROM reports").fetchone() == (1,)
        outcome = db.execute(
            "SELECT outcome FROM audit_log WHERE action = 'cli db prune'"
        ).fetchone()
    assert outcome == ("0",)


def test_users_and_agents(collector_dir: Path) -> None:
    config = collector_dir / "collector.yaml"
    assert medsec("users", "add", "root", "--role", "admin", "--config", config).code == 0
    assert medsec("users", "add", "ops", "--role", "operator", "--config", config).code == 0
    users = medsec("users", "list", "--config", config)
    assert users.code == 0
    assert [line.split()[:2] for line in users.lines] == [
        ["NAME", "ROLE"],
        ["ops", "operator"],
        ["root", "admin"],
    ]
    assert "msu_" not in users.out
    assert_usage_error(
        medsec("users", "add", "root", "--role", "auditor", "--config", config),
        "a user named 'root' already exists",
    )
    assert medsec("users", "remove", "ops", "--config", config).code == 0
    assert_usage_error(medsec("users", "remove", "ops", "--config", config), "no user named 'ops'")
    assert_usage_error(
        medsec("users", "add", "bad name", "--role", "admin", "--config", config), "invalid"
    )

    first = medsec("agents", "enroll", "pacs-01", "--config", config)
    second = medsec("agents", "enroll", "pacs-01", "--config", config)  # not enrolled yet: again
    assert first.code == 0
    assert second.code == 0
    assert first.lines[-1] != second.lines[-1]
    agents = medsec("agents", "list", "--config", config)
    assert agents.lines[1].split()[:2] == ["pacs-01", "pending"]
    revoked = medsec("agents", "revoke", "pacs-01", "--config", config)
    assert revoked.code == 0
    assert "revoked" in revoked.out
    assert medsec("agents", "list", "--config", config).lines[1].split()[1] == "revoked"
    assert_usage_error(
        medsec("agents", "revoke", "nobody", "--config", config), "no agent named 'nobody'"
    )

    with sqlite3.connect(collector_dir / "medsec.db") as db:
        outcomes = db.execute("SELECT action, outcome FROM audit_log ORDER BY seq").fetchall()
    assert ("cli users add root --role auditor", "2 user_exists") in outcomes
    assert ("cli users remove ops", "2 not_found") in outcomes
    assert ("cli agents revoke nobody", "2 not_found") in outcomes
    assert ("cli users list", "0") in outcomes


def test_an_active_agent_cannot_be_enrolled_again(
    collector_dir: Path, agent_report_template: dict[str, Any]
) -> None:
    config = collector_dir / "collector.yaml"
    with serve(collector_dir) as served:
        mse = medsec("agents", "enroll", "his-db-01", "--config", config).lines[-1]
        key = env.generate_private_key("sm2-sm3")
        with served.client() as client:
            response = client.post(
                "/api/v1/enroll",
                json={
                    "token": mse,
                    "name": "his-db-01",
                    "alg": "sm2-sm3",
                    "public_key": env.public_key_pem(key, "sm2-sm3"),
                },
            )
        assert response.status_code == 201, response.text
    assert_usage_error(
        medsec("agents", "enroll", "his-db-01", "--config", config), "revoke it first"
    )
    assert medsec("agents", "revoke", "his-db-01", "--config", config).code == 0
    assert medsec("agents", "enroll", "his-db-01", "--config", config).code == 0


def test_commands_on_both_databases(tmp_path: Path, empty_url: str) -> None:
    """`db upgrade` makes the schema on an empty SQLite file or PostgreSQL schema; the commands
    then work there (the PostgreSQL URL is what an operator would write)."""
    folder = tmp_path / "c"
    assert medsec("init", "--dir", folder).code == 0
    config = folder / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = empty_url
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    upgraded = medsec("db", "upgrade", "--config", config)
    assert upgraded.code == 0, upgraded
    assert "upgraded from empty to the latest schema" in upgraded.out
    again = medsec("db", "upgrade", "--config", config)  # a no-op, and it says so
    assert again.code == 0
    assert "already at the latest schema" in again.out
    token = medsec("users", "add", "alice", "--role", "admin", "--config", config).lines[-1]
    assert token.startswith("msu_")
    assert medsec("agents", "enroll", "his-db-01", "--config", config).lines[-1].startswith("mse_")
    verified = medsec("audit", "verify", "--config", config)
    assert verified.code == 0, verified
    assert verified.out.startswith("audit log intact: 4 entries; head 4:")


# --------------------------------------------------------------------------- errors: one line


def test_init_refuses_to_overwrite(collector_dir: Path) -> None:
    before = (collector_dir / "collector.yaml").read_bytes()
    assert_usage_error(medsec("init", "--dir", collector_dir), "already exists")
    assert (collector_dir / "collector.yaml").read_bytes() == before


def test_init_refuses_a_bad_hostname(tmp_path: Path) -> None:
    assert_usage_error(
        medsec("init", "--dir", tmp_path / "c", "--hostname", "not a name"), "--hostname"
    )
    assert not (tmp_path / "c" / "collector.yaml").exists()


def test_usage_errors_are_one_line(tmp_path: Path, collector_dir: Path) -> None:
    config = collector_dir / "collector.yaml"
    assert_usage_error(medsec(), "required")
    assert_usage_error(medsec("frobnicate"), "invalid choice")
    assert_usage_error(medsec("users", "add", "x", "--config", config), "--role")
    assert_usage_error(
        medsec("users", "list", "--config", tmp_path / "nope.yaml"), "settings file not found"
    )
    assert_usage_error(medsec("serve", "--config", config, "--listen", "nowhere"), "--listen")
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text(encoding="utf-8") + "colour: red\n", encoding="utf-8")
    assert_usage_error(medsec("users", "list", "--config", bad), str(bad), "unknown key colour")
    assert medsec("--version").out.strip() == "medsec 0.1.0"


def test_a_readable_key_stops_serve(collector_dir: Path) -> None:
    (collector_dir / "tls" / "key.pem").chmod(0o644)
    assert_usage_error(
        medsec("serve", "--config", collector_dir / "collector.yaml"), "tls.key_file", "chmod 600"
    )


def test_a_busy_port_is_one_line(collector_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = medsec(
            "serve", "--config", collector_dir / "collector.yaml", "--listen", f"127.0.0.1:{port}"
        )
    assert_usage_error(done, f"cannot listen on 127.0.0.1:{port}")


def test_unreachable_database_is_one_line_without_the_password(collector_dir: Path) -> None:
    config = collector_dir / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = (
        f"postgresql+psycopg://medsec:hunter2secret@127.0.0.1:{free_port()}/medsec"
        "?connect_timeout=3"
    )
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    for args in (("users", "list"), ("audit", "verify"), ("db", "upgrade"), ("serve",)):
        done = medsec(*args, "--config", config)
        assert_usage_error(done, "database unavailable")
        assert "hunter2secret" not in done.err


def test_lab_commands_are_part_of_medsec(tmp_path: Path) -> None:
    """`medsec lab` reaches the lab; an absent lab is reported as such, exit 1, nothing made."""
    env = {**_env(), "MEDSEC_LAB_PREFIX": "mcli-", "MEDSEC_LAB_DIR": str(tmp_path / "lab")}
    done = subprocess.run(
        [MEDSEC, "lab", "status"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 1
    assert "lab 'mcli-'" in done.stdout
    assert "absent" in done.stdout
    assert not (tmp_path / "lab").exists()
