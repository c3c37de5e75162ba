"""Firewall gatherer: parsers on captured real output, and `collect_firewall` against rulesets
loaded into a real kernel inside a network namespace each test creates and deletes.

The namespace adapter below is the real `LocalRunner` with `ip netns exec NS` in front of every
command: the gatherer runs unchanged, it just sees the namespace's netfilter tables.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.firewall import FirewallFacts, InputChain
from checks.host.firewall import firewall_default_deny
from checks.model import Status, Unavailable
from checks.runner import run_check
from inventory.host.firewall import (
    RulesetError,
    collect_firewall,
    iptables_backend,
    parse_iptables_save,
    parse_nft_json,
    parse_ufw_conf,
)
from inventory.runner import CommandResult, LocalRunner

RAW = Path(__file__).resolve().parent.parent / "fixtures" / "raw" / "firewall"


def _one(chains: tuple[InputChain, ...]) -> InputChain:
    assert len(chains) == 1, chains
    return chains[0]


# ----------------------------------------------------------------------------- parsers


def test_firewalld_rejects_at_the_end_of_its_input_chain() -> None:
    """firewalld's chain has policy accept; its last rule rejects what the zones did not take.
    The zone chain is reached by `goto`, which returns to filter_INPUT, not to the zone chain."""
    chain = _one(parse_nft_json((RAW / "nft_-j_list_ruleset_firewalld-public.json").read_text()))
    assert (chain.family, chain.table, chain.name) == ("inet", "firewalld", "filter_INPUT")
    assert chain.policy == "accept"
    assert (chain.default_ipv4, chain.default_ipv6) == ("reject", "reject")
    assert chain.final_rule is not None
    assert "reject" in chain.final_rule


def test_ufw_on_iptables_nft_is_seen_by_nft() -> None:
    chain = _one(parse_nft_json((RAW / "nft_-j_list_ruleset_ufw-iptables-nft.json").read_text()))
    assert (chain.family, chain.table, chain.name, chain.policy) == (
        "ip",
        "filter",
        "INPUT",
        "drop",
    )
    assert (chain.default_ipv4, chain.default_ipv6) == ("drop", None)


def test_iptables_save_follows_user_chains_to_the_policy() -> None:
    text = (RAW / "iptables-save_ufw-nft-backend.txt").read_text()
    chain = _one(parse_iptables_save(text, source="iptables", family="ip"))
    assert chain.policy == "drop"
    assert chain.default_ipv4 == "drop"
    assert chain.final_rule is None
    assert iptables_backend(text) == "nf_tables"


def test_legacy_iptables_save_with_counters_and_final_reject() -> None:
    text = (RAW / "iptables-legacy-save_-c_rhel7-reject.txt").read_text()
    chain = _one(parse_iptables_save(text, source="iptables-legacy", family="ip"))
    assert (chain.policy, chain.default_ipv4) == ("accept", "reject")
    assert chain.final_rule == "-j REJECT --reject-with icmp-host-prohibited"
    assert iptables_backend(text) == "legacy"


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
    chain = _one(parse_iptables_save(text, source="ip6tables", family="ip6"))
    # A comment selects nothing: the unconditional accept wins over the policy.
    assert (chain.default_ipv4, chain.default_ipv6) == (None, "accept")
    assert chain.final_rule is not None
    assert "-j ACCEPT" in chain.final_rule


def test_iptables_save_without_filter_table_has_no_input_chain() -> None:
    assert parse_iptables_save("", source="iptables", family="ip") == ()
    nat_only = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
    assert parse_iptables_save(nat_only, source="iptables", family="ip") == ()


def test_nft_json_that_is_not_a_ruleset_is_an_error() -> None:
    with pytest.raises(RulesetError):
        parse_nft_json("Error: syntax error")
    assert parse_nft_json("") == ()


def test_ufw_conf() -> None:
    assert parse_ufw_conf("# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n") is True
    assert parse_ufw_conf("ENABLED=no\n") is False


# ----------------------------------------------------------------------------- real kernel


class NetnsRunner(LocalRunner):
    """`LocalRunner` whose commands run inside network namespace `ns` (and, when `user` is set,
    as that unprivileged user, to meet the kernel's permission check)."""

    def __init__(self, ns: str, *, user: str | None = None, hide_legacy: bool = False) -> None:
        super().__init__()
        self.ns = ns
        self.user = user
        self.hide_legacy = hide_legacy

    def which(self, name: str) -> str | None:
        if self.hide_legacy and "-legacy" in name:
            return None
        return super().which(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        prefix = ["ip", "netns", "exec", self.ns]
        if self.user is not None:
            prefix += ["setpriv", f"--reuid={self.user}", "--regid=nogroup", "--clear-groups", "--"]
        return super().run(
            [*prefix, *argv], timeout=timeout, check=check, input_text=input_text, env=env
        )


def _sh(
    *argv: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(argv[0])
    if exe is None:
        pytest.skip(f"{argv[0]} is not installed")
    return subprocess.run(
        [exe, *argv[1:]], input=stdin, text=True, check=check, capture_output=True, timeout=30
    )


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages iproute2, nftables)")
    name = f"medsec-fw-{secrets.token_hex(4)}"
    proc = _sh("ip", "netns", "add", name, check=False)
    if proc.returncode != 0:
        pytest.skip(f"ip netns add failed: {proc.stderr.strip()}")
    try:
        yield name
    finally:
        _sh("ip", "netns", "delete", name, check=False)


def _load(ns: str, ruleset: str) -> FirewallFacts:
    _sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=ruleset)
    return collect_firewall(NetnsRunner(ns))


def _judge(facts: FirewallFacts) -> tuple[Status, str]:
    (result,) = run_check(firewall_default_deny, HostFacts(firewall=facts))
    return result.status, result.message


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
    chain = _one(facts.chains)
    assert (chain.source, chain.family, chain.name, chain.policy) == (
        "nft",
        "inet",
        "input",
        "drop",
    )
    assert (chain.default_ipv4, chain.default_ipv6) == ("drop", "drop")
    assert isinstance(facts.nft, str)
    assert facts.nft.startswith("nftables ")
    status, message = _judge(facts)
    assert status is Status.PASS, message
    assert "IPv4" in message
    assert "IPv6" in message


@pytest.mark.root
def test_accept_policy_fails_naming_the_chain(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY.replace("policy drop", "policy accept"))
    status, message = _judge(facts)
    assert status is Status.FAIL
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
    assert "IPv6 (ip6)" in message
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
    chain = _one(facts.chains)
    assert (chain.default_ipv4, chain.default_ipv6) == ("drop", "accept")
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "IPv6 (ip6)" in message


@pytest.mark.root
def test_unconditional_accept_before_the_policy_fails(netns: str) -> None:
    facts = _load(netns, DEFAULT_DENY.replace("meta l4proto { icmp, ipv6-icmp } accept", "accept"))
    assert _one(facts.chains).default_ipv4 == "accept"
    status, _ = _judge(facts)
    assert status is Status.FAIL


@pytest.mark.root
def test_nat_chain_on_input_is_not_a_filter(netns: str) -> None:
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
    assert facts.chains == ()


@pytest.mark.root
def test_empty_ruleset_fails(netns: str) -> None:
    facts = collect_firewall(NetnsRunner(netns))
    assert facts.chains == ()
    status, message = _judge(facts)
    assert status is Status.FAIL
    assert "no input filter chain at all" in message


@pytest.mark.root
def test_iptables_nft_backend_input_drop_passes(netns: str) -> None:
    if shutil.which("iptables-restore") is None:
        pytest.skip("iptables is not installed")
    rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    rules += "-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    _sh("ip", "netns", "exec", netns, "iptables-restore", stdin=rules)
    _sh("ip", "netns", "exec", netns, "ip6tables-restore", stdin=rules)
    save = _sh("ip", "netns", "exec", netns, "iptables-save")
    assert iptables_backend(save.stdout) == "nf_tables"  # Debian 12's default iptables
    facts = collect_firewall(NetnsRunner(netns))
    # iptables-nft writes nf_tables: nft lists both chains; the legacy tools see nothing.
    assert {(c.source, c.family, c.name) for c in facts.chains} == {
        ("nft", "ip", "INPUT"),
        ("nft", "ip6", "INPUT"),
    }
    status, message = _judge(facts)
    assert status is Status.PASS, message


@pytest.mark.root
def test_legacy_iptables_is_read_beside_nft(netns: str) -> None:
    if shutil.which("iptables-legacy") is None:
        pytest.skip("iptables-legacy is not installed")
    _sh("ip", "netns", "exec", netns, "iptables-legacy", "-P", "INPUT", "DROP")
    facts = collect_firewall(NetnsRunner(netns))
    chain = _one(facts.chains)
    assert (chain.source, chain.default_ipv4) == ("iptables-legacy", "drop")
    assert isinstance(facts.iptables_legacy, str)
    assert "backend legacy" in facts.iptables_legacy
    status, message = _judge(facts)
    assert status is Status.FAIL  # ip6 has no chain at all
    assert "IPv6 (ip6): no input filter chain" in message
    _sh("ip", "netns", "exec", netns, "ip6tables-legacy", "-P", "INPUT", "DROP")
    status, message = _judge(collect_firewall(NetnsRunner(netns)))
    assert status is Status.PASS, message


class OldIptablesRunner(NetnsRunner):
    """A host with iptables before 1.8 (Ubuntu 18.04, CentOS 7 with nft added): no `-legacy`
    names, and plain `iptables-save` is the legacy tool."""

    def which(self, name: str) -> str | None:
        return None if "-legacy" in name else super().which(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if argv[0] in {"iptables-save", "ip6tables-save"}:
            argv = [argv[0].replace("-save", "-legacy-save"), *argv[1:]]
        return super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)


@pytest.mark.root
def test_old_iptables_without_legacy_names_is_read_beside_nft(netns: str) -> None:
    if shutil.which("iptables-legacy") is None:
        pytest.skip("iptables-legacy is not installed")
    _sh("ip", "netns", "exec", netns, "iptables-legacy", "-P", "INPUT", "DROP")
    _sh("ip", "netns", "exec", netns, "ip6tables-legacy", "-P", "INPUT", "DROP")
    facts = collect_firewall(OldIptablesRunner(netns))
    assert {(c.source, c.family, c.policy) for c in facts.chains} == {
        ("iptables", "ip", "drop"),
        ("ip6tables", "ip6", "drop"),
    }
    assert facts.iptables_legacy is None
    assert isinstance(facts.iptables, str)
    assert "backend legacy" in facts.iptables
    # On Debian 12 plain iptables-save is iptables-nft: nft has listed it, it is not repeated.
    _sh("ip", "netns", "exec", netns, "iptables", "-P", "INPUT", "DROP")
    facts = collect_firewall(NetnsRunner(netns, hide_legacy=True))
    assert [(c.source, c.family) for c in facts.chains] == [("nft", "ip")]
    assert isinstance(facts.iptables, str)
    assert "iptables-save: backend nf_tables (listed by nft)" in facts.iptables


@pytest.mark.root
def test_no_permission_is_an_error(netns: str) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    facts = collect_firewall(NetnsRunner(netns, user="nobody"))
    assert isinstance(facts.nft, Unavailable)
    assert "Operation not permitted" in facts.nft.reason
    status, message = _judge(facts)
    assert status is Status.ERROR
    assert "unreadable" in message
