"""One scan of a zones file: `scan(zones, progress=...) -> NetFacts`.

Phase 1, every vantage at once (a TaskGroup): nmap from inside the zone toward every other
zone's CIDRs over the port set (SYN + UDP when the vantage may use raw sockets, else a TCP
connect scan), then ACK probes to the live hosts of any zone pair where the SYN scan showed no
filtering. Each vantage has its own deadline; nmap's `--host-timeout` bounds each host.
Phase 2 (`probes.Prober`), again all at once, chosen from what phase 1 saw: HTTP probes of the
web applications, the ZTNA gateways, TLS versions of every open TCP port, the firewall's SNMP
identity.

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
    MatrixCell,
    NetFacts,
    PolicyRule,
    PortObservation,
    RunStatus,
    ScanKind,
    VantageRun,
    ZoneFacts,
)
from checks.model import Unavailable
from collector.scan.nmap import NmapError, NmapOptions, NmapResult, build_argv, count_hosts
from collector.scan.probes import Prober, run_all
from collector.scan.vantage import Vantage, VantageError, make_vantage
from collector.scan.zones import (
    PortSpec,
    Scope,
    ScopeError,
    ZoneConfig,
    Zones,
)


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
    ack: list[PortObservation] = field(default_factory=list)


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


def build_cells(
    zones: Zones,
    source: str,
    vantage: str,
    result: NmapResult,
    ports: Sequence[PortSpec],
) -> tuple[list[MatrixCell], tuple[str, ...]]:
    """Matrix cells (one per target zone and port) from one nmap run; and unfinished hosts."""
    counts: dict[tuple[str, str, int], list[Any]] = {}
    unfinished: list[str] = []
    wanted = {(p.proto, p.port) for p in ports}
    kinds = set(result.run.scan_types)
    tcp_kind: ScanKind = "connect" if "connect" in kinds else "syn"
    zone_of = _locator(zones)
    for host in result.run.hosts:
        target = zone_of(host.address)
        if target is None or target == source:
            continue
        if host.timed_out:
            unfinished.append(host.address)
            continue
        for port in host.ports:
            if (port.proto, port.port) not in wanted:
                continue
            slot = counts.setdefault((target, port.proto, port.port), [0, 0, []])
            slot[0] += 1
            if port.reason == "no-response":
                slot[1] += 1
                continue
            slot[2].append(
                PortObservation(
                    source=source,
                    target=target,
                    address=host.address,
                    proto=port.proto,
                    port=port.port,
                    state=port.state,
                    reason=port.reason,
                    reason_ttl=port.reason_ttl,
                    vantage=vantage,
                    scan="udp" if port.proto == "udp" else tcp_kind,
                )
            )
    cells = [
        MatrixCell(
            source=source,
            target=target,
            proto="tcp" if proto == "tcp" else "udp",
            port=number,
            vantage=vantage,
            scan="udp" if proto == "udp" else tcp_kind,
            probed=slot[0],
            silent=slot[1],
            observations=tuple(slot[2]),
        )
        for (target, proto, number), slot in sorted(counts.items())
    ]
    return cells, tuple(unfinished)


def ack_targets(cells: Iterable[MatrixCell]) -> dict[str, list[str]]:
    """Live hosts per target zone whose every probed TCP port answered: no filtering was seen
    toward them, so an ACK probe must tell whether a stateful filter stands in between."""
    answered: dict[str, set[str]] = {}
    filtered_toward: set[str] = set()
    zone_of: dict[str, str] = {}
    tcp_cells = [c for c in cells if c.proto == "tcp"]
    for cell in tcp_cells:
        for observation in cell.observations:
            zone_of[observation.address] = cell.target
            if observation.state in REACHABLE_STATES:
                answered.setdefault(cell.target, set()).add(observation.address)
            else:
                filtered_toward.add(observation.address)
    by_zone: dict[str, list[str]] = {}
    for zone, live in answered.items():
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
        self.ports = zones.port_set()
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

    async def run(self) -> NetFacts:
        started = time.monotonic()
        started_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._make_vantages()
        try:
            scans = await run_all(self._scan_zone(z) for z in self.vantages)
            cells = [c for s in scans for c in s.cells]
            runs = [s.run for s in scans] + [
                VantageRun(name, "unavailable", None, (), "error", reason, 0.0, ())
                for name, reason in self.failed.items()
            ]
            _emit(self.progress, ProgressEvent("*", "probes", 0.0, "probes"))
            probes = Prober(self.zones, self.vantages, self.scope, cells)
            async with asyncio.TaskGroup() as group:
                web_task = group.create_task(probes.web_apps())
                gateway_task = group.create_task(probes.gateways())
                tls_task = group.create_task(probes.tls())
                snmp_task = group.create_task(probes.snmp())
            web, gateways = web_task.result(), gateway_task.result()
            tls, snmp = tls_task.result(), snmp_task.result()
            _emit(self.progress, ProgressEvent("*", "done", 1.0, "done"))
        finally:
            for vantage in self.vantages.values():
                with contextlib.suppress(Exception):
                    await vantage.close()
        ok = [s for s in scans if s.run.status in {"ok", "partial"}]
        matrix: tuple[MatrixCell, ...] | Unavailable = tuple(cells)
        if not ok:
            reasons = "; ".join(f"{r.zone}: {r.message}" for r in runs) or "no zone has a vantage"
            matrix = Unavailable(f"no vantage produced results ({reasons})")
        tls_services, tls_probed = tls
        return NetFacts(
            zones=tuple(self._zone_facts(z) for z in self.zones.zones),
            policy=tuple(
                PolicyRule(rule.source, rule.target, spec.proto, spec.port)
                for rule in self.zones.policy.allow
                for spec in rule.port_specs
            ),
            ports=tuple(str(p) for p in self.ports),
            runs=tuple(sorted(runs, key=lambda r: r.zone)),
            matrix=matrix,
            ack=tuple(a for s in scans for a in s.ack) if ok else Unavailable("no scan results"),
            web_apps=web,
            critical_systems=tuple(
                CriticalSystem(s.name, s.address, s.ports, s.zone, s.ztna_gateway)
                for s in self.zones.critical_systems
            ),
            gateways=gateways,
            tls=tls_services,
            tls_probed=tls_probed,
            snmp=snmp,
            started_at=started_at,
            seconds=round(time.monotonic() - started, 3),
        )

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

    def _plan(self, privileged: bool) -> tuple[list[ScanKind], list[str]]:
        """The nmap scan types for a vantage, and the ports it cannot scan (with why)."""
        scans: list[ScanKind] = []
        unscanned: list[str] = []
        if any(p.proto == "tcp" for p in self.ports):
            scans.append("syn" if privileged else "connect")
        udp = [p for p in self.ports if p.proto == "udp"]
        if udp and privileged:
            scans.append("udp")
        unscanned += [
            f"{p}: unprivileged vantage (UDP needs raw sockets)" for p in udp if not privileged
        ]
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
        deadline = started + self.zones.scan.vantage_timeout_seconds
        targets = tuple(c for z in self.zones.zones if z.name != name for c in z.cidrs)

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
        cells, unfinished = build_cells(self.zones, name, vantage.description, result, scanned)
        ack: list[PortObservation] = []
        status: RunStatus = result.status
        message = result.message
        wanted = ack_targets(cells) if status == "ok" and privileged else {}
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
        return _ZoneScan(name, vantage.description, run, cells, ack)

    async def _ack(
        self,
        name: str,
        vantage: Vantage,
        wanted: Mapping[str, Sequence[str]],
        deadline: float,
        report: Callable[[float, str], None],
    ) -> tuple[list[PortObservation], NmapResult]:
        hosts = [address for addresses in wanted.values() for address in addresses]
        tcp = [p for p in self.ports if p.proto == "tcp"]
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
            for port in host.ports:
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
