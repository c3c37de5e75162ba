"""Periodic scans of the lab with probes that dial out, end to end, on real components: two
collector processes (`medsec serve`, ports 8443 and 8080) inside the lab's mgmt namespace on one
PostgreSQL database (reached over its Unix socket: a network namespace has its own loopback),
a probe process (`medsec-agent probe`) inside his and inside office, a schedule every few seconds,
and a webhook + syslog receiver beside the collectors.

his and office are probe zones: the zones file gives them `{kind: probe}`, so the collectors never
run anything there; the probes claim their zone's jobs over HTTPS through the lab's router, which
lets his and office dial the collector in mgmt and drops every connection from mgmt into his but
SSH. What is shown:
- every scheduled due time is scanned once, and every job of every scan runs exactly once;
- a probe killed mid-job loses its lease and the job is done by its successor, attempt 2;
- `medsec lab fault office-his-open on` between two scans shows in `medsec scans diff` and fires
  one webhook call (signed) and one syslog line; turning it off fires the clearing alert once.

Needs root, network namespaces and the PostgreSQL on this machine (skips with the reason
otherwise). Every address is the lab's, in 198.18.0.0/15, or 127.0.0.1 inside mgmt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
import yaml

from collector.lab import Lab
from collector.lab.topology import FAULT_OFFICE_HIS_OPEN, zone
from collector.scan.vantage import socket_in_netns
from tests.collector.lab_zones import write_lab_zones

pytestmark = pytest.mark.root  # on one worker, in order (tests/conftest.py WORKER_GROUPS)

BIN = Path(sys.executable).parent
MEDSEC = str(BIN / "medsec")
AGENT = str(BIN / "medsec-agent")
RECEIVER = Path(__file__).with_name("periodic_receiver.py")
COLLECTOR_ADDRESS = zone("mgmt").addresses[0]
PORTS = (8443, 8080)
PROBE_ZONES = ("his", "office")
EVERY_SECONDS = 3
LEASE_SECONDS = 3
SOCKET_DIR = "/var/run/postgresql"


def _run(argv: list[str], *, stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv[:4]} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@dataclass
class Site:
    lab: Lab
    folder: Path
    database: str
    """The collectors' URL: PostgreSQL over its Unix socket."""
    admin: str
    """The same database over TCP, for the test's own queries (psycopg conninfo)."""
    secret: bytes
    hook_dir: Path
    configs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    probes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def medsec(self, *args: str, collector: int = 0) -> str:
        return _run([MEDSEC, *args, "--config", str(self.configs[collector])])

    def start(self, zone_name: str, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.folder / log).open("ab") as out:
            process = subprocess.Popen(
                self.lab.command(zone_name, *argv),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a kill takes its nmap along
            )  # fmt: skip
        self.processes.append(process)
        return process

    def start_probe(self, zone_name: str) -> subprocess.Popen[bytes]:
        config = self.folder / f"probe-{zone_name}.yaml"
        process = self.start(
            zone_name, [AGENT, "probe", "--config", str(config)], f"{zone_name}.log"
        )
        self.probes[zone_name] = process
        return process

    def log(self, name: str) -> str:
        path = self.folder / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def wait(self, what: str, ready: Callable[[], Any], seconds: float = 90) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            time.sleep(0.2)
        logs = "\n".join(f"--- {n}\n{self.log(n)}" for n in ("c0.log", "c1.log", "his.log"))
        raise AssertionError(f"{what}: not within {seconds} s\n{logs}")

    def finished_scans(self) -> list[tuple[Any, ...]]:
        """(id, state, due_at, started_at, report_id) of the schedule's finished scans, oldest
        first."""
        return self.query(
            "SELECT id, state, due_at, started_at, report_id FROM scans"
            " WHERE schedule_id IS NOT NULL AND state <> 'running' ORDER BY started_at"
        )

    def webhook_calls(self) -> list[dict[str, Any]]:
        path = self.hook_dir / "webhook.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def syslog_lines(self) -> list[str]:
        path = self.hook_dir / "syslog.log"
        return path.read_text().splitlines() if path.exists() else []


def _free_port_in(lab: Lab, zone_name: str) -> int:
    """A TCP port free on 127.0.0.1 of a lab zone's namespace (asked of that namespace)."""
    code = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
    return int(_run(lab.command(zone_name, sys.executable, "-c", code)).strip())


def _zones(lab: Lab, folder: Path) -> Path:
    """The lab's zones file with his and office scanned by their probes, over the listed ports
    (seconds per scan instead of the top 1,000's quarter minute)."""
    path = write_lab_zones(lab, folder / "zones")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in data["zones"]:
        if entry["name"] in PROBE_ZONES:
            entry["vantage"] = {"kind": "probe"}
    data["scan"]["ports"] = "listed"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _collector_config(
    site: Site, index: int, zones: Path, tls: Path, ports: tuple[int, int]
) -> Path:
    http_port, udp_port = ports
    settings = {
        "listen": f"{COLLECTOR_ADDRESS}:{PORTS[index]}",
        "tls": {"cert_file": str(tls / "cert.pem"), "key_file": str(tls / "key.pem")},
        "database": site.database,
        "scans": {
            "zones": {"hospital": str(zones)},
            "min_every_seconds": 1,
            "schedule_tick_seconds": 0.5,
            "timeout_seconds": 120,
        },
        "probes": {"lease_seconds": LEASE_SECONDS, "job_timeout_seconds": 120},
        "alerts": {
            "webhook": {
                "url": f"http://127.0.0.1:{http_port}/medsec",
                "secret_file": str(site.folder / "webhook.secret"),
                "timeout_seconds": 5,
            },
            "syslog": {"address": f"127.0.0.1:{udp_port}"},
        },
    }
    path = site.folder / f"collector-{index}.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def _enrol_probe(site: Site, zone_name: str, collector: int, ca: Path) -> None:
    name = f"probe-{zone_name}"
    token = site.medsec("agents", "enroll", name, "--probe-zone", zone_name).splitlines()[-1]
    url = f"https://{COLLECTOR_ADDRESS}:{PORTS[collector]}"
    state = site.folder / f"probe-{zone_name}"
    state.mkdir(mode=0o700)
    config = {
        "collector": {
            "url": url,
            "ca_file": str(ca),
            "credential_file": str(state / "agent.cred"),
            "timeout_seconds": 5,
        },
        "spool_dir": str(state / "spool"),
        "probe": {"zone": zone_name, "targets": ["198.18.0.0/16"], "wait_seconds": 2},
    }
    path = site.folder / f"probe-{zone_name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    _run(
        site.lab.command(zone_name, AGENT, "enroll", "--config", str(path), "--collector", url,
                         "--ca-file", str(ca), "--name", name, "--token", "-"),
        stdin=token + "\n",
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(lab: Lab, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not Path(SOCKET_DIR).is_dir():
        pytest.skip(f"no PostgreSQL socket folder {SOCKET_DIR}: the collectors in a namespace "
                    "reach the database through it")  # fmt: skip
    name = pg_url.rsplit("/", 1)[1]
    folder = tmp_path_factory.mktemp("periodic")
    folder.chmod(0o700)
    hook_dir = folder / "received"
    hook_dir.mkdir()
    secret = os.urandom(32).hex().encode()
    site = Site(
        lab=lab,
        folder=folder,
        database=f"postgresql+psycopg://postgres@/{name}?host={SOCKET_DIR}",
        admin=f"host=127.0.0.1 port=5432 user=postgres dbname={name}",
        secret=secret,
        hook_dir=hook_dir,
    )
    (folder / "webhook.secret").write_bytes(secret + b"\n")
    (folder / "webhook.secret").chmod(0o600)
    tls = folder / "tls"
    tls.mkdir()
    ca = trustme.CA()
    leaf = ca.issue_cert(COLLECTOR_ADDRESS)
    leaf.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tls / "key.pem"))
    (tls / "key.pem").chmod(0o600)
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    zones = _zones(lab, folder)
    ports = (_free_port_in(lab, "mgmt"), _free_port_in(lab, "mgmt"))
    site.configs = [_collector_config(site, i, zones, tls, ports) for i in range(2)]
    try:
        site.medsec("db", "upgrade")
        site.start("mgmt", [sys.executable, "-I", str(RECEIVER), *map(str, ports), str(hook_dir)],
                   "receiver.log")  # fmt: skip
        for index, config in enumerate(site.configs):
            site.start("mgmt", [MEDSEC, "serve", "--config", str(config)], f"c{index}.log")
        for port in PORTS:
            site.wait(f"collector on {port}", _listener(lab, port), 60)
        site.wait("the receiver", (hook_dir / "ready").exists, 20)
        for index, zone_name in enumerate(PROBE_ZONES):
            _enrol_probe(site, zone_name, index, tls / "ca.pem")
            site.start_probe(zone_name)
        yield site
    finally:
        for process in site.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in site.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _listener(lab: Lab, port: int) -> Callable[[], bool]:
    def listening() -> bool:
        try:
            socket_in_netns(lab.netns("mgmt"), COLLECTOR_ADDRESS, port, 1).close()
        except OSError:
            return False
        return True

    return listening


@pytest.fixture(scope="module")
def scheduled(site: Site) -> Site:
    site.medsec("schedules", "add", "lab", "--zones", "hospital", "--every", f"{EVERY_SECONDS}s")
    return site


def test_a_probe_zone_takes_no_connection_from_the_collectors_zone(site: Site) -> None:
    # The router lets mgmt reach his on SSH only: the collector could not dial a probe there.
    his_host = zone("his").addresses[0]
    with pytest.raises(OSError, match=r"timed out|No route"):
        socket_in_netns(site.lab.netns("mgmt"), his_host, 8443, 2).close()


def test_every_due_time_is_scanned_once_and_every_job_runs_once(scheduled: Site) -> None:
    site = scheduled
    site.wait("three scheduled scans", lambda: len(site.finished_scans()) >= 3, 120)
    scans = site.finished_scans()
    passed = [s for s in scans if s[1] in ("passed", "findings")]
    assert passed, f"no scheduled scan completed: {scans}\n{site.log('c0.log')}"
    dues = [s[2] for s in scans]
    assert len(dues) == len(set(dues))  # never twice for one due time, two collectors firing
    rows = site.query(
        "SELECT j.zone, j.kind, j.state, j.attempts FROM jobs j JOIN scans s ON s.id = j.scan_id"
        " WHERE s.id = ANY(%s)",
        [s[0] for s in passed],
    )
    assert {r[0] for r in rows} == set(PROBE_ZONES)  # both probes worked, nothing else queued
    assert {r[1] for r in rows} >= {"nmap"}
    assert all(r[2] == "done" for r in rows), rows
    assert all(r[3] == 1 for r in rows), rows  # each run exactly once


def test_a_probe_killed_mid_job_loses_it_to_its_successor(scheduled: Site) -> None:
    site = scheduled
    claimed = site.wait(
        "an nmap job claimed in his",
        lambda: site.query(
            "SELECT id FROM jobs WHERE zone = 'his' AND kind = 'nmap' AND state = 'claimed'"
        ),
        90,
    )
    job_id = claimed[0][0]
    probe = site.probes["his"]
    os.killpg(probe.pid, signal.SIGKILL)  # the probe and its nmap, mid-job
    probe.wait(10)
    killed_at = time.monotonic()
    site.start_probe("his")
    done = site.wait(
        "the killed probe's job done by its successor",
        lambda: site.query(
            "SELECT state, attempts FROM jobs WHERE id = %s AND state <> 'claimed'", job_id
        ),
        60,
    )
    assert done == [("done", 2)]
    assert time.monotonic() - killed_at >= LEASE_SECONDS - 1  # not before the lease ran out
    ended = site.wait(
        "the scan of that job finishing",
        lambda: site.query(
            "SELECT s.state FROM scans s JOIN jobs j ON j.scan_id = s.id"
            " WHERE j.id = %s AND s.state <> 'running'",
            job_id,
        ),
        90,
    )
    assert ended[0][0] in ("passed", "findings"), ended


def _verified(site: Site, call: dict[str, Any]) -> dict[str, Any]:
    body = base64.b64decode(call["body"])
    expected = "sha256=" + hmac.new(site.secret, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(call["headers"]["x-medsec-signature"], expected)
    return json.loads(body)  # type: ignore[no-any-return]


def _scan_after(site: Site, moment: float) -> tuple[Any, ...]:
    """The first scheduled scan that completed and started after `moment` (time.time())."""

    def found() -> tuple[Any, ...] | None:
        for scan in site.finished_scans():
            if scan[1] in ("passed", "findings") and scan[3].timestamp() > moment:
                return scan
        return None

    return site.wait("a scan started after the switch", found, 120)  # type: ignore[no-any-return]


def test_a_fault_shows_in_the_diff_and_alerts_once_then_clears_once(scheduled: Site) -> None:
    site = scheduled
    before = _scan_after(site, 0)
    try:
        site.lab.fault(FAULT_OFFICE_HIS_OPEN, True)
        opened = _scan_after(site, time.time())
        later = _scan_after(site, opened[3].timestamp())  # one more scan: no second alert
    finally:
        site.lab.fault(FAULT_OFFICE_HIS_OPEN, False)
    diff = json.loads(site.medsec("scans", "diff", before[0], opened[0], "--format", "json"))
    opened_paths = {(p["from"], p["to"], p["proto"], p["port"]) for p in diff["paths"]["opened"]}
    new_violations = {(p["from"], p["to"]) for p in diff["violations"]["new"]}
    assert ("office", "his", "tcp", 5432) in opened_paths, diff  # the database, seen by a probe
    assert new_violations == {("office", "his")}, diff
    assert not diff["paths"]["closed"], diff
    assert not diff["violations"]["cleared"], diff
    raised = site.wait(
        "the raised alert delivered",
        lambda: [c for c in site.webhook_calls() if _verified(site, c)["event"] == "raised"],
        30,
    )
    bodies = [_verified(site, c) for c in raised]
    office_his = [b for b in bodies if b["kind"] == "violation" and "office->his" in b["key"]]
    assert len(office_his) == 1, bodies  # once, though two scans saw it
    assert later[0] != opened[0]
    assert any("raised" in line and "office" in line for line in site.syslog_lines())
    cleared_after = _scan_after(site, time.time())
    assert cleared_after
    cleared = site.wait(
        "the clearing alert delivered",
        lambda: [c for c in site.webhook_calls() if _verified(site, c)["event"] == "cleared"],
        60,
    )
    bodies = [_verified(site, c) for c in cleared]
    assert len([b for b in bodies if b["kind"] == "violation" and "office->his" in b["key"]]) == 1
    assert any("cleared" in line and "office" in line for line in site.syslog_lines())
