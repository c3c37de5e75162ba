"""TLS for the collector: the self-signed pair `medsec init` makes, and the server's TLS settings.

The floor is TLS 1.2 with forward-secret AEAD suites only (TLS 1.3 suites are OpenSSL's, all
AEAD). `harden` is applied to whatever context serves the API — ours or the one uvicorn builds
from the certificate files — so the floor does not depend on the system's OpenSSL defaults.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

    from collector.settings import LimitSettings

VALIDITY = timedelta(days=730)
# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305 only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS:!PSK:!SRP"


class TlsError(Exception):
    """TLS material cannot be made or loaded. The message is one line."""


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` with `mode` from the first byte: a temporary file in the same folder,
    fsynced, renamed over the target. A reader never sees a half-written or too-open file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _san_entries(hostnames: Sequence[str]) -> list[Any]:
    from cryptography import x509

    entries: list[Any] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for name in hostnames:
        try:
            entry: Any = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name.lower())
        if entry not in entries:
            entries.append(entry)
    return entries


def make_self_signed(
    cert_path: Path, key_path: Path, hostnames: Sequence[str] = (), *, now: datetime | None = None
) -> None:
    """A self-signed EC P-256 certificate valid two years for localhost, 127.0.0.1 and
    `hostnames`; the key is written with mode 0600 before any byte of it lands on disk."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    moment = now or datetime.now(UTC)
    common_name = next(iter(hostnames), "localhost")[:64]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medsec collector"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(minutes=5))
        .not_valid_after(moment + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        key_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(key_path, key_pem, 0o600)
        _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise TlsError(f"cannot write the TLS pair: {exc.strerror}: {exc.filename}") from None


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """TLS 1.2 floor, forward-secret AEAD suites, no compression or renegotiation."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
        | ssl.OP_NO_RENEGOTIATION
    )
    return context


def server_ssl_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server context presenting the pair, hardened; raises `TlsError` when it cannot load."""
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the TLS pair {cert_file}, {key_file}: {exc}") from None
    return context


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    cert_file: str | Path,
    key_file: str | Path,
    *,
    log_level: str = "info",
    workers: int = 1,
    limits: LimitSettings | None = None,
) -> uvicorn.Config:
    """A uvicorn config serving `app` over hardened TLS within `limits` (the defaults when None:
    request head size, fields and time, connections per address; see `collector.api.limits`);
    loaded (its TLS context built and hardened here) for one process, left for each worker to
    load when `workers` > 1 (then `app` is an import string of an app factory).

    uvicorn builds its own context from the files (and has no option for the minimum version),
    so the config hardens that very context whenever it loads. No proxy headers: without a
    declared proxy, X-Forwarded-For would let a local client forge the source address the audit
    log records. No access log: every request is in the audit log already.
    """
    from collector.serve import HardenedConfig
    from collector.settings import LimitSettings

    server_ssl_context(cert_file, key_file)  # one clear TlsError before uvicorn's traceback
    config = HardenedConfig(
        app,
        limits=limits or LimitSettings(),
        host=host,
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        workers=workers,
        factory=workers > 1,
    )
    if workers == 1:
        config.load()
    return config
