"""Stored scans for the alert tests: the recorded lab facts of tests/checks/cases_net.py (clean,
and each fault's variant), evaluated by the real network checks, shaped by the scanner's own
`results_to_report`, stored the way the `ScanLauncher` stores a scan (a scans row closed with the
report's id), so alerts are raised from exactly what a real scan leaves in the database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from checks.catalog import builtin_catalogs
from checks.facts.network import NetFacts
from checks.net import network_registry
from checks.runner import evaluate
from collector.models import ScanRun, ScanState
from collector.scan.cli import results_to_report
from collector.scans import store_scan_report
from collector.store import Store
from tests.checks.cases_net import CASES, CLEAN, DB_LEAK, OFFICE_FAILED, with_open

ZONES = "hospital"
START = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def case(check_id: str, name: str) -> NetFacts:
    """The facts of one recorded case (tests/checks/cases_net.py)."""
    return next(facts for case_name, facts, _, _ in CASES[check_id] if case_name == name)


WAF_GONE = case("net.waf", "waf-detection-only")
"""The portal's WAF only watches: attacks reach the application."""
ZTNA_BYPASS = case("net.ztna_coverage", "ztna-bypass")
"""his-web answers the internet and office zones directly: its gateway no longer covers it."""
OFFICE_HIS_OPEN = with_open(("office", "his"))
"""The router lets office reach his on every port (lab fault office-his-open)."""
FACTS = {
    "clean": CLEAN,
    "db-leak": DB_LEAK,
    "office-his-open": OFFICE_HIS_OPEN,
    "waf-gone": WAF_GONE,
    "ztna-bypass": ZTNA_BYPASS,
    "office-failed": OFFICE_FAILED,
    "office-failed+db-leak": replace(OFFICE_FAILED, matrix=DB_LEAK.matrix),
    # DB_LEAK's one extra cell (office->his tcp/1433) added to the ZTNA bypass.
    "db-leak+ztna-bypass": replace(
        ZTNA_BYPASS,
        matrix=(*ZTNA_BYPASS.matrix, DB_LEAK.matrix[-1]),
        silent_ports=DB_LEAK.silent_ports,
    ),
}


def store_scan(store: Store, facts: NetFacts, at: datetime, *, zones: str = ZONES) -> ScanRun:
    """A completed scan of `zones` whose report holds `facts`' results, stored at `at`."""
    results = evaluate(network_registry(), facts)
    report = results_to_report(
        facts,
        results,
        builtin_catalogs(),
        zones_file=f"/etc/medsec/{zones}.yaml",
        scanner="collector-test",
        now=at,
    )
    body = json.dumps(report).encode()
    run = store.start_scan(zones, "alice", at, at + timedelta(hours=1))
    outcome = store_scan_report(store, body, at)
    failed = any(r.status.value in {"fail", "error"} for r in results)
    return store.finish_scan(
        run.id,
        ScanState.FINDINGS if failed else ScanState.PASSED,
        at + timedelta(seconds=30),
        report_id=outcome.report_id,
    )
