"""Scan history on SQLite and on PostgreSQL: completed scans and their stored reports read back for
comparing, `medsec scans list|diff` and `medsec db prune` (in this process, on the `store`
fixture's database), and `GET /api/v1/scans/diff` served by the real collector over TLS. The
scans are stored as the collector stores them, from the network checks' recorded cases; the lab
scans themselves are in tests/collector/test_scan_diff_lab.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.models import Role, ScanState
from collector.store import NotFound, Store
from collector.store.scan_history import ScanNotComparable, ScanRefInvalid, resolve_scan_ids
from collector.store.schema import jobs, reports, scans
from tests.checks.cases_net import CLEAN, DB_LEAK, ZTNA_BYPASS
from tests.collector.fixtures_api import Server, TlsFiles, make_server_tls, serving
from tests.collector.scan_history_fixtures import (
    collector_config,
    failed_scan,
    inline_medsec,
    store_scan,
)

NOW = datetime.now(UTC).replace(microsecond=0)


def add_job(store_url: str, scan_id: str | None) -> None:
    """A probe job of `scan_id`, as the jobs part of the store writes one (its table directly:
    only whether pruning deletes it matters here)."""
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(jobs).values(
                    id=str(uuid.uuid4()), scan_id=scan_id, zone="office", kind="noop",
                    request={}, state="done", created_at=NOW, deadline=NOW,
                )
            )  # fmt: skip
    finally:
        engine.dispose()


def count(store_url: str, table: sa.Table) -> int:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


# --- the store ---------------------------------------------------------------------------------


def test_a_scan_and_its_report_or_why_it_cannot_be_compared(store: Store) -> None:
    done = store_scan(store, CLEAN, NOW - timedelta(hours=2))
    scan, report = store.scan_with_report(done.id, NOW)
    assert (scan.id, scan.state, report["report_id"]) == (done.id, ScanState.PASSED, done.report_id)
    assert report["inventory"]["network"]["zones_file"] == "/etc/medsec/zones/lab.yaml"

    for missing in (str(uuid.uuid4()), "not-an-id", "x" * 5000, "a\x00b"):
        with pytest.raises(NotFound):
            store.scan_with_report(missing, NOW)
    failed = failed_scan(store, NOW - timedelta(hours=1))
    with pytest.raises(ScanNotComparable, match=r"failed, so it has no results \(zone office"):
        store.scan_with_report(failed.id, NOW)
    running = store.start_scan("lab", "olga", NOW, NOW + timedelta(hours=1))
    with pytest.raises(ScanNotComparable, match="is still running") as caught:
        store.scan_with_report(running.id, NOW)
    assert caught.value.reason == "running"
    store.finish_scan(running.id, ScanState.FAILED, NOW, message="test")

    # A newer scan of the same zones file, then the older one's report pruned with its results.
    store_scan(store, ZTNA_BYPASS, NOW - timedelta(minutes=30))
    assert store.prune_reports(NOW - timedelta(hours=1)) == (1, len(report["results"]))
    with pytest.raises(
        ScanNotComparable, match=f"its report {done.report_id} was pruned"
    ) as pruned:
        store.scan_with_report(done.id, NOW)
    assert pruned.value.reason == "pruned"


def test_latest_completed_and_the_history_with_filters(store: Store) -> None:
    first = store_scan(store, CLEAN, NOW - timedelta(hours=3))
    second = store_scan(store, DB_LEAK, NOW - timedelta(hours=2))
    failed_scan(store, NOW - timedelta(minutes=90))
    third = store_scan(store, CLEAN, NOW - timedelta(hours=1))
    branch = store_scan(store, CLEAN, NOW - timedelta(minutes=30), zones="branch",
                        zones_file="/etc/medsec/zones/branch.yaml")  # fmt: skip

    assert [s.id for s in store.latest_completed("lab", 2, NOW)] == [third.id, second.id]
    assert [s.id for s in store.latest_completed("branch", 2, NOW)] == [branch.id]
    assert store.latest_completed("nowhere", 2, NOW) == []
    assert resolve_scan_ids(store, ["previous", "latest"], "lab", NOW) == [second.id, third.id]
    assert resolve_scan_ids(store, [first.id, "latest"], "lab", NOW) == [first.id, third.id]
    with pytest.raises(NotFound, match="previous: the zones 'branch' have 1 completed scan "):
        resolve_scan_ids(store, ["previous", "latest"], "branch", NOW)
    with pytest.raises(ScanRefInvalid):
        resolve_scan_ids(store, ["latest", first.id], None, NOW)

    lab = store.scan_history(10, 0, NOW, zones="lab")
    assert [r.scan.id for r in lab.items] == [third.id, second.id, first.id]
    assert lab.total == 3
    leak = lab.items[1].counts
    assert leak is not None
    assert leak["fail"] >= 1
    everything = store.scan_history(10, 0, NOW, completed_only=False)
    assert everything.total == 5
    assert [r.scan.state for r in everything.items][2] is ScanState.FAILED
    assert everything.items[2].counts is None
    window = store.scan_history(
        10, 0, NOW, since=NOW - timedelta(minutes=150), until=NOW - timedelta(minutes=45)
    )
    assert [r.scan.id for r in window.items] == [third.id, second.id]
    page = store.scan_history(1, 1, NOW, zones="lab")
    assert ([r.scan.id for r in page.items], page.total) == ([second.id], 3)


def test_prune_keeps_each_zones_files_newest_completed_scan_and_deletes_jobs(
    store: Store, store_url: str
) -> None:
    old = NOW - timedelta(days=500)
    gone = [store_scan(store, CLEAN, old), failed_scan(store, old + timedelta(days=1))]
    newest_old = store_scan(store, CLEAN, old + timedelta(days=2), zones="branch",
                            zones_file="/etc/medsec/zones/branch.yaml")  # fmt: skip
    recent = store_scan(store, CLEAN, NOW - timedelta(days=1))
    # A scan lost with its collector long ago (still "running" in its row), and one running now.
    lost = store.start_scan("lost", "olga", old, old + timedelta(hours=1))
    running = store.start_scan("lab", "olga", NOW, NOW + timedelta(hours=1))
    for scan_id in (gone[0].id, gone[1].id, gone[1].id, lost.id, newest_old.id, recent.id, None):
        add_job(store_url, scan_id)

    assert store.prune_scans(NOW - timedelta(days=400), chunk=1) == (3, 4)
    left = {r.scan.id for r in store.scan_history(10, 0, NOW, completed_only=False).items}
    assert left == {newest_old.id, recent.id, running.id}
    assert count(store_url, jobs) == 3  # the kept scans' and the job of no scan
    assert store.prune_scans(NOW - timedelta(days=400)) == (0, 0)


# --- medsec scans list | diff, medsec db prune -------------------------------------------------


@pytest.fixture
def config(store_url: str, tmp_path: Path) -> Path:
    return collector_config(tmp_path / "collector", store_url)


def test_scans_list_and_diff_on_the_command_line(store: Store, config: Path) -> None:
    before = store_scan(store, CLEAN, NOW - timedelta(hours=2))
    failed = failed_scan(store, NOW - timedelta(minutes=90))
    after = store_scan(store, ZTNA_BYPASS, NOW - timedelta(hours=1))

    listed = inline_medsec(
        "scans", "list", "--zones", "lab", "--format", "json", "--config", config
    )
    assert listed.code == 0, listed
    rows = json.loads(listed.out)
    assert [(r["id"], r["state"]) for r in rows] == [(after.id, "findings"), (before.id, "passed")]
    assert rows[0]["counts"]["fail"] >= 1
    table = inline_medsec("scans", "list", "--all", "--config", config)
    assert table.code == 0, table
    assert table.out.splitlines()[0].split() == [
        "ID", "ZONES", "STATE", "FINISHED", "BY", "FAIL", "ERROR", "REPORT"
    ]  # fmt: skip
    assert failed.id in table.out

    shown = inline_medsec("scans", "diff", before.id, after.id, "--config", config)
    assert shown.code == 0, shown
    assert "paths newly open (2):\n  internet -> his 198.18.2.20 tcp/8443 (open)\n" in shown.out
    assert "his-web              ZTNA coverage down (covered -> not covered)" in shown.out
    as_json = inline_medsec(
        "scans", "diff", "previous", "latest", "--zones", "lab", "--format", "json",
        "--config", config,
    )  # fmt: skip
    assert as_json.code == 0, as_json
    document = json.loads(as_json.out)
    assert (document["from"]["id"], document["to"]["id"]) == (before.id, after.id)
    assert [v["address"] for v in document["violations"]["new"]] == ["198.18.2.20"] * 2

    for args, words in [
        ((str(uuid.uuid4()), after.id), "no scan"),
        ((failed.id, after.id), "failed, so it has no results"),
        (("latest", after.id), "latest and previous need the zones name"),
        (("previous", "latest", "--zones", "elsewhere"), "the zones 'elsewhere' have 0"),
    ]:
        refused = inline_medsec("scans", "diff", *args, "--config", config)
        assert refused.code == 2, refused
        assert refused.err.startswith("medsec: "), refused.err
        assert words in refused.err, refused.err
        assert refused.err.count("\n") == 1
        assert refused.out == ""
    branch = store_scan(store, CLEAN, NOW - timedelta(minutes=5), zones="branch")
    other = inline_medsec("scans", "diff", before.id, branch.id, "--config", config)
    assert (other.code, other.err.strip()) == (
        2,
        f"medsec: scan {before.id} is of the zones 'lab' and scan {branch.id} of 'branch': only "
        "scans of one zones file can be compared",
    )
    audit = [(e.action, e.outcome) for e in store.audit_entries(100, 0).items]
    assert (f"cli scans diff {before.id} {after.id}", "0") in audit
    assert (f"cli scans diff {failed.id} {after.id}", "2 scan_not_comparable") in audit
    assert (f"cli scans diff {before.id} {branch.id}", "2 not_comparable") in audit
    assert ("cli scans list --zones lab", "0") in audit


def test_db_prune_prunes_scans_with_their_reports(
    store: Store, store_url: str, config: Path
) -> None:
    old = NOW - timedelta(days=500)
    first = store_scan(store, CLEAN, old)
    second = store_scan(store, DB_LEAK, old + timedelta(days=1))
    add_job(store_url, first.id)
    pruned = inline_medsec("db", "prune", "--config", config)
    assert pruned.code == 0, pruned
    assert pruned.out.startswith("pruned 1 reports (")
    assert ", and 1 scans (1 jobs) and 0 cleared alerts ended before then" in pruned.out
    # The newest scan of the zones file stays, with its report: it can still be compared.
    assert [r.scan.id for r in store.scan_history(10, 0, NOW).items] == [second.id]
    assert store.scan_with_report(second.id, NOW)[1]["report_id"] == second.report_id
    assert (count(store_url, scans), count(store_url, reports), count(store_url, jobs)) == (1, 1, 0)


# --- GET /api/v1/scans/diff --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(store: Store, tls: TlsFiles) -> Iterator[Server]:
    with serving(store, tls) as running:
        yield running


def test_the_diff_over_the_api(server: Server) -> None:
    store = server.store
    before = store_scan(store, CLEAN, NOW - timedelta(hours=2))
    after = store_scan(store, ZTNA_BYPASS, NOW - timedelta(hours=1))
    failed = failed_scan(store, NOW - timedelta(minutes=30))
    auditor = server.client(server.user(Role.AUDITOR, "ada"))

    answer = auditor.get("/api/v1/scans/diff", params={"from": before.id, "to": after.id})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["schema"] == "medsec.scan-diff/v1"
    assert (body["from"]["id"], body["to"]["id"], body["changed"]) == (before.id, after.id, True)
    assert [(p["from"], p["to"], p["port"]) for p in body["paths"]["opened"]] == [
        ("internet", "his", 8443),
        ("office", "his", 8443),
    ]
    assert body["ztna"] == [{"name": "his-web", "before": True, "after": False, "change": "gone"}]
    latest = auditor.get(
        "/api/v1/scans/diff", params={"from": "previous", "to": "latest", "zones": "lab"}
    )
    assert latest.status_code == 200, latest.text
    assert latest.json() == body
    for role in (Role.OPERATOR, Role.ADMIN):
        allowed = server.client(server.user(role)).get(
            "/api/v1/scans/diff", params={"from": after.id, "to": before.id}
        )
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["violations"]["cleared"][0]["address"] == "198.18.2.20"

    branch = store_scan(store, CLEAN, NOW - timedelta(minutes=5), zones="branch")
    for params, status, code in [
        ({"from": str(uuid.uuid4()), "to": after.id}, 404, "not_found"),
        ({"from": failed.id, "to": after.id}, 409, "scan_failed"),
        ({"from": before.id, "to": branch.id}, 409, "different_zones"),
        ({"from": "previous", "to": "latest"}, 422, "invalid_request"),
        ({"from": "latest", "to": "previous", "zones": "nowhere"}, 404, "not_found"),
        ({"from": "../etc", "to": after.id}, 422, "invalid_request"),
        ({"from": before.id, "to": after.id, "zones": "Not A Name"}, 422, "invalid_request"),
        ({"to": after.id}, 422, "invalid_request"),
    ]:
        refused = auditor.get("/api/v1/scans/diff", params=params)
        assert (refused.status_code, refused.json()["error"]) == (status, code), refused.text
        assert refused.json()["message"]
    # `diff` is not taken for a scan id, and the scan route still answers.
    assert auditor.get(f"/api/v1/scans/{before.id}").json()["report_id"] == before.report_id
    nobody = server.client().get("/api/v1/scans/diff", params={"from": before.id, "to": after.id})
    assert nobody.status_code == 401
    actions = [(e.actor, e.action, e.outcome) for e in store.audit_entries(100, 0).items]
    assert ("ada", "GET /api/v1/scans/diff", "200") in actions
    assert ("ada", "GET /api/v1/scans/diff", "409 scan_failed") in actions
