"""Host firewall: inbound traffic is denied unless a rule allows it, for IPv4 and for IPv6, on
every interface (GB/T 22239 8.1.3.2 a, 8.1.4.4 b).

The facts say, for the first packet of a new TCP or UDP connection to a port no rule names,
what the kernel does with it after every base chain on its path (see checks/facts/firewall.py).
The host passes when every such packet is dropped or rejected and no port published through DNAT
is let through unless the site lists it; it fails on any accepted path; it says `error` when a
ruleset could not be read or a verdict rests on a construct the model does not understand.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from checks.facts.firewall import FirewallFacts, InboundPath, PublishedPort
from checks.model import Msg, Outcome, Severity, Unavailable, errored, failed, passed, require
from checks.registry import check

_LABEL = {"ipv4": "IPv4", "ipv6": "IPv6"}


def _firewall(facts: Any) -> FirewallFacts:
    return require(facts.firewall, FirewallFacts)


def _joined(parts: Sequence[Msg]) -> Msg:
    return Msg("; ".join(p.en for p in parts), "；".join(p.zh for p in parts))


def _state(value: str | Unavailable | None) -> Any:
    return {"unavailable": value.reason} if isinstance(value, Unavailable) else value


def _evidence(firewall: FirewallFacts, allowed: Sequence[str]) -> dict[str, Any]:
    return {
        "chains": [
            {
                "chain": f"{c.source} {c.family} {c.table} {c.name}",
                "hook": c.hook,
                "priority": c.priority,
                "type": c.type,
                "policy": c.policy,
                "devices": list(c.devices),
                "dormant": c.dormant,
            }
            for c in firewall.chains
        ],
        "paths": [
            {
                "family": p.family,
                "protocol": p.protocol,
                "interface": p.interface,
                "verdict": p.verdict,
                "reason": p.reason,
                "unknown": list(p.unknown),
            }
            for p in firewall.paths
        ],
        "published": [
            {
                "family": p.family,
                "protocol": p.protocol,
                "port": p.port,
                "interface": p.interface,
                "to": p.to,
                "rule": p.rule,
                "verdict": p.verdict,
                "reason": p.reason,
                "unknown": list(p.unknown),
                "allowed": _spec(p) in allowed,
            }
            for p in firewall.published
        ],
        "interfaces": _state(firewall.interfaces)
        if isinstance(firewall.interfaces, Unavailable)
        else list(firewall.interfaces),
        "nft": _state(firewall.nft),
        "iptables_legacy": _state(firewall.iptables_legacy),
        "iptables": _state(firewall.iptables),
        "ipset": firewall.ipset,
        "ufw_enabled": firewall.ufw_enabled,
    }


def _spec(port: PublishedPort) -> str:
    return f"{port.protocol}/{port.port}"


def _grouped(paths: Sequence[InboundPath]) -> list[tuple[str, str, list[str], list[str]]]:
    """(family, reason, protocols, interfaces) for paths sharing a family and a reason."""
    groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for p in paths:
        protocols, interfaces = groups.setdefault((p.family, p.reason), ([], []))
        if p.protocol not in protocols:
            protocols.append(p.protocol)
        if p.interface not in interfaces:
            interfaces.append(p.interface)
    return [(f, r, protos, ifaces) for (f, r), (protos, ifaces) in groups.items()]


def _open_paths(paths: Sequence[InboundPath]) -> list[Msg]:
    out = []
    for family, reason, protocols, interfaces in _grouped(paths):
        what = f"{_LABEL[family]} {'/'.join(protocols)} on {', '.join(interfaces)}"
        what_zh = f"{_LABEL[family]} {'/'.join(protocols)}（接口 {'、'.join(interfaces)}）"
        out.append(
            Msg(
                f"{what}: a new connection to a port no rule names is accepted ({reason})",
                f"{what_zh}：发往未列明端口的新连接被放行，不符合（{reason}）",
            )
        )
    return out


def _open_published(ports: Sequence[PublishedPort]) -> list[Msg]:
    out = []
    seen: set[tuple[str, str, str]] = set()
    for p in ports:
        key = (_spec(p), p.family, p.to)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Msg(
                f"{_spec(p)} ({_LABEL[p.family]}) is published to {p.to} by {p.rule} and let "
                f"through past the input chains ({p.reason}); list it in allowed_published_ports "
                "if it is meant to be open",
                f"{_spec(p)}（{_LABEL[p.family]}）经 {p.rule} 发布到 {p.to} 并被放行，"
                "绕过入方向链，"
                f"不符合（{p.reason}）；如属有意开放，请在 allowed_published_ports 中列出",
            )
        )
    return out


def _unknown(items: Sequence[InboundPath | PublishedPort]) -> Msg:
    labels: list[str] = []
    where: list[str] = []
    for item in items:
        labels.extend(x for x in item.unknown if x not in labels)
        name = f"{_LABEL[item.family]} {item.protocol}"
        if isinstance(item, PublishedPort):
            name += f" port {item.port}"
        if name not in where:
            where.append(name)
    constructs = "; ".join(labels) or "?"
    return Msg(
        f"cannot decide {', '.join(where)}: the verdict rests on constructs not understood: "
        f"{constructs}",
        f"无法判定 {'、'.join(where)}：结论依赖无法理解的规则构造：{constructs}",
    )


def _deny(firewall: FirewallFacts, allowed: Sequence[str]) -> Msg:
    parts = []
    for family in ("ipv4", "ipv6"):
        reasons: list[str] = []
        for p in firewall.paths:
            if p.family == family and p.reason not in reasons:
                reasons.append(p.reason)
        parts.append(
            Msg(
                f"{_LABEL[family]} by {'; '.join(reasons)}",
                f"{_LABEL[family]} 由 {'；'.join(reasons)} 拒绝",
            )
        )
    dormant = sorted({f"{c.family} {c.table}" for c in firewall.chains if c.dormant})
    found = _joined(parts)
    if dormant:
        found = Msg(
            f"{found.en} (dormant, filtering nothing: {', '.join(dormant)})",
            f"{found.zh}（休眠表不过滤任何报文：{'、'.join(dormant)}）",
        )
    published = sorted({_spec(p) for p in firewall.published if p.verdict != "drop"} & set(allowed))
    if published:
        found = Msg(
            f"{found.en}; published as the site allows: {', '.join(published)}",
            f"{found.zh}；按站点配置允许发布：{'、'.join(published)}",
        )
    return Msg(f"inbound default deny: {found.en}", f"入方向默认拒绝：{found.zh}")


@check(
    "host.firewall_default_deny",
    title_en="The host firewall denies inbound traffic by default (IPv4 and IPv6)",
    title_zh="主机防火墙入方向默认拒绝（IPv4 与 IPv6）",
    severity=Severity.HIGH,
    needs=("firewall",),
    params={"allowed_published_ports": []},
)
def firewall_default_deny(facts: Any, allowed_published_ports: list[str]) -> Iterator[Outcome]:
    firewall = _firewall(facts)
    allowed = [str(a).lower() for a in allowed_published_ports]
    evidence = _evidence(firewall, allowed)
    unreadable = [
        v.reason
        for v in (firewall.nft, firewall.iptables_legacy, firewall.iptables)
        if isinstance(v, Unavailable)
    ]
    if unreadable:
        # A source not read may hold a drop, or a DNAT that routes around the chains read.
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
    open_paths = [p for p in firewall.paths if p.verdict == "accept"]
    published = [p for p in firewall.published if _spec(p) not in allowed]
    open_published = [p for p in published if p.verdict == "accept"]
    if open_paths or open_published:
        if not firewall.chains:
            reason = Msg(
                "no base chain on the inbound path: every inbound IPv4 and IPv6 packet is accepted",
                "入方向路径上不存在任何基础链，不符合：所有 IPv4 与 IPv6 入站报文均被放行",
            )
            yield failed(reason, evidence)
            return
        yield failed(_joined(_open_paths(open_paths) + _open_published(open_published)), evidence)
        return
    doubtful: list[InboundPath | PublishedPort] = [
        *(p for p in firewall.paths if p.verdict == "unknown"),
        *(p for p in published if p.verdict == "unknown"),
    ]
    if doubtful:
        yield errored(_unknown(doubtful), evidence)
        return
    yield passed(_deny(firewall, allowed), evidence)
