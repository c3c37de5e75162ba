"""Host firewall facts: every chain on the input hook (nftables, and iptables-legacy, whose
tables nft does not show) with the verdict a packet gets when no rule of its own matches it.

A packet addressed to the host crosses every base chain on the input hook in turn; a drop in
any of them is final. So input is default-deny for a protocol when at least one chain that sees
it ends in drop — by policy or by an unconditional drop/reject rule reached before any
unconditional accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

Verdict = Literal["accept", "drop", "reject"]
FirewallSource = Literal["nft", "iptables-legacy", "ip6tables-legacy", "iptables", "ip6tables"]


@dataclass(frozen=True)
class InputChain:
    """A base chain hooked on input (nft `hook input`, iptables `INPUT` of table filter)."""

    source: FirewallSource
    """The command that listed it: `nft -j list ruleset` (which also shows iptables-nft rules),
    `iptables-legacy-save`/`ip6tables-legacy-save`, or `iptables-save`/`ip6tables-save` where
    nft or the -legacy names are missing."""
    family: Literal["ip", "ip6", "inet"]
    """nft table family; iptables counts as ip, ip6tables as ip6."""
    table: str
    """Table name."""
    name: str
    """Chain name."""
    policy: Literal["accept", "drop"]
    """The chain policy."""
    default_ipv4: Verdict | None
    """What an IPv4 packet no rule accepted gets: the first unconditional verdict rule
    (following unconditional jumps), else the policy. None when the chain sees no IPv4."""
    default_ipv6: Verdict | None
    """The same for IPv6."""
    final_rule: str | None
    """The unconditional verdict rule that decides, as text (`reject`, `-j DROP`), if any."""


@dataclass(frozen=True)
class FirewallFacts:
    """The input filtering of one host (of one network namespace, really)."""

    chains: tuple[InputChain, ...]
    """Every filter chain on the input hook from every source that could be read."""
    nft: str | Unavailable | None
    """`nft` ruleset read: its version line; None when nft is not installed."""
    iptables_legacy: str | Unavailable | None
    """`iptables-legacy-save`/`ip6tables-legacy-save` read: what was found; None when absent."""
    iptables: str | Unavailable | None
    """`iptables-save`/`ip6tables-save`, read when nft or the `*-legacy-save` tools are absent
    (iptables before 1.8 has no -legacy names): their backend; None when not read."""
    ufw_enabled: bool | None
    """`ENABLED=yes` in /etc/ufw/ufw.conf; None when ufw is not installed."""
