"""`host.firewall_default_deny` beyond its recorded cases: the evidence it keeps, the wording in
both languages, the site's list of published ports, and which of fail and error wins."""

from __future__ import annotations

import json
from dataclasses import replace

from checks.facts import HostFacts
from checks.host import firewall
from checks.model import Status, Unavailable
from checks.registry import Registry
from checks.runner import run_check
from tests.checks.cases_firewall import FIREWALL, PUBLISHED, paths

REGISTRY = Registry.from_modules([firewall])
CHECK = REGISTRY.get("host.firewall_default_deny")


def test_firewall_evidence_lists_every_chain_path_and_published_port() -> None:
    facts = replace(FIREWALL, published=(replace(PUBLISHED, verdict="drop"),))
    (result,) = run_check(CHECK, HostFacts(firewall=facts))
    assert result.status is Status.PASS
    assert result.evidence["chains"] == [
        {
            "chain": "nft inet filter input",
            "hook": "input",
            "priority": 0,
            "type": "filter",
            "policy": "drop",
            "devices": [],
            "dormant": False,
        }
    ]
    assert result.evidence["paths"][0] == {
        "family": "ipv4",
        "protocol": "tcp",
        "interface": "eth0",
        "verdict": "drop",
        "reason": "nft inet filter input (policy drop)",
        "unknown": [],
    }
    assert result.evidence["published"][0]["to"] == "198.18.7.2:80"
    assert result.evidence["published"][0]["allowed"] is False
    assert result.evidence["interfaces"] == ["eth0"]
    json.dumps(result.to_dict())


def test_each_open_protocol_is_named_in_both_languages() -> None:
    facts = replace(
        FIREWALL,
        paths=paths("accept", "nft inet filter input (policy accept)", families=("ipv4",))
        + paths("drop", "nft inet filter input (policy drop)", families=("ipv6",)),
    )
    (result,) = run_check(CHECK, HostFacts(firewall=facts))
    assert result.status is Status.FAIL
    assert result.message == (
        "IPv4 tcp/udp on eth0: a new connection to a port no rule names is accepted "
        "(nft inet filter input (policy accept))"
    )
    assert result.message_zh == (
        "IPv4 tcp/udp（接口 eth0）：发往未列明端口的新连接被放行，不符合（nft inet filter input "
        "(policy accept)）"
    )


def test_a_published_port_the_site_lists_passes() -> None:
    facts = HostFacts(firewall=replace(FIREWALL, published=(PUBLISHED,)))
    (result,) = run_check(CHECK, facts)
    assert result.status is Status.FAIL
    assert "allowed_published_ports" in result.message
    (result,) = run_check(CHECK, facts, {"allowed_published_ports": ["TCP/8080"]})
    assert result.status is Status.PASS, result.message
    assert "published as the site allows: tcp/8080" in result.message
    assert result.evidence["published"][0]["allowed"] is True


def test_an_unreadable_source_is_an_error_even_beside_a_drop() -> None:
    """A source not read may hold a DNAT that routes around the chains that were read."""
    facts = replace(FIREWALL, iptables_legacy=Unavailable("iptables-legacy-save: denied"))
    (result,) = run_check(CHECK, HostFacts(firewall=facts))
    assert result.status is Status.ERROR
    assert result.evidence["iptables_legacy"] == {"unavailable": "iptables-legacy-save: denied"}


def test_an_open_path_fails_even_when_another_cannot_be_decided() -> None:
    facts = replace(
        FIREWALL,
        paths=paths("accept", "nft ip6 filter INPUT (policy accept)", families=("ipv6",))
        + paths(
            "unknown",
            "nft ip filter INPUT (xt match conntrack)",
            families=("ipv4",),
            unknown=("xt",),
        ),
    )
    (result,) = run_check(CHECK, HostFacts(firewall=facts))
    assert result.status is Status.FAIL
    assert "IPv6" in result.message
    assert result.evidence["paths"][2]["unknown"] == ["xt"]
