"""What a client can make the collector hold before it has authenticated, bounded in the HTTP
protocol itself (uvicorn's httptools protocol, subclassed), since nothing of a request reaches the
app — its middleware, its authentication — until the whole request head has been parsed.

httptools (llhttp) has no limit on the request head: it concatenates a header value for as long as
bytes come (a 10 MiB header was accepted, and two 50 MiB ones left the collector 110 MB larger for
good), and uvicorn sets no limit of its own for it (`h11_max_incomplete_event_size` is h11's only)
nor any timeout before the first response. So each connection here is held from its TCP accept to
its close, by one `LimitedHttpToolsProtocol`:

- at accept, a client address with `max_connections_per_address` connections open (in handshake,
  active or closing) has the new one closed at once, before any TLS work is done for it;
- it puts the event loop's own TLS layer under itself (uvicorn is given no TLS context), so the
  `header_timeout_seconds` deadline runs from the accept: a client that stalls in the handshake or
  trickles its request head is cut off (408 once TLS is up), as is one that connects and says
  nothing; on a kept-alive connection the deadline runs from the next request's first byte;
- bytes of the request head are counted as they arrive and the parser is never fed more than
  `max_header_bytes` of one head: one byte more is answered 431 and the connection closed, so at
  most that much is ever buffered; `max_header_fields` fields are allowed, one more is 431 too.
  After a refusal the TLS layer reads and discards what still comes (for `header_timeout_seconds`
  at most; the connection counts until then), so the client reads the answer, not a reset.

The counts live in one `Guard` per server process (with N workers, an address may hold N times the
limit). Refusals are logged, at most one line per address every ten seconds.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import math
import ssl
import time
from asyncio import sslproto
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvloop.loop import SSLProtocol  # type: ignore[attr-defined]  # (not in its stubs)

from collector.settings import LimitSettings

logger = logging.getLogger("medsec.collector")

WARN_EVERY_SECONDS = 10.0
"""At most one refusal line per client address in this long (a flood must not flood the log)."""
_WARNED_KEPT = 4096
"""Addresses remembered for that; older entries are dropped beyond this many."""


class Guard:
    """What the connections of one server process share: the limits, the TLS context they
    upgrade to, the count of open connections by client address, and the refusal log."""

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.tls: ssl.SSLContext | None = None
        """Set when the config loads; None serves plain HTTP (no TLS)."""
        self.open: dict[str, int] = {}
        self._warned: dict[str, tuple[float, int]] = {}

    def admit(self, address: str) -> bool:
        """Count one more connection from `address`, unless it has its limit open already."""
        count = self.open.get(address, 0)
        if count >= self.limits.max_connections_per_address:
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)

    def warn(self, address: str, what: str) -> None:
        """Log a refusal, unless one from `address` was logged in the last ten seconds (then it
        is counted, and the next line says how many went unlogged)."""
        now = time.monotonic()
        last, unlogged = self._warned.get(address, (-math.inf, 0))
        if now - last < WARN_EVERY_SECONDS:
            self._warned[address] = (last, unlogged + 1)
            return
        if len(self._warned) >= _WARNED_KEPT:
            self._warned = {
                a: seen for a, seen in self._warned.items() if now - seen[0] < WARN_EVERY_SECONDS
            }
        self._warned[address] = (now, 0)
        more = f" ({unlogged} more refusals from it not logged)" if unlogged else ""
        logger.warning("client %s: %s%s", address, what, more)


def guard_of(config: Config) -> Guard:
    guard = getattr(config, "guard", None)
    if not isinstance(guard, Guard):
        raise TypeError(
            "the limited HTTP protocol needs a config from collector.tls.uvicorn_config"
        )
    return guard


def _answer(status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP response with the API's JSON error body, closing the connection."""
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}".encode("ascii")]
    lines += [name + b": " + value for name, value in headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode("ascii"),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above, from accept to close."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard_of(config)
        self.limits = self.guard.limits
        self.address: str | None = None
        """The client address while this connection counts against it."""
        self.raw: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.reading_head = True
        self.head_bytes = 0
        self.head_fields = 0
        self.refused = False

    # ----------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Called twice over TLS: with the TCP connection at accept, then with the TLS one."""
        if self.raw is not None:
            super().connection_made(transport)  # the TLS handshake is done: HTTP from here
            return
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        if not self.guard.admit(address):
            self.guard.warn(
                address,
                f"connection closed at accept: {self.limits.max_connections_per_address}"
                " connections open from this address (limits.max_connections_per_address)",
            )
            transport.close()
            return
        self.address = address
        self.raw = transport
        self.connections.add(self)  # so that a graceful shutdown closes it even mid-handshake
        self._arm_deadline()
        if self.guard.tls is None:
            super().connection_made(transport)
        else:
            self._start_tls(transport, self.guard.tls)

    def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Put the event loop's own TLS layer between `raw` and this protocol, as the loop does
        for a server given a TLS context — but after this connection was counted and its deadline
        armed. It is set before the loop reads the first byte (it reads once `connection_made`
        returns), and calls `connection_made` again once the handshake is done."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        waiter.add_done_callback(self._handshake_done)
        layer_class = SSLProtocol if isinstance(self.loop, uvloop.Loop) else sslproto.SSLProtocol
        layer = layer_class(
            self.loop,
            self,
            context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=self.limits.header_timeout_seconds,
            ssl_shutdown_timeout=self.limits.header_timeout_seconds,
        )
        raw.set_protocol(layer)
        layer.connection_made(raw)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.cancelled():
            waiter.exception()  # retrieved: a failed handshake is the client's affair
        if self.transport is None:
            # Failed, timed out or closed (the waiter then has no exception) before HTTP began:
            # the TLS layer tells only a protocol it has made.
            self._forget()

    def connection_lost(self, exc: Exception | None) -> None:
        began = self.transport is not None  # else closed before HTTP began: uvicorn never knew it
        self._forget()
        if began:
            super().connection_lost(exc)

    def _forget(self) -> None:
        self._disarm_deadline()
        if self.address is not None:
            self.guard.release(self.address)
            self.address = None
        if self.transport is None:
            self.connections.discard(self)

    def shutdown(self) -> None:
        if self.transport is None:
            if self.raw is not None:
                self.raw.close()
            return
        super().shutdown()

    # ----------------------------------------------------------------- the request head

    def data_received(self, data: bytes) -> None:
        while self.reading_head:
            if self.refused or self.transport.is_closing():
                return
            if self.deadline is None:  # the first byte of a kept-alive connection's next request
                self._arm_deadline()
            room = self.limits.max_header_bytes - self.head_bytes
            if len(data) <= room:
                self.head_bytes += len(data)
                super().data_received(data)
                return
            # Feed only what fits: the head either ends within it, or it is too large. (If its
            # request ends there too, `on_message_complete` has reset the count for the next.)
            self.head_bytes = self.limits.max_header_bytes
            if room:
                super().data_received(data[:room])
                data = data[room:]
            if self.head_bytes and self.reading_head and not self.refused:
                if self.transport.is_closing():
                    return
                self._refuse(
                    431,
                    "header_too_large",
                    f"the request head is larger than {self.limits.max_header_bytes} bytes",
                )
                return
        # Past the head, the rest is body. (A pipelined request's head that begins within a read
        # is counted from the next read on: at most one read, 256 KiB, beyond the limit.)
        if not self.refused and not self.transport.is_closing():
            super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.refused:
            return
        self.head_fields += 1
        if self.head_fields > self.limits.max_header_fields:
            self._refuse(
                431,
                "too_many_header_fields",
                f"the request has more than {self.limits.max_header_fields} header fields",
            )
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        self.reading_head = False
        self._disarm_deadline()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = self.head_fields = 0

    # ----------------------------------------------------------------- refusals

    def _arm_deadline(self) -> None:
        self.deadline = self.loop.call_later(self.limits.header_timeout_seconds, self._too_slow)

    def _disarm_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        seconds = self.limits.header_timeout_seconds
        if self.transport is None:  # still in the TLS handshake: no HTTP to answer with
            if self.raw is not None and not self.raw.is_closing():
                self.guard.warn(self.address or "?", f"no TLS handshake within {seconds} s")
                self.raw.close()
        elif self.reading_head and not self.refused and not self.transport.is_closing():
            self._refuse(408, "request_timeout", f"no complete request head within {seconds} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` (unless a response is under way) and close: the rest is not read."""
        self.refused = True
        self._disarm_deadline()
        self.guard.warn(self.address or "?", f"{status}: {message}")
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_answer(status, code, message, self.server_state.default_headers))
        self.transport.close()
