"""Following the abstract packet through every base chain on the inbound path, as the kernel
walks them: ingress chains bound to the arrival device, then prerouting, then input (or, after a
DNAT to another host, forward and postrouting) — each hook's chains by priority, a table's nat
chains together at the hook's nat priority until one binds the connection, dormant tables not
at all. Within a chain: rules in order, jumps that return, gotos that do not, conditional
returns, verdict maps; a MAYBE match follows both ways.

The result for one class of packets is `accept` when some way in rests only on understood
matches, `unknown` when the only ways in rest on something not understood, `drop` otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from checks.facts.firewall import (
    BaseChain,
    Family,
    InboundPath,
    PathVerdict,
    Protocol,
    PublishedPort,
)
from inventory.host.firewall.ir import (
    SOME,
    UNSUPPORTED,
    Cond,
    IPAddr,
    Maybe,
    Nat,
    Never,
    Notrack,
    Packet,
    Rule,
    Ruleset,
    SetMark,
    Table,
    Tri,
    Unknown,
    Verdict,
    VMap,
    _members,
    evaluate,
    families_of,
    key_value,
    with_mark,
)

MAX_DEPTH = 16  # the kernel's own jump stack limit
MAX_LIVE = 256  # ways through one chain before the model gives up and says so
NAT_PRIORITY = {"prerouting": -100, "input": 100, "postrouting": 100, "forward": 0}
PROTOCOLS: tuple[Protocol, ...] = ("tcp", "udp")
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")
MAX_PUBLISHED_PORTS_PER_RULE = 8
MAX_PUBLISHED = 64  # distinct (family, protocol, port) followed; each costs a walk per interface


class TooComplex(Exception):
    """The ruleset branches beyond what this model follows (or nests jumps too deep)."""


@dataclass(frozen=True)
class Path:
    """One way through the chains so far."""

    packet: Packet
    trail: tuple[str, ...] = ()
    """Per chain passed: how it let the packet through."""
    unsure: tuple[str, ...] = ()
    """Matches not understood on the way (they make any accept uncertain)."""
    blind: tuple[str, ...] = ()
    """Statements not understood on the way (they make everything after them uncertain)."""
    nat: str | None = None
    """The rule that rewrote the destination, if one did."""

    def note(self, text: str) -> Path:
        return replace(self, trail=(*self.trail, text))

    def doubt(self, label: str, *, statement: bool = False) -> Path:
        if statement:
            return self if label in self.blind else replace(self, blind=(*self.blind, label))
        return self if label in self.unsure else replace(self, unsure=(*self.unsure, label))

    def key(self) -> tuple[object, ...]:
        return (self.packet, self.unsure, self.blind, self.nat)


@dataclass(frozen=True)
class Outcome:
    verdict: Literal["accept", "drop"]
    path: Path
    reason: str = ""


@dataclass(frozen=True)
class Host:
    """What the walk needs to know about the host besides its rules."""

    interfaces: Mapping[str, tuple[IPAddr, ...]] | None
    """Interfaces other than lo with their addresses; None when they could not be listed."""
    routes: Mapping[Family, Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]] = (
        field(default_factory=dict)
    )
    """Main-table routes per family: (destination, device)."""
    forwarding: Mapping[Family, bool | None] = field(default_factory=dict)
    """net.ipv4.ip_forward / net.ipv6.conf.all.forwarding; None when unknown."""

    def local(self, address: IPAddr | None) -> bool:
        if address is None or self.interfaces is None:
            return True
        return any(address in addrs for addrs in self.interfaces.values())


def label(chain: BaseChain) -> str:
    return f"{chain.source} {chain.family} {chain.table} {chain.name}"


_Step = tuple[str, Path, str]


class _Walker:
    """Walks the chains of one table for one base chain (nat chains may rewrite)."""

    def __init__(self, table: Table, nat_hook: str | None) -> None:
        self.table = table
        self.nat_hook = nat_hook

    def chain(self, name: str, path: Path, depth: int) -> list[_Step]:  # noqa: PLR0912
        if depth > MAX_DEPTH:
            raise TooComplex(
                f"jumps nest deeper than {MAX_DEPTH} chains in table {self.table.name}"
            )
        rules = self.table.chains.get(name)
        if rules is None:
            # It might accept or drop: nothing after it on this path is certain.
            gone = path.doubt(f"jump to chain {name!r} that is not listed", statement=True)
            return [("return", gone, "")]
        live = [path]
        out: list[_Step] = []
        for rule in rules:
            following: list[Path] = []
            for current in live:
                for kind, after, target in self._rule(rule, current):
                    if kind == "next":
                        following.append(after)
                    elif kind in {"jump", "goto"} and target is not None:
                        for sub_kind, sub_path, text in self.chain(target, after, depth + 1):
                            if sub_kind == "return" and kind == "jump":
                                following.append(sub_path)
                            else:
                                out.append((sub_kind, sub_path, text))
                    else:
                        out.append((kind, after, f"{name}: {rule.text}" if depth else rule.text))
            live = _dedupe(following)
            if len(live) > MAX_LIVE:
                raise TooComplex(f"more than {MAX_LIVE} ways through chain {name}")
            if not live:
                break
        out.extend(("return", p, "") for p in live)
        return out

    def _rule(self, rule: Rule, path: Path) -> list[tuple[str, Path, str | None]]:
        states = [path]
        results: list[tuple[str, Path, str | None]] = []
        for item in rule.items:
            following: list[Path] = []
            for before in states:
                state = before
                if isinstance(item, Cond | Maybe | Never):
                    answer, unknown = evaluate(item, state.packet)
                    if unknown is not None:
                        state = state.doubt(unknown)
                    if answer is not Tri.YES:
                        results.append(("next", state, None))
                    if answer is not Tri.NO:
                        following.append(state)
                elif isinstance(item, SetMark):
                    following.append(replace(state, packet=with_mark(state.packet, item)))
                elif isinstance(item, Notrack):
                    following.append(
                        replace(state, packet=replace(state.packet, ct_state="untracked"))
                    )
                elif isinstance(item, Nat):
                    results.append(self._nat(item, state, rule))
                elif isinstance(item, Unknown):
                    following.append(state.doubt(item.text, statement=True))
                elif isinstance(item, Verdict):
                    results.append(_verdict(item, state))
                elif isinstance(item, VMap):
                    results.extend(_vmap(item, state))
            states = following
        results.extend(("next", s, None) for s in states)
        return results

    def _nat(self, nat: Nat, path: Path, rule: Rule) -> tuple[str, Path, str | None]:
        if self.nat_hook is None:
            return ("next", path.doubt(f"{nat.kind} outside a nat chain", statement=True), None)
        packet = path.packet
        if nat.addr is not None and nat.addr.version != (4 if packet.family == "ipv4" else 6):
            return ("next", path, None)  # `dnat ip to` in an inet table: the other family skips it
        natted = packet.natted | {self.nat_hook}
        if nat.kind == "snat":
            return ("accept", replace(path, packet=replace(packet, natted=natted)), None)
        if nat.kind == "redirect":
            moved = replace(
                packet,
                dport=nat.port if nat.port is not None else packet.dport,
                local=True,
                ct_dnat=True,
                natted=natted,
            )
        else:
            moved = replace(
                packet,
                daddr=nat.addr if nat.addr is not None else packet.daddr,
                dport=nat.port if nat.port is not None else packet.dport,
                ct_dnat=True,
                natted=natted,
                local=False,  # decided by routing, below
            )
        return ("accept", replace(path, packet=moved, nat=f"{self.table.name}: {rule.text}"), None)


def _verdict(verdict: Verdict, path: Path) -> tuple[str, Path, str | None]:
    if verdict.kind == "continue":
        return ("next", path, None)
    if verdict.kind == "queue":
        return ("accept", path.doubt("queue to a user-space program"), None)
    return (verdict.kind, path, verdict.target)


def _vmap(vmap: VMap, path: Path) -> list[tuple[str, Path, str | None]]:
    value = key_value(vmap.key, path.packet)
    if vmap.dynamic:
        path = path.doubt(f"{vmap.text} (a map whose elements change)")
    if value is UNSUPPORTED:
        path = path.doubt(f"{vmap.text} (its key is not understood)")
    out: list[tuple[str, Path, str | None]] = []
    for rhs, verdict in vmap.entries:
        answer = _members(value, rhs, vmap.key)
        if answer is Tri.NO:
            continue
        if value is SOME:
            path = path.doubt(f"{vmap.text} (the host's interfaces or routes were not listed)")
        out.append(_verdict(verdict, path))
        if answer is Tri.YES:
            return out
    out.append(("next", path, None))
    return out


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    seen: dict[tuple[object, ...], Path] = {}
    for path in paths:
        seen.setdefault(path.key(), path)
    return list(seen.values())


# ----------------------------------------------------------------------------- hooks


@dataclass(frozen=True)
class _Stage:
    priority: int
    chains: tuple[tuple[Table, BaseChain], ...]
    nat: bool


def _stages(ruleset: Ruleset, hook: str, family: Family) -> list[_Stage]:
    filters: list[_Stage] = []
    nats: list[tuple[Table, BaseChain]] = []
    for table, chain in ruleset.base_chains():
        if chain.hook != hook or table.dormant or family not in families_of(table.family):
            continue
        if chain.type == "nat":
            nats.append((table, chain))
        elif chain.type == "filter":
            filters.append(_Stage(chain.priority, ((table, chain),), nat=False))
    if nats:
        nats.sort(key=lambda tc: tc[1].priority)
        filters.append(_Stage(NAT_PRIORITY.get(hook, 0), tuple(nats), nat=True))
    return sorted(filters, key=lambda s: s.priority)


def _through_chain(
    table: Table, chain: BaseChain, path: Path, nat_hook: str | None, drops: list[Outcome]
) -> list[Path]:
    passed: list[Path] = []
    for kind, after, text in _Walker(table, nat_hook).chain(chain.name, path, 0):
        if kind == "accept":
            passed.append(after.note(f"{label(chain)} ({text or 'accept'})"))
        elif kind == "drop":
            drops.append(Outcome("drop", after, f"{label(chain)} ({text or 'drop'})"))
        elif chain.policy == "drop":
            drops.append(Outcome("drop", after, f"{label(chain)} (policy drop)"))
        else:
            passed.append(
                after.note(f"{label(chain)} (policy accept)") if chain.type == "filter" else after
            )
    return _dedupe(passed)


def _through_stage(stage: _Stage, hook: str, paths: list[Path], drops: list[Outcome]) -> list[Path]:
    if not stage.nat:
        (table, chain), *_ = stage.chains
        out: list[Path] = []
        for path in paths:
            out.extend(_through_chain(table, chain, path, None, drops))
        return _dedupe(out)
    out = []
    for path in paths:
        current = [path]
        for table, chain in stage.chains:
            following: list[Path] = []
            for p in current:
                if hook in p.packet.natted or p.packet.ct_state == "untracked":
                    following.append(p)
                else:
                    following.extend(_through_chain(table, chain, p, hook, drops))
            current = following
        out.extend(current)
    return _dedupe(out)


def _ingress(
    ruleset: Ruleset, family: Family, paths: list[Path], drops: list[Outcome]
) -> list[Path]:
    chains = [
        (t, c)
        for t, c in ruleset.base_chains()
        if c.hook == "ingress" and not t.dormant and family in families_of(t.family)
    ]
    for table, chain in sorted(chains, key=lambda tc: tc[1].priority):
        following: list[Path] = []
        for path in paths:
            iif = path.packet.iif
            if chain.devices and iif is not None:
                if iif not in chain.devices:
                    following.append(path)
                    continue
            elif not chain.devices or iif is None:
                # Bound to a device not known here: maybe not this one.
                following.append(
                    path.doubt(f"{label(chain)}: its devices or the host's were not listed")
                )
            following.extend(_through_chain(table, chain, path, None, drops))
        paths = _dedupe(following)
    return paths


def _route(host: Host, path: Path, drops: list[Outcome]) -> Path | None:
    packet = path.packet
    if packet.daddr is not None and host.interfaces is not None:
        packet = replace(packet, local=host.local(packet.daddr))
    elif packet.daddr is None:
        packet = replace(packet, local=True)
    if packet.local:
        return replace(path, packet=packet)
    sysctl = "net.ipv4.ip_forward" if packet.family == "ipv4" else "net.ipv6.conf.all.forwarding"
    if host.forwarding.get(packet.family) is False:
        drops.append(Outcome("drop", path, f"not forwarded ({sysctl} = 0)"))
        return None
    routes = host.routes.get(packet.family)
    oif: str | None = None
    if routes and packet.daddr is not None:
        best = [(net.prefixlen, dev) for net, dev in routes if packet.daddr in net]
        if not best:
            drops.append(Outcome("drop", path, f"no route to {packet.daddr}"))
            return None
        oif = max(best)[1]
    return replace(path, packet=replace(packet, oif=oif))


def follow(ruleset: Ruleset, host: Host, packet: Packet) -> list[Outcome]:
    """Every outcome for the packet: drops where they happen, accepts at the socket."""
    drops: list[Outcome] = []
    paths = _ingress(ruleset, packet.family, [Path(packet)], drops)
    for stage in _stages(ruleset, "prerouting", packet.family):
        paths = _through_stage(stage, "prerouting", paths, drops)
    accepted: list[Outcome] = []
    for path in paths:
        routed = _route(host, path, drops)
        if routed is None:
            continue
        hooks = ("input",) if routed.packet.local else ("forward", "postrouting")
        current = [routed]
        for hook in hooks:
            for stage in _stages(ruleset, hook, packet.family):
                current = _through_stage(stage, hook, current, drops)
        accepted.extend(Outcome("accept", p) for p in current)
    return drops + accepted


def summarize(outcomes: Sequence[Outcome]) -> tuple[PathVerdict, str, tuple[str, ...]]:
    sure = [o for o in outcomes if o.verdict == "accept" and not o.path.unsure and not o.path.blind]
    if sure:
        return "accept", _trail(sure[0]), ()
    shaky = [o for o in outcomes if o.verdict == "accept" or o.path.blind]
    if shaky:
        labels: list[str] = []
        for o in shaky:
            labels.extend(x for x in (*o.path.unsure, *o.path.blind) if x not in labels)
        return (
            "unknown",
            _trail(shaky[0]) if shaky[0].verdict == "accept" else shaky[0].reason,
            tuple(labels),
        )
    reasons: list[str] = []
    for o in outcomes:
        if o.reason not in reasons:
            reasons.append(o.reason)
    shown = "; ".join(reasons[:3])
    if len(reasons) > 3:
        shown += f"; and {len(reasons) - 3} more"
    return "drop", shown, ()


def _trail(outcome: Outcome) -> str:
    return " → ".join(outcome.path.trail) or "no base chain filters it"


# ----------------------------------------------------------------------------- classes


def _classes(host: Host, family: Family) -> list[tuple[str, str | None, list[IPAddr | None]]]:
    """(shown name, interface, destination addresses) for every interface of the host."""
    if host.interfaces is None:
        return [("*", None, [None])]
    out: list[tuple[str, str | None, list[IPAddr | None]]] = []
    version = 4 if family == "ipv4" else 6
    # Linux takes a packet for any of its addresses on any interface (the weak host model), so
    # each interface is judged for its own addresses (link-local ones included) and for the
    # routable addresses of every other interface.
    anywhere = [
        a
        for addrs in host.interfaces.values()
        for a in addrs
        if a.version == version and not a.is_link_local
    ]
    for name, addrs in sorted(host.interfaces.items()):
        mine = [a for a in addrs if a.version == version]
        daddrs: list[IPAddr | None] = [*mine, *(a for a in anywhere if a not in mine)]
        out.append((name, name, daddrs or [None]))
    return out or [("*", None, [None])]


def _judge(ruleset: Ruleset, host: Host, packets: Iterable[Packet]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for packet in packets:
        outcomes.extend(follow(ruleset, host, packet))
    return outcomes


def inbound_paths(ruleset: Ruleset, host: Host) -> tuple[InboundPath, ...]:
    found: list[InboundPath] = []
    for family in FAMILIES:
        for shown, iif, daddrs in _classes(host, family):
            for protocol in PROTOCOLS:
                packets = [Packet(family, protocol, iif, d, None) for d in daddrs]
                try:
                    verdict, reason, unknown = summarize(_judge(ruleset, host, packets))
                except TooComplex as exc:
                    verdict, reason, unknown = "unknown", str(exc), (str(exc),)
                found.append(InboundPath(family, protocol, shown, verdict, reason, unknown))
    return tuple(found)


def _nat_rules(ruleset: Ruleset) -> list[tuple[Table, Rule, Nat]]:
    found: list[tuple[Table, Rule, Nat]] = []
    for table in ruleset.tables:
        if table.dormant or not any(c.type == "nat" and c.hook == "prerouting" for c in table.base):
            continue
        for rules in table.chains.values():
            for rule in rules:
                for item in rule.items:
                    if isinstance(item, Nat) and item.kind in {"dnat", "redirect"}:
                        found.append((table, rule, item))
    return found


def _rule_ports(rule: Rule) -> tuple[list[Protocol], list[int]]:
    protocols: list[Protocol] = []
    ports: list[int] = []
    for item in rule.items:
        if not isinstance(item, Cond):
            continue
        named = {item.key.split(" ")[0]}
        if item.key in {"meta l4proto", "ip protocol", "ip6 nexthdr"} and item.op == "==":
            named |= item.rhs.words
        protocols += [p for p in PROTOCOLS if p in named and p not in protocols]
        if item.key.endswith("dport") and item.op == "==":
            for lo, hi in item.rhs.ints:
                ports.extend(range(lo, min(hi, lo + MAX_PUBLISHED_PORTS_PER_RULE - 1) + 1))
    return protocols or list(PROTOCOLS), ports[:MAX_PUBLISHED_PORTS_PER_RULE]


def published_ports(ruleset: Ruleset, host: Host) -> tuple[PublishedPort, ...]:
    """Every port a DNAT or REDIRECT rule names, followed to its end on every interface (at
    most MAX_PUBLISHED of them: the rest are reported as not followed, never as closed)."""
    wanted: dict[tuple[Family, Protocol, int], str] = {}
    for table, rule, _nat in _nat_rules(ruleset):
        protocols, ports = _rule_ports(rule)
        for family in families_of(table.family):
            for protocol in protocols:
                for port in ports:
                    wanted.setdefault((family, protocol, port), f"{table.name}: {rule.text}")
    found: list[PublishedPort] = []
    for (family, protocol, port), text in list(wanted.items())[:MAX_PUBLISHED]:
        for shown, iif, daddrs in _classes(host, family):
            packets = [Packet(family, protocol, iif, d, port) for d in daddrs]
            try:
                outcomes = [o for o in _judge(ruleset, host, packets) if o.path.nat is not None]
                if not outcomes:
                    continue  # not rewritten on this interface
                verdict, reason, unknown = summarize(outcomes)
            except TooComplex as exc:
                found.append(
                    PublishedPort(
                        family, protocol, port, shown, "?", text, "unknown", str(exc), (str(exc),)
                    )
                )
                continue
            moved = outcomes[0].path
            where = "local" if moved.packet.local else str(moved.packet.daddr)
            found.append(
                PublishedPort(
                    family,
                    protocol,
                    port,
                    shown,
                    f"{where}:{moved.packet.dport}",
                    moved.nat or text,
                    verdict,
                    reason,
                    unknown,
                )
            )
    rest = list(wanted.items())[MAX_PUBLISHED:]
    if rest:
        (family, protocol, port), text = rest[0]
        note = f"{len(rest)} more published ports not followed one by one (limit {MAX_PUBLISHED})"
        found.append(
            PublishedPort(family, protocol, port, "*", "?", text, "unknown", note, (note,))
        )
    return tuple(found)
