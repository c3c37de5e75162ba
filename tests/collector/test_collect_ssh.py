"""`medsec collect ssh` end to end, against a real sshd on a loopback port logging in as root
into this very host: the agentless report equals `medsec-agent run`'s check by check (the
differences the transport makes are listed and asserted), a host that fails is an error line
while the others are reported, usage problems are one line, and `--store` on SQLite and
PostgreSQL keeps agentless evidence under `medsec-agentless` without ever overwriting a real
agent's: refused where an agent holds the host, taken over by the host's first agent report."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import parse_config
from checks import envelope as env
from checks.catalog import builtin_catalogs
from checks.registry import builtin_registry
from collector.agentless import AGENTLESS_AGENT, HostSpec, collect_host, store_document
from collector.models import Agent
from collector.store import Store
from collector.store.ingest import HeldByAgent
from inventory.network.ssh import SshTarget
from tests.inventory.sshd import Sshd, make_key, need_sshd, start_sshd

pytestmark = pytest.mark.root

BIN = Path(sys.executable).parent
MEDSEC = str(BIN / "medsec")
AGENT = str(BIN / "medsec-agent")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_sshd()
    folder = tmp_path_factory.mktemp("keys")
    make_key(folder / "root")
    make_key(folder / "stranger")
    return folder


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[Sshd]:
    """sshd whose commands skip this machine's slow root .bashrc (`quiet_rc`): its bind mount
    shows in the gatherers' view, so the comparison with the agent uses `true_sshd`."""
    server = start_sshd(
        tmp_path_factory.mktemp("sshd"), {"root": [keys / "root.pub"]}, quiet_rc=True
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def true_sshd(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[Sshd]:
    """sshd seeing exactly what the agent sees (no mount of its own)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), {"root": [keys / "root.pub"]})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def known_hosts(tmp_path_factory: pytest.TempPathFactory, sshd: Sshd) -> Path:
    return sshd.write_known_hosts(tmp_path_factory.mktemp("kh") / "known_hosts")


def run(program: str, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [program, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def collect(sshd: Sshd, keys: Path, known_hosts: Path, *args: str | Path) -> Any:
    return run(
        MEDSEC, "collect", "ssh", "--host", sshd.host, "--port", str(sshd.port), "--user", "root",
        "--key-file", keys / "root", "--known-hosts", known_hosts, *args,
    )  # fmt: skip


@pytest.fixture(scope="module")
def local_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `medsec-agent run` reports about this host."""
    config = tmp_path_factory.mktemp("agent") / "agent.yaml"
    config.write_text("{}\n")
    done = run(AGENT, "run", "--config", config, "--format", "json", "--no-push")
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def agentless_report(
    true_sshd: Sshd, keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    known_hosts = true_sshd.write_known_hosts(tmp_path_factory.mktemp("kh") / "known_hosts")
    done = collect(true_sshd, keys, known_hosts, "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    [host] = json.loads(done.stdout)["hosts"]
    assert host["status"] == "collected", host["error"]
    return dict(host["report"])


# --------------------------------------------------------------------------- the same report


def _by_check(document: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["check_id"], r.get("target")): r for r in document["results"]}


def test_the_agentless_report_equals_the_agents_check_by_check(
    local_report: dict[str, Any], agentless_report: dict[str, Any], true_sshd: Sshd
) -> None:
    sshd = true_sshd
    local, remote = copy.deepcopy(local_report), copy.deepcopy(agentless_report)
    assert remote["host"] == local["host"]  # the same host id the agent derives
    assert remote["agent"]["version"] == f"medsec-agentless {local['agent']['version']}"
    assert remote["summary"] == local["summary"]
    mine, theirs = _by_check(local), _by_check(remote)
    assert list(theirs) == list(mine)
    for key, item in mine.items():
        assert theirs[key]["status"] == item["status"], key

    # What the transport shows, and nothing else:
    # 1. the `collection` entry, naming the transport and every command run;
    collection = remote["inventory"].pop("collection")
    assert collection["transport"] == "ssh"
    assert (collection["host"], collection["port"], collection["user"]) == (
        sshd.host,
        sshd.port,
        "root",
    )
    assert collection["sudo"] is False
    assert collection["host_key"] == f"ssh-ed25519 {sshd.fingerprint()}"
    assert collection["files"] == "sftp"
    argvs = [c["argv"] for c in collection["commands"]]
    assert argvs[0] == "true"
    assert any(a.endswith("lsblk --json --bytes --output " + a.rsplit(" ", 1)[-1]) for a in argvs)
    assert all(isinstance(c["exit"], int) for c in collection["commands"])
    # 2. the TPM is read from sysfs alone (tpm2-pytss only talks to this machine's TPM);
    tpm_local, tpm_remote = local["inventory"]["tpm"], remote["inventory"]["tpm"]
    assert tpm_remote["looked_at"][0] == "tss: no TCTI configured"
    assert tpm_local["looked_at"][0].startswith("tss ")
    assert tpm_remote["looked_at"][1:] == tpm_local["looked_at"][1:]
    tpm_remote["looked_at"] = tpm_local["looked_at"]
    present = ("tpm.present", None)
    for doc in (mine, theirs):
        doc[present]["evidence"].pop("looked_at")
        doc[present].pop("message")
        doc[present].pop("message_zh")
    # 3. the moment the logs were looked at.
    remote["inventory"]["logs"]["observed_at"] = local["inventory"]["logs"]["observed_at"]
    for key, item in mine.items():
        if "observed_at" in item["evidence"]:
            theirs[key]["evidence"]["observed_at"] = item["evidence"]["observed_at"]
    for key, item in mine.items():
        assert theirs[key] == item, key
    assert remote["inventory"] == local["inventory"]


# --------------------------------------------------------------------------- many hosts


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_that_fails_is_an_error_line_and_the_others_are_reported(
    sshd: Sshd, keys: Path, known_hosts: Path, tmp_path: Path, silent_port: int
) -> None:
    closed = _closed_port()
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        yaml.safe_dump(
            {
                "defaults": {"user": "root", "key_file": str(keys / "root")},
                "hosts": [
                    {"host": "127.0.0.1", "port": sshd.port},
                    {"host": "localhost", "port": sshd.port, "key_file": "stranger"},
                    {"host": "127.0.0.1", "port": silent_port},
                    {"host": "127.0.0.1", "port": closed},
                ],
            }
        )
    )
    # The stranger's key is relative: it is read from the hosts file's folder.
    (tmp_path / "stranger").write_bytes((keys / "stranger").read_bytes())
    (tmp_path / "stranger").chmod(0o600)
    kh = tmp_path / "known_hosts"
    kh.write_text(
        known_hosts.read_text() + sshd.known_hosts_line().replace("127.0.0.1", "localhost")
    )
    started = time.monotonic()
    done = run(
        MEDSEC, "collect", "ssh", "--hosts", hosts, "--known-hosts", kh, "--format", "json",
        "--connect-timeout", "1", "--concurrency", "4",
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    hosts_out = json.loads(done.stdout)["hosts"]
    assert [(h["host"], h["port"], h["status"]) for h in hosts_out] == [
        ("127.0.0.1", sshd.port, "collected"),
        ("localhost", sshd.port, "error"),
        ("127.0.0.1", silent_port, "error"),
        ("127.0.0.1", closed, "error"),
    ]
    assert hosts_out[0]["report"]["results"]
    assert hosts_out[1]["error"] == (
        f"root@localhost:{sshd.port}: authentication failed with key {tmp_path / 'stranger'}"
    )
    assert hosts_out[2]["error"] == f"root@127.0.0.1:{silent_port}: no SSH answer within 1 s"
    assert hosts_out[3]["error"] == (f"root@127.0.0.1:{closed}: cannot connect: Connection refused")
    assert hosts_out[2]["seconds"] < 2.5  # bounded by --connect-timeout
    assert took < 20
    # Each failure is one line on stderr too; no paramiko noise.
    err = [line for line in done.stderr.splitlines() if line]
    assert err == [h["error"] for h in hosts_out[1:]]


def test_the_table_names_each_host_and_says_how_many_failed(
    sshd: Sshd, keys: Path, known_hosts: Path, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        yaml.safe_dump(
            [
                {"host": "127.0.0.1", "port": sshd.port},
                {"host": "127.0.0.1", "port": _closed_port()},
            ]
        )
    )
    done = run(
        MEDSEC, "collect", "ssh", "--hosts", hosts, "--user", "root", "--key-file",
        keys / "root", "--known-hosts", known_hosts,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"== root@127.0.0.1:{sshd.port}\nmedsec host report: " in done.stdout
    assert "cannot connect: Connection refused" in done.stdout
    assert done.stdout.endswith("2 host(s): 1 collected, 1 failed\n")


def test_a_host_past_its_time_limit_is_an_error_and_gives_no_report(
    sshd: Sshd, keys: Path, known_hosts: Path, silent_port: int
) -> None:
    """A backup source whose server never answers holds the host (psql waits on it); the
    host's limit ends the collection: an error line in bounded time, no partial report."""
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed (the backup gatherer runs it)")
    registry = builtin_registry()
    config = parse_config(
        {
            "backups": [
                {"name": "db", "kind": "postgres", "dsn": f"host=127.0.0.1 port={silent_port}"}
            ],
            "backup_timeout_seconds": 60,
        },
        "test",
        registry,
    )
    login = SshTarget(
        sshd.host, "root", port=sshd.port, key_file=str(keys / "root"),
        known_hosts=str(known_hosts),
    )  # fmt: skip
    started = time.monotonic()
    outcome = collect_host(HostSpec(login, config), registry, builtin_catalogs(), host_timeout=3.0)
    assert time.monotonic() - started < 6
    assert outcome.document is None
    assert outcome.error == f"root@127.0.0.1:{sshd.port}: did not finish within 3 s"
    assert outcome.exit_code == 1


# --------------------------------------------------------------------------- host keys


def test_a_refused_host_key_stores_nothing(
    sshd: Sshd, keys: Path, tmp_path: Path, store_url: str
) -> None:
    config = collector_config(tmp_path / "c", store_url)
    wrong = tmp_path / "wrong_known_hosts"
    other = make_key(tmp_path / "other").with_suffix(".pub").read_text().split()
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    done = collect(sshd, keys, wrong, "--store", "--config", config)
    assert done.returncode == 1
    assert f"root@127.0.0.1:{sshd.port}: host key CHANGED" in done.stdout
    assert sshd.fingerprint() in done.stdout
    unknown = tmp_path / "unknown_known_hosts"
    done = collect(sshd, keys, unknown, "--store", "--config", config)
    assert done.returncode == 1
    assert "is not in" in done.stdout
    assert "--trust-on-first-use" in done.stdout
    assert not unknown.exists()
    with opened(store_url) as store:
        assert store.list_hosts(10, 0).items == ()
    tofu = collect(sshd, keys, unknown, "--trust-on-first-use", "--format", "json")
    assert tofu.returncode in (0, 1), tofu.stderr
    [host] = json.loads(tofu.stdout)["hosts"]
    assert host["report"]["inventory"]["collection"]["host_key_recorded"] is True
    assert unknown.read_text() == sshd.known_hosts_line()
    again = collect(sshd, keys, unknown, "--format", "json")  # known now
    assert json.loads(again.stdout)["hosts"][0]["status"] == "collected"


# --------------------------------------------------------------------------- storing


def collector_config(folder: Path, database: str) -> Path:
    done = run(MEDSEC, "init", "--dir", folder, timeout=60)
    assert done.returncode == 0, done.stderr
    config = folder / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = database
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


@contextlib.contextmanager
def opened(url: str) -> Iterator[Store]:
    store = Store.open(url)
    try:
        yield store
    finally:
        store.close()


def enroll(store: Store, name: str) -> Agent:
    now = datetime.now(UTC)
    token = store.create_enrollment(name, timedelta(minutes=5), now)
    key = env.public_key_pem(env.generate_private_key("ed25519"), "ed25519")
    agent, _ = store.redeem_enrollment(token, name, "ed25519", key, now)
    return agent


def push(store: Store, agent: Agent, document: dict[str, Any]) -> None:
    """What the API does with an agent's verified report."""
    fresh = {**document, "report_id": str(uuid.uuid4())}
    body = json.dumps(fresh).encode()
    store.ingest(agent, env.parse_report(body), body, datetime.now(UTC))


def holder(store: Store, host_id: str) -> str:
    found = store.get_host(host_id)
    assert found is not None
    return found[0].agent


@pytest.fixture
def login(sshd: Sshd, keys: Path, known_hosts: Path) -> tuple[Sshd, Path, Path]:
    return sshd, keys, known_hosts


def test_stored_agentless_evidence_yields_to_the_hosts_own_agent(
    login: tuple[Sshd, Path, Path], tmp_path: Path, store_url: str, local_report: dict[str, Any]
) -> None:
    sshd, keys, known_hosts = login
    host_id = local_report["host"]["id"]
    config = collector_config(tmp_path / "c", store_url)
    label = f"root@127.0.0.1:{sshd.port}"

    # Agentless first: stored under the collector's agentless identity, the agent's host id.
    first = collect(sshd, keys, known_hosts, "--store", "--config", config)
    assert first.returncode in (0, 1), first.stderr
    said = first.stderr.strip().splitlines()[-1]
    assert said.startswith(f"{label}: stored as report ")
    assert said.endswith(f"(host {host_id})")
    with opened(store_url) as store:
        assert holder(store, host_id) == AGENTLESS_AGENT
        _, inventory, _ = store.get_host(host_id) or (None, {}, [])
        assert inventory["collection"]["transport"] == "ssh"
        audit = [e.action for e in store.audit_entries(100, 0).items]
        assert "cli collect ssh --host 127.0.0.1 --store" in audit

        # The host's own agent reports (an older report, even): it takes the host over.
        agent = enroll(store, "his-db-01")
        push(store, agent, local_report)
        assert holder(store, host_id) == "his-db-01"
        _, inventory, _ = store.get_host(host_id) or (None, {}, [])
        assert "collection" not in inventory  # the agent's inventory, not the agentless one

    # Agentless again: refused, the CLI names the agent; the exit code is the report's.
    again = collect(sshd, keys, known_hosts, "--store", "--config", config)
    assert again.returncode == first.returncode
    assert again.stderr.strip().splitlines()[-1] == (
        f"{label}: reported by its agent his-db-01; agentless evidence not stored"
    )
    with opened(store_url) as store:
        assert holder(store, host_id) == "his-db-01"
        assert store.host_reports(host_id, 10, 0).total == 2  # the agentless one kept as history

        # A revoked agent no longer holds the host: agentless evidence is stored again, and the
        # next enrolled agent takes the host back.
        store.revoke_agent("his-db-01", datetime.now(UTC))
    third = collect(sshd, keys, known_hosts, "--store", "--config", config)
    assert "stored as report" in third.stderr
    with opened(store_url) as store:
        assert holder(store, host_id) == AGENTLESS_AGENT
        push(store, enroll(store, "his-db-02"), local_report)
        assert holder(store, host_id) == "his-db-02"


def test_in_one_batch_the_agent_wins_whichever_comes_first(
    store: Store, agentless_report: dict[str, Any], local_report: dict[str, Any]
) -> None:
    """An agentless report and the agent's own for one host, committed together: the host is
    the agent's, whatever their order in the batch."""
    host_id = local_report["host"]["id"]
    agent = enroll(store, "his-db-01")
    now = datetime.now(UTC)
    from collector.agentless import agentless_identity

    agentless = agentless_identity(store, now)
    jobs = []
    for who, doc in ((agentless, agentless_report), (agent, local_report)):
        body = json.dumps({**doc, "report_id": str(uuid.uuid4())}).encode()
        jobs.append(store.submit_ingest(who, env.parse_report(body), body, now))
    for job in jobs:
        job.result(timeout=30)
    assert holder(store, host_id) == "his-db-01"
    # And an agentless report while the agent holds the host is refused naming it.
    with pytest.raises(HeldByAgent) as refused:
        store_document(store, {**agentless_report, "report_id": str(uuid.uuid4())}, now)
    assert refused.value.holder == "his-db-01"


# --------------------------------------------------------------------------- usage errors


def _one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.startswith("medsec"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_usage_problems_are_one_line(
    sshd: Sshd, keys: Path, known_hosts: Path, tmp_path: Path
) -> None:
    base = ["collect", "ssh", "--host", "127.0.0.1", "--port", str(sshd.port)]
    _one_line(run(MEDSEC, *base, "--key-file", keys / "root"), "--host needs --user")
    _one_line(run(MEDSEC, "collect", "ssh", "--user", "root"), "--host", "--hosts")
    _one_line(
        run(MEDSEC, *base, "--user", "root", "--key-file", keys / "root", "--store"),
        "--store needs --config",
    )
    _one_line(
        run(MEDSEC, *base, "--user", "root", "--key-file", tmp_path / "missing"),
        "No such file or directory",
    )
    loose = tmp_path / "loose"
    loose.write_bytes((keys / "root").read_bytes())
    loose.chmod(0o644)
    _one_line(
        run(MEDSEC, *base, "--user", "root", "--key-file", loose), "mode 0644 lets others read it"
    )
    bad_config = tmp_path / "agent.yaml"
    bad_config.write_text("backups: 3\n")
    _one_line(
        run(MEDSEC, *base, "--user", "root", "--key-file", keys / "root", "--agent-config",
            bad_config),
        "agent.yaml", "backups",
    )  # fmt: skip
    _one_line(
        run(MEDSEC, *base, "--user", "root", "--key-file", keys / "root", "--concurrency", "0"),
        "--concurrency",
    )
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump([{"host": "127.0.0.1", "passphrase": "hunter2"}]))
    done = run(MEDSEC, "collect", "ssh", "--hosts", hosts, "--user", "root")
    _one_line(done, "hosts[0].passphrase", "never read from the hosts file")
    assert "hunter2" not in done.stderr
    hosts.write_text(yaml.safe_dump([{"host": "127.0.0.1", "colour": "blue"}]))
    _one_line(run(MEDSEC, "collect", "ssh", "--hosts", hosts, "--user", "root"), "colour")
    hosts.write_text(yaml.safe_dump([{"host": "127.0.0.1"}]))
    hosts.chmod(0o666)
    _one_line(run(MEDSEC, "collect", "ssh", "--hosts", hosts, "--user", "root"), "chmod go-w")
    hosts.chmod(0o644)
    twice = [{"host": "127.0.0.1", "key_file": str(keys / "root")}] * 2
    hosts.write_text(yaml.safe_dump(twice))
    _one_line(run(MEDSEC, "collect", "ssh", "--hosts", hosts, "--user", "root"), "hosts[1]")
    hosts.write_text(yaml.safe_dump([{"host": "127.0.0.1", "key_file": str(keys / "root")}]))
    _one_line(run(MEDSEC, "collect", "ssh", "--hosts", hosts), "no user")
