"""A stored scan read back as a view, and two views compared: on report documents made by the real
report builder (`results_to_report`) from the network checks' recorded cases
(tests/checks/cases_net.py) and evaluated by the real checks, round-tripped through JSON as the
store keeps them. The lab scans themselves: tests/collector/test_scan_diff_lab.py.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.catalog import builtin_catalogs
from checks.facts.network import NetFacts, TlsVersionResult
from checks.model import Unavailable
from checks.net import network_registry
from checks.net.matrix import pairs
from checks.runner import evaluate
from collector.api.schemas import ScanDiffOut
from collector.models import ScanRun, ScanState
from collector.scan.cli import results_to_report
from collector.scan_diff import NotComparable, diff, render_table, to_json
from collector.scan_view import OpenPath, ScanView, tls_floor, view_of
from tests.checks.cases_net import (
    BLOCK_PAGE,
    CLEAN,
    DB_LEAK,
    FLAT,
    HOST_TIMEOUT,
    OFFICE_FAILED,
    OUTBOUND,
    PORTAL,
    PROHIBITED,
    ZTNA_BYPASS,
    attacks,
    exchange,
    observation,
    portal,
    tls_service,
    versions,
    with_cells,
)

GOLDEN = Path(__file__).with_name("scan_diff_golden.txt")
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def report_of(facts: NetFacts, *, zones_file: str = "/etc/medsec/zones/lab.yaml") -> dict[str, Any]:
    """The stored report document of a scan that observed `facts` (JSON, as the store has it)."""
    document = results_to_report(
        facts,
        evaluate(network_registry(), facts),
        builtin_catalogs(),
        zones_file=zones_file,
        scanner="collector-01",
        now=T0,
        report_id="00000000-0000-4000-8000-000000000000",
    )
    loaded: dict[str, Any] = json.loads(json.dumps(document))
    return loaded


def view(facts: NetFacts, scan_id: str = "a", minutes: int = 0, **report: Any) -> ScanView:
    finished = T0 + timedelta(minutes=minutes)
    run = ScanRun(
        scan_id, "lab", "olga", ScanState.FINDINGS, finished, finished, f"report-{scan_id}", None
    )
    return view_of(run, report_of(facts, **report))


def reachable(facts: NetFacts) -> set[tuple[str, str, str, str, int, str]]:
    """What the checks themselves read as reachable from the facts (not from a report)."""
    return {
        (o.source, o.target, o.address, o.proto, o.port, o.state)
        for p in pairs(facts)
        for o in p.reachable()
    }


def as_tuples(paths: frozenset[OpenPath]) -> set[tuple[str, str, str, str, int, str]]:
    return {(p.source, p.target, p.address, p.proto, p.port, p.state) for p in paths}


# A router rejecting for every address of his on tcp/22 (resets from all 32, alike): a device's
# answers, which must not read as 32 reachable services.
REJECTING = with_cells(
    *(
        observation("internet", "his", str(address), "tcp/22", "closed", "reset", ttl=254)
        for address in ipaddress.ip_network("198.18.2.0/27")
    )
)
# Fifteen ports open from office to his: the check's evidence lists ten, the view every one.
MANY = with_cells(
    *(
        observation("office", "his", f"198.18.2.{n}", spec, "open", "syn-ack")
        for n in (10, 20, 21)
        for spec in ("tcp/22", "tcp/80", "tcp/443", "tcp/5432", "tcp/8443")
    )
)


@pytest.mark.parametrize(
    "facts",
    [CLEAN, ZTNA_BYPASS, DB_LEAK, OUTBOUND, PROHIBITED, FLAT, REJECTING, MANY, OFFICE_FAILED],
    ids=["clean", "ztna-bypass", "db-leak", "outbound", "prohibited", "flat", "rejecting", "many",
         "office-failed"],
)  # fmt: skip
def test_paths_read_from_the_report_are_what_the_checks_read_from_the_facts(
    facts: NetFacts,
) -> None:
    found = view(facts)
    assert as_tuples(found.paths) == reachable(facts)
    allowed = {(r.source, r.target, f"{r.proto}/{r.port}") for r in facts.policy}
    assert {p.line() for p in found.violations} == {
        f"{o[0]} -> {o[1]} {o[2]} {o[3]}/{o[4]}"
        for o in reachable(facts)
        if o[5] == "open" and (o[0], o[1], f"{o[3]}/{o[4]}") not in allowed
    }


def test_the_clean_scan() -> None:
    found = view(CLEAN)
    assert OpenPath("internet", "dmz", "198.18.1.10", "tcp", 80) in found.paths
    assert found.violations == frozenset()
    assert dict(found.wafs) == {"portal": True, "booking": None}  # booking: require_waf false
    assert dict(found.ztna) == {"his-web": True}
    assert found.ztna_coverage_percent == 100.0
    assert dict(found.tls_floors) == {"198.18.1.30:443": "TLSv1.2", "198.18.2.20:8443": "TLSv1.2"}
    assert (found.errors, dict(found.unmeasured)) == ((), {})
    assert (found.zones_file, found.report_id) == ("/etc/medsec/zones/lab.yaml", "report-a")


def test_a_rejecting_device_is_not_32_reachable_services() -> None:
    found = view(REJECTING)
    assert not [p for p in found.paths if p.pair == "internet->his"]
    assert not diff(view(CLEAN), found).changed


def test_every_violation_is_kept_where_the_evidence_lists_ten() -> None:
    report = report_of(MANY)
    evidence = next(
        r["evidence"]
        for r in report["results"]
        if (r["check_id"], r["target"]) == ("net.segmentation", "office->his")
    )
    assert evidence["violations"][-1] == "... and 5 more"
    assert len(view(MANY).violations) == 15


def test_a_path_newly_open_is_a_new_violation_and_ztna_goes_down() -> None:
    found = diff(view(CLEAN, "a"), view(ZTNA_BYPASS, "b", 60))
    bypass = [
        OpenPath("internet", "his", "198.18.2.20", "tcp", 8443),
        OpenPath("office", "his", "198.18.2.20", "tcp", 8443),
    ]
    assert list(found.opened) == bypass
    assert list(found.violations_new) == bypass
    assert (found.closed, found.violations_cleared, found.state_changed) == ((), (), ())
    assert found.verdicts("ztna", "gone") == ["his-web"]
    assert (found.wafs, found.tls_floors, found.warnings) == ((), (), ())
    assert dict(found.not_compared) == {}
    back = diff(view(ZTNA_BYPASS, "b", 60), view(CLEAN, "c", 120))
    assert (list(back.closed), list(back.violations_cleared)) == (bypass, bypass)
    assert back.verdicts("ztna", "back") == ["his-web"]
    assert not back.opened


def test_a_port_that_stops_listening_is_a_change_of_state_not_a_path_closed() -> None:
    stopped = with_cells()
    stopped = replace(
        CLEAN,
        matrix=tuple(
            replace(
                cell,
                observations=tuple(
                    replace(o, state="closed", reason="reset")
                    if (o.address, o.port) == ("198.18.1.10", 80)
                    else o
                    for o in cell.observations
                ),
            )
            for cell in stopped.matrix  # type: ignore[union-attr]
        ),
    )
    found = diff(view(CLEAN), view(stopped, "b", 1))
    assert (found.opened, found.closed) == ((), ())
    assert [(c.path.line(), c.before, c.after) for c in found.state_changed] == [
        ("internet -> dmz 198.18.1.10 tcp/80", "open", "closed"),
        ("office -> dmz 198.18.1.10 tcp/80", "open", "closed"),
    ]


def test_a_waf_gone_and_back() -> None:
    through = replace(CLEAN, web_apps=(portal(attacks=attacks(200, "PatientPortal/2.3", "ok")),))
    gone = diff(view(CLEAN), view(through, "b", 1))
    assert [(v.name, v.before, v.after, v.change) for v in gone.wafs] == [
        ("booking", None, None, "removed"),
        ("portal", True, False, "gone"),
    ]
    back = diff(view(through, "b", 1), view(CLEAN, "c", 2))
    assert back.verdicts("wafs", "back") == ["portal"]
    assert back.verdicts("wafs", "added") == ["booking"]
    assert (gone.opened, gone.closed, gone.ztna, gone.tls_floors) == ((), (), (), ())


def test_a_waf_the_check_could_not_judge_is_unknown_never_gone() -> None:
    weak = replace(
        CLEAN, web_apps=(portal(baseline=exchange(PORTAL, 403, "HospitalWAF", BLOCK_PAGE)),)
    )
    found = view(weak, "b", 1)
    assert found.wafs["portal"] is None
    assert any(e.startswith("net.waf portal: error: ") for e in found.errors), found.errors
    change = diff(view(CLEAN), found)
    assert change.verdicts("wafs", "unknown") == ["portal"]
    assert change.verdicts("wafs", "gone") == []


def test_web_apps_not_measured_at_all_are_an_error_not_no_waf() -> None:
    found = view(replace(CLEAN, web_apps=Unavailable("the HTTP probes did not run")), "b")
    assert dict(found.wafs) == {}
    assert [e for e in found.errors if e.startswith("net.waf: error:")], found.errors


def test_tls_floor_lowered_raised_and_unknown() -> None:
    legacy = replace(
        CLEAN,
        tls=(
            tls_service("198.18.1.30", 443, "dmz", TLSv1="TLSv1 ECDHE-ECDSA-AES256-SHA"),
            tls_service("198.18.2.20", 8443, "his"),
        ),
    )
    lowered = diff(view(CLEAN), view(legacy, "b", 1))
    assert [(f.endpoint, f.before, f.after, f.change) for f in lowered.tls_floors] == [
        ("198.18.1.30:443", "TLSv1.2", "TLSv1", "lowered")
    ]
    raised = diff(view(legacy, "b", 1), view(CLEAN, "c", 2))
    assert [f.change for f in raised.tls_floors] == ["raised"]
    untested = replace(
        CLEAN,
        tls=(
            replace(
                tls_service("198.18.1.30", 443, "dmz"),
                versions=tuple(
                    TlsVersionResult(v.version, "untested", "no cipher in common")
                    if v.version == "TLSv1.1"
                    else v
                    for v in versions()
                ),
            ),
            tls_service("198.18.2.20", 8443, "his"),
        ),
    )
    found = view(untested, "d", 3)
    assert found.tls_floors["198.18.1.30:443"] is None
    assert "net.tls_floor 198.18.1.30:443: floor unknown: TLSv1.1 untested" in found.errors
    assert [f.change for f in diff(view(CLEAN), found).tls_floors] == ["unknown"]


@pytest.mark.parametrize(
    ("outcomes", "floor"),
    [
        ({"SSLv3": "refused", "TLSv1": "refused", "TLSv1.1": "refused", "TLSv1.2": "accepted",
          "TLSv1.3": "accepted"}, ("TLSv1.2", None)),
        ({"SSLv3": "accepted", "TLSv1.3": "accepted"}, ("SSLv3", None)),
        ({"SSLv3": "refused", "TLSv1": "untested", "TLSv1.2": "accepted"},
         (None, "floor unknown: TLSv1 untested")),
        ({"TLSv1": "accepted"}, (None, "floor unknown: SSLv3 not offered")),
        (dict.fromkeys(("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"), "refused"),
         (None, "no version was accepted")),
    ],
)  # fmt: skip
def test_tls_floor(outcomes: dict[str, str], floor: tuple[str | None, str | None]) -> None:
    assert tls_floor(outcomes) == floor


def test_a_failed_vantage_is_not_compared_never_all_closed() -> None:
    failed = view(OFFICE_FAILED, "b", 1)
    assert set(failed.unmeasured) == {"office->internet", "office->dmz", "office->his"}
    assert failed.ztna["his-web"] is None
    assert any(e.startswith("net.ztna_coverage his-web: error:") for e in failed.errors)
    found = diff(view(CLEAN), failed)
    # The clean scan's office -> dmz web paths are missing from the failed one: not "closed".
    assert found.closed == ()
    assert sorted(found.not_compared) == ["office->dmz", "office->his", "office->internet"]
    assert found.not_compared["office->dmz"].startswith(
        "second scan: could not measure completely: the vantage in office failed"
    )
    assert found.verdicts("ztna", "unknown") == ["his-web"]
    assert found.changed


def test_hosts_left_unfinished_leave_their_pair_uncompared() -> None:
    partial = view(HOST_TIMEOUT, "b", 1)
    assert "internet->his" in partial.unmeasured
    found = diff(view(CLEAN), partial)
    # Measured in the first scan only: nothing can be said of it, and the diff says so.
    assert found.not_compared == {
        "internet->his": "second scan: could not measure completely: 1 hosts of his were not "
        "finished (--host-timeout): 198.18.2.20"
    }
    assert (found.opened, found.closed) == ((), ())
    # Unfinished in both: no path differs there, so nothing to say.
    assert diff(partial, view(HOST_TIMEOUT, "c", 2)).not_compared == {}


def test_a_report_without_a_network_inventory_says_so() -> None:
    run = ScanRun("a", "lab", "olga", ScanState.FINDINGS, T0, T0, "r", None)
    found = view_of(run, {"schema": "medsec.report/v1", "results": []})
    assert found.paths == frozenset()
    assert found.errors == (
        "the report has no network inventory (inventory.network): no paths read",
    )
    broken = report_of(CLEAN)
    broken["inventory"]["network"]["matrix"][0]["port"] = "sctp/9"
    assert (
        view_of(run, broken)
        .errors[0]
        .startswith("the report's reachability matrix cannot be read: ValueError")
    )


def test_scans_of_different_zones_files_are_refused() -> None:
    other = replace(view(CLEAN, "b"), zones="branch")
    with pytest.raises(NotComparable, match="only scans of one zones file can be compared"):
        diff(view(CLEAN), other)


def test_a_zones_file_moved_or_an_order_reversed_is_compared_with_a_warning() -> None:
    moved = view(CLEAN, "b", 1, zones_file="/srv/zones/lab.yaml")
    found = diff(view(CLEAN), moved)
    assert found.warnings == (
        "the zones 'lab' were read from /etc/medsec/zones/lab.yaml in the first scan and from "
        "/srv/zones/lab.yaml in the second: differences may come from the file",
    )
    backwards = diff(view(CLEAN, "b", 5), view(CLEAN, "a", 0))
    assert backwards.warnings == ("scan b finished after scan a: the differences read backwards",)


def test_the_renderers() -> None:
    before = view(CLEAN, "1f0c2d9e-0000-4000-8000-000000000001")
    legacy = replace(
        ZTNA_BYPASS,
        web_apps=(portal(attacks=attacks(200, "PatientPortal/2.3", "ok")),),
        tls=(
            tls_service("198.18.1.30", 443, "dmz", TLSv1="TLSv1 ECDHE-ECDSA-AES256-SHA"),
            tls_service("198.18.2.20", 8443, "his"),
        ),
    )
    after = view(legacy, "1f0c2d9e-0000-4000-8000-000000000002", 60)
    found = diff(before, after)
    text = render_table(found)
    assert text == GOLDEN.read_text(encoding="utf-8"), text
    document = to_json(found)
    # The API's response model takes the document as it is (no field lost or renamed).
    assert ScanDiffOut.model_validate(document).model_dump(by_alias=True, mode="json") == document
    assert document["paths"]["opened"][0] == {
        "from": "internet", "to": "his", "address": "198.18.2.20", "proto": "tcp",
        "port": 8443, "state": "open",
    }  # fmt: skip
    assert document["wafs"] == [
        {"name": "booking", "before": None, "after": None, "change": "removed"},
        {"name": "portal", "before": True, "after": False, "change": "gone"},
    ]
    assert render_table(diff(before, before)).endswith("\nno change\n")


def test_a_udp_port_unreachable_in_one_scan_only_is_no_change() -> None:
    unreachable = observation("internet", "dmz", "198.18.1.10", "udp/161", "closed", "port-unreach")
    answered = view(with_cells(unreachable), "b", 1)
    assert OpenPath("internet", "dmz", "198.18.1.10", "udp", 161) in answered.paths
    for found in (diff(view(CLEAN), answered), diff(answered, view(CLEAN, "c", 2))):
        assert (found.opened, found.closed) == ((), ())
        assert [p.line() for p in found.udp_unconfirmed] == ["internet -> dmz 198.18.1.10 udp/161"]
        assert not found.changed
        assert "1 UDP ports answered port-unreachable in one scan only" in render_table(found)
    # A UDP service that answers (open) is a path like any other.
    service = view(with_cells(replace(unreachable, state="open", reason="udp-response")), "d", 3)
    assert [p.line() for p in diff(view(CLEAN), service).opened] == [
        "internet -> dmz 198.18.1.10 udp/161"
    ]
