"""`medsec-agent probe` against the real collector (HTTPS on loopback, SQLite, leases of 2 s):
probes enrolled for a zone with the real `medsec-agent enroll`, run as processes, claiming real
jobs that the scanner's `ProbeVantage` queues — nmap against a socket this test listens on, an
HTTP probe of a server this test runs — and refusing what lies outside their own targets. A probe
killed mid-job loses its lease and a second one finishes the job, once."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.scan.nmap import NmapOptions, build_argv
from collector.scan.probe_vantage import ProbeVantage
from collector.scan.vantage import VantageError
from collector.scan.zones import PortSpec, Scope
from tests.agent.probe_rig import (
    LEASE_SECONDS,
    ProbeHost,
    WebServer,
    enqueue,
    serve_probe_collector,
    terminate,
    wait_for,
)
from tests.agent.test_push import LiveCollector, agent_host

MEDSEC = Path(sys.executable).with_name("medsec")
AGENT_BIN = Path(sys.executable).with_name("medsec-agent")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[LiveCollector]:
    yield from serve_probe_collector(tmp_path)


def _probe(tmp_path: Path, collector: LiveCollector, name: str, zone: str = "office") -> ProbeHost:
    folder = tmp_path / name
    folder.mkdir()
    probe = ProbeHost(agent_host(folder, collector), name, zone)
    probe.write()
    return probe


@pytest.fixture
def probe(tmp_path: Path, collector: LiveCollector) -> Iterator[ProbeHost]:
    made = _probe(tmp_path, collector, "probe-office-1")
    made.enroll()
    yield made
    made.stop_all()


def _vantage(collector: LiveCollector) -> ProbeVantage:
    return ProbeVantage(
        "office", collector.store, scan_id=None, claim_timeout=20, job_timeout=120, poll=0.1
    )


def test_a_probe_runs_nmap_and_http_jobs_and_refuses_what_is_outside_its_targets(
    collector: LiveCollector, probe: ProbeHost
) -> None:
    process = probe.start()
    web = WebServer()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])
    try:
        vantage = _vantage(collector)
        argv = build_argv(
            nmap=vantage.nmap,
            scans=["connect"],
            ports=[PortSpec("tcp", port), PortSpec("tcp", web.port)],
            targets=["127.0.0.1"],
            scope=Scope((ipaddress.IPv4Network("127.0.0.0/8"),)),
            options=NmapOptions(min_rate=None, host_timeout_seconds=30),
        )
        result = asyncio.run(vantage.run_nmap(argv, timeout=60, total_hosts=1))
        assert result.status == "ok", result.message
        (host,) = result.run.hosts
        assert {p.port for p in host.ports if p.state == "open"} == {port, web.port}
        assert result.command.startswith("probe probe-office-1: ")

        request = {"op": "http", "requests": [
            {"id": "page", "url": f"http://127.0.0.1:{web.port}/ward", "connect":
             ["127.0.0.1", web.port], "timeout": 5},
        ]}  # fmt: skip
        answer = asyncio.run(vantage.probe(request, timeout=10))
        (exchange,) = answer["exchanges"]
        assert exchange["status"] == 200
        assert exchange["body"] == "hello from the zone\n"
        assert web.paths == ["/ward"]

        outside = [*argv[: argv.index("--") + 1], "198.18.0.1"]
        with pytest.raises(VantageError, match=r"outside this probe's targets: refused"):
            asyncio.run(vantage.run_nmap(outside, timeout=30, total_hosts=1))
        http_outside = {"op": "http", "requests": [
            {"id": "x", "url": "http://198.18.0.9/", "connect": ["198.18.0.9", 80]},
        ]}  # fmt: skip
        with pytest.raises(VantageError, match=r"198\.18\.0\.9 is outside"):
            asyncio.run(vantage.probe(http_outside, timeout=10))
    finally:
        listener.close()
        web.close()
    code, err = terminate(process)
    assert code == 0, err
    assert "refused: nmap target: 198.18.0.1 is outside this probe's targets" in err
    assert "Traceback" not in err


def test_a_probe_killed_mid_job_loses_it_to_another_that_finishes_it_once(
    tmp_path: Path, collector: LiveCollector, probe: ProbeHost
) -> None:
    web = WebServer(delay=3.0)
    second = _probe(tmp_path, collector, "probe-office-2")
    second.enroll()
    try:
        first = probe.start()
        request = {"op": "http", "requests": [
            {"id": "slow", "url": f"http://127.0.0.1:{web.port}/slow", "connect":
             ["127.0.0.1", web.port], "timeout": 10},
        ]}  # fmt: skip
        job_id = enqueue(collector, "office", "probe", {"request": request, "timeout": 20})
        claimed = wait_for(collector, job_id, lambda j: j.state == "claimed")
        assert claimed.claimed_by == "probe-office-1"
        assert claimed.attempts == 1
        wait_until(lambda: web.paths != [])  # the slow request is under way
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        started = time.monotonic()
        second.start()
        done = wait_for(collector, job_id, lambda j: j.state in {"done", "failed"}, timeout=60)
        # Not before the dead probe's lease ran out.
        assert time.monotonic() - started >= LEASE_SECONDS - 1.5
        assert done.state == "done", done.error
        assert done.attempts == 2
        assert done.finished_by == "probe-office-2"
        assert done.result is not None
        assert done.result["exchanges"][0]["status"] == 200
        # Posted once: a later look finds the same outcome, no second result.
        time.sleep(1)
        (again,) = collector.store.get_jobs([job_id])
        assert (again.finished_at, again.finished_by) == (done.finished_at, done.finished_by)
    finally:
        second.stop_all()
        web.close()


def test_once_and_what_needs_a_person(tmp_path: Path, collector: LiveCollector) -> None:
    # An ordinary agent is no probe: one line, exit 1.
    plain = _probe(tmp_path, collector, "plain-agent")
    plain.enroll(probe_zone="")
    done = plain.once()
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "the collector refused this probe: 403" in done.stderr
    # Enrolled for another zone than its config names: it runs nothing.
    elsewhere = _probe(tmp_path, collector, "probe-his")
    elsewhere.enroll(probe_zone="his")
    job_id = enqueue(collector, "his", "noop", {})
    done = elsewhere.once()
    assert done.returncode == 1
    assert "enrolled as a probe of zone his, but probe.zone is office" in done.stderr
    (job,) = collector.store.get_jobs([job_id])
    assert job.finished_at is None
    # Not enrolled at all.
    fresh = _probe(tmp_path, collector, "fresh")
    done = fresh.once()
    assert done.returncode == 1
    assert "not enrolled" in done.stderr
    # --once takes what waits, runs it and returns.
    ready = _probe(tmp_path, collector, "probe-office-3")
    ready.enroll()
    job_id = enqueue(collector, "office", "noop", {})
    done = ready.once()
    assert done.returncode == 0, done.stderr
    (job,) = collector.store.get_jobs([job_id])
    assert job.state == "done"
    assert job.result == {"ok": True}
    assert job.finished_by == "probe-office-3"


def test_the_agents_timer_run_serves_as_a_probe_after_its_report(
    tmp_path: Path, collector: LiveCollector
) -> None:
    probe = _probe(tmp_path, collector, "probe-office-4")
    probe.enroll()
    job_id = enqueue(collector, "office", "noop", {})
    done = probe.host.run()
    assert done.returncode == 0, done.stderr
    assert len(collector.reports()) == 1
    (job,) = collector.store.get_jobs([job_id])
    assert job.state == "done"
    assert job.finished_by == "probe-office-4"
    # A failing report keeps its exit code; the round still runs.
    probe.host.failing()
    job_id = enqueue(collector, "office", "noop", {})
    done = probe.host.run()
    assert done.returncode == 1
    assert collector.store.get_jobs([job_id])[0].state == "done"


def test_an_unreachable_collector_is_waited_for(tmp_path: Path, collector: LiveCollector) -> None:
    probe = _probe(tmp_path, collector, "probe-office-5")
    probe.enroll()
    collector.stop()
    process = probe.start()
    try:
        time.sleep(2)
        collector.start()
        job_id = enqueue(collector, "office", "noop", {})
        job = wait_for(collector, job_id, lambda j: j.state == "done", timeout=60)
        assert job.finished_by == "probe-office-5"
    finally:
        code, err = terminate(process)
    assert code == 0
    lines = err.splitlines()
    assert sum("collector unreachable" in line for line in lines) == 1, err
    assert any("collector reachable again" in line for line in lines), err
    assert "Traceback" not in err


def wait_until(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_whole_scan_with_a_probe_zone_through_medsec_scan(
    tmp_path: Path, collector: LiveCollector, probe: ProbeHost
) -> None:
    """`medsec scan --zones F --config C`: the office zone is scanned by its probe (nmap, the
    WAF battery, TLS) through the job queue, the servers zone from here."""
    web = WebServer("127.0.2.1")
    settings = tmp_path / "collector.yaml"
    settings.write_text(
        f"tls: {{cert_file: {collector.cert}, key_file: {collector.key}}}\n"
        f"database: {collector.settings.database}\n",
        encoding="utf-8",
    )
    zones = tmp_path / "zones.yaml"
    zones.write_text(
        f"""
zones:
  - name: office
    cidrs: [127.0.1.0/29]
    users: true
    vantage: {{kind: probe, claim_timeout_seconds: 20}}
  - name: servers
    cidrs: [127.0.2.0/29]
    vantage: {{kind: local}}
policy:
  allow:
    - {{from: office, to: servers, ports: [tcp/{web.port}]}}
web_apps:
  - {{name: portal, url: "http://127.0.2.1:{web.port}/", zone: servers}}
scan:
  ports: listed
  host_timeout_seconds: 60
""",
        encoding="utf-8",
    )
    process = probe.start()
    try:
        done = subprocess.run(
            [str(MEDSEC), "scan", "--zones", str(zones), "--config", str(settings),
             "--format", "json", "--no-progress"],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "MEDSEC_SCAN_CONFINE": "127.0.0.0/8"},
        )  # fmt: skip
    finally:
        web.close()
        code, err = terminate(process)
    assert done.returncode in (0, 1), done.stderr
    document = json.loads(done.stdout)
    runs = {run["zone"]: run for run in document["runs"]}
    assert runs["office"]["vantage"] == "probe:office"
    assert runs["office"]["status"] == "ok", runs["office"]["message"]
    assert runs["office"]["commands"][0].startswith("probe probe-office-1: ")
    opened = [
        row for row in document["matrix"]
        if row["from"] == "office" and row["state"] == "open"
    ]  # fmt: skip
    assert [(row["to"], row["port"]) for row in opened] == [("servers", f"tcp/{web.port}")]
    # The WAF battery went through the probe to the server: dozens of requests, all answered.
    assert len(web.paths) > 20
    assert code == 0, err
    assert "refused" not in err, err


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("{zone: office}", "probe"),
        ("{zone: office, targets: []}", "targets: at least one CIDR"),
        ("{zone: office, targets: [198.18.0.1/15]}", "targets: '198.18.0.1/15' is not a CIDR"),
        ("{zone: office, targets: [example.org]}", "targets: 'example.org' is not a CIDR"),
        ("{zone: 'bad zone', targets: [127.0.0.0/8]}", "zone: 'bad zone' is not a zone name"),
        ("{zone: office, targets: [127.0.0.0/8], concurrency: 0}", "concurrency"),
        ("{zone: office, targets: [127.0.0.0/8], wait_seconds: 60}", "wait_seconds"),
        ("{zone: office, targets: [127.0.0.0/8], nmap: nmap}", "nmap: must be an absolute"),
        ("{zone: office, targets: [127.0.0.0/8], shell: yes}", "shell"),
    ],
)
def test_check_config_judges_the_probe_section_in_one_line(
    tmp_path: Path, collector: LiveCollector, section: str, problem: str
) -> None:
    host = agent_host(tmp_path, collector)
    host.write_config(extra=f"probe: {section}\n")
    done = subprocess.run(
        [str(AGENT_BIN), "check-config", str(host.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert problem in done.stderr
    host.write_config(extra="probe: {zone: office, targets: [127.0.0.0/8, 198.18.0.0/15]}\n")
    done = subprocess.run(
        [str(AGENT_BIN), "check-config", str(host.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_probe_needs_the_collector_section(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("probe: {zone: office, targets: [127.0.0.0/8]}\n", encoding="utf-8")
    done = subprocess.run(
        [str(AGENT_BIN), "probe", "--config", str(config), "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "a probe needs the collector section" in done.stderr
    assert done.stderr.count("\n") == 1


def test_sigterm_mid_job_stops_the_job_and_leaves_it_to_its_lease(
    collector: LiveCollector, probe: ProbeHost
) -> None:
    web = WebServer(delay=8.0)
    try:
        process = probe.start()
        request = {"op": "http", "requests": [
            {"id": "slow", "url": f"http://127.0.0.1:{web.port}/", "connect":
             ["127.0.0.1", web.port], "timeout": 20},
        ]}  # fmt: skip
        job_id = enqueue(collector, "office", "probe", {"request": request, "timeout": 30})
        wait_for(collector, job_id, lambda j: j.state == "claimed")
        wait_until(lambda: web.paths != [])
        started = time.monotonic()
        code, err = terminate(process)
        assert time.monotonic() - started < 5  # not after the 8 s answer
        assert code == 0, err
        assert "stopped: 1 running job(s) left to their leases" in err
        (job,) = collector.store.get_jobs([job_id])
        assert job.state == "claimed"  # no result: the next probe of the zone takes it
        assert job.finished_at is None
    finally:
        web.close()
