"""Recorded facts for `host.firewall_default_deny`, with the status each must produce (same
shape as tests/checks/cases.py). The paths and reasons are what the gatherer printed for
rulesets loaded into a real kernel (tests/inventory/test_firewall.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import HostFacts
from checks.facts.firewall import BaseChain, FirewallFacts, InboundPath, PublishedPort
from checks.model import Status, Unavailable

INET_INPUT = BaseChain(
    source="nft",
    family="inet",
    table="filter",
    name="input",
    hook="input",
    priority=0,
    type="filter",
    policy="drop",
    devices=(),
    dormant=False,
)


def paths(
    verdict: str,
    reason: str,
    *,
    families: tuple[str, ...] = ("ipv4", "ipv6"),
    unknown: tuple[str, ...] = (),
) -> tuple[InboundPath, ...]:
    return tuple(
        InboundPath(family, protocol, "eth0", verdict, reason, unknown)  # type: ignore[arg-type]
        for family in families
        for protocol in ("tcp", "udp")
    )


DROPPED = paths("drop", "nft inet filter input (policy drop)")

FIREWALL = FirewallFacts(
    chains=(INET_INPUT,),
    paths=DROPPED,
    published=(),
    interfaces=("eth0",),
    nft="nftables 1.0.6: 1 table(s), 1 base chain(s) on the inbound path",
    iptables_legacy="iptables-legacy-save: no tables; ip6tables-legacy-save: no tables",
    iptables=None,
    ufw_enabled=None,
)

PUBLISHED = PublishedPort(
    family="ipv4",
    protocol="tcp",
    port=8080,
    interface="eth0",
    to="198.18.7.2:80",
    rule="nat: -m tcp --dport 8080 -j DNAT --to-destination 198.18.7.2:80",
    verdict="accept",
    reason="iptables-nft ip nat PREROUTING (DOCKER: ! -i docker0 -p tcp -m tcp --dport 8080 -j "
    "DNAT --to-destination 198.18.7.2:80) → iptables-nft ip filter FORWARD (DOCKER: -d "
    "198.18.7.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT)",
    unknown=(),
)


def firewall(**changes: Any) -> HostFacts:
    return HostFacts(firewall=replace(FIREWALL, **changes))


def _v4_drop_v6_open() -> tuple[InboundPath, ...]:
    return paths("drop", "nft ip filter INPUT (policy drop)", families=("ipv4",)) + paths(
        "accept", "no base chain filters it", families=("ipv6",)
    )


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "host.firewall_default_deny": [
        (
            "inet policy drop",
            firewall(),
            Status.PASS,
            "IPv4 by nft inet filter input (policy drop)",
        ),
        (
            "firewalld final reject",
            firewall(
                paths=paths(
                    "drop",
                    "nft inet firewalld filter_INPUT "
                    "(handle 19: reject with icmpx admin-prohibited)",
                )
            ),
            Status.PASS,
            "handle 19: reject with icmpx admin-prohibited",
        ),
        (
            "dormant table beside a dropping one",
            firewall(chains=(INET_INPUT, replace(INET_INPUT, table="standby", dormant=True))),
            Status.PASS,
            "dormant, filtering nothing: inet standby",
        ),
        (
            "policy accept",
            firewall(paths=paths("accept", "nft inet filter input (policy accept)")),
            Status.FAIL,
            "IPv4 tcp/udp on eth0: a new connection to a port no rule names is accepted "
            "(nft inet filter input (policy accept))",
        ),
        (
            "ufw default allow (ufw-not-local returns for local packets)",
            firewall(
                paths=paths(
                    "accept",
                    "iptables-nft ip filter INPUT (ufw-track-input: -p tcp -m conntrack "
                    "--ctstate NEW -j ACCEPT)",
                )
            ),
            Status.FAIL,
            "ufw-track-input",
        ),
        ("ipv6 left open", firewall(paths=_v4_drop_v6_open()), Status.FAIL, "IPv6 tcp/udp on eth0"),
        (
            "published container port",
            firewall(published=(PUBLISHED,)),
            Status.FAIL,
            "tcp/8080 (IPv4) is published to 198.18.7.2:80",
        ),
        (
            "published port the host does not forward",
            firewall(
                published=(
                    replace(
                        PUBLISHED, verdict="drop", reason="not forwarded (net.ipv4.ip_forward = 0)"
                    ),
                )
            ),
            Status.PASS,
            "inbound default deny",
        ),
        (
            "empty ruleset",
            firewall(chains=(), paths=paths("accept", "no base chain filters it")),
            Status.FAIL,
            "no base chain on the inbound path",
        ),
        (
            "accept resting on a construct not understood",
            firewall(
                paths=paths(
                    "unknown",
                    "nft inet filter input (handle 4: meta cgroup 7 accept)",
                    unknown=("meta cgroup == 7",),
                )
            ),
            Status.ERROR,
            "constructs not understood: meta cgroup == 7",
        ),
        (
            "nft not permitted",
            firewall(
                chains=(),
                nft=Unavailable("nft -j list ruleset: nft exited 1: Operation not permitted"),
            ),
            Status.ERROR,
            "Operation not permitted",
        ),
        (
            "no tool",
            firewall(chains=(), nft=None, iptables_legacy=None, iptables=None),
            Status.ERROR,
            "neither nft nor iptables",
        ),
    ],
}
