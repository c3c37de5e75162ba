"""TLS: the self-signed pair `medsec init` makes, and the floor the server enforces — proven with
a real handshake against a real uvicorn, next to a control server whose floor was lowered (so the
refusal is ours, not the client's or the system OpenSSL's)."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from collector.serve import HardenedConfig
from collector.tls import (
    TLS12_CIPHERS,
    TlsError,
    make_self_signed,
    server_ssl_context,
    uvicorn_config,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    cert, key = folder / "tls" / "cert.pem", folder / "tls" / "key.pem"
    make_self_signed(cert, key, ["collector.hospital.example", "192.0.2.10"])
    return cert, key


def test_the_pair(pair: tuple[Path, Path]) -> None:
    cert_path, key_path = pair
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "collector.hospital.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("192.0.2.10"),
    ]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=729) < lifetime < timedelta(days=731)
    assert cert.not_valid_before_utc <= datetime.now(UTC)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(key_path.parent.glob(".*")) == []  # no temporary file left behind


def test_the_key_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        make_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_making_it_again_replaces_the_files_atomically(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    make_self_signed(cert, key)
    first_key, first_inode = key.read_bytes(), key.stat().st_ino
    make_self_signed(cert, key)
    assert key.read_bytes() != first_key
    assert key.stat().st_ino != first_inode  # renamed over, never rewritten in place


def test_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(TlsError, match="cannot write the TLS pair") as info:
        make_self_signed(blocker / "c.pem", blocker / "k.pem")
    assert "\n" not in str(info.value)


def test_server_context(pair: tuple[Path, Path]) -> None:
    context = server_ssl_context(*pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(("GCM" in n or "CHACHA20" in n) and n.startswith("ECDHE") for n in tls12), tls12
    with pytest.raises(TlsError, match="cannot load the TLS pair"):
        server_ssl_context(pair[0], pair[0])
    assert TLS12_CIPHERS


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _running(config: uvicorn.Config) -> Iterator[int]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield config.port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _tls11_handshake(port: int) -> str:
    """The protocol a TLS 1.0/1.1-only client (SECLEVEL=0) gets, or "refused"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return str(tls.version())
    except (ssl.SSLError, ConnectionResetError):
        return "refused"


def test_the_floor_is_tls_1_2(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    config = uvicorn_config(_hello, "127.0.0.1", _free_port(), cert, key, log_level="warning")
    # The TLS context lives in the hardened protocol (it times the handshake), not uvicorn's.
    assert isinstance(config, HardenedConfig)
    assert config.guard.tls is not None
    assert config.guard.tls.minimum_version == ssl.TLSVersion.TLSv1_2
    with _running(config) as port:
        assert _tls11_handshake(port) == "refused"
        tls12 = ssl.create_default_context(cafile=str(cert))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        tls12.verify_flags |= ssl.VERIFY_X509_STRICT
        with httpx.Client(verify=tls12) as client:
            for host in ("127.0.0.1", "localhost"):
                response = client.get(f"https://{host}:{port}/")
                assert response.status_code == 200
                assert response.text == "hello"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            tls12.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0].startswith("ECDHE-ECDSA-")


def test_control_a_lowered_floor_lets_tls_1_1_in(pair: tuple[Path, Path]) -> None:
    """Without this, "refused" above could be the client's or OpenSSL's doing, not ours."""
    cert, key = pair
    config = uvicorn.Config(
        _hello,
        host="127.0.0.1",
        port=_free_port(),
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_level="warning",
    )
    config.load()
    assert config.ssl is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1
    config.ssl.set_ciphers("DEFAULT:@SECLEVEL=0")
    with _running(config) as port:
        if _tls11_handshake(port) == "refused":
            pytest.skip("this OpenSSL cannot speak TLS 1.1 at all: the control proves nothing")
        assert _tls11_handshake(port) == "TLSv1.1"
