"""SNMP answers as device facts: varbind values as Python (octet strings as text in whatever
encoding the device used), how guessable a community is, and the walked columns read as
ENTITY-MIB physical entities and as interfaces with their IPv4 addresses. Pure: no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from checks.facts.devices import Entity, Interface
from inventory.network.snmp_tables import (
    ENT_PHYSICAL_ENTRY,
    ENTITY_COLUMNS,
    IF_DESCR,
    IF_NAME,
    IP_AD_ENT_IF_INDEX,
    IP_AD_ENT_NET_MASK,
    PHYSICAL_CLASSES,
    Column,
)

WELL_KNOWN_COMMUNITIES = (
    "public",
    "private",
    "community",
    "manager",
    "admin",
    "snmp",
    "monitor",
    "cisco",
    "default",
    "secret",
)
"""Communities tried on listed devices: factory defaults and the words guessed first."""

MIN_COMMUNITY_LENGTH = 8
"""A configured community shorter than this is guessable."""


def decode_text(raw: bytes) -> str:
    """An OCTET STRING as text: NUL padding dropped (fixed-size fields), UTF-8, else GB18030
    (Chinese devices configured from Windows consoles), else hex when the bytes are binary."""
    raw = raw.rstrip(b"\x00")
    for encoding in ("utf-8", "gb18030"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.isprintable() or all(c.isprintable() or c in "\t\r\n" for c in text):
            return text.strip()
        break
    return "0x" + raw.hex()


def python_value(value: Any) -> str | int | tuple[int, ...] | None:
    """A varbind value as Python: text, integer, OID tuple; None for no value."""
    kind = value.__class__.__name__
    if kind in {"NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null", "UnSpecified"}:
        return None
    if kind == "IpAddress":
        return str(ipaddress.IPv4Address(bytes(value.asOctets())))
    if kind in {"OctetString", "Opaque", "Bits"}:
        return decode_text(bytes(value.asOctets()))
    if kind in {"ObjectIdentifier", "ObjectName"}:
        return tuple(value.asTuple())
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value.prettyPrint())


def oid_text(oid: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in oid)


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return oid_text(value)
    return str(value)


def guessable(community: str) -> bool:
    """A community anyone would try first, or too short to resist a guess."""
    return community.lower() in WELL_KNOWN_COMMUNITIES or len(community) < MIN_COMMUNITY_LENGTH


def _column(columns: Sequence[Column], oid: tuple[int, ...]) -> dict[tuple[int, ...], Any]:
    for column in columns:
        if column.oid == oid:
            return column.rows
    return {}


def entities_of(columns: Sequence[Column]) -> tuple[Entity, ...]:
    values: dict[int, dict[str, Any]] = {}
    for number, attribute in ENTITY_COLUMNS.items():
        for index, raw in _column(columns, (*ENT_PHYSICAL_ENTRY, number)).items():
            if len(index) == 1:
                values.setdefault(index[0], {})[attribute] = python_value(raw)
    entities = []
    for number in sorted(values):
        row = values[number]
        kind = row.get("physical_class")
        entities.append(
            Entity(
                index=number,
                physical_class=PHYSICAL_CLASSES.get(kind, str(kind))
                if isinstance(kind, int)
                else "",
                **{
                    attribute: text_of(row.get(attribute))
                    for attribute in ENTITY_COLUMNS.values()
                    if attribute != "physical_class"
                },
            )
        )
    return tuple(entities)


def interfaces_of(columns: Sequence[Column]) -> tuple[Interface, ...]:
    descr = {
        i[0]: text_of(python_value(v)) for i, v in _column(columns, IF_DESCR).items() if len(i) == 1
    }
    names = {
        i[0]: text_of(python_value(v)) for i, v in _column(columns, IF_NAME).items() if len(i) == 1
    }
    masks = {
        i: python_value(v) for i, v in _column(columns, IP_AD_ENT_NET_MASK).items() if len(i) == 4
    }
    addresses: dict[int, list[str]] = {}
    for index, raw in _column(columns, IP_AD_ENT_IF_INDEX).items():
        if_index = python_value(raw)
        if len(index) != 4 or not isinstance(if_index, int):
            continue
        address = ".".join(str(n) for n in index)
        addresses.setdefault(if_index, []).append(f"{address}/{_prefix(masks.get(index))}")
    interfaces = []
    for number in sorted({*descr, *names, *addresses}):
        interfaces.append(
            Interface(
                index=number,
                name=names.get(number) or descr.get(number, ""),
                description=descr.get(number, ""),
                addresses=tuple(addresses.get(number, ())),
            )
        )
    return tuple(interfaces)


def _prefix(mask: Any) -> int:
    """The prefix length of a dotted netmask (its set bits, for a non-contiguous one)."""
    if not isinstance(mask, str):
        return 32
    try:
        return bin(int(ipaddress.IPv4Address(mask))).count("1")
    except ValueError:
        return 32


def models_of(entities: Sequence[Entity]) -> tuple[str, ...]:
    """Model names, descriptions and makers of the chassis first, then the other entities."""
    ordered = [e for e in entities if e.physical_class == "chassis"]
    ordered += [e for e in entities if e.physical_class != "chassis"]
    seen: dict[str, None] = {}
    for entity in ordered:
        for value in (entity.model, entity.description, entity.manufacturer):
            if value:
                seen.setdefault(value, None)
        if len(seen) >= 16:
            break
    return tuple(seen)[:16]
