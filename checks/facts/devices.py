"""Network and security device facts: what an SNMP inventory (`inventory.network.snmp`) read from
each device in a targets file or found by a sweep, how medsec classified it, and how its SNMP
management is secured. Checks in `checks.device` read them; nothing here does I/O.

A device that did not answer stays in the facts with `error` saying why: a missing answer is
never a missing device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

Role = Literal[
    "firewall",
    "ips",
    "waf",
    "router",
    "switch",
    "wireless",
    "server",
    "power",
    "printer",
    "storage",
    "other",
]
ROLES: tuple[Role, ...] = get_args(Role)
"""Every role a device is classified as. Security gateways (NGFW, UTM, secure web or mail
gateway, SSL VPN) are `firewall`; security appliances that are not gateways (sandbox,
authentication server, DDoS analyser) are `other`, unless an IPS (`ips`) or a WAF (`waf`)."""
SnmpVersion = Literal["1", "2c", "3"]
SecurityLevel = Literal["noAuthNoPriv", "authNoPriv", "authPriv"]
DeviceSource = Literal["target", "sweep"]


@dataclass(frozen=True)
class Classification:
    """What a device is, and why medsec thinks so."""

    vendor: str | None
    """From the sysObjectID enterprise number (or a sysDescr/model pattern when the agent is a
    generic one, such as net-snmp's 8072); None when nothing names one."""
    role: Role
    confidence: float
    """0..1: about 0.9 for a product-line sysObjectID or a sysDescr naming the product, about
    0.6 for an enterprise number alone, below 0.5 for a guess."""
    signals: tuple[str, ...]
    """Each observation the verdict rests on, in words (`sysObjectID 1.3.6.1.4.1.2011.2.239
    under Huawei USG`, `sysDescr matches 'SecPath'`)."""
    rule: str | None = None
    """The id of the rule in the rules file that decided the role; None: no rule matched."""


@dataclass(frozen=True)
class Entity:
    """One ENTITY-MIB entPhysicalEntry (1.3.6.1.2.1.47.1.1.1.1); empty strings where unset."""

    index: int
    physical_class: str
    """entPhysicalClass by name: chassis, module, powerSupply, fan, sensor, port, stack, cpu,
    container, backplane, other, unknown."""
    description: str
    name: str
    model: str
    serial: str
    hardware_rev: str
    firmware_rev: str
    software_rev: str
    manufacturer: str


@dataclass(frozen=True)
class Interface:
    """One interface: IF-MIB ifTable/ifXTable and the IP-MIB addresses on it."""

    index: int
    name: str
    """ifName (ifXTable), else ifDescr."""
    description: str
    """ifDescr."""
    addresses: tuple[str, ...] = ()
    """`198.18.4.1/24` forms, from ipAddrTable (ipAdEntAddr/ipAdEntNetMask by ipAdEntIfIndex)."""


@dataclass(frozen=True)
class SnmpAccess:
    """How the device's SNMP management is secured, as seen from medsec's side."""

    version: SnmpVersion
    """The version medsec spoke (the targets file's)."""
    security_level: SecurityLevel | None = None
    """v3 only: what the configured user used."""
    auth_protocol: str | None = None
    """v3 only: md5, sha, sha224, sha256, sha384, sha512."""
    priv_protocol: str | None = None
    """v3 only: des, 3des, aes, aes192, aes256."""
    community_guessable: bool | None = None
    """v1/v2c: the configured community is on the well-known list or too short to resist a
    guess (never the community itself)."""
    answered_well_known: tuple[str, ...] = ()
    """Well-known communities the device answered (they are public words, not secrets)."""
    well_known_tried: tuple[str, ...] = ()
    """The well-known communities tried; empty: not tried (swept devices are never tried)."""
    v3_supported: bool | None = None
    """The device answered an SNMPv3 engine discovery; None: not asked."""


@dataclass(frozen=True)
class NetworkDevice:
    """One SNMP device."""

    address: str
    port: int
    source: DeviceSource
    """`target`: named in the targets file; `sweep`: answered in a swept CIDR."""
    access: SnmpAccess
    classification: Classification
    sys_descr: str = ""
    sys_object_id: str = ""
    sys_name: str = ""
    sys_location: str = ""
    sys_contact: str = ""
    sys_uptime_seconds: float | None = None
    sys_services: int | None = None
    entities: tuple[Entity, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    declared_borders: tuple[str, ...] = ()
    """`devices[].borders` of the targets file: borders (`dmz<->his`) the device sits on when its
    own addresses do not show it (a transparent IPS, a bridge-mode firewall)."""
    error: str | None = None
    """Why the device gave no (or no complete) answer; None: it answered."""
    seconds: float = 0.0

    @property
    def model(self) -> str:
        """The chassis's model name (else the first entity that has one)."""
        return _first(self.entities, "model")

    @property
    def serial(self) -> str:
        return _first(self.entities, "serial")

    @property
    def software(self) -> str:
        return _first(self.entities, "software_rev") or _first(self.entities, "firmware_rev")

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address the device holds (without prefix length), the polled one first."""
        seen = [self.address]
        for interface in self.interfaces:
            for cidr in interface.addresses:
                address = cidr.split("/", 1)[0]
                if address not in seen:
                    seen.append(address)
        return tuple(seen)


def _first(entities: tuple[Entity, ...], attribute: str) -> str:
    chassis = [e for e in entities if e.physical_class == "chassis"]
    for entity in [*chassis, *entities]:
        value = getattr(entity, attribute)
        if value:
            return str(value)
    return ""


@dataclass(frozen=True)
class BorderFacts:
    """One border of the zones file: two zones and the device roles that must sit on it."""

    name: str
    """`A<->B`, the zones in the zones file's order."""
    zones: tuple[str, str]
    cidrs: tuple[tuple[str, ...], tuple[str, ...]]
    """The two zones' CIDRs."""
    require: tuple[Role, ...] = ("firewall",)


@dataclass(frozen=True)
class DeviceFacts:
    """An SNMP inventory run: every device and the borders it is judged against."""

    devices: tuple[NetworkDevice, ...]
    borders: tuple[BorderFacts, ...] = ()
    """Empty when no zones file was given: then `net.security_devices` is not applicable."""
    targets_file: str = ""
    swept: tuple[str, ...] = ()
    """The CIDRs swept."""
    addresses_swept: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
