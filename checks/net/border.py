"""A filtering device separates every zone pair, as its behaviour shows: probes dropped toward
hosts that answer elsewhere, ICMP "administratively prohibited" or port unreachable from a device,
resets a device sends in the hosts' place (`matrix.device_answers`), unsolicited ACKs dropped (a
stateful filter). An SNMP identity alone never makes a path pass: a firewall that forwards
everything filters nothing; the identity is evidence beside the behaviour, and with
`require_firewall_identity` a path must also be routed through a device identified as one.

The SNMP identity is classified by `checks.device.roles` (product-line rules over sysObjectID and
sysDescr, `roles.yaml`): a device classified firewall, IPS or WAF is a security device here.
LibreNMS and Observium type Huawei USG, H3C SecPath and Hillstone as plain network gear; the
rules tell a vendor's security line from its routers and switches.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from checks.device.roles import classify
from checks.facts.devices import Classification
from checks.facts.network import REACHABLE_STATES, NetFacts, PortObservation, SnmpIdentity
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Unavailable,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.net.matrix import Pair, cut, hops, lines, live_hosts, pairs
from checks.net.wording import joined, observed
from checks.registry import check

FILTER_REASONS = frozenset({"admin-prohibited", "host-prohibited", "net-prohibited"})
"""ICMP unreachable codes 13, 10, 9: a filter said no."""
REJECT_REASONS = frozenset({"port-unreach"})
"""ICMP port unreachable in a `filtered` result: nmap's word for one sent by another address
than the one probed (a host's own makes the port `closed`), i.e. a device rejecting."""


SECURITY_ROLES = frozenset({"firewall", "ips", "waf"})
"""Roles that make a boundary device a security device."""
_ROLES_ZH = {
    "firewall": "防火墙",
    "ips": "入侵防御",
    "waf": "Web 应用防火墙",
    "router": "路由器",
    "switch": "交换机",
    "wireless": "无线设备",
    "server": "服务器",
    "power": "电源设备",
    "printer": "打印机",
    "storage": "存储设备",
    "other": "其他",
}
_ROLES_EN = {"ips": "IPS", "waf": "WAF"}


def classify_identity(identity: SnmpIdentity) -> Classification:
    """What the boundary device's SNMP agent says it is."""
    return classify(identity.sys_object_id, identity.sys_descr, sys_name=identity.sys_name or "")


def _vendor_zh(vendor: str | None) -> str:
    if vendor is None:
        return "厂商未知"
    if vendor.startswith("enterprise "):
        return f"企业号 {vendor.removeprefix('enterprise ')}"
    return vendor


def _device(facts: NetFacts) -> tuple[dict[str, object], bool, Msg]:
    """Evidence of the boundary device, whether it is a security device, and a phrase naming
    it."""
    snmp = facts.snmp
    if snmp is None:
        return (
            {"snmp": "not configured"},
            False,
            Msg("no SNMP agent configured", "未配置 SNMP 代理"),
        )
    if isinstance(snmp, Unavailable):
        phrase = Msg(f"SNMP: {snmp.reason}", f"SNMP 查询失败：{snmp.reason}")
        return {"snmp": f"unavailable: {snmp.reason}"}, False, phrase
    found = classify_identity(snmp)
    vendor, role, confidence = found.vendor, found.role, f"{found.confidence:.2f}"
    evidence: dict[str, object] = {
        "host": snmp.host,
        "sys_descr": snmp.sys_descr,
        "sys_object_id": snmp.sys_object_id,
        "sys_name": snmp.sys_name,
        "vendor": vendor,
        "role": role,
        "confidence": found.confidence,
        "signals": list(found.signals),
        "rule": found.rule,
    }
    en_vendor = vendor or "vendor unknown"
    phrase = Msg(
        f"{snmp.sys_descr or en_vendor} ({en_vendor}, {_ROLES_EN.get(role, role)}, confidence "
        f"{confidence}; sysObjectID {snmp.sys_object_id})",
        f"{snmp.sys_descr or _vendor_zh(vendor)}（{_vendor_zh(vendor)}，{_ROLES_ZH[role]}，"
        f"置信度 {confidence}；sysObjectID {snmp.sys_object_id}）",
    )
    return evidence, role in SECURITY_ROLES, phrase


def _drops(pair: Pair, live: dict[str, set[str]], rejects: int) -> list[Msg]:
    """Silence toward hosts known to answer: the sign of a filter, not of an empty address.
    Where a device rejects on this path (`rejects` answers), silence is its rejects lost to
    its ICMP rate limit as much as drops, and is said so."""
    found = []
    limited = (
        Msg(
            f" (a device on this path rejects, {rejects} rejects seen: the others were likely "
            "lost to its ICMP rate limit)",
            f"（此路径上有设备拒绝，见到 {rejects} 次拒绝：其余的应答可能被其 ICMP 限速丢弃）",
        )
        if rejects
        else Msg("", "")
    )
    tcp = [c for c in pair.cells if c.proto == "tcp"]
    heard = {o.address for o in pair.observations() if o.state in REACHABLE_STATES}
    seen = {o.address for o in pair.observations()}
    for address in sorted(heard):
        for cell in tcp:
            if not any(o.address == address for o in cell.observations):
                found.append(
                    Msg(
                        f"{pair.name} {address} {cell.spec}: no answer, while {address} answers "
                        f"other ports from {pair.source.name}",
                        f"{pair.name} {address} {cell.spec}：无应答，而从 {pair.source.name} "
                        f"探测 {address} 的其他端口有应答",
                    )
                )
    unfinished = set(pair.run.unfinished_hosts) if pair.run else set()
    for address, sources in sorted(live.items()):
        others = sources - {pair.source.name}
        if address not in seen and address not in unfinished and others and pair.cells:
            what = (
                Msg("no host answer on any port", "所有端口均无主机应答")
                if rejects
                else Msg("no answer on any port", "所有端口均无应答")
            )
            found.append(
                Msg(
                    f"{pair.name} {address}: {what.en}, though it answers from "
                    + ", ".join(sorted(others))
                    + limited.en,
                    f"{pair.name} {address}：{what.zh}，但从 "
                    + "、".join(sorted(others))
                    + " 探测时有应答"
                    + limited.zh,
                )
            )
    return found


@check(
    "net.border_firewall",
    title_en="A filtering device separates every pair of zones",
    title_zh="区域边界部署访问控制设备，跨边界流量经其过滤",
    severity=Severity.HIGH,
    needs=("matrix", "ack"),
    params={"require_firewall_identity": False},
)
def border_firewall(facts: NetFacts, require_firewall_identity: bool) -> Iterator[Outcome]:
    device, is_security, phrase = _device(facts)
    live = live_hosts(facts)
    acks: tuple[PortObservation, ...] = require(facts.ack, tuple)
    for pair in pairs(facts):
        target = pair.name
        if not pair.measured:
            yield not_applicable(
                Msg(
                    f"{target}: zone {pair.source.name} has no vantage",
                    f"{target}：区域 {pair.source.name} 未配置探测点",
                ),
                {"from": pair.source.name, "to": pair.target.name},
                target=target,
            )
            continue
        live_here = {a: s for a, s in live.items() if _in(pair, a)}
        prohibited = [o for o in pair.observations() if o.reason in FILTER_REASONS]
        rejected = [
            o for o in pair.observations() if o.state == "filtered" and o.reason in REJECT_REASONS
        ]
        drops = _drops(pair, live_here, len(pair.device) + len(prohibited) + len(rejected))
        ack = [a for a in acks if a.source == pair.source.name and a.target == pair.target.name]
        answers = pair.reachable()
        hop_counts = sorted({h for o in answers if (h := hops(o.reason_ttl)) is not None})
        evidence = {
            "from": pair.source.name,
            "to": pair.target.name,
            "probes": pair.probes,
            "no_answer": pair.silent,
            "drops": cut([d.en for d in drops]),
            "prohibited": cut(lines(prohibited)),
            "rejected_by_device": cut(lines([*rejected, *pair.device])),
            "device_witnesses": [w.en for w in pair.witnesses],
            "ack_probes": cut(lines(ack)),
            "answers": cut(lines(answers)),
            "hops": hop_counts,
            "device": device,
        }
        if require_firewall_identity and not is_security:
            yield failed(
                Msg(
                    f"{target}: the boundary device is not identified as a security device "
                    f"(firewall, IPS or WAF): {phrase.en}",
                    f"{target}：边界设备未被识别为安全设备（防火墙、入侵防御或 WAF）：{phrase.zh}",
                ),
                evidence,
                target=target,
            )
            continue
        signals = _signals(pair, drops, prohibited, rejected, ack)
        if signals:
            seen, note = joined(signals), _ack_note(pair, ack)
            yield passed(
                Msg(
                    f"{target}: filtered: {seen.en}{note.en}; device: {phrase.en}",
                    f"{target}：存在过滤：{seen.zh}{note.zh}；边界设备：{phrase.zh}",
                ),
                evidence,
                target=target,
            )
            continue
        same_segment = bool(hop_counts) and hop_counts == [0]
        problem = pair.incomplete
        if problem is not None:
            yield errored(
                Msg(
                    f"{target}: could not measure: {problem.en}",
                    f"{target}：未能完成测量：{problem.zh}",
                ),
                evidence,
                target=target,
            )
            continue
        if not answers:
            yield errored(
                Msg(
                    f"{target}: no probe result to judge from", f"{target}：没有可供判断的探测结果"
                ),
                evidence,
                target=target,
            )
            continue
        why = _unfiltered(answers, ack, same_segment, phrase, is_security)
        yield failed(Msg(f"{target}: {why.en}", f"{target}：{why.zh}"), evidence, target=target)


def _ack_note(pair: Pair, ack: list[PortObservation]) -> Msg:
    """Unsolicited ACKs that passed, beside other signs of a filter: a stateless one."""
    unfiltered = [a for a in ack if a.state == "unfiltered" and not pair.from_device(a)]
    if not unfiltered:
        return Msg("", "")
    line = observed(unfiltered[0])
    return Msg(
        f" (though unsolicited ACKs pass, so the filter is not stateful: {line.en})",
        f"（但非请求的 ACK 可以通过，过滤不是状态检测的：{line.zh}）",
    )


def _signals(
    pair: Pair,
    drops: list[Msg],
    prohibited: list[PortObservation],
    rejected: list[PortObservation],
    ack: list[PortObservation],
) -> list[Msg]:
    """The signs of a filter on this path, strongest first."""
    signals = []
    if pair.device:
        first, why = observed(pair.device[0]), pair.witnesses[0]
        signals.append(
            Msg(
                f"{len(pair.device)} answers sent by a device in between, not by the hosts "
                f"({why.en}; {first.en})",
                f"{len(pair.device)} 个应答由中间设备而非主机发出（{why.zh}；{first.zh}）",
            )
        )
    if rejected:
        line = observed(rejected[0])
        signals.append(
            Msg(
                f"ICMP port unreachable from a device, not the host ({line.en})",
                f"来自中间设备而非主机的 ICMP 端口不可达（{line.zh}）",
            )
        )
    if drops:
        signals.append(
            Msg(
                f"{len(drops)} probes to live hosts dropped ({drops[0].en})",
                f"发往在线主机的 {len(drops)} 个探测被丢弃（{drops[0].zh}）",
            )
        )
    if prohibited:
        line, reason = observed(prohibited[0]), prohibited[0].reason
        signals.append(Msg(f"ICMP {reason} ({line.en})", f"ICMP {reason}（{line.zh}）"))
    ack_rejected = [a for a in ack if a.state == "unfiltered" and pair.from_device(a)]
    if ack_rejected:
        line = observed(ack_rejected[0])
        signals.append(
            Msg(
                f"unsolicited ACKs rejected by the device, alike its other answers ({line.en})",
                f"非请求的 ACK 被中间设备拒绝，与其其他应答相同（{line.zh}）",
            )
        )
    ack_filtered = [a for a in ack if a.state == "filtered"]
    if ack_filtered:
        line = observed(ack_filtered[0])
        signals.append(
            Msg(
                f"unsolicited ACKs dropped, a stateful filter ({line.en})",
                f"非请求的 ACK 被丢弃，存在状态检测过滤（{line.zh}）",
            )
        )
    if pair.probes > 0 and not any(True for _ in pair.observations()):
        signals.append(
            Msg(f"no answer to any of {pair.probes} probes", f"{pair.probes} 次探测均无应答")
        )
    return signals


def _unfiltered(
    answers: list[PortObservation],
    ack: list[PortObservation],
    same_segment: bool,
    phrase: Msg,
    is_security: bool,
) -> Msg:
    """Why nothing filters this path: every probe answered, and how the answers came."""
    why = (
        Msg(
            "answers come from the same segment (no hop: nothing routes between the zones)",
            "应答来自同一网段（无跳数：区域之间没有路由设备）",
        )
        if same_segment
        else Msg(
            f"though the path is routed through {phrase.en}: a device's identity is no "
            "evidence that it filters",
            f"尽管该路径经 {phrase.zh} 转发：设备的身份不能证明其进行了过滤",
        )
        if is_security
        else Msg(
            f"and the boundary device is not a known security device ({phrase.en})",
            f"且边界设备不是已知的安全设备（{phrase.zh}）",
        )
    )
    unfiltered = [a for a in ack if a.state == "unfiltered"]
    if unfiltered:
        line = observed(unfiltered[0])
        why = Msg(
            f"{why.en}; unsolicited ACKs pass ({line.en})",
            f"{why.zh}；非请求的 ACK 可以通过（{line.zh}）",
        )
    hosts, first = len({o.address for o in answers}), observed(answers[0])
    return Msg(
        f"nothing filters: every probe to {hosts} live hosts answered ({first.en}), {why.en}",
        f"未见任何过滤：发往 {hosts} 台在线主机的探测均有应答（{first.zh}），{why.zh}",
    )


def _in(pair: Pair, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in pair.target.cidrs)
