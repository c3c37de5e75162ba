"""Host firewall facts: every netfilter base chain a packet for this host crosses, and what the
kernel does with a new inbound connection to a port no rule names, per address family, transport
protocol and interface, evaluated over those chains as the kernel walks them.

A packet arriving on an interface crosses, in this order: the netdev (and inet) `ingress` chains
bound to that device, every `prerouting` chain, then — when its destination is local — every
`input` chain, or — when a DNAT sent it elsewhere — every `forward` and `postrouting` chain; on
each hook by priority. An accept ends one base chain only; a drop anywhere is final. A table with
the `dormant` flag filters nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

Family = Literal["ipv4", "ipv6"]
Protocol = Literal["tcp", "udp"]
PathVerdict = Literal["accept", "drop", "unknown"]
FirewallSource = Literal["nft", "iptables-nft", "iptables-legacy", "iptables"]


@dataclass(frozen=True)
class BaseChain:
    """A base chain on the inbound path (hooks ingress, prerouting, input, forward, postrouting)."""

    source: FirewallSource
    """Where its rules were read: `nft -j list ruleset`; `iptables-nft-save`/`ip6tables-nft-save`
    for nf_tables tables iptables-nft wrote with xtables matches that nft's JSON does not spell
    out; `iptables-legacy-save`/`ip6tables-legacy-save` for the legacy (x_tables) backend; plain
    `iptables-save`/`ip6tables-save` on hosts without nft."""
    family: str
    """nft table family (ip, ip6, inet, netdev); iptables counts as ip, ip6tables as ip6."""
    table: str
    """Table name."""
    name: str
    """Chain name."""
    hook: str
    """Netfilter hook: ingress, prerouting, input, forward or postrouting."""
    priority: int
    """Hook priority: lower runs first (raw -300, mangle -150, dstnat -100, filter 0)."""
    type: str
    """Chain type: filter or nat (a nat chain sees the first packet of each connection only)."""
    policy: Literal["accept", "drop"]
    """What a packet no rule decided gets at the end of the chain."""
    devices: tuple[str, ...]
    """The devices an ingress chain is bound to; empty on the other hooks."""
    dormant: bool
    """The table carries the `dormant` flag: its chains are switched off and filter nothing."""


@dataclass(frozen=True)
class InboundPath:
    """What the first packet of a new connection from an address no rule names, to a port no
    rule names on one of this host's own addresses, gets."""

    family: Family
    """IPv4 or IPv6."""
    protocol: Protocol
    """TCP (a SYN) or UDP."""
    interface: str
    """The interface it arrives on (every interface but `lo`); `*` when they could not be listed
    (then interface matches are treated as maybe-true)."""
    verdict: PathVerdict
    """`drop` when every way through the chains ends in drop or reject; `accept` when at least one
    way, through matches that were all understood, lets it in; `unknown` when letting it in (or
    dropping it) rests on a construct that was not understood (listed in `unknown`)."""
    reason: str
    """For `drop`, the chain and rule (or policy) that drops it; for `accept` and `unknown`, the
    chains it passes and the rule or policy in each that lets it through."""
    unknown: tuple[str, ...]
    """Constructs not understood that the verdict rests on (an xtables match nft's JSON does not
    spell out, an unknown expression, a queue to user space)."""


@dataclass(frozen=True)
class PublishedPort:
    """A port a DNAT (or REDIRECT) rule publishes: the first packet of a connection to it, followed
    through the rest of the inbound path (input when the new destination is local, forward and
    postrouting otherwise)."""

    family: Family
    """IPv4 or IPv6."""
    protocol: Protocol
    """TCP or UDP."""
    port: int
    """The destination port the rule matches."""
    interface: str
    """The interface the connection arrives on."""
    to: str
    """The new destination, `address:port`; `local:port` for REDIRECT."""
    rule: str
    """The chain and rule that rewrites it."""
    verdict: PathVerdict
    """The same meaning as for `InboundPath`; a forwarded packet is dropped when the host does not
    forward this family (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)."""
    reason: str
    """How it is let through, or what drops it."""
    unknown: tuple[str, ...]
    """Constructs not understood that the verdict rests on."""


@dataclass(frozen=True)
class FirewallFacts:
    """The inbound filtering of one host (of one network namespace, really)."""

    chains: tuple[BaseChain, ...]
    """Every base chain on the inbound path from every source that could be read, dormant ones
    included (marked so)."""
    paths: tuple[InboundPath, ...]
    """One per address family, protocol and interface."""
    published: tuple[PublishedPort, ...]
    """Ports published through DNAT/REDIRECT, per family, protocol and interface."""
    interfaces: tuple[str, ...] | Unavailable
    """The host's interfaces other than `lo` (`ip -j address show`)."""
    nft: str | Unavailable | None
    """`nft` ruleset read: its version and what was found; None when nft is not installed."""
    iptables_legacy: str | Unavailable | None
    """`iptables-legacy-save`/`ip6tables-legacy-save` read: what was found; None when absent."""
    iptables: str | Unavailable | None
    """`iptables-nft-save` (tables with xtables matches) or, without nft, `iptables-save`: what
    was read; None when not needed."""
    ipset: str | None = None
    """`ipset save` read for rules that match sets (`-m set --match-set`): what was found, or
    why not (a rule resting on a set not read is then undecided); None when no rule uses one."""
    ufw_enabled: bool | None = None
    """`ENABLED=yes` in /etc/ufw/ufw.conf; None when ufw is not installed. Evidence only: the
    verdict comes from the kernel's rules."""
