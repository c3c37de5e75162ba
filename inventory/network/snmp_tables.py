"""What the SNMP inventory asks a device — the system group and the tables it walks, by OID — and
how a walk's answers are kept: one `Column` per column walked, each filled from GETNEXT/GETBULK
answers until it leaves its table, stops at `MAX_ROWS`, or the agent goes back on its order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SYSTEM = {
    "sys_descr": (1, 3, 6, 1, 2, 1, 1, 1),
    "sys_object_id": (1, 3, 6, 1, 2, 1, 1, 2),
    "sys_uptime": (1, 3, 6, 1, 2, 1, 1, 3),
    "sys_contact": (1, 3, 6, 1, 2, 1, 1, 4),
    "sys_name": (1, 3, 6, 1, 2, 1, 1, 5),
    "sys_location": (1, 3, 6, 1, 2, 1, 1, 6),
    "sys_services": (1, 3, 6, 1, 2, 1, 1, 7),
}
"""The system group's scalars (each read as instance .0)."""

ENT_PHYSICAL_ENTRY = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1)

ENTITY_COLUMNS = {
    2: "description",
    5: "physical_class",
    7: "name",
    8: "hardware_rev",
    9: "firmware_rev",
    10: "software_rev",
    11: "serial",
    12: "manufacturer",
    13: "model",
}
"""entPhysicalTable columns read, by column number."""

PHYSICAL_CLASSES = {
    1: "other",
    2: "unknown",
    3: "chassis",
    4: "backplane",
    5: "container",
    6: "powerSupply",
    7: "fan",
    8: "sensor",
    9: "module",
    10: "port",
    11: "stack",
    12: "cpu",
}
IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)

IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)

IP_AD_ENT_IF_INDEX = (1, 3, 6, 1, 2, 1, 4, 20, 1, 2)

IP_AD_ENT_NET_MASK = (1, 3, 6, 1, 2, 1, 4, 20, 1, 3)

TABLES = {
    "ENTITY-MIB entPhysicalTable": tuple((*ENT_PHYSICAL_ENTRY, c) for c in ENTITY_COLUMNS),
    "IF-MIB ifDescr/ifName": (IF_DESCR, IF_NAME),
    "IP-MIB ipAddrTable": (IP_AD_ENT_IF_INDEX, IP_AD_ENT_NET_MASK),
}
"""What is walked, by the name an `error` uses for it."""

OPENING_COLUMNS = (
    TABLES["ENTITY-MIB entPhysicalTable"][0],
    IF_DESCR,
    IF_NAME,
    *TABLES["IP-MIB ipAddrTable"],
)
"""The columns whose first row the opening request asks: every column of the narrow tables,
the first of the wide ENTITY-MIB one (whose other columns are asked only where it has rows)."""

ENTRIES = {
    "ENTITY-MIB entPhysicalTable": ENT_PHYSICAL_ENTRY,
    "IF-MIB ifDescr/ifName": (1, 3, 6, 1, 2, 1, 2, 2, 1),
    "IP-MIB ipAddrTable": (1, 3, 6, 1, 2, 1, 4, 20, 1),
}
"""Each table's entry: the opening's GETNEXT landing anywhere under it means the table has rows
(even if the first column is one the agent leaves out), so its other columns are walked."""

MAX_ROWS = 2000
"""Rows read per table at most; the error says when a table was cut."""

END_OF_MIB = object()
"""Stands in for endOfMibView where SNMPv1 said noSuchName."""


@dataclass
class Column:
    oid: tuple[int, ...]
    table: str
    last: tuple[int, ...]
    rows: dict[tuple[int, ...], Any] = field(default_factory=dict)
    done: bool = False
    cut: bool = False
    """Stopped at MAX_ROWS."""
    disorder: bool = False
    """The agent returned an OID not after the last one."""


def new_columns() -> list[Column]:
    return [Column(oid, table, oid) for table, oids in TABLES.items() for oid in oids]


def take(columns: Sequence[Column], binds: Sequence[tuple[tuple[int, ...], Any]]) -> None:
    """Spread a GETNEXT/GETBULK answer over the columns asked (in request order, repeating)."""
    if not columns:
        return
    finished: set[int] = set()
    for position, (oid, value) in enumerate(binds):
        slot = position % len(columns)
        column = columns[slot]
        if slot in finished or column.done:
            continue
        prefix = len(column.oid)
        if (
            value is END_OF_MIB
            or value.__class__.__name__ == "EndOfMibView"
            or len(oid) <= prefix
            or oid[:prefix] != column.oid
        ):
            finished.add(slot)
            column.done = True
            continue
        if oid <= column.last:
            finished.add(slot)
            column.done = column.disorder = True
            continue
        column.last = oid
        column.rows[oid[prefix:]] = value
        if len(column.rows) >= MAX_ROWS:
            column.done = column.cut = True
            finished.add(slot)
    if not binds:
        for column in columns:
            column.done = True
