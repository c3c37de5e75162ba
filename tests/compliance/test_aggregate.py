"""The clause rules an auditor relies on, over generated evidence: a failing object fails its
clause (部分符合 beside passing ones), stale or missing evidence is never a pass, a clause with
no evidence is `not_covered`, attestations count until they expire, and the filters select
hosts and network objects by site, host and zone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.compliance.aggregate import (
    Evidence,
    Rules,
    ScopeError,
    aggregate,
    check_kinds,
    rollup,
)
from collector.compliance.model import ClauseVerdict, Compliance, Scope
from collector.compliance.zones import ZoneMap
from collector.models import EvidenceHost, EvidenceResult
from collector.scan.zones import load_zones
from tests.compliance.sample import NOW, _host, catalog, sample_compliance, sample_evidence

KINDS = check_kinds()
GBT = catalog("gbt22239-2019-l3")
RULES = Rules(evaluated_at=NOW)


def clause(doc: Compliance, clause_id: str) -> ClauseVerdict:
    return next(c for c in doc.clauses if c.id == clause_id)


def run(evidence: Evidence, **kwargs: object) -> Compliance:
    return aggregate(GBT, evidence, RULES, KINDS, **kwargs)  # type: ignore[arg-type]


def test_one_failing_host_fails_the_clause_beside_passing_ones() -> None:
    doc = sample_compliance()
    encryption = clause(doc, "8.1.4.8 b")  # disk.* checks; his-app-02 has a weak cipher
    assert encryption.status == "fail"
    assert encryption.conformity == "部分符合"
    failing = [o for o in encryption.objects if o.status == "fail"]
    assert [o.name for o in failing] == ["his-app-02"]
    assert failing[0].conformity == "部分符合"  # its other disk results passed
    weak = [e for e in encryption.evidence if getattr(e, "status", None) == "fail"]
    assert weak
    assert weak[0].message_zh == "aes-cbc-essiv 128 位密钥"


def test_stale_hosts_and_missing_agents_are_errors_never_passes() -> None:
    doc = sample_compliance()
    tpm = clause(doc, "8.1.4.6")
    stale = next(o for o in tpm.objects if o.name == "his-app-04")
    assert stale.status == "error"
    assert stale.reason is not None
    assert stale.reason.startswith("stale: last report at 2026-12-01T05:00:00")
    missing = next(o for o in tpm.objects if o.kind == "agent")
    assert (missing.name, missing.status) == ("lis-db-01", "error")
    assert tpm.status == "error"
    assert tpm.conformity is None
    assert [m.agent for m in doc.missing] == ["lis-db-01"]
    assert doc.summary.stale_hosts == 1


def test_fresh_evidence_alone_passes() -> None:
    evidence = sample_evidence()
    fresh = [h for h in evidence.hosts if h.hostname in ("his-app-01", "his-app-03")]
    scan = [h for h in evidence.hosts if h.is_scan]
    doc = run(replace(evidence, hosts=[*fresh, *scan], missing=[]))
    assert clause(doc, "8.1.4.6").status == "pass"
    assert clause(doc, "8.1.4.6").conformity == "符合"


def test_a_stale_limit_is_the_settings_one() -> None:
    evidence = sample_evidence()
    lenient = Rules(evaluated_at=NOW, stale_after=timedelta(hours=4))
    doc = aggregate(GBT, replace(evidence, missing=[]), lenient, KINDS)
    assert clause(doc, "8.1.4.6").status == "pass"


def test_no_evidence_is_not_covered_and_never_pass() -> None:
    doc = run(Evidence(hosts=[], results=[]))
    assert clause(doc, "8.1.4.6").status == "not_covered"
    assert clause(doc, "8.1.3.3 a").status == "not_covered"  # WAF: no scan
    assert clause(doc, "8.1.4.6").objects[0].reason == "no agent report in scope"
    assert doc.summary.clauses.by_status["pass"] == 0
    assert doc.summary.grade.score is None


def test_a_host_without_a_result_for_the_clause_leaves_it_not_covered() -> None:
    evidence = sample_evidence()
    first = evidence.hosts[0]
    kept = [r for r in evidence.results if not (r.report_pk == 1 and r.check_id == "backup.rpo")]
    doc = run(replace(evidence, hosts=[first], results=kept, missing=[]))
    rpo = clause(doc, "8.1.4.9 a")
    assert rpo.status == "not_covered"
    assert rpo.objects[0].reason == "no result for backup.rpo"


def test_all_not_applicable_is_not_applicable() -> None:
    host = _host(1, age=timedelta(minutes=1))
    results = [EvidenceResult(1, "wipe.capability", "not_applicable", None, "no disks", None, "{}")]
    doc = run(Evidence(hosts=[host], results=results))
    assert clause(doc, "8.1.4.10 a").status == "not_applicable"
    assert clause(doc, "8.1.4.10 a").conformity == "不适用"


def test_attestations_count_until_they_expire() -> None:
    doc = sample_compliance()
    attested = clause(doc, "8.1.1.2")
    assert (attested.status, attested.conformity) == ("pass", "符合")
    assert attested.objects[0].kind == "attestation"
    assert attested.evidence[0].attestation.file_sha256 == "ab" * 32  # type: ignore[union-attr]
    assert clause(doc, "8.1.1.3 a").status == "manual"  # its attestation expired
    later = Rules(evaluated_at=NOW + timedelta(days=400))
    assert clause(aggregate(GBT, sample_evidence(), later, KINDS), "8.1.1.2").status == "manual"


def test_network_objects_come_from_the_scan() -> None:
    doc = sample_compliance()
    segmentation = clause(doc, "8.1.2.1 c")
    assert {(o.kind, o.name, o.status) for o in segmentation.objects} == {
        ("zone_pair", "office->his", "pass"),
        ("zone_pair", "guest->his", "fail"),
    }
    mixed = clause(doc, "8.1.3.2 a")  # host firewall and network segmentation together
    assert {o.kind for o in mixed.objects} >= {"host", "zone_pair"}


def test_site_and_host_filters(tmp_path: Path) -> None:
    evidence = sample_evidence()
    dc2 = run(evidence, scope=Scope(site="dc2"))
    assert [h.hostname for h in dc2.hosts if not h.id.startswith("scan:")] == ["his-app-04"]
    assert dc2.missing == []  # a filtered report cannot place agents that never reported
    one = run(evidence, scope=Scope(host="his-app-02"))
    assert [h.hostname for h in one.hosts] == ["his-app-02"]
    with pytest.raises(ScopeError, match="no host matches --site nowhere"):
        run(evidence, scope=Scope(site="nowhere"))


def test_zone_filter_uses_the_zones_files(tmp_path: Path) -> None:
    zones_file = tmp_path / "zones.yaml"
    zones_file.write_text(
        "zones:\n"
        "  - {name: his, cidrs: [198.18.1.0/24], vantage: {kind: local}}\n"
        "  - {name: office, cidrs: [198.18.2.0/24]}\n"
        "  - {name: guest, cidrs: [198.18.3.0/24]}\n"
        "policy: {default: deny, allow: []}\n"
    )
    zones = ZoneMap([load_zones(zones_file)])
    doc = run(sample_evidence(), scope=Scope(zone="his"), zones=zones)
    hosts = sorted(h.hostname for h in doc.hosts if not h.id.startswith("scan:"))
    assert hosts == ["his-app-02", "his-app-04"]  # 198.18.1.x: pk 2 and 4
    pairs = {o.name for o in clause(doc, "8.1.2.1 d").objects}
    assert pairs == {"office->his", "guest->his", "his<->internet"}
    office = run(sample_evidence(), scope=Scope(zone="office"), zones=zones)
    assert {o.name for o in clause(office, "8.1.2.1 c").objects} == {"office->his"}
    with pytest.raises(ScopeError, match="no zone named 'lab'"):
        run(sample_evidence(), scope=Scope(zone="lab"), zones=zones)


STATUS = st.sampled_from(["pass", "fail", "error", "not_applicable", "manual"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(STATUS, min_size=0, max_size=4), min_size=1, max_size=6))
def test_clause_status_follows_the_rules_for_any_mix(per_host: list[list[str]]) -> None:
    """Over generated fleets: fail iff some result fails; pass only when every host gave
    results and none failed, errored or needs a person; conformity 部分符合 exactly when a fail
    sits beside a pass."""
    hosts: list[EvidenceHost] = []
    results: list[EvidenceResult] = []
    for n, statuses in enumerate(per_host, start=1):
        hosts.append(_host(n, age=timedelta(minutes=1)))
        results += [
            EvidenceResult(n, "wipe.capability", s, f"/dev/sd{i}", s, None, "{}")
            for i, s in enumerate(statuses)
        ]
    verdict = clause(run(Evidence(hosts, results)), "8.1.4.10 a")
    flat = [s for statuses in per_host for s in statuses]
    assert (verdict.status == "fail") == ("fail" in flat)
    if verdict.status == "pass":
        assert all(per_host)
        assert set(flat) <= {"pass", "not_applicable"}
        assert "pass" in flat
    if not all(per_host) and "fail" not in flat and "error" not in flat:
        assert verdict.status == "not_covered"
    if verdict.conformity == "部分符合":
        assert any("pass" in s for s in per_host)
    host_passed = any("pass" in s and set(s) <= {"pass", "not_applicable"} for s in per_host)
    if verdict.status == "fail" and host_passed:
        assert verdict.conformity == "部分符合"
    assert verdict.status == rollup(o.status for o in verdict.objects)
