"""Schedules through the API and what fires them, against the real collector (uvicorn over TLS on
loopback) on SQLite and PostgreSQL: the routes' round trip and refusals, a due schedule becoming
a scan that runs the real scanner (127.0.0.1 and 127.0.0.2 only) and is listed with the scans
started by hand, the scan process's environment, what the launcher does when a scan ends (its
unfinished probe jobs failed, the alerts told), and a scheduler that outlives database errors.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from collector.models import Role, ScanRun, ScanState
from collector.periodic import Scheduler
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings, ProbeSettings, ScanSettings, TlsSettings
from collector.store import Store, StoreUnavailable
from collector.store.jobs import JobSpec
from collector.store.schedules import Cadence
from tests.collector.fixtures_api import Server, TlsFiles, make_server_tls, serving
from tests.collector.schedules_serving import LOOPBACK_ZONES, loopback_zones

needs_nmap = pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap (Debian: nmap)")
SLOW_ZONES = LOOPBACK_ZONES.replace("timing: 4, min_rate: 3000", "timing: 0")
"""nmap's paranoid timing waits minutes between probes: a scan that cannot end within a test."""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _confined(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner refuses any zone outside loopback, whatever a zones file says."""
    monkeypatch.setenv("MEDSEC_SCAN_CONFINE", "127.0.0.0/8")


@pytest.fixture
def server(store: Store, tls: TlsFiles, tmp_path: Path) -> Iterator[Server]:
    scans = ScanSettings(
        zones={"loopback": str(loopback_zones(tmp_path))},
        timeout_seconds=60,
        schedule_tick_seconds=0.1,
    )
    with serving(store, tls, scans=scans) as running:
        yield running


def error(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert "\n" not in body["message"]
    return str(body["message"])


# --------------------------------------------------------------------------- the routes


def test_operators_add_pause_resume_and_remove_schedules_auditors_list_them(
    server: Server,
) -> None:
    operator = server.client(server.user(Role.OPERATOR, "olga"))
    auditor = server.client(server.user(Role.AUDITOR))
    now = server.clock()

    added = operator.post(
        "/api/v1/schedules", json={"name": "nightly", "zones": "loopback", "cron": "0 2 * * *"}
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert {k: body[k] for k in ("name", "zones", "every", "cron", "paused", "created_by")} == {
        "name": "nightly",
        "zones": "loopback",
        "every": None,
        "cron": "0 2 * * *",
        "paused": False,
        "created_by": "olga",
    }
    two = now.replace(hour=2, minute=0, second=0)
    expected_due = two if two > now else two + timedelta(days=1)
    assert datetime.fromisoformat(body["next_due_at"]) == expected_due
    daily = operator.post(
        "/api/v1/schedules", json={"name": "daily", "zones": "loopback", "every": "24h"}
    )
    assert daily.status_code == 201, daily.text
    assert daily.json()["every"] == "1d"

    listed = auditor.get("/api/v1/schedules").json()
    assert listed["total"] == 2
    assert [s["name"] for s in listed["items"]] == ["daily", "nightly"]
    assert listed["items"][0]["last_scan_state"] is None

    paused = operator.post("/api/v1/schedules/daily/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    server.clock.advance(timedelta(hours=5))
    resumed = operator.post("/api/v1/schedules/daily/resume").json()
    assert resumed["paused"] is False
    assert datetime.fromisoformat(resumed["next_due_at"]) == server.clock() + timedelta(days=1)

    assert operator.delete("/api/v1/schedules/daily").status_code == 204
    assert [s["name"] for s in auditor.get("/api/v1/schedules").json()["items"]] == ["nightly"]

    # An auditor reads but may not change anything.
    error(auditor.post("/api/v1/schedules/nightly/pause"), 403, "forbidden")
    error(
        auditor.post("/api/v1/schedules", json={"name": "x", "zones": "loopback", "every": "1h"}),
        403,
        "forbidden",
    )
    actions = [e.action for e in server.store.audit_entries(100, 0).items]
    for action in (
        "POST /api/v1/schedules",
        "POST /api/v1/schedules/daily/pause",
        "POST /api/v1/schedules/daily/resume",
        "DELETE /api/v1/schedules/daily",
    ):
        assert action in actions


REFUSED: list[tuple[dict[str, Any], int, str, str]] = [
    ({"name": "x", "zones": "elsewhere", "every": "1h"}, 404, "unknown_zones", "elsewhere"),
    ({"name": "x", "zones": "loopback", "every": "30s"}, 422, "invalid_schedule", "60 s"),
    ({"name": "x", "zones": "loopback", "every": "1w"}, 422, "invalid_schedule", "period"),
    ({"name": "x", "zones": "loopback", "cron": "* * * *"}, 422, "invalid_schedule", "five"),
    ({"name": "x", "zones": "loopback", "cron": "* * * * *", "every": "1h"}, 422, "", "either"),
    ({"name": "x", "zones": "loopback"}, 422, "invalid_schedule", "either"),
    ({"name": "x", "zones": "loopback", "cron": "0 2 30 2 *"}, 422, "", "never"),
    ({"name": "bad name", "zones": "loopback", "every": "1h"}, 422, "invalid_request", ""),
    ({"name": "x", "zones": "loopback", "every": "1" * 40}, 422, "invalid_request", ""),
    ({"name": "x", "zones": "loopback", "every": "1h", "at": 3}, 422, "invalid_request", ""),
]
"""Bodies no schedule can be made of: (body, status, error code, a word the message has)."""


def test_a_schedule_that_cannot_be_is_refused_with_one_line(server: Server) -> None:
    operator = server.client(server.user(Role.OPERATOR))
    for body, status, code, words in REFUSED:
        message = error(
            operator.post("/api/v1/schedules", json=body), status, code or "invalid_schedule"
        )
        assert words in message, (body, message)
    assert server.store.list_schedules(10, 0, server.clock()).total == 0


def test_a_taken_name_conflicts_and_an_unknown_one_is_not_found(server: Server) -> None:
    operator = server.client(server.user(Role.OPERATOR))
    asked = {"name": "daily", "zones": "loopback", "every": "1d"}
    assert operator.post("/api/v1/schedules", json=asked).status_code == 201
    error(operator.post("/api/v1/schedules", json={**asked, "every": "2d"}), 409, "schedule_exists")
    for answer in (
        operator.post("/api/v1/schedules/weekly/pause"),
        operator.post("/api/v1/schedules/weekly/resume"),
        operator.delete("/api/v1/schedules/weekly"),
    ):
        error(answer, 404, "not_found")
    error(operator.delete("/api/v1/schedules/bad%20name"), 422, "invalid_request")
    [kept] = server.store.list_schedules(10, 0, server.clock()).items
    assert kept.every == "1d"


# --------------------------------------------------------------------------- firing


def wait_for(server: Server, token: str, scan_id: str, seconds: float = 60) -> dict[str, Any]:
    client = server.client(token)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        scan: dict[str, Any] = client.get(f"/api/v1/scans/{scan_id}").json()
        if scan["state"] != "running":
            return scan
        time.sleep(0.1)
    raise AssertionError(f"scan {scan_id} still running after {seconds} s")


@needs_nmap
def test_a_due_schedule_runs_a_scan_listed_beside_those_started_by_hand(server: Server) -> None:
    operator = server.user(Role.OPERATOR)
    client = server.client(operator)
    asked = {"name": "hourly", "zones": "loopback", "every": "1h"}
    first_due = datetime.fromisoformat(
        client.post("/api/v1/schedules", json=asked).json()["next_due_at"]
    )
    time.sleep(0.5)  # five ticks: not due, nothing fired
    assert client.get("/api/v1/scans").json()["total"] == 0
    server.clock.advance(timedelta(hours=1, seconds=2))
    deadline = time.monotonic() + 10
    while (scans := client.get("/api/v1/scans").json())["total"] == 0:
        assert time.monotonic() < deadline, "the due schedule was not fired"
        time.sleep(0.1)
    [fired] = scans["items"]
    assert fired["requested_by"] == "schedule hourly"
    ended = wait_for(server, operator, fired["id"])
    assert ended["state"] in ("passed", "findings"), ended
    assert ended["report_id"]
    run = server.store.get_scan(fired["id"], server.clock())
    assert run is not None
    assert run.due_at == first_due
    schedule = client.get("/api/v1/schedules").json()["items"][0]
    assert schedule["last_scan_id"] == fired["id"]
    assert schedule["last_scan_state"] == ended["state"]
    assert datetime.fromisoformat(schedule["last_due_at"]) == first_due
    assert datetime.fromisoformat(schedule["next_due_at"]) == first_due + timedelta(hours=1)
    # A scan by hand of the same zones is one more scan of the one list.
    by_hand = client.post("/api/v1/scans", json={"zones": "loopback"})
    assert by_hand.status_code == 202, by_hand.text
    wait_for(server, operator, by_hand.json()["id"])
    listed = client.get("/api/v1/scans").json()["items"]
    assert {s["requested_by"] for s in listed} == {"schedule hourly", run_user(server, operator)}


def run_user(server: Server, token: str) -> str:
    user = server.store.user_by_token(token)
    assert user is not None
    return user.name


# --------------------------------------------------------------------------- the launcher


def launcher_for(store: Store, zones: Path, **kwargs: Any) -> ScanLauncher:
    settings = ScanSettings(zones={"loopback": str(zones)}, timeout_seconds=60)
    return ScanLauncher(settings, store, lambda: datetime.now(UTC), **kwargs)


@needs_nmap
def test_the_scan_process_is_told_its_scan_its_job_queue_and_the_probes_settings(
    store: Store, tmp_path: Path
) -> None:
    zones = tmp_path / "slow.yaml"
    zones.write_text(SLOW_ZONES, encoding="utf-8")
    probes = ProbeSettings(lease_seconds=7, max_claim=3, job_timeout_seconds=90)
    database = f"sqlite:///{tmp_path / 'jobs.db'}"

    async def scan() -> tuple[ScanRun, dict[str, str]]:
        launcher = launcher_for(store, zones, database_url=database, probes=probes)
        run = await launcher.start("loopback", "alice")
        try:
            environ = await asyncio.to_thread(scan_environment, zones)
        finally:
            await launcher.close()
        return run, environ

    run, environ = asyncio.run(scan())
    assert environ["MEDSEC_SCAN_ID"] == run.id
    assert environ["MEDSEC_JOBS_DATABASE"] == database
    told = msgspec.json.decode(environ["MEDSEC_PROBE_SETTINGS"].encode(), type=ProbeSettings)
    assert told == probes
    assert environ["MEDSEC_SCAN_CONFINE"] == "127.0.0.0/8"  # the rest of the environment too
    stopped = store.get_scan(run.id, datetime.now(UTC))
    assert stopped is not None
    assert (stopped.state, stopped.message) == (ScanState.FAILED, "the collector stopped")


def scan_environment(zones: Path, seconds: float = 15) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if "collector.scan.cli" in cmdline and str(zones) in cmdline:
                try:
                    return dict(process.environ())
                except psutil.Error:  # it ended while being looked at; look again
                    continue
        time.sleep(0.05)
    raise AssertionError("no scan process started")


@needs_nmap
@pytest.mark.parametrize("hook_fails", [False, True])
def test_an_ended_scan_fails_its_unfinished_jobs_and_tells_of_its_stored_results(
    store: Store, tmp_path: Path, hook_fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[tuple[ScanRun, str]] = []

    async def on_stored(run: ScanRun, report_id: str) -> None:
        told.append((run, report_id))
        if hook_fails:
            raise RuntimeError("the alert service broke")

    async def scan() -> ScanRun:
        launcher = launcher_for(store, loopback_zones(tmp_path), on_stored=on_stored)
        now = datetime.now(UTC)
        run = store.start_scan("loopback", "alice", now, now + launcher.lifetime)
        [job] = store.enqueue_jobs(
            [JobSpec("office", "noop", {}, now + timedelta(minutes=5), scan_id=run.id)], now
        )
        await launcher.launch(run)
        await asyncio.gather(*launcher._running.values())
        [left] = store.get_jobs([job])
        assert (left.state, left.error) == ("failed", "the scan ended")
        return run

    with caplog.at_level(logging.ERROR, logger="medsec.collector.scans"):
        run = asyncio.run(scan())
    ended = store.get_scan(run.id, datetime.now(UTC))
    assert ended is not None
    assert ended.state in (ScanState.PASSED, ScanState.FINDINGS), ended
    [(stored_run, report_id)] = told
    assert (stored_run.id, stored_run.state, report_id) == (run.id, ended.state, ended.report_id)
    assert ("after storing report" in caplog.text) is hook_fails


def test_a_zones_name_the_settings_dropped_fails_the_fired_scan(
    store: Store, tmp_path: Path
) -> None:
    store.add_schedule("old", "retired", Cadence(every_seconds=60), "ops", datetime.now(UTC))
    [run] = store.fire_due(datetime.now(UTC) + timedelta(minutes=2))

    async def launch() -> ScanRun:
        return await launcher_for(store, loopback_zones(tmp_path)).launch(run)

    failed = asyncio.run(launch())
    assert failed.state is ScanState.FAILED
    assert failed.message == "the settings no longer name a zones file 'retired' (scans.zones)"


# --------------------------------------------------------------------------- the scheduler


def test_the_scheduler_outlives_database_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its database has no tables yet: every tick fails and says so, and the scheduler goes on;
    once the database is there, the next tick fires what is due."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    settings = CollectorSettings(
        tls=TlsSettings(cert_file="unused", key_file="unused"),
        database=url,
        scans=ScanSettings(zones={}, schedule_tick_seconds=0.1),
    )
    store = Store.open(url)

    def fired() -> list[ScanRun]:
        try:
            return list(store.list_scans(10, 0, datetime.now(UTC)).items)
        except StoreUnavailable:  # no tables yet
            return []

    async def run() -> None:
        # The real launcher: the settings name no zones file, so it fails the scan at once.
        launcher = ScanLauncher(settings.scans, store, lambda: datetime.now(UTC))
        scheduler = Scheduler(settings, store, launcher, lambda: datetime.now(UTC))
        await scheduler.start()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(store.upgrade)
        past = datetime.now(UTC) - timedelta(minutes=5)
        await asyncio.to_thread(
            store.add_schedule, "late", "loopback", Cadence(every_seconds=60), "ops", past
        )
        for _ in range(50):
            if await asyncio.to_thread(fired):
                break
            await asyncio.sleep(0.1)
        await scheduler.close()

    try:
        with caplog.at_level(logging.WARNING, logger="medsec.collector.schedules"):
            asyncio.run(run())
        [scan] = fired()
    finally:
        store.close()
    failures = [r for r in caplog.records if "not fired this time" in r.getMessage()]
    assert len(failures) >= 3, caplog.text
    assert all("\n" not in r.getMessage() for r in failures)
    assert (scan.requested_by, scan.state) == ("schedule late", ScanState.FAILED)
    assert scan.message == "the settings no longer name a zones file 'loopback' (scans.zones)"
