"""Helpers for the scan history tests: completed scans stored as the collector stores them (the
real report builder, the real ingest under the scanner's identity, a scans row closed with its
report), the collector's settings on a test database, and `medsec` run in this process."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


def inline_medsec(*args: str | Path) -> Done:
    """`medsec ...` run in this process (`collector.cli.main`), as the console script runs it."""
    from collector.cli import main

    out, err = io.StringIO(), io.StringIO()
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse refuses the command line before main runs
                code = int(exc.code or 0)
    finally:
        os.umask(mask)  # main() narrows it for the collector's files
    done = Done(code, out.getvalue(), err.getvalue())
    assert "Traceback" not in done.err, done.err
    return done
