"""ZTNA coverage: a critical system is covered when it is dark from every user and internet
zone (no answer on its ports, measured from inside each) AND published through its ZTNA gateway,
which refuses a client without credentials (nginx: 400 "No required SSL certificate was sent";
401/403; a failed handshake) — and, when the zones file gives a client certificate, answers with
it. One result per system, plus the overall coverage: covered systems / critical systems.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import (
    REACHABLE_STATES,
    CriticalSystem,
    GatewayProbe,
    NetFacts,
    PortObservation,
)
from checks.model import (
    Outcome,
    Severity,
    Status,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.net.matrix import cut, lines, pair
from checks.registry import check

REFUSALS = (400, 401, 403, 407, 495, 496)
"""Statuses meaning "no credentials, no entry" (495/496: nginx's certificate errors)."""
_CERT_TEXT = ("certificate", "ssl", "unauthorized", "forbidden", "authentication")


def _gateways(facts: NetFacts) -> dict[str, GatewayProbe]:
    gateways: tuple[GatewayProbe, ...] = require(facts.gateways, tuple)
    return {g.system: g for g in gateways}


def _direct(facts: NetFacts, system: CriticalSystem) -> tuple[list[PortObservation], list[str]]:
    """Direct answers from user and internet zones, and the zones that could not be measured."""
    answers: list[PortObservation] = []
    unknown: list[str] = []
    for zone in facts.zones:
        if zone.name == system.zone or not (zone.users or zone.internet):
            continue
        measured = pair(facts, zone.name, system.zone)
        for cell in measured.cells:
            if cell.spec not in system.ports:
                continue
            answers += [
                o
                for o in cell.observations
                if o.address == system.address and o.state in REACHABLE_STATES
            ]
        problem = measured.incomplete
        if problem is not None:
            unknown.append(f"{zone.name}: {problem}")
    return answers, unknown


def _refusal(gateway: GatewayProbe) -> str | None:
    """How the gateway refused the anonymous client, or None when it let it in."""
    if not gateway.handshake:
        return f"TLS handshake refused ({gateway.handshake_error or 'no detail'})"
    anonymous = gateway.anonymous
    if anonymous is None or anonymous.status is None:
        error = anonymous.error if anonymous else gateway.error
        return f"connection ended without an answer ({error})"
    if anonymous.status in REFUSALS:
        text = anonymous.body.lower()
        detail = next((w for w in _CERT_TEXT if w in text), None)
        return f"{anonymous.status} {anonymous.reason}" + (
            f" ({_title(anonymous.body)})" if detail else ""
        )
    return None


def _title(body: str) -> str:
    start, end = body.find("<title>"), body.find("</title>")
    if 0 <= start < end:
        return body[start + 7 : end].strip()
    return body.strip().splitlines()[0][:80] if body.strip() else ""


@check(
    "net.ztna_coverage",
    title_en="Critical systems are reachable only through a ZTNA gateway",
    title_zh="关键业务系统仅经零信任网关（ZTNA）访问",
    severity=Severity.HIGH,
    needs=("matrix", "gateways"),
    params={"min_coverage_percent": 100.0},
)
def ztna_coverage(facts: NetFacts, min_coverage_percent: float) -> Iterator[Outcome]:
    systems = facts.critical_systems
    if not systems:
        yield not_applicable("the zones file lists no critical system")
        return
    gateways = _gateways(facts)
    outcomes: list[Outcome] = []
    for system in systems:
        outcomes.append(_system(facts, system, gateways.get(system.name)))
    covered = [o for o in outcomes if o.status is Status.PASS]
    coverage = round(100.0 * len(covered) / len(systems), 1)
    for outcome in outcomes:
        yield Outcome(
            outcome.status,
            outcome.message,
            {**outcome.evidence, "coverage_percent": coverage},
            outcome.target,
        )
    not_covered = [str(o.target) for o in outcomes if o.status is Status.FAIL]
    unknown = [str(o.target) for o in outcomes if o.status is Status.ERROR]
    summary = {
        "coverage_percent": coverage,
        "covered": [str(o.target) for o in covered],
        "not_covered": not_covered,
        "unknown": unknown,
        "min_coverage_percent": min_coverage_percent,
    }
    message = (
        f"ZTNA coverage {coverage:g}% ({len(covered)} of {len(systems)} critical systems dark "
        f"from user and internet zones and published through their gateway)"
    )
    if coverage >= min_coverage_percent:
        yield passed(message, summary, target="coverage")
    elif not_covered:
        yield failed(f"{message}; not covered: {', '.join(not_covered)}", summary,
                     target="coverage")  # fmt: skip
    else:
        yield errored(f"{message}; unknown: {', '.join(unknown)}", summary,
                      target="coverage")  # fmt: skip


def _system(  # noqa: PLR0911 — one return per verdict, in the order they are decided
    facts: NetFacts, system: CriticalSystem, gateway: GatewayProbe | None
) -> Outcome:
    target = system.name
    direct, unknown = _direct(facts, system)
    evidence: dict[str, object] = {
        "address": system.address,
        "ports": list(system.ports),
        "zone": system.zone,
        "gateway": system.ztna_gateway,
        "direct": cut(lines(direct)),
        "unmeasured_zones": unknown,
    }
    if direct:
        return failed(
            f"{target}: reachable directly, bypassing the ZTNA gateway: {direct[0].line()}"
            + (f" (+{len(direct) - 1} more)" if len(direct) > 1 else ""),
            evidence,
            target=target,
        )
    if system.ztna_gateway is None:
        return failed(f"{target}: not published through a ZTNA gateway (no ztna_gateway)",
                      evidence, target=target)  # fmt: skip
    if gateway is None:
        return errored(f"{target}: the gateway {system.ztna_gateway} was not probed", evidence,
                       target=target)  # fmt: skip
    evidence["gateway_vantage"] = gateway.vantage
    evidence["gateway_tls"] = gateway.tls_version
    if gateway.vantage is None:
        return failed(
            f"{target}: the gateway {system.ztna_gateway} answers no user or internet zone: "
            f"{gateway.error}",
            evidence,
            target=target,
        )
    if gateway.error and gateway.anonymous is None:
        return errored(f"{target}: gateway probe failed: {gateway.error}", evidence,
                       target=target)  # fmt: skip
    refusal = _refusal(gateway)
    if gateway.anonymous is not None:
        evidence["without_credentials"] = gateway.anonymous.summary()
    if refusal is None:
        let_in = gateway.anonymous.summary() if gateway.anonymous else "?"
        return failed(
            f"{target}: the gateway {system.ztna_gateway} lets a client without credentials "
            f"through ({let_in})",
            evidence,
            target=target,
        )
    evidence["refusal"] = refusal
    published = "not verified (no client certificate in the zones file)"
    if gateway.authenticated is not None:
        answer = gateway.authenticated
        evidence["with_credentials"] = answer.summary()
        if answer.status is None or answer.status >= 400:
            return failed(
                f"{target}: the gateway refuses the configured client certificate too "
                f"({answer.summary()}): the system is not published through it",
                evidence,
                target=target,
            )
        published = f"with a client certificate: {answer.summary()}"
    if unknown:
        return errored(
            f"{target}: could not measure every user and internet zone: {'; '.join(unknown)}",
            evidence,
            target=target,
        )
    return passed(
        f"{target}: dark from every user and internet zone; the gateway {system.ztna_gateway} "
        f"refuses a client without credentials ({refusal}); published {published}",
        evidence,
        target=target,
    )
