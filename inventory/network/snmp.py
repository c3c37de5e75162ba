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
  communities share one row per address (`_Wire`).
- a swept address nobody holds on a directly attached network keeps its datagram in the kernel
  while ARP fails; sweep knocks therefore leave from a socket of their own, and no request is
  handed to a socket that cannot take it (`_Wire._drain`).
- the well-known communities are tried only on devices listed in the targets file (never on
  swept addresses: guessing credentials is for devices the operator named), each once with a
  short timeout; whether a device speaks SNMPv3 is asked with an engine discovery under a user
  that does not exist (an SNMPv3 agent answers with a report; no credential is guessed).

Only addresses of the targets file and of its sweep CIDRs are ever sent a packet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.facts.devices import (
    Classification,
    DeviceSource,
    Entity,
    Interface,
    NetworkDevice,
    SnmpAccess,
)
from inventory.network.targets import Credentials, SnmpTarget, Targets

Classifier = Callable[..., Classification]

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

WELL_KNOWN_COMMUNITIES = (
    "public",
    "private",
    "community",
    "manager",
    "admin",
    "snmp",
    "monitor",
    "cisco",
    "default",
    "secret",
)
"""Communities tried on listed devices: factory defaults and the words guessed first."""
MIN_COMMUNITY_LENGTH = 8
"""A configured community shorter than this is guessable."""
PROBE_USER = "medsec-nobody"
"""The SNMPv3 user of the engine discovery: no agent should know it."""
PROBE_TIMEOUT = 1.0
"""Seconds for a well-known community or the v3 discovery (one try each)."""
SWEEP_TIMEOUT = 1.0
"""At most this long for a swept address to answer (one try)."""
MAX_ROWS = 2000
"""Rows read per table at most; the error says when a table was cut."""
VARBINDS_PER_REQUEST = 64
"""A GETBULK asks for about this many values (max-repetitions × columns still walked)."""
MAX_REPETITIONS = 16
REQUESTS_PER_DEADLINE = 4
"""A device's deadline: this many requests, each with every retry timing out."""
MAX_DEVICE_SECONDS = 120.0
SWEEP_BATCH = 256
"""Sweep addresses configured (and probed) at a time."""
SEND_BUFFER = 4 << 20
"""Bytes asked for each socket's send buffer (granted as asked only to root: SO_SNDBUFFORCE;
others get at most the kernel's net.core.wmem_max)."""
MAX_SEND_WAIT = 10.0
"""Seconds a request waits at most for its socket to take datagrams again."""

_UNANSWERED = Classification(
    vendor=None, role="other", confidence=0.0, signals=("no SNMP identity read",), rule=None
)
END_OF_MIB = object()
"""Stands in for endOfMibView where SNMPv1 said noSuchName."""


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


# --- values -----------------------------------------------------------------------------------


def decode_text(raw: bytes) -> str:
    """An OCTET STRING as text: NUL padding dropped (fixed-size fields), UTF-8, else GB18030
    (Chinese devices configured from Windows consoles), else hex when the bytes are binary."""
    raw = raw.rstrip(b"\x00")
    for encoding in ("utf-8", "gb18030"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text.isprintable() or all(c.isprintable() or c in "\t\r\n" for c in text):
            return text.strip()
        break
    return "0x" + raw.hex()


def _value(value: Any) -> str | int | tuple[int, ...] | None:
    """A varbind value as Python: text, integer, OID tuple; None for no value."""
    kind = value.__class__.__name__
    if kind in {"NoSuchObject", "NoSuchInstance", "EndOfMibView", "Null", "UnSpecified"}:
        return None
    if kind == "IpAddress":
        return str(ipaddress.IPv4Address(bytes(value.asOctets())))
    if kind in {"OctetString", "Opaque", "Bits"}:
        return decode_text(bytes(value.asOctets()))
    if kind in {"ObjectIdentifier", "ObjectName"}:
        return tuple(value.asTuple())
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value.prettyPrint())


def _oid_text(oid: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in oid)


def guessable(community: str) -> bool:
    """A community anyone would try first, or too short to resist a guess."""
    return community.lower() in WELL_KNOWN_COMMUNITIES or len(community) < MIN_COMMUNITY_LENGTH


# --- talking to the engine --------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    error: str | None
    """None: the agent answered (maybe with an error status)."""
    answered: bool
    """The agent sent something back (an SNMPv3 report counts)."""
    status: int = 0
    index: int = 0
    binds: tuple[tuple[tuple[int, ...], Any], ...] = ()
    indication: str | None = None
    """pysnmp's error indication, by class name (RequestTimedOut, WrongDigest, ...)."""


_REPORTS = {
    "UnknownUserName": "SNMPv3 authentication failed: the agent does not know user {user!r}",
    "WrongDigest": "SNMPv3 authentication failed: wrong digest (wrong auth key or protocol "
    "for user {user!r})",
    "UnknownSecurityName": "SNMPv3 authentication failed: unknown security name {user!r}",
    "UnsupportedSecurityLevel": "SNMPv3 authentication failed: the agent refuses security "
    "level {level} for user {user!r}",
    "AuthenticationFailure": "SNMPv3 authentication failed for user {user!r}",
    "AuthenticationError": "SNMPv3 authentication failed for user {user!r}",
    "DecryptionError": "SNMPv3 decryption failed (wrong privacy key or protocol for user {user!r})",
    "NotInTimeWindow": "SNMPv3: the request fell outside the agent's time window",
    "UnknownEngineID": "SNMPv3: the agent did not accept the discovered engine ID",
}
"""pysnmp error indications that mean the agent answered (with a report), in words."""


class _NoMibCompiler:
    """Stands in for pysmi's MIB compiler: every OID here is numeric, so no MIB is ever
    compiled. pysnmp would otherwise build pysmi's parser on the first request (about half a
    second) and may compile MIBs found on the host into ~/.pysnmp."""

    def compile(self, *names: str, **options: Any) -> dict[str, str]:
        return {}


class _Wire:
    """The one SnmpEngine of a run, with each peer configured before it is used.

    Communities: pysnmp keeps one target-address row per (address, security name) and one
    community row per community. Every community of a version shares one security name here
    and is told apart by a local context name (never sent for SNMPv1/v2c), so a device costs
    one target-address row whatever the number of communities tried on it.
    """

    def __init__(self) -> None:
        from pysnmp.hlapi.v3arch import asyncio as hlapi  # type: ignore[import-untyped]
        from pysnmp.hlapi.v3arch.asyncio.lcd import (  # type: ignore[import-untyped]
            CommandGeneratorLcdConfigurator,
        )
        from pysnmp.hlapi.varbinds import (  # type: ignore[import-untyped]
            MibViewControllerManager,
        )

        self.hlapi = hlapi
        self.engine = hlapi.SnmpEngine()
        self.lcd = CommandGeneratorLcdConfigurator()
        self.context = hlapi.ContextData()
        view = MibViewControllerManager.get_mib_view_controller(self.engine.cache)
        view.mibBuilder.set_mib_compiler(_NoMibCompiler(), "")
        self.objects: dict[tuple[int, ...], Any] = {}
        self.communities: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.tuned: set[int] = set()
        from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]

        class KnockTarget(hlapi.UdpTransportTarget):  # type: ignore[misc]
            """UDP from a second socket (pysnmp keeps one socket per transport domain)."""

            TRANSPORT_DOMAIN = (*udp.DOMAIN_NAME, 1)

        self.knock_target = KnockTarget
        self.auth_protocols = {
            "md5": hlapi.USM_AUTH_HMAC96_MD5,
            "sha": hlapi.USM_AUTH_HMAC96_SHA,
            "sha224": hlapi.USM_AUTH_HMAC128_SHA224,
            "sha256": hlapi.USM_AUTH_HMAC192_SHA256,
            "sha384": hlapi.USM_AUTH_HMAC256_SHA384,
            "sha512": hlapi.USM_AUTH_HMAC384_SHA512,
        }
        self.priv_protocols = {
            "des": hlapi.USM_PRIV_CBC56_DES,
            "3des": hlapi.USM_PRIV_CBC168_3DES,
            "aes": hlapi.USM_PRIV_CFB128_AES,
            "aes192": hlapi.USM_PRIV_CFB192_AES_BLUMENTHAL,
            "aes256": hlapi.USM_PRIV_CFB256_AES_BLUMENTHAL,
            "aes192c": hlapi.USM_PRIV_CFB192_AES,
            "aes256c": hlapi.USM_PRIV_CFB256_AES,
        }
        """`targets.PRIV_PROTOCOLS`: pysnmp's plain AES-192/256 constants stretch keys the
        Cisco (Reeder) way, net-snmp's AES-192/256 the Blumenthal way."""

    def community(self, text: str, version: str) -> tuple[Any, Any]:
        """(auth, context) for a community: see the class doc."""
        key = (text, version)
        found = self.communities.get(key)
        if found is None:
            hlapi = self.hlapi
            name = f"c{len(self.communities)}"
            auth = hlapi.CommunityData(
                f"medsec-{name}",
                text,
                mpModel=0 if version == "1" else 1,
                contextName=name.encode(),
                securityName=f"medsec-v{version}",
            )
            found = self.communities[key] = (auth, hlapi.ContextData(contextName=name.encode()))
        return found

    def auth(self, credentials: Credentials) -> tuple[Any, Any]:
        """(auth, context) for a device's credentials."""
        if credentials.version != "3":
            if credentials.community is None:
                raise ValueError("SNMPv1/v2c credentials without a community")
            return self.community(credentials.community.reveal(), credentials.version)
        kwargs: dict[str, Any] = {}
        if credentials.auth_key is not None and credentials.auth_protocol is not None:
            kwargs["authKey"] = credentials.auth_key.reveal()
            kwargs["authProtocol"] = self.auth_protocols[credentials.auth_protocol]
        if credentials.priv_key is not None and credentials.priv_protocol is not None:
            kwargs["privKey"] = credentials.priv_key.reveal()
            kwargs["privProtocol"] = self.priv_protocols[credentials.priv_protocol]
        return self.hlapi.UsmUserData(credentials.user, **kwargs), self.context

    def nobody(self) -> tuple[Any, Any]:
        """(auth, context) of the SNMPv3 discovery: a user no agent knows, no keys."""
        return self.hlapi.UsmUserData(PROBE_USER), self.context

    async def peer(
        self,
        address: str,
        port: int,
        auth: tuple[Any, Any],
        timeout: float,
        retries: int,
        *,
        knock: bool = False,
    ) -> _Peer:
        """A configured-to-be peer; `knock`: a sweep's opening request, sent from a socket of
        its own (see `_drain`)."""
        kind = self.knock_target if knock else self.hlapi.UdpTransportTarget
        transport = await kind.create((address, port), timeout=timeout, retries=retries)
        return _Peer(auth[0], auth[1], transport, timeout * (retries + 1))

    async def _drain(self, peer: _Peer) -> None:
        """Wait until the peer's socket takes datagrams again. A datagram to an on-link
        address nobody holds waits in the kernel for ARP (about 3 s) and counts against the
        socket's send buffer meanwhile: a sweep of a directly attached range fills it, and
        asyncio then holds later requests back while pysnmp's clock for them already runs. So
        no request is handed over before the socket is writable (its clock starts when it
        leaves), sweep knocks use a socket of their own, and each socket gets a large buffer
        where the kernel allows it."""
        dispatcher = self.engine.transport_dispatcher
        carrier = (
            dispatcher.get_transport(peer.transport.TRANSPORT_DOMAIN)
            if dispatcher is not None
            else None
        )
        datagrams = getattr(carrier, "transport", None)
        if datagrams is None:
            return
        if id(datagrams) not in self.tuned:
            self.tuned.add(id(datagrams))
            _enlarge_send_buffer(datagrams.get_extra_info("socket"))
        waited = 0.0
        while datagrams.get_write_buffer_size() and waited < MAX_SEND_WAIT:
            await asyncio.sleep(0.01)
            waited += 0.01

    def configure(self, peers: Iterable[_Peer]) -> None:
        """Write the peers into the engine's tables now, before traffic (see the module doc)."""
        for peer in peers:
            self.lcd.configure(self.engine, peer.auth, peer.transport, peer.context.contextName)

    def knows_engine(self, address: str, port: int) -> bool:
        """Whether an SNMPv3 engine discovery of this address got its answer (a report with
        the agent's engine ID), even if the request after it timed out."""
        from pysnmp.carrier.asyncio.dgram import udp

        for model in self.engine.message_processing_subsystems.values():
            info = getattr(model, "get_peer_engine_info", None)
            if info is not None and info(udp.DOMAIN_NAME, (address, port))[0] is not None:
                return True
        return False

    def _object(self, oid: tuple[int, ...]) -> Any:
        """A request varbind; the fixed ones are resolved once and reused."""
        cached = self.objects.get(oid)
        if cached is not None:
            return cached
        hlapi = self.hlapi
        return hlapi.ObjectType(hlapi.ObjectIdentity(oid))

    def fixed(self, oids: Iterable[tuple[int, ...]]) -> None:
        for oid in oids:
            if oid not in self.objects:
                hlapi = self.hlapi
                self.objects[oid] = hlapi.ObjectType(hlapi.ObjectIdentity(oid))

    async def get(self, peer: _Peer, oids: Sequence[tuple[int, ...]]) -> _Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.get_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def next(self, peer: _Peer, oids: Sequence[tuple[int, ...]]) -> _Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.next_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def bulk(
        self, peer: _Peer, non_repeaters: int, repetitions: int, oids: Sequence[tuple[int, ...]]
    ) -> _Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.bulk_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                non_repeaters, repetitions, *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def _send(self, peer: _Peer, request: Callable[[], Any]) -> _Reply:
        from pysnmp.error import PySnmpError  # type: ignore[import-untyped]

        await self._drain(peer)
        try:
            indication, status, index, binds = await request()
        except (PySnmpError, OSError, ValueError) as exc:
            return _Reply(f"SNMP request failed: {type(exc).__name__}: {exc}", answered=False)
        if indication:
            kind = type(indication).__name__
            if kind == "RequestTimedOut":
                return _Reply(None, answered=False, indication=kind)
            return _Reply(str(indication), answered=kind in _REPORTS, indication=kind)
        return _Reply(
            None,
            answered=True,
            status=int(status or 0),
            index=int(index or 0),
            binds=tuple((tuple(name.asTuple()), value) for name, value in binds),
        )

    def close(self) -> None:
        self.engine.close_dispatcher()


@dataclass(frozen=True)
class _Peer:
    auth: Any
    context: Any
    transport: Any
    patience: float
    """Seconds one request may take with every retry: timeout × (retries + 1)."""


def _enlarge_send_buffer(sock: Any) -> None:
    import socket

    if sock is None:
        return
    for option in (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SEND_BUFFER)
        except OSError:
            continue
        return


def _silence(peer_patience: float, target: SnmpTarget, *, mid_walk: bool = False) -> str:
    tries = target.retries + 1
    waited = (
        f"timeout: no answer after {peer_patience:g} s ({tries} tr{'y' if tries == 1 else 'ies'} "
        f"of {target.timeout:g} s)"
    )
    if mid_walk:
        return waited  # it answered these credentials before: nothing to guess about them
    why = (
        "a wrong privacy key (the agent drops what it cannot decrypt)"
        if target.credentials.version == "3"
        else "a wrong community (an agent ignores a community it does not know)"
    )
    return f"{waited}: the device is down or filtered, or {why}"


def _reply_error(
    reply: _Reply, target: SnmpTarget, patience: float, *, mid_walk: bool = False
) -> str:
    if reply.indication == "RequestTimedOut":
        return _silence(patience, target, mid_walk=mid_walk)
    if reply.indication in _REPORTS:
        credentials = target.credentials
        return _REPORTS[reply.indication].format(
            user=credentials.user, level=credentials.security_level
        )
    return reply.error or "no answer"


# --- walking ----------------------------------------------------------------------------------


@dataclass
class _Column:
    oid: tuple[int, ...]
    table: str
    last: tuple[int, ...]
    rows: dict[tuple[int, ...], Any] = field(default_factory=dict)
    done: bool = False
    cut: bool = False
    """Stopped at MAX_ROWS."""
    disorder: bool = False
    """The agent returned an OID not after the last one."""


@dataclass
class _Gathered:
    """What one device gave so far: kept when its deadline cuts the asking short."""

    system: dict[str, Any] = field(default_factory=dict)
    columns: list[_Column] = field(default_factory=list)
    answered: bool = False
    error: str | None = None
    """Why nothing (or not everything) came back."""
    table_errors: list[str] = field(default_factory=list)
    answered_well_known: list[str] = field(default_factory=list)
    v3: bool | None = None
    started: float = 0.0


def _columns() -> list[_Column]:
    return [_Column(oid, table, oid) for table, oids in TABLES.items() for oid in oids]


def _take(columns: Sequence[_Column], binds: Sequence[tuple[tuple[int, ...], Any]]) -> None:
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


class _Run:
    def __init__(self, targets: Targets, classify: Classifier) -> None:
        self.targets = targets
        self.classify = classify
        self.wire = _Wire()
        self.limit = asyncio.Semaphore(targets.concurrency)
        self.wire.fixed([*(o for o in SYSTEM.values()), *((*o, 0) for o in SYSTEM.values())])
        self.wire.fixed(c.oid for c in _columns())
        self.user_locks: dict[str, asyncio.Lock] = {}

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
            return (*found, *await self._sweep())
        found, discovered = await asyncio.gather(listed, self._sweep())
        return (*found, *discovered)

    # -- listed devices ------------------------------------------------------------------------

    async def _plan(self, target: SnmpTarget) -> _Plan:
        wire = self.wire
        main = await wire.peer(
            target.address, target.port, wire.auth(target.credentials), target.timeout,
            target.retries,
        )  # fmt: skip
        probe_timeout = min(PROBE_TIMEOUT, target.timeout)
        wells: list[tuple[str, _Peer]] = []
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
        return _Plan(target, "target", main, wells, v3)

    async def _listed(self, plan: _Plan) -> NetworkDevice:
        lock = self.user_locks.get(plan.target.credentials.user or "")
        async with self.limit:
            if lock is None:
                return await self._device(plan, None)
            async with lock:
                # Another device's user of the same name has other keys: pysnmp keeps one
                # key set per user name, so this device's goes in just before it is asked.
                self.wire.configure(plan.peers())
                return await self._device(plan, None)

    # -- sweep ---------------------------------------------------------------------------------

    async def _sweep(self) -> list[NetworkDevice]:
        targets = self.targets
        settings = targets.sweep_settings
        if settings is None:
            return []
        listed = {(t.address, t.port) for t in targets.devices}
        addresses = [a for a in targets.sweep_addresses() if (a, settings.port) not in listed]
        found: list[asyncio.Task[NetworkDevice]] = []
        for start in range(0, len(addresses), SWEEP_BATCH):
            batch = addresses[start : start + SWEEP_BATCH]
            plans = [await self._sweep_plan(settings.target(a)) for a in batch]
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

    async def _sweep_plan(self, target: SnmpTarget) -> _Plan:
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
        return _Plan(target, "sweep", main, [], v3, knock=quick)

    async def _knock(self, plan: _Plan) -> _Gathered | None:
        """The opening request to a swept address; None: nobody answered."""
        if plan.knock is None:
            return None
        async with self.limit:
            gathered = _Gathered(started=time.monotonic(), columns=_columns())
            reply = await self._open(plan.knock, plan.target, gathered)
            return gathered if reply.answered else None

    async def _swept(self, plan: _Plan, gathered: _Gathered) -> NetworkDevice:
        async with self.limit:
            return await self._device(plan, gathered)

    # -- one device ----------------------------------------------------------------------------

    async def _device(self, plan: _Plan, opened: _Gathered | None) -> NetworkDevice:
        target = plan.target
        gathered = opened or _Gathered(started=time.monotonic(), columns=_columns())
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

    async def _open(self, peer: _Peer, target: SnmpTarget, gathered: _Gathered) -> _Reply:
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
            gathered.error = _reply_error(reply, target, peer.patience)
            return reply
        gathered.answered = True
        if reply.status:
            # Some agents refuse a mixed GETBULK: ask the system group alone, walk afterwards.
            fallback = await wire.get(peer, [(*o, 0) for o in scalars])
            if fallback.error is not None or not fallback.answered:
                gathered.error = _reply_error(fallback, target, peer.patience)
                return fallback
            if fallback.status:
                gathered.error = f"the agent refused the system group: {_status(fallback)}"
                return fallback
            self._system(gathered, fallback.binds, exact=True)
            return fallback
        count = len(scalars)
        self._system(gathered, reply.binds[:count], exact=False)
        probes = reply.binds[count : count + len(opening)]
        _take(opening, probes)
        firsts: dict[str, tuple[_Column, tuple[tuple[int, ...], Any]]] = {}
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

    async def _v1_next(self, peer: _Peer, oids: list[tuple[int, ...]]) -> _Reply:
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
                return _Reply(None, answered=True)
        if reply.status or reply.error is not None or not reply.answered:
            return reply
        by_oid = dict(zip(asked, reply.binds, strict=False))
        binds = tuple(by_oid.get(o, (o, END_OF_MIB)) for o in oids)
        return _Reply(None, answered=True, binds=binds)

    def _system(
        self, gathered: _Gathered, binds: Sequence[tuple[tuple[int, ...], Any]], *, exact: bool
    ) -> None:
        for (name, oid), (got, value) in zip(SYSTEM.items(), binds, strict=False):
            # GETNEXT of sysDescr returns sysDescr.0 when the agent has it, else what follows.
            if got == (*oid, 0):
                gathered.system[name] = _value(value)
            elif exact:
                gathered.system[name] = None

    async def _ask(self, plan: _Plan, gathered: _Gathered, opened: bool) -> None:
        target = plan.target
        if not opened:
            reply = await self._open(plan.main, target, gathered)
            if gathered.error is not None or not reply.answered:
                return
        await self._walk(plan.main, target, gathered)

    async def _walk(self, peer: _Peer, target: SnmpTarget, gathered: _Gathered) -> None:
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
                    _status(reply)
                    if reply.answered and reply.error is None
                    else _reply_error(reply, target, peer.patience, mid_walk=True)
                )
                tables = sorted({c.table for c in active})
                gathered.table_errors.append(f"{', '.join(tables)} not complete: {why}")
                for column in active:
                    column.done = True
                return
            _take(active, reply.binds)

    async def _well_known(self, plan: _Plan, gathered: _Gathered) -> None:
        if not plan.wells:
            return
        probe = (*SYSTEM["sys_object_id"], 0)
        replies = await asyncio.gather(*(self.wire.get(p, [probe]) for _, p in plan.wells))
        for (word, _), reply in zip(plan.wells, replies, strict=True):
            if reply.answered and reply.error is None:
                gathered.answered_well_known.append(word)

    async def _discover_v3(self, plan: _Plan, gathered: _Gathered) -> None:
        if plan.v3 is None:
            return
        target = plan.target
        if self.wire.knows_engine(target.address, target.port):
            gathered.v3 = True  # this agent (address and port) answered a discovery already
            return
        reply = await self.wire.get(plan.v3, [(*SYSTEM["sys_object_id"], 0)])
        gathered.v3 = reply.answered or self.wire.knows_engine(target.address, target.port)

    # -- the facts -----------------------------------------------------------------------------

    def _assemble(self, plan: _Plan, gathered: _Gathered) -> NetworkDevice:
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
        entities = _entities(gathered.columns)
        interfaces = _interfaces(gathered.columns)
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
                f"{c.table}: the agent returned OIDs out of order after {_oid_text(c.last)}"
                for c in gathered.columns
                if c.disorder
            ]
            if problems:
                error = "partial answer: " + "; ".join(dict.fromkeys(problems))
        elif system:
            error = f"partial answer: {error}"
        oid = system.get("sys_object_id")
        sys_object_id = _oid_text(oid) if isinstance(oid, tuple) else str(oid or "")
        sys_descr = _text(system.get("sys_descr"))
        sys_name = _text(system.get("sys_name"))
        services = system.get("sys_services")
        uptime = system.get("sys_uptime")
        if system:
            classification = self.classify(
                sys_object_id,
                sys_descr,
                sys_name=sys_name,
                models=_models(entities),
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
            sys_location=_text(system.get("sys_location")),
            sys_contact=_text(system.get("sys_contact")),
            sys_uptime_seconds=uptime / 100 if isinstance(uptime, int) else None,
            sys_services=services if isinstance(services, int) else None,
            entities=entities,
            interfaces=interfaces,
            declared_borders=target.borders,
            error=error,
            seconds=round(time.monotonic() - gathered.started, 3),
        )


@dataclass
class _Plan:
    """One device's peers: the configured credentials, the well-known communities to try, the
    SNMPv3 discovery, and (sweep) the quick opening request."""

    target: SnmpTarget
    source: DeviceSource
    main: _Peer
    wells: list[tuple[str, _Peer]]
    v3: _Peer | None
    knock: _Peer | None = None

    def peers(self) -> list[_Peer]:
        found = [self.main, *(p for _, p in self.wells)]
        return [*found, *(p for p in (self.v3, self.knock) if p is not None)]


def _status(reply: _Reply) -> str:
    names = {
        1: "tooBig",
        2: "noSuchName",
        3: "badValue",
        4: "readOnly",
        5: "genErr",
        6: "noAccess",
        16: "authorizationError",
    }
    return f"error status {names.get(reply.status, reply.status)} at varbind {reply.index}"


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


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return _oid_text(value)
    return str(value)


def _column(columns: Sequence[_Column], oid: tuple[int, ...]) -> dict[tuple[int, ...], Any]:
    for column in columns:
        if column.oid == oid:
            return column.rows
    return {}


def _entities(columns: Sequence[_Column]) -> tuple[Entity, ...]:
    values: dict[int, dict[str, Any]] = {}
    for number, attribute in ENTITY_COLUMNS.items():
        for index, raw in _column(columns, (*ENT_PHYSICAL_ENTRY, number)).items():
            if len(index) == 1:
                values.setdefault(index[0], {})[attribute] = _value(raw)
    entities = []
    for number in sorted(values):
        row = values[number]
        kind = row.get("physical_class")
        entities.append(
            Entity(
                index=number,
                physical_class=PHYSICAL_CLASSES.get(kind, str(kind))
                if isinstance(kind, int)
                else "",
                **{
                    attribute: _text(row.get(attribute))
                    for attribute in ENTITY_COLUMNS.values()
                    if attribute != "physical_class"
                },
            )
        )
    return tuple(entities)


def _interfaces(columns: Sequence[_Column]) -> tuple[Interface, ...]:
    descr = {i[0]: _text(_value(v)) for i, v in _column(columns, IF_DESCR).items() if len(i) == 1}
    names = {i[0]: _text(_value(v)) for i, v in _column(columns, IF_NAME).items() if len(i) == 1}
    masks = {i: _value(v) for i, v in _column(columns, IP_AD_ENT_NET_MASK).items() if len(i) == 4}
    addresses: dict[int, list[str]] = {}
    for index, raw in _column(columns, IP_AD_ENT_IF_INDEX).items():
        if_index = _value(raw)
        if len(index) != 4 or not isinstance(if_index, int):
            continue
        address = ".".join(str(n) for n in index)
        addresses.setdefault(if_index, []).append(f"{address}/{_prefix(masks.get(index))}")
    interfaces = []
    for number in sorted({*descr, *names, *addresses}):
        interfaces.append(
            Interface(
                index=number,
                name=names.get(number) or descr.get(number, ""),
                description=descr.get(number, ""),
                addresses=tuple(addresses.get(number, ())),
            )
        )
    return tuple(interfaces)


def _prefix(mask: Any) -> int:
    """The prefix length of a dotted netmask (its set bits, for a non-contiguous one)."""
    if not isinstance(mask, str):
        return 32
    try:
        return bin(int(ipaddress.IPv4Address(mask))).count("1")
    except ValueError:
        return 32


def _models(entities: Sequence[Entity]) -> tuple[str, ...]:
    """Model names, descriptions and makers of the chassis first, then the other entities."""
    ordered = [e for e in entities if e.physical_class == "chassis"]
    ordered += [e for e in entities if e.physical_class != "chassis"]
    seen: dict[str, None] = {}
    for entity in ordered:
        for value in (entity.model, entity.description, entity.manufacturer):
            if value:
                seen.setdefault(value, None)
        if len(seen) >= 16:
            break
    return tuple(seen)[:16]
