"""Work inside a named network namespace without a subprocess: a short-lived thread joins the
namespace with setns(2) and runs one function there (open a socket, read /proc, write a sysctl).

Only that thread changes namespace and it ends with the function, so the calling process stays
where it was; a socket made there keeps its namespace for life, so the caller can use it (e.g.
hand it to paramiko as `sock=`). Needs CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

NETNS_RUN_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"

T = TypeVar("T")


class NetnsError(OSError):
    """The namespace does not exist or could not be joined."""


def netns_path(name: str) -> str:
    if not name or "/" in name or name in {".", ".."}:
        raise NetnsError(errno.EINVAL, f"bad namespace name {name!r}")
    return f"{NETNS_RUN_DIR}/{name}"


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NetnsError(errno.ENOENT, f"no network namespace {path}") from exc
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise NetnsError(code, f"setns {path}: {os.strerror(code)}")
    finally:
        os.close(fd)


def run_in_netns(name: str, function: Callable[[], T]) -> T:
    """`function()` run in a fresh thread inside the namespace; its result or its exception."""
    path = netns_path(name)
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _setns(path)
            result.append(function())
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def connect(name: str, host: str, port: int, timeout: float = 2.0) -> socket.socket:
    """A TCP connection opened from inside the namespace (OSError when refused or timed out)."""
    return run_in_netns(name, lambda: socket.create_connection((host, port), timeout=timeout))


def can_connect(name: str, host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        connect(name, host, port, timeout).close()
    except NetnsError:
        raise
    except OSError:
        return False
    return True


def _hex_address(text: str) -> tuple[str, int]:
    address, port = text.split(":")
    return socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)


def parse_proc_net(text: str, wanted_state: str) -> set[tuple[str, int]]:
    """Local (address, port) of the sockets in one state of a /proc/net/{tcp,udp} table."""
    found: set[tuple[str, int]] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == wanted_state:
            found.add(_hex_address(fields[1]))
    return found


def listening(name: str) -> set[tuple[str, str, int]]:
    """(proto, address, port) of every listening TCP and bound UDP IPv4 socket in the namespace."""

    def read() -> set[tuple[str, str, int]]:
        sockets: set[tuple[str, str, int]] = set()
        for proto, state in (("tcp", _TCP_LISTEN), ("udp", _UDP_UNCONNECTED)):
            with open(f"/proc/thread-self/net/{proto}", encoding="ascii") as table:
                sockets |= {(proto, a, p) for a, p in parse_proc_net(table.read(), state)}
        return sockets

    return run_in_netns(name, read)


def write_sysctls(name: str, values: dict[str, str], *, missing_ok: bool = False) -> None:
    """Set net.* sysctls of the namespace (keys in dotted form).

    `missing_ok` skips keys the kernel does not offer (net.bridge.* exists only once the
    br_netfilter module is loaded, and then the bridges need it switched off).
    """

    def write() -> None:
        for key, value in values.items():
            path = "/proc/sys/" + key.replace(".", "/")
            if missing_ok and not os.path.exists(path):
                continue
            with open(path, "w", encoding="ascii") as handle:
                handle.write(value)

    run_in_netns(name, write)
