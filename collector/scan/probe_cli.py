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


def _tls_context(
    verify: bool, cert: str | None, key: str | None, pem: str | None = None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        # Evidence gathering, not trust: the gateway's and apps' CAs are not the question here.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert and key:
        context.load_cert_chain(cert, key)
    elif pem:
        _load_pem_chain(context, pem)
    return context


def _load_pem_chain(context: ssl.SSLContext, pem: str) -> None:
    """Load a certificate and key that came in the request (the scanner's throwaway client
    certificates): through an anonymous memory file, so the key never reaches a disk."""
    fd = os.memfd_create("medsec-client", getattr(os, "MFD_CLOEXEC", 0))
    try:
        os.write(fd, pem.encode("ascii"))
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def http_exchange(request: dict[str, Any]) -> dict[str, Any]:
    """One request to `url`, connecting to `connect` = [address, port]; Host comes from the URL."""
    from urllib.parse import urlsplit

    url = request["url"]
    parts = urlsplit(url)
    address, port = request["connect"]
    timeout = float(request.get("timeout", 5))
    # `path` (sent as given, encoded or not) and `query` replace the URL's own: the WAF battery
    # puts its attack strings there.
    target = request.get("path") or parts.path or "/"
    if request.get("query") is not None:
        target += "?" + request["query"]
    elif parts.query and request.get("path") is None:
        target += "?" + parts.query
    host = parts.netloc.rsplit("@", 1)[-1]
    body = request.get("body")
    answer: dict[str, Any] = {
        "id": request.get("id"),
        "url": f"{parts.scheme}://{parts.netloc}{target}",
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
                bool(request.get("verify")),
                request.get("client_cert"),
                request.get("client_key"),
                request.get("client_pem"),
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
        connection.request(
            answer["method"],
            target,
            body=body.encode("utf-8") if body is not None else None,
            headers=headers,
        )
        response = connection.getresponse()
        content = response.read(BODY_LIMIT)
        answer.update(
            status=response.status,
            reason=response.reason,
            headers=[[k, v] for k, v in response.getheaders()],
            body=content.decode("utf-8", "replace"),
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


_RECORD_VERSION = {"SSLv3": (3, 0), "TLSv1": (3, 1), "TLSv1.1": (3, 2), "TLSv1.2": (3, 3)}
ALL_CIPHERS = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
"""Every cipher suite the local OpenSSL has for TLS 1.0-1.2 (CAMELLIA, SEED, ARIA, PSK, null and
anonymous ones included), at security level 0 so the client's own floor hides nothing."""
_EVERY_SUITE = [
    s
    for s in (*range(0x0001, 0x0100), *range(0xC001, 0xC100), *range(0xCCA8, 0xCCAF))
    if s != 0x00FF  # the renegotiation SCSV, added once at the end
] + [0x00FF]
"""Every cipher suite code of TLS 1.2 and before that IANA assigned in these ranges, offered by
the hand-made ClientHello: a server may speak an old version only with a suite the local OpenSSL
lacks (export, IDEA, RC2, GOST, ...), and choosing one proves the version is accepted."""
_GROUPS = [0x0017, 0x0018, 0x0019, 0x001D, 0x001E, *range(0x0001, 0x0017), 0x0100, 0x0101]
_SIGNATURES = [
    0x0401, 0x0501, 0x0601, 0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807, 0x0808,
    0x0201, 0x0203, 0x0202, 0x0402, 0x0502, 0x0602, 0x0101, 0x0301, 0x0303,
]  # fmt: skip
_ALERTS = {
    0x0A: "unexpected_message", 0x14: "bad_record_mac", 0x28: "handshake_failure",
    0x2F: "illegal_parameter", 0x32: "decode_error", 0x46: "protocol_version",
    0x47: "insufficient_security", 0x50: "internal_error", 0x56: "inappropriate_fallback",
    0x6D: "missing_extension", 0x70: "unrecognized_name",
}  # fmt: skip


def _client_hello(version: str) -> bytes:
    """A ClientHello for exactly `version` (SSLv3 to TLS 1.2) offering `_EVERY_SUITE`, with the
    extensions an ECC or TLS 1.2 server needs to choose a suite (none for SSLv3)."""
    major, minor = _RECORD_VERSION[version]
    extensions = b""
    if version != "SSLv3":
        groups = b"".join(struct.pack("!H", g) for g in _GROUPS)
        items = [
            (0x000A, struct.pack("!H", len(groups)) + groups),  # supported_groups
            (0x000B, b"\x01\x00"),  # ec_point_formats: uncompressed
        ]
        if version == "TLSv1.2":
            sigs = b"".join(struct.pack("!H", a) for a in _SIGNATURES)
            items.append((0x000D, struct.pack("!H", len(sigs)) + sigs))
        extensions = b"".join(struct.pack("!HH", k, len(v)) + v for k, v in items)
        extensions = struct.pack("!H", len(extensions)) + extensions
    body = (
        bytes((major, minor))
        + os.urandom(32)
        + b"\x00"
        + struct.pack("!H", 2 * len(_EVERY_SUITE))
        + b"".join(struct.pack("!H", s) for s in _EVERY_SUITE)
        + b"\x01\x00"
        + extensions
    )
    handshake = b"\x01" + struct.pack("!I", len(body))[1:] + body
    # The record layer says 3.1 at most, as clients do: some servers drop 3.3 records of a hello.
    record = (3, min(minor, 1)) if version != "SSLv3" else (3, 0)
    return bytes((0x16, *record)) + struct.pack("!H", len(handshake)) + handshake


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def probe_hello(address: str, port: int, version: str, timeout: float) -> dict[str, Any]:  # noqa: PLR0911
    """Offer every suite code at exactly `version` in a hand-made ClientHello and read the first
    answer: a ServerHello for that version means the server accepts it (no handshake needed to
    know); alert protocol_version means it refuses it. `tls_answer` says whether the peer spoke
    TLS at all."""
    want = _RECORD_VERSION[version]
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(_client_hello(version))
            header = _recv_exactly(sock, 5)
            if len(header) < 5:
                return {"outcome": "refused", "detail": "connection closed", "tls_answer": False}
            kind, length = header[0], header[3] << 8 | header[4]
            if kind == 0x15 and header[1] == 3:
                alert = _recv_exactly(sock, min(length, 2))
                code = alert[1] if len(alert) == 2 else -1
                name = _ALERTS.get(code, str(code))
                return {"outcome": "refused", "detail": f"alert {name}", "tls_answer": True,
                        "alert": code}  # fmt: skip
            if kind != 0x16 or header[1] != 3:
                return {"outcome": "refused", "detail": "not TLS", "tls_answer": False}
            payload = _recv_exactly(sock, min(length, 80))
            if len(payload) >= 6 and payload[0] == 0x02:
                got = (payload[4], payload[5])
                suite = ""
                if len(payload) >= 39 and len(payload) >= 41 + payload[38]:
                    at = 39 + payload[38]
                    suite = f" suite 0x{payload[at]:02X}{payload[at + 1]:02X}"
                if got == want:
                    return {"outcome": "accepted", "detail": f"ServerHello {got[0]}.{got[1]}"
                            f"{suite}", "tls_answer": True}  # fmt: skip
                return {"outcome": "refused", "detail": f"ServerHello {got[0]}.{got[1]}",
                        "tls_answer": True}  # fmt: skip
            return {"outcome": "refused", "detail": "handshake record not a ServerHello",
                    "tls_answer": True}  # fmt: skip
    except OSError as exc:
        return {"outcome": "refused", "detail": _error_text(exc), "tls_answer": False}


_VERSION_REFUSED = (
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
    "TLSV1_ALERT_INAPPROPRIATE_FALLBACK",
)
_NOT_VERSION = (
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS_AVAILABLE",
    "NO_SUITABLE_SIGNATURE_ALGORITHM",
    "LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED",
)
"""Failures that say nothing about the version: no suite or signature in common."""


def probe_version(address: str, port: int, version: str, timeout: float) -> dict[str, Any]:  # noqa: PLR0911
    """Whether the service accepts `version` offered alone: `accepted` (with the cipher),
    `refused` (the server said so, or spoke no TLS), or `untested` when the handshake failed
    for another reason that even a ClientHello with every suite code could not settle."""
    if version == "SSLv3":
        # OpenSSL 3 cannot speak SSLv3; with every suite code offered, any refusal is the version.
        return probe_hello(address, port, version, timeout)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wanted = getattr(ssl.TLSVersion, _SSL_VERSIONS[version])
    try:
        if version != "TLSv1.3":
            # Every local cipher at level 0: OpenSSL 3 refuses TLS 1.0/1.1 and many legacy
            # suites at its default level, so a server that allows them would look compliant.
            context.set_ciphers(ALL_CIPHERS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = wanted
            context.maximum_version = wanted
    except (ValueError, ssl.SSLError) as exc:
        return {"outcome": "untested", "detail": f"this client cannot offer {version}: {exc}",
                "tls_answer": False}  # fmt: skip
    offered = len(context.get_ciphers())
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
        with raw, context.wrap_socket(raw) as tls:
            negotiated = tls.version()
            cipher = (tls.cipher() or ("?",))[0]
        if negotiated == version:
            return {"outcome": "accepted", "detail": f"{negotiated} {cipher}", "tls_answer": True}
        return {"outcome": "refused", "detail": f"negotiated {negotiated}", "tls_answer": True}
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = str(getattr(exc, "reason", "") or "")
        detail = _error_text(exc)
        if reason in _VERSION_REFUSED:
            return {"outcome": "refused", "detail": detail, "tls_answer": True}
        if reason not in _NOT_VERSION:
            return {"outcome": "refused", "detail": detail,
                    "tls_answer": "ALERT" in reason}  # fmt: skip
        if version == "TLSv1.3":  # the standard library offers only OpenSSL's default suites
            return {"outcome": "untested", "detail": f"no TLS 1.3 suite in common ({detail})",
                    "tls_answer": True}  # fmt: skip
    # No suite in common with what this OpenSSL has: ask again with every suite code there is.
    hello = probe_hello(address, port, version, timeout)
    if hello["outcome"] == "accepted" or hello.get("alert") == 0x46 or not hello["tls_answer"]:
        hello["detail"] = f"{detail}; every suite code: {hello['detail']}"
        return hello
    return {
        "outcome": "untested",
        "detail": f"no cipher in common ({detail} with the {offered} ciphers of this OpenSSL; "
        f"{hello['detail']} with every suite code)",
        "tls_answer": True,
    }


def op_tls(request: dict[str, Any]) -> dict[str, Any]:
    """Each target is first asked once whether it speaks TLS at all (a ClientHello with every
    suite code, which any TLS server answers with a ServerHello or an alert); only those that do
    get each version offered alone. Most open ports are not TLS, and some of them wait for their
    own protocol's first line until the timeout: asked five times each, they would bound the
    scan. At most 32 handshakes at once; each version costs at most two timeouts."""
    timeout = float(request.get("timeout", 5))
    versions = request.get("versions") or list(TLS_VERSIONS)
    targets = [(t["address"], int(t["port"])) for t in request.get("targets") or []]
    services: dict[str, dict[str, Any]] = {
        f"{address}:{port}": {"address": address, "port": port, "versions": []}
        for address, port in targets
    }
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(targets) * len(versions)))) as pool:
        first = list(pool.map(lambda t: probe_hello(t[0], t[1], "TLSv1.2", timeout), targets))
        jobs = []
        for (address, port), answer in zip(targets, first, strict=True):
            if answer["tls_answer"]:
                jobs += [(address, port, version) for version in versions]
                continue
            for version in versions:
                services[f"{address}:{port}"]["versions"].append(
                    {
                        "version": version,
                        "outcome": "refused",
                        "tls_answer": False,
                        "detail": f"no TLS ({answer['detail']})",
                    }
                )
        results = list(pool.map(lambda job: probe_version(job[0], job[1], job[2], timeout), jobs))
    for (address, port, version), result in zip(jobs, results, strict=True):
        services[f"{address}:{port}"]["versions"].append({"version": version, **result})
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
            # net-snmp stretches a short key for AES-192/256 (Blumenthal): pysnmp's plain
            # constants derive it Cisco's way and never talk to a net-snmp agent with SHA-1.
            "aes192": hlapi.USM_PRIV_CFB192_AES_BLUMENTHAL,
            "aes256": hlapi.USM_PRIV_CFB256_AES_BLUMENTHAL,
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
