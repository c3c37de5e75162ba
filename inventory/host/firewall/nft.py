"""`nft -j list ruleset` into the ruleset model: tables, their flags, base chains with hook,
priority, type, policy and devices, named sets and maps, and every rule as matches and
statements.

nft 1.0.6 (Debian 12) prints two things wrongly in JSON: a table's flags (as the table's name)
and an ingress chain's devices (not at all). `parse_nft_listing()` reads both from the plain
`nft list ruleset` text, which the collector asks for only when the JSON shows the need. Rules
that iptables-nft wrote with xtables matches appear in the JSON as a bare `xt` name; those tables
are read again from `iptables-nft-save` (see `xtables.py`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from checks.facts.firewall import BaseChain
from inventory.host import jsontext
from inventory.host.firewall.ir import (
    BITMASKS,
    Cond,
    Item,
    Maybe,
    Nat,
    Never,
    Notrack,
    Rhs,
    Rule,
    Ruleset,
    SetMark,
    Table,
    Unknown,
    Verdict,
    VMap,
    rhs_interface,
    union,
)

INBOUND_HOOKS = ("ingress", "prerouting", "input", "forward", "postrouting")
IP_FAMILIES = ("ip", "ip6", "inet", "netdev")
_NEUTRAL = {
    "counter",
    "log",
    "comment",
    "flow",
    "ct helper",
    "ct timeout",
    "ct expectation",
    "secmark",
    "dup",
    "set",
    "map",
    "synproxy_ignored",
}
_MAYBE_STATEMENTS = {"limit", "quota", "ct count", "meter"}
_HASHES = {"numgen", "jhash", "symhash"}
_VERDICT_WORDS = {"accept", "drop", "return", "continue"}
_XT_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "REJECT": "drop"}
_XT_NEUTRAL_TARGETS = {"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "TCPMSS", "CHECKSUM"}
_SENDER_MANGLE = {"dscp", "ttl", "hoplimit", "ecn", "tos"}


class RulesetError(ValueError):
    """A ruleset listing that does not parse."""


@dataclass
class NftRuleset:
    """What `nft -j list ruleset` showed, and what it left for other listings to complete."""

    ruleset: Ruleset
    version: str | None
    xt_tables: set[tuple[str, str]] = field(default_factory=set)
    """(family, table) holding xtables expressions: their rules are to be read from
    iptables-nft-save."""
    needs_listing: bool = False
    """A table flag or an ingress chain's devices that the JSON did not spell out."""


@dataclass
class _Sets:
    values: dict[str, Rhs] = field(default_factory=dict)
    maps: dict[str, list[tuple[Rhs, Verdict]]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    """Sets and maps whose elements this model could not read: a rule using one is not judged."""


def nft_items(text: str) -> list[Any]:
    """The objects of one `nft -j list ...` answer."""
    try:
        items = jsontext.loads(text)["nftables"] if text.strip() else []
    except (ValueError, KeyError, TypeError) as exc:
        raise RulesetError(f"nft -j printed no ruleset JSON: {exc}") from None
    if not isinstance(items, list):
        raise RulesetError("nft -j printed no list of objects")
    return items


def parse_nft_json(text: str) -> NftRuleset:
    return parse_nft_items(nft_items(text))


def parse_nft_items(items: Sequence[Any]) -> NftRuleset:
    """The ruleset from nft's JSON objects (tables, chains, sets, maps, rules, in any order of
    kinds: tables first, as nft prints them)."""
    tables: dict[tuple[str, str], Table] = {}
    sets: dict[tuple[str, str], _Sets] = {}
    result = NftRuleset(Ruleset(), None)
    rules: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "metainfo" in item:
            result.version = str(item["metainfo"].get("version"))
        elif "table" in item:
            _table(item["table"], tables, result)
        elif "chain" in item:
            _chain(item["chain"], tables, result)
        elif "set" in item or "map" in item:
            _set(item.get("set") or item["map"], sets)
        elif "rule" in item:
            rules.append(item["rule"])
    for rule in rules:
        key = (rule.get("family", ""), rule.get("table", ""))
        table = tables.get(key)
        if table is None:
            continue
        exprs = rule.get("expr") or []
        if any(isinstance(e, dict) and "xt" in e for e in exprs):
            result.xt_tables.add(key)
        parsed = _rule(exprs, rule.get("handle"), sets.get(key, _Sets()))
        if key[0] == "netdev":
            parsed = _in_netdev(parsed)
        table.chains.setdefault(rule.get("chain", ""), []).append(parsed)
    result.ruleset.tables = list(tables.values())
    return result


def _table(item: Mapping[str, Any], tables: dict[tuple[str, str], Table], out: NftRuleset) -> None:
    family = item.get("family", "")
    if family not in IP_FAMILIES:
        return
    table = Table("nft", family, item.get("name", ""))
    flags = item.get("flags")
    if flags:
        words = [flags] if isinstance(flags, str) else list(flags)
        known = {"dormant", "owner", "persist"}
        if all(w in known for w in words):
            table.dormant = "dormant" in words
        else:
            out.needs_listing = True  # nft 1.0.6 prints the table's name here
    tables[(family, table.name)] = table


def _chain(item: Mapping[str, Any], tables: dict[tuple[str, str], Table], out: NftRuleset) -> None:
    table = tables.get((item.get("family", ""), item.get("table", "")))
    if table is None:
        return
    name = item.get("name", "")
    table.chains.setdefault(name, [])
    hook = item.get("hook")
    if hook not in INBOUND_HOOKS:
        return
    dev = item.get("dev")
    devices = tuple([dev] if isinstance(dev, str) else (dev or ()))
    if hook == "ingress" and not devices:
        out.needs_listing = True
    table.base.append(
        BaseChain(
            source="nft",
            family=table.family,
            table=table.name,
            name=name,
            hook=hook,
            priority=_priority(item.get("prio")),
            type=str(item.get("type", "filter")),
            policy="drop" if item.get("policy") == "drop" else "accept",
            devices=devices,
            dormant=False,
        )
    )


def _priority(value: Any) -> int:
    """nft prints a base chain's priority as a number; anything else sorts as filter (0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _set(item: Mapping[str, Any], sets: dict[tuple[str, str], _Sets]) -> None:
    key = (item.get("family", ""), item.get("table", ""))
    found = sets.setdefault(key, _Sets())
    name = "@" + str(item.get("name", ""))
    flags = item.get("flags") or []
    if isinstance(flags, str):
        flags = [flags]
    if "dynamic" in flags or "timeout" in flags or "timeout" in item:
        found.dynamic.add(name)
    elements = item.get("elem") or []
    try:
        if item.get("map") == "verdict":
            entries = []
            for element in elements:
                verdict = _verdict(element[1]) if isinstance(element, list) else None
                if verdict is None:
                    raise _NotUnderstood(f"map element {json.dumps(element)}")
                entries.append((value_rhs(element[0]), verdict))
            found.maps[name] = entries
        else:
            found.values[name] = union(value_rhs(e) for e in elements)
    except (_NotUnderstood, ValueError, TypeError, IndexError):
        found.broken.add(name)


# ----------------------------------------------------------------------------- values


def value_rhs(value: Any) -> Rhs:  # noqa: PLR0911, PLR0912 — one arm per JSON value form
    """A right-hand value: number, word, address, prefix, range, set, concatenation."""
    if isinstance(value, bool):
        return Rhs(words=frozenset({str(value).lower()}))
    if isinstance(value, int):
        return Rhs(ints=((value, value),))
    if isinstance(value, str):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return rhs_interface(value) if value.endswith("*") else Rhs(words=frozenset({value}))
        return Rhs(addrs=((address.version, int(address), int(address)),))
    if isinstance(value, list):
        return union(value_rhs(v) for v in value)
    if isinstance(value, dict):
        if "set" in value:
            return value_rhs(value["set"])
        if "prefix" in value:
            p = value["prefix"]
            net = ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
            return Rhs(addrs=((net.version, int(net.network_address), int(net.broadcast_address)),))
        if "range" in value:
            lo, hi = value["range"]
            if isinstance(lo, int) and isinstance(hi, int):
                return Rhs(ints=((lo, hi),))
            first, last = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
            return Rhs(addrs=((first.version, int(first), int(last)),))
        if "elem" in value:
            return value_rhs(value["elem"].get("val"))
        if "concat" in value:
            return Rhs(tuples=(tuple(value_rhs(v) for v in value["concat"]),))
        if "|" in value:
            return value_rhs(value["|"])
    raise _NotUnderstood(f"value {json.dumps(value)}")


class _NotUnderstood(Exception):
    pass


def _mask(value: Any, key: str) -> int:
    names = BITMASKS.get(key, {})
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return names.get(value, 0) if value in names else int(value, 0)
    if isinstance(value, list):
        return sum(_mask(v, key) for v in value)
    if isinstance(value, dict) and "|" in value:
        return _mask(value["|"], key)
    raise _NotUnderstood(f"mask {json.dumps(value)}")


# ----------------------------------------------------------------------------- expressions


def _key(left: Any) -> str:
    """nft's name for a left-hand expression, or raise for one this model does not know."""
    if isinstance(left, dict):
        if "meta" in left:
            return f"meta {left['meta'].get('key')}"
        if "payload" in left:
            p = left["payload"]
            if "protocol" in p:
                return f"{p['protocol']} {p.get('field')}"
        if "ct" in left:
            return f"ct {left['ct'].get('key')}"
        if "fib" in left:
            fib = left["fib"]
            flags = fib.get("flags") or []
            if fib.get("result") == "type":
                return "fib daddr type" if "daddr" in flags else "fib saddr type"
            if fib.get("result") in {"oif", "oifname"} and "saddr" in flags:
                return "rpfilter"
        if "concat" in left:
            return " . ".join(_key(part) for part in left["concat"])
    raise _NotUnderstood(f"expression {json.dumps(left, sort_keys=True)}")


def _match(value: Mapping[str, Any], sets: _Sets) -> Item | None:  # noqa: PLR0911, PLR0912
    left, right, op = value.get("left"), value.get("right"), value.get("op", "==")
    text = f"{show(left)} {'' if op in {'==', 'in'} else op + ' '}{show(right)}"
    if isinstance(left, dict):
        if "exthdr" in left:
            if "field" in left["exthdr"]:
                return Never(text)  # a field of a header a plain first packet does not carry
            present = (right is True) == (op in {"==", "in"})
            return Never(text) if present else None
        if any(k in left for k in _HASHES):
            return Maybe(text)
        if "tcp option" in left:
            return Maybe(text)
    mask: int | None = None
    if isinstance(left, dict) and "&" in left:
        inner, mask_value = left["&"]
        key = _key(inner)
        mask = _mask(mask_value, key)
    else:
        key = _key(left)
    if key == "rpfilter":
        rhs = Rhs(words=frozenset({"fail" if right in {False} else "pass"}))
        return Cond(key, "!=" if op == "!=" else "==", rhs, text)
    if isinstance(right, str) and right.startswith("@"):
        if right in sets.values:
            rhs = sets.values[right]
            if right in sets.dynamic:
                rhs = Rhs(rhs.ints, rhs.addrs, rhs.words, rhs.patterns, rhs.tuples, dynamic=True)
        else:
            why = "elements not understood" if right in sets.broken else "set not listed"
            return Maybe(f"{text} ({why})", unknown=True)
    else:
        rhs = value_rhs(right)
    return Cond(key, op, rhs, text, mask=mask)


def _verdict(value: Any) -> Verdict | None:
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (kind, body), *_ = value.items()
    if kind in _VERDICT_WORDS:
        return Verdict(kind)
    if kind == "reject":
        return Verdict("drop")
    if kind in {"jump", "goto"} and isinstance(body, dict):
        return Verdict(kind, str(body.get("target")))
    return None


def _mangle(body: Mapping[str, Any]) -> Item | None:  # noqa: PLR0911 — one return per key
    key = body.get("key") or {}
    value = body.get("value")
    target = None
    if key.get("meta", {}).get("key") == "mark":
        target = "mark"
    elif key.get("ct", {}).get("key") == "mark":
        target = "ctmark"
    if target is not None:
        if isinstance(value, int):
            return SetMark(target, value)  # type: ignore[arg-type]
        other = "ctmark" if target == "mark" else "mark"
        source = (
            value.get("ct" if other == "ctmark" else "meta", {}) if isinstance(value, dict) else {}
        )
        if source.get("key") == "mark":
            return SetMark(target, None)  # type: ignore[arg-type]
        return Unknown(f"{show(key)} set {show(value)}")
    meta_key = key.get("meta", {}).get("key")
    if meta_key in {"nftrace", "priority"} or "tcp option" in key:
        return None
    if key.get("ct", {}).get("key") in {"zone", "label", "event", "helper", "expectation"}:
        return None  # conntrack bookkeeping: no verdict or packet field the walk reads
    if key.get("payload", {}).get("field") in _SENDER_MANGLE:
        return None
    return Unknown(f"{show(key)} set {show(value)}")


def _nat(kind: str, body: Any) -> Item:
    body = body if isinstance(body, dict) else {}
    text = f"{kind} {show(body)}".strip()
    if kind in {"snat", "masquerade"}:
        return Nat("snat", text=text)
    port = body.get("port")
    if port is not None and not isinstance(port, int):
        return Unknown(text)
    if kind == "redirect":
        return Nat("redirect", port=port, text=text)
    addr = body.get("addr")
    try:
        address = ipaddress.ip_address(addr) if addr is not None else None
    except (ValueError, TypeError):
        return Unknown(text)
    return Nat("dnat", addr=address, port=port, text=text)


def _statement(kind: str, body: Any, sets: _Sets) -> Item | None:  # noqa: PLR0911, PLR0912
    if kind == "match":
        return _match(body, sets)
    verdict = _verdict({kind: body})
    if verdict is not None:
        return verdict
    if kind == "queue":
        return Verdict("queue")
    if kind in _NEUTRAL:
        return None
    if kind in _MAYBE_STATEMENTS:
        return Maybe(f"{kind} {show(body)}")
    if kind == "vmap":
        return _vmap(body, sets)
    if kind == "mangle":
        return _mangle(body)
    if kind == "notrack":
        return Notrack()
    if kind in {"dnat", "snat", "masquerade", "redirect"}:
        return _nat(kind, body)
    if kind == "xt":
        name = str((body or {}).get("name", "?"))
        if (body or {}).get("type") == "target":
            if name in _XT_VERDICTS:
                return Verdict(_XT_VERDICTS[name])  # type: ignore[arg-type]
            if name in _XT_NEUTRAL_TARGETS:
                return None
            return Unknown(f"xtables target {name} (options not shown by nft -j)")
        return Maybe(f"xtables match {name} (options not shown by nft -j)", unknown=True)
    return Unknown(f"{kind} {show(body)}".strip())


def _vmap(body: Mapping[str, Any], sets: _Sets) -> Item:
    key = _key(body.get("key"))
    data = body.get("data")
    text = f"{show(body.get('key'))} vmap {show(data)}"
    if isinstance(data, str) and data.startswith("@"):
        if data not in sets.maps:
            why = "elements not understood" if data in sets.broken else "map not listed"
            return Unknown(f"{text} ({why})")
        return VMap(key, tuple(sets.maps[data]), text, dynamic=data in sets.dynamic)
    entries: list[tuple[Rhs, Verdict]] = []
    for element in (data or {}).get("set", []):
        if not (isinstance(element, list) and len(element) == 2):
            return Unknown(text)
        verdict = _verdict(element[1])
        if verdict is None:
            return Unknown(text)
        entries.append((value_rhs(element[0]), verdict))
    return VMap(key, tuple(entries), text)


def _in_netdev(rule: Rule) -> Rule:
    """In a netdev table `meta nfproto` is the netdev family itself, never ipv4 or ipv6 (tables
    of that family test `meta protocol` instead)."""
    items: list[Item] = []
    for item in rule.items:
        if isinstance(item, Cond | VMap) and item.key == "meta nfproto":
            if isinstance(item, Cond) and item.op == "!=":
                continue  # always true
            items.append(Never(item.text))
            continue
        items.append(item)
    return Rule(tuple(items), rule.text)


def _rule(exprs: Sequence[Any], handle: object, sets: _Sets) -> Rule:
    items: list[Item] = []
    shown: list[str] = []
    for expr in exprs:
        if not isinstance(expr, dict) or not expr:
            continue
        (kind, body), *_ = expr.items()
        try:
            item = _statement(kind, body, sets)
        except (_NotUnderstood, ValueError, TypeError, KeyError) as exc:
            item = (
                Maybe(f"{kind} {show(body)}: {exc}", unknown=True)
                if kind == "match"
                else (Unknown(f"{kind} {show(body)}"))
            )
        if kind != "counter":
            shown.append(_show_statement(kind, body))
        if item is not None:
            items.append(item)
    return Rule(tuple(items), f"handle {handle}: {' '.join(shown)}")


# ----------------------------------------------------------------------------- showing


def show(value: Any) -> str:  # noqa: PLR0911, PLR0912 — one arm per JSON form
    """A compact nft-like spelling of a JSON expression, for evidence."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "exists" if value else "missing"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list):
        return "{ " + ", ".join(show(v) for v in value) + " }"
    if isinstance(value, dict):
        if "meta" in value:
            return f"meta {value['meta'].get('key')}"
        if "payload" in value and "protocol" in value["payload"]:
            return f"{value['payload']['protocol']} {value['payload'].get('field')}"
        if "ct" in value:
            return f"ct {value['ct'].get('key')}"
        if "fib" in value:
            fib = value["fib"]
            return f"fib {' . '.join(fib.get('flags') or [])} {fib.get('result')}"
        if "set" in value:
            return show(value["set"])
        if "prefix" in value:
            return f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}"
        if "range" in value:
            lo, hi = value["range"]
            return f"{lo}-{hi}"
        if "concat" in value:
            return " . ".join(show(v) for v in value["concat"])
        if "&" in value:
            return f"{show(value['&'][0])} & {show(value['&'][1])}"
        if "|" in value:
            return "|".join(show(v) for v in value["|"])
        if "elem" in value:
            return show(value["elem"].get("val"))
        if "jump" in value or "goto" in value:
            kind = "jump" if "jump" in value else "goto"
            return f"{kind} {value[kind].get('target')}"
        if len(value) == 1:
            (k, v), *_ = value.items()
            return f"{k} {show(v)}".strip() if not isinstance(v, dict) else k
        return " ".join(f"{k} {show(v)}" for k, v in value.items() if k != "family")
    return json.dumps(value)


def _show_statement(kind: str, body: Any) -> str:  # noqa: PLR0911 — one arm per statement
    if kind == "match" and isinstance(body, dict):
        op = body.get("op", "==")
        shown_op = "" if op in {"==", "in"} else op + " "
        return f"{show(body.get('left'))} {shown_op}{show(body.get('right'))}"
    if kind in {"jump", "goto"} and isinstance(body, dict):
        return f"{kind} {body.get('target')}"
    if kind == "vmap" and isinstance(body, dict):
        return f"{show(body.get('key'))} vmap {show(body.get('data'))}"
    if kind == "xt" and isinstance(body, dict):
        return f"xt {body.get('type')} {body.get('name')}"
    if kind == "reject" and isinstance(body, dict):
        return " ".join(
            ["reject with", str(body.get("type", "")), str(body.get("expr", ""))]
        ).strip()
    if body is None:
        return kind
    return f"{kind} {show(body)}"


# ----------------------------------------------------------------------------- plain listing

_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_FLAGS = re.compile(r"^\s+flags (\S.*)$")
_CHAIN = re.compile(r"^\s+chain (\S+) \{")
_DEVICE = re.compile(r'hook ingress (?:device "?([^";\s]+)"?|devices = \{ ([^}]*) \})')


def parse_nft_listing(
    text: str,
) -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str, str], tuple[str, ...]]]:
    """Table flags and ingress devices from plain `nft list ruleset` output."""
    flags: dict[tuple[str, str], set[str]] = {}
    devices: dict[tuple[str, str, str], tuple[str, ...]] = {}
    table: tuple[str, str] | None = None
    chain: str | None = None
    for line in text.splitlines():
        if m := _TABLE.match(line):
            table, chain = (m.group(1), m.group(2)), None
            flags.setdefault(table, set())
        elif table is None:
            continue
        elif m := _CHAIN.match(line):
            chain = m.group(1)
        elif chain is None and (m := _FLAGS.match(line)):
            flags[table].update(w.strip() for w in m.group(1).split(","))
        elif chain is not None and (m := _DEVICE.search(line)):
            names = m.group(1) or m.group(2)
            devices[(*table, chain)] = tuple(
                n.strip().strip('"') for n in names.split(",") if n.strip()
            )
    return flags, devices


def apply_listing(parsed: NftRuleset, text: str) -> None:
    """Complete the JSON with the flags and devices the plain listing shows."""
    flags, devices = parse_nft_listing(text)
    for table in parsed.ruleset.tables:
        table_flags = flags.get((table.family, table.name))
        if table_flags is not None:
            table.dormant = "dormant" in table_flags
        table.base = [
            replace(
                c,
                devices=devices.get((table.family, table.name, c.name), c.devices),
                dormant=table.dormant,
            )
            for c in table.base
        ]


def mark_dormant(parsed: NftRuleset) -> None:
    """Copy each table's dormant flag onto its base chains (for the evidence)."""
    for table in parsed.ruleset.tables:
        table.base = [replace(c, dormant=table.dormant) for c in table.base]
