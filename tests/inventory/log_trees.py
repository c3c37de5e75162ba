"""Log trees for the log retention tests: a runner over a recorded /etc and /var/log tree whose
journalctl reads the tree's journal (`--root`), and real journal files of chosen age written by
systemd-journal-remote (the only writer that takes timestamps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePath

import pytest

from inventory.runner import AccessDenied, CommandResult, LocalRunner


class TreeRunner(LocalRunner):
    """`LocalRunner` over a recorded tree; journalctl reads the tree's journal (`--root`)."""

    def __init__(self, root: Path, *, denied: Collection[str] = ()) -> None:
        super().__init__(root=root)
        self.tree = root
        self.denied = set(denied)

    def read_bytes(self, path: str) -> bytes:
        if path in self.denied:
            raise AccessDenied(f"{path}: permission denied")
        return super().read_bytes(path)

    def list_dir(self, path: str) -> list[str]:
        if path in self.denied:
            raise AccessDenied(f"{path}: permission denied")
        return super().list_dir(path)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if PurePath(argv[0]).name == "journalctl":
            argv = [*argv, f"--root={self.tree}"]
        return super().run(argv, timeout=timeout, check=check, input_text=input_text, env=env)


def need_journalctl() -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is not installed (Debian package systemd)")


def journal_remote() -> str:
    for path in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"):
        if os.access(path, os.X_OK):
            return path
    pytest.skip("systemd-journal-remote is not installed (Debian package systemd-journal-remote)")


def write_journal(path: Path, entries: Sequence[tuple[datetime, str]]) -> None:
    """A real journal file, from journal export format (the only writer that takes timestamps)."""
    export = ""
    for n, (moment, message) in enumerate(entries, 1):
        export += (
            f"__REALTIME_TIMESTAMP={int(moment.timestamp() * 1e6)}\n"
            f"__MONOTONIC_TIMESTAMP={n * 1000}\n"
            "_BOOT_ID=0123456789abcdef0123456789abcdef\n"
            f"MESSAGE={message}\nPRIORITY=6\n\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [journal_remote(), f"--output={path}", "-"],
        input=export,
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )
