"""`ProbeVantage` over the real job queue (SQLite and PostgreSQL): each scanner operation becomes
one job, a probe worker claims it from the store, checks it with the probe's guard and runs it
with the probe's runner (real nmap against a socket this test listens on), and the vantage turns
the result back into the scanner's `NmapResult`. The HTTP side of the probe is tested end to end
in tests/agent/test_probe.py; here the worker claims straight from the store, which is what the
probe API does for it."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.probe_exec import JobFailed, JobRunner
from collector.scan.nmap import NmapOptions, build_argv, top_ports_argv
from collector.scan.probe_guard import Refused, Targets, check_job
from collector.scan.probe_vantage import ProbeVantage
from collector.scan.vantage import VantageError
from collector.scan.zones import PortSpec, Scope, ZonesError, parse_zones
from collector.store import Store

ZONE = "office"
LOOPBACK = Scope((ipaddress.IPv4Network("127.0.0.0/8"),))


class Worker:
    """A probe of ZONE claiming from the store in a thread of its own until stopped."""

    def __init__(self, store: Store, targets: tuple[str, ...] = ("127.0.0.0/8",)) -> None:
        self.store = store
        self.targets = Targets.parse(targets)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._loop()), daemon=True)

    async def _loop(self) -> None:
        runner = JobRunner(ZONE)
        while not self.stop.is_set():
            jobs = self.store.claim_jobs(
                ZONE, "probe-1", datetime.now(UTC), timedelta(seconds=30), 4
            )
            for job in jobs:
                result, error = None, None
                try:
                    result = await runner.run(check_job(job.kind, job.request, self.targets))
                except (Refused, JobFailed) as exc:
                    error = str(exc)
                self.store.finish_job(
                    job.id, job.claim_id or "", "probe-1", datetime.now(UTC),
                    result=result, error=error,
                )  # fmt: skip
            await asyncio.sleep(0.05)


@pytest.fixture
def worker(store: Store) -> Iterator[Worker]:
    started = Worker(store)
    started.thread.start()
    yield started
    started.stop.set()
    started.thread.join(10)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield int(server.getsockname()[1])


def _vantage(store: Store, claim_timeout: float = 20.0) -> ProbeVantage:
    return ProbeVantage(
        ZONE, store, scan_id="scan-1", claim_timeout=claim_timeout, job_timeout=120, poll=0.05
    )


def test_nmap_through_a_probe_gives_the_scanners_result(
    store: Store, worker: Worker, listening: int
) -> None:
    vantage = _vantage(store)
    argv = build_argv(
        nmap=vantage.nmap,
        scans=["connect"],
        ports=[PortSpec("tcp", listening), PortSpec("tcp", 1)],
        targets=["127.0.0.1"],
        scope=LOOPBACK,
        options=NmapOptions(min_rate=None, host_timeout_seconds=30),
    )
    notes: list[str] = []
    result = asyncio.run(
        vantage.run_nmap(argv, timeout=60, total_hosts=1, on_progress=lambda _, n: notes.append(n))
    )
    assert result.status == "ok", result.message
    assert result.argv == tuple(argv)
    (host,) = result.run.hosts
    states = {p.port: p.state for p in host.all_ports()}
    assert states[listening] == "open"
    assert states[1] == "closed"
    assert result.command.startswith("probe probe-1: /")
    assert "nmap" in result.command
    assert any("probe-1" in n for n in notes)
    assert asyncio.run(vantage.privileged()) in (True, False)
    top = asyncio.run(vantage.run_nmap(top_ports_argv("nmap", 20), timeout=30, total_hosts=0))
    assert top.status == "ok"
    assert top.run.services


def test_a_job_outside_the_probes_targets_fails_with_its_reason(
    store: Store, worker: Worker
) -> None:
    vantage = _vantage(store)
    argv = build_argv(
        nmap="nmap",
        scans=["connect"],
        ports=[PortSpec("tcp", 80)],
        targets=["198.18.0.1"],  # inside the scope given here, outside the probe's own CIDRs
        scope=Scope((ipaddress.IPv4Network("198.18.0.0/15"),)),
        options=NmapOptions(),
    )
    with pytest.raises(VantageError, match=r"probe:office \(probe-1\): nmap job failed: .*"
                       r"198\.18\.0\.1 is outside this probe's targets: refused"):  # fmt: skip
        asyncio.run(vantage.run_nmap(argv, timeout=30, total_hosts=1))


def test_no_probe_taking_the_job_is_said_in_one_line(store: Store) -> None:
    vantage = _vantage(store, claim_timeout=1)
    with pytest.raises(VantageError, match=r"^no probe of zone office took the job within 1 s$"):
        asyncio.run(vantage.privileged())


def test_a_request_naming_a_file_never_becomes_a_job(store: Store, tmp_path: Path) -> None:
    vantage = _vantage(store, claim_timeout=1)
    request = {"op": "snmp", "host": "127.0.0.1", "version": "2c",
               "community_file": str(tmp_path / "community")}  # fmt: skip
    with pytest.raises(VantageError, match="reads no file the collector names"):
        asyncio.run(vantage.probe(request, timeout=5))
    # Nothing was queued for a probe to find.
    assert store.claim_jobs(ZONE, "x", datetime.now(UTC), timedelta(seconds=5), 10) == []


def test_a_scan_with_a_probe_zone_and_no_job_queue_says_which_zone(tmp_path: Path) -> None:
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        "zones:\n"
        "  - {name: office, cidrs: [127.0.1.0/29], vantage: {kind: probe}}\n"
        "  - {name: servers, cidrs: [127.0.2.0/29]}\n"
        "scan: {ports: listed, extra_ports: [tcp/22]}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSEC_")}
    done = subprocess.run(
        [sys.executable, "-m", "collector.scan.cli", "--zones", str(zones), "--no-progress"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**env, "MEDSEC_SCAN_CONFINE": "127.0.0.0/8"},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(
        "medsec scan: zone office has a probe vantage, which needs the collector's job queue"
    )
    assert "--config" in done.stderr


def test_snmp_cannot_be_asked_from_a_probe_zone(tmp_path: Path) -> None:
    community = tmp_path / "community"
    community.write_text("public\n", encoding="utf-8")
    community.chmod(0o600)
    data = {
        "zones": [
            {"name": "office", "cidrs": ["127.0.1.0/29"], "vantage": {"kind": "probe"}},
            {"name": "servers", "cidrs": ["127.0.2.0/29"]},
        ],
        "snmp": {"host": "127.0.1.1", "version": "2c", "community_file": str(community)},
    }
    with pytest.raises(ZonesError, match="zone 'office' has a probe vantage; SNMP needs"):
        parse_zones(data, "zones.yaml")
