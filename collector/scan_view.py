"""What one stored scan says about the network, read back from its `medsec.report/v1` document:
the services each zone reaches, those the zones file's policy does not allow, whether each web
application has a working WAF in front of it, whether each critical system is covered by its ZTNA
gateway, and the lowest TLS version each TLS service accepts. Comparing two scans
(`collector.scan_diff`) and raising alerts read scans through this one view.

The view is read from what the scanner stored (`collector.scan.cli.results_to_report`): the
reachability matrix of `inventory.network` (every answer, address by address) and the results of
the network checks with their evidence. "Reachable" is decided as the checks decide it: an answer
only the host itself gives (`checks.facts.network.REACHABLE_STATES`: open or closed), after the
answers a rejecting device sent in the hosts' place are told apart (`checks.net.matrix.pairs`).
Whatever the report lacks, or a check could not decide, is `None` (or an unmeasured zone pair)
and said in `errors`: unknown never reads as "no WAF" or "closed".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, cast

from checks.facts.network import (
    MatrixCell,
    NetFacts,
    PortObservation,
    Proto,
    RunStatus,
    ScanKind,
    VantageRun,
    ZoneFacts,
)
from checks.net.matrix import Pair, pairs
from collector.models import ScanRun

SEGMENTATION, WAF, ZTNA, TLS_FLOOR = (
    "net.segmentation",
    "net.waf",
    "net.ztna_coverage",
    "net.tls_floor",
)
TLS_ORDER = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""Protocol versions from oldest to newest, as the TLS probes name them."""
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, order=True)
class OpenPath:
    """One service a zone reaches: an address of another zone answered on a port from the
    source zone's vantage with an answer only the host gives (open, or closed: a reset or a
    port-unreachable means the packet got through, though nothing listens)."""

    source: str
    target: str
    address: str
    proto: str
    port: int
    state: str = field(default="open", compare=False)
    """nmap's state (open or closed); not part of the path's identity, so a service that stops
    listening behind an open path is a change of state, not a path closed and another opened."""

    @property
    def spec(self) -> str:
        return f"{self.proto}/{self.port}"

    @property
    def pair(self) -> str:
        return f"{self.source}->{self.target}"

    def line(self) -> str:
        return f"{self.source} -> {self.target} {self.address} {self.spec}"


@dataclass(frozen=True)
class ScanView:
    """One completed scan as a set of comparable facts."""

    scan_id: str
    zones: str
    finished_at: datetime | None
    report_id: str
    paths: frozenset[OpenPath]
    """Every (source zone -> address proto/port) the matrix shows reachable."""
    violations: frozenset[OpenPath]
    """The open ones the zones file's policy does not allow (the `allowed` ports of each zone
    pair's net.segmentation result)."""
    wafs: Mapping[str, bool | None]
    """Web application -> a WAF blocks attacks in front of it (net.waf passed: True; failed:
    False); None: not required (`require_waf: false`) or not decided (see `errors`)."""
    ztna: Mapping[str, bool | None]
    """Critical system -> covered by its ZTNA gateway (net.ztna_coverage passed: True; failed:
    False); None: not decided (see `errors`)."""
    tls_floors: Mapping[str, str | None]
    """"address:port" -> the oldest TLS version it accepts; None: not decided (see `errors`)."""
    errors: tuple[str, ...]
    """What could not be read or decided, one line each (never silently dropped)."""
    unmeasured: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Zone pairs ("office->his") whose reachability was not measured completely, with why: a
    path missing there is not known to be closed."""
    ztna_coverage_percent: float | None = None
    """Covered critical systems / critical systems, as net.ztna_coverage computed it."""
    zones_file: str | None = None
    """The zones file's path as the scanner read it."""
    generated_at: str | None = None
    """When the scanner built the report (RFC 3339)."""
    state: str | None = None
    """The scan's state (passed or findings for a stored one)."""


def view_of(scan: ScanRun, report: Mapping[str, Any]) -> ScanView:
    """The view of `scan` from its stored report document."""
    errors: list[str] = []
    results = _results(report, errors)
    inventory = report.get("inventory")
    found_network = inventory.get("network") if isinstance(inventory, Mapping) else None
    network: Mapping[str, Any] = found_network if isinstance(found_network, Mapping) else _EMPTY
    if not network:
        errors.append("the report has no network inventory (inventory.network): no paths read")
    segmentation = _by_target(results.get(SEGMENTATION, []), SEGMENTATION, errors)
    paths, unmeasured, found = _paths(network, segmentation, errors)
    violations = _violations(found, segmentation, errors)
    wafs = _verdicts(results.get(WAF, []), WAF, errors, none_when_not_applicable=True)
    ztna_results = [r for r in results.get(ZTNA, []) if r.get("target") != "coverage"]
    ztna = _verdicts(ztna_results, ZTNA, errors, none_when_not_applicable=False)
    coverage = next((r for r in results.get(ZTNA, []) if r.get("target") == "coverage"), None)
    percent = _evidence(coverage).get("coverage_percent") if coverage else None
    floors = _tls_floors(results.get(TLS_FLOOR, []), errors)
    return ScanView(
        scan_id=scan.id,
        zones=scan.zones,
        finished_at=scan.finished_at,
        report_id=scan.report_id or str(report.get("report_id", "")),
        paths=frozenset(paths),
        violations=frozenset(violations),
        wafs=MappingProxyType(wafs),
        ztna=MappingProxyType(ztna),
        tls_floors=MappingProxyType(floors),
        errors=tuple(errors),
        unmeasured=MappingProxyType(unmeasured),
        ztna_coverage_percent=float(percent) if isinstance(percent, int | float) else None,
        zones_file=str(network["zones_file"]) if "zones_file" in network else None,
        generated_at=str(report["generated_at"]) if "generated_at" in report else None,
        state=scan.state.value,
    )


# --- reading the document ----------------------------------------------------------------------


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)


def _results(report: Mapping[str, Any], errors: list[str]) -> dict[str, list[Mapping[str, Any]]]:
    """The results by check id."""
    items = report.get("results")
    if not isinstance(items, list):
        errors.append("the report has no results: no check's verdict read")
        return {}
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        if _is_map(item) and isinstance(item.get("check_id"), str):
            grouped.setdefault(item["check_id"], []).append(item)
    return grouped


def _evidence(result: Mapping[str, Any]) -> Mapping[str, Any]:
    evidence = result.get("evidence")
    return evidence if isinstance(evidence, Mapping) else _EMPTY


def _said(result: Mapping[str, Any]) -> str:
    """A result in one line: `net.waf portal: error: <message>`."""
    target = result.get("target")
    where = f" {target}" if target else ""
    return f"{result.get('check_id')}{where}: {result.get('status')}: {result.get('message', '')}"


def _by_target(
    results: Iterable[Mapping[str, Any]], check_id: str, errors: list[str]
) -> dict[str, Mapping[str, Any]]:
    """A check's results by target; a result with no target that is an error (the check as a
    whole could not run) is said in `errors`."""
    found: dict[str, Mapping[str, Any]] = {}
    for result in results:
        target = result.get("target")
        if isinstance(target, str):
            found[target] = result
        elif result.get("status") == "error":
            errors.append(_said(result))
    return found


# --- paths and violations ----------------------------------------------------------------------


def _paths(
    network: Mapping[str, Any],
    segmentation: Mapping[str, Mapping[str, Any]],
    errors: list[str],
) -> tuple[list[OpenPath], dict[str, str], list[Pair]]:
    """Every reachable path, the zone pairs not measured completely, and the pairs read."""
    if not network:
        return [], {}, []
    try:
        facts = _facts(network)
        found = pairs(facts)
    except (KeyError, TypeError, ValueError) as exc:  # a report of another shape than ours
        errors.append(
            f"the report's reachability matrix cannot be read: {type(exc).__name__}: {exc}"
        )
        return [], {}, []
    paths: list[OpenPath] = []
    unmeasured: dict[str, str] = {}
    for pair in found:
        paths += [_path(o) for o in pair.reachable()]
        why = _unmeasured(pair, segmentation.get(pair.name))
        if why is not None:
            unmeasured[pair.name] = why
    return paths, unmeasured, found


def _unmeasured(pair: Pair, result: Mapping[str, Any] | None) -> str | None:
    """Why a pair's reachability is not known completely, or None. net.segmentation judged
    that with every fact of the scan (the report keeps only the answering ports' cells): its
    pass means measured; its error says why not; its fail (an open port outside the policy)
    still leaves a vantage that failed or hosts left unfinished to check here."""
    if pair.source.vantage is None:
        return f"zone {pair.source.name} has no vantage"
    if result is None:
        return f"{SEGMENTATION} gave no result for {pair.name}"
    status = result.get("status")
    if status == "pass":
        return None
    if status == "fail":
        problem = pair.incomplete
        if problem is None or not pair.cells:  # "no result": cells of silent ports are not kept
            return None
        return problem.en
    said = str(result.get("message") or status)
    return said.removeprefix(f"{pair.name}: ")


def _violations(
    found: Sequence[Pair], segmentation: Mapping[str, Mapping[str, Any]], errors: list[str]
) -> list[OpenPath]:
    """Open paths on ports the pair's policy does not allow (what net.segmentation fails on,
    every one, where its evidence lists only the first ten)."""
    violations: list[OpenPath] = []
    for pair in found:
        opened = [o for o in pair.observations() if o.state == "open"]
        result = segmentation.get(pair.name)
        allowed = _evidence(result).get("allowed") if result is not None else None
        if not isinstance(allowed, list):
            if opened:
                errors.append(
                    f"{SEGMENTATION} {pair.name}: the policy's allowed ports are not in the "
                    f"report, so {len(opened)} open ports cannot be judged"
                )
            continue
        bad = [_path(o) for o in opened if o.spec not in allowed]
        violations += bad
        if result is not None and (result.get("status") == "fail") != bool(bad):
            errors.append(
                f"{SEGMENTATION} {pair.name} says {result.get('status')} but the matrix shows "
                f"{len(bad)} open ports outside {allowed}"
            )
    return violations


def _path(observation: PortObservation) -> OpenPath:
    return OpenPath(
        observation.source,
        observation.target,
        observation.address,
        observation.proto,
        observation.port,
        observation.state,
    )


def _facts(network: Mapping[str, Any]) -> NetFacts:
    """The network facts the reachability matrix needs, rebuilt from the inventory."""
    zones = tuple(
        ZoneFacts(
            name=str(z["name"]),
            cidrs=tuple(str(c) for c in z["cidrs"]),
            critical=bool(z["critical"]),
            internet=bool(z["internet"]),
            users=bool(z["users"]),
            vantage=None if z.get("vantage") is None else str(z["vantage"]),
        )
        for z in network["zones"]
    )
    runs = tuple(
        VantageRun(
            zone=str(r["zone"]),
            vantage=str(r["vantage"]),
            privileged=r.get("privileged"),
            commands=tuple(r.get("commands") or ()),
            status=cast("RunStatus", str(r["status"])),
            message=str(r.get("message", "")),
            seconds=float(r.get("seconds") or 0.0),
            targets=tuple(r.get("targets") or ()),
            unfinished_hosts=tuple(r.get("unfinished_hosts") or ()),
            unscanned=tuple(r.get("unscanned") or ()),
        )
        for r in network.get("runs") or ()
    )
    return NetFacts(
        zones=zones,
        policy=(),
        ports=tuple(network.get("ports") or ()),
        runs=runs,
        matrix=tuple(_cell(row) for row in network.get("matrix") or ()),
        ack=(),
        web_apps=(),
        critical_systems=(),
        gateways=(),
        tls=(),
    )


def _cell(row: Mapping[str, Any]) -> MatrixCell:
    proto, _, number = str(row["port"]).partition("/")
    if proto not in {"tcp", "udp"}:
        raise ValueError(f"port {row['port']!r} is not tcp/N or udp/N")
    port = int(number)
    source, target = str(row["from"]), str(row["to"])
    vantage, kind = str(row["vantage"]), cast("ScanKind", str(row["scan"]))
    return MatrixCell(
        source=source,
        target=target,
        proto=cast("Proto", proto),
        port=port,
        vantage=vantage,
        scan=kind,
        probed=int(row["probed"]),
        silent=int(row["no_answer"]),
        observations=tuple(
            PortObservation(
                source=source,
                target=target,
                address=str(a["address"]),
                proto=cast("Proto", proto),
                port=port,
                state=str(a["state"]),
                reason=str(a["reason"]),
                reason_ttl=int(a.get("reason_ttl") or 0),
                vantage=vantage,
                scan=kind,
            )
            for a in row["answers"]
        ),
    )


# --- WAF, ZTNA and TLS verdicts ----------------------------------------------------------------


def _verdicts(
    results: Iterable[Mapping[str, Any]],
    check_id: str,
    errors: list[str],
    *,
    none_when_not_applicable: bool,
) -> dict[str, bool | None]:
    """Target -> pass True / fail False / otherwise None (an error said in `errors`)."""
    found: dict[str, bool | None] = {}
    for target, result in _by_target(results, check_id, errors).items():
        status = result.get("status")
        if status == "pass":
            found[target] = True
        elif status == "fail":
            found[target] = False
        else:
            found[target] = None
            if not (status == "not_applicable" and none_when_not_applicable):
                errors.append(_said(result))
    return found


def _tls_floors(results: Iterable[Mapping[str, Any]], errors: list[str]) -> dict[str, str | None]:
    """Endpoint -> the oldest version it accepted, where every older one was refused."""
    floors: dict[str, str | None] = {}
    for target, result in _by_target(results, TLS_FLOOR, errors).items():
        if result.get("status") == "not_applicable":
            continue
        versions = _evidence(result).get("versions")
        if not isinstance(versions, Mapping):
            floors[target] = None
            errors.append(f"{TLS_FLOOR} {target}: the report lists no version outcomes")
            continue
        floor, why = tls_floor(
            {str(k): str(v).partition(":")[0].strip() for k, v in versions.items()}
        )
        floors[target] = floor
        if why is not None:
            errors.append(f"{TLS_FLOOR} {target}: {why}")
    return floors


def tls_floor(outcomes: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The oldest version accepted (`outcomes`: version -> accepted, refused or untested), and
    None with why when an older version's outcome is unknown or none was accepted."""
    for version in TLS_ORDER:
        outcome = outcomes.get(version)
        if outcome == "accepted":
            return version, None
        if outcome in {"untested", None} and version != "SSLv2":
            # SSLv2 is never offered; any other version left unknown hides the floor.
            state = "not offered" if outcome is None else "untested"
            return None, f"floor unknown: {version} {state}"
    return None, "no version was accepted"


__all__ = ["TLS_ORDER", "OpenPath", "ScanView", "tls_floor", "view_of"]
