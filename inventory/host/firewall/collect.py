"""Reading the host's rulesets and what the walk needs about the host (its interfaces and
addresses; for DNAT, its routes and forwarding switches), then evaluating the inbound paths.

`nft` shows every nf_tables table, including those iptables-nft writes, so the iptables tools
are read only for what nft cannot show: the legacy (x_tables) backend, through
`iptables-legacy-save`/`ip6tables-legacy-save`; the nf_tables tables whose xtables matches nft's
JSON leaves out, through `iptables-nft-save`/`ip6tables-nft-save`; and, on hosts without nft,
whatever `iptables-save` shows.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from checks.facts.firewall import Family, FirewallFacts, FirewallSource
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.host.firewall.ir import IPAddr, Nat, Ruleset, Table
from inventory.host.firewall.nft import (
    IP_FAMILIES,
    NftRuleset,
    RulesetError,
    apply_listing,
    mark_dormant,
    nft_items,
    parse_nft_items,
    parse_nft_json,
    parse_nft_listing,
)
from inventory.host.firewall.walk import Host, inbound_paths, published_ports
from inventory.host.firewall.xtables import IpSet, backend, parse_ipset_save, tables_from_save
from inventory.runner import GatherError, Runner, SourceMissing

COMMAND_TIMEOUT_S = 15.0
UFW_CONF = "/etc/ufw/ufw.conf"
_SAVE_FAMILY = {"iptables": "ip", "ip6tables": "ip6"}


def parse_ufw_conf(text: str) -> bool:
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "ENABLED":
            return value.strip().strip("\"'").lower() == "yes"
    return False


_UNROUTED = frozenset({"unreachable", "blackhole", "prohibit"})


def _json_objects(text: str, command: str) -> list[dict[str, Any]]:
    """The objects of the JSON list `command` printed (other items left out); ValueError when
    it printed no list."""
    data = jsontext.loads(text or "[]")
    if not isinstance(data, list):
        raise ValueError(f"{command} printed no JSON list")
    return [item for item in data if isinstance(item, dict)]


def parse_ip_address(text: str) -> dict[str, tuple[IPAddr, ...]]:
    """Interfaces from `ip -j address show` with their addresses, leaving out lo and interfaces
    enslaved to a bridge or bond (their traffic arrives on the master)."""
    found: dict[str, tuple[IPAddr, ...]] = {}
    for link in _json_objects(text, "ip -j address show"):
        name = link.get("ifname")
        if not isinstance(name, str):
            continue
        if not name or link.get("link_type") == "loopback" or name == "lo" or link.get("master"):
            continue
        addrs: list[IPAddr] = []
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else ():
            if not isinstance(info, dict) or info.get("scope") == "host" or "local" not in info:
                continue
            try:
                addrs.append(ipaddress.ip_address(str(info["local"]).split("%")[0]))
            except ValueError:
                continue
        found[name] = tuple(addrs)
    return found


def parse_ip_route(
    text: str, family: Family
) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """(destination, device) from `ip -j route show`; unreachable/blackhole routes are left out."""
    routes: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for route in _json_objects(text, "ip -j route show"):
        dst, dev = route.get("dst"), route.get("dev")
        if not isinstance(dst, str) or not dev or route.get("type") in _UNROUTED:
            continue
        if dst == "default":
            dst = "0.0.0.0/0" if family == "ipv4" else "::/0"
        try:
            routes.append((ipaddress.ip_network(dst, strict=False), str(dev)))
        except ValueError:
            continue
    return routes


def _run(runner: Runner, argv: Sequence[str]) -> str:
    return runner.run(list(argv), timeout=COMMAND_TIMEOUT_S).stdout


class _IpSets:
    """`ipset save`, read once and only when a rule uses `-m set`."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.sets: dict[str, IpSet] | None = None
        self.state: str | None = None

    def for_rules(self, text: str) -> dict[str, IpSet]:
        if "--match-set" not in text:
            return {}
        if self.sets is None:
            self.sets = {}
            if self.runner.which("ipset") is None:
                self.state = "ipset is not installed: -m set matches not followed"
            else:
                try:
                    self.sets = parse_ipset_save(_run(self.runner, ["ipset", "save"]))
                    self.state = f"ipset save: {len(self.sets)} set(s)"
                except GatherError as exc:
                    self.state = f"ipset save: {exc} (-m set matches not followed)"
        return self.sets


def _read_saves(
    runner: Runner,
    tools: Sequence[tuple[str, FirewallSource, str]],
    ipsets: _IpSets,
    *,
    skip_backend: str | None = None,
) -> tuple[list[Table], str | Unavailable | None]:
    """Tables from iptables-save-like tools; output of the `skip_backend` backend is left out
    (nft has listed it already)."""
    tables: list[Table] = []
    seen: list[str] = []
    for tool, source, family in tools:
        if runner.which(tool) is None:
            continue
        try:
            out = _run(runner, [tool])
            found = tables_from_save(
                out, source=source, family=family, ipsets=ipsets.for_rules(out)
            )
        except (GatherError, RulesetError) as exc:
            return tables, Unavailable(f"{tool}: {exc}")
        kind = backend(out)
        if skip_backend is not None and kind == skip_backend:
            seen.append(f"{tool}: backend {kind} (listed by nft)")
            continue
        tables.extend(found)
        names = ", ".join(t.name for t in found) or "no tables"
        seen.append(f"{tool}: backend {kind}, {names}" if out.strip() else f"{tool}: no tables")
    return tables, ("; ".join(seen) if seen else None)


def _replace_xt_tables(
    runner: Runner, tables: list[Table], xt: set[tuple[str, str]], ipsets: _IpSets
) -> str | Unavailable:
    """Rules of nf_tables tables holding xtables expressions, read back in iptables syntax."""
    notes: list[str] = []
    for tool, family in (("iptables-nft-save", "ip"), ("ip6tables-nft-save", "ip6")):
        wanted = {name for fam, name in xt if fam == family}
        if not wanted:
            continue
        if runner.which(tool) is None:
            notes.append(
                f"{tool} is not installed: xtables matches in {family} "
                f"{', '.join(sorted(wanted))} not followed"
            )
            continue
        try:
            out = _run(runner, [tool])
            found = tables_from_save(
                out, source="iptables-nft", family=family, ipsets=ipsets.for_rules(out)
            )
            saved = {t.name: t for t in found}
        except (GatherError, RulesetError) as exc:
            return Unavailable(f"{tool}: {exc}")
        for table in tables:
            if table.family == family and (family, table.name) in xt and table.name in saved:
                table.chains = saved[table.name].chains
                table.source = "iptables-nft"
                table.base = [replace(c, source="iptables-nft") for c in table.base]
        notes.append(f"{tool}: {', '.join(sorted(wanted & set(saved)))} read in iptables syntax")
    return "; ".join(notes)


def _read_nft(
    runner: Runner, ipsets: _IpSets
) -> tuple[list[Table], str | Unavailable | None, str | Unavailable | None]:
    if runner.which("nft") is None:
        return [], None, None
    by_chain = False
    try:
        try:
            parsed = parse_nft_json(_run(runner, ["nft", "-j", "list", "ruleset"]))
        except RulesetError:
            parsed, by_chain = _read_nft_by_chain(runner), True
        if parsed.needs_listing:
            apply_listing(parsed, _run(runner, ["nft", "list", "ruleset"]))
        else:
            mark_dormant(parsed)
    except (GatherError, RulesetError) as exc:
        return [], Unavailable(f"nft -j list ruleset: {exc}"), None
    except (KeyError, TypeError, AttributeError) as exc:  # JSON of a shape nft never printed
        return [], Unavailable(f"nft -j list ruleset: unexpected JSON ({exc!r})"), None
    tables = parsed.ruleset.tables
    iptables: str | Unavailable | None = None
    if parsed.xt_tables:
        iptables = _replace_xt_tables(runner, tables, parsed.xt_tables, ipsets)
    chains = sum(len(t.base) for t in tables)
    dormant = sum(1 for t in tables if t.dormant)
    state = f"nftables {parsed.version or '?'}: {len(tables)} table(s)"
    if dormant:
        state += f" ({dormant} dormant)"
    state += f", {chains} base chain(s) on the inbound path"
    if by_chain:
        state += " (listed chain by chain: the ruleset's JSON was broken)"
    return tables, state, iptables


def _read_nft_by_chain(runner: Runner) -> NftRuleset:
    """The ruleset without nft's table objects, whose flags nft 1.0.6 prints from uninitialised
    memory — now and then as bytes that end the JSON halfway. Tables come from the plain
    listing, then chains, sets, maps, and each chain's rules, listed one by one."""
    listing = _run(runner, ["nft", "list", "ruleset"])
    flags, _ = parse_nft_listing(listing)
    items: list[Any] = [{"table": {"family": f, "name": n}} for f, n in flags]
    listed = nft_items(_run(runner, ["nft", "-j", "list", "chains"]))
    chains = [i for i in listed if "chain" in i]
    items += [i for i in listed if "metainfo" in i] + chains
    for kind in ("sets", "maps"):
        items += [
            i for i in nft_items(_run(runner, ["nft", "-j", "list", kind])) if "metainfo" not in i
        ]
    for item in chains:
        chain = item["chain"]
        if chain.get("family") not in IP_FAMILIES:
            continue
        argv = ["nft", "-j", "list", "chain", chain["family"], chain["table"], chain["name"]]
        items += [i for i in nft_items(_run(runner, argv)) if "rule" in i]
    parsed = parse_nft_items(items)
    parsed.needs_listing = True
    return parsed


def _read_host(runner: Runner, ruleset: Ruleset) -> tuple[Host, tuple[str, ...] | Unavailable]:
    try:
        interfaces = parse_ip_address(_run(runner, ["ip", "-j", "address", "show"]))
        shown: tuple[str, ...] | Unavailable = tuple(sorted(interfaces))
        known: dict[str, tuple[IPAddr, ...]] | None = interfaces
    except (GatherError, ValueError) as exc:
        known, shown = None, Unavailable(f"ip -j address show: {exc}")
    host = Host(known)
    if not _has_dnat(ruleset):
        return host, shown
    routes: dict[Family, Any] = {}
    forwarding: dict[Family, bool | None] = {}
    switches: tuple[tuple[Family, str, str], ...] = (
        ("ipv4", "-4", "net.ipv4.ip_forward"),
        ("ipv6", "-6", "net.ipv6.conf.all.forwarding"),
    )
    for family, flag, key in switches:
        # Without routes, a forwarded packet's output interface stays unknown (maybe-matches).
        with contextlib.suppress(GatherError, ValueError):
            listing = _run(runner, ["ip", "-j", flag, "route", "show"])
            routes[family] = parse_ip_route(listing, family)
        try:
            forwarding[family] = _run(runner, ["sysctl", "-n", key]).strip() != "0"
        except GatherError:
            forwarding[family] = None
    return replace(host, routes=routes, forwarding=forwarding), shown


def _has_dnat(ruleset: Ruleset) -> bool:
    return any(
        isinstance(item, Nat) and item.kind != "snat"
        for table in ruleset.tables
        for rules in table.chains.values()
        for rule in rules
        for item in rule.items
    )


def collect_firewall(runner: Runner) -> FirewallFacts:
    ipsets = _IpSets(runner)
    tables, nft, iptables = _read_nft(runner, ipsets)
    legacy_tables, legacy = _read_saves(
        runner,
        [
            ("iptables-legacy-save", "iptables-legacy", "ip"),
            ("ip6tables-legacy-save", "iptables-legacy", "ip6"),
        ],
        ipsets,
    )
    tables.extend(legacy_tables)
    if nft is None or legacy is None:
        # Without nft, iptables-save shows the kernel's tables through its own backend. Without
        # the *-legacy-save names (iptables before 1.8), plain iptables-save is the legacy tool.
        plain_tables, plain = _read_saves(
            runner,
            [("iptables-save", "iptables", "ip"), ("ip6tables-save", "iptables", "ip6")],
            ipsets,
            skip_backend="nf_tables" if nft is not None else None,
        )
        tables.extend(plain_tables)
        iptables = plain if iptables is None else iptables
    ruleset = Ruleset(tables)
    host, interfaces = _read_host(runner, ruleset)
    try:
        ufw: bool | None = parse_ufw_conf(runner.read_text(UFW_CONF))
    except SourceMissing:
        ufw = None
    except GatherError:
        ufw = None  # evidence only: the verdict comes from the kernel's rules
    return FirewallFacts(
        chains=tuple(c for t in tables for c in t.base),
        paths=inbound_paths(ruleset, host),
        published=published_ports(ruleset, host),
        interfaces=interfaces,
        nft=nft,
        iptables_legacy=legacy,
        iptables=iptables,
        ipset=ipsets.state,
        ufw_enabled=ufw,
    )
