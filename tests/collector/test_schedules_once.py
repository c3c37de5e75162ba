"""A schedule never runs twice for one due time, however many collector processes serve the
database: two real `medsec serve` processes on one PostgreSQL database (and on one SQLite file),
a schedule every second, each process looking for due schedules five times a second. Every due
time appears exactly once in the scans, one second after the one before: none fired twice, none
lost. Those whose zones were still being scanned are there as skipped, the others ran the real
scanner (nmap, on 127.0.0.1 only).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from collector.models import ScanState
from collector.store import Store
from collector.store.schedules import SKIPPED, Cadence
from tests.collector.fixtures_api import TlsFiles, make_server_tls
from tests.collector.schedules_serving import (
    Served,
    loopback_zones,
    serving_processes,
    write_settings,
)

pytestmark = pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap (Debian: nmap)")

RUN_SECONDS = 6


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


def test_two_collector_processes_fire_each_due_time_exactly_once(
    store_url: str, store: Store, tls: TlsFiles, tmp_path: Path
) -> None:
    config = write_settings(
        tmp_path, tls, store_url, {"loopback": loopback_zones(tmp_path)}, tick_seconds=0.2
    )
    with serving_processes(config, tls.ca, 2) as served:
        # Added once both serve: from its first due time on, every second is theirs to fire.
        added = store.add_schedule(
            "every-second", "loopback", Cadence(every_seconds=1), "test", datetime.now(UTC)
        )
        started = scans_started_by(served, RUN_SECONDS)
    for process in served:
        assert process.process.returncode == 0, process.log.read_text("utf-8")

    scans = [
        run
        for run in store.list_scans(1000, 0, datetime.now(UTC)).items
        if run.schedule_id == added.id
    ]
    dues = sorted(run.due_at for run in scans if run.due_at is not None)
    assert len(dues) == len(scans)
    assert len(set(dues)) == len(dues), "a due time fired twice"
    assert len(dues) >= RUN_SECONDS - 2, f"only {len(dues)} due times fired"
    first = added.next_due_at
    assert dues == [first + timedelta(seconds=k) for k in range(len(dues))], (
        "due times are not one second apart from the first on"
    )
    ran = [run for run in scans if run.message != SKIPPED.format(zones="loopback")]
    skipped = len(scans) - len(ran)
    assert any(run.state in (ScanState.PASSED, ScanState.FINDINGS) for run in ran), [
        (run.state.value, run.message) for run in ran
    ]
    # The scans still running when the collectors stopped were recorded as stopped.
    assert all(run.state is not ScanState.RUNNING for run in scans)
    logs = [process.log.read_text("utf-8") for process in served]
    said = [log.count("not started: skipped") for log in logs]
    print(
        f"{len(dues)} due times, {len(ran)} scans run, {skipped} skipped; scan processes seen"
        f" started by each collector: {started}, skips logged by each: {said}"
    )


def scans_started_by(served: list[Served], seconds: float) -> list[int]:
    """For `seconds`, how many scan processes each collector process is seen to start (a scan
    runs for about a second; looked for every 50 ms): who fired is the database's choice."""
    seen: list[set[int]] = [set() for _ in served]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for found, process in zip(seen, served, strict=True):
            try:
                children = psutil.Process(process.process.pid).children()
            except psutil.Error:  # it ended: the assertions after the run say why
                continue
            found.update(c.pid for c in children if _is_scan(c))
        time.sleep(0.05)
    return [len(found) for found in seen]


def _is_scan(process: psutil.Process) -> bool:
    try:
        return "collector.scan.cli" in process.cmdline()
    except psutil.Error:  # it ended between the listing and the look
        return False
