"""The SNMP inventory: ask every device of a targets file (and every address of its sweep CIDRs)
for its identity — system group, ENTITY-MIB physical entries, interfaces and their IPv4
addresses — classify it, and note how its SNMP management is secured.

One asyncio loop and one pysnmp `SnmpEngine` serve the whole run; `concurrency` devices are
asked at once, each within its own deadline. A device that does not answer stays in the result
with `error` saying why (a missing answer is never a missing device); one that answered only in
part keeps what it gave and says what is missing.

How a device is asked, and why:
- one opening request carries the system group (as GETNEXT of each object, i.e. the
  non-repeaters of a GETBULK) and the first row of each table (the repeaters,
  `OPENING_COLUMNS`): a sparse device, or an address of a sweep, costs one round trip. Only the
  tables the answer shows present are then walked, all their columns in the same GETBULK
  requests (SNMPv1: GETNEXT), each column stopping where it leaves its table, at most
  `MAX_ROWS` rows per table.
- pysnmp writes each peer (address × credentials × timeout) into its engine's SNMP-TARGET-MIB
  and community tables, and rebuilds its lookup maps on the next incoming message whenever
  those tables changed. So every peer is configured before traffic starts (sweep addresses in
  batches): configured on the fly, each answer would rebuild maps as large as the run. The
  communities share one row per address (`snmp_wire.Wire`).
- a swept address nobody holds on a directly attached network keeps its datagram in the kernel
  while ARP fails; sweep knocks therefore leave from a socket of their own, and no request is
  handed to a socket that cannot take it (`snmp_wire.Wire._drain`).
- the well-known communities are tried only on devices listed in the targets file (never on
  swept addresses: guessing credentials is for devices the operator named), each once with a
  short timeout; whether a device speaks SNMPv3 is asked with an engine discovery under a user
  that does not exist (an SNMPv3 agent answers with a report; no credential is guessed).

Only addresses of the targets file and of its sweep CIDRs are ever sent a packet.

This module is the entry point and runs the listed devices; the rest lives beside it:
`snmp_tables` (what is asked, and a walk's columns), `snmp_wire` (the pysnmp engine, credentials
and requests), `snmp_device` (one device within its deadline, and its facts), `snmp_facts`
(answers decoded into facts) and `snmp_sweep` (the sweep).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from checks.facts.devices import NetworkDevice
from inventory.network.snmp_device import (
    MAX_DEVICE_SECONDS,
    MAX_REPETITIONS,
    PROBE_TIMEOUT,
    REQUESTS_PER_DEADLINE,
    VARBINDS_PER_REQUEST,
    Classifier,
    DeviceAsker,
    Plan,
)
from inventory.network.snmp_facts import (
    MIN_COMMUNITY_LENGTH,
    WELL_KNOWN_COMMUNITIES,
    decode_text,
    guessable,
)
from inventory.network.snmp_sweep import SWEEP_BATCH, SWEEP_TIMEOUT, Sweep
from inventory.network.snmp_tables import (
    END_OF_MIB,
    ENT_PHYSICAL_ENTRY,
    ENTITY_COLUMNS,
    ENTRIES,
    IF_DESCR,
    IF_NAME,
    IP_AD_ENT_IF_INDEX,
    IP_AD_ENT_NET_MASK,
    MAX_ROWS,
    OPENING_COLUMNS,
    PHYSICAL_CLASSES,
    SYSTEM,
    TABLES,
    new_columns,
)
from inventory.network.snmp_wire import MAX_SEND_WAIT, PROBE_USER, SEND_BUFFER, Peer, Wire
from inventory.network.targets import SnmpTarget, Targets

__all__ = [
    "END_OF_MIB",
    "ENTITY_COLUMNS",
    "ENTRIES",
    "ENT_PHYSICAL_ENTRY",
    "IF_DESCR",
    "IF_NAME",
    "IP_AD_ENT_IF_INDEX",
    "IP_AD_ENT_NET_MASK",
    "MAX_DEVICE_SECONDS",
    "MAX_REPETITIONS",
    "MAX_ROWS",
    "MAX_SEND_WAIT",
    "MIN_COMMUNITY_LENGTH",
    "OPENING_COLUMNS",
    "PHYSICAL_CLASSES",
    "PROBE_TIMEOUT",
    "PROBE_USER",
    "REQUESTS_PER_DEADLINE",
    "SEND_BUFFER",
    "SWEEP_BATCH",
    "SWEEP_TIMEOUT",
    "SYSTEM",
    "TABLES",
    "VARBINDS_PER_REQUEST",
    "WELL_KNOWN_COMMUNITIES",
    "Classifier",
    "SnmpRun",
    "collect_devices",
    "collect_devices_async",
    "decode_text",
    "guessable",
]


@dataclass(frozen=True)
class SnmpRun:
    """What one run of the inventory found."""

    devices: tuple[NetworkDevice, ...]
    """The targets file's devices in its order, then the swept ones that answered."""
    swept: tuple[str, ...]
    """The CIDRs swept."""
    addresses_swept: int
    """Addresses the sweep covered (listed devices among them included)."""
    seconds: float


def collect_devices(targets: Targets, *, classify: Classifier | None = None) -> SnmpRun:
    """Ask every device of `targets` and sweep its CIDRs (blocking; one event loop)."""
    return asyncio.run(collect_devices_async(targets, classify=classify))


async def collect_devices_async(targets: Targets, *, classify: Classifier | None = None) -> SnmpRun:
    if classify is None:
        from checks.device.roles import classify as packaged

        classify = packaged
    started = time.monotonic()
    run = _Run(targets, classify)
    try:
        devices = await run.collect()
    finally:
        run.close()
    return SnmpRun(
        devices=devices,
        swept=targets.sweep,
        addresses_swept=len(targets.sweep_addresses()),
        seconds=round(time.monotonic() - started, 3),
    )


class _Run:
    """One run: its engine, the limit of devices asked at once (the sweep's among them), and the
    listed devices."""

    def __init__(self, targets: Targets, classify: Classifier) -> None:
        self.targets = targets
        self.wire = Wire()
        self.limit = asyncio.Semaphore(targets.concurrency)
        self.wire.fixed([*(o for o in SYSTEM.values()), *((*o, 0) for o in SYSTEM.values())])
        self.wire.fixed(c.oid for c in new_columns())
        self.user_locks: dict[str, asyncio.Lock] = {}
        self.asker = DeviceAsker(self.wire, classify)
        self.sweep = Sweep(targets, self.wire, self.asker, self.limit)

    def close(self) -> None:
        self.wire.close()

    async def collect(self) -> tuple[NetworkDevice, ...]:
        targets = self.targets
        shared = _conflicting_users(targets)
        self.user_locks = {user: asyncio.Lock() for user in shared}
        plans = [await self._plan(t) for t in targets.devices]
        self.wire.configure(
            p for plan in plans if plan.target.credentials.user not in shared for p in plan.peers()
        )
        listed = asyncio.gather(*(self._listed(plan) for plan in plans))
        settings = targets.sweep_settings
        if settings is not None and settings.credentials.user in _conflicting_users(
            targets, with_sweep=True
        ):
            # The sweep's v3 user has other keys than a listed device's of the same name, and
            # a sweep configures its peers while running: it waits for the listed devices.
            found = await listed
            return (*found, *await self.sweep.run())
        found, discovered = await asyncio.gather(listed, self.sweep.run())
        return (*found, *discovered)

    async def _plan(self, target: SnmpTarget) -> Plan:
        wire = self.wire
        main = await wire.peer(
            target.address, target.port, wire.auth(target.credentials), target.timeout,
            target.retries,
        )  # fmt: skip
        probe_timeout = min(PROBE_TIMEOUT, target.timeout)
        wells: list[tuple[str, Peer]] = []
        if self.targets.well_known_communities:
            version = "1" if target.credentials.version == "1" else "2c"
            for word in WELL_KNOWN_COMMUNITIES:
                auth = wire.community(word, version)
                peer = await wire.peer(target.address, target.port, auth, probe_timeout, 0)
                wells.append((word, peer))
        v3 = None
        if target.credentials.version != "3":
            v3 = await wire.peer(
                target.address, target.port, wire.nobody(), probe_timeout, 0,
            )  # fmt: skip
        return Plan(target, "target", main, wells, v3)

    async def _listed(self, plan: Plan) -> NetworkDevice:
        lock = self.user_locks.get(plan.target.credentials.user or "")
        async with self.limit:
            if lock is None:
                return await self.asker.device(plan, None)
            async with lock:
                # Another device's user of the same name has other keys: pysnmp keeps one
                # key set per user name, so this device's goes in just before it is asked.
                self.wire.configure(plan.peers())
                return await self.asker.device(plan, None)


def _conflicting_users(targets: Targets, *, with_sweep: bool = False) -> set[str]:
    """v3 user names given different keys or protocols by different devices (and, with
    `with_sweep`, by the sweep's defaults)."""
    seen: dict[str, set[tuple[Any, ...]]] = {}
    credentials = [t.credentials for t in targets.devices]
    if with_sweep and targets.sweep_settings is not None:
        credentials.append(targets.sweep_settings.credentials)
    for c in credentials:
        if c.version == "3" and c.user is not None:
            seen.setdefault(c.user, set()).add(
                (c.auth_protocol, c.auth_key, c.priv_protocol, c.priv_key)
            )
    return {user for user, keys in seen.items() if len(keys) > 1}
