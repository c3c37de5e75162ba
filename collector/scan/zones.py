"""The zones file (`zones.yaml`): the zones with their address ranges and vantage points, the
zone-to-zone policy, the web applications that need a WAF, the critical systems behind a ZTNA
gateway, the border firewall's SNMP agent, the security devices each border needs (`borders:`,
judged over an SNMP inventory) and the scan settings — validated at the boundary.

Any problem is a `ZonesError` whose message is one line naming the file, the key and the value.
Every address the scan will touch (web app, gateway, critical system, SNMP agent) must lie in a
declared CIDR: `Scope` is the one place that says what may be probed, and the scanner asks it
before every nmap run and probe. Secrets (SNMP community, v3 keys) live in files the zones file
names, never in the zones file itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from checks.configtext import ConfigFileError, describe, read_yaml
from collector.scan.nmap import NMAP_DEFAULTS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PORT = re.compile(r"^(tcp|udp)/(\d{1,5})$")
_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Proto = Literal["tcp", "udp"]
Network = ipaddress.IPv4Network
PortChoice = Literal["top1000", "all", "listed"]

TOP_PORTS = 1000
"""How many of nmap's most common TCP ports `scan.ports: top1000` probes (`--top-ports`)."""
COVERAGE_UDP = (53, 69, 123, 161, 500, 514, 1900)
"""UDP ports probed besides the listed ones unless `scan.ports: listed`: DNS, TFTP, NTP, SNMP,
IKE, syslog and SSDP, the UDP services whose leaks matter between zones. nmap's UDP scan waits
for silence on every port, so the whole UDP range is never probed by default."""


class ZonesError(Exception):
    """The zones file cannot be used. The message is the one line the user sees."""


class ScopeError(ZonesError):
    """A scan or probe target lies outside the declared CIDRs (or outside a test confinement)."""


@dataclass(frozen=True, order=True)
class PortSpec:
    """One port of one protocol, written `tcp/80` or `udp/161` in the zones file."""

    proto: Proto
    port: int

    def __str__(self) -> str:
        return f"{self.proto}/{self.port}"

    @classmethod
    def parse(cls, text: object) -> PortSpec:
        match = _PORT.match(str(text).strip().lower())
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ValueError(f"{text!r} is not proto/port (tcp/80, udp/161)")
        proto: Proto = "tcp" if match.group(1) == "tcp" else "udp"
        return cls(proto, int(match.group(2)))


def _ports(values: Iterable[str], key: str) -> tuple[PortSpec, ...]:
    parsed = []
    for index, value in enumerate(values):
        try:
            parsed.append(PortSpec.parse(value))
        except ValueError as exc:
            raise ValueError(f"{key}[{index}]: {exc}") from None
    return tuple(sorted(set(parsed)))


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Sections are immutable and refuse unknown keys."""


# --- vantages -------------------------------------------------------------------------------


class LocalVantageConfig(
    _Section, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="local"
):
    """nmap and the probes run on the collector itself, which sits inside the zone."""


class NetnsVantageConfig(
    _Section, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="netns"
):
    """nmap and the probes run here inside a named network namespace (lab and tests only)."""

    netns: str

    def __post_init__(self) -> None:
        if not _NETNS.match(self.netns):
            raise ValueError("netns: must be a namespace name (letters, digits, '_', '.', '-')")


class SshVantageConfig(
    _Section, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="ssh"
):
    """nmap and the probes run on a host inside the zone, over SSH (key auth, known host key)."""

    host: str
    user: str
    key_file: str
    """Private key of `user` (absolute path); no agent, no password."""
    known_hosts: str
    """known_hosts file holding the host's key; any other key is refused."""
    port: int = 22
    sudo: bool = False
    """Run nmap with `sudo -n` (SYN, UDP and ACK scans need root); else a connect scan."""
    nmap: str = "nmap"
    python: str = "python3"
    """The remote Python 3 the probes (HTTP, TLS) run with; the standard library suffices."""
    via_netns: str | None = None
    """Lab only: open the SSH connection from inside this network namespace."""
    connect_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        _address(self.host, "host")
        for key in ("key_file", "known_hosts"):
            path = getattr(self, key)
            if not os.path.isabs(path):
                raise ValueError(f"{key}: must be an absolute path")
            if not os.path.isfile(path):
                raise ValueError(f"{key}: {path} does not exist")
            if not os.access(path, os.R_OK):
                raise ValueError(f"{key}: {path} is not readable by this user")
        if not 0 < self.port < 65536:
            raise ValueError("port: must be between 1 and 65535")
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", self.user):
            raise ValueError("user: not a valid login name")
        if self.via_netns is not None and not _NETNS.match(self.via_netns):
            raise ValueError("via_netns: must be a namespace name")
        if not 0 < self.connect_timeout_seconds <= 120:
            raise ValueError("connect_timeout_seconds: must be between 0 and 120")


class ProbeVantageConfig(
    _Section, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="probe"
):
    """nmap and the probes run on a probe inside the zone (`medsec-agent probe`) that dials out
    to the collector: the scan queues each operation as a job the zone's probe claims, checks
    against its own targets, runs and answers (collector/scan/probe_vantage.py). For zones
    nothing may connect into."""

    claim_timeout_seconds: float = 60.0
    """A job no probe of the zone has taken this long after it was queued fails the vantage."""

    def __post_init__(self) -> None:
        if not 1 <= self.claim_timeout_seconds <= 3600:
            raise ValueError("claim_timeout_seconds: must be between 1 and 3600")


VantageConfig = LocalVantageConfig | NetnsVantageConfig | SshVantageConfig | ProbeVantageConfig


def _address(text: str, key: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{key}: {text!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"{key}: IPv6 is not supported yet")
    return address


# --- sections -------------------------------------------------------------------------------


class ZoneConfig(_Section, forbid_unknown_fields=True, frozen=True):
    name: str
    cidrs: tuple[str, ...]
    critical: bool = False
    """Holds critical systems (HIS, PACS, LIS): must be unreachable from and to the internet."""
    internet: bool = False
    """Stands for the internet (or an untrusted outside network)."""
    users: bool | None = None
    """People's devices sit here (a user zone for ZTNA coverage). Unset: a zone that is neither
    critical, nor internet, nor holds a ZTNA gateway or the critical system itself."""
    vantage: VantageConfig | None = None
    """Where this zone is scanned from; None: the zone is only a target."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError("name: letters, digits, '_', '.', '-' (at most 63)")
        if not self.cidrs:
            raise ValueError("cidrs: at least one CIDR")
        for index, cidr in enumerate(self.cidrs):
            _network(cidr, f"cidrs[{index}]")
        if self.critical and self.internet:
            raise ValueError("internet: a zone cannot be both critical and internet")

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(_network(c, "cidrs") for c in self.cidrs)


def _network(text: str, key: str) -> Network:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{key}: {text!r} is not a CIDR ({exc})") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"{key}: IPv6 is not supported yet")
    return network


class AllowRule(_Section, forbid_unknown_fields=True, frozen=True):
    source: str = msgspec.field(name="from")
    target: str = msgspec.field(name="to")
    ports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.ports:
            raise ValueError("ports: at least one port (tcp/80, udp/161)")
        _ports(self.ports, "ports")

    @property
    def port_specs(self) -> tuple[PortSpec, ...]:
        return _ports(self.ports, "ports")


class PolicyConfig(_Section, forbid_unknown_fields=True, frozen=True):
    default: Literal["deny"] = "deny"
    """Only `deny`: everything not allowed below must be unreachable."""
    allow: tuple[AllowRule, ...] = ()


class WebAppConfig(_Section, forbid_unknown_fields=True, frozen=True):
    name: str
    url: str
    zone: str
    require_waf: bool = True
    address: str | None = None
    """The address to connect to when the URL names a host (the URL's host is sent as Host)."""

    def __post_init__(self) -> None:
        _url(self.url, "url", self.address)
        if self.address is not None:
            _address(self.address, "address")

    @property
    def connect_address(self) -> str:
        return self.address or str(urlsplit(self.url).hostname)

    @property
    def connect_port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def _url(url: str, key: str, address: str | None) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{key}: must be an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 — raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"{key}: has an invalid port") from None
    if parts.username or parts.password:
        raise ValueError(f"{key}: must not carry a user or password")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        if address is None:
            # A name could resolve anywhere; the scan only touches addresses it can check.
            raise ValueError(
                f"{key}: names a host; give its address too (`address:` / `gateway_address:`)"
            ) from None


class CriticalSystemConfig(_Section, forbid_unknown_fields=True, frozen=True):
    name: str
    address: str
    ports: tuple[str, ...]
    zone: str
    ztna_gateway: str | None = None
    """URL of the ZTNA gateway publishing this system; None: not published (coverage 0)."""
    gateway_address: str | None = None
    """The gateway's address when its URL names a host."""
    client_cert_file: str | None = None
    """A client certificate the gateway accepts (PEM): proves the system is published there."""
    client_key_file: str | None = None

    def __post_init__(self) -> None:
        _address(self.address, "address")
        if not self.ports:
            raise ValueError("ports: at least one port (tcp/443)")
        _ports(self.ports, "ports")
        if self.ztna_gateway is not None:
            _url(self.ztna_gateway, "ztna_gateway", self.gateway_address)
        if self.gateway_address is not None:
            _address(self.gateway_address, "gateway_address")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file: give both client_cert_file and client_key_file")
        for key in ("client_cert_file", "client_key_file"):
            path = getattr(self, key)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{key}: {path} does not exist")
        if self.client_cert_file is not None and self.ztna_gateway is None:
            raise ValueError("client_cert_file: only meaningful with ztna_gateway")

    @property
    def port_specs(self) -> tuple[PortSpec, ...]:
        return _ports(self.ports, "ports")

    @property
    def gateway_connect(self) -> tuple[str, int] | None:
        if self.ztna_gateway is None:
            return None
        parts = urlsplit(self.ztna_gateway)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return self.gateway_address or str(parts.hostname), port


_AUTH = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
_PRIV = ("des", "3des", "aes", "aes192", "aes256")


def _secret_file(path: str | None, key: str) -> None:
    if path is None:
        return
    if not os.path.isabs(path):
        raise ValueError(f"{key}: must be an absolute path")
    if not os.path.isfile(path):
        raise ValueError(f"{key}: {path} does not exist")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{key}: {path} is not readable by this user")


class SnmpConfig(_Section, forbid_unknown_fields=True, frozen=True):
    """The border firewall's SNMP agent, asked for sysDescr and sysObjectID."""

    host: str
    version: Literal["2c", "3"] = "3"
    port: int = 161
    zone: str | None = None
    """The zone whose vantage asks; default: the zone whose CIDRs hold `host`."""
    community_file: str | None = None
    """v2c: a file holding the community (first line)."""
    user: str | None = None
    """v3: the USM user (authPriv only: keys in files)."""
    auth_key_file: str | None = None
    priv_key_file: str | None = None
    auth_protocol: Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"] = "sha"
    priv_protocol: Literal["des", "3des", "aes", "aes192", "aes256"] = "aes"
    timeout_seconds: float = 2.0
    retries: int = 1

    def __post_init__(self) -> None:
        _address(self.host, "host")
        if self.version == "2c":
            needed: tuple[str, ...] = ("community_file",)
            unused: tuple[str, ...] = ("user", "auth_key_file", "priv_key_file")
        else:
            needed, unused = ("user", "auth_key_file", "priv_key_file"), ("community_file",)
        for key in needed:
            if getattr(self, key) is None:
                raise ValueError(f"{key}: SNMP v{self.version} needs {key}")
        for key in unused:
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: not used by SNMP v{self.version}")
        for key in ("community_file", "auth_key_file", "priv_key_file"):
            _secret_file(getattr(self, key), key)
        if not 0 < self.timeout_seconds <= 30:
            raise ValueError("timeout_seconds: must be between 0 and 30")
        if not 0 <= self.retries <= 5:
            raise ValueError("retries: must be between 0 and 5")


class ScanConfig(_Section, forbid_unknown_fields=True, frozen=True):
    ports: PortChoice = "top1000"
    """Which ports every vantage probes besides the listed ones (every port the policy and the
    critical systems name, and `extra_ports`): `top1000`, nmap's 1,000 most common TCP ports
    (its own `--top-ports 1000`) and the UDP ports of `COVERAGE_UDP`; `all`, every TCP port and
    those UDP ports; `listed`, the listed ones alone (a leak on any other port goes unseen)."""
    extra_ports: tuple[str, ...] = ()
    """Ports scanned besides every port the policy names (tcp/23, tcp/3389: what must stay shut)."""
    timing: int = NMAP_DEFAULTS.timing
    """nmap timing template -T0..-T5."""
    max_retries: int = NMAP_DEFAULTS.max_retries
    min_rate: int | None = NMAP_DEFAULTS.min_rate
    """nmap --min-rate (packets/s): without it, drop-everything firewalls make nmap crawl."""
    max_rate: int | None = NMAP_DEFAULTS.max_rate
    min_hostgroup: int = NMAP_DEFAULTS.min_hostgroup
    """nmap --min-hostgroup: big groups spare nmap a tail of waits per group."""
    max_rtt_timeout_ms: int | None = NMAP_DEFAULTS.max_rtt_timeout_ms
    """nmap --max-rtt-timeout; None: the timing template's (T4: 1250 ms)."""
    host_timeout_seconds: float | None = NMAP_DEFAULTS.host_timeout_seconds
    """nmap --host-timeout: a host that takes longer is reported unfinished (`error`). Unset:
    sized to each run (every probe at `min_rate`, three times over, plus a minute), as nmap's
    clock for a host runs while its whole host group is scanned."""
    vantage_timeout_seconds: float | None = None
    """Everything one vantage does (scans and probes); past it the vantage is cancelled.
    Unset: twice its nmap run's host timeout, and at least 600 s."""
    probe_timeout_seconds: float = 5.0
    """One HTTP/TLS/SNMP probe."""

    def __post_init__(self) -> None:
        _ports(self.extra_ports, "extra_ports")
        if not 0 <= self.timing <= 5:
            raise ValueError("timing: must be between 0 and 5 (nmap -T)")
        if not 0 <= self.max_retries <= 10:
            raise ValueError("max_retries: must be between 0 and 10")
        for key in ("min_rate", "max_rate"):
            value = getattr(self, key)
            if value is not None and not 1 <= value <= 1_000_000:
                raise ValueError(f"{key}: must be between 1 and 1000000 packets/s")
        if self.min_rate and self.max_rate and self.min_rate > self.max_rate:
            raise ValueError("min_rate: must not exceed max_rate")
        if not 1 <= self.min_hostgroup <= 4096:
            raise ValueError("min_hostgroup: must be between 1 and 4096")
        if self.max_rtt_timeout_ms is not None and not 10 <= self.max_rtt_timeout_ms <= 60_000:
            raise ValueError("max_rtt_timeout_ms: must be between 10 and 60000")
        for key in ("host_timeout_seconds", "vantage_timeout_seconds"):
            value = getattr(self, key)
            if value is not None and not 1 <= value <= 86_400:
                raise ValueError(f"{key}: must be between 1 and 86400")
        if not 0 < self.probe_timeout_seconds <= 60:
            raise ValueError("probe_timeout_seconds: must be between 0 and 60")

    @property
    def extra_port_specs(self) -> tuple[PortSpec, ...]:
        return _ports(self.extra_ports, "extra_ports")


BorderRole = Literal["firewall", "ips", "waf"]
BORDER_ROLES: tuple[BorderRole, ...] = ("firewall", "ips", "waf")


class BorderConfig(_Section, forbid_unknown_fields=True, frozen=True):
    """A border between two zones and the security devices that must sit on it (judged by
    `net.security_devices` over an SNMP inventory)."""

    zones: tuple[str, ...]
    """The two zones the border separates."""
    require: tuple[str, ...] = ("firewall",)
    """Roles of the devices that must sit on it (firewall, ips, waf)."""

    def __post_init__(self) -> None:
        if len(self.zones) != 2:
            raise ValueError(f"zones: a border has exactly two zones, got {len(self.zones)}")
        if self.zones[0] == self.zones[1]:
            raise ValueError(
                f"zones: a border joins two different zones, got {self.zones[0]!r} twice"
            )
        if not self.require:
            raise ValueError("require: at least one role (firewall, ips, waf)")
        for index, role in enumerate(self.require):
            if role not in BORDER_ROLES:
                raise ValueError(
                    f"require[{index}]: {role!r} is not a role a border can require "
                    f"({', '.join(BORDER_ROLES)})"
                )
            if self.require.index(role) != index:
                raise ValueError(f"require[{index}]: {role!r} is listed twice")


@dataclass(frozen=True)
class Border:
    """A border as the checks see it: `A<->B`, the zones in the zones file's order."""

    name: str
    zones: tuple[str, str]
    require: tuple[BorderRole, ...]


class Zones(_Section, forbid_unknown_fields=True, frozen=True):
    zones: tuple[ZoneConfig, ...]
    policy: PolicyConfig = msgspec.field(default_factory=PolicyConfig)
    web_apps: tuple[WebAppConfig, ...] = ()
    critical_systems: tuple[CriticalSystemConfig, ...] = ()
    snmp: SnmpConfig | None = None
    scan: ScanConfig = msgspec.field(default_factory=ScanConfig)
    borders: tuple[BorderConfig, ...] | None = None
    """Which security devices each border needs (`net.security_devices`). Absent: every pair of
    zones is a border that needs a firewall."""

    # --- lookups --------------------------------------------------------------------------

    def zone(self, name: str) -> ZoneConfig:
        for zone in self.zones:
            if zone.name == name:
                return zone
        raise KeyError(name)

    def zone_of(self, address: str) -> ZoneConfig | None:
        ip = ipaddress.ip_address(address)
        for zone in self.zones:
            if any(ip in network for network in zone.networks):
                return zone
        return None

    def networks(self) -> tuple[Network, ...]:
        return tuple(n for zone in self.zones for n in zone.networks)

    def allowed(self, source: str, target: str) -> frozenset[PortSpec]:
        """Ports the policy allows from one zone to another."""
        return frozenset(
            spec
            for rule in self.policy.allow
            if rule.source == source and rule.target == target
            for spec in rule.port_specs
        )

    def listed_ports(self) -> tuple[PortSpec, ...]:
        """Every port the policy names, the critical systems' ports, and `scan.extra_ports`."""
        ports: set[PortSpec] = set(self.scan.extra_port_specs)
        for rule in self.policy.allow:
            ports.update(rule.port_specs)
        for system in self.critical_systems:
            ports.update(system.port_specs)
        return tuple(sorted(ports))

    def port_set(self, top_tcp: Sequence[int] = ()) -> tuple[PortSpec, ...]:
        """The ports every vantage probes under `scan.ports`: the listed ones, plus (`top1000`)
        `top_tcp` — nmap's own top ports, which the scanner asks nmap for — or (`all`) every
        TCP port, plus the `COVERAGE_UDP` ports. `top1000` without `top_tcp` is a ValueError:
        a port list silently cut down to the listed ports is what this setting exists to stop."""
        choice = self.scan.ports
        if choice == "listed":
            return self.listed_ports()
        if choice == "top1000" and len(top_tcp) != TOP_PORTS:
            raise ValueError(f"scan.ports top1000: {len(top_tcp)} top ports given, not {TOP_PORTS}")
        numbers: Iterable[int] = range(1, 65536) if choice == "all" else top_tcp
        ports = set(self.listed_ports())
        ports.update(PortSpec("tcp", n) for n in numbers)
        ports.update(PortSpec("udp", n) for n in COVERAGE_UDP)
        return tuple(sorted(ports))

    def gateway_zones(self) -> frozenset[str]:
        names = set()
        for system in self.critical_systems:
            connect = system.gateway_connect
            zone = self.zone_of(connect[0]) if connect else None
            if zone is not None:
                names.add(zone.name)
        return frozenset(names)

    def is_user_zone(self, zone: ZoneConfig) -> bool:
        if zone.users is not None:
            return zone.users
        if zone.critical or zone.internet:
            return False
        return zone.name not in self.gateway_zones() and not any(
            s.zone == zone.name for s in self.critical_systems
        )

    def snmp_zone(self) -> ZoneConfig | None:
        if self.snmp is None:
            return None
        if self.snmp.zone is not None:
            return self.zone(self.snmp.zone)
        return self.zone_of(self.snmp.host)

    def scope(self, confine: Sequence[str] | None = None) -> Scope:
        return Scope(self.networks(), _confinement(confine))

    def border_list(self) -> tuple[Border, ...]:
        """The borders `borders:` lists, or (absent) one per pair of zones needing a firewall;
        each named `A<->B` with its zones in the order the `zones:` section gives them."""
        order = {zone.name: index for index, zone in enumerate(self.zones)}
        if self.borders is None:
            names = [zone.name for zone in self.zones]
            return tuple(
                Border(f"{a}<->{b}", (a, b), ("firewall",))
                for i, a in enumerate(names)
                for b in names[i + 1 :]
            )
        found = []
        for border in self.borders:
            a, b = sorted(border.zones, key=lambda name: order.get(name, len(order)))
            roles = tuple(r for r in BORDER_ROLES if r in border.require)
            found.append(Border(f"{a}<->{b}", (a, b), roles))
        return tuple(found)


# --- the scope ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What may be scanned or probed: the declared CIDRs, optionally narrowed by a confinement
    (tests and labs confine to 198.18.0.0/15 and 127.0.0.0/8)."""

    declared: tuple[Network, ...]
    confine: tuple[Network, ...] | None = None

    def check_network(self, network: Network, what: str) -> None:
        if not any(network.subnet_of(d) for d in self.declared):
            raise ScopeError(f"{what}: {network} is outside the declared CIDRs: refused")
        if self.confine is not None and not any(network.subnet_of(c) for c in self.confine):
            allowed = ", ".join(str(c) for c in self.confine)
            raise ScopeError(f"{what}: {network} is outside the confinement {allowed}: refused")

    def check(self, target: str, what: str = "target") -> None:
        """Raise ScopeError unless `target` (address or CIDR) is inside the scope."""
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            raise ScopeError(f"{what}: {target!r} is not an address or CIDR: refused") from None
        if not isinstance(network, ipaddress.IPv4Network):
            raise ScopeError(f"{what}: {target} is IPv6, not supported: refused")
        self.check_network(network, what)


def _confinement(confine: Sequence[str] | None) -> tuple[Network, ...] | None:
    if confine is None:
        return None
    networks = []
    for text in confine:
        network = ipaddress.ip_network(text.strip(), strict=True)
        if not isinstance(network, ipaddress.IPv4Network):
            raise ZonesError(f"confinement {text!r}: IPv6 is not supported")
        networks.append(network)
    return tuple(networks)


CONFINE_ENV = "MEDSEC_SCAN_CONFINE"
"""Comma-separated CIDRs; when set, nothing outside them is scanned (tests, labs, CI)."""


def confinement_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...] | None:
    value = (environ if environ is not None else dict(os.environ)).get(CONFINE_ENV, "").strip()
    return tuple(part for part in value.split(",") if part.strip()) or None


# --- loading --------------------------------------------------------------------------------


def _check_zones(zones: Zones) -> None:
    names = [z.name for z in zones.zones]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ValueError(f"zones[{index}].name: {name!r} is used twice")
    seen: list[tuple[Network, str]] = []
    for index, zone in enumerate(zones.zones):
        for network in zone.networks:
            for other, owner in seen:
                if network.overlaps(other):
                    raise ValueError(
                        f"zones[{index}].cidrs: {network} overlaps {other} of zone {owner!r}"
                    )
            seen.append((network, zone.name))


def _known(zones: Zones, value: str, key: str) -> None:
    names = [z.name for z in zones.zones]
    if value not in names:
        raise ValueError(f"{key}: unknown zone {value!r} (zones: {', '.join(names)})")


def _inside(scope: Scope, address: str, key: str) -> None:
    try:
        scope.check(address, key)
    except ScopeError as exc:
        raise ValueError(str(exc)) from None


def _unique(names: Sequence[str], section: str) -> None:
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ValueError(f"{section}[{index}].name: {name!r} is used twice")


def _check_targets(zones: Zones) -> None:
    """Policy zones exist; every address the scan will probe lies in a declared CIDR."""
    for index, rule in enumerate(zones.policy.allow):
        _known(zones, rule.source, f"policy.allow[{index}].from")
        _known(zones, rule.target, f"policy.allow[{index}].to")
    scope = zones.scope()
    for index, app in enumerate(zones.web_apps):
        _known(zones, app.zone, f"web_apps[{index}].zone")
        _inside(scope, app.connect_address, f"web_apps[{index}].url")
    for index, system in enumerate(zones.critical_systems):
        key = f"critical_systems[{index}]"
        _known(zones, system.zone, f"{key}.zone")
        if zones.zone_of(system.address) is not zones.zone(system.zone):
            raise ValueError(f"{key}.address: {system.address} is not in zone {system.zone!r}")
        connect = system.gateway_connect
        if connect is not None:
            _inside(scope, connect[0], f"{key}.ztna_gateway")
    _unique([s.name for s in zones.critical_systems], "critical_systems")
    _unique([a.name for a in zones.web_apps], "web_apps")


def _check_snmp(zones: Zones) -> None:
    if zones.snmp is None:
        return
    _inside(zones.scope(), zones.snmp.host, "snmp.host")
    if zones.snmp.zone is not None:
        _known(zones, zones.snmp.zone, "snmp.zone")
    zone = zones.snmp_zone()
    if zone is None or zone.vantage is None:
        where = zone.name if zone else zones.snmp.host
        raise ValueError(f"snmp.zone: no zone with a vantage to ask the agent from ({where})")
    if isinstance(zone.vantage, SshVantageConfig):
        raise ValueError(
            f"snmp.zone: zone {zone.name!r} has an SSH vantage; SNMP needs a local or netns one"
        )
    if isinstance(zone.vantage, ProbeVantageConfig):
        # The SNMP secrets sit in files on the collector; a probe reads no file it is named.
        raise ValueError(
            f"snmp.zone: zone {zone.name!r} has a probe vantage; SNMP needs a local or netns one"
        )


def _check_borders(zones: Zones) -> None:
    seen: dict[frozenset[str], int] = {}
    for index, border in enumerate(zones.borders or ()):
        for number, name in enumerate(border.zones):
            _known(zones, name, f"borders[{index}].zones[{number}]")
        pair = frozenset(border.zones)
        if pair in seen:
            raise ValueError(
                f"borders[{index}].zones: the border {'<->'.join(border.zones)} is listed "
                f"already (borders[{seen[pair]}])"
            )
        seen[pair] = index


def _check_confinement(zones: Zones, confine: Sequence[str]) -> None:
    limited = zones.scope(confine)
    for index, zone in enumerate(zones.zones):
        for number, network in enumerate(zone.networks):
            try:
                limited.check_network(network, f"zones[{index}].cidrs[{number}]")
            except ScopeError as exc:
                raise ValueError(str(exc)) from None


def _cross_check(zones: Zones, confine: Sequence[str] | None) -> None:
    """Rules spanning sections; each raises ValueError naming the key."""
    _check_zones(zones)
    _check_targets(zones)
    _check_snmp(zones)
    _check_borders(zones)
    if confine is not None:
        _check_confinement(zones, confine)


def parse_zones(data: Any, source: str, *, confine: Sequence[str] | None = None) -> Zones:
    """Validate a parsed zones document; `confine` refuses any CIDR outside it (tests)."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ZonesError(f"{source}: the top level must be a mapping, got {kind}")
    try:
        zones = msgspec.convert(data, Zones)
    except msgspec.ValidationError as exc:
        raise ZonesError(f"{source}: {describe(exc, data)}") from None
    try:
        _cross_check(zones, confine)
    except (ValueError, ZonesError) as exc:
        raise ZonesError(f"{source}: {exc}") from None
    return zones


def load_zones(path: str | os.PathLike[str], *, confine: Sequence[str] | None = None) -> Zones:
    """Read and validate a zones file; every problem is one-line `ZonesError`."""
    path = Path(path)
    try:
        data = read_yaml(path, "zones", "the zones file")
    except ConfigFileError as exc:
        raise ZonesError(str(exc)) from None
    return parse_zones(data, str(path), confine=confine)
