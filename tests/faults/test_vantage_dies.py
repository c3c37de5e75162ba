"""A scan vantage that dies mid-scan: an operator starts a scan through the collector's API
(`medsec serve`, `POST /api/v1/scans`), the scan's only vantage is an SSH host (sshd in a network
namespace of the test's own, see tests/faults/vantage.py) running nmap over a zone that answers
nothing, and while nmap runs the host dies: every process on it killed (the SSH connection
closes), or frozen (SIGSTOP: the connection stays open and silent, as a host that lost power).

What must hold: the scan ends — it does not wait for the collector's hour-long scan timeout —
nothing keeps running, the audit log verifies, and the scan is recorded as failed with a reason
naming the vantage, with nothing of it stored as if the network had been scanned.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from collector.models import Role
from tests.faults.rig import Collector
from tests.faults.vantage import ADDRESS, DARK_ZONE, ZONE, SshVantageHost, VantageUnavailable, sweep

pytestmark = pytest.mark.root
VANTAGE = f"ssh:probe@{ADDRESS}"


@pytest.fixture
def vantage() -> Iterator[SshVantageHost]:
    if os.geteuid() != 0:
        pytest.skip("a network namespace with its own sshd needs root")
    sweep()
    host = SshVantageHost()
    try:
        host.up()
    except VantageUnavailable as exc:
        host.down()
        pytest.skip(f"no SSH vantage host can be made here: {exc}")
    try:
        yield host
    finally:
        host.down()


def zones_file(folder: Path, host: SshVantageHost) -> Path:
    """Two zones: the vantage's, and a dark one it scans slowly (nmap -T0 waits minutes between
    probes), so the scan is surely running when the vantage dies."""
    path = folder / "zones.yaml"
    path.write_text(
        f"""zones:
  - name: office
    cidrs: ["{ZONE}"]
    users: true
    vantage:
      kind: ssh
      host: {ADDRESS}
      user: probe
      key_file: {host.key_file}
      known_hosts: {host.known_hosts}
      via_netns: {host.netns}
      connect_timeout_seconds: 2
  - name: his
    cidrs: ["{DARK_ZONE}"]
    critical: true
scan:
  ports: listed
  extra_ports: ["tcp/22", "tcp/5432"]
  timing: 0
  min_rate: null
  vantage_timeout_seconds: 6
""",
        encoding="utf-8",
    )
    return path


def scanning(host: SshVantageHost, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while "nmap" not in host.programs():
        assert time.monotonic() < deadline, f"nmap never started on the vantage: {host.log()}"
        time.sleep(0.05)


def scan_processes(zones: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(zones) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.mark.parametrize("death", ["killed", "frozen"])
def test_a_vantage_dying_mid_scan_fails_the_scan(
    tmp_path: Path,
    vantage: SshVantageHost,
    new_collector: Callable[[str], Collector],
    death: str,
) -> None:
    zones = zones_file(tmp_path, vantage)
    collector = new_collector(f"sqlite:///{tmp_path / 'medsec.db'}")
    collector.write_settings(f"scans: {{zones: {{wards: {zones}}}, timeout_seconds: 3600}}\n")
    collector.start()
    store = collector.open_store()
    try:
        _, token = store.add_user("olga", Role.OPERATOR, datetime.now(UTC))
    finally:
        store.close()
    with collector.client(token) as client:
        started = client.post("/api/v1/scans", json={"zones": "wards"})
        assert started.status_code == 202, started.text
        scan_id = started.json()["id"]
        scanning(vantage)
        time.sleep(0.3)
        died = time.monotonic()
        vantage.signal_all(signal.SIGKILL if death == "killed" else signal.SIGSTOP)
        done: dict[str, Any] = {"state": "running"}
        while done["state"] == "running":
            assert time.monotonic() - died < 60, "the scan did not end after its vantage died"
            time.sleep(0.2)
            done = client.get(f"/api/v1/scans/{scan_id}").json()
    took = time.monotonic() - died
    print(f"vantage {death}: the scan ended {took:.1f} s later: {done}")
    assert not scan_processes(zones)  # the scan process and all it started are gone
    print(collector.assert_sound())

    stored = collector.stored()
    assert done["state"] == "failed", done
    assert done["report_id"] is None
    assert stored == {}  # no report of it: nothing reads as the network's state
    message = done["message"]
    assert message.startswith("medsec scan: a vantage failed, the scan is incomplete: "), message
    assert f"zone office, vantage {VANTAGE}" in message, message
    if death == "killed":
        assert message.endswith("the SSH connection was lost while nmap ran"), message
    else:  # frozen: the connection stays open and silent until the vantage's time runs out
        assert "ran out of time: nmap stopped after" in message, message
    assert "exited -1" not in message
