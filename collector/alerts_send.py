"""How one alert event leaves the collector: a signed JSON POST to the webhook, a line to syslog.

Each channel sends one `Delivery` and raises `SendFailed` (one line, never the secret nor the
webhook's path or query, which may hold the receiver's token) when it was not delivered; the
sender loop (`collector.alerts`) then retries it later.

The webhook body is JSON (schema `medsec.alert/v1`); `X-Medsec-Signature: sha256=<hex>` is the
HMAC-SHA256 of those exact bytes with the shared secret, so a receiver checks it before parsing.
`X-Medsec-Delivery` is the same on every attempt of one delivery: a receiver that saw it already
(an answer lost on the way back, a sender whose lease ran out) drops the repeat. Only a 2xx
answer counts as delivered; a redirect is not followed (an alert goes where it was configured).

Syslog gets one line per event in the format of Python's `SysLogHandler` (`<PRI>medsec: ...`,
which every syslog daemon reads and stamps with its own time and host), over UDP to HOST:PORT or
to a local Unix socket (`/dev/log`). Raised events have severity warning, cleared ones notice.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import socket
import ssl
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from collector.settings import SYSLOG_FACILITIES, SyslogSettings, WebhookSettings
from collector.store.alerts import Delivery

ALERT_SCHEMA = "medsec.alert/v1"
SIGNATURE_HEADER = "X-Medsec-Signature"
EVENT_HEADER = "X-Medsec-Event"
DELIVERY_HEADER = "X-Medsec-Delivery"
USER_AGENT = "medsec-collector"
_SEVERITY = {"raised": 4, "cleared": 5}  # warning, notice (RFC 5424 table 2)
_SYSLOG_MAX_BYTES = 2048  # what RFC 5426 says every receiver should take over UDP
_SYSLOG_TIMEOUT_S = 5.0
LEASE_MARGIN_S = 30.0
"""A claimed event's lease outlasts one attempt by this much."""


class SendFailed(Exception):
    """The event was not delivered; the message (one line, no secret) says why."""


class Channel(Protocol):
    name: str
    max_attempts: int
    retry_seconds: float

    @property
    def lease(self) -> timedelta:
        """How long a claimed delivery is this sender's: longer than one attempt can take."""
        ...

    async def send(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


def payload(delivery: Delivery) -> dict[str, Any]:
    """What the webhook receives about one event."""
    alert = delivery.alert
    return {
        "schema": ALERT_SCHEMA,
        "delivery_id": str(delivery.id),
        "alert_id": alert.id,
        "event": delivery.event,
        "kind": alert.kind,
        "zones": alert.zones,
        "key": alert.key,
        "detail": alert.detail,
        "scan_id": delivery.scan_id,
        "time": delivery.at.isoformat().replace("+00:00", "Z"),
        "opened_at": alert.opened_at.isoformat().replace("+00:00", "Z"),
    }


def sign(body: bytes, secret: bytes) -> str:
    """The `X-Medsec-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def summary(delivery: Delivery) -> str:
    """The event in one line: `alert raised violation hospital: office->his 198.18.2.10
    tcp/1433 (scan S, alert 7)`."""
    alert = delivery.alert
    text = str(alert.detail.get("text") or alert.key)
    line = (
        f"alert {delivery.event} {alert.kind} {alert.zones}: {text} "
        f"(scan {delivery.scan_id or '-'}, alert {alert.id})"
    )
    return "".join(c if c.isprintable() else " " for c in line)


class Webhook:
    """POSTs each event as signed JSON."""

    name = "webhook"

    def __init__(self, settings: WebhookSettings, secret: bytes) -> None:
        self.settings = settings
        self.max_attempts = settings.max_attempts
        self.retry_seconds = settings.retry_seconds
        self._secret = secret
        parts = urlsplit(settings.url)
        # What errors name: never the path or query (a receiver's token may be there).
        self.where = f"{parts.scheme}://{parts.netloc}"
        context = ssl.create_default_context(cafile=settings.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._client = httpx.AsyncClient(
            verify=context,
            timeout=settings.timeout_seconds,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: alerts go where configured
            headers={"User-Agent": USER_AGENT},
        )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.timeout_seconds + LEASE_MARGIN_S)

    def request(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        """The exact body and the headers of `delivery`'s POST."""
        body = json.dumps(payload(delivery), ensure_ascii=False, sort_keys=True).encode()
        return body, {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self._secret),
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.id),
        }

    async def send(self, delivery: Delivery) -> None:
        body, headers = self.request(delivery)
        try:
            answer = await self._client.post(self.settings.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise SendFailed(
                f"{self.where}: no answer within {self.settings.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"{self.where}: {_reason(exc)}") from None
        if not 200 <= answer.status_code < 300:
            raise SendFailed(f"{self.where} answered HTTP {answer.status_code}")

    async def close(self) -> None:
        await self._client.aclose()


def _reason(exc: BaseException) -> str:
    """The innermost cause's first line (a certificate error, a refused connection)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class Syslog:
    """Sends each event as one syslog line."""

    name = "syslog"

    def __init__(self, settings: SyslogSettings) -> None:
        self.settings = settings
        self.max_attempts = settings.max_attempts
        self.retry_seconds = settings.retry_seconds
        self.facility = SYSLOG_FACILITIES[settings.facility]

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=_SYSLOG_TIMEOUT_S + LEASE_MARGIN_S)

    def line(self, delivery: Delivery) -> bytes:
        """The datagram: `<PRI>medsec: alert raised ...`."""
        priority = self.facility * 8 + _SEVERITY[delivery.event]
        data = f"<{priority}>medsec: {summary(delivery)}".encode()
        return data[:_SYSLOG_MAX_BYTES]

    async def send(self, delivery: Delivery) -> None:
        data = self.line(delivery)
        try:
            await asyncio.to_thread(self._send, data)
        except OSError as exc:
            raise SendFailed(f"syslog {self.settings.address}: {exc.strerror or exc}") from None

    def _send(self, data: bytes) -> None:
        udp = self.settings.udp
        if udp is not None:
            host, port = udp
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            with socket.socket(info[0][0], socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SYSLOG_TIMEOUT_S)
                sock.sendto(data, info[0][4])
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SYSLOG_TIMEOUT_S)
                sock.connect(self.settings.address)
                sock.send(data)
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:  # the daemon listens on a stream socket
                raise
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(_SYSLOG_TIMEOUT_S)
                sock.connect(self.settings.address)
                sock.sendall(data + b"\x00")  # SysLogHandler's framing on a stream

    async def close(self) -> None:
        return None
