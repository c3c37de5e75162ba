"""`host.firewall_default_deny` beyond its recorded cases: the evidence it keeps, the wording of
each open protocol, and a readable drop winning over an unreadable source."""

from __future__ import annotations

import json
from dataclasses import replace

from checks.facts import HostFacts
from checks.host import firewall
from checks.model import Status, Unavailable
from checks.registry import Registry
from checks.runner import run_check
from tests.checks.cases_firewall import FIREWALL

REGISTRY = Registry.from_modules([firewall])


def test_firewall_evidence_lists_every_chain() -> None:
    (result,) = run_check(REGISTRY.get("host.firewall_default_deny"), HostFacts(firewall=FIREWALL))
    assert result.status is Status.PASS
    assert result.evidence["chains"] == [
        {
            "chain": "nft inet filter input",
            "policy": "drop",
            "default_ipv4": "drop",
            "default_ipv6": "drop",
            "final_rule": None,
        }
    ]
    assert result.evidence["nft"] == "nftables 1.0.6: 1 input filter chain(s)"
    json.dumps(result.to_dict())


def test_each_open_protocol_is_named_in_both_languages() -> None:
    accept = replace(FIREWALL.chains[0], policy="accept", default_ipv4="accept", default_ipv6=None)
    (result,) = run_check(
        REGISTRY.get("host.firewall_default_deny"),
        HostFacts(firewall=replace(FIREWALL, chains=(accept,))),
    )
    assert result.status is Status.FAIL
    assert result.message == (
        "IPv4 (ip) input accepts by default: nft inet filter input (policy accept); "
        "IPv6 (ip6): no input filter chain"
    )
    assert result.message_zh == (
        "IPv4（ip）入方向默认放行，不符合：nft inet filter input（默认策略 accept）；"
        "IPv6（ip6）无入方向过滤链，不符合"
    )


def test_a_readable_drop_passes_even_if_another_source_is_unreadable() -> None:
    """A drop in any input chain is final, so one readable drop chain proves default deny."""
    facts = replace(FIREWALL, iptables_legacy=Unavailable("iptables-legacy-save: denied"))
    (result,) = run_check(REGISTRY.get("host.firewall_default_deny"), HostFacts(firewall=facts))
    assert result.status is Status.PASS
    assert result.evidence["iptables_legacy"] == {"unavailable": "iptables-legacy-save: denied"}
