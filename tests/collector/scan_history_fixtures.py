"""Helpers for the scan history tests: completed scans stored as the collector stores them (the
real report builder, the real ingest under the scanner's identity, a scans row closed with its
report), the collector's settings on a test database, and `medsec` run in this process."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from checks.catalog import builtin_catalogs
from checks.facts.network import NetFacts
from checks.net import network_registry
from checks.runner import evaluate
from collector.models import ScanRun, ScanState
from collector.scan.cli import results_to_report
from collector.scans import store_scan_report
from collector.store import Store
from tests.collector.cli_inline import inline_medsec


def store_scan(
    store: Store,
    facts: NetFacts,
    finished: datetime,
    *,
    zones: str = "lab",
    zones_file: str = "/etc/medsec/zones/lab.yaml",
) -> ScanRun:
    """A scan of `zones` that observed `facts`, finished (and its report received) at
    `finished`, stored as `ScanLauncher` stores one."""
    results = evaluate(network_registry(), facts)
    report = results_to_report(
        facts, results, builtin_catalogs(), zones_file=zones_file, scanner="collector-01",
        now=finished,
    )  # fmt: skip
    run = store.start_scan(
        zones, "olga", finished - timedelta(minutes=1), finished + timedelta(hours=1)
    )
    body = json.dumps(report, ensure_ascii=False).encode("utf-8")
    outcome = store_scan_report(store, body, finished)
    state = ScanState.FINDINGS if report["summary"]["fail"] else ScanState.PASSED
    return store.finish_scan(run.id, state, finished, report_id=outcome.report_id)


def failed_scan(store: Store, finished: datetime, zones: str = "lab") -> ScanRun:
    run = store.start_scan(
        zones, "olga", finished - timedelta(minutes=1), finished + timedelta(hours=1)
    )
    return store.finish_scan(
        run.id, ScanState.FAILED, finished, message="zone office, vantage ssh: timed out"
    )


def collector_config(folder: Path, database: str) -> Path:
    """`medsec init`'s settings, on `database`."""
    assert inline_medsec("init", "--dir", folder).code == 0
    config = folder / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = database
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config
