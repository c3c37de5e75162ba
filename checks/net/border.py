"""A filtering device separates every zone pair: probes dropped toward hosts that answer
elsewhere, ICMP "administratively prohibited", unsolicited ACKs dropped (a stateful filter), or —
when every probe on a path was answered — a boundary device whose SNMP identity is a firewall.

The SNMP identity is classified by the enterprise number in sysObjectID (and sysDescr where a
vendor makes both routers and firewalls). LibreNMS and Observium type Huawei, H3C and Hillstone
as plain network gear; here a security vendor's agent counts as a firewall.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from checks.facts.network import REACHABLE_STATES, NetFacts, SnmpIdentity
from checks.model import (
    Outcome,
    Severity,
    Unavailable,
    errored,
    failed,
    not_applicable,
    passed,
)
from checks.net.matrix import Pair, cut, hops, lines, live_hosts, pairs
from checks.registry import check

FILTER_REASONS = frozenset({"admin-prohibited", "host-prohibited", "net-prohibited"})
"""ICMP unreachable codes 13, 10, 9: a filter said no."""


@dataclass(frozen=True)
class Vendor:
    name: str
    role: str
    """firewall, network (routers, switches) or host."""
    firewall_descr: str | None = None
    """For vendors of both: a sysDescr pattern that marks their firewall products."""


VENDORS: dict[int, Vendor] = {
    8741: Vendor("SonicWall", "firewall"),
    12356: Vendor("Fortinet", "firewall"),
    25461: Vendor("Palo Alto Networks", "firewall"),
    2620: Vendor("Check Point", "firewall"),
    3224: Vendor("Juniper NetScreen", "firewall"),
    10704: Vendor("Barracuda Networks", "firewall"),
    3097: Vendor("WatchGuard", "firewall"),
    28557: Vendor("Hillstone Networks (山石网科)", "firewall"),
    35047: Vendor("Sangfor (深信服)", "firewall"),
    14331: Vendor("Topsec (天融信)", "firewall"),
    15227: Vendor("Venustech (启明星辰)", "firewall"),
    19849: Vendor("NSFOCUS (绿盟科技)", "firewall"),
    31648: Vendor("DPtech (迪普科技)", "firewall"),
    24968: Vendor("SecuWard (网神)", "firewall"),
    9: Vendor("Cisco", "network", r"Adaptive Security Appliance|Firepower|\bFTD\b|\bASA\b"),
    2011: Vendor("Huawei (华为)", "network", r"\bUSG|Eudemon|HiSecEngine|SecoManager"),
    25506: Vendor("H3C (新华三)", "network", r"SecPath|SecBlade"),
    2636: Vendor("Juniper Networks", "network", r"\bSRX"),
    8072: Vendor("net-snmp (Linux/Unix host)", "host"),
}
_ENTERPRISE = re.compile(r"^\.?1\.3\.6\.1\.4\.1\.(\d+)")


def classify(identity: SnmpIdentity) -> tuple[str, str]:
    """(vendor, role) of an SNMP agent from its sysObjectID and sysDescr."""
    match = _ENTERPRISE.match(identity.sys_object_id)
    if match is None:
        return "unknown", "unknown"
    vendor = VENDORS.get(int(match.group(1)))
    if vendor is None:
        return f"enterprise {match.group(1)}", "unknown"
    if vendor.firewall_descr and re.search(vendor.firewall_descr, identity.sys_descr):
        return vendor.name, "firewall"
    return vendor.name, vendor.role


def _device(facts: NetFacts) -> tuple[dict[str, object], bool, str]:
    """Evidence of the boundary device, whether it is a firewall, and a phrase naming it."""
    snmp = facts.snmp
    if snmp is None:
        return {"snmp": "not configured"}, False, "no SNMP agent configured"
    if isinstance(snmp, Unavailable):
        return {"snmp": f"unavailable: {snmp.reason}"}, False, f"SNMP: {snmp.reason}"
    vendor, role = classify(snmp)
    evidence: dict[str, object] = {
        "host": snmp.host,
        "sys_descr": snmp.sys_descr,
        "sys_object_id": snmp.sys_object_id,
        "sys_name": snmp.sys_name,
        "vendor": vendor,
        "role": role,
    }
    phrase = f"{snmp.sys_descr or vendor} ({vendor}, {role}; sysObjectID {snmp.sys_object_id})"
    return evidence, role == "firewall", phrase


def _drops(pair: Pair, live: dict[str, set[str]]) -> list[str]:
    """Silence toward hosts known to answer: the sign of a filter, not of an empty address."""
    found = []
    tcp = [c for c in pair.cells if c.proto == "tcp"]
    heard = {o.address for o in pair.observations() if o.state in REACHABLE_STATES}
    seen = {o.address for o in pair.observations()}
    for address in sorted(heard):
        for cell in tcp:
            if not any(o.address == address for o in cell.observations):
                found.append(
                    f"{pair.name} {address} {cell.spec}: no answer, while {address} answers "
                    f"other ports from {pair.source.name}"
                )
    unfinished = set(pair.run.unfinished_hosts) if pair.run else set()
    for address, sources in sorted(live.items()):
        others = sources - {pair.source.name}
        if address not in seen and address not in unfinished and others and pair.cells:
            found.append(
                f"{pair.name} {address}: no answer on any port, though it answers from "
                + ", ".join(sorted(others))
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
    device, is_firewall, phrase = _device(facts)
    live = live_hosts(facts)
    acks = facts.ack if not isinstance(facts.ack, Unavailable) else ()
    for pair in pairs(facts):
        target = pair.name
        if not pair.measured:
            yield not_applicable(
                f"{target}: zone {pair.source.name} has no vantage",
                {"from": pair.source.name, "to": pair.target.name},
                target=target,
            )
            continue
        live_here = {a: s for a, s in live.items() if _in(pair, a)}
        drops = _drops(pair, live_here)
        prohibited = [o for o in pair.observations() if o.reason in FILTER_REASONS]
        ack = [a for a in acks if a.source == pair.source.name and a.target == pair.target.name]
        ack_filtered = [a for a in ack if a.state == "filtered"]
        answers = pair.reachable()
        all_silent = pair.probes > 0 and not any(True for _ in pair.observations())
        hop_counts = sorted({h for o in answers if (h := hops(o.reason_ttl)) is not None})
        evidence = {
            "from": pair.source.name,
            "to": pair.target.name,
            "probes": pair.probes,
            "no_answer": pair.silent,
            "drops": cut(drops),
            "prohibited": cut(lines(prohibited)),
            "ack_probes": cut(lines(ack)),
            "answers": cut(lines(answers)),
            "hops": hop_counts,
            "device": device,
        }
        if require_firewall_identity and not is_firewall:
            yield failed(
                f"{target}: the boundary device is not identified as a firewall ({phrase})",
                evidence,
                target=target,
            )
            continue
        signals = []
        if drops:
            signals.append(f"{len(drops)} probes to live hosts dropped ({drops[0]})")
        if prohibited:
            signals.append(f"ICMP {prohibited[0].reason} ({prohibited[0].line()})")
        if ack_filtered:
            signals.append(
                f"unsolicited ACKs dropped, a stateful filter ({ack_filtered[0].line()})"
            )
        if all_silent:
            signals.append(f"no answer to any of {pair.probes} probes")
        if signals:
            yield passed(f"{target}: filtered: {'; '.join(signals)}; device: {phrase}", evidence,
                         target=target)  # fmt: skip
            continue
        same_segment = bool(hop_counts) and hop_counts == [0]
        if is_firewall and not same_segment and answers:
            yield passed(
                f"{target}: every probe answered (no filtering seen on this path: see "
                f"net.segmentation), but the path is routed through the boundary firewall "
                f"{phrase}",
                evidence,
                target=target,
            )
            continue
        problem = pair.incomplete
        if problem is not None:
            yield errored(f"{target}: could not measure: {problem}", evidence, target=target)
            continue
        if not answers:
            yield errored(f"{target}: no probe result to judge from", evidence, target=target)
            continue
        why = (
            "answers come from the same segment (no hop: nothing routes between the zones)"
            if same_segment
            else f"and the boundary device is not a known firewall ({phrase})"
        )
        unfiltered = [a for a in ack if a.state == "unfiltered"]
        if unfiltered:
            why += f"; unsolicited ACKs pass ({unfiltered[0].line()})"
        yield failed(
            f"{target}: nothing filters: every probe to {len({o.address for o in answers})} "
            f"live hosts answered ({answers[0].line()}), {why}",
            evidence,
            target=target,
        )


def _in(pair: Pair, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in pair.target.cidrs)
