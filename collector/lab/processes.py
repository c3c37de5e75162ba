"""The processes of a lab, found by the network namespace they live in (never by name, so a
developer's own apache or sshd is never touched): whether a daemon is alive inside its namespace,
every process inside a set of namespaces, and ending them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from collector.lab import netns as ns
from collector.lab.host import LabError


def read_pid(path: Path) -> int | None:
    """The pid a daemon wrote to its pid file; None while there is none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _namespace_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def alive_in(pid: int | None, netns_name: str) -> bool:
    """Whether `pid` runs, and inside that namespace (a reused pid elsewhere does not count)."""
    if pid is None or _is_zombie(pid):
        return False
    wanted = _namespace_id(ns.netns_path(netns_name))
    return wanted is not None and _namespace_id(f"/proc/{pid}/ns/net") == wanted


def processes_in(namespaces: Iterable[str]) -> list[int]:
    """Live processes whose network namespace is one of these (like `ip netns pids`)."""
    wanted = {ident for name in namespaces if (ident := _namespace_id(ns.netns_path(name)))}
    if not wanted:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if (
            entry.isdigit()
            and _namespace_id(f"/proc/{entry}/ns/net") in wanted
            and not _is_zombie(int(entry))
        ):
            found.append(int(entry))
    return found


def end_processes(namespaces: Sequence[str], grace: float = 3.0) -> int:
    """SIGTERM every process inside the namespaces, SIGKILL what is left after `grace`."""
    ended: set[int] = set()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = processes_in(namespaces)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        ended |= set(pids)
        deadline = time.monotonic() + wait
        while processes_in(namespaces) and time.monotonic() < deadline:
            time.sleep(0.02)
    left = processes_in(namespaces)
    if left:
        raise LabError(f"processes {left} inside {', '.join(namespaces)} did not end")
    return len(ended)
