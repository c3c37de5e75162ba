"""Host firewall: inbound traffic is denied unless a rule allows it, for IPv4 and for IPv6
(GB/T 22239 8.1.3.2 a, 8.1.4.4 b).

A packet for the host crosses every filter chain on the input hook, and a drop in any one of
them is final; so a protocol is default-deny when at least one chain that sees it ends in drop
or reject. IPv6 is judged on its own: an IPv4-only ruleset leaves the host open over IPv6.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from checks.facts.firewall import FirewallFacts, InputChain
from checks.model import Msg, Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check

_PROTOCOLS = (("IPv4", "ip", "default_ipv4"), ("IPv6", "ip6", "default_ipv6"))


def _firewall(facts: Any) -> FirewallFacts:
    return require(facts.firewall, FirewallFacts)


def _name(chain: InputChain) -> str:
    return f"{chain.source} {chain.family} {chain.table} {chain.name}"


def _joined(parts: list[Msg]) -> Msg:
    return Msg("; ".join(p.en for p in parts), "；".join(p.zh for p in parts))


def _evidence(firewall: FirewallFacts) -> dict[str, Any]:
    def state(value: str | Unavailable | None) -> Any:
        return {"unavailable": value.reason} if isinstance(value, Unavailable) else value

    return {
        "chains": [
            {
                "chain": _name(c),
                "policy": c.policy,
                "default_ipv4": c.default_ipv4,
                "default_ipv6": c.default_ipv6,
                "final_rule": c.final_rule,
            }
            for c in firewall.chains
        ],
        "nft": state(firewall.nft),
        "iptables_legacy": state(firewall.iptables_legacy),
        "iptables": state(firewall.iptables),
        "ufw_enabled": firewall.ufw_enabled,
    }


@check(
    "host.firewall_default_deny",
    title_en="The host firewall denies inbound traffic by default (IPv4 and IPv6)",
    title_zh="主机防火墙入方向默认拒绝（IPv4 与 IPv6）",
    severity=Severity.HIGH,
    needs=("firewall",),
)
def firewall_default_deny(facts: Any) -> Iterator[Outcome]:
    firewall = _firewall(facts)
    evidence = _evidence(firewall)
    denying: list[Msg] = []
    open_: list[Msg] = []
    for label, family, attr in _PROTOCOLS:
        seeing = [c for c in firewall.chains if getattr(c, attr) is not None]
        deny = next((c for c in seeing if getattr(c, attr) in {"drop", "reject"}), None)
        if deny is not None:
            how = deny.final_rule or f"policy {deny.policy}"
            how_zh = deny.final_rule or f"默认策略 {deny.policy}"
            denying.append(
                Msg(
                    f"{label} by {_name(deny)} ({how})", f"{label} 由 {_name(deny)}（{how_zh}）拒绝"
                )
            )
        elif not seeing:
            open_.append(
                Msg(
                    f"{label} ({family}): no input filter chain",
                    f"{label}（{family}）无入方向过滤链，不符合",
                )
            )
        else:
            accepting = ", ".join(
                f"{_name(c)} (policy {c.policy}"
                + (f", {c.final_rule}" if c.final_rule else "")
                + ")"
                for c in seeing
            )
            accepting_zh = "、".join(
                f"{_name(c)}（默认策略 {c.policy}"
                + (f"，{c.final_rule}" if c.final_rule else "")
                + "）"
                for c in seeing
            )
            open_.append(
                Msg(
                    f"{label} ({family}) input accepts by default: {accepting}",
                    f"{label}（{family}）入方向默认放行，不符合：{accepting_zh}",
                )
            )
    if not open_:
        found = _joined(denying)
        yield passed(
            Msg(f"inbound default deny: {found.en}", f"入方向默认拒绝：{found.zh}"), evidence
        )
        return
    unreadable = [
        v.reason
        for v in (firewall.nft, firewall.iptables_legacy, firewall.iptables)
        if isinstance(v, Unavailable)
    ]
    if unreadable:
        yield errored(
            Msg(
                "firewall rules unreadable: " + "; ".join(unreadable),
                "无法读取防火墙规则：" + "；".join(unreadable),
            ),
            evidence,
        )
        return
    if all(v is None for v in (firewall.nft, firewall.iptables_legacy, firewall.iptables)):
        yield errored(
            Msg(
                "neither nft nor iptables is installed: the rules cannot be read",
                "nft 与 iptables 均未安装，无法读取防火墙规则",
            ),
            evidence,
        )
        return
    if not firewall.chains:
        yield failed(
            Msg(
                "no input filter chain at all: every inbound IPv4 and IPv6 packet is accepted",
                "不存在任何入方向过滤链，不符合：所有 IPv4 与 IPv6 入站报文均被放行",
            ),
            evidence,
        )
        return
    yield failed(_joined(open_), evidence)
