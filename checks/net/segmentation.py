"""Segmentation against the zones file's policy, and isolation of critical zones from the
internet. Pure functions of `NetFacts`: one result per zone pair, whose message says how many
ports were probed (nmap's top 1,000 TCP ports and more by default; `scan.ports`). Answers a
device in between sent in the hosts' place (`matrix.device_answers`) do not make a zone reachable.
"""

from __future__ import annotations

from collections.abc import Iterator

from checks.facts.network import NetFacts
from checks.model import (
    Msg,
    Outcome,
    Severity,
    errored,
    failed,
    not_applicable,
    passed,
)
from checks.net.matrix import Pair, cut, lines, pairs
from checks.net.wording import first_of, joined, observed
from checks.registry import check


def _allowed(facts: NetFacts, source: str, target: str) -> list[str]:
    return sorted(
        {
            f"{rule.proto}/{rule.port}"
            for rule in facts.policy
            if rule.source == source and rule.target == target
        }
    )


def _note(pair: Pair) -> Msg:
    if not pair.unscanned:
        return Msg("", "")
    return Msg(
        f" (not scanned: {'; '.join(pair.unscanned)})", f"（未扫描：{'；'.join(pair.unscanned)}）"
    )


def _listed(items: list[str], none_en: str) -> Msg:
    return Msg(", ".join(items) or none_en, "、".join(items) or "无")


def _coverage(facts: NetFacts, pair: Pair) -> Msg:
    """How many ports were probed, and the limit of `scan.ports: listed`."""
    count = f"{pair.ports_probed:,}"
    if facts.port_choice == "listed":
        return Msg(
            f"among the {count} ports the zones file names (scan.ports: listed; no other port "
            "was probed)",
            f"在区域文件列出的 {count} 个端口中（scan.ports: listed，未探测其他端口）",
        )
    return Msg(f"among {count} probed", f"在探测的 {count} 个端口中")


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
                Msg(
                    f"{target}: zone {pair.source.name} has no vantage, so nothing was sent "
                    "from it",
                    f"{target}：区域 {pair.source.name} 未配置探测点，未从该区域发出探测",
                ),
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
            "port_choice": facts.port_choice,
            "ports_probed": pair.ports_probed,
            "ports_scanned": pair.port_text(),
            "probes": pair.probes,
            "open": cut(lines(opened)),
            "unscanned": list(pair.unscanned),
            "vantage": pair.source.vantage,
        }
        if violations:
            ports = sorted({v.spec for v in violations})
            permitted, first = _listed(allowed, "nothing"), observed(violations[0])
            yield failed(
                Msg(
                    f"{target}: {', '.join(ports)} open but not allowed by the policy "
                    f"(allowed: {permitted.en}); {first.en}",
                    f"{target}：开放了策略未允许的端口 {'、'.join(ports)}"
                    f"（策略允许：{permitted.zh}）；{first.zh}",
                ),
                {**evidence, "violations": cut(lines(violations))},
                target=target,
            )
            continue
        problem = pair.incomplete
        if problem is not None:
            yield errored(
                Msg(
                    f"{target}: could not measure completely: {problem.en}",
                    f"{target}：未能完整测量：{problem.zh}",
                ),
                evidence,
                target=target,
            )
            continue
        seen = _listed(sorted({o.spec for o in opened}), "none")
        permitted, note = _listed(allowed, "nothing"), _note(pair)
        among, probes = _coverage(facts, pair), f"{pair.probes:,}"
        yield passed(
            Msg(
                f"{target}: no port outside the policy is open {among.en} (open: {seen.en}; "
                f"allowed: {permitted.en}; {probes} probes){note.en}",
                f"{target}：{among.zh}未发现策略外开放的端口（开放：{seen.zh}；"
                f"策略允许：{permitted.zh}；共 {probes} 次探测）{note.zh}",
            ),
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
        kind = "关键" if not critical else "互联网"
        yield not_applicable(
            Msg(
                f"no zone is marked {missing} in the zones file",
                f"区域文件中没有标记为{kind}（{missing}）的区域",
            )
        )
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
                "inbound_ports": inbound.ports_probed,
                "outbound_ports": outbound.ports_probed,
            }
            if answers_in or answers_out:
                found = first_of([*answers_in, *answers_out])
                way = (
                    Msg(f"{zone.name} is reachable from {outside.name}",
                        f"{zone.name} 可被 {outside.name} 访问")
                    if answers_in and not answers_out
                    else Msg(f"{zone.name} has a path out to {outside.name}",
                             f"{zone.name} 可访问 {outside.name}")
                    if answers_out and not answers_in
                    else Msg(f"{zone.name} is reachable from and has a path out to {outside.name}",
                             f"{zone.name} 与 {outside.name} 可双向访问")
                )  # fmt: skip
                yield failed(
                    Msg(f"{way.en}: {found.en}", f"{way.zh}：{found.zh}"), evidence, target=target
                )
                continue
            problems = [
                Msg(f"{en}: {problem.en}", f"{zh}：{problem.zh}")
                for en, zh, problem in (
                    ("inbound", "入向", inbound.incomplete),
                    ("outbound", "出向", outbound.incomplete),
                )
                if problem is not None
            ]
            if problems:
                why = joined(problems)
                yield errored(
                    Msg(
                        f"{target}: could not measure: {why.en}",
                        f"{target}：未能完成测量：{why.zh}",
                    ),
                    evidence,
                    target=target,
                )
                continue
            ins, outs = f"{inbound.probes:,}", f"{outbound.probes:,}"
            ports_in, ports_out = f"{inbound.ports_probed:,}", f"{outbound.ports_probed:,}"
            rejected = len(inbound.device) + len(outbound.device)
            # A router that rejects answers in the hosts' place: say so, not "no answer".
            whose, note = (
                (
                    Msg("no host answer", "均无主机应答"),
                    Msg(
                        f" ({rejected:,} answers came from a device in between, not the hosts: "
                        f"{(inbound.witnesses or outbound.witnesses)[0].en})",
                        f"（{rejected:,} 个应答来自中间设备而非主机："
                        f"{(inbound.witnesses or outbound.witnesses)[0].zh}）",
                    ),
                )
                if rejected
                else (Msg("no answer", "均无应答"), Msg("", ""))
            )
            evidence["rejected_by_device"] = cut(lines([*inbound.device, *outbound.device]))
            yield passed(
                Msg(
                    f"{zone.name} and {outside.name} do not reach each other: {whose.en} to "
                    f"{ins} probes in ({ports_in} ports) and {outs} probes out ({ports_out} ports)"
                    f"{note.en}",
                    f"{zone.name} 与 {outside.name} 互不可达：入向 {ins} 次探测"
                    f"（{ports_in} 个端口）、出向 {outs} 次探测（{ports_out} 个端口）{whose.zh}"
                    f"{note.zh}",
                ),
                evidence,
                target=target,
            )
