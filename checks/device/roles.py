"""Device role classification: what an SNMP agent's identity (sysObjectID, sysDescr, sysName,
ENTITY-MIB model names) says a device is — firewall, ips, waf, router, switch, wireless, server,
power, printer, storage or other — with a confidence and the signals it rests on.

The knowledge is data (`roles.yaml`: enterprise numbers with a default role, and product-line
rules); this module only loads, validates and applies it. LibreNMS and Observium stop at the
vendor's OS family, so a Huawei USG, an H3C SecPath or a Juniper SRX comes out as "network"; the
rules here go down to the product line, and say which signal decided.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from checks.facts.devices import ROLES, Classification, Role

ENTERPRISES = "1.3.6.1.4.1."
DEFAULT_CONFIDENCE = 0.9
"""A rule's confidence when it names none: a product line named."""
UNKNOWN_CONFIDENCE = 0.1

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OID = re.compile(r"^\d+(\.\d+)+$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_FIELDS = ("oid", "descr", "model", "text", "name")
_RULE_KEYS = frozenset({"id", "enterprise", "vendor", "role", "confidence", "except", *_FIELDS})
_VENDOR_KEYS = frozenset({"name", "zh", "role", "confidence", "generic"})


class RulesError(ValueError):
    """A rules file is malformed; the message is one line naming the rule."""


@dataclass(frozen=True)
class Vendor:
    """One enterprise number: whose it is and what its devices are when no rule says more."""

    name: str
    zh: str | None
    role: Role
    confidence: float
    generic: bool = False
    """The number names agent software (net-snmp), not a device maker."""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.zh})" if self.zh else self.name


@dataclass(frozen=True)
class Match:
    """The signals of a rule (or of its `except`): any one of them matching is a match."""

    oids: tuple[str, ...] = ()
    descr: tuple[re.Pattern[str], ...] = ()
    model: tuple[re.Pattern[str], ...] = ()
    text: tuple[re.Pattern[str], ...] = ()
    name: tuple[re.Pattern[str], ...] = ()

    def hits(self, oid: str, descr: str, models: str, name: str) -> list[str]:
        """`models`: the ENTITY-MIB names one a line (one search covers them all)."""
        """Each signal that matched, in words."""
        found = [f"sysObjectID {oid} under {p}" for p in self.oids if _under(oid, p)]
        found += _searched("sysDescr", self.descr, descr)
        found += _searched("ENTITY-MIB", self.model, models)
        found += _searched("sysDescr", self.text, descr)
        found += _searched("ENTITY-MIB", self.text, models)
        found += _searched("sysName", self.name, name)
        return found


@dataclass(frozen=True)
class Rule:
    id: str
    role: Role
    confidence: float
    match: Match
    unless: Match | None = None
    enterprises: frozenset[int] = frozenset()
    """Empty: the rule applies whatever the enterprise."""
    vendor: str | None = None
    """The vendor this rule names, over the enterprise's (pfSense on a FreeBSD agent)."""


@dataclass(frozen=True)
class Rules:
    """A loaded rules file, with its rules indexed by the enterprise they are written for."""

    vendors: Mapping[int, Vendor]
    rules: tuple[Rule, ...]
    _by_enterprise: Mapping[int, tuple[Rule, ...]] = field(init=False, repr=False, compare=False)
    _anywhere: tuple[Rule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        anywhere = tuple(r for r in self.rules if not r.enterprises)
        named = {e for r in self.rules for e in r.enterprises}
        index = {
            e: tuple(r for r in self.rules if not r.enterprises or e in r.enterprises)
            for e in named
        }
        object.__setattr__(self, "_anywhere", anywhere)
        object.__setattr__(self, "_by_enterprise", index)

    def for_enterprise(self, enterprise: int | None) -> tuple[Rule, ...]:
        """The rules that may apply to a device of this enterprise, in file order."""
        if enterprise is None:
            return self._anywhere
        return self._by_enterprise.get(enterprise, self._anywhere)


def classify(
    sys_object_id: str,
    sys_descr: str = "",
    *,
    sys_name: str = "",
    models: Sequence[str] = (),
    sys_services: int | None = None,
    rules: Rules | None = None,
) -> Classification:
    """The role of a device from its SNMP identity: the most confident matching rule, else
    its enterprise's default, else `other` with a low confidence and the reason."""
    rules = rules or default_rules()
    oid = normalise_oid(sys_object_id)
    enterprise = enterprise_number(oid)
    vendor = rules.vendors.get(enterprise) if enterprise is not None else None
    lines = "\n".join(m.replace("\n", " ") for m in models if m)
    about = _about(oid, enterprise, vendor)
    candidates = [
        _Candidate(rule.role, rule.confidence, tuple(f"{h} (rule {rule.id})" for h in hits), rule)
        for rule in rules.for_enterprise(enterprise)
        if (hits := rule.match.hits(oid, sys_descr, lines, sys_name))
        and not (rule.unless and rule.unless.hits(oid, sys_descr, lines, sys_name))
    ]
    if vendor is not None:
        why = (
            f"no appliance pattern: a {vendor.name} agent is taken for a {vendor.role}"
            if vendor.generic
            else f"{vendor.label}'s default role is {vendor.role}"
        )
        candidates.append(_Candidate(vendor.role, vendor.confidence, (why,)))
    if not candidates:
        return _unknown(enterprise, about, sys_services)
    # The most confident wins; a rule beats the enterprise default at equal confidence (it
    # comes first). Candidates of the same role corroborate it; the others are said outweighed.
    best = max(candidates, key=lambda c: c.confidence)
    agreeing = [s for c in candidates if c.role == best.role and c is not best for s in c.signals]
    others = sorted({c.describe() for c in candidates if c.role != best.role})
    rule = best.rule
    named = rule.vendor if rule and rule.vendor else None
    if named is None and vendor is not None and not vendor.generic:
        named = vendor.label
    return Classification(
        vendor=named or (None if vendor else _number(enterprise)),
        role=best.role,
        confidence=best.confidence,
        signals=(
            *about,
            *best.signals,
            *agreeing,
            *([f"outweighs {', '.join(others)}"] if others else []),
        ),
        rule=rule.id if rule else None,
    )


@dataclass(frozen=True)
class _Candidate:
    role: Role
    confidence: float
    signals: tuple[str, ...]
    rule: Rule | None = None
    """None: the enterprise's default."""

    def describe(self) -> str:
        source = self.rule.id if self.rule else "enterprise default"
        return f"{self.role} ({source}, {self.confidence:.2f})"


def _unknown(
    enterprise: int | None, about: tuple[str, ...], services: int | None
) -> Classification:
    # sysServices bit 2 (layer 2) without bit 3 (layer 3) or 7 (applications): a bridge.
    if services is not None and services & 0b10 and not services & 0b1001100:
        return Classification(
            vendor=_number(enterprise),
            role="switch",
            confidence=0.3,
            signals=(*about, f"sysServices {services}: layer 2 only, a bridge"),
        )
    return Classification(
        vendor=_number(enterprise),
        role="other",
        confidence=UNKNOWN_CONFIDENCE,
        signals=(*about, "no rule and no known enterprise: role unknown"),
    )


def _about(oid: str, enterprise: int | None, vendor: Vendor | None) -> tuple[str, ...]:
    if enterprise is None:
        return (f"sysObjectID {oid or '(none)'} names no enterprise",)
    if vendor is None:
        return (f"enterprise {enterprise} is not in the rules",)
    if vendor.generic:
        return (f"sysObjectID {oid} is {vendor.name}'s generic agent ({enterprise}): no vendor",)
    return (f"enterprise {enterprise} is {vendor.label}",)


def _number(enterprise: int | None) -> str | None:
    return f"enterprise {enterprise}" if enterprise is not None else None


def normalise_oid(oid: str) -> str:
    """`.1.3.6...`, `iso.3.6...` and surrounding blanks to the plain dotted form."""
    oid = oid.strip().lstrip(".")
    if oid.startswith("iso."):
        oid = "1." + oid[4:]
    return oid


def enterprise_number(oid: str) -> int | None:
    """The IANA enterprise number of a sysObjectID under 1.3.6.1.4.1, else None."""
    if not oid.startswith(ENTERPRISES):
        return None
    arc = oid[len(ENTERPRISES) :].split(".", 1)[0]
    return int(arc) if arc.isdigit() else None


def _under(oid: str, prefix: str) -> bool:
    return oid == prefix or oid.startswith(prefix + ".")


def _searched(where: str, patterns: Iterable[re.Pattern[str]], value: str) -> list[str]:
    found = []
    for pattern in patterns:
        if match := pattern.search(value):
            # the line it matched in: ENTITY-MIB names are searched one a line
            start = value.rfind("\n", 0, match.start()) + 1
            end = value.find("\n", match.end())
            line = value[start : end if end >= 0 else len(value)]
            shown = line if len(line) <= 60 else line[:57] + "..."
            found.append(f"{where} '{shown}' names '{match.group(0)}'")
    return found


@functools.lru_cache(maxsize=1)
def default_rules() -> Rules:
    """The packaged `roles.yaml`, loaded once."""
    text = resources.files("checks.device").joinpath("roles.yaml").read_text(encoding="utf-8")
    return parse_rules(text, "roles.yaml")


def load_rules(path: str | os.PathLike[str]) -> Rules:
    """A rules file; RulesError (one line naming the file and rule) when malformed."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{os.fspath(path)}: cannot read: {exc}") from exc
    return parse_rules(text, os.fspath(path))


def parse_rules(text: str, source: str = "rules") -> Rules:
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict) or set(data) - {"vendors", "rules"}:
        raise RulesError(f"{source}: expected a mapping with `vendors` and `rules` only")
    vendors_raw, rules_raw = data.get("vendors") or {}, data.get("rules") or []
    if not isinstance(vendors_raw, dict) or not isinstance(rules_raw, list):
        raise RulesError(f"{source}: `vendors` must be a mapping and `rules` a list")
    vendors = {
        _enterprise(source, f"vendor {key}", key): _vendor(f"{source}: vendor {key}", value)
        for key, value in vendors_raw.items()
    }
    rules: list[Rule] = []
    for index, raw in enumerate(rules_raw):
        rule = _rule(source, index, raw)
        if any(r.id == rule.id for r in rules):
            raise RulesError(f"{source}: rule {rule.id}: id used twice")
        rules.append(rule)
    return Rules(vendors=vendors, rules=tuple(rules))


def _vendor(where: str, raw: object) -> Vendor:
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: expected a mapping")
    _known_keys(where, raw, _VENDOR_KEYS)
    name, zh = raw.get("name"), raw.get("zh")
    if not isinstance(name, str) or not name or not isinstance(zh, str | None):
        raise RulesError(f"{where}: `name` (and `zh`) must be text")
    return Vendor(
        name=name,
        zh=zh,
        role=_role(where, raw.get("role")),
        confidence=_confidence(where, raw.get("confidence")),
        generic=bool(raw.get("generic", False)),
    )


def _rule(source: str, index: int, raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: rule #{index + 1}: expected a mapping")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        raise RulesError(f"{source}: rule #{index + 1}: `id` must be lower-case words and dashes")
    where = f"{source}: rule {rule_id}"
    _known_keys(where, raw, _RULE_KEYS)
    enterprises = raw.get("enterprise", [])
    enterprises = enterprises if isinstance(enterprises, list) else [enterprises]
    numbers = frozenset(_enterprise(source, f"rule {rule_id}", e) for e in enterprises)
    match = _match(where, raw, numbers)
    if match == Match():
        raise RulesError(f"{where}: no signal to match (oid, descr, model, text or name)")
    unless = raw.get("except")
    if unless is not None and not isinstance(unless, dict):
        raise RulesError(f"{where}: `except` must be a mapping of signals")
    vendor = raw.get("vendor")
    if not isinstance(vendor, str | None):
        raise RulesError(f"{where}: `vendor` must be text")
    return Rule(
        id=rule_id,
        role=_role(where, raw.get("role")),
        confidence=_confidence(where, raw.get("confidence", DEFAULT_CONFIDENCE)),
        match=match,
        unless=_match(f"{where}: except", unless, numbers) if unless else None,
        enterprises=numbers,
        vendor=vendor,
    )


def _match(where: str, raw: dict[str, Any], enterprises: frozenset[int]) -> Match:
    _known_keys(where, raw, _RULE_KEYS if "id" in raw else frozenset(_FIELDS))
    oids = tuple(normalise_oid(str(o)) for o in _listed(where, raw.get("oid")))
    for oid in oids:
        if not _OID.match(oid):
            raise RulesError(f"{where}: bad OID {oid!r}")
        if enterprises and enterprise_number(oid) not in enterprises:
            raise RulesError(f"{where}: OID {oid} is not under the rule's enterprise")
    return Match(oids, *(_patterns(where, f, raw.get(f)) for f in _FIELDS[1:]))


def _patterns(where: str, field: str, raw: object) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in _listed(where, raw):
        try:
            compiled.append(re.compile(str(pattern), re.IGNORECASE | re.MULTILINE))
        except re.error as exc:
            raise RulesError(f"{where}: bad {field} regex {pattern!r}: {exc}") from exc
    return tuple(compiled)


def _listed(where: str, raw: object) -> list[object]:
    if raw is None:
        return []
    if isinstance(raw, list):
        return raw
    if isinstance(raw, str | int | float):
        return [raw]
    raise RulesError(f"{where}: expected text or a list, got {type(raw).__name__}")


def _known_keys(where: str, raw: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in set(raw) - allowed)
    if unknown:
        raise RulesError(f"{where}: unknown key {', '.join(unknown)}")


def _enterprise(source: str, where: str, raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise RulesError(f"{source}: {where}: enterprise must be a number, got {raw!r}")
    return raw


def _role(where: str, raw: object) -> Role:
    for role in ROLES:
        if raw == role:
            return role
    raise RulesError(f"{where}: unknown role {raw!r} (one of {', '.join(ROLES)})")


def _confidence(where: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
        raise RulesError(f"{where}: confidence must be a number from 0 to 1, got {raw!r}")
    return float(raw)
