"""Segmentation against the zones file's policy, and isolation of critical zones from the
internet. Pure functions of `NetFacts`: one result per zone pair.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import NetFacts
from checks.model import (
    Outcome,
    Severity,
    errored,
    failed,
    not_applicable,
    passed,
)
from checks.net.matrix import Pair, cut, lines, pairs
from checks.registry import check


def _allowed(facts: NetFacts, source: str, target: str) -> list[str]:
    return sorted(
        {
            f"{rule.proto}/{rule.port}"
            for rule in facts.policy
            if rule.source == source and rule.target == target
        }
    )


def _note(pair: Pair) -> str:
    return f" (not scanned: {'; '.join(pair.unscanned)})" if pair.unscanned else ""


@check(
    "net.segmentation",
    title_en="Only the ports the zone policy allows are open between zones",
    title_zh="区域间仅开放访问控制策略允许的端口",
    severity=Severity.HIGH,
    needs=("matrix",),
)
def segmentation(facts: NetFacts) -> Iterator[Outcome]:
    for pair in pairs(facts):
        target = pair.name
        if not pair.measured:
            yield not_applicable(
                f"{target}: zone {pair.source.name} has no vantage, so nothing was sent from it",
                {"from": pair.source.name, "to": pair.target.name},
                target=target,
            )
            continue
        allowed = _allowed(facts, pair.source.name, pair.target.name)
        opened = [o for o in pair.observations() if o.state == "open"]
        violations = [o for o in opened if o.spec not in allowed]
        evidence = {
            "from": pair.source.name,
            "to": pair.target.name,
            "allowed": allowed,
            "ports_scanned": [c.spec for c in pair.cells],
            "probes": pair.probes,
            "open": cut(lines(opened)),
            "unscanned": list(pair.unscanned),
            "vantage": pair.source.vantage,
        }
        if violations:
            ports = sorted({v.spec for v in violations})
            yield failed(
                f"{target}: {', '.join(ports)} open but not allowed by the policy "
                f"(allowed: {', '.join(allowed) or 'nothing'}); {violations[0].line()}",
                {**evidence, "violations": cut(lines(violations))},
                target=target,
            )
            continue
        problem = pair.incomplete
        if problem is not None:
            yield errored(f"{target}: could not measure completely: {problem}", evidence,
                          target=target)  # fmt: skip
            continue
        seen = sorted({o.spec for o in opened})
        yield passed(
            f"{target}: no port outside the policy is open "
            f"(open: {', '.join(seen) or 'none'}; allowed: {', '.join(allowed) or 'nothing'}; "
            f"{pair.probes} probes){_note(pair)}",
            evidence,
            target=target,
        )


@check(
    "net.internet_isolation",
    title_en="Critical zones are unreachable from the internet and have no path out to it",
    title_zh="关键业务区域与互联网之间不可互访",
    severity=Severity.CRITICAL,
    needs=("matrix",),
)
def internet_isolation(facts: NetFacts) -> Iterator[Outcome]:
    critical = [z for z in facts.zones if z.critical]
    internet = [z for z in facts.zones if z.internet]
    if not critical or not internet:
        missing = "critical" if not critical else "internet"
        yield not_applicable(f"no zone is marked {missing} in the zones file")
        return
    by_name = {p.name: p for p in pairs(facts)}
    for zone in critical:
        for outside in internet:
            target = f"{zone.name}<->{outside.name}"
            inbound = by_name[f"{outside.name}->{zone.name}"]
            outbound = by_name[f"{zone.name}->{outside.name}"]
            answers_in, answers_out = inbound.reachable(), outbound.reachable()
            evidence = {
                "critical_zone": zone.name,
                "internet_zone": outside.name,
                "inbound": cut(lines(answers_in)),
                "outbound": cut(lines(answers_out)),
                "inbound_probes": inbound.probes,
                "outbound_probes": outbound.probes,
            }
            if answers_in or answers_out:
                found = [*answers_in, *answers_out]
                way = (
                    "is reachable from"
                    if answers_in and not answers_out
                    else "has a path out to"
                    if answers_out and not answers_in
                    else "is reachable from and has a path out to"
                )
                yield failed(
                    f"{zone.name} {way} {outside.name}: {found[0].line()}"
                    + (f" (+{len(found) - 1} more)" if len(found) > 1 else ""),
                    evidence,
                    target=target,
                )
                continue
            problems = [
                f"{direction}: {problem}"
                for direction, problem in (
                    ("inbound", inbound.incomplete),
                    ("outbound", outbound.incomplete),
                )
                if problem is not None
            ]
            if problems:
                yield errored(f"{target}: could not measure: {'; '.join(problems)}", evidence,
                              target=target)  # fmt: skip
                continue
            yield passed(
                f"{zone.name} and {outside.name} do not reach each other: no answer to "
                f"{inbound.probes} probes in and {outbound.probes} probes out",
                evidence,
                target=target,
            )
