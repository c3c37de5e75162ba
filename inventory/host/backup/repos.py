"""restic and borg repositories: the newest snapshot or complete archive, read with the tool's
own JSON listing. Secrets never pass through argv, the environment or medsec's memory: restic
gets `--password-file`, borg runs `cat FILE` as its `BORG_PASSCOMMAND`. Neither tool writes
caches into $HOME: restic runs with `--no-cache`, borg with `BORG_BASE_DIR` in a private
directory made (and removed) for the call, and in `TZ=UTC0` because borg 1.2 prints archive times
in local time without an offset.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from checks.facts.backup import BackupSource, BorgArchives, RecoveryPoint, ResticSnapshots
from inventory.host import jsontext
from inventory.host.backup.common import (
    ConfigMissing,
    ToolSaid,
    age,
    first_line,
    parse_timestamp,
    private_dir,
    require_file,
)
from inventory.runner import CommandFailed, Runner

# ----------------------------------------------------------------------------- restic


def parse_restic_snapshots(text: str, now: datetime) -> RecoveryPoint:
    """`restic snapshots --json`: the newest snapshot by `time` over every host and path.

    Not `--latest 1`: that keeps one snapshot per host/path group, not the newest overall.
    """
    data = jsontext.loads(text)
    if not isinstance(data, list):
        raise ValueError("restic snapshots --json did not print a list")
    newest: tuple[datetime, Mapping[str, Any]] | None = None
    for snap in data:
        if not isinstance(snap, dict) or not isinstance(snap.get("time"), str):
            raise ValueError(f"snapshot without a time: {str(snap)[:80]}")
        when = parse_timestamp(snap["time"])
        if newest is None or when > newest[0]:
            newest = (when, snap)
    if newest is None:
        return RecoveryPoint(
            None, None, ResticSnapshots(0), missing_reason="the repository holds no snapshot"
        )
    when, snap = newest
    paths = snap.get("paths") or []
    detail = ResticSnapshots(
        snapshot_count=len(data),
        snapshot_id=str(snap.get("id") or snap.get("short_id") or "") or None,
        hostname=snap.get("hostname") if isinstance(snap.get("hostname"), str) else None,
        paths=tuple(str(p) for p in paths) if isinstance(paths, list) else (),
    )
    return RecoveryPoint(when, age(when, now), detail)


def read_restic(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.repository:
        raise ConfigMissing("no repository configured")
    if not source.password_file:
        raise ConfigMissing("no password_file configured")
    require_file(runner, source.password_file, "password file")
    argv = [
        "restic",
        "--repo",
        source.repository,
        "--password-file",
        source.password_file,
        # Read-only: no lock (a stale lock must not hide the snapshots), no cache in $HOME.
        "--no-lock",
        "--no-cache",
        "--json",
        "snapshots",
    ]
    try:
        result = runner.run(argv, timeout=timeout)
    except CommandFailed as exc:
        raise ToolSaid(first_line(exc.stderr, prefer="Fatal:", strip="Fatal:")) from None
    return parse_restic_snapshots(result.stdout, now())


# ----------------------------------------------------------------------------- borg

_CHECKPOINT = re.compile(r"\.checkpoint(\.\d+)?$")


def parse_borg_list(text: str, now: datetime) -> RecoveryPoint:
    """`borg list --json REPO` run with TZ=UTC0: the newest complete archive by `time`.

    borg 1.2 prints `time`/`start` in the process's local time without an offset; the gatherer
    pins that to UTC, so an offset-less time is UTC here. Checkpoint archives are skipped.
    """
    data = jsontext.loads(text)
    archives = data.get("archives") if isinstance(data, dict) else None
    if not isinstance(archives, list):
        raise ValueError("borg list --json printed no archives list")
    complete: list[tuple[datetime, str]] = []
    checkpoints = 0
    for archive in archives:
        if not isinstance(archive, dict):
            raise ValueError(f"unexpected archive entry {str(archive)[:80]}")
        name = str(archive.get("name") or archive.get("archive") or "")
        if _CHECKPOINT.search(name):
            checkpoints += 1
            continue
        stamp = archive.get("time") or archive.get("start")
        if not isinstance(stamp, str):
            raise ValueError(f"archive {name!r} has no time")
        complete.append((parse_timestamp(stamp, naive_is_utc=True), name))
    if not complete:
        reason = "the repository holds no complete archive"
        if checkpoints:
            reason += f" (only {checkpoints} checkpoint archive(s))"
        return RecoveryPoint(
            None, None, BorgArchives(0, checkpoints_ignored=checkpoints), missing_reason=reason
        )
    when, name = max(complete)
    detail = BorgArchives(len(complete), archive=name, checkpoints_ignored=checkpoints)
    return RecoveryPoint(when, age(when, now), detail)


def borg_env(source: BackupSource, base_dir: str) -> dict[str, str]:
    """The environment for one `borg list`: no secret in it, only the command that reads it."""
    env = {
        "BORG_BASE_DIR": base_dir,
        # A moved or unknown unencrypted repository is refused, never silently trusted.
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
        # borg 1.2 --json prints local time without an offset: make local time UTC.
        "TZ": "UTC0",
    }
    if source.password_file:
        env["BORG_PASSCOMMAND"] = f"cat {shlex.quote(source.password_file)}"
    else:
        # An empty passphrase instead of a prompt on the terminal that would hang until timeout.
        env["BORG_PASSPHRASE"] = ""
    return env


def read_borg(
    runner: Runner, source: BackupSource, now: Callable[[], datetime], timeout: float
) -> RecoveryPoint:
    if not source.repository:
        raise ConfigMissing("no repository configured")
    if source.password_file:
        require_file(runner, source.password_file, "passphrase file")
    # Every archive, not `--last 1`: the manifest is small, and the count is evidence.
    argv = ["borg", "list", "--json", "--bypass-lock", source.repository]
    with private_dir(runner) as base_dir:
        try:
            result = runner.run(argv, timeout=timeout, env=borg_env(source, base_dir))
        except CommandFailed as exc:
            reason = first_line(exc.stderr)
            if "unknown unencrypted repository" in reason:
                reason += " (medsec reads only encrypted borg repositories)"
            raise ToolSaid(reason) from None
    return parse_borg_list(result.stdout, now())
