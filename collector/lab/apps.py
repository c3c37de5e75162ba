"""The lab's small application servers, run as a script inside a zone namespace:
`python3 -I apps.py --pidfile FILE [--cert C --key K] ROLE=ADDRESS:PORT ...`.

Roles: `portal-backend` (the patient portal, only reachable through the WAF), `booking` (a web
app with no WAF), `his-web` (the internal HIS web app, HTTPS), `db` (a PostgreSQL look-alike
that refuses every login, enough for a port and service scan) and `sqlserver` (the same
database's SQL Server listener: answers a TDS pre-login, then hangs up). Standard library only,
so it runs under any Python 3.11 without the medsec package on the path. It binds every socket
first, then detaches (double fork) and writes its pid file, so when the launcher returns the
ports are open and a bind error is the launcher's exit status.
"""

from __future__ import annotations

import argparse
import os
import signal
import socketserver
import ssl
import struct
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

_PAGE = """<!DOCTYPE html>
<html><head><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


class _Page(BaseHTTPRequestHandler):
    """Answers every GET/HEAD/POST with one fixed page; never reflects the request."""

    server_version = "App/1.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 15
    title: ClassVar[str] = ""
    text: ClassVar[str] = ""

    def version_string(self) -> str:
        return self.server_version

    def _answer(self, with_body: bool) -> None:
        body = _PAGE.format(title=self.title, text=self.text).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _refused(self, body: bytes) -> bool:
        """Whether the application itself refuses this request (see `_Portal`)."""
        return False

    def _refuse(self) -> None:
        body = _PAGE.format(title="Forbidden", text="Request refused.").encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
        return self.rfile.read(length)

    def do_GET(self) -> None:
        if self._refused(self._body()):
            self._refuse()
            return
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_POST(self) -> None:
        if self._refused(self._body()):
            self._refuse()
            return
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.server_version} {self.address_string()} {format % args}\n")
        sys.stderr.flush()


class _Portal(_Page):
    server_version = "PatientPortal/2.3"
    title = "Patient portal"
    text = "Appointments, results and invoices for our patients."
    filter_file: ClassVar[str | None] = None
    """While this file holds `on`, the portal filters a few attack patterns itself (lab fault
    app-filter): an application's own filter, which is not a WAF."""

    def _refused(self, body: bytes) -> bool:
        if not self.filter_file:
            return False
        try:
            with open(self.filter_file, encoding="utf-8") as handle:
                if handle.read().strip() != "on":
                    return False
        except OSError:
            return False
        from urllib.parse import unquote_plus

        seen = " ".join(
            unquote_plus(part)
            for part in (self.path, body.decode("latin-1"), self.headers.get("Cookie", ""))
        ).lower()
        return any(pattern in seen for pattern in ("<script", "' or", "../"))


class _Booking(_Page):
    server_version = "BookingApp/1.4"
    title = "Appointment booking"
    text = "Book an outpatient appointment."


class _HisWeb(_Page):
    server_version = "HIS-Web/5.1"
    title = "Hospital information system"
    text = "Internal clinical application: staff only."


class _TlsHttpServer(ThreadingHTTPServer):
    """HTTPS with the handshake in the request thread: a silent client never blocks accepts."""

    daemon_threads = True
    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            request = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True


class _PostgresLike(socketserver.BaseRequestHandler):
    """Declines SSL, then answers any startup message with a FATAL ErrorResponse."""

    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            header = self.request.recv(8)
            if len(header) == 8 and struct.unpack("!II", header) == (8, 80877103):
                self.request.sendall(b"N")  # SSLRequest: no TLS here
                self.request.recv(1024)
            fields = b"".join(
                code + text + b"\0"
                for code, text in (
                    (b"S", b"FATAL"),
                    (b"V", b"FATAL"),
                    (b"C", b"28000"),
                    (b"M", b"no pg_hba.conf entry for this host"),
                )
            )
            body = fields + b"\0"
            self.request.sendall(b"E" + struct.pack("!I", len(body) + 4) + body)
        except OSError:
            return


class _SqlServerLike(socketserver.BaseRequestHandler):
    """Answers a TDS PRELOGIN (SQL Server 2019, no encryption), then closes; anything else
    (a TLS ClientHello, a port scan's bare connect) is just closed."""

    # PRELOGIN options VERSION (offset 11, 6 bytes) and ENCRYPTION (offset 17, 1 byte), end;
    # then 15.0.2000.0 and ENCRYPT_NOT_SUP.
    _PAYLOAD = bytes.fromhex("00 000b 0006  01 0011 0001  ff  0f0007d00000  02")

    def handle(self) -> None:
        self.request.settimeout(5)
        try:
            header = self.request.recv(8)
            if len(header) == 8 and header[0] == 0x12:  # TDS PRELOGIN
                length = 8 + len(self._PAYLOAD)
                reply = struct.pack("!BBHHBB", 0x04, 0x01, length, 0, 1, 0) + self._PAYLOAD
                self.request.sendall(reply)
        except OSError:
            return


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


_HTTP_ROLES: dict[str, type[_Page]] = {
    "portal-backend": _Portal,
    "booking": _Booking,
    "his-web": _HisWeb,
}
_TLS_ROLES = {"his-web"}


def _build(role: str, address: tuple[str, int], args: argparse.Namespace) -> Any:
    if role == "db":
        return _TcpServer(address, _PostgresLike)
    if role == "sqlserver":
        return _TcpServer(address, _SqlServerLike)
    handler = _HTTP_ROLES.get(role)
    if handler is None:
        raise SystemExit(f"apps: unknown role {role!r}")
    if role not in _TLS_ROLES:
        return _HttpServer(address, handler)
    if not (args.cert and args.key):
        raise SystemExit(f"apps: role {role} needs --cert and --key")
    server = _TlsHttpServer(address, handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    server.context = context
    return server


def _detach(pidfile: str) -> None:
    """Double fork; the middle process writes the daemon's pid before the launcher returns."""
    if os.fork() > 0:
        _, status = os.wait()
        os._exit(os.waitstatus_to_exitcode(status))
    os.setsid()
    child = os.fork()
    if child > 0:
        with open(pidfile, "w", encoding="ascii") as handle:
            handle.write(f"{child}\n")
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apps.py", description=__doc__)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("--portal-filter", help="the portal's filter switch file")
    parser.add_argument("serve", nargs="+", metavar="ROLE=ADDRESS:PORT")
    args = parser.parse_args(argv)
    _Portal.filter_file = args.portal_filter
    servers = []
    for spec in args.serve:
        role, _, endpoint = spec.partition("=")
        host, _, port = endpoint.rpartition(":")
        try:
            servers.append(_build(role, (host, int(port)), args))
        except (OSError, ValueError) as exc:
            print(f"apps: {role} on {endpoint}: {exc}", file=sys.stderr)
            return 1
    if args.foreground:
        with open(args.pidfile, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    else:
        _detach(args.pidfile)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
