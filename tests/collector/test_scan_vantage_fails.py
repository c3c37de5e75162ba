"""A vantage that fails mid-scan, without root: an SSH host on loopback (paramiko's own server, a
real SSH peer in a thread of the test) that answers `id -u`, then, while nmap "runs", drops the
connection as a host that died would (`lost`), or ends the command without an exit status on a
live connection as sshd does for a command killed by a signal (`signal`).

What a user must see: the vantage names the lost connection (never paramiko's "exited -1"); the
facts that needed its results are unknown, not absent (net.tls_floor says `error`, not "no TLS
service found"); `medsec scan` prints its results, stores nothing, exits 4 and says in one line
which vantage failed and why. tests/faults/test_vantage_dies.py kills a real sshd the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest

from checks.model import Unavailable
from collector.scan.cli import EXIT_VANTAGE, add_scan_parser, run_scan
from collector.scan.runner import scan
from collector.scan.vantage import SshVantage, VantageError
from collector.scan.zones import SshVantageConfig, load_zones

CONFINE = "127.0.0.0/8"
NMAP_ARGV = ["nmap", "-n", "-oX", "-", "-sT", "-p", "T:22", "127.0.0.2"]


@dataclass
class SshHost:
    """An SSH server on 127.0.0.1 that fails the way `mode` says once nmap is asked for."""

    mode: str
    folder: Path
    port: int = 0
    commands: list[str] = field(default_factory=list)
    transports: list[paramiko.Transport] = field(default_factory=list)

    @property
    def key_file(self) -> Path:
        return self.folder / "probe_key"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    def config(self) -> SshVantageConfig:
        return SshVantageConfig(
            host="127.0.0.1",
            port=self.port,
            user="probe",
            key_file=str(self.key_file),
            known_hosts=str(self.known_hosts),
            connect_timeout_seconds=5,
        )


class _Server(paramiko.ServerInterface):
    def __init__(self, host: SshHost, client_key: paramiko.PKey, transport: paramiko.Transport):
        self.host, self.client_key, self.transport = host, client_key, transport

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "probe" and key == self.client_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED  # the vantage opens one kind only: a remote command's

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode()
        self.host.commands.append(text)
        threading.Thread(target=self._answer, args=(channel, text), daemon=True).start()
        return True

    def _answer(self, channel: paramiko.Channel, command: str) -> None:
        # The client sends EOF once it has the exec request's reply (`SshVantage._talk`); an
        # answer before that reply could close the channel under a waiting `exec_command`.
        deadline = time.monotonic() + 10
        while not channel.eof_received and time.monotonic() < deadline:
            time.sleep(0.01)
        if command == "id -u":
            channel.sendall(b"1000\n")  # not root: a connect scan
            channel.send_exit_status(0)
            channel.close()
            return
        channel.sendall_stderr(b"medsec-pid 4242\n")  # as `SshVantage._wrap` has it say
        time.sleep(0.3)  # nmap is running
        if self.host.mode == "lost":
            self.transport.close()  # the host died: the connection goes with every channel
        else:
            channel.close()  # no exit status, the connection stays


@pytest.fixture(params=["lost"])
def ssh_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SshHost]:
    host = SshHost(request.param, tmp_path)
    host_key = paramiko.Ed25519Key.from_private_key_file(str(_ed25519(tmp_path / "host_key")))
    client_key = paramiko.Ed25519Key.from_private_key_file(str(_ed25519(host.key_file)))
    listener = socket.create_server(("127.0.0.1", 0))
    host.port = listener.getsockname()[1]
    host.known_hosts.write_text(
        f"[127.0.0.1]:{host.port} {host_key.get_name()} {host_key.get_base64()}\n",
        encoding="utf-8",
    )

    listener.settimeout(0.05)
    over = threading.Event()

    def serve() -> None:
        while not over.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            host.transports.append(transport)
            transport.start_server(server=_Server(host, client_key, transport))

    thread = threading.Thread(target=serve, name="ssh-host", daemon=True)
    thread.start()
    try:
        yield host
    finally:
        over.set()
        thread.join(5)
        listener.close()
        for transport in host.transports:
            transport.close()


def _ed25519(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _run_nmap(host: SshHost) -> Any:
    vantage = SshVantage("office", host.config())

    async def run() -> Any:
        try:
            return await vantage.run_nmap(NMAP_ARGV, timeout=20, total_hosts=1)
        finally:
            await vantage.close()

    return asyncio.run(run())


def test_a_connection_lost_while_nmap_runs_is_named(ssh_host: SshHost) -> None:
    started = time.monotonic()
    with pytest.raises(VantageError) as raised:
        _run_nmap(ssh_host)
    assert str(raised.value) == "ssh:probe@127.0.0.1: the SSH connection was lost while nmap ran"
    assert time.monotonic() - started < 10  # not the nmap timeout
    assert any("nmap" in c for c in ssh_host.commands)


@pytest.mark.parametrize("ssh_host", ["signal"], indirect=True)
def test_a_command_ended_by_a_signal_on_a_live_connection_is_an_nmap_error(
    ssh_host: SshHost,
) -> None:
    result = _run_nmap(ssh_host)
    assert result.status == "error"
    assert result.message == "nmap exited -1: ended by a signal on 127.0.0.1 (no exit status)"


def _zones(folder: Path, host: SshHost, *, local: bool) -> Path:
    """office (127.0.0.2) scanned from the SSH host; servers (127.0.0.1) from here when
    `local`, else from nowhere. One port, closed on both: nothing there speaks TLS."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    servers = "\n    vantage: {kind: local}" if local else ""
    path = folder / "zones.yaml"
    path.write_text(
        f"""zones:
  - name: servers
    cidrs: ["127.0.0.1/32"]
    critical: true{servers}
  - name: office
    cidrs: ["127.0.0.2/32"]
    users: true
    vantage:
      kind: ssh
      host: 127.0.0.1
      port: {host.port}
      user: probe
      key_file: {host.key_file}
      known_hosts: {host.known_hosts}
      connect_timeout_seconds: 5
scan:
  ports: listed
  extra_ports: ["tcp/{closed}"]
  timing: 4
""",
        encoding="utf-8",
    )
    return path


def _scan_cli(zones: Path, *extra: str) -> tuple[int, str, str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser()
    add_scan_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["scan", "--zones", str(zones), "--confine", CONFINE, "--no-progress", *extra]
    )
    out, err, stored = io.StringIO(), io.StringIO(), []
    code = run_scan(args, store=stored.append, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue(), stored


def test_medsec_scan_whose_only_vantage_dies_stores_nothing_and_says_why(
    ssh_host: SshHost, tmp_path: Path
) -> None:
    zones = _zones(tmp_path, ssh_host, local=False)
    code, out, err, stored = _scan_cli(zones, "--format", "json", "--store")
    assert code == EXIT_VANTAGE == 4
    assert stored == []
    assert err == (
        "medsec scan: a vantage failed, the scan is incomplete: zone office, vantage "
        "ssh:probe@127.0.0.1: the SSH connection was lost while nmap ran (not stored)\n"
    )
    document = json.loads(out)  # the results are still shown
    [run] = document["runs"]
    assert (run["zone"], run["status"]) == ("office", "error")
    results = {(r["check_id"], r["target"]): r for r in document["results"]}
    tls = results[("net.tls_floor", None)]
    assert tls["status"] == "error", tls  # unknown, not "no TLS service found"
    assert "the SSH connection was lost while nmap ran" in tls["message"]
    # Nothing was measured: no check may pass, and none may call itself not applicable when
    # the zones file asks for it (a critical zone and a user zone: segmentation, ZTNA, ...).
    assert not [k for k, r in results.items() if r["status"] == "pass"]
    for check in ("net.segmentation", "net.tls_floor", "net.border_firewall"):
        assert {r["status"] for k, r in results.items() if k[0] == check} == {"error"}, check


@pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap (Debian: nmap)")
def test_a_vantage_lost_beside_one_that_scanned_leaves_tls_unknown(
    ssh_host: SshHost, tmp_path: Path
) -> None:
    zones = load_zones(_zones(tmp_path, ssh_host, local=True), confine=(CONFINE,))
    facts = asyncio.run(scan(zones, confine=(CONFINE,)))
    runs = {r.zone: r for r in facts.runs}
    assert runs["servers"].status == "ok", runs["servers"]
    assert runs["office"].status == "error"
    assert not isinstance(facts.matrix, Unavailable)  # what servers saw is kept
    assert isinstance(facts.tls, Unavailable)
    assert facts.tls.reason == (
        "no TLS service found, but not every vantage scanned: office: "
        "ssh:probe@127.0.0.1: the SSH connection was lost while nmap ran"
    )
    code, _, err, stored = _scan_cli(_zones(tmp_path, ssh_host, local=True), "--store")
    assert (code, stored) == (EXIT_VANTAGE, [])
    assert err.count("\n") == 1
