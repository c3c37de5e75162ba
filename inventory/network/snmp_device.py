"""Asking one device of an SNMP inventory, within its deadline: the opening request, the walk of
the tables it showed present, the well-known communities and the SNMPv3 discovery at the same
time; then what came back (all of it, or what arrived before the deadline) as a
`NetworkDevice`, with `error` saying what is missing and why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.facts.devices import Classification, DeviceSource, NetworkDevice, SnmpAccess
from inventory.network.snmp_facts import (
    entities_of,
    guessable,
    interfaces_of,
    models_of,
    oid_text,
    python_value,
    text_of,
)
from inventory.network.snmp_tables import (
    END_OF_MIB,
    ENTRIES,
    MAX_ROWS,
    OPENING_COLUMNS,
    SYSTEM,
    Column,
    new_columns,
    take,
)
from inventory.network.snmp_wire import Peer, Reply, Wire, reply_error, status_text
from inventory.network.targets import SnmpTarget

Classifier = Callable[..., Classification]

PROBE_TIMEOUT = 1.0
"""Seconds for a well-known community or the v3 discovery (one try each)."""

VARBINDS_PER_REQUEST = 64
"""A GETBULK asks for about this many values (max-repetitions × columns still walked)."""

MAX_REPETITIONS = 16

REQUESTS_PER_DEADLINE = 4
"""A device's deadline: this many requests, each with every retry timing out."""

MAX_DEVICE_SECONDS = 120.0

_UNANSWERED = Classification(
    vendor=None, role="other", confidence=0.0, signals=("no SNMP identity read",), rule=None
)


@dataclass
class Plan:
    """One device's peers: the configured credentials, the well-known communities to try, the
    SNMPv3 discovery, and (sweep) the quick opening request."""

    target: SnmpTarget
    source: DeviceSource
    main: Peer
    wells: list[tuple[str, Peer]]
    v3: Peer | None
    knock: Peer | None = None

    def peers(self) -> list[Peer]:
        found = [self.main, *(p for _, p in self.wells)]
        return [*found, *(p for p in (self.v3, self.knock) if p is not None)]


@dataclass
class Gathered:
    """What one device gave so far: kept when its deadline cuts the asking short."""

    system: dict[str, Any] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    answered: bool = False
    error: str | None = None
    """Why nothing (or not everything) came back."""
    table_errors: list[str] = field(default_factory=list)
    answered_well_known: list[str] = field(default_factory=list)
    v3: bool | None = None
    started: float = 0.0


class DeviceAsker:
    """Asks one device at a time through the run's `Wire` (the run decides how many at once)."""

    def __init__(self, wire: Wire, classify: Classifier) -> None:
        self.wire = wire
        self.classify = classify

    async def device(self, plan: Plan, opened: Gathered | None) -> NetworkDevice:
        target = plan.target
        gathered = opened or Gathered(started=time.monotonic(), columns=new_columns())
        budget = min(
            MAX_DEVICE_SECONDS,
            target.timeout * (target.retries + 1) * REQUESTS_PER_DEADLINE,
        )
        elapsed = time.monotonic() - gathered.started
        work = asyncio.gather(
            self._ask(plan, gathered, opened is not None),
            self._well_known(plan, gathered),
            self._discover_v3(plan, gathered),
        )
        try:
            await asyncio.wait_for(work, max(budget - elapsed, 0.1))
        except TimeoutError:
            # wait_for cancelled the requests; what came back so far stays.
            unfinished = sorted({c.table for c in gathered.columns if not c.done})
            what = f"{', '.join(unfinished)} not complete: " if unfinished else ""
            gathered.table_errors.append(f"{what}the device's deadline of {budget:g} s passed")
        except Exception as exc:
            # The device's boundary: one device's fault (a pysnmp bug, an agent's malformed
            # answer) must not stop the others.
            gathered.error = f"SNMP failed: {type(exc).__name__}: {exc}"
        return self._assemble(plan, gathered)

    async def opening(self, peer: Peer, target: SnmpTarget, gathered: Gathered) -> Reply:
        """The opening request: the system group and the first row of `OPENING_COLUMNS`. A
        table the answer shows absent is not walked at all: most of a sparse device (or an
        answering sweep address) is then this one round trip."""
        wire = self.wire
        columns = gathered.columns
        scalars = list(SYSTEM.values())
        opening = [c for c in columns if c.oid in OPENING_COLUMNS]
        asked = [*scalars, *(c.oid for c in opening)]
        if target.credentials.version == "1":
            reply = await self._v1_next(peer, asked)
        else:
            reply = await wire.bulk(peer, len(scalars), 1, asked)
        if not reply.answered or reply.error is not None:
            gathered.answered = gathered.answered or reply.answered
            gathered.error = reply_error(reply, target, peer.patience)
            return reply
        gathered.answered = True
        if reply.status:
            # Some agents refuse a mixed GETBULK: ask the system group alone, walk afterwards.
            fallback = await wire.get(peer, [(*o, 0) for o in scalars])
            if fallback.error is not None or not fallback.answered:
                gathered.error = reply_error(fallback, target, peer.patience)
                return fallback
            if fallback.status:
                gathered.error = f"the agent refused the system group: {status_text(fallback)}"
                return fallback
            self._system(gathered, fallback.binds, exact=True)
            return fallback
        count = len(scalars)
        self._system(gathered, reply.binds[:count], exact=False)
        probes = reply.binds[count : count + len(opening)]
        take(opening, probes)
        firsts: dict[str, tuple[Column, tuple[tuple[int, ...], Any]]] = {}
        for column, bind in zip(opening, probes, strict=False):
            firsts.setdefault(column.table, (column, bind))
        for first, (oid, value) in firsts.values():
            entry = ENTRIES[first.table]
            if (
                value is END_OF_MIB
                or value.__class__.__name__ == "EndOfMibView"
                or (oid[: len(entry)] != entry)
            ):
                for column in columns:
                    if column.table == first.table:
                        column.done = True
        return reply

    async def _v1_next(self, peer: Peer, oids: list[tuple[int, ...]]) -> Reply:
        """SNMPv1 GETNEXT; a noSuchName (end of the MIB for one varbind) drops that varbind and
        asks again, so the reply has one value per OID (None where the MIB ended)."""
        asked = list(oids)
        while True:
            reply = await self.wire.next(peer, asked)
            if reply.error is not None or not reply.answered or reply.status != 2:
                break
            if not 0 < reply.index <= len(asked):
                break
            del asked[reply.index - 1]
            if not asked:
                return Reply(None, answered=True)
        if reply.status or reply.error is not None or not reply.answered:
            return reply
        by_oid = dict(zip(asked, reply.binds, strict=False))
        binds = tuple(by_oid.get(o, (o, END_OF_MIB)) for o in oids)
        return Reply(None, answered=True, binds=binds)

    def _system(
        self, gathered: Gathered, binds: Sequence[tuple[tuple[int, ...], Any]], *, exact: bool
    ) -> None:
        for (name, oid), (got, value) in zip(SYSTEM.items(), binds, strict=False):
            # GETNEXT of sysDescr returns sysDescr.0 when the agent has it, else what follows.
            if got == (*oid, 0):
                gathered.system[name] = python_value(value)
            elif exact:
                gathered.system[name] = None

    async def _ask(self, plan: Plan, gathered: Gathered, opened: bool) -> None:
        target = plan.target
        if not opened:
            reply = await self.opening(plan.main, target, gathered)
            if gathered.error is not None or not reply.answered:
                return
        await self._walk(plan.main, target, gathered)

    async def _walk(self, peer: Peer, target: SnmpTarget, gathered: Gathered) -> None:
        """Walk every column not finished, together, until each has left its table."""
        repetitions_cap = MAX_REPETITIONS
        while True:
            active = [c for c in gathered.columns if not c.done]
            if not active:
                return
            oids = [c.last for c in active]
            if target.credentials.version == "1":
                reply = await self._v1_next(peer, oids)
            else:
                repetitions = max(1, min(repetitions_cap, VARBINDS_PER_REQUEST // len(active)))
                reply = await self.wire.bulk(peer, 0, repetitions, oids)
                if reply.answered and reply.status == 1 and repetitions > 1:  # tooBig
                    repetitions_cap = max(1, repetitions // 2)
                    continue
            if reply.error is not None or not reply.answered or reply.status:
                why = (
                    status_text(reply)
                    if reply.answered and reply.error is None
                    else reply_error(reply, target, peer.patience, mid_walk=True)
                )
                tables = sorted({c.table for c in active})
                gathered.table_errors.append(f"{', '.join(tables)} not complete: {why}")
                for column in active:
                    column.done = True
                return
            take(active, reply.binds)

    async def _well_known(self, plan: Plan, gathered: Gathered) -> None:
        if not plan.wells:
            return
        probe = (*SYSTEM["sys_object_id"], 0)
        replies = await asyncio.gather(*(self.wire.get(p, [probe]) for _, p in plan.wells))
        for (word, _), reply in zip(plan.wells, replies, strict=True):
            if reply.answered and reply.error is None:
                gathered.answered_well_known.append(word)

    async def _discover_v3(self, plan: Plan, gathered: Gathered) -> None:
        if plan.v3 is None:
            return
        target = plan.target
        if self.wire.knows_engine(target.address, target.port):
            gathered.v3 = True  # this agent (address and port) answered a discovery already
            return
        reply = await self.wire.get(plan.v3, [(*SYSTEM["sys_object_id"], 0)])
        gathered.v3 = reply.answered or self.wire.knows_engine(target.address, target.port)

    # -- the facts -----------------------------------------------------------------------------

    def _assemble(self, plan: Plan, gathered: Gathered) -> NetworkDevice:
        target = plan.target
        credentials = target.credentials
        system = gathered.system
        answered = gathered.answered or bool(gathered.answered_well_known)
        v3 = gathered.v3
        if credentials.version == "3":
            v3 = True if gathered.answered else None
        elif v3 is False and not answered:
            v3 = None  # silence everywhere says nothing about SNMPv3
        access = SnmpAccess(
            version=credentials.version,
            security_level=credentials.security_level,
            auth_protocol=credentials.auth_protocol,
            priv_protocol=credentials.cipher,
            community_guessable=(
                guessable(credentials.community.reveal())
                if credentials.community is not None
                else None
            ),
            answered_well_known=tuple(gathered.answered_well_known),
            well_known_tried=tuple(word for word, _ in plan.wells),
            v3_supported=v3,
        )
        entities = entities_of(gathered.columns)
        interfaces = interfaces_of(gathered.columns)
        error = gathered.error
        if error is None and not gathered.answered:
            budget = min(
                MAX_DEVICE_SECONDS, target.timeout * (target.retries + 1) * REQUESTS_PER_DEADLINE
            )
            error = f"timeout: no answer within the device's deadline of {budget:g} s"
        elif error is None:
            problems = list(gathered.table_errors)
            problems += [
                f"{c.table}: stopped at {MAX_ROWS} rows" for c in gathered.columns if c.cut
            ]
            problems += [
                f"{c.table}: the agent returned OIDs out of order after {oid_text(c.last)}"
                for c in gathered.columns
                if c.disorder
            ]
            if problems:
                error = "partial answer: " + "; ".join(dict.fromkeys(problems))
        elif system:
            error = f"partial answer: {error}"
        oid = system.get("sys_object_id")
        sys_object_id = oid_text(oid) if isinstance(oid, tuple) else str(oid or "")
        sys_descr = text_of(system.get("sys_descr"))
        sys_name = text_of(system.get("sys_name"))
        services = system.get("sys_services")
        uptime = system.get("sys_uptime")
        if system:
            classification = self.classify(
                sys_object_id,
                sys_descr,
                sys_name=sys_name,
                models=models_of(entities),
                sys_services=services if isinstance(services, int) else None,
            )
        else:
            classification = _UNANSWERED
        return NetworkDevice(
            address=target.address,
            port=target.port,
            source=plan.source,
            access=access,
            classification=classification,
            sys_descr=sys_descr,
            sys_object_id=sys_object_id,
            sys_name=sys_name,
            sys_location=text_of(system.get("sys_location")),
            sys_contact=text_of(system.get("sys_contact")),
            sys_uptime_seconds=uptime / 100 if isinstance(uptime, int) else None,
            sys_services=services if isinstance(services, int) else None,
            entities=entities,
            interfaces=interfaces,
            declared_borders=target.borders,
            error=error,
            seconds=round(time.monotonic() - gathered.started, 3),
        )
