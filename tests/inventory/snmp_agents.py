"""Real SNMP agents for the SNMP inventory tests: net-snmp's `snmpd` on a free loopback UDP port
(a v2c community, an SHA/AES v3 user, a vendor persona; optionally `public` too), snmpsim serving
the shared recordings of real devices (community = recording name), a UDP port that reads and
drops everything (a device that never answers), a relay that passes only an agent's first
answer (a device whose link fails mid-walk), and a network namespace of the test's own for a
sweep. Each skips with the reason when its program is missing; each is stopped and removed at
the end. Secrets are random per run and live in 0600 files, never on a command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
IP = shutil.which("ip") or "/usr/sbin/ip"
SNMPSIM = Path(sys.executable).with_name("snmpsim-command-responder")
RECORDINGS = Path(__file__).resolve().parents[3] / "shared" / "data" / "snmp-devices"
"""The labelled recordings beside the checkout (/work/shared/... for /work/main)."""

HILLSTONE = ("1.3.6.1.4.1.28557.1", "Hillstone StoneOS SG-6000-E3960 5.5R6")
"""A persona: the sysObjectID and sysDescr snmpd announces."""


def need_snmpd() -> None:
    if not os.path.exists(SNMPD):
        pytest.skip("snmpd is not installed (Debian package snmpd)")


def need_snmpsim() -> None:
    if not SNMPSIM.exists():
        pytest.skip("snmpsim is not installed in this environment (PyPI snmpsim)")
    if not RECORDINGS.is_dir():
        pytest.skip(f"the shared SNMP recordings are absent ({RECORDINGS})")


def free_udp_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def write_private(path: Path, text: str) -> Path:
    """A file only its owner may read (targets files and secret files)."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")
    return path


def _udp_bound(pid: int, port: int) -> bool:
    """Whether process `pid`'s network namespace has a UDP socket on `port` (its own
    /proc/PID/net/udp, so this works for a daemon inside another namespace)."""
    try:
        table = Path(f"/proc/{pid}/net/udp").read_text()
    except OSError:
        return False
    wanted = f":{port:04X}"
    return any(line.split()[1].endswith(wanted) for line in table.splitlines()[1:] if line.strip())


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- snmpd --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snmpd:
    """A running snmpd and what it was configured with (the test's own secrets). Its users:
    `user` (SHA, AES-128) and `user`256 (SHA, AES-256), both with the same keys."""

    address: str
    port: int
    community: str
    user: str
    auth_key: str
    priv_key: str
    sys_object_id: str
    sys_descr: str
    sys_name: str
    sys_location: str
    sys_contact: str
    sys_services: int
    public: bool
    folder: Path


def snmpd_conf(agent: Snmpd) -> str:
    return "\n".join(
        [
            f"agentAddress udp:{agent.address}:{agent.port}",
            f"sysObjectID {agent.sys_object_id}",
            f"sysDescr {agent.sys_descr}",
            f"sysName {agent.sys_name}",
            f"sysLocation {agent.sys_location}",
            f"sysContact {agent.sys_contact}",
            f"sysServices {agent.sys_services}",
            f"rocommunity {agent.community} default",
            *(["rocommunity public default"] if agent.public else []),
            f"createUser {agent.user} SHA {agent.auth_key} AES {agent.priv_key}",
            f"rouser {agent.user} priv",
            # AES-256 with a SHA-1 key: net-snmp stretches the key the Blumenthal way.
            f"createUser {agent.user}256 SHA {agent.auth_key} AES-256 {agent.priv_key}",
            f"rouser {agent.user}256 priv",
            "",
        ]
    )


@contextmanager
def run_snmpd(
    folder: Path,
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    public: bool = False,
    persona: tuple[str, str] = HILLSTONE,
    netns: str | None = None,
) -> Iterator[Snmpd]:
    """snmpd in the foreground (`-f`), its config and persistent state in `folder`, no MIBs
    loaded (Debian ships none), stopped at the end."""
    need_snmpd()
    folder.mkdir(parents=True, exist_ok=True)
    agent = Snmpd(
        address=address,
        port=port or free_udp_port(address),
        community="c" + secrets.token_hex(10),
        user="medsec",
        auth_key="a" + secrets.token_hex(10),
        priv_key="p" + secrets.token_hex(10),
        sys_object_id=persona[0],
        sys_descr=persona[1],
        sys_name="border-fw-01",
        sys_location="Data centre, rack B2",
        sys_contact="netops@hospital.test",
        sys_services=76,
        public=public,
        folder=folder,
    )
    conf, log = folder / "snmpd.conf", folder / "snmpd.log"
    write_private(conf, snmpd_conf(agent))
    argv = [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(log), "-p", str(folder / "pid")]
    if netns is not None:
        argv = [IP, "netns", "exec", netns, *argv]
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(folder / "persist")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while "NET-SNMP version" not in (log.read_text() if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read() if process.stderr else b""
                raise RuntimeError(f"snmpd did not start: {stderr.decode(errors='replace')}")
            time.sleep(0.05)
        yield agent
    finally:
        _stop(process)


# --- snmpsim ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snmpsim:
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the simulator has used so far (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def run_snmpsim(
    cache: Path, data: Path = RECORDINGS, *, address: str = "127.0.0.1", port: int | None = None
) -> Iterator[Snmpsim]:
    """snmpsim serving every `.snmprec` of `data` on one UDP port."""
    need_snmpsim()
    cache.mkdir(parents=True, exist_ok=True)
    port = port or free_udp_port(address)
    argv = [
        str(SNMPSIM),
        f"--data-dir={data}",
        f"--agent-udpv4-endpoint={address}:{port}",
        f"--cache-dir={cache}",
        "--logging-method=null",
    ]
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}  # it refuses root otherwise
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60  # it indexes every recording before it listens
        while not _udp_bound(process.pid, port):
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read() if process.stderr else b""
                raise RuntimeError(f"snmpsim did not start: {stderr.decode(errors='replace')}")
            time.sleep(0.05)
        yield Snmpsim(port, process.pid)
    finally:
        _stop(process)


def recordings() -> list[Path]:
    return sorted(RECORDINGS.glob("*.snmprec"))


# --- devices that misbehave ---------------------------------------------------------------------


@contextmanager
def silent_port(address: str = "127.0.0.1") -> Iterator[int]:
    """A UDP port that reads every datagram and answers none: a device that never answers
    (its packets are received, so no ICMP port-unreachable tells the sender anything)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    sock.settimeout(0.2)
    stop = threading.Event()
    received: list[int] = []

    def drain() -> None:
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                received.append(len(sock.recv(65535)))

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        sock.close()


@contextmanager
def first_answer_only(agent: tuple[str, int], forward: int = 1) -> Iterator[int]:
    """A UDP relay in front of a real agent that passes the first `forward` SNMPv2c requests
    (and their answers) and drops everything after: a link that fails mid-walk. The port."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front.settimeout(0.1)
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.settimeout(0.1)
    stop = threading.Event()

    def relay() -> None:
        client: tuple[str, int] | None = None
        passed = 0
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                data, sender = front.recvfrom(65535)
                if passed < forward and _is_v2c(data):
                    passed += 1
                    client = sender
                    back.sendto(data, agent)
            with suppress(TimeoutError, OSError):
                answer = back.recv(65535)
                if client is not None:
                    front.sendto(answer, client)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield int(front.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        front.close()
        back.close()


@contextmanager
def slow_link(agent: tuple[str, int], delay: float) -> Iterator[int]:
    """A UDP relay in front of a real agent that passes everything but holds each answer back
    `delay` seconds: a device far away or busy, answering every request, slowly. The port."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front.settimeout(0.05)
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.settimeout(0.05)
    stop = threading.Event()
    timers: list[threading.Timer] = []

    def answer(data: bytes, client: tuple[str, int]) -> None:
        with suppress(OSError):
            front.sendto(data, client)

    def relay() -> None:
        client: tuple[str, int] | None = None
        while not stop.is_set():
            with suppress(TimeoutError, OSError):
                data, client = front.recvfrom(65535)
                back.sendto(data, agent)
            with suppress(TimeoutError, OSError):
                data = back.recv(65535)
                if client is not None:
                    timer = threading.Timer(delay, answer, (data, client))
                    timer.daemon = True
                    timers.append(timer)
                    timer.start()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield int(front.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for timer in timers:
            timer.cancel()
        front.close()
        back.close()


def _is_v2c(message: bytes) -> bool:
    """An SNMP message's version field (SEQUENCE, then INTEGER version) is 1 (v2c)."""
    if len(message) < 5 or message[0] != 0x30:
        return False
    at = 2 if message[1] < 0x80 else 2 + (message[1] & 0x7F)
    return message[at : at + 3] == b"\x02\x01\x01"


# --- a namespace of the test's own --------------------------------------------------------------


def need_root_and_ip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (creates a network namespace)")
    if not os.path.exists(IP):
        pytest.skip("needs the ip command (iproute2)")


@contextmanager
def namespace(address_cidr: str) -> Iterator[str]:
    """A network namespace named after this test process, with loopback up and `address_cidr`
    on one end of a veth pair whose other end, up in the same namespace, holds no address: the
    rest of the CIDR is on a link where nobody answers, and there is no route out. Removed at
    the end."""
    need_root_and_ip()
    name = f"medsec-snmp-{os.getpid()}"
    subprocess.run([IP, "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        for argv in (
            [IP, "-n", name, "link", "set", "lo", "up"],
            [IP, "-n", name, "link", "add", "sweep0", "type", "veth", "peer", "name", "sweep1"],
            [IP, "-n", name, "addr", "add", address_cidr, "dev", "sweep0"],
            [IP, "-n", name, "link", "set", "sweep1", "up"],
            [IP, "-n", name, "link", "set", "sweep0", "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run([IP, "netns", "del", name], check=False, capture_output=True, timeout=10)
