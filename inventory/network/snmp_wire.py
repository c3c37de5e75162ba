"""The one pysnmp `SnmpEngine` of an SNMP inventory run: the credentials it speaks with (the
configured ones, the well-known communities, the SNMPv3 discovery's unknown user), each peer
written into its tables before traffic, requests sent only to a socket that can take them, and
an answer (or its absence) put in words for a device's `error`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from inventory.network.targets import Credentials, SnmpTarget

PROBE_USER = "medsec-nobody"
"""The SNMPv3 user of the engine discovery: no agent should know it."""

SEND_BUFFER = 4 << 20
"""Bytes asked for each socket's send buffer (granted as asked only to root: SO_SNDBUFFORCE;
others get at most the kernel's net.core.wmem_max)."""

MAX_SEND_WAIT = 10.0
"""Seconds a request waits at most for its socket to take datagrams again."""


@dataclass(frozen=True)
class Reply:
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


class Wire:
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
    ) -> Peer:
        """A configured-to-be peer; `knock`: a sweep's opening request, sent from a socket of
        its own (see `_drain`)."""
        kind = self.knock_target if knock else self.hlapi.UdpTransportTarget
        transport = await kind.create((address, port), timeout=timeout, retries=retries)
        return Peer(auth[0], auth[1], transport, timeout * (retries + 1))

    async def _drain(self, peer: Peer) -> None:
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

    def configure(self, peers: Iterable[Peer]) -> None:
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

    async def get(self, peer: Peer, oids: Sequence[tuple[int, ...]]) -> Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.get_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def next(self, peer: Peer, oids: Sequence[tuple[int, ...]]) -> Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.next_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def bulk(
        self, peer: Peer, non_repeaters: int, repetitions: int, oids: Sequence[tuple[int, ...]]
    ) -> Reply:
        return await self._send(
            peer,
            lambda: self.hlapi.bulk_cmd(
                self.engine, peer.auth, peer.transport, peer.context,
                non_repeaters, repetitions, *(self._object(o) for o in oids), lookupMib=False,
            ),
        )  # fmt: skip

    async def _send(self, peer: Peer, request: Callable[[], Any]) -> Reply:
        from pysnmp.error import PySnmpError  # type: ignore[import-untyped]

        await self._drain(peer)
        try:
            indication, status, index, binds = await request()
        except (PySnmpError, OSError, ValueError) as exc:
            return Reply(f"SNMP request failed: {type(exc).__name__}: {exc}", answered=False)
        if indication:
            kind = type(indication).__name__
            if kind == "RequestTimedOut":
                return Reply(None, answered=False, indication=kind)
            return Reply(str(indication), answered=kind in _REPORTS, indication=kind)
        return Reply(
            None,
            answered=True,
            status=int(status or 0),
            index=int(index or 0),
            binds=tuple((tuple(name.asTuple()), value) for name, value in binds),
        )

    def close(self) -> None:
        self.engine.close_dispatcher()


@dataclass(frozen=True)
class Peer:
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


def status_text(reply: Reply) -> str:
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


def reply_error(
    reply: Reply, target: SnmpTarget, patience: float, *, mid_walk: bool = False
) -> str:
    if reply.indication == "RequestTimedOut":
        return _silence(patience, target, mid_walk=mid_walk)
    if reply.indication in _REPORTS:
        credentials = target.credentials
        return _REPORTS[reply.indication].format(
            user=credentials.user, level=credentials.security_level
        )
    return reply.error or "no answer"
