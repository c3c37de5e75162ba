"""Scans of the hospital-in-a-box lab compared, for real: three scans started as the API and the
scheduler start them (`ScanLauncher`: the scanner in its own process, the report stored, the scan
closed with it) — the clean lab, the lab with the router's fault `office-his-open` switched on,
and the clean lab again. The differences must be the fault's and nothing else, and what the diff
calls newly open must be what a TCP connection from the office zone finds open. Needs root and
network namespaces (the session's `lab`); every probe stays on 198.18.0.0/15 inside the lab.
The zones file's ports are the listed ones (seconds a scan instead of the top 1,000's quarter
minute); the fault opens them all.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.lab import Lab
from collector.models import ScanRun, ScanState
from collector.scan_diff import ScanDiff, diff, to_json
from collector.scan_view import OpenPath, ScanView, view_of
from collector.scans import ScanLauncher
from collector.settings import ScanSettings
from collector.store import Store
from tests.collector.lab_zones import write_lab_zones
from tests.collector.scan_history_fixtures import collector_config

pytestmark = pytest.mark.root
CONFINE = "198.18.0.0/15"
MEDSEC = str(Path(sys.executable).parent / "medsec")
FAULT = "office-his-open"

# Run in the office zone's namespace (the office host's source address): each address:port
# asked, and what a TCP connection finds: open, closed (refused: the packet got through, nothing
# listens) or filtered (no answer).
CONNECT = """
import json, socket, sys
found = {}
for target in json.loads(sys.argv[1]):
    address, port = target.rsplit(":", 1)
    try:
        socket.create_connection((address, int(port)), timeout=0.5).close()
        found[target] = "open"
    except ConnectionRefusedError:
        found[target] = "closed"
    except OSError:
        found[target] = "filtered"
print(json.dumps(found))
"""


@dataclass(frozen=True)
class Scans:
    store_url: str
    config: Path
    views: tuple[ScanView, ScanView, ScanView]
    """Clean, with the fault on, clean again."""
    connects: tuple[dict[str, str], dict[str, str]]
    """What TCP connections from office to his found, with the fault on and off."""
    seconds: tuple[float, ...]


def scan_once(store: Store, launcher: ScanLauncher) -> tuple[ScanRun, float]:
    """Start a scan of the lab as the API does and wait for it to be closed."""
    started = time.monotonic()

    async def run() -> ScanRun:
        run = await launcher.start("lab", "olga")
        while True:
            await asyncio.sleep(0.2)
            found = await asyncio.to_thread(store.get_scan, run.id, datetime.now(UTC))
            assert found is not None
            if found.state is not ScanState.RUNNING:
                return found

    done = asyncio.run(run())
    assert done.state in {ScanState.PASSED, ScanState.FINDINGS}, done
    return done, time.monotonic() - started


def connect_from_office(lab: Lab, targets: list[str]) -> dict[str, str]:
    done = subprocess.run(
        lab.command("office", sys.executable, "-c", CONNECT, json.dumps(targets)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def scans(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scans]:
    folder = tmp_path_factory.mktemp("scan-diff-lab")
    zones_file = write_lab_zones(lab, folder / "zones")
    data = yaml.safe_load(zones_file.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    zones_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    url = f"sqlite:///{folder / 'collector.db'}"
    store = Store.open(url)
    store.upgrade()
    before = os.environ.get("MEDSEC_SCAN_CONFINE")
    os.environ["MEDSEC_SCAN_CONFINE"] = CONFINE  # the scan process refuses anything else
    launcher = ScanLauncher(
        ScanSettings(zones={"lab": str(zones_file)}, timeout_seconds=180),
        store,
        lambda: datetime.now(UTC),
    )
    try:
        clean, first = scan_once(store, launcher)
        his = [f"{a}:{p}" for a in ("198.18.2.10", "198.18.2.20") for p in _tcp_ports(data)]
        lab.fault(FAULT, True)
        try:
            opened, second = scan_once(store, launcher)
            with_fault = connect_from_office(lab, his)
        finally:
            lab.fault(FAULT, False)
        without = connect_from_office(lab, his)
        again, third = scan_once(store, launcher)
        now = datetime.now(UTC)
        views = tuple(view_of(*store.scan_with_report(s.id, now)) for s in (clean, opened, again))
        print(f"lab scans: {first:.1f} s, {second:.1f} s, {third:.1f} s")
        yield Scans(
            url,
            collector_config(folder / "collector", url),
            views,  # type: ignore[arg-type]
            (with_fault, without),
            (first, second, third),
        )
    finally:
        if before is None:
            os.environ.pop("MEDSEC_SCAN_CONFINE", None)
        else:
            os.environ["MEDSEC_SCAN_CONFINE"] = before
        store.close()


def _tcp_ports(zones: dict[str, Any]) -> list[int]:
    """The TCP ports a listed scan probes: the policy's, the critical systems' and the extra."""
    specs = [s for rule in zones["policy"]["allow"] for s in rule["ports"]]
    specs += [s for system in zones.get("critical_systems") or [] for s in system["ports"]]
    specs += zones["scan"].get("extra_ports") or []
    return sorted({int(s.split("/")[1]) for s in specs if s.startswith("tcp/")})


def office_to_his(paths: tuple[OpenPath, ...]) -> dict[str, str]:
    return {f"{p.address}:{p.port}": p.state for p in paths}


def test_the_fault_opens_office_to_his_and_nothing_else_changes(scans: Scans) -> None:
    clean, faulty, _ = scans.views
    assert clean.errors == faulty.errors == ()
    found = diff(clean, faulty)
    assert found.opened, "the fault opened nothing the scan saw"
    assert {p.pair for p in found.opened} == {"office->his"}
    # What the scan saw is what a TCP connection from office finds (refused: closed, reached).
    with_fault = {k: v for k, v in scans.connects[0].items() if v != "filtered"}
    assert office_to_his(found.opened) == with_fault
    assert {"198.18.2.10:5432", "198.18.2.20:8443"} <= {
        k for k, v in with_fault.items() if v == "open"
    }
    # The policy allows nothing from office to his: every open port is a new violation.
    assert list(found.violations_new) == [p for p in found.opened if p.state == "open"]
    assert found.verdicts("ztna", "gone") == ["his-web"]  # his-web reached around its gateway
    assert (found.closed, found.state_changed, found.violations_cleared) == ((), (), ())
    assert (found.wafs, found.tls_floors, found.warnings) == ((), (), ())
    assert dict(found.not_compared) == {}


def test_switched_off_the_paths_close_and_the_violations_clear(scans: Scans) -> None:
    clean, faulty, again = scans.views
    opened, closed = diff(clean, faulty), diff(faulty, again)
    assert closed.closed == opened.opened
    assert closed.violations_cleared == opened.violations_new
    assert closed.verdicts("ztna", "back") == ["his-web"]
    assert (closed.opened, closed.violations_new, closed.wafs, closed.tls_floors) == ((),) * 4
    assert set(scans.connects[1].values()) == {"filtered"}  # the router drops office -> his
    # The clean lab twice: no difference at all.
    same = diff(clean, again)
    assert not same.changed, same


def test_the_command_line_shows_the_same_difference(scans: Scans) -> None:
    done = subprocess.run(
        [MEDSEC, "scans", "diff", "previous", "latest", "--zones", "lab", "--format", "json",
         "--config", str(scans.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _, faulty, again = scans.views
    expected: ScanDiff = diff(faulty, again)
    assert json.loads(done.stdout) == json.loads(json.dumps(to_json(expected)))
    table = subprocess.run(
        [MEDSEC, "scans", "diff", scans.views[0].scan_id, faulty.scan_id,
         "--config", str(scans.config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "paths newly open (" in table.stdout
    assert "  office -> his 198.18.2.10 tcp/5432 (open)\n" in table.stdout
    assert "his-web              ZTNA coverage down (covered -> not covered)" in table.stdout
