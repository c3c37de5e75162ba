"""Helpers of the schedules tests: a collector settings file for a test's database and zones files,
`medsec` run as users run it (the console script in a subprocess), and `medsec serve` processes
in the background on free loopback ports.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from tests.collector.fixtures_api import TlsFiles, free_port

MEDSEC = str(Path(sys.executable).parent / "medsec")
LOOPBACK_ZONES = """\
zones:
  - {name: servers, cidrs: ["127.0.0.1/32"], critical: true, vantage: {kind: local}}
  - {name: office, cidrs: ["127.0.0.2/32"], users: true, vantage: {kind: local}}
scan: {ports: listed, extra_ports: ["tcp/22", "tcp/5432"], timing: 4, min_rate: 3000}
"""
"""Two loopback addresses scanned from this machine, a few listed ports, nmap's fast timing: a
scan of about a second (tests/collector/test_scans_api.py scans the same zones)."""


def write_settings(
    folder: Path,
    tls: TlsFiles,
    database: str,
    zones: dict[str, Path],
    *,
    tick_seconds: float = 0.2,
    min_every_seconds: int = 1,
) -> Path:
    """`folder/collector.yaml` for `database`, with `zones` as `scans.zones`."""
    settings = {
        "tls": {"cert_file": str(tls.cert), "key_file": str(tls.key)},
        "database": database,
        "scans": {
            "zones": {name: str(path) for name, path in zones.items()},
            "timeout_seconds": 60,
            "schedule_tick_seconds": tick_seconds,
            "min_every_seconds": min_every_seconds,
        },
        "snapshots": {"dir": str(folder / "snapshots"), "key_file": str(folder / "snap.key")},
    }
    path = folder / "collector.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def loopback_zones(folder: Path) -> Path:
    path = folder / "zones.yaml"
    path.write_text(LOOPBACK_ZONES, encoding="utf-8")
    return path


def environment() -> dict[str, str]:
    """This environment, the scanner confined to loopback, and no sudo user (the audit log's
    actor is then the effective user)."""
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    env["MEDSEC_SCAN_CONFINE"] = "127.0.0.0/8"
    return env


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def medsec(*args: str | Path, timeout: float = 60) -> Done:
    done = subprocess.run(
        [MEDSEC, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environment(),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Done(done.returncode, done.stdout, done.stderr)


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: Path


@contextmanager
def serving_processes(config: Path, ca: Path, count: int) -> Iterator[list[Served]]:
    """`count` processes of `medsec serve --config config`, each on a free port, up (answering
    /healthz) when the block starts; stopped with SIGTERM when it ends (their stderr in
    `log`)."""
    started: list[Served] = []
    try:
        for n in range(count):
            port = free_port()
            log = config.parent / f"serve-{n}.log"
            with log.open("w", encoding="utf-8") as err:
                process = subprocess.Popen(
                    [MEDSEC, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    text=True,
                    env=environment(),
                )
            started.append(Served(f"https://127.0.0.1:{port}", process, log))
        for served in started:
            _wait_up(served, ca)
        yield started
    finally:
        stop(started)


def stop(processes: list[Served]) -> None:
    for served in processes:
        if served.process.poll() is None:
            served.process.send_signal(signal.SIGTERM)
    for served in processes:
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait(timeout=10)


def _wait_up(served: Served, ca: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert served.process.poll() is None, served.log.read_text("utf-8")
        assert time.monotonic() < deadline, "medsec serve did not come up"
        try:
            verify = ssl.create_default_context(cafile=str(ca))
            with httpx.Client(base_url=served.url, verify=verify, timeout=5) as client:
                if client.get("/healthz").status_code == 200:
                    return
        except httpx.TransportError:
            time.sleep(0.1)
