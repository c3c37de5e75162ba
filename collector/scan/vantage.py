"""Vantage points: where nmap and the probes run from, inside a zone.

`LocalVantage` runs them here, `NetnsVantage` here inside a named network namespace (`ip netns
exec NS`: lab and tests), `SshVantage` on a host inside the zone over SSH (paramiko: key auth,
the host key checked against the given known_hosts with `RejectPolicy`, nmap's XML streamed back,
the stdlib probe helper shipped on stdin). All three give the same `NmapResult` and probe answers,
so the runner does not care which one it has.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from collector.scan.nmap import (
    SYSTEM_PATH,
    NmapError,
    NmapResult,
    NmapXmlParser,
    ProgressCallback,
    finish,
    is_root,
    nmap_binary,
    run_nmap_process,
    spawn,
)
from collector.scan.zones import (
    LocalVantageConfig,
    NetnsVantageConfig,
    ProbeVantageConfig,
    SshVantageConfig,
    VantageConfig,
)

if TYPE_CHECKING:
    import paramiko

PROBE_SCRIPT = Path(__file__).with_name("probe_cli.py")
_PID_LINE = re.compile(rb"medsec-pid (\d+)\n")
"""What `SshVantage._wrap` writes to stderr first: the remote command's pid."""
_NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000


class VantageError(Exception):
    """A vantage could not be reached or could not run a command; one line."""


class Vantage(Protocol):
    zone: str

    @property
    def description(self) -> str: ...

    @property
    def nmap(self) -> str:
        """The nmap program as the vantage names it."""
        ...

    async def privileged(self) -> bool:
        """Whether raw-socket scans (SYN, UDP, ACK) are possible."""
        ...

    async def run_nmap(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        total_hosts: int,
        on_progress: ProgressCallback | None = None,
    ) -> NmapResult: ...

    async def probe(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """Run the probe helper with one request; its JSON answer."""
        ...

    async def close(self) -> None: ...


def _decode_answer(stdout: bytes, stderr: bytes, code: int | None, where: str) -> dict[str, Any]:
    try:
        answer = json.loads(stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        problem = stderr.decode("utf-8", "replace").strip().splitlines()
        raise VantageError(
            f"probe helper on {where} failed (exit {code}): "
            + (problem[-1] if problem else "no output")
        ) from None
    if not isinstance(answer, dict):
        raise VantageError(f"probe helper on {where} answered {type(answer).__name__}")
    return answer


class _ProcessVantage:
    """A vantage that runs programs as local subprocesses, optionally behind an argv prefix."""

    zone: str

    def __init__(self, zone: str, prefix: Sequence[str] = ()) -> None:
        self.zone = zone
        self._prefix = list(prefix)

    @property
    def description(self) -> str:
        return "local"

    @property
    def nmap(self) -> str:
        return nmap_binary()

    async def privileged(self) -> bool:
        return is_root()

    async def run_nmap(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        total_hosts: int,
        on_progress: ProgressCallback | None = None,
    ) -> NmapResult:
        return await run_nmap_process(
            [*self._prefix, *argv],
            nmap_argv=argv,
            timeout=timeout,
            total_hosts=total_hosts,
            on_progress=on_progress,
        )

    async def probe(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        argv = [*self._prefix, sys.executable, "-I", str(PROBE_SCRIPT)]
        try:
            process = await spawn(argv, stdin=asyncio.subprocess.PIPE)
        except NmapError as exc:
            raise VantageError(f"probe helper on {self.description}: {exc}") from None
        talking = asyncio.ensure_future(process.communicate(json.dumps(request).encode()))
        try:
            stdout, stderr = await asyncio.wait_for(asyncio.shield(talking), timeout)
        except TimeoutError:
            raise VantageError(
                f"probe helper on {self.description}: no answer in {timeout:.0f} s"
            ) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            # Let the pipes reach their end so their transports close with the process.
            with contextlib.suppress(Exception):
                await talking
        return _decode_answer(stdout, stderr, process.returncode, self.description)

    async def close(self) -> None:
        return None


class LocalVantage(_ProcessVantage):
    """nmap and the probes run on this machine, which sits in the zone."""

    def __init__(self, zone: str) -> None:
        super().__init__(zone)


class NetnsVantage(_ProcessVantage):
    """nmap and the probes run here inside a named network namespace (lab and tests)."""

    def __init__(self, zone: str, netns: str) -> None:
        if not os.path.exists(os.path.join(_NETNS_DIR, netns)):
            raise VantageError(f"network namespace {netns!r} does not exist")
        ip = shutil.which("ip", path=SYSTEM_PATH)
        if ip is None:
            raise VantageError("ip is not installed (Debian package iproute2)")
        super().__init__(zone, [ip, "netns", "exec", netns])
        self.netns = netns

    @property
    def description(self) -> str:
        return f"netns:{self.netns}"


# --- SSH ----------------------------------------------------------------------------------------


def socket_in_netns(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection opened from inside a network namespace: one short-lived thread joins
    it with setns(2); the socket keeps that namespace for life, the process stays where it is."""
    path = os.path.join(_NETNS_DIR, netns)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns {path}: {os.strerror(code)}")
            finally:
                os.close(fd)
            made.append(socket.create_connection((host, port), timeout=timeout))
        except BaseException as exc:  # handed to the caller below
            failed.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class SshVantage:
    """nmap and the probes run on a host inside the zone, over one SSH connection.

    The host key must be in the given known_hosts (RejectPolicy: an unknown or changed key
    refuses the connection); authentication is the configured key only (no agent, no other
    keys). paramiko blocks, so every command runs in a worker thread that also watches for the
    deadline and for cancellation, closing the channel when either comes; the remote command is
    wrapped in `timeout` so nothing outlives the scan on the remote host.
    """

    def __init__(self, zone: str, config: SshVantageConfig) -> None:
        self.zone = zone
        self.config = config
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._privileged: bool | None = None

    @property
    def description(self) -> str:
        return f"ssh:{self.config.user}@{self.config.host}"

    @property
    def nmap(self) -> str:
        return self.config.nmap

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        with self._lock:
            if self._client is not None:
                return self._client
            cfg = self.config
            sock: socket.socket | None = None
            try:
                if cfg.via_netns is not None:
                    sock = socket_in_netns(
                        cfg.via_netns, cfg.host, cfg.port, cfg.connect_timeout_seconds
                    )
                client = paramiko.SSHClient()
                client.load_host_keys(cfg.known_hosts)
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
                client.connect(
                    cfg.host,
                    port=cfg.port,
                    username=cfg.user,
                    key_filename=cfg.key_file,
                    look_for_keys=False,
                    allow_agent=False,
                    sock=sock,
                    timeout=cfg.connect_timeout_seconds,
                    banner_timeout=cfg.connect_timeout_seconds,
                    auth_timeout=cfg.connect_timeout_seconds,
                )
            except paramiko.BadHostKeyException as exc:
                raise VantageError(
                    f"{self.description}: host key does not match {cfg.known_hosts}: refused"
                ) from exc
            except paramiko.SSHException as exc:
                if sock is not None:
                    sock.close()
                raise VantageError(f"{self.description}: {exc}") from exc
            except OSError as exc:
                if sock is not None:
                    sock.close()
                raise VantageError(
                    f"{self.description}: cannot connect: {exc.strerror or exc}"
                ) from exc
            self._client = client
            return client

    def _exec(
        self,
        command: str,
        *,
        what: str,
        stdin: bytes | None,
        deadline: float,
        cancel: threading.Event,
        on_stdout: Callable[[bytes], None],
    ) -> tuple[int | None, bytes, str]:
        """Run one remote command (`what` names it to a person); (exit status or None when
        stopped, stderr, why stopped). `VantageError` when the connection is closed or lost."""
        import paramiko

        client = self._connect()
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise VantageError(f"{self.description}: the SSH connection is closed")
        lost = f"{self.description}: the SSH connection was lost while {what} ran"
        try:
            status, stderr, stopped = self._talk(
                transport,
                command,
                stdin=stdin,
                deadline=deadline,
                cancel=cancel,
                on_stdout=on_stdout,
            )
        except (paramiko.SSHException, OSError) as exc:
            # A channel that cannot be opened or written to (a host frozen, a link gone).
            if _lost(transport):
                raise VantageError(lost) from exc
            raise VantageError(f"{self.description}: {what}: {exc}") from exc
        if status == -1 and _lost(transport):
            # paramiko's -1: the channel closed without an exit status, here because the
            # connection went (the host died or rebooted, a link dropped), not the command.
            raise VantageError(lost)
        return status, self._settle(transport, stderr, stopped), stopped

    def _talk(
        self,
        transport: paramiko.Transport,
        command: str,
        *,
        stdin: bytes | None,
        deadline: float,
        cancel: threading.Event,
        on_stdout: Callable[[bytes], None],
    ) -> tuple[int | None, bytes, str]:
        """One channel: the command, its stdin, its output until it ends or is stopped."""
        channel = transport.open_session(timeout=self.config.connect_timeout_seconds)
        stderr = b""
        stopped = ""
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                if cancel.is_set():
                    stopped = "cancelled"
                    break
                if time.monotonic() > deadline:
                    stopped = "timeout"
                    break
                busy = False
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(65536)
                    busy = True
                while channel.recv_ready():
                    on_stdout(channel.recv(65536))
                    busy = True
                if channel.exit_status_ready() and not channel.recv_ready():
                    while channel.recv_stderr_ready():
                        stderr += channel.recv_stderr(65536)
                    break
                if not busy:
                    time.sleep(0.02)
            status = None if stopped else channel.recv_exit_status()
        finally:
            channel.close()
        return status, stderr, stopped

    def _settle(self, transport: paramiko.Transport, stderr: bytes, stopped: str) -> bytes:
        """stderr without the pid line; a command stopped early is ended by that pid."""
        found = _PID_LINE.search(stderr)
        if found is None:
            return stderr
        if stopped:
            self._stop_remote(transport, int(found.group(1)))
        return stderr[: found.start()] + stderr[found.end() :]

    def _stop_remote(self, transport: paramiko.Transport, pid: int) -> None:
        """End a command whose channel was closed early. Without a terminal nothing tells it
        the channel is gone until it next writes, and a scan of a thousand ports may not write
        for a long while: it is signalled by the pid it reported (`_wrap`); `timeout`, when it
        stands in between, passes the signal on to nmap."""
        with contextlib.suppress(Exception):
            channel = transport.open_session(timeout=self.config.connect_timeout_seconds)
            try:
                channel.exec_command(f"kill -TERM {pid} 2>/dev/null")
                deadline = time.monotonic() + self.config.connect_timeout_seconds
                while not channel.exit_status_ready() and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                channel.close()

    async def _run(
        self,
        command: str,
        *,
        what: str,
        stdin: bytes | None,
        timeout: float,
        on_stdout: Callable[[bytes], None],
    ) -> tuple[int | None, bytes, str]:
        cancel = threading.Event()
        deadline = time.monotonic() + timeout
        worker = asyncio.ensure_future(
            asyncio.to_thread(
                self._exec,
                command,
                what=what,
                stdin=stdin,
                deadline=deadline,
                cancel=cancel,
                on_stdout=on_stdout,
            )
        )
        try:
            return await asyncio.shield(worker)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker, 5)
            raise

    def _wrap(self, argv: Sequence[str], timeout: float, *, sudo: bool) -> str:
        seconds = max(1, int(timeout))
        inner = (["sudo", "-n"] if sudo else []) + list(argv)
        # Bound the remote process too, so a dropped connection leaves nothing running; and
        # name its pid first (`exec` keeps it), so a cancelled scan can stop it at once.
        return (
            'echo "medsec-pid $$" >&2; '
            f"if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 {seconds} "
            f"{shlex.join(inner)}; else exec {shlex.join(inner)}; fi"
        )

    async def privileged(self) -> bool:
        if self._privileged is not None:
            return self._privileged
        out: list[bytes] = []
        code, _, _ = await self._run(
            "id -u",
            what="id -u",
            stdin=None,
            timeout=self.config.connect_timeout_seconds,
            on_stdout=out.append,
        )
        root = code == 0 and b"".join(out).strip() == b"0"
        if not root and self.config.sudo:
            code, _, _ = await self._run(
                "sudo -n true",
                what="sudo -n true",
                stdin=None,
                timeout=self.config.connect_timeout_seconds,
                on_stdout=out.append,
            )
            root = code == 0
        self._privileged = root
        return root

    async def run_nmap(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        total_hosts: int,
        on_progress: ProgressCallback | None = None,
    ) -> NmapResult:
        loop = asyncio.get_running_loop()

        def progress(fraction: float, note: str) -> None:
            if on_progress is not None:
                loop.call_soon_threadsafe(on_progress, fraction, note)

        parser = NmapXmlParser(total_hosts=total_hosts, on_progress=progress)
        sudo = self.config.sudo and await self.privileged()
        command = self._wrap(argv, timeout, sudo=sudo)
        started = time.monotonic()
        code, stderr, stopped = await self._run(
            command, what="nmap", stdin=None, timeout=timeout, on_stdout=parser.feed
        )
        text = stderr.decode("utf-8", "replace")
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith("Warning:")]
        if code == 127:
            lines.append(f"{self.config.nmap}: not found on {self.config.host}")
        elif code == -1:  # on a live connection: sshd sent exit-signal, which paramiko drops
            lines.append(f"ended by a signal on {self.config.host} (no exit status)")
        return finish(
            argv,
            parser,
            returncode=code,
            stderr=text,
            problem=lines[-1] if lines else "no output on stderr",
            started=started,
            timed_out=stopped == "timeout",
            cancelled=stopped == "cancelled",
            command=f"ssh {self.config.user}@{self.config.host} {command}",
        )

    async def probe(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        if request.get("op") == "snmp":
            raise VantageError(f"{self.description}: SNMP probes need a local or netns vantage")
        encoded = base64.b64encode(json.dumps(request).encode()).decode()
        command = self._wrap([self.config.python, "-I", "-", encoded], timeout, sudo=False)
        out: list[bytes] = []
        code, stderr, stopped = await self._run(
            command,
            what="the probe helper",
            stdin=PROBE_SCRIPT.read_bytes(),
            timeout=timeout,
            on_stdout=out.append,
        )
        if stopped:
            raise VantageError(f"probe helper on {self.description}: {stopped}")
        return _decode_answer(b"".join(out), stderr, code, self.description)

    async def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


def _lost(transport: paramiko.Transport, settle: float = 1.0) -> bool:
    """Whether the SSH connection is gone. paramiko closes the channels of a dropped connection
    a moment before it marks the transport inactive, so a just-closed channel waits for that;
    a live connection (the remote command died of a signal: no exit status either) costs
    `settle` seconds once."""
    deadline = time.monotonic() + settle
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def make_vantage(zone: str, config: VantageConfig) -> Vantage:
    """The vantage a zones file entry describes. Probe vantages are not made here: they need
    the collector's job queue, which the scan opens and hands to `ProbeVantage` itself."""
    if isinstance(config, LocalVantageConfig):
        return LocalVantage(zone)
    if isinstance(config, NetnsVantageConfig):
        return NetnsVantage(zone, config.netns)
    if isinstance(config, SshVantageConfig):
        return SshVantage(zone, config)
    if isinstance(config, ProbeVantageConfig):
        # A probe's jobs go through the collector's database: the scan makes these vantages
        # with its job queue (collector/scan/probe_vantage.py, `probe_vantages`).
        raise VantageError(
            f"zone {zone} has a probe vantage: the scan needs the collector's job queue for it "
            "(run it with --config, or from the collector)"
        )
    raise NmapError(f"unknown vantage kind {type(config).__name__}")
