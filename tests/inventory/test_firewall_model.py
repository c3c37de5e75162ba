"""The inbound-path walk on hand-written rulesets, one kernel rule per test (no root needed):
gotos, jump depth, queues, marks, notrack, wide port ranges, source ports the sender chooses,
verdict maps and named sets from nft's JSON, netdev's `meta nfproto`, REDIRECT, statements not
understood, and a host whose interfaces could not be listed. The differential test proves the
same walk against packets; these name the rule when it breaks."""

from __future__ import annotations

import ipaddress
import itertools
import json
from typing import Any

from checks.facts.firewall import InboundPath
from inventory.host.firewall import (
    Host,
    Ruleset,
    inbound_paths,
    parse_nft_json,
    published_ports,
    tables_from_save,
)

HOST = Host(
    {"eth0": (ipaddress.ip_address("198.19.250.2"), ipaddress.ip_address("fd00:198:19:fa::2"))}
)


def _xt(*lines: str, table: str = "filter", policy: str = "DROP", chains: str = "") -> Ruleset:
    head = [f"*{table}"]
    if table == "filter":
        head.append(f":INPUT {policy} [0:0]")
    else:
        head.append(f":PREROUTING {policy} [0:0]")
    head += [f":{c} - [0:0]" for c in chains.split()]
    text = "\n".join([*head, *lines, "COMMIT", ""])
    return Ruleset(tables_from_save(text, source="iptables", family="ip"))


def _v4(ruleset: Ruleset, host: Host = HOST, protocol: str = "tcp") -> InboundPath:
    (path,) = [
        p for p in inbound_paths(ruleset, host) if (p.family, p.protocol) == ("ipv4", protocol)
    ]
    return path


def _nft(*objects: dict[str, Any]) -> Ruleset:
    return parse_nft_json(json.dumps({"nftables": list(objects)})).ruleset


def _table(family: str = "inet", name: str = "t") -> dict[str, Any]:
    return {"table": {"family": family, "name": name}}


def _chain(name: str, family: str = "inet", **hook: Any) -> dict[str, Any]:
    return {"chain": {"family": family, "table": "t", "name": name, **hook}}


def _rule(chain: str, *expr: dict[str, Any], family: str = "inet") -> dict[str, Any]:
    return {
        "rule": {"family": family, "table": "t", "chain": chain, "handle": 1, "expr": list(expr)}
    }


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


INPUT_DROP = {"type": "filter", "hook": "input", "prio": 0, "policy": "drop"}


def test_goto_returns_to_the_caller_of_the_chain_that_went() -> None:
    ruleset = _xt(
        "-A INPUT -j a",
        "-A INPUT -j ACCEPT",
        "-A a -g b",
        "-A a -j DROP",  # skipped: b's end returns to INPUT, not to a
        chains="a b",
    )
    path = _v4(ruleset)
    assert (path.verdict, path.reason) == ("accept", "iptables ip filter INPUT (-j ACCEPT)")


def test_conditional_return_for_local_destinations() -> None:
    ruleset = _xt(
        "-A INPUT -j not-local",
        "-A not-local -m addrtype --dst-type LOCAL -j RETURN",
        "-A not-local -j DROP",
        policy="ACCEPT",
        chains="not-local",
    )
    assert _v4(ruleset).verdict == "accept"


def test_jumps_deeper_than_the_kernel_allows_are_not_followed() -> None:
    names = [f"c{i}" for i in range(20)]
    lines = ["-A INPUT -j c0"] + [f"-A {a} -j {b}" for a, b in itertools.pairwise(names)]
    path = _v4(_xt(*lines, chains=" ".join(names)))
    assert path.verdict == "unknown"
    assert "deeper than 16" in path.unknown[0]


def test_a_queue_to_user_space_cannot_be_judged() -> None:
    path = _v4(_xt("-A INPUT -p tcp -j NFQUEUE --queue-num 1"))
    assert (path.verdict, path.unknown) == ("unknown", ("queue to a user-space program",))
    assert _v4(_xt("-A INPUT -p tcp -j NFQUEUE --queue-num 1"), protocol="udp").verdict == "drop"


def test_a_statement_not_understood_makes_what_follows_uncertain() -> None:
    path = _v4(_xt("-A INPUT -p tcp -j TPROXY --on-port 3128", "-A INPUT -j DROP"))
    assert (path.verdict, path.unknown) == ("unknown", ("-j TPROXY",))


def test_a_wide_port_range_opens_a_port_no_rule_names_a_narrow_one_does_not() -> None:
    assert _v4(_xt("-A INPUT -p tcp -m tcp --dport 1024:65535 -j ACCEPT")).verdict == "accept"
    assert _v4(_xt("-A INPUT -p tcp -m tcp --dport 6000:6063 -j ACCEPT")).verdict == "drop"
    assert _v4(_xt("-A INPUT -p tcp -m tcp ! --dport 22 -j ACCEPT")).verdict == "accept"


def test_a_source_port_is_the_senders_choice() -> None:
    path = _v4(_xt("-A INPUT -p udp -m udp --sport 53 -j ACCEPT"), protocol="udp")
    assert path.verdict == "accept"


def test_named_sources_are_allowed_communication_wide_ones_are_not() -> None:
    assert _v4(_xt("-A INPUT -s 198.18.250.0/24 -j ACCEPT")).verdict == "drop"
    assert _v4(_xt("-A INPUT ! -s 198.18.250.0/24 -j ACCEPT")).verdict == "accept"
    assert _v4(_xt("-A INPUT -s 0.0.0.0/1 -j ACCEPT")).verdict == "accept"


def test_mark_and_notrack_set_before_input_are_seen_there() -> None:
    mark = _xt("-A PREROUTING -j MARK --set-mark 0x1", table="mangle", policy="ACCEPT")
    mark.tables += _xt("-A INPUT -m mark --mark 0x1 -j ACCEPT").tables
    assert _v4(mark).verdict == "accept"
    raw = _xt("-A PREROUTING -p tcp -j CT --notrack", table="raw", policy="ACCEPT")
    raw.tables += _xt(
        "-A INPUT -m conntrack --ctstate NEW -j DROP",
        "-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT",
    ).tables
    assert _v4(raw).verdict == "accept"
    assert _v4(raw, protocol="udp").verdict == "drop"


def test_an_ipset_on_an_accept_is_unknown_on_a_drop_it_is_followed() -> None:
    path = _v4(_xt("-A INPUT -m set --match-set office src -j ACCEPT"))
    assert path.verdict == "unknown"
    assert _v4(_xt("-A INPUT -m set --match-set bad src -j DROP", policy="DROP")).verdict == "drop"


def test_verdict_map_and_named_sets_from_nft_json() -> None:
    ruleset = _nft(
        _table(),
        {
            "map": {
                "family": "inet",
                "table": "t",
                "name": "by_proto",
                "type": "inet_proto",
                "map": "verdict",
                "elem": [["tcp", {"jump": {"target": "tcp_in"}}], ["udp", {"accept": None}]],
            }
        },
        {
            "set": {
                "family": "inet",
                "table": "t",
                "name": "ports",
                "type": "inet_service",
                "flags": ["interval"],
                "elem": [{"range": [1024, 65535]}],
            }
        },
        _chain("tcp_in"),
        _chain("input", **INPUT_DROP),
        _rule(
            "tcp_in",
            _match({"payload": {"protocol": "tcp", "field": "dport"}}, "@ports"),
            {"accept": None},
        ),
        _rule("input", {"vmap": {"key": {"meta": {"key": "l4proto"}}, "data": "@by_proto"}}),
    )
    paths = {(p.family, p.protocol): p.verdict for p in inbound_paths(ruleset, HOST)}
    assert paths == {
        ("ipv4", "tcp"): "accept",  # the wide range in @ports may hold the port
        ("ipv4", "udp"): "accept",
        ("ipv6", "tcp"): "accept",
        ("ipv6", "udp"): "accept",
    }


def test_netdev_meta_nfproto_is_never_an_ip_family() -> None:
    ruleset = _nft(
        _table("netdev"),
        {
            "chain": {
                "family": "netdev",
                "table": "t",
                "name": "ing",
                "type": "filter",
                "hook": "ingress",
                "prio": 0,
                "policy": "accept",
                "dev": "eth0",
            }
        },
        _rule("ing", _match({"meta": {"key": "nfproto"}}, "ipv4"), {"drop": None}, family="netdev"),
    )
    assert _v4(ruleset).verdict == "accept"


def test_redirect_publishes_a_port_to_the_host_itself() -> None:
    ruleset = _nft(
        _table("ip"),
        _chain("pre", family="ip", type="nat", hook="prerouting", prio=-100, policy="accept"),
        _chain("input", family="ip", **INPUT_DROP),
        _rule(
            "pre",
            _match({"payload": {"protocol": "tcp", "field": "dport"}}, 80),
            {"redirect": {"port": 8080}},
            family="ip",
        ),
        _rule(
            "input",
            _match({"payload": {"protocol": "tcp", "field": "dport"}}, 8080),
            {"accept": None},
            family="ip",
        ),
    )
    (port,) = published_ports(ruleset, HOST)
    assert (port.protocol, port.port, port.to, port.verdict) == ("tcp", 80, "local:8080", "accept")
    assert _v4(ruleset).verdict == "drop"


def test_xtables_target_nft_cannot_show_is_not_guessed() -> None:
    ruleset = _nft(
        _table("ip"),
        _chain("INPUT", family="ip", **INPUT_DROP),
        _rule("INPUT", {"xt": {"type": "target", "name": "TPROXY"}}, family="ip"),
    )
    path = _v4(ruleset)
    assert path.verdict == "unknown"
    assert path.unknown == ("xtables target TPROXY (options not shown by nft -j)",)


def test_interfaces_not_listed_make_interface_matches_uncertain() -> None:
    blind = Host(None)
    path = _v4(_xt("-A INPUT -i lo -j ACCEPT"), blind)
    assert (path.interface, path.verdict) == ("*", "drop")  # judged packets never come from lo
    path = _v4(_xt("-A INPUT -i eth0 -j ACCEPT"), blind)
    assert path.verdict == "unknown"
    assert "were not listed" in path.unknown[0]
    assert _v4(_xt("-A INPUT -i eth0 -j ACCEPT")).verdict == "accept"


def test_a_map_whose_elements_cannot_be_read_is_not_judged() -> None:
    ruleset = _nft(
        _table(),
        {
            "map": {
                "family": "inet",
                "table": "t",
                "name": "odd",
                "type": "inet_proto",
                "map": "verdict",
                "elem": [["tcp", {"queue": {"num": 1}}]],
            }
        },
        _chain("input", **INPUT_DROP),
        _rule("input", {"vmap": {"key": {"meta": {"key": "l4proto"}}, "data": "@odd"}}),
    )
    path = _v4(ruleset)
    assert path.verdict == "unknown"
    assert path.unknown == ("meta l4proto vmap @odd (elements not understood)",)


def test_a_packet_for_another_interfaces_address_is_judged_too() -> None:
    """Linux takes a packet for any local address on any interface: dropping each interface's
    own address leaves the other one open through it."""
    host = Host(
        {
            "eth0": (ipaddress.ip_address("198.19.250.2"),),
            "eth1": (ipaddress.ip_address("198.19.251.2"),),
        }
    )
    ruleset = _xt(
        "-A INPUT -i eth0 -d 198.19.250.2 -j DROP",
        "-A INPUT -i eth1 -d 198.19.251.2 -j DROP",
        policy="ACCEPT",
    )
    verdicts = {p.interface: p.verdict for p in inbound_paths(ruleset, host) if p.family == "ipv4"}
    assert verdicts == {"eth0": "accept", "eth1": "accept"}


def test_a_jump_to_a_chain_not_listed_leaves_everything_after_it_undecided() -> None:
    ruleset = _nft(
        _table(),
        _chain("input", **INPUT_DROP),
        _rule("input", {"jump": {"target": "ghost"}}),
    )
    path = _v4(ruleset)
    assert (path.verdict, path.unknown) == (
        "unknown",
        ("jump to chain 'ghost' that is not listed",),
    )
