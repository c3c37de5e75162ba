"""The ruleset model both parsers produce (nft's JSON and iptables-save text), and how one match
answers for one abstract packet.

The packet is the first packet of a new connection from an address no rule names to a port no
rule names, on one interface and one of the host's addresses. A match answers YES, NO or MAYBE:
MAYBE when some such packets match and others do not (a rate limit, a source port the sender
chooses, a port range wide enough that "a port no rule names" may fall inside it), or when the
match was not understood — then the answer carries the construct's name, so a verdict that rests
on it can say so instead of guessing.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from checks.facts.firewall import BaseChain, Family, Protocol

# A port range wider than this is not "naming" ports: a port no rule names may fall inside it.
WIDE_PORTS = 1024
# An address set covering more than 1/256 of the address space (shorter than a /8) is wide.
WIDE_ADDRESS_SHIFT = 8


class Tri(enum.Enum):
    NO = 0
    MAYBE = 1
    YES = 2

    def negate(self) -> Tri:
        return {Tri.NO: Tri.YES, Tri.YES: Tri.NO, Tri.MAYBE: Tri.MAYBE}[self]


IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Marker(enum.Enum):
    ABSENT = "absent"  # the header is not in this packet: every comparison fails
    UNNAMED = "unnamed"  # a value no rule names (the port probed, the remote address)
    SENDER = "sender"  # the sender chooses it, or it varies (source port, TTL, time of day)
    SOME = "some"  # a real value not known here (the interface, when they could not be listed)
    UNSUPPORTED = "unsupported"  # a key this model does not know


ABSENT = _Marker.ABSENT
UNNAMED = _Marker.UNNAMED
SENDER = _Marker.SENDER
SOME = _Marker.SOME
UNSUPPORTED = _Marker.UNSUPPORTED

Value = _Marker | int | str | IPAddr | frozenset[str] | tuple["Value", ...]

TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}
CT_STATES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
CT_STATUS = {
    "expected": 1,
    "seen-reply": 2,
    "assured": 4,
    "confirmed": 8,
    "snat": 16,
    "dnat": 32,
    "dying": 512,
}
BITMASKS = {"tcp flags": TCP_FLAGS, "ct state": CT_STATES, "ct status": CT_STATUS}


@dataclass(frozen=True)
class Packet:
    """The abstract packet a path follows; statements (mark, notrack, DNAT) change it."""

    family: Family
    protocol: Protocol
    iif: str | None
    """Arrival interface; None when the host's interfaces are not known."""
    daddr: IPAddr | None
    """Destination; None for "one of this host's addresses" when they are not known."""
    dport: int | None
    """Destination port; None for a port no rule names."""
    local: bool = True
    """The destination is this host (routing sends it to input, not forward)."""
    oif: str | None = ""
    """Output interface: "" before routing and on input; None when not known."""
    ct_state: str = "new"
    ct_dnat: bool = False
    mark: int = 0
    ctmark: int = 0
    natted: frozenset[str] = frozenset()
    """Hooks whose nat chains already bound this connection (later nat chains are not called)."""


# ----------------------------------------------------------------------------- right-hand sides


@dataclass(frozen=True)
class Rhs:
    """The right-hand side of a comparison: values, ranges, prefixes, interface wildcards.

    Numbers and addresses are kept as closed integer intervals; addresses carry their version.
    `dynamic` marks a named set whose elements change at run time (timeouts, `add @set`, ipset):
    membership is then MAYBE whatever its elements are now."""

    ints: tuple[tuple[int, int], ...] = ()
    addrs: tuple[tuple[int, int, int], ...] = ()  # (version, first, last)
    words: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()  # interface names ending in a wildcard, without it
    tuples: tuple[tuple[Rhs, ...], ...] = ()  # concatenations, one Rhs per component
    dynamic: bool = False

    def __or__(self, other: Rhs) -> Rhs:
        return Rhs(
            self.ints + other.ints,
            self.addrs + other.addrs,
            self.words | other.words,
            self.patterns + other.patterns,
            self.tuples + other.tuples,
            self.dynamic or other.dynamic,
        )


def rhs_int(lo: int, hi: int | None = None) -> Rhs:
    return Rhs(ints=((lo, lo if hi is None else hi),))


def rhs_words(*words: str) -> Rhs:
    return Rhs(words=frozenset(words))


def rhs_addr(text: str) -> Rhs:
    """An address, a prefix (`198.18.0.0/16`) or a range (`198.18.0.1-198.18.0.9`)."""
    if "-" in text and "/" not in text:
        first_text, last_text = text.split("-", 1)
        first, last = ipaddress.ip_address(first_text), ipaddress.ip_address(last_text)
        return Rhs(addrs=((first.version, int(first), int(last)),))
    net = ipaddress.ip_network(text, strict=False)
    return Rhs(addrs=((net.version, int(net.network_address), int(net.broadcast_address)),))


def rhs_interface(name: str) -> Rhs:
    """nft writes a wildcard as `eth*`, iptables as `eth+`."""
    if name.endswith(("*", "+")):
        return Rhs(patterns=(name[:-1],))
    return Rhs(words=frozenset({name}))


def union(parts: Iterable[Rhs]) -> Rhs:
    out = Rhs()
    for part in parts:
        out = out | part
    return out


# ----------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Cond:
    """`key op rhs`, optionally on `key & mask`. Keys are nft's names (`tcp dport`,
    `meta iifname`, `ct state`, `fib daddr type`); iptables matches are translated to them."""

    key: str
    op: str  # == != < > <= >=
    rhs: Rhs
    text: str
    mask: int | None = None
    sender_chosen: bool = False


@dataclass(frozen=True)
class Maybe:
    """A match whose answer varies between packets of the class (rate limits, hash, time of
    day) — or, with `unknown` set, a match that was not understood."""

    text: str
    unknown: bool = False


@dataclass(frozen=True)
class Never:
    """A match no first packet of a plain TCP/UDP connection satisfies (a fragment, a routing
    header, an IPsec policy)."""

    text: str


Match = Cond | Maybe | Never


def evaluate(match: Match, packet: Packet) -> tuple[Tri, str | None]:
    """The match's answer for `packet`, and the construct it could not understand, if any."""
    if isinstance(match, Maybe):
        return Tri.MAYBE, (match.text if match.unknown else None)
    if isinstance(match, Never):
        return Tri.NO, None
    value = key_value(match.key, packet)
    if value is UNSUPPORTED:
        return Tri.MAYBE, match.text
    answer = compare(value, match)
    if value is SOME and answer is Tri.MAYBE:
        return answer, f"{match.text} (the host's interfaces, addresses or routes were not listed)"
    return answer, None


_L4 = {"tcp": 6, "udp": 17}


def key_value(key: str, packet: Packet) -> Value:  # noqa: PLR0911, PLR0912 — one arm per key
    """The packet's value for a key; ABSENT when the header is not there."""
    if " . " in key:
        parts = tuple(key_value(k, packet) for k in key.split(" . "))
        for marker in (ABSENT, UNSUPPORTED):
            if marker in parts:
                return marker
        return parts
    proto, _, name = key.partition(" ")
    if proto in {"ip", "ip6"}:
        if packet.family != ("ipv4" if proto == "ip" else "ipv6"):
            return ABSENT
        if name == "saddr":
            return UNNAMED
        if name == "daddr":
            return packet.daddr if packet.daddr is not None else SOME
        if name in {"protocol", "nexthdr"}:
            return packet.protocol
        if name == "version":
            return 4 if proto == "ip" else 6
        if name == "frag-off":
            return 0x4000  # DF set, no offset, not more fragments: a whole first packet
        if name in {"ttl", "hoplimit", "length", "dscp", "flowlabel", "id", "ecn", "checksum"}:
            return SENDER
        return UNSUPPORTED
    if proto in {"tcp", "udp", "th"}:
        if proto not in {"th", packet.protocol}:
            return ABSENT
        if name == "dport":
            return packet.dport if packet.dport is not None else UNNAMED
        if name == "flags":
            return frozenset({"syn"}) if packet.protocol == "tcp" else ABSENT
        if name in {"sport", "length", "checksum", "window", "sequence", "urgptr", "doff"}:
            return SENDER
        return UNSUPPORTED
    if proto in {"icmp", "icmpv6", "sctp", "dccp", "udplite", "esp", "ah", "comp", "igmp"}:
        return ABSENT
    if proto in {"vlan", "arp"}:
        return ABSENT
    if key == "meta nfproto":
        return packet.family
    if key in {"meta l4proto"}:
        return packet.protocol
    if key in {"meta protocol", "ether type"}:
        return "ip" if packet.family == "ipv4" else "ip6"
    if key in {"meta iif", "meta iifname"}:
        return packet.iif if packet.iif is not None else SOME
    if key in {"meta oif", "meta oifname"}:
        if packet.oif == "":
            return ABSENT
        return packet.oif if packet.oif is not None else SOME
    if key == "meta iiftype":
        return "ether"
    if key == "meta mark":
        return packet.mark
    if key == "ct mark":
        return packet.ctmark
    if key == "meta pkttype":
        return "host"
    if key == "ct state":
        return frozenset({packet.ct_state})
    if key == "ct status":
        if packet.ct_state == "untracked":
            return ABSENT
        return frozenset({"dnat"}) if packet.ct_dnat else frozenset()
    if key == "ct direction":
        return "original" if packet.ct_state != "untracked" else ABSENT
    if key in {"ct zone"}:
        return 0
    if key == "ct helper":
        return ""
    if key == "fib daddr type":
        return "local" if packet.local else "unicast"
    if key == "fib saddr type":
        return "unicast"
    if key == "rpfilter":
        return "pass"
    if key in {"meta cpu", "meta random", "meta time", "meta day", "meta hour", "meta length"}:
        return SENDER
    if key == "ether saddr":
        return UNNAMED
    return UNSUPPORTED


def _members(value: Value, rhs: Rhs, key: str) -> Tri:  # noqa: PLR0911, PLR0912
    """Is the packet's value one of `rhs`?"""
    if value is ABSENT:
        return Tri.NO
    if rhs.dynamic:
        return Tri.MAYBE
    if value is SOME:
        if _covers_all(rhs, key):
            return Tri.YES
        if key.startswith("meta iif") and rhs.words <= {"lo"} and not rhs.patterns:
            return Tri.NO  # the packets judged arrive from outside, never on lo
        return Tri.MAYBE
    if value is SENDER:
        if _covers_all(rhs, key):
            return Tri.YES
        return Tri.MAYBE if (rhs.ints or rhs.addrs or rhs.words or rhs.tuples) else Tri.NO
    if value is UNNAMED:
        if _covers_all(rhs, key):
            return Tri.YES
        return Tri.MAYBE if _wide(rhs, key) else Tri.NO
    if isinstance(value, tuple):
        return _tuple_members(value, rhs, key)
    if isinstance(value, frozenset):  # a bitmask key compared with `==`: the same bits
        return Tri.YES if value in _bitsets(rhs, key) else Tri.NO
    if isinstance(value, bool):
        return Tri.YES if str(value).lower() in rhs.words else Tri.NO
    if isinstance(value, int):
        return Tri.YES if any(lo <= value <= hi for lo, hi in rhs.ints) else _word_int(value, rhs)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        number = int(value)
        hit = any(v == value.version and lo <= number <= hi for v, lo, hi in rhs.addrs)
        return Tri.YES if hit else Tri.NO
    if isinstance(value, str):
        if value in rhs.words or any(value.startswith(p) for p in rhs.patterns):
            return Tri.YES
        proto_number = _L4.get(value)
        if proto_number is not None and any(lo <= proto_number <= hi for lo, hi in rhs.ints):
            return Tri.YES
        return Tri.NO
    return Tri.MAYBE


def _word_int(value: int, rhs: Rhs) -> Tri:
    return Tri.YES if str(value) in rhs.words else Tri.NO


def _tuple_members(value: tuple[Value, ...], rhs: Rhs, key: str) -> Tri:
    keys = key.split(" . ")
    best = Tri.NO
    for element in rhs.tuples:
        if len(element) != len(value):
            return Tri.MAYBE
        answers = [_members(v, part, k) for v, part, k in zip(value, element, keys, strict=False)]
        answer = _all(answers)
        if answer is Tri.YES:
            return Tri.YES
        if answer is Tri.MAYBE:
            best = Tri.MAYBE
    return best


def _all(answers: Iterable[Tri]) -> Tri:
    out = Tri.YES
    for answer in answers:
        if answer is Tri.NO:
            return Tri.NO
        if answer is Tri.MAYBE:
            out = Tri.MAYBE
    return out


def _bitsets(rhs: Rhs, key: str) -> set[frozenset[str]]:
    """`ct state == established` as sets of flag names; ints become their named bits."""
    names = BITMASKS.get(key, {})
    sets: set[frozenset[str]] = {frozenset({w}) for w in rhs.words}
    for lo, hi in rhs.ints:
        if lo == hi:
            sets.add(frozenset(n for n, bit in names.items() if lo & bit))
    return sets


def _width(rhs: Rhs, key: str) -> tuple[int, int]:
    """(covered, total) of the key's value space, for ports and addresses."""
    if key.endswith(("dport", "sport")):
        covered = sum(min(hi, 65535) - max(lo, 0) + 1 for lo, hi in rhs.ints if hi >= lo)
        return covered, 65536
    if key.endswith(("saddr", "daddr")):
        version = 6 if key.startswith("ip6") else 4
        bits = 128 if version == 6 else 32
        covered = sum(hi - lo + 1 for v, lo, hi in rhs.addrs if v == version)
        return covered, 1 << bits
    return 0, 0


def _covers_all(rhs: Rhs, key: str) -> bool:
    if "" in rhs.patterns:
        return True
    covered, total = _width(rhs, key)
    return total > 0 and covered >= total


def _wide(rhs: Rhs, key: str) -> bool:
    covered, total = _width(rhs, key)
    if total == 0:
        return False
    if key.endswith(("dport", "sport")):
        return covered > WIDE_PORTS
    return covered > total >> WIDE_ADDRESS_SHIFT


def compare(value: Value, cond: Cond) -> Tri:
    """`value op rhs` (with `& mask` first when the condition has one)."""
    if value is ABSENT:
        return Tri.NO
    if cond.key in BITMASKS and isinstance(value, frozenset):
        return _bitmask(value, cond)
    if cond.mask is not None:
        if not isinstance(value, int) or isinstance(value, bool):
            return Tri.MAYBE
        value = value & cond.mask
    if cond.op in {"<", ">", "<=", ">="}:
        if not cond.rhs.ints:
            return Tri.MAYBE
        bound = cond.rhs.ints[0][0]
        lo, hi = {
            "<": (0, bound - 1),
            "<=": (0, bound),
            ">": (bound + 1, 1 << 32),
            ">=": (bound, 1 << 32),
        }[cond.op]
        return _members(value, Rhs(ints=((lo, hi),)), cond.key)
    answer = _members(value, cond.rhs, cond.key)
    return answer.negate() if cond.op == "!=" else answer


def _bitmask(value: frozenset[str], cond: Cond) -> Tri:
    """`ct state established,related`, `tcp flags & (syn|ack) == syn`, `ct status dnat`.

    nft's implicit form (op `in`, or `==` with several flags) asks whether any of the bits is
    set; with a mask the masked bits must equal the value."""
    names = BITMASKS[cond.key]
    bits = sum(names.get(n, 0) for n in value)
    wanted = sum(names.get(w, 0) for w in cond.rhs.words) | sum(
        lo for lo, hi in cond.rhs.ints if lo == hi
    )
    if cond.mask is not None:
        hit = (bits & cond.mask) == wanted
        return Tri.YES if (hit != (cond.op == "!=")) else Tri.NO
    if (
        cond.op == "=="
        and len(cond.rhs.words) <= 1
        and not cond.rhs.ints
        and cond.key == "tcp flags"
    ):
        hit = bits == wanted
    else:
        hit = (bits & wanted) != 0
    return Tri.YES if (hit != (cond.op == "!=")) else Tri.NO


# ----------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Verdict:
    """accept, drop (reject too), return, continue, jump CHAIN, goto CHAIN, or queue (the
    verdict then comes from a program in user space, which this model cannot follow)."""

    kind: Literal["accept", "drop", "return", "continue", "jump", "goto", "queue"]
    target: str | None = None


@dataclass(frozen=True)
class VMap:
    """`KEY vmap { value : verdict, ... }`: the verdict of the element the packet's key matches."""

    key: str
    entries: tuple[tuple[Rhs, Verdict], ...]
    text: str
    dynamic: bool = False


@dataclass(frozen=True)
class SetMark:
    """meta mark set / ct mark set; `value` None copies the other mark (restore/save)."""

    target: Literal["mark", "ctmark"]
    value: int | None
    mask: int | None = None


@dataclass(frozen=True)
class Notrack:
    """The packet is not tracked: its ct state is `untracked` and nat chains do not see it."""


@dataclass(frozen=True)
class Nat:
    """dnat/redirect rewrite the destination; snat/masquerade the source (nothing inbound)."""

    kind: Literal["dnat", "redirect", "snat"]
    addr: IPAddr | None = None
    port: int | None = None
    text: str = ""


@dataclass(frozen=True)
class Unknown:
    """A statement not understood: what follows it on this path is not certain."""

    text: str


Item = Cond | Maybe | Never | Verdict | VMap | SetMark | Notrack | Nat | Unknown


@dataclass(frozen=True)
class Rule:
    items: tuple[Item, ...]
    text: str
    """How the rule is shown in evidence (`handle 7: tcp dport 22 accept`, `-p tcp -j ACCEPT`)."""


@dataclass
class Table:
    """One table: its chains by name; base chains carry their hook in `BaseChain` metadata."""

    source: str
    family: str
    name: str
    chains: dict[str, list[Rule]] = field(default_factory=dict)
    base: list[BaseChain] = field(default_factory=list)
    dormant: bool = False


@dataclass
class Ruleset:
    tables: list[Table] = field(default_factory=list)

    def base_chains(self) -> list[tuple[Table, BaseChain]]:
        return [(t, c) for t in self.tables for c in t.base]


def families_of(table_family: str) -> Sequence[Family]:
    """Which IP families a table of this nft family sees (netdev/inet: both)."""
    if table_family == "ip":
        return ("ipv4",)
    if table_family == "ip6":
        return ("ipv6",)
    if table_family in {"inet", "netdev"}:
        return ("ipv4", "ipv6")
    return ()


def with_mark(packet: Packet, stmt: SetMark) -> Packet:
    source = packet.ctmark if stmt.target == "mark" else packet.mark
    value = source if stmt.value is None else stmt.value
    current = packet.mark if stmt.target == "mark" else packet.ctmark
    if stmt.mask is not None:
        value = (current & ~stmt.mask) ^ value
    if stmt.target == "mark":
        return replace(packet, mark=value)
    return replace(packet, ctmark=value)
