"""The TLS version probe of the probe helper against real servers on loopback: `openssl s_server`
speaking TLS 1.0/1.1 only with CAMELLIA (outside OpenSSL's DEFAULT list) is seen accepting
both; a server that answers every ClientHello with a handshake_failure alert (as one sharing no
suite with the prober would) leaves the versions untested and is still reported as TLS; ports
that speak another protocol, or wait silently for one, are not TLS and cost one timeout each.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.scan import probe_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _by_version(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v["version"]: (v["outcome"], v["detail"]) for v in service["versions"]}


@pytest.fixture(scope="module")
def camellia_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    openssl = shutil.which("openssl", path="/usr/bin:/bin")
    if openssl is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    folder: Path = tmp_path_factory.mktemp("camellia")
    cert, key = folder / "c.pem", folder / "k.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=legacy"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
         "-key", str(key), "-cipher", "CAMELLIA:@SECLEVEL=0", "-min_protocol", "TLSv1",
         "-max_protocol", "TLSv1.1", "-www", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "s_server did not start"
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


class _Server:
    """A loopback TCP server answering each connection with `reply` (None: stays silent)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            if self.reply is None:
                self.held.append(connection)
                continue
            try:
                connection.recv(65536)
                connection.sendall(self.reply)
            except OSError:
                pass
            finally:
                connection.close()

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def server() -> Iterator[Any]:
    made: list[_Server] = []

    def make(reply: bytes | None) -> _Server:
        made.append(_Server(reply))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_camellia_only_legacy_tls_is_accepted(camellia_port: int) -> None:
    answer = probe_cli.op_tls({"targets": [{"address": "127.0.0.1", "port": camellia_port}],
                               "timeout": 5})  # fmt: skip
    versions = _by_version(answer["services"][0])
    assert versions["TLSv1"][0] == "accepted"
    assert "CAMELLIA" in versions["TLSv1"][1]
    assert versions["TLSv1.1"][0] == "accepted"
    assert {versions[v][0] for v in ("SSLv3", "TLSv1.2", "TLSv1.3")} == {"refused"}


def test_no_cipher_in_common_is_untested_not_refused(server: Any) -> None:
    failing = server(b"\x15\x03\x01\x00\x02\x02\x28")  # alert fatal handshake_failure
    answer = probe_cli.op_tls({"targets": [{"address": "127.0.0.1", "port": failing.port}],
                               "timeout": 5})  # fmt: skip
    versions = _by_version(answer["services"][0])
    # SSLv3 was offered every suite code: a handshake failure can only be the version.
    assert versions["SSLv3"] == ("refused", "alert handshake_failure")
    for version in ("TLSv1", "TLSv1.1", "TLSv1.2"):
        outcome, detail = versions[version]
        assert outcome == "untested"
        assert detail.startswith("no cipher in common (TLS: SSLV3_ALERT_HANDSHAKE_FAILURE with")
        assert detail.endswith("; alert handshake_failure with every suite code)")
    assert versions["TLSv1.3"][0] == "untested"
    assert all(v["tls_answer"] for v in answer["services"][0]["versions"])


def test_other_protocols_are_not_tls_and_cost_one_timeout(server: Any) -> None:
    http = server(b"HTTP/1.0 400 Bad Request\r\n\r\n")
    silent = server(None)
    started = time.monotonic()
    answer = probe_cli.op_tls(
        {"targets": [{"address": "127.0.0.1", "port": p} for p in (http.port, silent.port)],
         "timeout": 1.0}
    )  # fmt: skip
    assert time.monotonic() - started < 1.9  # one timeout for the silent port, not five
    for service in answer["services"]:
        assert {v["outcome"] for v in service["versions"]} == {"refused"}
        assert not any(v["tls_answer"] for v in service["versions"])
    details = {s["port"]: s["versions"][0]["detail"] for s in answer["services"]}
    assert details == {http.port: "no TLS (not TLS)", silent.port: "no TLS (timed out)"}
