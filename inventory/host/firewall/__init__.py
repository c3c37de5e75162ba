"""Host firewall: every netfilter base chain on the inbound path, read from `nft -j list ruleset`
and the iptables save tools, and what the kernel does with a new inbound connection to a port no
rule names — evaluated over those chains the way the kernel walks them.

One module per part: `ir` (the ruleset model and how one match answers for one abstract packet),
`nft` (nft's JSON and plain listing), `xtables` (iptables-save text, legacy and nf_tables),
`walk` (hooks, priorities, jumps, returns, verdict maps, NAT), `collect` (the reads through a
`Runner`). The parsers are pure and are tested on rulesets loaded into a real kernel inside
network namespaces; a differential test compares the verdicts with packets.
"""

from __future__ import annotations

from inventory.host.firewall.collect import (
    COMMAND_TIMEOUT_S,
    UFW_CONF,
    collect_firewall,
    parse_ip_address,
    parse_ip_route,
    parse_ufw_conf,
)
from inventory.host.firewall.ir import Packet, Ruleset, Table
from inventory.host.firewall.nft import (
    NftRuleset,
    RulesetError,
    apply_listing,
    parse_nft_json,
    parse_nft_listing,
)
from inventory.host.firewall.walk import Host, follow, inbound_paths, published_ports, summarize
from inventory.host.firewall.xtables import IpSet, parse_ipset_save, tables_from_save
from inventory.host.firewall.xtables import backend as iptables_backend

__all__ = [
    "COMMAND_TIMEOUT_S",
    "UFW_CONF",
    "Host",
    "IpSet",
    "NftRuleset",
    "Packet",
    "Ruleset",
    "RulesetError",
    "Table",
    "apply_listing",
    "collect_firewall",
    "follow",
    "inbound_paths",
    "iptables_backend",
    "parse_ip_address",
    "parse_ip_route",
    "parse_ipset_save",
    "parse_nft_json",
    "parse_nft_listing",
    "parse_ufw_conf",
    "published_ports",
    "summarize",
    "tables_from_save",
]
