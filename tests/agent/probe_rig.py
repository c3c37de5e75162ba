"""The rig of the probe tests: the real collector (tests/agent/test_push.py's `LiveCollector`,
real clock, SQLite) with short leases, probes enrolled for a zone through the real
`medsec-agent enroll`, `medsec-agent probe` processes, and loopback servers for them to reach
(an HTTP server whose answers can be made slow)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from collector.settings import ProbeSettings
from collector.store.jobs import Job, JobSpec
from tests.agent.test_push import AGENT, AgentHost, LiveCollector

LEASE_SECONDS = 2


def serve_probe_collector(tmp_path: Path) -> Iterator[LiveCollector]:
    """A started collector whose leases last LEASE_SECONDS (a dead probe's job is free soon)."""
    work = tmp_path / "collector"
    work.mkdir()
    live = LiveCollector(work)
    live.settings = msgspec.structs.replace(
        live.settings,
        probes=ProbeSettings(lease_seconds=LEASE_SECONDS, max_claim=4, job_timeout_seconds=120),
    )
    live.start()
    try:
        yield live
    finally:
        live.stop()
        live.store.close()


@dataclass
class ProbeHost:
    """A probe's files (config, credential) and its `medsec-agent probe` processes."""

    host: AgentHost
    name: str
    zone: str
    targets: tuple[str, ...] = ("127.0.0.0/8",)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def collector(self) -> LiveCollector:
        return self.host.collector

    def write(self, **probe: Any) -> None:
        section = {
            "zone": self.zone,
            "targets": list(self.targets),
            "concurrency": 2,
            "wait_seconds": 1,
            **probe,
        }
        self.host.write_config(extra=f"probe: {json.dumps(section)}\n")

    def enroll(self, probe_zone: str | None = None) -> None:
        """Enrolled with the real `medsec-agent enroll`, as a probe of `probe_zone` (default:
        its own zone; "" enrols an ordinary agent)."""
        zone = self.zone if probe_zone is None else probe_zone
        token = self.collector.store.create_enrollment(
            self.name, timedelta(hours=1), datetime.now(UTC), probe_zone=zone or None
        )
        done = subprocess.run(
            [
                str(AGENT), "enroll", "--config", str(self.host.config), "--collector",
                self.collector.url, "--token", token, "--name", self.name,
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(AGENT), "probe", "--config", str(self.host.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.processes.append(process)
        return process

    def once(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AGENT), "probe", "--config", str(self.host.config), "--once"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


def terminate(process: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """SIGTERM, as systemd stops the service: (exit code, stderr)."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def enqueue(live: LiveCollector, zone: str, kind: str, request: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    spec = JobSpec(zone, kind, request, now + timedelta(seconds=90))  # type: ignore[arg-type]
    (job_id,) = live.store.enqueue_jobs([spec], now)
    return job_id


def wait_for(
    live: LiveCollector, job_id: str, done: Callable[[Job], bool], timeout: float = 60
) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        (job,) = live.store.get_jobs([job_id])
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stayed {job.state}"
        time.sleep(0.05)


class WebServer:
    """A loopback HTTP server counting requests; `delay` seconds before each answer."""

    def __init__(self, address: str = "127.0.0.1", delay: float = 0.0) -> None:
        rig = self
        self.delay = delay
        self.paths: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rig.paths.append(self.path)
                time.sleep(rig.delay)
                body = b"hello from the zone\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
