"""The lab folder (LAB) and what it records: making it (modes and owners the daemons need) and
clearing it, LAB/state.json rewritten after every build step so a crashed build leaves a usable
trail, and the records `Lab.status()` and `Lab.down()` return.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collector.lab.configs import LabPaths
from collector.lab.host import LabError

STATE_VERSION = 1


@dataclass(frozen=True)
class DaemonStatus:
    name: str
    netns: str
    pid: int | None
    alive: bool


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    directory: str
    phase: str
    """`up`, `building` (or a crashed build), or `absent`."""
    namespaces: dict[str, bool]
    daemons: list[DaemonStatus]
    faults: list[str]

    @property
    def healthy(self) -> bool:
        return (
            self.phase == "up"
            and all(self.namespaces.values())
            and all(daemon.alive for daemon in self.daemons)
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


@dataclass(frozen=True)
class DownReport:
    namespaces: list[str]
    """Namespaces deleted."""
    stopped: int
    """Processes ended (they were inside a lab namespace)."""
    removed_dir: bool
    seconds: float


@dataclass
class State:
    """LAB/state.json: rewritten after every step, so a crashed build leaves a usable trail."""

    prefix: str
    directory: str
    persona: str
    phase: str = "building"
    namespaces: list[str] = field(default_factory=list)
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    version: int = STATE_VERSION


def load_state(paths: LabPaths) -> State | None:
    """The state file, or None when it is missing, unreadable or of another version."""
    try:
        raw = json.loads(paths.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
        return None
    known = State.__dataclass_fields__
    try:
        return State(**{key: value for key, value in raw.items() if key in known})
    except TypeError:
        return None


def save_state(paths: LabPaths, state: State) -> None:
    temporary = paths.state.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    temporary.replace(paths.state)


def prepare_folder(paths: LabPaths) -> None:
    """An empty lab folder with its marker and sub-folders; refuses a folder that is not one."""
    root = paths.root
    _check_traversable(root.parent)
    if root.exists():
        if not paths.marker.exists() and any(root.iterdir()):
            raise LabError(f"{root} is not empty and not a lab folder: choose another --dir")
        clear_folder(root, keep=())
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # sshd reads authorized_keys as the probe user; workers run as www-data
    paths.marker.write_text("medsec lab folder: `medsec lab down` removes it\n")
    for folder, mode in (
        (paths.run, 0o755),
        (paths.run / "apache", 0o755),
        (paths.logs, 0o755),
        (paths.pki, 0o755),
        (paths.ssh, 0o755),
        (paths.apache, 0o755),
        (paths.nginx, 0o755),
        (paths.snmp, 0o700),
        (paths.snmp / "persist", 0o700),
    ):
        folder.mkdir(exist_ok=True)
        folder.chmod(mode)
    for folder in (
        paths.apache / "modsec-data",
        paths.apache / "modsec-tmp",
        *(
            paths.nginx / "temp" / kind
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "www-data", "www-data")


def _check_traversable(folder: Path) -> None:
    """sshd (as the probe user) and the web servers' workers (www-data) must reach LAB."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists() and not ancestor.stat().st_mode & stat.S_IXOTH:
            raise LabError(
                f"{ancestor} is not traversable by other users (mode "
                f"{stat.filemode(ancestor.stat().st_mode)}): put the lab folder elsewhere"
            )


def clear_folder(root: Path, keep: Iterable[str]) -> None:
    """Remove everything inside `root` except the entries named in `keep`."""
    kept = set(keep)
    for entry in root.iterdir():
        if entry.name in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
