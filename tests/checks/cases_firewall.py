"""Recorded facts for `host.firewall_default_deny`, with the status each must produce (same
shape as tests/checks/cases.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import HostFacts
from checks.facts.firewall import FirewallFacts, InputChain
from checks.model import Status, Unavailable

INET_DROP = InputChain(
    source="nft",
    family="inet",
    table="filter",
    name="input",
    policy="drop",
    default_ipv4="drop",
    default_ipv6="drop",
    final_rule=None,
)

IP_DROP = InputChain(
    source="nft",
    family="ip",
    table="filter",
    name="INPUT",
    policy="drop",
    default_ipv4="drop",
    default_ipv6=None,
    final_rule=None,
)

FIREWALL = FirewallFacts(
    chains=(INET_DROP,),
    nft="nftables 1.0.6: 1 input filter chain(s)",
    iptables_legacy="iptables-legacy-save: no tables, no INPUT chain",
    iptables=None,
    ufw_enabled=None,
)


def firewall(**changes: Any) -> HostFacts:
    return HostFacts(firewall=replace(FIREWALL, **changes))


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "host.firewall_default_deny": [
        ("inet policy drop", firewall(), Status.PASS, "IPv4 by nft inet filter input"),
        (
            "firewalld final reject",
            firewall(
                chains=(
                    replace(
                        INET_DROP,
                        table="firewalld",
                        name="filter_INPUT",
                        policy="accept",
                        default_ipv4="reject",
                        default_ipv6="reject",
                        final_rule="handle 19: reject",
                    ),
                )
            ),
            Status.PASS,
            "handle 19: reject",
        ),
        (
            "policy accept",
            firewall(
                chains=(
                    replace(
                        INET_DROP, policy="accept", default_ipv4="accept", default_ipv6="accept"
                    ),
                )
            ),
            Status.FAIL,
            "nft inet filter input (policy accept)",
        ),
        ("ipv6 left open", firewall(chains=(IP_DROP,)), Status.FAIL, "IPv6 (ip6)"),
        ("empty ruleset", firewall(chains=()), Status.FAIL, "no input filter chain at all"),
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
