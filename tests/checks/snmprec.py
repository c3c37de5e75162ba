"""A small reader of snmpsim's `.snmprec` recordings (`OID|TAG|VALUE` a line), for tests and
benchmarks that need a recorded device's values without serving it: `{oid: value}` with octet
strings decoded to text, numbers as int, OIDs as dotted text.

Tags are BER type numbers: 2 Integer, 4 OctetString, 5 Null, 6 OBJECT IDENTIFIER, 64 IpAddress,
65 Counter32, 66 Gauge32, 67 TimeTicks, 68 Opaque, 70 Counter64. A trailing `x` means the value
is hex-encoded; `TAG:module` values belong to a snmpsim variation module and are kept raw.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

SHARED_RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "data" / "snmp-devices"
"""The labelled recordings beside the checkout (/work/shared/... for /work/main)."""

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_SERVICES = "1.3.6.1.2.1.1.7.0"
ENT_PHYSICAL = "1.3.6.1.2.1.47.1.1.1.1."
ENT_MODEL_COLUMNS = (2, 12, 13)
"""entPhysicalDescr, entPhysicalMfgName, entPhysicalModelName."""

_NUMBERS = frozenset({2, 65, 66, 67, 70})

Value = str | int | None


class SnmprecError(ValueError):
    """A line that is not `OID|TAG|VALUE`."""


def read_snmprec(path: str | Path) -> dict[str, Value]:
    """Every recorded OID (without a leading dot) and its decoded value, in file order."""
    records: dict[str, Value] = {}
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("|", 2)
        if len(parts) != 3:
            raise SnmprecError(f"{path}:{number}: not OID|TAG|VALUE")
        oid, tag, value = parts
        records[oid.strip().lstrip(".")] = decode(tag, value, f"{path}:{number}")
    return records


def decode(tag: str, value: str, where: str = "value") -> Value:
    if ":" in tag:  # a variation module's own syntax
        return value
    hexed = tag.endswith("x")
    try:
        kind = int(tag.removesuffix("x"))
        raw = bytes.fromhex(value) if hexed else value.encode("utf-8", "surrogateescape")
    except ValueError as exc:
        raise SnmprecError(f"{where}: bad tag or hex value {tag!r}") from exc
    if kind in _NUMBERS:
        return int(raw.decode("ascii") or "0")
    if kind == 5:
        return None
    if kind == 64 and hexed and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if kind == 6:
        return raw.decode("ascii").strip().lstrip(".")
    return _text(raw)


def _text(raw: bytes) -> str:
    """Octet strings as agents mean them: UTF-8 (else Latin-1), NUL padding dropped."""
    raw = raw.rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass(frozen=True)
class Identity:
    """What a role classifier reads from a recording."""

    sys_object_id: str
    sys_descr: str
    sys_name: str
    sys_services: int | None
    models: tuple[str, ...]
    """ENTITY-MIB descriptions, manufacturer and model names, in recorded order, each once."""


def identity(records: dict[str, Value]) -> Identity:
    models: list[str] = []
    for oid, value in records.items():
        if not oid.startswith(ENT_PHYSICAL) or not isinstance(value, str) or not value:
            continue
        column = oid[len(ENT_PHYSICAL) :].split(".", 1)[0]
        if column.isdigit() and int(column) in ENT_MODEL_COLUMNS and value not in models:
            models.append(value)
    services = records.get(SYS_SERVICES)
    return Identity(
        sys_object_id=str(records.get(SYS_OBJECT_ID) or ""),
        sys_descr=str(records.get(SYS_DESCR) or ""),
        sys_name=str(records.get(SYS_NAME) or ""),
        sys_services=services if isinstance(services, int) else None,
        models=tuple(models),
    )
