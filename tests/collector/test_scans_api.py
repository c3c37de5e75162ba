"""Scans started through the API (`POST /api/v1/scans`): a real uvicorn server on loopback starts
the real scanner (nmap) against zones on 127.0.0.1 and 127.0.0.2 only, stores the results, and
records how each scan ended — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from collector.models import Role, ScanState
from collector.settings import ScanSettings
from collector.store import Store
from tests.collector.fixtures_api import Server, TlsFiles, make_server_tls, serving

pytestmark = pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap (Debian: nmap)")

# Loopback only: two zones on two loopback addresses, scanned from this machine.
ZONES = """\
zones:
  - name: servers
    cidrs: ["127.0.0.1/32"]
    critical: true
    vantage: {{kind: local}}
  - name: office
    cidrs: ["127.0.0.2/32"]
    users: true
    vantage: {{kind: local}}
scan:
  extra_ports: ["tcp/22", "tcp/5432"]
  timing: {timing}
  min_rate: {min_rate}
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _confined(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner refuses any zone outside loopback, whatever a zones file says."""
    monkeypatch.setenv("MEDSEC_SCAN_CONFINE", "127.0.0.0/8")


def zones_file(folder: Path, *, slow: bool = False) -> Path:
    """With `slow`, nmap's paranoid timing (-T0, no minimum rate) waits minutes between probes,
    so the scan cannot end by itself within a test."""
    path = folder / "zones.yaml"
    text = ZONES.format(timing=0 if slow else 4, min_rate="null" if slow else 3000)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def scanning(store: Store, tls: TlsFiles, tmp_path: Path) -> Iterator[Server]:
    settings = ScanSettings(zones={"loopback": str(zones_file(tmp_path))})
    with serving(store, tls, scans=settings) as server:
        yield server


def wait_for_end(server: Server, token: str, scan_id: str, seconds: float = 90) -> dict[str, Any]:
    client = server.client(token)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scan: dict[str, Any] = client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["state"] != "running":
            return scan
        time.sleep(0.2)
    raise AssertionError(f"scan {scan_id} still running after {seconds} s")


def scanners_running(zones: Path) -> list[psutil.Process]:
    """The scan processes of `zones` and everything they started (nmap, probes)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(zones) in " ".join(process.info["cmdline"] or []):
            found.append(process)
            try:
                found.extend(process.children(recursive=True))
            except psutil.Error:  # it ended while being looked at: nothing of it is left
                continue
    return found


def running_nmap(zones: Path, seconds: float = 12) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        processes = scanners_running(zones)
        if any(_name(p) == "nmap" for p in processes):
            return processes
        time.sleep(0.1)
    raise AssertionError("the scan never started nmap")


def _name(process: psutil.Process) -> str | None:
    try:
        return process.name()
    except psutil.Error:  # it ended since it was listed
        return None


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:  # it ended between the two questions
        return False


def all_gone(processes: list[psutil.Process], zones: Path, seconds: float = 20) -> bool:
    """Whether every one of `processes`, and any scan process of `zones` started since, has
    ended (the scan gets SIGTERM and stops its nmaps; SIGKILL follows after 15 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in [*processes, *scanners_running(zones)]):
            return True
        time.sleep(0.2)
    return False


def test_an_operator_starts_a_scan_and_its_results_are_stored(
    scanning: Server, tmp_path: Path
) -> None:
    server = scanning
    operator = server.user(Role.OPERATOR, "olga")
    started = server.client(operator).post("/api/v1/scans", json={"zones": "loopback"})
    assert started.status_code == 202, started.text
    scan = started.json()
    assert (scan["zones"], scan["requested_by"], scan["state"]) == ("loopback", "olga", "running")

    auditor = server.user(Role.AUDITOR)
    done = wait_for_end(server, auditor, scan["id"])
    # Loopback has no firewall between the two zones: the border check fails, so findings.
    assert done["state"] == "findings", done
    assert done["report_id"]
    assert done["finished_at"]
    assert done["message"] is None
    results = server.client(auditor).get(
        "/api/v1/results", params={"check_id": "net.border_firewall"}
    )
    assert {r["report_id"] for r in results.json()["items"]} == {done["report_id"]}
    hosts = server.client(auditor).get("/api/v1/hosts").json()["items"]
    assert [h["agent"] for h in hosts] == ["medsec-scanner"]
    listed = server.client(auditor).get("/api/v1/scans").json()
    assert [s["id"] for s in listed["items"]] == [scan["id"]]
    actions = [(e.actor, e.action, e.outcome) for e in server.store.audit_entries(100, 0).items]
    assert ("olga", "POST /api/v1/scans", "202") in actions
    assert not scanners_running(tmp_path / "zones.yaml")


def test_one_scan_per_zones_file_at_a_time(scanning: Server) -> None:
    server = scanning
    # A scan another collector process started (and is running) holds the zones file.
    other = server.store.start_scan(
        "loopback", "ivan", server.clock(), server.clock() + timedelta(hours=1)
    )
    operator = server.client(server.user(Role.OPERATOR))
    refused = operator.post("/api/v1/scans", json={"zones": "loopback"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "scan_running"
    server.store.finish_scan(other.id, ScanState.FAILED, server.clock(), message="test")
    assert operator.post("/api/v1/scans", json={"zones": "loopback"}).status_code == 202


def test_a_scan_lost_with_its_collector_shows_as_lost_and_stops_blocking(store: Store) -> None:
    start = _now()
    lost = store.start_scan("loopback", "ivan", start, start + timedelta(minutes=61))
    running = store.get_scan(lost.id, start + timedelta(minutes=60))
    assert running is not None
    assert running.state is ScanState.RUNNING
    later = start + timedelta(minutes=62)
    shown = store.get_scan(lost.id, later)  # past its deadline: its collector is gone
    assert shown is not None
    assert (shown.state, shown.message) == (
        ScanState.FAILED,
        "lost: the collector stopped while the scan ran",
    )
    assert store.list_scans(10, 0, later).items[0].state is ScanState.FAILED
    fresh = store.start_scan("loopback", "olga", later, later + timedelta(minutes=61))
    assert fresh.state is ScanState.RUNNING
    # The lost scan's own collector cannot reopen or rewrite it.
    assert store.finish_scan(lost.id, ScanState.PASSED, later).state is ScanState.FAILED


def test_unknown_zones_and_bad_bodies_are_refused(scanning: Server) -> None:
    operator = scanning.client(scanning.user(Role.OPERATOR))
    unknown = operator.post("/api/v1/scans", json={"zones": "elsewhere"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_zones")
    for body in ({"zones": "/etc/passwd"}, {"zones": "loopback", "extra": 1}, {}):
        response = operator.post("/api/v1/scans", json=body)
        assert (response.status_code, response.json()["error"]) == (422, "invalid_request"), body
    assert scanning.store.list_scans(10, 0, _now()).total == 0


def test_a_scan_that_cannot_run_is_recorded_as_failed_with_the_reason(
    scanning: Server, tmp_path: Path
) -> None:
    (tmp_path / "zones.yaml").write_text("zones: [{name: servers}]\n", encoding="utf-8")
    operator = scanning.user(Role.OPERATOR)
    started = scanning.client(operator).post("/api/v1/scans", json={"zones": "loopback"})
    done = wait_for_end(scanning, operator, started.json()["id"])
    assert done["state"] == "failed"
    assert done["report_id"] is None
    assert done["message"].startswith("medsec scan: ")
    assert "cidrs" in done["message"]
    assert scanning.store.list_hosts(10, 0).total == 0


def test_a_scan_whose_vantage_fails_is_failed_with_the_vantage_and_nothing_is_stored(
    store: Store, tls: TlsFiles, tmp_path: Path
) -> None:
    # The office vantage is an SSH host that is down: nothing listens on its port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key, known = tmp_path / "probe_key", tmp_path / "known_hosts"
    key.write_text("unused: the connection is refused first\n", encoding="utf-8")
    known.write_text("", encoding="utf-8")
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        ZONES.format(timing=4, min_rate=3000).replace(
            "users: true\n    vantage: {kind: local}",
            f"users: true\n    vantage: {{kind: ssh, host: 127.0.0.1, port: {port}, user: probe, "
            f"key_file: {key}, known_hosts: {known}, connect_timeout_seconds: 5}}",
        ),
        encoding="utf-8",
    )
    with serving(store, tls, scans=ScanSettings(zones={"half": str(zones)})) as server:
        operator = server.user(Role.OPERATOR)
        started = server.client(operator).post("/api/v1/scans", json={"zones": "half"})
        done = wait_for_end(server, operator, started.json()["id"])
    # The servers zone scanned fine, but half a scan must not stand as the network's state.
    assert done["state"] == "failed", done
    assert done["report_id"] is None
    assert done["message"].startswith(
        "medsec scan: a vantage failed, the scan is incomplete: zone office, vantage "
        "ssh:probe@127.0.0.1: cannot connect: "
    ), done["message"]
    assert store.list_hosts(10, 0).total == 0
    assert not scanners_running(zones)


def test_a_scan_past_its_timeout_is_stopped_with_its_nmap(
    tls: TlsFiles, tmp_path: Path, sqlite_store: Store
) -> None:
    zones = zones_file(tmp_path, slow=True)
    settings = ScanSettings(zones={"slow": str(zones)}, timeout_seconds=20)
    with serving(sqlite_store, tls, scans=settings) as server:
        operator = server.user(Role.OPERATOR)
        started = server.client(operator).post("/api/v1/scans", json={"zones": "slow"})
        processes = running_nmap(zones)
        done = wait_for_end(server, operator, started.json()["id"], seconds=40)
    assert done["state"] == "failed"
    assert done["message"] == "stopped after 20 s (scans.timeout_seconds)"
    assert all_gone(processes, zones)


def test_stopping_the_collector_stops_its_scans(
    tls: TlsFiles, tmp_path: Path, sqlite_store: Store
) -> None:
    zones = zones_file(tmp_path, slow=True)
    with serving(sqlite_store, tls, scans=ScanSettings(zones={"slow": str(zones)})) as server:
        operator = server.user(Role.OPERATOR)
        scan_id = server.client(operator).post("/api/v1/scans", json={"zones": "slow"}).json()["id"]
        processes = running_nmap(zones)
    stopped = sqlite_store.get_scan(scan_id, _now())
    assert stopped is not None
    assert (stopped.state, stopped.message) == (ScanState.FAILED, "the collector stopped")
    assert all_gone(processes, zones)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'medsec.db'}")
    store.upgrade()
    yield store
    store.close()


def _now() -> datetime:
    return datetime.now(UTC)
