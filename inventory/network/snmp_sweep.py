"""The sweep of an SNMP inventory run: every address of the targets file's CIDRs (but the listed
devices) knocked at with one opening request from a socket of its own, in batches whose peers are
configured before they are sent; only the addresses that answered are asked further, and only
they become devices."""

from __future__ import annotations

import asyncio
import time

from checks.facts.devices import NetworkDevice
from inventory.network.snmp_device import PROBE_TIMEOUT, DeviceAsker, Gathered, Plan
from inventory.network.snmp_tables import new_columns
from inventory.network.snmp_wire import Wire
from inventory.network.targets import SnmpTarget, Targets

SWEEP_TIMEOUT = 1.0
"""At most this long for a swept address to answer (one try)."""

SWEEP_BATCH = 256
"""Sweep addresses configured (and probed) at a time."""


class Sweep:
    """Finds the devices of the sweep CIDRs, asking at most as many at once as `limit` allows
    (shared with the listed devices)."""

    def __init__(
        self, targets: Targets, wire: Wire, asker: DeviceAsker, limit: asyncio.Semaphore
    ) -> None:
        self.targets = targets
        self.wire = wire
        self.asker = asker
        self.limit = limit

    async def run(self) -> list[NetworkDevice]:
        targets = self.targets
        settings = targets.sweep_settings
        if settings is None:
            return []
        listed = {(t.address, t.port) for t in targets.devices}
        addresses = [a for a in targets.sweep_addresses() if (a, settings.port) not in listed]
        found: list[asyncio.Task[NetworkDevice]] = []
        for start in range(0, len(addresses), SWEEP_BATCH):
            batch = addresses[start : start + SWEEP_BATCH]
            plans = [await self._plan(settings.target(a)) for a in batch]
            self.wire.configure(plan.knock for plan in plans if plan.knock is not None)
            opened = await asyncio.gather(*(self._knock(plan) for plan in plans))
            answered = [(p, g) for p, g in zip(plans, opened, strict=True) if g is not None]
            # Only the addresses that answered get the peers the rest of the asking needs.
            self.wire.configure(
                peer for plan, _ in answered for peer in plan.peers() if peer is not plan.knock
            )
            for plan, gathered in answered:
                found.append(asyncio.create_task(self._swept(plan, gathered)))
        return list(await asyncio.gather(*found))

    async def _plan(self, target: SnmpTarget) -> Plan:
        wire = self.wire
        auth = wire.auth(target.credentials)
        quick = await wire.peer(
            target.address, target.port, auth, min(SWEEP_TIMEOUT, target.timeout), 0, knock=True
        )
        main = await wire.peer(target.address, target.port, auth, target.timeout, target.retries)
        v3 = None
        if target.credentials.version != "3":
            v3 = await wire.peer(
                target.address, target.port, wire.nobody(),
                min(PROBE_TIMEOUT, target.timeout), 0,
            )  # fmt: skip
        return Plan(target, "sweep", main, [], v3, knock=quick)

    async def _knock(self, plan: Plan) -> Gathered | None:
        """The opening request to a swept address; None: nobody answered."""
        if plan.knock is None:
            return None
        async with self.limit:
            gathered = Gathered(started=time.monotonic(), columns=new_columns())
            reply = await self.asker.opening(plan.knock, plan.target, gathered)
            return gathered if reply.answered else None

    async def _swept(self, plan: Plan, gathered: Gathered) -> NetworkDevice:
        async with self.limit:
            return await self.asker.device(plan, gathered)
