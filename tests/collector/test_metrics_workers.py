"""Issue 15, hole 6: with `medsec serve --workers N`, every scrape of `/metrics` shows the whole
collector — the installed console script in a subprocess, its worker processes found with psutil,
the scrape checked by `promtool check metrics` (Debian package prometheus), a worker killed with
SIGKILL and replaced by uvicorn on the way.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.collector.test_cli import Served, medsec, serve

WORKERS = 2
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def collector_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "collector"
    done = medsec("init", "--dir", folder, "--hostname", "collector.hospital.example")
    assert done.code == 0, done
    return folder


def workers_of(served: Served) -> list[psutil.Process]:
    """The running workers (not multiprocessing's resource tracker, also a child; not a killed
    worker its parent has not reaped yet)."""
    found = []
    for child in psutil.Process(served.process.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return found


def samples(text: str) -> dict[str, float]:
    """The scrape's samples by name and labels, e.g. `x_total{reason="unauthenticated"}`."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


REJECTED = 'medsec_reports_rejected_total{reason="unauthenticated"}'


def reject(served: Served, n: int) -> None:
    """`n` reports without a token (401), each on a connection of its own: any worker."""

    def post(_: int) -> int:
        with served.client() as client:
            return client.post("/api/v1/reports", content=b"{}").status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(post, range(n))) == [401] * n


def rejected_by(folder: Path, pid: int) -> float:
    """What one worker alone counted: its own file in the shared folder."""
    from prometheus_client.multiprocess import MultiProcessCollector

    for metric in MultiProcessCollector.merge([str(folder / f"counter_{pid}.db")]):
        for s in metric.samples:
            if s.name == "medsec_reports_rejected_total":
                return float(s.value)
    return 0.0


def scrape(served: Served, token: str) -> str:
    with served.client(token) as client:  # a new connection: whichever worker takes it
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def test_every_scrape_shows_every_worker(collector_dir: Path, tmp_path: Path) -> None:
    config = collector_dir / "collector.yaml"
    with serve(collector_dir, "--workers", str(WORKERS)) as served:
        workers = workers_of(served)
        assert len(workers) == WORKERS
        named = {w.environ().get("PROMETHEUS_MULTIPROC_DIR", "") for w in workers}
        assert len(named) == 1, named  # one folder, shared
        folder = Path(named.pop())
        assert folder.is_absolute()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert folder.parent == Path(tempfile.gettempdir())
        token = medsec("users", "add", "prometheus", "--role", "auditor", "--config", config)
        assert token.code == 0, token

        sent = 0  # until every worker has refused some: a scrape of one worker would show less
        while sent < 200 and not all(rejected_by(folder, w.pid) for w in workers):
            reject(served, 10)
            sent += 10
        assert all(rejected_by(folder, w.pid) for w in workers), "the kernel fed one worker"
        texts = [scrape(served, token.lines[-1]) for _ in range(8)]
        for text in texts:
            seen = samples(text)
            assert seen[REJECTED] == sent
            assert seen["medsec_serving_processes"] == WORKERS
            assert seen["medsec_ingest_seconds_count"] == sent
        if PROMTOOL is not None:
            checked = subprocess.run(
                [PROMTOOL, "check", "metrics"],
                input=texts[0],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

        # A worker killed: uvicorn starts another; the dead one's counts stay, it is not serving.
        dead = workers[0].pid
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "uvicorn did not replace the killed worker"
            now = workers_of(served)
            if len(now) == WORKERS and dead not in {w.pid for w in now}:
                seen = samples(scrape(served, token.lines[-1]))
                assert seen[REJECTED] == sent  # never less: no counter reset
                assert seen["medsec_serving_processes"] <= WORKERS  # the dead one is not counted
                if seen["medsec_serving_processes"] == WORKERS:
                    break
            time.sleep(0.2)
        assert not (folder / f"gauge_livesum_{dead}.db").exists()
        reject(served, 5)
        for _ in range(4):
            assert samples(scrape(served, token.lines[-1]))[REJECTED] == sent + 5
        served.process.send_signal(signal.SIGTERM)
        _, err = served.process.communicate(timeout=60)
        assert served.process.returncode == 0, err
    assert not folder.exists()  # removed by the parent when the workers are gone
    if PROMTOOL is None:
        pytest.skip("promtool (Debian package prometheus) is missing: the scrape was not linted")
