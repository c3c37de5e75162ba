"""Which alerts stored scans raise and clear: each scan's report built by the scanner's own
`results_to_report` from the recorded lab facts, stored as the launcher stores it, and read back
through the scan view. A violation, a WAF gone or a ZTNA gateway gone raises once; a scan that
finds it again raises nothing; one that finds it gone clears it; what a scan could not evaluate
(a vantage down, a check in error) neither raises nor clears."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa

from collector.alerts import AlertService
from collector.models import ScanState
from collector.settings import AlertSettings
from collector.store import Store
from tests.checks.cases_net import BOOKING, CLEAN
from tests.collector.alerts_scans import FACTS, START, ZONES, case, store_scan

OFFICE_HIS = f"{ZONES}/violation/office->his"
INTERNET_HIS = f"{ZONES}/violation/internet->his"
WAF = f"{ZONES}/waf_gone/portal"
ZTNA = f"{ZONES}/ztna_gone/his-web"


class Scans:
    """Stores one scan after another and evaluates each as the launcher's hook does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.service = AlertService(AlertSettings(), store, lambda: self.now)
        self.now = START

    def run(self, facts_name: str) -> tuple[list[str], list[str]]:
        """(keys opened, keys cleared) by a scan of these facts."""
        self.now += timedelta(hours=1)
        run = store_scan(self.store, FACTS[facts_name], self.now)
        opened, cleared = asyncio.run(self.service.evaluate(run))
        return [a.key for a in opened], [a.key for a in cleared]

    def open(self) -> list[str]:
        return [a.key for a in self.store.open_alerts(ZONES)]


def test_a_violation_raises_once_and_clears_once(store):
    scans = Scans(store)
    assert scans.run("clean") == ([], [])
    assert scans.run("db-leak") == ([OFFICE_HIS], [])
    assert scans.run("db-leak") == ([], [])  # still there: the same open alert
    [alert] = store.open_alerts(ZONES)
    assert alert.kind == "violation"
    assert alert.detail == {
        "text": "office->his 198.18.2.10 tcp/1433",
        "from": "office",
        "to": "his",
        "count": 1,
        "paths": [{"address": "198.18.2.10", "proto": "tcp", "port": 1433, "state": "open"}],
    }
    assert scans.run("clean") == ([], [OFFICE_HIS])
    assert scans.run("clean") == ([], [])
    assert scans.run("db-leak") == ([OFFICE_HIS], [])


def test_a_fault_opening_a_zone_pair_is_one_alert_naming_its_paths(store):
    scans = Scans(store)
    opened, _ = scans.run("office-his-open")
    # office reaches his on every port: the database and his-web, outside the policy, are one
    # violation of the pair; his-web answering office directly is also its ZTNA gateway no
    # longer covering it.
    assert opened == [OFFICE_HIS, ZTNA]
    detail = store.open_alerts(ZONES)[0].detail
    assert detail["text"] == "office->his 198.18.2.10 tcp/5432, 198.18.2.20 tcp/8443"
    assert detail["count"] == 2
    # The pair stays one open alert while more of it opens (a port more, a port less).
    assert scans.run("db-leak") == ([], [ZTNA])
    assert scans.run("clean") == ([], [OFFICE_HIS])


def test_a_waf_gone_and_a_ztna_gateway_gone_raise_and_clear(store):
    scans = Scans(store)
    assert scans.run("waf-gone") == ([WAF], [])
    [alert] = store.open_alerts(ZONES)
    assert alert.detail["text"] == "portal: no WAF blocks attacks in front of it"
    assert alert.detail["application"] == "portal"
    assert alert.detail["message"].startswith(
        "portal: sqli, xss, traversal, cmdi, scanner, protocol attack requests were answered like"
    )
    opened, cleared = scans.run("ztna-bypass")
    assert cleared == [WAF]
    assert ZTNA in opened
    assert store.open_alerts(ZONES)[-1].detail["text"] == "his-web: not covered by its ZTNA gateway"
    assert scans.run("clean")[1] == sorted(opened)


def test_what_a_scan_could_not_evaluate_neither_raises_nor_clears(store):
    scans = Scans(store)
    scans.run("db-leak+ztna-bypass")
    assert scans.open() == [INTERNET_HIS, OFFICE_HIS, ZTNA]
    # The office vantage is down: office's paths are unknown and so is his-web's coverage
    # (net.ztna_coverage errs); internet->his was measured and is closed again.
    opened, cleared = scans.run("office-failed")
    assert opened == []
    assert cleared == [INTERNET_HIS]
    assert OFFICE_HIS in scans.open()
    assert ZTNA in scans.open()
    # What the failed vantage's remaining cells still show open raises nothing new here (it is
    # open already), and the measured clean scan clears the rest.
    assert scans.run("office-failed+db-leak")[1] == []
    assert scans.run("clean") == ([], [OFFICE_HIS, ZTNA])


def test_a_waf_no_longer_required_or_an_application_removed_clears(store):
    scans = Scans(store)
    FACTS["waf-not-required"] = replace(CLEAN, web_apps=(BOOKING,))
    FACTS["waf-not-probed"] = case("net.waf", "not probed")
    try:
        assert scans.run("waf-gone") == ([WAF], [])
        assert scans.run("waf-not-probed") == ([], [])  # an error: unknown, kept open
        assert scans.run("waf-not-required") == ([], [WAF])  # portal is no longer listed
    finally:
        del FACTS["waf-not-required"], FACTS["waf-not-probed"]


def test_a_report_without_results_clears_nothing(store, store_url):
    scans = Scans(store)
    scans.run("db-leak")
    run = store_scan(store, FACTS["clean"], START + timedelta(days=1))
    # The stored report loses its results (a report of another shape than the scanner's).
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            body = conn.execute(
                sa.text("SELECT body FROM reports WHERE report_id = :id"), {"id": run.report_id}
            ).scalar_one()
            document = json.loads(body)
            del document["results"]
            conn.execute(
                sa.text("UPDATE reports SET body = :body WHERE report_id = :id"),
                {"body": json.dumps(document), "id": run.report_id},
            )
    finally:
        engine.dispose()
    assert asyncio.run(scans.service.evaluate(run)) == ([], [])
    assert scans.open() == [OFFICE_HIS]


def test_a_failed_scan_is_not_evaluated(store, caplog):
    scans = Scans(store)
    scans.run("db-leak")
    run = store.start_scan(ZONES, "alice", START + timedelta(days=1), START + timedelta(days=2))
    failed = store.finish_scan(run.id, ScanState.FAILED, START + timedelta(days=1), message="x")
    asyncio.run(scans.service.scan_stored(failed, "no-report"))
    assert scans.open() == [OFFICE_HIS]
    assert f"alerts: scan {run.id} not evaluated" in caplog.text
