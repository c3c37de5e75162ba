"""Clause by clause: every in-scope host's and scan's newest results joined with a catalog into
one `Compliance` document. Pure: the caller reads the store and the zones files.

The rules (the README repeats them for users):
- An object's status rolls up its results for the clause's checks, and a clause's status rolls
  up its objects: `fail` if any fails; else `error` if any could not be decided; else
  `not_covered` if any should give evidence and has none; else `manual`; else `pass` when at
  least one passed and the rest are not applicable; `not_applicable` when all are.
- Which objects should give evidence: every in-scope host for a clause with host checks (and
  every enrolled agent that never reported, when the scope is not filtered), every scanned
  network object for a clause with network checks. Network evidence comes from the collector's
  own reports: zones scans (`medsec scan`) and SNMP inventories (`medsec inventory snmp`,
  whose devices are objects of kind `device`); each answers its own checks, so a clause is held
  against the scans only when none of them answered it. No host at all, or no scan answering at
  all, is one `not_covered` object: a clause is never `pass` for want of objects.
- A host whose newest report is older than the stale limit gives `error` ("stale: last report at
  ...") on each of its clauses, never its old verdict; likewise a scan past its own limit.
- A manual clause is `manual` unless a person's attestation, still valid at the evaluated
  instant, says `pass`, `fail` or `not_applicable`: the newest such one counts.
- Conformity (the assessors' words): `pass` is 符合, `not_applicable` 不适用; a `fail` is 部分符合
  when some objects (or some of one host's results) passed, else 不符合; anything else is
  undecided (None).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from checks.catalog import Catalog, Clause
from checks.report import rfc3339
from collector.compliance.model import (
    CONFORMITIES,
    SCHEMA,
    STATUSES,
    AttestationEvidence,
    AttestationOut,
    ClauseVerdict,
    Compliance,
    Conformity,
    Counts,
    Edition,
    EvidenceItem,
    FamilyCounts,
    Grade,
    HostEntry,
    MissingEntry,
    ObjectKind,
    ObjectVerdict,
    Scope,
    Status,
    Summary,
)
from collector.compliance.zones import ZoneMap
from collector.models import Attestation, EvidenceHost, EvidenceRow, MissingAgent

CheckKind = str  # "host" or "network"

_NETWORK_KINDS: dict[str, ObjectKind] = {
    "net.segmentation": "zone_pair",
    "net.internet_isolation": "zone_pair",
    "net.border_firewall": "zone_pair",
    "net.waf": "web_app",
    "net.ztna_coverage": "critical_system",
    "net.tls_floor": "service",
    "net.snmp_secure": "device",
    "net.security_devices": "zone_pair",
}
"""What a network check's `target` names."""
_ROLLUP_ORDER: tuple[Status, ...] = ("fail", "error", "not_covered", "manual")
GRADE_RULE = (
    "indicative only: the conformity rate of the decided clauses (符合 1, 部分符合 ½, 不符合 0) "
    "banded as in the MLPS assessment report template (优 ≥ 90, 良 ≥ 80, 中 ≥ 70, 差 below); "
    "the template's item weights and its high-risk analysis are not applied, and clauses still "
    "manual, in error or not covered are left out"
)
GRADE_RULE_ZH = (
    "仅供参考：已判定条款的符合率（符合计 1，部分符合计 ½，不符合计 0），按等级测评报告模板的分档"
    "（优 ≥ 90，良 ≥ 80，中 ≥ 70，其余为差）；未采用模板的指标权重与高风险分析，"
    "需人工、无法判定、无证据的条款不计入"
)


class ScopeError(ValueError):
    """The filters name something unknown or select nothing. The message is one line."""


@dataclass(frozen=True)
class Rules:
    evaluated_at: datetime
    """The instant the verdicts are judged at (now, or the `as_of` asked for)."""
    stale_after: timedelta = timedelta(minutes=60)
    """A host's newest report older than this gives `error` (`reports.stale_after_minutes`)."""
    scan_stale_after: timedelta = timedelta(days=7)
    """The same for scans (`reports.scan_stale_after_minutes`): they run daily or weekly."""


@dataclass(frozen=True)
class Evidence:
    """What the store holds for the aggregation, read by the caller."""

    hosts: Sequence[EvidenceHost]
    results: Iterable[EvidenceRow]
    """The results of the hosts' reports (`EvidenceResult` fields), in any order; read once."""
    missing: Sequence[MissingAgent] = ()
    attestations: Sequence[Attestation] = ()


@dataclass
class _Side:
    """The objects one kind of evidence (hosts or network) gives a clause."""

    objects: list[ObjectVerdict] = field(default_factory=list)
    evidence: list[EvidenceItem | AttestationEvidence] = field(default_factory=list)


def rollup(statuses: Iterable[str]) -> Status:
    """The status of a set of statuses (the rule in the module's docstring)."""
    seen = set(statuses)
    for status in _ROLLUP_ORDER:
        if status in seen:
            return status
    if "pass" in seen:
        return "pass"
    if "not_applicable" in seen:
        return "not_applicable"
    return "not_covered"


def conformity(status: Status, some_passed: bool) -> Conformity | None:
    if status == "pass":
        return "符合"
    if status == "not_applicable":
        return "不适用"
    if status == "fail":
        return "部分符合" if some_passed else "不符合"
    return None


def check_kinds() -> dict[str, CheckKind]:
    """Every registered check's kind: evidenced per host (agents) or per network object (a
    zones scan's checks and an SNMP inventory's device checks)."""
    from checks.device import device_registry
    from checks.net import network_registry
    from checks.registry import builtin_registry

    kinds = dict.fromkeys(builtin_registry().ids(), "host")
    kinds.update(dict.fromkeys(network_registry().ids(), "network"))
    kinds.update(dict.fromkeys(device_registry().ids(), "network"))
    return kinds


def catalog_key(catalog: Catalog) -> str:
    """The short name a catalog is asked for by: 'gbt22239-2019-l3' or 'mnds'."""
    return "mnds" if catalog.standard.id == "MNDS" else "gbt22239-2019-l3"


def aggregate(
    catalog: Catalog,
    evidence: Evidence,
    rules: Rules,
    kinds: Mapping[str, CheckKind],
    *,
    scope: Scope | None = None,
    zones: ZoneMap | None = None,
    generated_at: datetime | None = None,
) -> Compliance:
    """The compliance document of `catalog` over `evidence` (see the module's rules)."""
    return aggregate_many(
        [catalog], evidence, rules, kinds, scope=scope, zones=zones, generated_at=generated_at
    )[0]


def aggregate_many(
    catalogs: Sequence[Catalog],
    evidence: Evidence,
    rules: Rules,
    kinds: Mapping[str, CheckKind],
    *,
    scope: Scope | None = None,
    zones: ZoneMap | None = None,
    generated_at: datetime | None = None,
) -> list[Compliance]:
    """`aggregate` of each catalog over one join of the evidence: its results are read once and
    each becomes one evidence item, shared by every standard's documents."""
    joined = _Join(evidence, rules, kinds, scope or Scope(), zones or ZoneMap(()))
    return [_document(catalog, joined, evidence, rules, generated_at) for catalog in catalogs]


def _document(
    catalog: Catalog,
    joined: _Join,
    evidence: Evidence,
    rules: Rules,
    generated_at: datetime | None,
) -> Compliance:
    attested = _attestations(catalog, evidence.attestations, rules.evaluated_at)
    clauses = [
        _manual(catalog, clause, attested.get(clause.id))
        if clause.assessment == "manual" or not clause.checks
        else joined.clause(catalog, clause)
        for clause in catalog.clauses
    ]
    agents = joined.agents
    return Compliance(
        schema=SCHEMA,
        standard=catalog_key(catalog),
        standard_id=catalog.standard.id,
        title_zh=catalog.standard.title_zh,
        title_en=catalog.standard.title_en,
        catalog_edition=Edition(
            edition=catalog.standard.edition,
            sha256=hashlib.sha256(msgspec.json.encode(catalog)).hexdigest(),
        ),
        generated_at=rfc3339(generated_at or rules.evaluated_at),
        evaluated_at=rfc3339(rules.evaluated_at),
        scope=joined.scope,
        summary=_summary(
            clauses,
            len(agents),
            sum(h.host_id in joined.stale for h in agents),
            len(joined.missing),
            len(joined.scans),
        ),
        clauses=clauses,
        hosts=[_host_entry(h, h.host_id in joined.stale, joined.zones) for h in joined.chosen],
        missing=[MissingEntry(m.name, rfc3339(m.enrolled_at)) for m in joined.missing],
    )


class _Join:
    """The in-scope hosts and scans with their results grouped by report and check, joined
    clause by clause."""

    def __init__(
        self,
        evidence: Evidence,
        rules: Rules,
        kinds: Mapping[str, CheckKind],
        scope: Scope,
        zones: ZoneMap,
    ) -> None:
        self.kinds, self.scope, self.zones = kinds, scope, zones
        self.chosen = _in_scope(evidence.hosts, scope, zones)
        self.agents = [h for h in self.chosen if not h.is_scan]
        self.scans = [h for h in self.chosen if h.is_scan]
        filtered = scope.site is not None or scope.zone is not None or scope.host is not None
        self.missing = [] if filtered else list(evidence.missing)
        self.stale = {h.host_id for h in self.chosen if _stale(h, rules)}
        self.grouped = self._group(evidence.results)
        self._stale_reasons: dict[str, tuple[str, str]] = {}

    def _group(self, rows: Iterable[EvidenceRow]) -> dict[tuple[int, str], list[EvidenceItem]]:
        """Each in-scope report's results as evidence items, by (report, check): made once
        here, shared by every clause the check evidences."""
        # Per report, what each of its items repeats: looked up once per row, not computed.
        agent_reports = {
            h.report_pk: (h.host_id, h.report_id, rfc3339(h.received_at))
            for h in self.chosen
            if not h.is_scan
        }
        scans = {h.report_pk: h for h in self.chosen if h.is_scan}
        grouped: dict[tuple[int, str], list[EvidenceItem]] = defaultdict(list)
        raw, item = msgspec.Raw, EvidenceItem
        for pk, check_id, status, target, message, message_zh, evidence in rows:
            known = agent_reports.get(pk)
            if known is not None:
                name, report_id, received = known
            elif pk in scans:
                scan = scans[pk]
                name = _network_object(target, check_id, scan)[1]
                report_id, received = scan.report_id, rfc3339(scan.received_at)
            else:
                continue
            grouped[pk, check_id].append(
                item(
                    name,
                    check_id,
                    status,
                    message,
                    message_zh,
                    target,
                    raw(evidence),
                    report_id,
                    received,
                )
            )
        return grouped

    def clause(self, catalog: Catalog, clause: Clause) -> ClauseVerdict:
        sides = []
        if any(self.kinds.get(c) == "host" for c in clause.checks):
            sides.append(self.host_side(clause))
        if any(self.kinds.get(c) == "network" for c in clause.checks):
            sides.append(self.network_side(clause))
        unknown = [c for c in clause.checks if c not in self.kinds]
        if unknown:  # a catalog naming a check this collector does not know
            names = ", ".join(unknown)
            why = (f"unknown check {names}", f"未知检查项 {names}")
            problem = _placeholder("network", "catalog", "error", why)
            sides.append(_Side(objects=[problem]))
        objects = [o for side in sides for o in side.objects]
        status = rollup(o.status for o in objects)
        some = any(o.conformity in ("符合", "部分符合") for o in objects)
        evidence = [e for side in sides for e in side.evidence]
        return _verdict(catalog, clause, (status, conformity(status, some)), objects, evidence)

    def _stale_reason(self, host: EvidenceHost) -> tuple[str, str]:
        """Why a stale host's objects are errors (made once per host, said on every clause)."""
        said = self._stale_reasons.get(host.host_id)
        if said is None:
            at = rfc3339(host.generated_at)
            said = (f"stale: last report at {at}", f"证据过期：最近报告于 {at}")
            self._stale_reasons[host.host_id] = said
        return said

    def host_side(self, clause: Clause) -> _Side:
        side = _Side()
        checks = [c for c in clause.checks if self.kinds.get(c) == "host"]
        for host in self.agents:
            found = [r for c in checks for r in self.grouped.get((host.report_pk, c), ())]
            side.evidence.extend(found)
            names = ", ".join(checks)
            absent = (f"no result for {names}", f"无 {names} 的结果")
            stale = self._stale_reason(host) if host.host_id in self.stale else None
            side.objects.append(
                _judged("host", host.host_id, host.hostname, found, stale=stale, absent=absent)
            )
        for agent in self.missing:
            at = rfc3339(agent.enrolled_at)
            why = (f"missing: enrolled at {at}, never reported", f"缺失：{at} 注册，从未报告")
            side.objects.append(_placeholder("agent", agent.name, "error", why))
        if not side.objects:
            why = ("no agent report in scope", "范围内无代理报告")
            side.objects.append(_placeholder("hosts", "hosts", "not_covered", why))
        return side

    def network_side(self, clause: Clause) -> _Side:
        side = _Side()
        checks = [c for c in clause.checks if self.kinds.get(c) == "network"]
        per_object: dict[tuple[ObjectKind, str], list[EvidenceItem]] = {}
        scan_of: dict[tuple[ObjectKind, str], EvidenceHost] = {}
        zone = self.scope.zone
        for scan in self.scans:
            for check_id in checks:
                for result in self.grouped.get((scan.report_pk, check_id), ()):
                    key = _network_object(result.target, check_id, scan)
                    if zone is not None and zone not in self.zones.of_object(*key):
                        continue
                    per_object.setdefault(key, []).append(result)
                    scan_of.setdefault(key, scan)
        if not per_object and zone is None:
            # No scan answered these checks: each scan stands for the evidence it lacks. One
            # that did answer excuses the others, as zones scans and SNMP inventories each
            # answer only their own checks.
            for scan in self.scans:
                per_object.setdefault(("scan", scan.hostname), [])
                scan_of.setdefault(("scan", scan.hostname), scan)
        for (kind, name), found in per_object.items():
            scan = scan_of[kind, name]
            side.evidence.extend(found)
            stale = None
            if scan.host_id in self.stale:
                at = rfc3339(scan.generated_at)
                stale = (f"stale: scanned at {at}", f"证据过期：扫描于 {at}")
            names = ", ".join(checks)
            absent = (f"the scan has no result for {names}", f"扫描无 {names} 的结果")
            side.objects.append(_judged(kind, name, name, found, stale=stale, absent=absent))
        if not side.objects:
            why = (
                ("no scan in scope", "范围内无网络扫描")
                if not self.scans
                else ("no scanned object in the zone", "该区域无扫描对象")
            )
            side.objects.append(_placeholder("network", "network", "not_covered", why))
        return side


def _judged(
    kind: ObjectKind,
    object_id: str,
    name: str,
    found: Sequence[EvidenceItem],
    *,
    stale: tuple[str, str] | None,
    absent: tuple[str, str],
) -> ObjectVerdict:
    """An object's verdict from its results: `error` when its evidence is stale, `not_covered`
    when it has none (saying why, in both languages), else its results rolled up."""
    statuses = [r.status for r in found]
    reason: tuple[str, str] | None = None
    if stale is not None:
        status: Status = "error"
        reason = stale
    elif not found:
        status, reason = "not_covered", absent
    else:
        status = rollup(statuses)
    return ObjectVerdict(
        kind=kind,
        id=object_id,
        name=name,
        status=status,
        conformity=conformity(status, "pass" in statuses),
        reason=None if reason is None else reason[0],
        reason_zh=None if reason is None else reason[1],
    )


def _placeholder(
    kind: ObjectKind, name: str, status: Status, reason: tuple[str, str]
) -> ObjectVerdict:
    """An object standing for evidence that should be there and is not."""
    return ObjectVerdict(
        kind=kind,
        id=name,
        name=name,
        status=status,
        conformity=None,
        reason=reason[0],
        reason_zh=reason[1],
    )


def _stale(host: EvidenceHost, rules: Rules) -> bool:
    limit = rules.scan_stale_after if host.is_scan else rules.stale_after
    return host.generated_at < rules.evaluated_at - limit


def _in_scope(hosts: Sequence[EvidenceHost], scope: Scope, zones: ZoneMap) -> list[EvidenceHost]:
    """The hosts the filters select, with every scan (scans are filtered object by object)."""
    if scope.zone is not None and scope.zone not in zones.names:
        known = ", ".join(sorted(zones.names)) or "none: the settings list no zones file"
        raise ScopeError(f"--zone: no zone named {scope.zone!r} (known zones: {known})")
    chosen = []
    for host in hosts:
        if host.is_scan:
            if scope.host is None:
                chosen.append(host)
            continue
        if scope.site is not None and host.site != scope.site:
            continue
        if scope.host is not None and scope.host not in (host.host_id, host.hostname):
            continue
        if scope.zone is not None and scope.zone not in zones.of_addresses(host.addresses):
            continue
        chosen.append(host)
    if (scope.site or scope.host) and not any(not h.is_scan for h in chosen):
        said = ", ".join(f"--{k} {v}" for k, v in (("site", scope.site), ("host", scope.host)) if v)
        raise ScopeError(f"no host matches {said}")
    return chosen


def _network_object(
    target: str | None, check_id: str, scan: EvidenceHost
) -> tuple[ObjectKind, str]:
    """The network object a scan's result is about: its kind and name."""
    if target is None:
        return "scan", scan.hostname
    if target == "coverage":
        return "network", "ZTNA coverage"
    return _NETWORK_KINDS.get(check_id, "network"), target


def _attestations(
    catalog: Catalog, attestations: Sequence[Attestation], moment: datetime
) -> dict[str, Attestation]:
    """Per clause of this catalog, the newest attestation valid at `moment`."""
    newest: dict[str, Attestation] = {}
    for attestation in attestations:
        if attestation.standard != catalog.standard.id or not attestation.valid_at(moment):
            continue
        held = newest.get(attestation.clause)
        if held is None or (attestation.created_at, attestation.id) > (held.created_at, held.id):
            newest[attestation.clause] = attestation
    return newest


def attestation_out(attestation: Attestation) -> AttestationOut:
    return AttestationOut(
        id=attestation.id,
        status=attestation.status,
        note=attestation.note,
        by=attestation.created_by,
        at=rfc3339(attestation.created_at),
        valid_until=None if attestation.valid_until is None else rfc3339(attestation.valid_until),
        file_name=attestation.file_name,
        file_sha256=attestation.file_sha256,
    )


def _manual(catalog: Catalog, clause: Clause, attestation: Attestation | None) -> ClauseVerdict:
    if attestation is None:
        return _verdict(catalog, clause, ("manual", None), [], [])
    status: Status = attestation.status
    verdict = ObjectVerdict(
        kind="attestation",
        id=attestation.id,
        name=attestation.created_by,
        status=status,
        conformity=conformity(status, False),
        reason="a person's statement",
        reason_zh="人工声明",
    )
    out = AttestationEvidence(object=attestation.id, attestation=attestation_out(attestation))
    return _verdict(catalog, clause, (status, conformity(status, False)), [verdict], [out])


def _verdict(
    catalog: Catalog,
    clause: Clause,
    decided: tuple[Status, Conformity | None],
    objects: list[ObjectVerdict],
    evidence: list[EvidenceItem | AttestationEvidence],
) -> ClauseVerdict:
    return ClauseVerdict(
        id=clause.id,
        qualified=catalog.qualified(clause),
        family=clause.family,
        control=clause.control,
        text_zh=clause.text_zh,
        title_en=clause.title_en,
        provenance=clause.provenance,
        assessment=clause.assessment,
        obligation=clause.obligation,
        checks=clause.checks,
        note=clause.note,
        status=decided[0],
        conformity=decided[1],
        objects=objects,
        evidence=evidence,
    )


def counts(verdicts: Sequence[ClauseVerdict]) -> Counts:
    by_status = Counter(v.status for v in verdicts)
    by_conformity = Counter(v.conformity for v in verdicts if v.conformity is not None)
    decided = by_conformity["符合"] + by_conformity["部分符合"] + by_conformity["不符合"]
    rate = (
        None
        if decided == 0
        else round(100 * (by_conformity["符合"] + by_conformity["部分符合"] / 2) / decided, 1)
    )
    return Counts(
        by_status={s: by_status[s] for s in STATUSES},
        by_conformity={c: by_conformity[c] for c in CONFORMITIES},
        rate=rate,
    )


def _grade(total: Counts) -> Grade:
    undecided = sum(total.by_status[s] for s in ("manual", "error", "not_covered"))
    score = total.rate
    grade: Literal["优", "良", "中", "差"] | None = None
    if score is not None:
        grade = "优" if score >= 90 else "良" if score >= 80 else "中" if score >= 70 else "差"
    return Grade(
        grade=grade, score=score, rule=GRADE_RULE, rule_zh=GRADE_RULE_ZH, undecided=undecided
    )


def _summary(
    clauses: list[ClauseVerdict], hosts: int, stale: int, missing: int, scans: int
) -> Summary:
    families: dict[str, list[ClauseVerdict]] = {}
    for verdict in clauses:
        families.setdefault(verdict.family, []).append(verdict)
    total = counts(clauses)
    return Summary(
        clauses=total,
        families=[FamilyCounts(name, len(vs), counts(vs)) for name, vs in families.items()],
        grade=_grade(total),
        hosts=hosts,
        stale_hosts=stale,
        missing_agents=missing,
        scans=scans,
    )


def _host_entry(host: EvidenceHost, stale: bool, zones: ZoneMap) -> HostEntry:
    return HostEntry(
        id=host.host_id,
        hostname=host.hostname,
        agent=host.agent,
        site=host.site,
        zones=tuple(sorted(zones.of_addresses(host.addresses))),
        addresses=host.addresses,
        report_id=host.report_id,
        generated_at=rfc3339(host.generated_at),
        received_at=rfc3339(host.received_at),
        stale=stale,
    )
