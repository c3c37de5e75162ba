"""Firewall gatherer: parsers and the inbound-path walk on output captured from real tools, and
`collect_firewall` against rulesets loaded into a real kernel inside a network namespace each
test creates and deletes (one interface, eth0, joined to a peer namespace).

The namespace adapter (`fwlab.NetnsRunner`) is the real `LocalRunner` with `ip netns exec NS`
in front of every command: the gatherer runs unchanged, it just sees the namespace's tables.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from checks.facts import HostFacts
from checks.facts.firewall import FirewallFacts, InboundPath
from checks.host.firewall import firewall_default_deny
from checks.model import Status, Unavailable
from checks.runner import run_check
from inventory.host.firewall import (
    Host,
    Ruleset,
    RulesetError,
    collect_firewall,
    inbound_paths,
    iptables_backend,
    parse_ip_address,
    parse_ip_route,
    parse_ipset_save,
    parse_nft_json,
    parse_nft_listing,
    parse_ufw_conf,
    published_ports,
    tables_from_save,
)
from inventory.runner import CommandResult
from tests.inventory.fwlab import LabError, NetnsRunner, Ufw, sh, tool

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "firewall"
HOST = Host(
    {"eth0": (ipaddress.ip_address("198.19.250.2"), ipaddress.ip_address("fd00:198:19:fa::2"))}
)


def _verdicts(paths: Sequence[InboundPath]) -> dict[tuple[str, str], str]:
    return {(p.family, p.protocol): p.verdict for p in paths}


def _one_way(paths: Sequence[InboundPath], family: str) -> InboundPath:
    (path, *_) = [p for p in paths if p.family == family]
    return path


# ----------------------------------------------------------------------------- parsers


def test_firewalld_rejects_at_the_end_of_its_input_chain() -> None:
    """firewalld's chain has policy accept; its last rule rejects what the zones did not take.
    The zone chain is reached by `goto`, which returns to filter_INPUT, not to the zone chain."""
    parsed = parse_nft_json((RAW / "nft_-j_list_ruleset_firewalld-public.json").read_text())
    ((_, chain),) = parsed.ruleset.base_chains()
    assert (chain.family, chain.table, chain.name, chain.policy) == (
        "inet",
        "firewalld",
        "filter_INPUT",
        "accept",
    )
    paths = inbound_paths(parsed.ruleset, HOST)
    assert set(_verdicts(paths).values()) == {"drop"}
    assert "reject with icmpx admin-prohibited" in _one_way(paths, "ipv6").reason


def test_xtables_matches_nft_cannot_show_are_not_guessed() -> None:
    """ufw on iptables-nft: nft's JSON names `xt conntrack` without its options. Read alone, the
    walk cannot tell what that rule accepts, and says so instead of guessing."""
    parsed = parse_nft_json((RAW / "nft_-j_list_ruleset_ufw-iptables-nft.json").read_text())
    assert parsed.xt_tables == {("ip", "filter")}
    path = _one_way(inbound_paths(parsed.ruleset, HOST), "ipv4")
    assert path.verdict == "unknown"
    assert any("xtables match" in u for u in path.unknown)


class RecordedRunner:
    """A `Runner` answering from output recorded on a real host: nft's JSON (which names ufw's
    xtables matches without their options) and iptables-nft-save's text of the same tables."""

    ANSWERS: ClassVar[dict[tuple[str, ...], str]] = {
        ("nft", "-j", "list", "ruleset"): "nft_-j_list_ruleset_ufw-default-allow.json",
        ("iptables-nft-save",): "iptables-nft-save_ufw-default-allow.txt",
        ("ip6tables-nft-save",): "ip6tables-nft-save_ufw-default-allow.txt",
    }
    ADDRESSES = (
        '[{"ifname": "eth0", "link_type": "ether", "addr_info": '
        '[{"family": "inet", "local": "198.19.250.2", "scope": "global"}]}]'
    )

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if tuple(argv) in self.ANSWERS:
            out = (RAW / self.ANSWERS[tuple(argv)]).read_text()
        elif tuple(argv) == ("ip", "-j", "address", "show"):
            out = self.ADDRESSES
        elif argv[0].endswith("-legacy-save"):
            out = ""
        else:
            raise AssertionError(f"unexpected command {argv}")
        return CommandResult(tuple(argv), 0, out, "")

    def which(self, name: str) -> str | None:
        return f"/usr/sbin/{name}" if name != "iptables-save" else None

    def read_text(self, path: str) -> str:
        assert path == "/etc/ufw/ufw.conf"
        return "ENABLED=yes\n"


def test_collect_reads_ufw_matches_back_in_iptables_syntax() -> None:
    facts = collect_firewall(RecordedRunner())  # type: ignore[arg-type]
    assert facts.ufw_enabled is True
    assert facts.iptables == (
        "iptables-nft-save: filter read in iptables syntax; "
        "ip6tables-nft-save: filter read in iptables syntax"
    )
    assert {c.source for c in facts.chains} == {"iptables-nft"}
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "ufw-track-input: -p tcp -m conntrack --ctstate NEW -j ACCEPT" in message


def test_ufw_default_allow_is_open_although_ufw_not_local_ends_in_drop() -> None:
    """ufw-not-local returns for local destinations; only non-local packets reach its DROP."""
    v4 = (RAW / "iptables-nft-save_ufw-default-allow.txt").read_text()
    v6 = (RAW / "ip6tables-nft-save_ufw-default-allow.txt").read_text()
    ruleset = Ruleset(
        tables_from_save(v4, source="iptables-nft", family="ip")
        + tables_from_save(v6, source="iptables-nft", family="ip6")
    )
    paths = inbound_paths(ruleset, HOST)
    assert set(_verdicts(paths).values()) == {"accept"}
    reason = _one_way(paths, "ipv4").reason
    assert "ufw-track-input: -p tcp -m conntrack --ctstate NEW -j ACCEPT" in reason
    assert iptables_backend(v4) == "nf_tables"


def test_iptables_save_follows_user_chains_to_the_policy() -> None:
    text = (RAW / "iptables-save_ufw-nft-backend.txt").read_text()
    ruleset = Ruleset(tables_from_save(text, source="iptables", family="ip"))
    path = _one_way(inbound_paths(ruleset, HOST), "ipv4")
    assert (path.verdict, path.reason) == ("drop", "iptables ip filter INPUT (policy drop)")
    # Nothing filters IPv6 in this listing.
    assert _one_way(inbound_paths(ruleset, HOST), "ipv6").verdict == "accept"


def test_legacy_iptables_save_with_counters_and_final_reject() -> None:
    text = (RAW / "iptables-legacy-save_-c_rhel7-reject.txt").read_text()
    ruleset = Ruleset(tables_from_save(text, source="iptables-legacy", family="ip"))
    path = _one_way(inbound_paths(ruleset, HOST), "ipv4")
    assert path.verdict == "drop"
    assert "-j REJECT --reject-with icmp-host-prohibited" in path.reason
    assert iptables_backend(text) == "legacy"


def test_docker_published_port_bypasses_input() -> None:
    """INPUT drops, but the DNAT in nat PREROUTING sends the published port to FORWARD."""
    text = (RAW / "iptables-legacy-save_docker-published.txt").read_text()
    ruleset = Ruleset(tables_from_save(text, source="iptables-legacy", family="ip"))
    host = Host(
        {
            "eth0": (ipaddress.ip_address("198.19.250.2"),),
            "ctr0": (ipaddress.ip_address("198.19.100.1"),),
        },
        routes={"ipv4": parse_ip_route('[{"dst": "198.19.100.0/24", "dev": "ctr0"}]', "ipv4")},
        forwarding={"ipv4": True},
    )
    assert {p.verdict for p in inbound_paths(ruleset, host) if p.family == "ipv4"} == {"drop"}
    (port,) = [p for p in published_ports(ruleset, host) if p.interface == "eth0"]
    assert (port.protocol, port.port, port.to, port.verdict) == (
        "tcp",
        47200,
        "198.19.100.2:47201",
        "accept",
    )
    assert "DNAT --to-destination 198.19.100.2:47201" in port.rule
    assert "iptables-legacy ip filter FORWARD (-d 198.19.100.2/32" in port.reason
    # Without forwarding the kernel drops it after the DNAT.
    closed = Host(host.interfaces, routes=host.routes, forwarding={"ipv4": False})
    (port,) = [p for p in published_ports(ruleset, closed) if p.interface == "eth0"]
    assert (port.verdict, port.reason) == ("drop", "not forwarded (net.ipv4.ip_forward = 0)")
    # Packets from the container's own side are not rewritten.
    assert not [p for p in published_ports(ruleset, host) if p.interface == "ctr0"]


def test_iptables_save_conditions_and_comments() -> None:
    text = "\n".join(
        [
            "*filter",
            ":INPUT DROP [0:0]",
            ":FORWARD ACCEPT [0:0]",
            "-A INPUT -p tcp --dport 22 -j ACCEPT",
            '-A INPUT -m comment --comment "allow all, temporary" -j ACCEPT',
            "-A INPUT -j DROP",
            "COMMIT",
        ]
    )
    ruleset = Ruleset(tables_from_save(text, source="iptables", family="ip6"))
    # A comment selects nothing: the unconditional accept wins over the policy.
    path = _one_way(inbound_paths(ruleset, HOST), "ipv6")
    assert path.verdict == "accept"
    assert "-j ACCEPT" in path.reason
    assert _one_way(inbound_paths(ruleset, HOST), "ipv4").reason == "no base chain filters it"


def test_unknown_match_on_an_accept_is_unknown_but_on_a_drop_is_followed() -> None:
    """An ipset's contents are not read: an accept resting on one cannot be judged; a drop
    resting on one is followed both ways, and the policy behind it decides."""
    accept = (
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set office src -j ACCEPT\nCOMMIT\n"
    )
    path = _one_way(
        inbound_paths(Ruleset(tables_from_save(accept, source="iptables", family="ip")), HOST),
        "ipv4",
    )
    assert path.verdict == "unknown"
    assert path.unknown == ("-m set --match-set office src (its contents were not read)",)
    drop = "*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set blocked src -j DROP\nCOMMIT\n"
    path = _one_way(
        inbound_paths(Ruleset(tables_from_save(drop, source="iptables", family="ip")), HOST), "ipv4"
    )
    assert path.verdict == "drop"


def test_ipset_contents_decide_set_matches() -> None:
    """Docker 28 lets published traffic through FORWARD only toward its bridges' ipset; with the
    set read, the walk follows it like any address match."""
    sets = parse_ipset_save(
        "create docker-ext-bridges-v4 hash:net family inet hashsize 1024 maxelem 65536\n"
        "add docker-ext-bridges-v4 198.19.100.0/24\n"
        "create office hash:ip family inet hashsize 1024 maxelem 65536\n"
        "add office 198.18.250.9\n"
        "create knock hash:ip family inet timeout 30\n"
        "create ports bitmap:port range 0-1023\n"
    )
    assert sets["knock"].dynamic
    assert sets["ports"].rhs is None
    text = "\n".join(
        [
            "*filter",
            ":INPUT DROP [0:0]",
            "-A INPUT -m set --match-set office src -j ACCEPT",
            "-A INPUT -m set ! --match-set docker-ext-bridges-v4 dst -j DROP",
            "-A INPUT -j ACCEPT",
            "COMMIT",
        ]
    )
    ruleset = Ruleset(tables_from_save(text, source="iptables", family="ip", ipsets=sets))
    # The office host is a named source; every local address is outside the bridges' set.
    assert _one_way(inbound_paths(ruleset, HOST), "ipv4").verdict == "drop"
    knock = text.replace("match-set office src", "match-set knock src")
    ruleset = Ruleset(tables_from_save(knock, source="iptables", family="ip", ipsets=sets))
    # Whoever knocks is let in: a set filled at run time may hold any source.
    assert _one_way(inbound_paths(ruleset, HOST), "ipv4").verdict == "accept"


def test_nft_json_that_is_not_a_ruleset_is_an_error() -> None:
    with pytest.raises(RulesetError):
        parse_nft_json("Error: syntax error")
    assert parse_nft_json("").ruleset.tables == []


def test_nft_1_0_6_breaks_its_json_on_a_table_flag() -> None:
    """Debian 12's nft prints a table's flags from uninitialised memory; with a dormant table
    the JSON can stop halfway. The plain listing still says `flags dormant`."""
    with pytest.raises(RulesetError):
        parse_nft_json((RAW / "nft_-j_list_ruleset_dormant-broken.json").read_text())
    flags, devices = parse_nft_listing((RAW / "nft_list_ruleset_dormant.txt").read_text())
    assert flags == {("inet", "t0"): {"dormant"}, ("ip", "t1"): set()}
    assert devices == {}


def test_nft_listing_names_ingress_devices() -> None:
    listing = (
        "table netdev edge {\n\tchain ing {\n"
        '\t\ttype filter hook ingress device "eth0" priority filter; policy drop;\n\t}\n'
        "\tchain two {\n\t\ttype filter hook ingress devices = { eth0, eth1 } priority 5; "
        "policy accept;\n"
        "\t}\n}\n"
    )
    _, devices = parse_nft_listing(listing)
    assert devices == {
        ("netdev", "edge", "ing"): ("eth0",),
        ("netdev", "edge", "two"): ("eth0", "eth1"),
    }


def test_ip_address_and_route_listings() -> None:
    text = json.dumps(
        [
            {
                "ifname": "lo",
                "link_type": "loopback",
                "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}],
            },
            {
                "ifname": "eth0",
                "link_type": "ether",
                "addr_info": [
                    {"family": "inet", "local": "198.19.250.2", "scope": "global"},
                    {"family": "inet6", "local": "fe80::2", "scope": "link"},
                ],
            },
            {"ifname": "veth1", "link_type": "ether", "master": "docker0", "addr_info": []},
        ]
    )
    assert parse_ip_address(text) == {
        "eth0": (ipaddress.ip_address("198.19.250.2"), ipaddress.ip_address("fe80::2"))
    }
    routes = parse_ip_route(
        '[{"dst": "default", "dev": "eth0"}, {"dst": "198.18.0.0/16", "type": "blackhole"}]', "ipv6"
    )
    assert routes == [(ipaddress.ip_network("::/0"), "eth0")]


def test_ufw_conf() -> None:
    assert parse_ufw_conf("# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n") is True
    assert parse_ufw_conf("ENABLED=no\n") is False


# ----------------------------------------------------------------------------- real kernel


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for name in ("ip", "nft"):
        if tool(name) is None:
            pytest.skip(f"{name} is not installed (Debian packages iproute2, nftables)")
    name = f"medsec-fw-{secrets.token_hex(4)}"
    peer = f"{name}-p"
    try:
        sh(["ip", "netns", "add", name])
        sh(["ip", "netns", "add", peer])
    except LabError as exc:
        pytest.skip(f"ip netns add failed: {exc}")
    try:
        sh(
            [
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer,
            ]
        )
        sh(
            ["ip", "-n", name, "-batch", "-"],
            "link set lo up\naddr add 198.19.250.2/24 dev eth0\n"
            "addr add fd00:198:19:fa::2/64 dev eth0 nodad\nlink set eth0 up\n",
        )
        yield name
    finally:
        sh(["ip", "netns", "delete", name], check=False)
        sh(["ip", "netns", "delete", peer], check=False)


def _load(ns: str, ruleset: str) -> FirewallFacts:
    sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], ruleset)
    return collect_firewall(NetnsRunner(ns))


def _judge(facts: FirewallFacts, **params: object) -> tuple[Status, str]:
    (result,) = run_check(firewall_default_deny, HostFacts(firewall=facts), params)
    return result.status, result.message


def _need(*names: str) -> None:
    for name in names:
        if tool(name) is None:
            pytest.skip(f"{name} is not installed")


DEFAULT_DENY = """
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 ct state new accept
        meta l4proto { icmp, ipv6-icmp } accept
    }
}
"""


@pytest.mark.root
def test_default_deny_inet_ruleset_passes(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY)
    ((chain), *_) = facts.chains
    assert (chain.source, chain.family, chain.name, chain.hook, chain.policy) == (
        "nft",
        "inet",
        "input",
        "input",
        "drop",
    )
    assert facts.interfaces == ("eth0",)
    assert set(_verdicts(facts.paths).values()) == {"drop"}
    assert isinstance(facts.nft, str)
    assert facts.nft.startswith("nftables ")
    status, message = _judge(facts)
    assert status is Status.PASS, message
    assert "IPv4 by nft inet filter input (policy drop)" in message
    assert "IPv6" in message


@pytest.mark.root
def test_accept_policy_fails_naming_the_chain(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY.replace("policy drop", "policy accept"))
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv4 tcp/udp on eth0" in message
    assert "nft inet filter input (policy accept)" in message


@pytest.mark.root
def test_ipv4_only_drop_leaves_ip6_open(netns: str) -> None:
    facts = _load(
        netns,
        """
        table ip filter {
            chain INPUT {
                type filter hook input priority filter; policy drop;
                tcp dport 22 accept
            }
        }
        table ip6 filter {
            chain INPUT {
                type filter hook input priority filter; policy accept;
            }
        }
        """,
    )
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv6 tcp/udp on eth0" in message
    assert "nft ip6 filter INPUT (policy accept)" in message
    assert "IPv4" not in message


@pytest.mark.root
def test_inet_drop_for_ipv4_only_leaves_ip6_open(netns: str) -> None:
    facts = _load(
        netns,
        """
        table inet filter {
            chain input {
                type filter hook input priority filter; policy accept;
                tcp dport 22 accept
                meta nfproto ipv4 counter drop
            }
        }
        """,
    )
    assert _verdicts(facts.paths) == {
        ("ipv4", "tcp"): "drop",
        ("ipv4", "udp"): "drop",
        ("ipv6", "tcp"): "accept",
        ("ipv6", "udp"): "accept",
    }
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv6" in message


@pytest.mark.root
def test_unconditional_accept_before_the_policy_fails(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY.replace("meta l4proto { icmp, ipv6-icmp } accept", "accept"))
    assert set(_verdicts(facts.paths).values()) == {"accept"}
    status, _ = _judge(facts)
    assert status is Status.FAIL


@pytest.mark.root
def test_accepting_everything_on_the_only_interface_opens_the_host(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY.replace('iif "lo" accept', 'iifname "eth0" accept'))
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "meta iifname eth0 accept" in message


@pytest.mark.root
def test_dormant_table_filters_nothing(netns: str) -> None:
    """The dormant table's drop policy stops nothing; nft 1.0.6's JSON for it may be broken, and
    the ruleset is then read chain by chain."""
    facts = _load(
        netns,
        DEFAULT_DENY.replace("table inet filter {", "table inet filter {\n    flags dormant")
        + "table ip6 t6 { chain i { type filter hook input priority 0; policy drop; }; }\n",
    )
    assert {c.table: c.dormant for c in facts.chains} == {"filter": True, "t6": False}
    assert _verdicts(facts.paths) == {
        ("ipv4", "tcp"): "accept",
        ("ipv4", "udp"): "accept",
        ("ipv6", "tcp"): "drop",
        ("ipv6", "udp"): "drop",
    }
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv4 tcp/udp on eth0" in message


class BrokenJsonRunner(NetnsRunner):
    """Answers `nft -j list ruleset` as Debian 12's nft did for this very ruleset (the recorded
    output, cut off at the dormant table's flags); every other command runs for real."""

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if list(argv) == ["nft", "-j", "list", "ruleset"]:
            broken = (RAW / "nft_-j_list_ruleset_dormant-broken.json").read_text()
            return CommandResult(tuple(argv), 0, broken, "")
        return super().run(argv, **kwargs)


@pytest.mark.root
def test_broken_ruleset_json_is_read_chain_by_chain(netns: str) -> None:
    facts = _load(netns, (RAW / "dormant.nft").read_text())
    facts = collect_firewall(BrokenJsonRunner(netns))
    assert isinstance(facts.nft, str)
    assert "listed chain by chain" in facts.nft
    assert {(c.table, c.name): c.dormant for c in facts.chains} == {
        ("t0", "b0"): True,
        ("t1", "b0"): False,
    }
    assert _verdicts(facts.paths) == {
        ("ipv4", "tcp"): "drop",  # t1: tcp jumps to c10, which drops
        ("ipv4", "udp"): "accept",
        ("ipv6", "tcp"): "accept",  # only the dormant table would have seen IPv6
        ("ipv6", "udp"): "accept",
    }


@pytest.mark.root
def test_verdict_map_sends_each_family_to_its_chain(netns: str) -> None:
    facts = _load(
        netns,
        """
        table inet filter {
            chain in4 { tcp dport 22 accept; drop; }
            chain in6 { ip6 saddr fd00:198:18:fa::/64 accept; }
            chain input {
                type filter hook input priority 0; policy accept;
                meta nfproto vmap { ipv4 : jump in4, ipv6 : jump in6 }
            }
        }
        """,
    )
    assert _verdicts(facts.paths)[("ipv4", "tcp")] == "drop"
    assert _verdicts(facts.paths)[("ipv6", "tcp")] == "accept"
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv6" in message
    assert "IPv4" not in message


@pytest.mark.root
def test_drops_in_prerouting_and_ingress_count(netns: str) -> None:
    facts = _load(
        netns,
        """
        table netdev edge {
            chain ing { type filter hook ingress device "eth0" priority 0; policy accept;
                meta protocol ip6 drop
            }
        }
        table ip raw {
            chain pre { type filter hook prerouting priority raw; policy accept;
                iifname "eth0" tcp dport 22 accept
                iifname "eth0" drop
            }
        }
        """,
    )
    assert {(c.hook, c.devices) for c in facts.chains} == {
        ("ingress", ("eth0",)),
        ("prerouting", ()),
    }
    status, message = _judge(facts)
    assert status is Status.PASS, message
    assert "nft netdev edge ing (handle" in message
    assert "nft ip raw pre (handle" in message


@pytest.mark.root
def test_published_port_fails_unless_the_site_lists_it(netns: str) -> None:
    facts = _load(
        netns,
        """
        table ip nat {
            chain pre { type nat hook prerouting priority dstnat; policy accept;
                tcp dport 8443 dnat to 198.19.250.9:443
            }
        }
        table inet filter {
            chain input { type filter hook input priority 0; policy drop; }
            chain forward_filter { type filter hook forward priority 0; policy accept; }
        }
        """,
    )
    sh(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    facts = collect_firewall(NetnsRunner(netns))
    (port,) = facts.published
    assert (port.family, port.protocol, port.port, port.to, port.verdict) == (
        "ipv4",
        "tcp",
        8443,
        "198.19.250.9:443",
        "accept",
    )
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "tcp/8443 (IPv4) is published to 198.19.250.9:443" in message
    status, message = _judge(facts, allowed_published_ports=["tcp/8443"])
    assert status is Status.PASS, message


@pytest.mark.root
def test_docker_nftables_backend_publishes_through_its_verdict_maps(netns: str) -> None:
    """Docker's own nftables ruleset (moby's generated documentation, addresses moved into the
    lab range): the published port reaches FORWARD, whose `oifname vmap @filter-forward-in-jumps`
    sends it to the bridge's chain, which accepts it."""
    sh(
        ["ip", "-n", netns, "-batch", "-"],
        "link add docker0 type bridge\nlink add bridge1 type bridge\n"
        "addr add 198.18.172.1/16 dev docker0\naddr add 198.19.200.1/24 dev bridge1\n"
        "link set docker0 up\nlink set bridge1 up\n",
    )
    sh(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    facts = _load(netns, (RAW / "moby-nftables-usernet-portmap-noproxy.nft").read_text())
    (port,) = [p for p in facts.published if p.interface == "eth0"]
    assert (port.protocol, port.port, port.to, port.verdict) == (
        "tcp",
        8080,
        "198.19.200.2:80",
        "accept",
    )
    assert "filter-forward-in__bridge1: handle" in port.reason
    assert "ip daddr 198.19.200.2 tcp dport 80 accept" in port.reason
    status, message = _judge(facts, allowed_published_ports=["tcp/8080"])
    assert status is Status.FAIL  # nothing filters input at all
    assert "published" not in message


@pytest.mark.root
def test_a_construct_not_understood_is_an_error_naming_it(netns: str) -> None:
    facts = _load(
        netns,
        """
        table inet filter {
            chain input { type filter hook input priority 0; policy drop;
                meta cgroup 7 accept
            }
        }
        """,
    )
    status, message = _judge(facts)
    assert status is Status.ERROR
    assert "meta cgroup" in message


@pytest.mark.root
def test_nat_chain_on_input_filters_nothing_by_itself(netns: str) -> None:
    facts = _load(
        netns,
        """
        table ip nat {
            chain snat_in {
                type nat hook input priority 100; policy accept;
            }
        }
        """,
    )
    assert [(c.type, c.hook) for c in facts.chains] == [("nat", "input")]
    assert set(_verdicts(facts.paths).values()) == {"accept"}


@pytest.mark.root
def test_empty_ruleset_fails(netns: str) -> None:
    facts = collect_firewall(NetnsRunner(netns))
    assert facts.chains == ()
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "no base chain on the inbound path" in message


@pytest.mark.root
def test_iptables_nft_backend_input_drop_passes(netns: str) -> None:
    _need("iptables-restore", "ip6tables-restore")
    rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    rules += "-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    sh(["ip", "netns", "exec", netns, "iptables-restore"], rules)
    sh(["ip", "netns", "exec", netns, "ip6tables-restore"], rules)
    save = sh(["ip", "netns", "exec", netns, "iptables-save"])
    assert iptables_backend(save.stdout) == "nf_tables"  # Debian 12's default iptables
    facts = collect_firewall(NetnsRunner(netns))
    # iptables-nft writes nf_tables: nft lists both chains; the legacy tools see nothing.
    assert {(c.source, c.family, c.name) for c in facts.chains if c.hook == "input"} == {
        ("nft", "ip", "INPUT"),
        ("nft", "ip6", "INPUT"),
    }
    status, message = _judge(facts)
    assert status is Status.PASS, message


@pytest.mark.root
def test_xtables_matches_are_read_back_from_iptables_nft_save(netns: str) -> None:
    _need("iptables-nft-restore")
    rules = "*filter\n:INPUT ACCEPT [0:0]\n:local - [0:0]\n-A INPUT -j local\n"
    rules += "-A local -m addrtype --dst-type LOCAL -j RETURN\n-A local -j DROP\nCOMMIT\n"
    sh(["ip", "netns", "exec", netns, "iptables-nft-restore"], rules)
    facts = collect_firewall(NetnsRunner(netns))
    assert isinstance(facts.iptables, str)
    assert "iptables-nft-save: filter read in iptables syntax" in facts.iptables
    # The conditional RETURN takes every packet for this host back to INPUT, whose policy accepts.
    assert _verdicts(facts.paths)[("ipv4", "tcp")] == "accept"
    # Without iptables-nft-save, the addrtype match cannot be read: error, not a guess.
    facts = collect_firewall(NetnsRunner(netns, hide=("-nft-save",)))
    (path,) = [p for p in facts.paths if (p.family, p.protocol) == ("ipv4", "tcp")]
    assert path.verdict == "unknown"
    assert path.unknown == ("xtables match addrtype (options not shown by nft -j)",)


@pytest.mark.root
def test_ufw_default_allow_and_deny_in_the_namespace(netns: str, tmp_path: Path) -> None:
    _need("ufw", "iptables-nft-restore")
    ufw = Ufw(tmp_path)
    ufw.run(netns, "nft", "yes", "allow", ["allow 22/tcp"])
    status, message = _judge(collect_firewall(NetnsRunner(netns)))
    assert status is Status.FAIL
    assert "ufw-track-input" in message
    ufw.run(netns, "nft", "yes", "deny", [])
    status, message = _judge(collect_firewall(NetnsRunner(netns)))
    assert status is Status.PASS, message


@pytest.mark.root
def test_ipset_matches_are_judged_by_the_sets_contents(netns: str) -> None:
    _need("ipset", "iptables-nft-restore", "ip6tables-nft-restore")
    sh(
        ["ip", "netns", "exec", netns, "ipset", "restore"],
        "create office hash:ip family inet\nadd office 198.18.250.9\n",
    )
    rules = "*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set office src -j ACCEPT\nCOMMIT\n"
    sh(["ip", "netns", "exec", netns, "iptables-nft-restore"], rules)
    sh(
        ["ip", "netns", "exec", netns, "ip6tables-nft-restore"],
        "*filter\n:INPUT DROP [0:0]\nCOMMIT\n",
    )
    facts = collect_firewall(NetnsRunner(netns))
    assert facts.ipset == "ipset save: 1 set(s)"
    status, message = _judge(facts)
    assert status is Status.PASS, message
    # Without the ipset tool the set cannot be read, and the accept resting on it is undecided.
    facts = collect_firewall(NetnsRunner(netns, hide=("ipset",)))
    assert facts.ipset == "ipset is not installed: -m set matches not followed"
    status, message = _judge(facts)
    assert status is Status.ERROR
    assert "--match-set office src (its contents were not read)" in message


@pytest.mark.root
def test_legacy_iptables_is_read_beside_nft(netns: str) -> None:
    _need("iptables-legacy", "ip6tables-legacy")
    sh(["ip", "netns", "exec", netns, "iptables-legacy", "-P", "INPUT", "DROP"])
    facts = collect_firewall(NetnsRunner(netns))
    assert {(c.source, c.table, c.name) for c in facts.chains if c.hook == "input"} == {
        ("iptables-legacy", "filter", "INPUT")
    }
    assert isinstance(facts.iptables_legacy, str)
    assert "backend legacy" in facts.iptables_legacy
    status, message = _judge(facts)
    assert status is Status.FAIL  # ip6 has no chain at all
    assert "IPv6 tcp/udp on eth0" in message
    sh(["ip", "netns", "exec", netns, "ip6tables-legacy", "-P", "INPUT", "DROP"])
    status, message = _judge(collect_firewall(NetnsRunner(netns)))
    assert status is Status.PASS, message


class OldIptablesRunner(NetnsRunner):
    """A host with iptables before 1.8 (Ubuntu 18.04, CentOS 7 with nft added): no `-legacy`
    names, and plain `iptables-save` is the legacy tool."""

    def __init__(self, ns: str) -> None:
        super().__init__(ns, hide=("-legacy",))

    def run(self, argv: Sequence[str], **kwargs: object):  # type: ignore[no-untyped-def, override]
        if argv[0] in {"iptables-save", "ip6tables-save"}:
            argv = [argv[0].replace("-save", "-legacy-save"), *argv[1:]]
        return super().run(argv, **kwargs)  # type: ignore[arg-type]


@pytest.mark.root
def test_old_iptables_without_legacy_names_is_read_beside_nft(netns: str) -> None:
    _need("iptables-legacy", "ip6tables-legacy")
    sh(["ip", "netns", "exec", netns, "iptables-legacy", "-P", "INPUT", "DROP"])
    sh(["ip", "netns", "exec", netns, "ip6tables-legacy", "-P", "INPUT", "DROP"])
    facts = collect_firewall(OldIptablesRunner(netns))
    assert {(c.source, c.family, c.policy) for c in facts.chains if c.hook == "input"} == {
        ("iptables", "ip", "drop"),
        ("iptables", "ip6", "drop"),
    }
    assert facts.iptables_legacy is None
    assert isinstance(facts.iptables, str)
    assert "backend legacy" in facts.iptables
    # On Debian 12 plain iptables-save is iptables-nft: nft has listed it, it is not repeated.
    sh(["ip", "netns", "exec", netns, "iptables", "-P", "INPUT", "DROP"])
    facts = collect_firewall(NetnsRunner(netns, hide=("-legacy",)))
    assert [(c.source, c.family) for c in facts.chains if c.hook == "input"] == [("nft", "ip")]
    assert isinstance(facts.iptables, str)
    assert "iptables-save: backend nf_tables (listed by nft)" in facts.iptables


@pytest.mark.root
def test_no_permission_is_an_error(netns: str) -> None:
    _need("setpriv")
    facts = collect_firewall(NetnsRunner(netns, user="nobody"))
    assert isinstance(facts.nft, Unavailable)
    assert "Operation not permitted" in facts.nft.reason
    status, message = _judge(facts)
    assert status is Status.ERROR
    assert "unreadable" in message
