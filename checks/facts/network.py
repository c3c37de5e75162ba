"""Network facts: what the collector's scan observed from vantage points inside each zone.

The zones file declares zones, a zone-to-zone policy, web applications, critical systems and the
border firewall's SNMP agent; `collector.scan` measures them — nmap from every zone with a
vantage (SYN/connect and UDP scans, ACK probes where a firewall was not yet evident), HTTP probes
of the web applications, a ZTNA gateway probe, TLS version probes of every TLS service found, an
SNMP GET of the firewall's identity. Port states keep nmap's `reason` and `reason_ttl`.

Silence is summarised, answers are kept: a matrix cell (from zone, to zone, port) counts the
addresses probed and those that did not answer, and lists every answer one by one. Ports the
zones file names (policy, critical systems, `scan.extra_ports`) always have their cell; any other
probed port (nmap's top 1,000 by default) has one only when something answered on it, and the
ports on which every address of a zone stayed silent are one `SilentPorts` record per zone pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

Proto = Literal["tcp", "udp"]
ScanKind = Literal["syn", "connect", "udp", "ack"]
RunStatus = Literal["ok", "partial", "timeout", "error", "cancelled"]
TlsOutcome = Literal["accepted", "refused", "untested"]

REACHABLE_STATES = frozenset({"open", "closed"})
"""States that only an answer from the target host itself gives (SYN-ACK, RST, ICMP port
unreachable): the packet got through."""


@dataclass(frozen=True)
class ZoneFacts:
    """A zone of the zones file."""

    name: str
    """`zones[].name`."""
    cidrs: tuple[str, ...]
    """`zones[].cidrs`: what the zone holds, and what scans from other zones target."""
    critical: bool
    """`zones[].critical`: must be neither reachable from nor able to reach an internet zone."""
    internet: bool
    """`zones[].internet`: stands for the internet or an untrusted outside network."""
    users: bool
    """People's devices sit here (`zones[].users`, else inferred: neither critical nor internet,
    holding no ZTNA gateway and no critical system). Critical systems must be dark from it."""
    vantage: str | None
    """Where the zone was scanned from (`netns:NAME`, `ssh:USER@HOST`, `local`); None: no
    vantage, the zone was only a target."""


@dataclass(frozen=True)
class PolicyRule:
    """One allowed flow of `policy.allow`, one port each."""

    source: str
    target: str
    proto: Proto
    port: int


@dataclass(frozen=True)
class PortObservation:
    """One port of one address as nmap reported it from one vantage (nmap XML `<port>`)."""

    source: str
    """The zone the probe came from (the vantage's zone)."""
    target: str
    """The zone holding `address`."""
    address: str
    proto: Proto
    port: int
    state: str
    """nmap's state: open, closed, filtered, unfiltered, open|filtered, closed|filtered."""
    reason: str
    """nmap's reason: syn-ack, reset, conn-refused, port-unreach, no-response, admin-prohibited,
    host-unreach, ... (what came back, or that nothing did)."""
    reason_ttl: int
    """TTL of the answer (0 when nothing came back, and for connect scans)."""
    vantage: str
    """The vantage that sent it (`netns:NAME`, `ssh:USER@HOST`, `local`)."""
    scan: ScanKind
    """syn (`-sS`), connect (`-sT`, unprivileged), udp (`-sU`) or ack (`-sA`)."""

    @property
    def spec(self) -> str:
        return f"{self.proto}/{self.port}"

    def line(self) -> str:
        """The evidence line: who saw what, how."""
        ttl = f" ttl {self.reason_ttl}" if self.reason_ttl else ""
        return (
            f"{self.source} -> {self.target} {self.address} {self.spec} {self.state} "
            f"({self.reason}{ttl}; {self.scan} scan from {self.vantage})"
        )


@dataclass(frozen=True)
class MatrixCell:
    """Reachability from one zone to another on one port: every address of the target zone
    probed from the source zone's vantage."""

    source: str
    target: str
    proto: Proto
    port: int
    vantage: str
    scan: ScanKind
    probed: int
    """Addresses probed to completion (hosts nmap gave up on are not counted)."""
    silent: int
    """Of those, how many gave no answer at all (nmap reason no-response)."""
    observations: tuple[PortObservation, ...]
    """Every other result one by one: answers from hosts, ICMP errors from devices."""

    @property
    def spec(self) -> str:
        return f"{self.proto}/{self.port}"

    @property
    def open(self) -> tuple[PortObservation, ...]:
        return tuple(o for o in self.observations if o.state == "open")

    @property
    def reachable(self) -> tuple[PortObservation, ...]:
        return tuple(o for o in self.observations if o.state in REACHABLE_STATES)

    @property
    def state(self) -> str:
        """The most reachable state seen: open > closed > the most common other state."""
        states = [o.state for o in self.observations]
        for wanted in ("open", "closed"):
            if wanted in states:
                return wanted
        if self.silent:
            return "open|filtered" if self.proto == "udp" else "filtered"
        return states[0] if states else "unscanned"

    @property
    def reason(self) -> str:
        for observation in self.observations:
            if observation.state == self.state:
                return observation.reason
        return "no-response" if self.silent else "none"


@dataclass(frozen=True)
class SilentPorts:
    """Ports, outside the ones the zones file names, on which no address of the target zone
    answered the source zone's vantage at all (nmap reason no-response): one record instead of
    a matrix cell per port."""

    source: str
    target: str
    proto: Proto
    ports: str
    """nmap's list syntax (`1,3-4,6-7`)."""
    count: int
    """How many ports `ports` holds."""
    addresses: int
    """Addresses probed to completion on each of them (as `MatrixCell.probed`)."""
    vantage: str
    scan: ScanKind

    @property
    def probes(self) -> int:
        return self.count * self.addresses


@dataclass(frozen=True)
class VantageRun:
    """What one vantage did: its commands, how it ended and what it could not do."""

    zone: str
    vantage: str
    privileged: bool | None
    """Raw-socket scans possible (root or sudo): SYN, UDP and ACK; else a TCP connect scan."""
    commands: tuple[str, ...]
    """The nmap command lines run, as run."""
    status: RunStatus
    """ok; partial (some hosts hit --host-timeout); timeout (the vantage's time ran out);
    error (nmap or the connection failed); cancelled."""
    message: str
    seconds: float
    targets: tuple[str, ...]
    """The CIDRs scanned from here (every other zone's)."""
    unfinished_hosts: tuple[str, ...] = ()
    """Hosts nmap gave up on (--host-timeout) or never reached before the vantage ended."""
    unscanned: tuple[str, ...] = ()
    """Ports not scanned from here, with why (`udp/161: unprivileged vantage`)."""


@dataclass(frozen=True)
class HttpExchange:
    """One HTTP request sent by a probe and what came back."""

    url: str
    method: str
    status: int | None
    """None when no HTTP answer came (refused, reset, timeout: see `error`)."""
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: str
    """The first 4 KiB of the body, decoded leniently."""
    error: str | None
    seconds: float

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def summary(self) -> str:
        if self.status is None:
            return f"no answer ({self.error})"
        server = self.header("server")
        return f"{self.status} {self.reason}" + (f" (Server: {server})" if server else "")


@dataclass(frozen=True)
class AttackExchange:
    """A request carrying a recognisable attack string, and its answer."""

    kind: str
    """The attack class: sqli, xss, traversal, cmdi, scanner (User-Agent), protocol."""
    payload: str
    """The request as sent: method, path or query, header or body carrying the string."""
    exchange: HttpExchange
    location: str = "query"
    """Where the attack string went: query, path, body or header."""
    benign: HttpExchange | None = None
    """The same request with a harmless value in its place (None: not sent)."""


@dataclass(frozen=True)
class WebAppProbe:
    """A web application of the zones file, probed from a zone allowed to reach it."""

    name: str
    url: str
    zone: str
    require_waf: bool
    vantage_zone: str | None
    """The zone the probes were sent from; None when not probed."""
    vantage: str | None
    baseline: HttpExchange | None
    """An ordinary GET of the URL; None when not probed (no WAF required, or no vantage)."""
    attacks: tuple[AttackExchange, ...] = ()
    error: str | None = None
    """Why the probes could not run."""
    not_found: HttpExchange | None = None
    """A GET of a page that does not exist: the application's own error answer."""


@dataclass(frozen=True)
class CriticalSystem:
    """A critical system of the zones file."""

    name: str
    address: str
    ports: tuple[str, ...]
    zone: str
    ztna_gateway: str | None


@dataclass(frozen=True)
class GatewayAttempt:
    """One request to a ZTNA gateway from a client without valid credentials, or (credential
    `configured`) the same request with the site's client certificate, to compare with."""

    path: str
    """The request target: the published path, /api/, a random path, a path with `..`."""
    credential: str
    """none; untrusted (a certificate from a CA the scanner made at scan time); expired (from
    that CA, validity ended); configured (the zones file's client certificate)."""
    exchange: HttpExchange


@dataclass(frozen=True)
class GatewayProbe:
    """The ZTNA gateway publishing a critical system, probed without credentials (must be
    refused) and, when the zones file gives a client certificate, with them (must answer)."""

    system: str
    gateway_url: str
    vantage_zone: str | None
    vantage: str | None
    handshake: bool
    """A TLS handshake without a client certificate completed (nginx then refuses in HTTP)."""
    tls_version: str | None
    handshake_error: str | None
    anonymous: HttpExchange | None
    """GET without a client certificate (nginx: 400 "No required SSL certificate was sent")."""
    authenticated: HttpExchange | None = None
    """GET with the configured client certificate; None when none was configured."""
    error: str | None = None
    attempts: tuple[GatewayAttempt, ...] = ()
    """Every credential (none, untrusted, expired) on every probed path; and `configured` on
    each path when the zones file gives a client certificate usable from the vantage."""


@dataclass(frozen=True)
class TlsVersionResult:
    """One protocol version offered alone to a service."""

    version: str
    """SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3."""
    outcome: TlsOutcome
    detail: str
    """The negotiated cipher, or how the server refused (alert, reset, no answer), or for
    `untested` why the handshake failed other than by the version."""


@dataclass(frozen=True)
class TlsService:
    """A TCP service that completed a TLS handshake at some version, or answered in TLS a
    handshake that failed for a reason other than the version (no cipher in common)."""

    address: str
    port: int
    zone: str
    vantage_zone: str
    vantage: str
    versions: tuple[TlsVersionResult, ...]

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def outcome(self, version: str) -> TlsVersionResult | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True)
class SnmpIdentity:
    """What the border firewall's SNMP agent says it is (SNMPv2-MIB system group)."""

    host: str
    version: str
    """2c or 3 (authPriv)."""
    sys_descr: str
    """sysDescr.0 (1.3.6.1.2.1.1.1.0)."""
    sys_object_id: str
    """sysObjectID.0 (1.3.6.1.2.1.1.2.0): the vendor's enterprise number follows 1.3.6.1.4.1."""
    sys_name: str | None
    vantage: str


@dataclass(frozen=True)
class NetFacts:
    """Everything one scan observed. A field that is `Unavailable` could not be measured."""

    zones: tuple[ZoneFacts, ...]
    policy: tuple[PolicyRule, ...]
    ports: tuple[str, ...]
    """The port set scanned from every vantage (`scan.ports`): every port the policy names,
    the critical systems' ports and `scan.extra_ports`, plus by default nmap's top 1,000 TCP
    ports and a few UDP ones (`collector.scan.zones.COVERAGE_UDP`)."""
    runs: tuple[VantageRun, ...]
    matrix: tuple[MatrixCell, ...] | Unavailable
    """One cell per (vantage zone, other zone, port) for the listed ports and for every other
    port on which something answered; the rest is in `silent_ports`."""
    ack: tuple[PortObservation, ...] | Unavailable
    """ACK probes (`nmap -sA`) to live hosts of zone pairs where the SYN scan showed no
    filtering; `filtered` there means a stateful filter dropped the unsolicited ACK."""
    web_apps: tuple[WebAppProbe, ...] | Unavailable
    critical_systems: tuple[CriticalSystem, ...]
    gateways: tuple[GatewayProbe, ...] | Unavailable
    tls: tuple[TlsService, ...] | Unavailable
    """Every open TCP port found was offered a TLS handshake; these answered in TLS."""
    tls_probed: int = 0
    """How many open TCP endpoints were offered a handshake."""
    snmp: SnmpIdentity | Unavailable | None = None
    """None: no `snmp` section in the zones file."""
    silent_ports: tuple[SilentPorts, ...] = ()
    """Per (vantage zone, other zone, protocol): the unlisted ports no address answered on."""
    port_choice: str = "listed"
    """`scan.ports`: top1000, all or listed."""
    started_at: str = ""
    """RFC 3339 UTC."""
    seconds: float = 0.0

    def zone(self, name: str) -> ZoneFacts | None:
        return next((z for z in self.zones if z.name == name), None)

    def run(self, zone: str) -> VantageRun | None:
        return next((r for r in self.runs if r.zone == zone), None)
