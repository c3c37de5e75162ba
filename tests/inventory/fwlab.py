"""A network-namespace lab for the firewall tests: one client namespace and, per batch, many
server namespaces (each joined to the client by its own veth, optionally with a "container"
namespace behind it for DNAT), rulesets loaded into the servers with the real tools (nft,
iptables-nft, iptables-legacy, ufw), and real TCP and UDP packets sent to a listening port.

Addresses come from 198.19.0.0/16 (inside 198.18.0.0/15) and fd00:198:19::/48 only, on links
between namespaces this module creates, with no route out; every namespace is deleted at the
end. ufw runs with its configuration in a temporary folder (`--datadir`) and, for the legacy
backend, in a private mount namespace whose /etc/alternatives points iptables at the legacy
tools: the host's own firewall and /etc/ufw are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from inventory.runner import CommandResult, LocalRunner

PORT = 47123  # the probed port: no generated rule names it
PUBLISHED = 47200  # the port DNAT cases publish
CONTAINER_PORT = 47201  # where the container listens for the published port
PROBE_WAIT_S = 0.35
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    pass


def tool(name: str) -> str | None:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def sh(
    argv: Sequence[str], stdin: str | None = None, *, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    exe = tool(argv[0])
    if exe is None:
        raise LabError(f"{argv[0]} is not installed")
    proc = subprocess.run(
        [exe, *argv[1:]],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block in network namespace `ns` (this thread only); sockets made there stay."""
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _LIBC.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        _LIBC.setns(home, CLONE_NEWNET)
        os.close(target)
        os.close(home)


class NetnsRunner(LocalRunner):
    """`LocalRunner` whose commands run inside network namespace `ns` (and, when `user` is set,
    as that unprivileged user, to meet the kernel's permission check)."""

    def __init__(self, ns: str, *, user: str | None = None, hide: Sequence[str] = ()) -> None:
        super().__init__()
        self.ns = ns
        self.user = user
        self.hide = tuple(hide)

    def which(self, name: str) -> str | None:
        if any(h in name for h in self.hide):
            return None
        return super().which(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        prefix = ["ip", "netns", "exec", self.ns]
        if self.user is not None:
            prefix += ["setpriv", f"--reuid={self.user}", "--regid=nogroup", "--clear-groups", "--"]
        return super().run(
            [*prefix, *argv], timeout=timeout, check=check, input_text=input_text, env=env
        )


# ----------------------------------------------------------------------------- rulesets

Step = tuple[str, ...]
"""How to load part of a ruleset into a server namespace:
("nft", TEXT) · ("restore", TOOL, TEXT) with TOOL one of iptables[-legacy]-restore,
ip6tables[-legacy]-restore · ("ufw", BACKEND, IPV6, DEFAULT, *RULES) · ("sysctl", KEY, VALUE)
· ("ipset", RESTORE_TEXT)."""


Probe = tuple[str, str, str, str]
"""(interface probed, family, protocol, "default" | "published")."""


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    container: bool = False
    """Needs a container namespace behind the server (DNAT cases)."""


def _ufw_defaults(ipv6: str) -> str:
    return "\n".join(
        [
            f"IPV6={ipv6}",
            'DEFAULT_INPUT_POLICY="DROP"',
            'DEFAULT_OUTPUT_POLICY="ACCEPT"',
            'DEFAULT_FORWARD_POLICY="DROP"',
            'DEFAULT_APPLICATION_POLICY="SKIP"',
            "MANAGE_BUILTINS=no",
            "IPT_SYSCTL=",  # ufw would otherwise apply its sysctl file
            'IPT_MODULES=""',
            "",
        ]
    )


class Ufw:
    """ufw confined to one namespace: its configuration in a temporary copy of the package's
    templates, the legacy backend through a private mount namespace."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.alternatives: Path | None = None
        self.datadirs: dict[str, Path] = {}
        self.lock = threading.Lock()
        self.alternatives_lock = threading.Lock()

    def _legacy_alternatives(self) -> Path:
        with self.alternatives_lock:
            return self._make_alternatives()

    def _make_alternatives(self) -> Path:
        if self.alternatives is None:
            alt = self.work / "alternatives"
            alt.mkdir()
            for entry in Path("/etc/alternatives").iterdir():
                if entry.is_symlink():
                    (alt / entry.name).symlink_to(os.readlink(entry))
            for name in ("iptables", "ip6tables"):
                for suffix in ("", "-restore", "-save"):
                    link = alt / f"{name}{suffix}"
                    if link.is_symlink():
                        link.unlink()
                    link.symlink_to(f"/usr/sbin/{name}-legacy{suffix}")
            self.alternatives = alt
        return self.alternatives

    def run(self, ns: str, backend: str, ipv6: str, default: str, rules: Sequence[str]) -> None:
        """`ufw default DEFAULT incoming`, each rule, then `ufw --force enable`, in `ns`. A second
        run for the same namespace changes the live firewall, as an admin's commands would."""
        with self.lock:
            data = self.datadirs.get(ns)
            if data is None:
                data = self.datadirs[ns] = self._datadir(ipv6)
        commands = [
            ["default", default, "incoming"],
            *[r.split() for r in rules],
            ["--force", "enable"],
        ]
        for command in commands:
            argv = ["ip", "netns", "exec", ns, "ufw", "--rootdir=/", f"--datadir={data}", *command]
            if backend == "legacy":
                argv = [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    'mount --bind "$1" /etc/alternatives && shift && exec "$@"',
                    "sh",
                    str(self._legacy_alternatives()),
                    *argv,
                ]
            sh(argv)

    def _datadir(self, ipv6: str) -> Path:
        data = Path(tempfile.mkdtemp(prefix="ufw-", dir=self.work))
        (data / "etc/ufw/applications.d").mkdir(parents=True)
        (data / "etc/default").mkdir(parents=True)
        (data / "lib/ufw").mkdir(parents=True)
        for rules_file in Path("/usr/share/ufw/iptables").glob("*.rules"):
            shutil.copy(rules_file.resolve(), data / "etc/ufw" / rules_file.name)
        shutil.copy("/usr/share/ufw/ufw.conf", data / "etc/ufw/ufw.conf")
        (data / "etc/default/ufw").write_text(_ufw_defaults(ipv6))
        return data


# ----------------------------------------------------------------------------- slots


def _mac(kind: int, index: int, side: int) -> str:
    return f"02:00:{kind:02x}:{index >> 8:02x}:{index & 0xFF:02x}:{side:02x}"


def _link(
    dev: str, mine: tuple[str, str, str], peer_mac: str, peer: tuple[str, str, str]
) -> list[str]:
    """`ip -batch` lines for one end of a lab link: a fixed link-local address instead of one
    waiting for duplicate detection, and the peer's addresses as permanent neighbours (so a
    ruleset that drops ARP or neighbour discovery cannot hide what it does to the probe)."""
    v4, v6, local = mine
    lines = [
        f"link set {dev} addrgenmode none",
        f"addr add {v4}/24 dev {dev}",
        f"addr add {v6}/64 dev {dev} nodad",
        f"addr add {local}/64 dev {dev} nodad",
        f"link set {dev} up",
    ]
    lines += [f"neigh replace {a} lladdr {peer_mac} dev {dev} nud permanent" for a in peer]
    return lines


@dataclass
class Slot:
    index: int
    server: str
    container: str | None
    client_if: str
    sockets: dict[tuple[str, str, str, int], socket.socket] = field(default_factory=dict)
    """(where: server|container, family, protocol, port) → listening socket."""

    def v4(self, host: int) -> str:
        return f"198.19.{self.index}.{host}"

    def v6(self, host: int) -> str:
        return f"fd00:198:19:{self.index:x}::{host}"

    def cv4(self, host: int) -> str:
        return f"198.19.{100 + self.index}.{host}"

    def cv6(self, host: int) -> str:
        return f"fd00:198:19:{0x100 + self.index:x}::{host}"


class Lab:
    """The client namespace lives as long as the lab; server slots live for one batch."""

    MAX_SLOTS = 96

    def __init__(self, work: Path) -> None:
        self.prefix = f"mfw{secrets.token_hex(3)}"
        self.client = f"{self.prefix}c"
        self.work = work
        self.ufw = Ufw(work)
        self.legacy_lock = threading.Lock()
        self.batch = 0
        self.packets = 0
        """Probe packets sent so far (first packets: SYNs and datagrams)."""
        sh(["ip", "netns", "add", self.client])
        sh(["ip", "-n", self.client, "link", "set", "lo", "up"])

    def close(self) -> None:
        sh(["ip", "netns", "delete", self.client], check=False)

    def open_slots(self, cases: Sequence[Case]) -> list[Slot]:
        if len(cases) > self.MAX_SLOTS:
            raise LabError("too many slots for one batch")
        self.batch += 1
        slots: list[Slot] = []
        root: list[str] = []
        client: list[str] = []
        for i, case in enumerate(cases):
            slot = Slot(
                i,
                f"{self.prefix}b{self.batch}s{i}",
                f"{self.prefix}b{self.batch}k{i}" if case.container else None,
                f"c{i}",
            )
            slots.append(slot)
            root.append(f"netns add {slot.server}")
            root.append(
                f"link add {slot.client_if} address {_mac(1, i, 1)} netns {self.client} type veth "
                f"peer name eth0 address {_mac(1, i, 2)} netns {slot.server}"
            )
            if slot.container:
                root.append(f"netns add {slot.container}")
                root.append(
                    f"link add ctr0 address {_mac(2, i, 1)} netns {slot.server} type veth "
                    f"peer name eth0 address {_mac(2, i, 2)} netns {slot.container}"
                )
            client += _link(
                slot.client_if,
                (slot.v4(1), slot.v6(1), "fe80::1"),
                _mac(1, i, 2),
                (slot.v4(2), slot.v6(2), "fe80::2"),
            )
            if slot.container:  # the server's other addresses, reached through its eth0
                client += [
                    f"route add {slot.cv4(0)}/24 via {slot.v4(2)}",
                    f"route add {slot.cv6(0)}/64 via {slot.v6(2)}",
                ]
        sh(["ip", "-batch", "-"], "\n".join(root) + "\n")
        sh(["ip", "-n", self.client, "-batch", "-"], "\n".join(client) + "\n")
        for slot in slots:
            self._configure(slot)
        return slots

    def _configure(self, slot: Slot) -> None:
        i = slot.index
        server = ["link set lo up"]
        server += _link(
            "eth0",
            (slot.v4(2), slot.v6(2), "fe80::2"),
            _mac(1, i, 1),
            (slot.v4(1), slot.v6(1), "fe80::1"),
        )
        if slot.container:
            server += _link(
                "ctr0",
                (slot.cv4(1), slot.cv6(1), "fe80::1"),
                _mac(2, i, 2),
                (slot.cv4(2), slot.cv6(2), "fe80::2"),
            )
            container = ["link set lo up"]
            container += _link(
                "eth0",
                (slot.cv4(2), slot.cv6(2), "fe80::2"),
                _mac(2, i, 1),
                (slot.cv4(1), slot.cv6(1), "fe80::1"),
            )
            container += [
                f"route add 198.19.0.0/16 via {slot.cv4(1)}",
                f"route add fd00:198:19::/48 via {slot.cv6(1)}",
            ]
            sh(["ip", "-n", slot.container, "-batch", "-"], "\n".join(container) + "\n")
        sh(["ip", "-n", slot.server, "-batch", "-"], "\n".join(server) + "\n")
        self._listen(slot, "server", slot.server, (PORT,))
        if slot.container:
            self._listen(slot, "container", slot.container, (PORT, CONTAINER_PORT))

    def _listen(self, slot: Slot, where: str, ns: str, ports: Sequence[int]) -> None:
        with inside(ns):
            for port in ports:
                for family, af, host in (
                    ("ipv4", socket.AF_INET, "0.0.0.0"),  # noqa: S104 — inside the lab namespace
                    ("ipv6", socket.AF_INET6, "::"),
                ):
                    for protocol, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
                        s = socket.socket(af, kind)
                        if af == socket.AF_INET6:
                            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind((host, port))
                        if kind == socket.SOCK_STREAM:
                            s.listen(64)
                        s.setblocking(False)
                        slot.sockets[(where, family, protocol, port)] = s

    def close_slots(self, slots: Sequence[Slot]) -> None:
        for slot in slots:
            for s in slot.sockets.values():
                s.close()
        client = [f"link del {s.client_if}" for s in slots]
        sh(["ip", "-n", self.client, "-batch", "-"], "\n".join(client) + "\n", check=False)
        root = [f"netns delete {s.server}" for s in slots]
        root += [f"netns delete {s.container}" for s in slots if s.container]
        sh(["ip", "-batch", "-"], "\n".join(root) + "\n", check=False)

    # ------------------------------------------------------------------------- loading

    def load(self, slot: Slot, case: Case) -> None:
        """Load the case's steps; `CTR4`/`CTR6` stand for the container's addresses and
        `{PORT}` for the probed port. Cases touching the legacy backend load one at a time:
        its lock (/run/xtables.lock) is one file for every namespace."""
        legacy = any("legacy" in part for step in case.steps for part in step[:2])
        with self.legacy_lock if legacy else contextlib.nullcontext():
            self._load(slot, case)

    def _load(self, slot: Slot, case: Case) -> None:
        for raw in case.steps:
            step = tuple(
                s.replace("CTR4", slot.cv4(2))
                .replace("CTR6", slot.cv6(2))
                .replace("{PORT}", str(PORT))
                for s in raw
            )
            kind = step[0]
            if kind == "nft":
                sh(["ip", "netns", "exec", slot.server, "nft", "-f", "-"], step[1])
            elif kind == "restore":
                sh(["ip", "netns", "exec", slot.server, step[1], "-w"], step[2])
            elif kind == "ufw":
                _, backend, ipv6, default, *rules = step
                self.ufw.run(slot.server, backend, ipv6, default, rules)
            elif kind == "ipset":
                sh(["ip", "netns", "exec", slot.server, "ipset", "restore"], step[1])
            elif kind == "sysctl":
                sh(["ip", "netns", "exec", slot.server, "sysctl", "-qw", f"{step[1]}={step[2]}"])
            else:
                raise LabError(f"unknown step {kind}")

    # ------------------------------------------------------------------------- probing

    def probe(self, slots: Sequence[Slot]) -> dict[int, dict[Probe, bool]]:
        """Per slot: (interface, family, protocol, "default"|"published") → did it get through.

        A TCP probe gets through when its SYN reaches a listening socket (the server's, or the
        container's after a DNAT): the socket then shows the probe's address and port as its
        peer, in SYN-RECV or later — whatever the ruleset does to the rest of the handshake, as a
        SYN scan would see it. A UDP probe gets through when a listener receives the datagram."""
        results: dict[int, dict[Probe, bool]] = {s.index: {} for s in slots}
        sources: dict[tuple[str, str, int], tuple[int, Probe]] = {}
        clients: list[socket.socket] = []
        try:
            for slot in slots:
                self._send(slot, results[slot.index], sources, clients)
            time.sleep(PROBE_WAIT_S)
            for slot in slots:
                for hit in self._arrived(slot, sources):
                    results[hit[0]][hit[1]] = True
        finally:
            for s in clients:
                s.close()
        return results

    def _send(
        self,
        slot: Slot,
        results: dict[Probe, bool],
        sources: dict[tuple[str, str, int], tuple[int, Probe]],
        clients: list[socket.socket],
    ) -> None:
        for ns, iface, family, address, scope_if, port, what in self._targets(slot):
            af = socket.AF_INET if family == "ipv4" else socket.AF_INET6
            with inside(ns):
                target: tuple[object, ...] = (address, port)
                if scope_if is not None:
                    target = (address, port, 0, socket.if_nametoindex(scope_if))
                for protocol, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
                    key = (iface, family, protocol, what)
                    results.setdefault(key, False)
                    s = socket.socket(af, kind)
                    s.setblocking(False)
                    clients.append(s)
                    self.packets += 1
                    if protocol == "tcp":
                        s.connect_ex(target)
                    else:
                        s.connect(target)  # fixes the source address, sends nothing
                        s.send(b"medsec-probe")
                    here = s.getsockname()
                    sources[(protocol, _plain(here[0]), here[1])] = (slot.index, key)

    def _arrived(
        self, slot: Slot, sources: dict[tuple[str, str, int], tuple[int, Probe]]
    ) -> list[tuple[int, Probe]]:
        hits: list[tuple[int, Probe]] = []
        for (_where, _family, protocol, _port), listener in slot.sockets.items():
            while protocol == "udp":
                try:
                    _, peer = listener.recvfrom(64)
                except BlockingIOError:
                    break
                hit = sources.get(("udp", _plain(peer[0]), peer[1]))
                if hit is not None:
                    hits.append(hit)
        for ns in (slot.server, slot.container):
            if ns is not None:
                with inside(ns):
                    for peer in _tcp_peers({PORT, CONTAINER_PORT}):
                        hit = sources.get(("tcp", *peer))
                        if hit is not None:
                            hits.append(hit)
        return hits

    def _targets(self, slot: Slot) -> list[tuple[str, str, str, str, str | None, int, str]]:
        """(namespace, interface probed, family, address, scope interface, port, what)."""
        targets: list[tuple[str, str, str, str, str | None, int, str]] = [
            (self.client, "eth0", "ipv4", slot.v4(2), None, PORT, "default"),
            (self.client, "eth0", "ipv6", slot.v6(2), None, PORT, "default"),
            (self.client, "eth0", "ipv6", "fe80::2", slot.client_if, PORT, "default"),
        ]
        if slot.container:
            # Each interface is probed for its own addresses and the other interface's (Linux
            # takes a packet for any local address on any interface).
            targets += [
                (self.client, "eth0", "ipv4", slot.cv4(1), None, PORT, "default"),
                (self.client, "eth0", "ipv6", slot.cv6(1), None, PORT, "default"),
                (slot.container, "ctr0", "ipv4", slot.cv4(1), None, PORT, "default"),
                (slot.container, "ctr0", "ipv6", slot.cv6(1), None, PORT, "default"),
                (slot.container, "ctr0", "ipv6", "fe80::1", "eth0", PORT, "default"),
                (slot.container, "ctr0", "ipv4", slot.v4(2), None, PORT, "default"),
                (slot.container, "ctr0", "ipv6", slot.v6(2), None, PORT, "default"),
                (self.client, "eth0", "ipv4", slot.v4(2), None, PUBLISHED, "published"),
                (self.client, "eth0", "ipv6", slot.v6(2), None, PUBLISHED, "published"),
            ]
        return targets


def _plain(address: str) -> str:
    """An address without its scope (`fe80::1%eth0`), in canonical form."""
    return str(ipaddress.ip_address(address.split("%", maxsplit=1)[0]))


def _tcp_peers(ports: set[int]) -> list[tuple[str, int]]:
    """Peers of this thread's namespace's TCP sockets on `ports` that are past LISTEN
    (/proc/net/tcp and tcp6 list SYN-RECV requests too)."""
    peers: list[tuple[str, int]] = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/thread-self/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "0A" or int(local.split(":")[1], 16) not in ports:
                continue
            host, port = remote.split(":")
            raw = bytes.fromhex(host)
            # Each 32-bit word is in host (little-endian) order.
            ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            peers.append((str(ipaddress.ip_address(ordered)), int(port, 16)))
    return peers
