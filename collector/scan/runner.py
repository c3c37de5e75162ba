"""One scan of a zones file: `scan(zones, progress=...) -> NetFacts`.

Phase 1, every vantage at once (a TaskGroup): nmap from inside the zone toward every other
zone's CIDRs over the port set (SYN + UDP when the vantage may use raw sockets, else a TCP
connect scan), then ACK probes to the live hosts of any zone pair where the SYN scan showed no
filtering. The port set is `scan.ports`: by default nmap's own top 1,000 TCP ports (asked of the
first vantage that answers, so every vantage probes the same list) plus the ports the zones file
names and a few UDP ones. Each vantage has its own deadline; nmap's `--host-timeout` bounds
each host. Phase 2 (`probes.Prober`), again all at once, chosen from what phase 1 saw: HTTP
probes of the web applications, the ZTNA gateways, TLS versions of every open TCP port, the
firewall's SNMP identity.

A vantage that fails (unreachable, its connection lost, out of time) is a run with status
`error` or `timeout` and why. When none produced results, every fact that needed them (matrix,
ACK probes, web applications, gateways, TLS services) is `Unavailable` with that reason, and
phase 2 sends nothing: the checks say `error`, never that nothing was found. "No TLS service"
also needs every vantage to have scanned.

Cancelling the task stops every nmap and probe; nothing is left running. Every target is checked
against the zones file's scope (and a test confinement) before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from checks.facts.network import (
    REACHABLE_STATES,
    CriticalSystem,
    GatewayProbe,
    MatrixCell,
    NetFacts,
    PolicyRule,
    PortObservation,
    RunStatus,
    ScanKind,
    SilentPorts,
    SnmpIdentity,
    TlsService,
    VantageRun,
    WebAppProbe,
    ZoneFacts,
)
from checks.model import Unavailable
from collector.scan.nmap import (
    NmapError,
    NmapOptions,
    NmapPort,
    NmapResult,
    build_argv,
    count_hosts,
    port_list,
    port_numbers,
    sized_host_timeout,
    top_ports,
    top_ports_argv,
)
from collector.scan.probe_vantage import ProbeVantage
from collector.scan.probes import Prober, run_all
from collector.scan.vantage import SshVantage, Vantage, VantageError, make_vantage
from collector.scan.zones import (
    TOP_PORTS,
    PortSpec,
    Scope,
    ScopeError,
    ZoneConfig,
    Zones,
)

_TOP_PORTS_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProgressEvent:
    """What the scan is doing: per vantage zone while scanning, then the probes."""

    zone: str
    phase: Literal["scan", "ack", "probes", "done", "failed"]
    fraction: float
    note: str


ProgressSink = Callable[[ProgressEvent], None]


@dataclass
class _ZoneScan:
    """Phase-1 result of one vantage."""

    zone: str
    vantage: str
    run: VantageRun
    cells: list[MatrixCell] = field(default_factory=list)
    silent: list[SilentPorts] = field(default_factory=list)
    ack: list[PortObservation] = field(default_factory=list)


@dataclass(frozen=True)
class _Probed:
    """Phase 2's facts."""

    web_apps: tuple[WebAppProbe, ...] | Unavailable
    gateways: tuple[GatewayProbe, ...] | Unavailable
    tls: tuple[TlsService, ...] | Unavailable
    tls_probed: int
    snmp: SnmpIdentity | Unavailable | None


def nmap_options(zones: Zones) -> NmapOptions:
    """nmap's timing and politeness from the zones file's `scan` section."""
    scan = zones.scan
    return NmapOptions(
        timing=scan.timing,
        max_retries=scan.max_retries,
        min_rate=scan.min_rate,
        max_rate=scan.max_rate,
        min_hostgroup=scan.min_hostgroup,
        max_rtt_timeout_ms=scan.max_rtt_timeout_ms,
        host_timeout_seconds=scan.host_timeout_seconds,
    )


def _emit(progress: ProgressSink | None, event: ProgressEvent) -> None:
    if progress is not None:
        progress(event)


def _locator(zones: Zones) -> Callable[[str], str | None]:
    """address -> zone name, by integer masks (called once per scanned host)."""
    networks = [
        (int(n.network_address), int(n.netmask), zone.name)
        for zone in zones.zones
        for n in zone.networks
    ]

    def zone_of(address: str) -> str | None:
        try:
            value = int.from_bytes(socket.inet_aton(address), "big")
        except OSError:
            return None
        return next((name for base, mask, name in networks if value & mask == base), None)

    return zone_of


@dataclass
class _Tally:
    """One (target zone, proto, port) while a run is read: its silent hosts and its answers."""

    silent: int = 0
    answers: list[PortObservation] = field(default_factory=list)


@dataclass(frozen=True)
class Cells:
    """Phase 1 of one vantage as the matrix holds it."""

    cells: list[MatrixCell]
    silent: list[SilentPorts]
    """Unlisted ports on which no address of a zone answered, one record per zone and proto."""
    unfinished: tuple[str, ...]
    """Hosts nmap gave up on (--host-timeout)."""


class _RunReader:
    """Reads one nmap run into tallies per (target zone, proto, port)."""

    def __init__(
        self,
        zones: Zones,
        source: str,
        vantage: str,
        result: NmapResult,
        wanted: set[tuple[str, int]],
    ) -> None:
        self.source, self.vantage, self.wanted = source, vantage, wanted
        kinds = set(result.run.scan_types)
        self.tcp_kind: ScanKind = "connect" if "connect" in kinds else "syn"
        self.tallies: dict[tuple[str, str, int], _Tally] = {}
        self.finished: dict[str, int] = {}
        """Hosts of each target zone that nmap finished."""
        self.unfinished: list[str] = []
        folded: dict[tuple[str, str, str], int] = {}
        zone_of = _locator(zones)
        for host in result.run.hosts:
            target = zone_of(host.address)
            if target is None or target == source:
                continue
            if host.timed_out:
                self.unfinished.append(host.address)
                continue
            self.finished[target] = self.finished.get(target, 0) + 1
            for port in host.ports:
                self._observe(target, host.address, port)
            for extra in host.extra:
                if extra.reason == "no-response":
                    key = (target, extra.proto, extra.ports)
                    folded[key] = folded.get(key, 0) + 1
                    continue
                for number in extra.numbers():
                    port = NmapPort(extra.proto, number, extra.state, extra.reason, 0)
                    self._observe(target, host.address, port)
        for (target, proto, listing), hosts in folded.items():
            for number in port_numbers(listing):
                if (proto, number) in wanted:
                    self._tally(target, proto, number).silent += hosts

    def _tally(self, target: str, proto: str, number: int) -> _Tally:
        key = (target, proto, number)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = _Tally()
        return tally

    def _observe(self, target: str, address: str, port: NmapPort) -> None:
        if (port.proto, port.port) not in self.wanted:
            return
        tally = self._tally(target, port.proto, port.port)
        if port.reason == "no-response":
            tally.silent += 1
            return
        tally.answers.append(
            PortObservation(
                source=self.source,
                target=target,
                address=address,
                proto=port.proto,
                port=port.port,
                state=port.state,
                reason=port.reason,
                reason_ttl=port.reason_ttl,
                vantage=self.vantage,
                scan=self._scan(port.proto),
            )
        )

    def _scan(self, proto: str) -> ScanKind:
        return "udp" if proto == "udp" else self.tcp_kind

    def cells(self, always: set[tuple[str, int]]) -> Cells:
        cells: list[MatrixCell] = []
        quiet: dict[tuple[str, str, int], list[int]] = {}
        for target, hosts in sorted(self.finished.items()):
            for proto, number in sorted(self.wanted):
                tally = self.tallies.get((target, proto, number))
                if tally is None:
                    continue
                probed = tally.silent + len(tally.answers)
                if (proto, number) not in always and not tally.answers and tally.silent == hosts:
                    quiet.setdefault((target, proto, probed), []).append(number)
                    continue
                cells.append(
                    MatrixCell(
                        source=self.source,
                        target=target,
                        proto="tcp" if proto == "tcp" else "udp",
                        port=number,
                        vantage=self.vantage,
                        scan=self._scan(proto),
                        probed=probed,
                        silent=tally.silent,
                        observations=tuple(tally.answers),
                    )
                )
        silent = [
            SilentPorts(
                source=self.source,
                target=target,
                proto="tcp" if proto == "tcp" else "udp",
                ports=port_list(numbers),
                count=len(numbers),
                addresses=addresses,
                vantage=self.vantage,
                scan=self._scan(proto),
            )
            for (target, proto, addresses), numbers in sorted(quiet.items())
        ]
        return Cells(cells, silent, tuple(self.unfinished))


def build_cells(
    zones: Zones,
    source: str,
    vantage: str,
    result: NmapResult,
    ports: Sequence[PortSpec],
    *,
    listed: Sequence[PortSpec] | None = None,
) -> Cells:
    """Matrix cells from one nmap run: one per target zone and port, for the `listed` ports
    (default: all `ports`) and for any other port something answered on; the ports on which
    every address of a zone stayed silent become one `SilentPorts` per zone and protocol.

    Folded ports (nmap's `<extraports>`) are counted per distinct port list, not per host: the
    hundreds of silent hosts of a zone share one list, read once."""
    wanted: set[tuple[str, int]] = {(p.proto, p.port) for p in ports}
    always = set(wanted)
    if listed is not None:
        always &= {(p.proto, p.port) for p in listed}
    return _RunReader(zones, source, vantage, result, wanted).cells(always)


def ack_targets(
    cells: Iterable[MatrixCell], silent: Iterable[SilentPorts] = ()
) -> dict[str, list[str]]:
    """Live hosts per target zone whose every probed TCP port answered: no filtering was seen
    toward them, so an ACK probe must tell whether a stateful filter stands in between. (Ports
    where every address was silent count as filtering toward the whole zone.)"""
    quiet = {s.target for s in silent if s.proto == "tcp" and s.count}
    answered: dict[str, set[str]] = {}
    filtered_toward: set[str] = set()
    tcp_cells = [c for c in cells if c.proto == "tcp"]
    for cell in tcp_cells:
        for observation in cell.observations:
            if observation.state in REACHABLE_STATES:
                answered.setdefault(cell.target, set()).add(observation.address)
            else:
                filtered_toward.add(observation.address)
    by_zone: dict[str, list[str]] = {}
    for zone, live in answered.items():
        if zone in quiet:
            continue
        zone_cells = [c for c in tcp_cells if c.target == zone]
        for address in sorted(live):
            seen = sum(1 for c in zone_cells for o in c.observations if o.address == address)
            if address not in filtered_toward and seen == len(zone_cells):
                by_zone.setdefault(zone, []).append(address)
    return by_zone


class Scanner:
    """One scan: the zones, the vantages, the scope. Use `scan()` for the usual call."""

    def __init__(
        self,
        zones: Zones,
        *,
        vantages: Mapping[str, Vantage] | None = None,
        confine: Sequence[str] | None = None,
        progress: ProgressSink | None = None,
    ) -> None:
        self.zones = zones
        self.scope: Scope = zones.scope(confine)
        for network in zones.networks():
            # Nothing outside the confinement is ever scanned, whatever the zones file says.
            self.scope.check_network(network, "zones file CIDR")
        self.progress = progress
        self.options = nmap_options(zones)
        self.listed = zones.listed_ports()
        self.ports: tuple[PortSpec, ...] = () if zones.scan.ports == "top1000" else zones.port_set()
        """Filled in by `run()` for `top1000`: nmap's own list comes from a vantage's nmap."""
        self._given = dict(vantages or {})
        self.vantages: dict[str, Vantage] = {}
        self.failed: dict[str, str] = {}

    def _make_vantages(self) -> None:
        for zone in self.zones.zones:
            if zone.name in self._given:
                self.vantages[zone.name] = self._given[zone.name]
            elif zone.vantage is not None:
                try:
                    self.vantages[zone.name] = make_vantage(zone.name, zone.vantage)
                except (VantageError, NmapError) as exc:
                    self.failed[zone.name] = str(exc)

    async def _top_ports(self) -> None:
        """`scan.ports: top1000`: nmap's own `--top-ports 1000`, asked of the vantages in turn
        (local and namespace ones first: no connection to open) until one answers. Every
        vantage then probes that one list. When none can say, no vantage scans: each is
        reported failed with why, and every check of the matrix says `error`."""
        problems = []
        remote = (SshVantage, ProbeVantage)  # a connection or a job queue: asked last
        order = sorted(self.vantages.items(), key=lambda item: isinstance(item[1], remote))
        for name, vantage in order:
            try:
                result = await vantage.run_nmap(
                    top_ports_argv(vantage.nmap, TOP_PORTS),
                    timeout=_TOP_PORTS_TIMEOUT,
                    total_hosts=0,
                )
                if result.status != "ok":
                    raise NmapError(result.message)
                self.ports = self.zones.port_set(top_ports(result.run, TOP_PORTS))
                return
            except (NmapError, VantageError, OSError) as exc:
                problems.append(f"{name}: {exc}")
        reason = f"nmap's --top-ports {TOP_PORTS} list could not be read ({'; '.join(problems)})"
        for name in list(self.vantages):
            self.failed[name] = reason
            vantage = self.vantages.pop(name)
            with contextlib.suppress(Exception):
                await vantage.close()

    async def run(self) -> NetFacts:
        started = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._make_vantages()
        try:
            if not self.ports and self.vantages:
                await self._top_ports()
            scans = await run_all(self._scan_zone(z) for z in self.vantages)
            cells = [c for s in scans for c in s.cells]
            runs = [s.run for s in scans] + [
                VantageRun(name, "unavailable", None, (), "error", reason, 0.0, ())
                for name, reason in self.failed.items()
            ]
            lost = None  # Unavailable is falsy: every test of it below is `is None`
            if not any(s.run.status in {"ok", "partial"} for s in scans):
                reasons = "; ".join(f"{r.zone}: {r.message}" for r in runs)
                lost = Unavailable(
                    f"no vantage produced results ({reasons or 'no zone has a vantage'})"
                )
            _emit(self.progress, ProgressEvent("*", "probes", 0.0, "probes"))
            probed = await self._probe(Prober(self.zones, self.vantages, self.scope, cells), lost)
            _emit(self.progress, ProgressEvent("*", "done", 1.0, "done"))
        finally:
            for vantage in self.vantages.values():
                with contextlib.suppress(Exception):
                    await vantage.close()
        tls = probed.tls
        failed = [r for r in runs if r.status not in {"ok", "partial"}]
        if isinstance(tls, tuple) and not tls and failed:
            # "No TLS service" is a claim about every zone; a vantage that failed saw nothing.
            tls = Unavailable(
                "no TLS service found, but not every vantage scanned: "
                + "; ".join(f"{r.zone}: {r.message}" for r in failed)
            )
        return NetFacts(
            zones=tuple(self._zone_facts(z) for z in self.zones.zones),
            policy=tuple(
                PolicyRule(rule.source, rule.target, spec.proto, spec.port)
                for rule in self.zones.policy.allow
                for spec in rule.port_specs
            ),
            ports=tuple(str(p) for p in self.ports),
            runs=tuple(sorted(runs, key=lambda r: r.zone)),
            matrix=tuple(cells) if lost is None else lost,
            ack=tuple(a for s in scans for a in s.ack) if lost is None else lost,
            web_apps=probed.web_apps,
            critical_systems=tuple(
                CriticalSystem(s.name, s.address, s.ports, s.zone, s.ztna_gateway)
                for s in self.zones.critical_systems
            ),
            gateways=probed.gateways,
            tls=tls,
            tls_probed=probed.tls_probed,
            snmp=probed.snmp,
            silent_ports=tuple(q for s in scans for q in s.silent) if lost is None else (),
            port_choice=self.zones.scan.ports,
            started_at=started_at,
            seconds=round(time.monotonic() - started, 3),
        )

    async def _probe(self, prober: Prober, lost: Unavailable | None) -> _Probed:
        """Phase 2. When no vantage produced results (`lost`), nothing is probed that needed
        them: the web applications, gateways and TLS services are unknown, not absent, and a
        dead vantage is not asked again (a frozen one would cost every probe's timeout). What
        the zones file itself settles stays: no web application listed, none needing a WAF,
        no gateway to probe. The SNMP identity needs no scan result and is asked anyway."""
        if lost is not None:
            apps, systems = self.zones.web_apps, self.zones.critical_systems
            return _Probed(
                web_apps=lost if any(a.require_waf for a in apps) else await prober.web_apps(),
                gateways=lost if any(s.ztna_gateway is not None for s in systems) else (),
                tls=lost,
                tls_probed=0,
                snmp=await prober.snmp(),
            )
        async with asyncio.TaskGroup() as group:
            web = group.create_task(prober.web_apps())
            gateways = group.create_task(prober.gateways())
            tls = group.create_task(prober.tls())
            snmp = group.create_task(prober.snmp())
        services, probed = tls.result()
        return _Probed(web.result(), gateways.result(), services, probed, snmp.result())

    def _zone_facts(self, zone: ZoneConfig) -> ZoneFacts:
        vantage = self.vantages.get(zone.name)
        return ZoneFacts(
            name=zone.name,
            cidrs=zone.cidrs,
            critical=zone.critical,
            internet=zone.internet,
            users=self.zones.is_user_zone(zone),
            vantage=vantage.description if vantage is not None else None,
        )

    # --- phase 1 ----------------------------------------------------------------------------

    def _vantage_timeout(self, targets: Sequence[str]) -> float:
        """`scan.vantage_timeout_seconds`, or twice the run's host timeout (at least 600 s)."""
        configured = self.zones.scan.vantage_timeout_seconds
        if configured is not None:
            return configured
        host = self.options.host_timeout_seconds or sized_host_timeout(
            self.options, count_hosts(targets), len(self.ports)
        )
        return max(600.0, 2 * host)

    def _plan(self, privileged: bool) -> tuple[list[ScanKind], list[str]]:
        """The nmap scan types for a vantage, and the ports it cannot scan (with why)."""
        scans: list[ScanKind] = []
        unscanned: list[str] = []
        if any(p.proto == "tcp" for p in self.ports):
            scans.append("syn" if privileged else "connect")
        udp = [p for p in self.ports if p.proto == "udp"]
        if udp and privileged:
            scans.append("udp")
        if udp and not privileged:
            # nmap refuses -sU without raw sockets; the pairs' results say so rather than pass.
            listed = ", ".join(str(p) for p in udp)
            unscanned.append(f"{listed}: unprivileged vantage (UDP needs raw sockets)")
        return scans, unscanned

    def _failed(
        self, name: str, vantage: Vantage, message: str, started: float, **extra: Any
    ) -> _ZoneScan:
        _emit(self.progress, ProgressEvent(name, "failed", 1.0, message))
        fields: dict[str, Any] = {
            "privileged": None,
            "commands": (),
            "targets": (),
            "unscanned": (),
            **extra,
        }
        run = VantageRun(
            zone=name,
            vantage=vantage.description,
            status="error",
            message=message,
            seconds=round(time.monotonic() - started, 3),
            **fields,
        )
        return _ZoneScan(name, vantage.description, run)

    async def _scan_zone(self, name: str) -> _ZoneScan:
        vantage = self.vantages[name]
        started = time.monotonic()
        targets = tuple(c for z in self.zones.zones if z.name != name for c in z.cidrs)
        deadline = started + self._vantage_timeout(targets)

        def report(phase: Literal["scan", "ack"]) -> Callable[[float, str], None]:
            return lambda fraction, note: _emit(
                self.progress, ProgressEvent(name, phase, fraction, note)
            )

        try:
            privileged = await asyncio.wait_for(vantage.privileged(), deadline - started)
        except (VantageError, TimeoutError, OSError) as exc:
            return self._failed(name, vantage, str(exc) or "no answer", started, targets=targets)
        scans, unscanned = self._plan(privileged)
        known: dict[str, Any] = {
            "privileged": privileged,
            "targets": targets,
            "unscanned": tuple(unscanned),
        }
        if not scans:
            return self._failed(name, vantage, "nothing to scan: no TCP port, no raw sockets "
                                "for UDP", started, **known)  # fmt: skip
        try:
            argv = build_argv(
                nmap=vantage.nmap,
                scans=scans,
                ports=self.ports,
                targets=targets,
                scope=self.scope,
                options=self.options,
            )
            result = await vantage.run_nmap(
                argv,
                timeout=max(1.0, deadline - time.monotonic()),
                total_hosts=count_hosts(targets),
                on_progress=report("scan"),
            )
        except (NmapError, VantageError, ScopeError, OSError) as exc:
            return self._failed(name, vantage, str(exc), started, **known)
        commands = [result.command]
        scanned = [p for p in self.ports if p.proto == "tcp" or "udp" in scans]
        built = build_cells(
            self.zones, name, vantage.description, result, scanned, listed=self.listed
        )
        cells, unfinished = built.cells, built.unfinished
        ack: list[PortObservation] = []
        status: RunStatus = result.status
        message = result.message
        unnamed = sum(e.total for h in result.run.hosts for e in h.extra if not e.ports)
        if unnamed:
            # Folded ports without their numbers cannot be put in the matrix: never a pass.
            status = "error"
            message = (
                f"nmap {result.run.version or '?'} folded {unnamed} ports without naming them "
                "(<extrareasons> without `ports`); the matrix cannot be built from its output"
            )
        wanted = ack_targets(cells, built.silent) if status == "ok" and privileged else {}
        if wanted:
            try:
                ack, ack_result = await self._ack(name, vantage, wanted, deadline, report("ack"))
            except (NmapError, VantageError, ScopeError, OSError) as exc:
                status, message = "error", f"ACK probes: {exc}"
            else:
                commands.append(ack_result.command)
                if ack_result.status != "ok":
                    status, message = ack_result.status, f"ACK probes: {ack_result.message}"
        if status == "ok" and unfinished:
            status = "partial"
            message = f"{message}; {len(unfinished)} hosts hit --host-timeout"
        _emit(self.progress, ProgressEvent(name, "scan", 1.0, message))
        run = VantageRun(
            zone=name,
            vantage=vantage.description,
            commands=tuple(commands),
            status=status,
            message=message,
            seconds=round(time.monotonic() - started, 3),
            unfinished_hosts=unfinished,
            **known,
        )
        return _ZoneScan(name, vantage.description, run, cells, built.silent, ack)

    async def _ack(
        self,
        name: str,
        vantage: Vantage,
        wanted: Mapping[str, Sequence[str]],
        deadline: float,
        report: Callable[[float, str], None],
    ) -> tuple[list[PortObservation], NmapResult]:
        hosts = [address for addresses in wanted.values() for address in addresses]
        # A few ports tell a stateful filter; the listed ones, as the matrix always has them.
        tcp = [p for p in self.listed if p.proto == "tcp"] or [
            p for p in self.ports if p.proto == "tcp"
        ]
        argv = build_argv(
            nmap=vantage.nmap,
            scans=["ack"],
            ports=tcp,
            targets=hosts,
            scope=self.scope,
            options=self.options,
        )
        result = await vantage.run_nmap(
            argv,
            timeout=max(1.0, deadline - time.monotonic()),
            total_hosts=len(hosts),
            on_progress=report,
        )
        observations = []
        for host in result.run.hosts:
            zone = self.zones.zone_of(host.address)
            if zone is None or host.timed_out:
                continue
            for port in host.all_ports():
                observations.append(
                    PortObservation(
                        source=name,
                        target=zone.name,
                        address=host.address,
                        proto=port.proto,
                        port=port.port,
                        state=port.state,
                        reason=port.reason,
                        reason_ttl=port.reason_ttl,
                        vantage=vantage.description,
                        scan="ack",
                    )
                )
        return observations, result

    # --- phase 2 ----------------------------------------------------------------------------


async def scan(
    zones: Zones,
    *,
    progress: ProgressSink | None = None,
    confine: Sequence[str] | None = None,
    vantages: Mapping[str, Vantage] | None = None,
) -> NetFacts:
    """Scan every zone from its vantage, probe what was found, return the facts."""
    return await Scanner(zones, vantages=vantages, confine=confine, progress=progress).run()
