"""The probe helper a vantage runs inside its zone: HTTP exchanges (WAF baseline and attack
requests, ZTNA gateway with and without a client certificate), TLS version probes, and an SNMP
GET of the firewall's identity. One JSON request in (stdin, or argv[1] as base64 when the script
itself came on stdin), one JSON answer out (stdout).

Run as `python3 -I probe_cli.py < request.json` under `ip netns exec NS`, or shipped over SSH as
`python3 -I - BASE64 < probe_cli.py`: so everything but the SNMP operation uses the standard
library only, and nothing here imports medsec. SNMP needs pysnmp and runs only where medsec is
installed (local and netns vantages). Secrets are read from the files the request names; none
travels in argv.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import struct
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BODY_LIMIT = 4096
USER_AGENT = "medsec-scan/0.1 (+compliance check)"
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_SSL_VERSIONS = {
    "TLSv1": "TLSv1",
    "TLSv1.1": "TLSv1_1",
    "TLSv1.2": "TLSv1_2",
    "TLSv1.3": "TLSv1_3",
}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


# --- HTTP ---------------------------------------------------------------------------------------


def _tls_context(verify: bool, cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        # Evidence gathering, not trust: the gateway's and apps' CAs are not the question here.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        context.load_cert_chain(cert, key)
    return context


def http_exchange(request: dict[str, Any]) -> dict[str, Any]:
    """One request to `url`, connecting to `connect` = [address, port]; Host comes from the URL."""
    from urllib.parse import urlsplit

    url = request["url"]
    parts = urlsplit(url)
    address, port = request["connect"]
    timeout = float(request.get("timeout", 5))
    target = parts.path or "/"
    if request.get("query") is not None:
        target += "?" + request["query"]
    elif parts.query:
        target += "?" + parts.query
    host = parts.netloc.rsplit("@", 1)[-1]
    answer: dict[str, Any] = {
        "id": request.get("id"),
        "url": url if request.get("query") is None else f"{url.split('?')[0]}?{request['query']}",
        "method": request.get("method", "GET"),
        "status": None,
        "reason": "",
        "headers": [],
        "body": "",
        "error": None,
        "tls_version": None,
        "handshake": None,
        "handshake_error": None,
    }
    started = time.monotonic()
    sock: Any = None
    try:
        sock = socket.create_connection((address, int(port)), timeout=timeout)
        if parts.scheme == "https":
            context = _tls_context(
                bool(request.get("verify")), request.get("client_cert"), request.get("client_key")
            )
            name = parts.hostname if not _is_ip(parts.hostname or "") else None
            try:
                sock = context.wrap_socket(sock, server_hostname=name)
            except (ssl.SSLError, OSError) as exc:
                answer["handshake"] = False
                answer["handshake_error"] = _error_text(exc)
                raise
            answer["handshake"] = True
            answer["tls_version"] = sock.version()
        connection = http.client.HTTPConnection(address, int(port), timeout=timeout)
        connection.sock = sock
        headers = {"Host": host, "User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
        headers.update(request.get("headers") or {})
        connection.request(answer["method"], target, headers=headers)
        response = connection.getresponse()
        body = response.read(BODY_LIMIT)
        answer.update(
            status=response.status,
            reason=response.reason,
            headers=[[k, v] for k, v in response.getheaders()],
            body=body.decode("utf-8", "replace"),
        )
    except (OSError, http.client.HTTPException, ValueError) as exc:  # ssl.SSLError is an OSError
        answer["error"] = _error_text(exc)
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    answer["seconds"] = round(time.monotonic() - started, 3)
    return answer


def _is_ip(text: str) -> bool:
    try:
        socket.inet_aton(text)
    except OSError:
        return False
    return text.count(".") == 3


def op_http(request: dict[str, Any]) -> dict[str, Any]:
    items = request.get("requests") or []
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(items)))) as pool:
        answers = list(pool.map(http_exchange, items))
    return {"exchanges": answers}


# --- TLS versions -------------------------------------------------------------------------------


def _sslv3_client_hello() -> bytes:
    suites = [0x000A, 0x002F, 0x0035, 0x0005, 0x0004, 0x0009, 0x0013, 0x0016, 0x00FF]
    body = (
        b"\x03\x00"
        + os.urandom(32)
        + b"\x00"
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", s) for s in suites)
        + b"\x01\x00"
    )
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x00" + struct.pack("!H", len(handshake)) + handshake


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_sslv3(address: str, port: int, timeout: float) -> dict[str, str]:  # noqa: PLR0911
    """A hand-made SSLv3 ClientHello (OpenSSL 3 cannot speak SSLv3): a ServerHello for 3.0
    means the server accepts SSLv3."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(_sslv3_client_hello())
            header = _recv_exactly(sock, 5)
            if len(header) < 5:
                return {"outcome": "refused", "detail": "connection closed"}
            kind, major, minor, length = header[0], header[1], header[2], header[3] << 8 | header[4]
            if kind == 0x15:
                alert = _recv_exactly(sock, min(length, 2))
                code = alert[1] if len(alert) == 2 else -1
                return {"outcome": "refused", "detail": f"alert {code}"}
            if kind != 0x16:
                return {"outcome": "refused", "detail": f"not TLS (record type {kind})"}
            payload = _recv_exactly(sock, min(length, 64))
            if len(payload) >= 6 and payload[0] == 0x02:
                version = (payload[4], payload[5])
                if version == (3, 0):
                    return {"outcome": "accepted", "detail": "ServerHello 3.0"}
                return {"outcome": "refused", "detail": f"ServerHello {version[0]}.{version[1]}"}
            return {"outcome": "refused", "detail": f"handshake record {major}.{minor} not Hello"}
    except OSError as exc:
        return {"outcome": "refused", "detail": _error_text(exc)}


def probe_version(address: str, port: int, version: str, timeout: float) -> dict[str, str]:
    if version == "SSLv3":
        return probe_sslv3(address, port, timeout)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wanted = getattr(ssl.TLSVersion, _SSL_VERSIONS[version])
    try:
        if version in {"TLSv1", "TLSv1.1"}:
            # OpenSSL 3 refuses these at its default security level, so a server that allows
            # them would look compliant: lower the client's level to see what the server does.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = wanted
            context.maximum_version = wanted
    except (ValueError, ssl.SSLError) as exc:
        return {"outcome": "untested", "detail": f"this client cannot offer {version}: {exc}"}
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
        with raw, context.wrap_socket(raw) as tls:
            negotiated = tls.version()
            cipher = (tls.cipher() or ("?",))[0]
        if negotiated == version:
            return {"outcome": "accepted", "detail": f"{negotiated} {cipher}"}
        return {"outcome": "refused", "detail": f"negotiated {negotiated}"}
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return {"outcome": "refused", "detail": _error_text(exc)}


def op_tls(request: dict[str, Any]) -> dict[str, Any]:
    timeout = float(request.get("timeout", 5))
    versions = request.get("versions") or list(TLS_VERSIONS)
    jobs = [
        (target["address"], int(target["port"]), version)
        for target in request.get("targets") or []
        for version in versions
    ]
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(jobs)))) as pool:
        results = list(pool.map(lambda job: probe_version(job[0], job[1], job[2], timeout), jobs))
    services: dict[str, dict[str, Any]] = {}
    for (address, port, version), result in zip(jobs, results, strict=True):
        entry = services.setdefault(
            f"{address}:{port}", {"address": address, "port": port, "versions": []}
        )
        entry["versions"].append({"version": version, **result})
    return {"services": list(services.values())}


# --- SNMP (pysnmp: local and netns vantages only) -----------------------------------------------

SYS_DESCR, SYS_OBJECT_ID, SYS_NAME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0"


def _first_line(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def op_snmp(request: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    try:
        from pysnmp.hlapi.v3arch import asyncio as hlapi  # type: ignore[import-untyped]
    except ImportError as exc:
        return {"error": f"pysnmp is not installed here: {exc}"}
    if request["version"] == "3":
        auth = {
            "md5": hlapi.USM_AUTH_HMAC96_MD5,
            "sha": hlapi.USM_AUTH_HMAC96_SHA,
            "sha224": hlapi.USM_AUTH_HMAC128_SHA224,
            "sha256": hlapi.USM_AUTH_HMAC192_SHA256,
            "sha384": hlapi.USM_AUTH_HMAC256_SHA384,
            "sha512": hlapi.USM_AUTH_HMAC384_SHA512,
        }[request["auth_protocol"]]
        priv = {
            "des": hlapi.USM_PRIV_CBC56_DES,
            "3des": hlapi.USM_PRIV_CBC168_3DES,
            "aes": hlapi.USM_PRIV_CFB128_AES,
            "aes192": hlapi.USM_PRIV_CFB192_AES,
            "aes256": hlapi.USM_PRIV_CFB256_AES,
        }[request["priv_protocol"]]
        credentials: Any = hlapi.UsmUserData(
            request["user"],
            authKey=_first_line(request["auth_key_file"]),
            privKey=_first_line(request["priv_key_file"]),
            authProtocol=auth,
            privProtocol=priv,
        )
    else:
        # v2c where the site has no v3; the zones file says which.
        credentials = hlapi.CommunityData(_first_line(request["community_file"]), mpModel=1)  # noqa: S508

    async def query() -> dict[str, Any]:
        engine = hlapi.SnmpEngine()
        try:
            transport = await hlapi.UdpTransportTarget.create(
                (request["host"], int(request.get("port", 161))),
                timeout=float(request.get("timeout", 2)),
                retries=int(request.get("retries", 1)),
            )
            indication, status, index, binds = await hlapi.get_cmd(
                engine,
                credentials,
                transport,
                hlapi.ContextData(),
                *(
                    hlapi.ObjectType(hlapi.ObjectIdentity(oid))
                    for oid in (SYS_DESCR, SYS_OBJECT_ID, SYS_NAME)
                ),
                lookupMib=False,
            )
        finally:
            engine.close_dispatcher()
        if indication:
            return {"error": str(indication)}
        if status:
            return {"error": f"{status.prettyPrint()} at {index}"}
        values: dict[str, str] = {}
        for name, value in binds:
            if value.__class__.__name__ in {"NoSuchObject", "NoSuchInstance", "EndOfMibView"}:
                continue
            if value.__class__.__name__ == "OctetString":
                text = bytes(value).decode("utf-8", "replace")
            else:
                text = value.prettyPrint()
            values[str(name)] = text
        return {
            "sys_descr": values.get(SYS_DESCR),
            "sys_object_id": values.get(SYS_OBJECT_ID),
            "sys_name": values.get(SYS_NAME),
        }

    from pysnmp.error import PySnmpError  # type: ignore[import-untyped]

    try:
        return asyncio.run(query())
    except (OSError, PySnmpError, ValueError) as exc:  # a timeout is an OSError too
        return {"error": f"{type(exc).__name__}: {exc}"}


OPERATIONS = {"http": op_http, "tls": op_tls, "snmp": op_snmp}


def main(argv: list[str]) -> int:
    raw = base64.b64decode(argv[1]) if len(argv) > 1 else sys.stdin.buffer.read()
    try:
        request = json.loads(raw)
        operation = OPERATIONS[request["op"]]
    except (ValueError, KeyError, TypeError) as exc:
        sys.stdout.write(json.dumps({"error": f"bad probe request: {exc}"}) + "\n")
        return 2
    sys.stdout.write(json.dumps(operation(request)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
