"""What alerts are sent to in the tests, run by the test itself on loopback: a webhook receiver
(an HTTP or HTTPS server that checks each request's HMAC the way a receiver must, and answers
a scripted series of status codes), and syslog servers (a UDP socket, a Unix datagram socket)."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Received:
    """One POST as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    """time.monotonic() when it arrived."""
    answered: int
    signature_ok: bool

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    url: str
    secret: bytes
    answers: list[int] = field(default_factory=list)
    """Status codes to answer, in order; 200 once they run out."""
    delay: float = 0.0
    """Seconds each answer waits (to make two senders' work overlap)."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests once at least `count` arrived (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} requests arrived, {count} expected")

    def delivered(self) -> list[Received]:
        """The requests answered with a 2xx."""
        with self.lock:
            return [r for r in self.received if 200 <= r.answered < 300]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
            given = self.headers.get("X-Medsec-Signature", "")
            with receiver.lock:
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.received.append(
                    Received(
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        at=time.monotonic(),
                        answered=status,
                        signature_ok=hmac.compare_digest(expected, given),
                    )
                )
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = (
        128  # the default 5 drops connects a sender makes at once (SYN resent 1 s on)
    )


@contextmanager
def webhook_receiver(
    secret: bytes, *, tls: tuple[Path, Path] | None = None, **options: Any
) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (HTTPS with `tls` = (cert, key)), stopped afterwards."""
    receiver = Receiver(url="", secret=secret, **options)
    server = _Server(("127.0.0.1", 0), _handler(receiver))
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/medsec?token=t0k3n"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class SyslogServer:
    """A bound datagram socket collecting what arrives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.1)

    def lines(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """`count` datagrams (fails after `timeout`), then any that follow within 0.3 s."""
        got: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self.sock.recv(65536))
            except TimeoutError:
                continue
        if len(got) < count:
            raise AssertionError(f"{len(got)} syslog lines arrived, {count} expected: {got}")
        settle = time.monotonic() + 0.3
        while time.monotonic() < settle:
            try:
                got.append(self.sock.recv(65536))
            except TimeoutError:
                continue
        return got


@contextmanager
def udp_syslog() -> Iterator[tuple[str, SyslogServer]]:
    """(HOST:PORT, server) of a UDP socket on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}", SyslogServer(sock)


@contextmanager
def unix_syslog(folder: Path) -> Iterator[tuple[str, SyslogServer]]:
    """(path, server) of a Unix datagram socket in `folder` (a short path: at most 107 bytes)."""
    path = str(folder / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        yield path, SyslogServer(sock)
