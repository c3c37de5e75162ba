"""The only way a gatherer touches a host: run a command, read a file, list a folder.

`LocalRunner` serves the agent. Its `root` re-bases every path, so the same gatherers read a
recorded sysfs tree in tests. `inventory.network.ssh.SshRunner` (paramiko) serves hosts without
an agent through the same protocol. Failures are typed, so a gatherer can tell "no such source"
from "no permission" and say `Unavailable(reason)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class GatherError(Exception):
    """A source could not be read. The message is one line a sysadmin can act on."""


class SourceMissing(GatherError):
    """The file, folder or device does not exist."""


class AccessDenied(GatherError):
    """The source exists but this process may not read it."""


class ToolMissing(GatherError):
    """The command is not installed."""


class CommandFailed(GatherError):
    """The command ran and exited non-zero."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeout(GatherError):
    """The command did not finish in time and was killed."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run `argv` (no shell) with LC_ALL=C plus `env`; kill it after `timeout` seconds."""
        ...

    def read_text(self, path: str) -> str: ...

    def read_bytes(self, path: str) -> bytes: ...

    def list_dir(self, path: str) -> list[str]: ...

    def exists(self, path: str) -> bool: ...

    def realpath(self, path: str) -> str: ...

    def which(self, name: str) -> str | None: ...


# Commands see a C locale so their output parses the same on every host.
ENV = {
    "LC_ALL": "C",
    "LANG": "C",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


class LocalRunner:
    """Runs on this host. `root` re-bases file paths (recorded trees in tests); commands are not."""

    remote = False
    """Whether the host is another machine: the TSS only ever talks to this one (`agent.gather`)."""

    def __init__(self, root: str | os.PathLike[str] = "/", env: Mapping[str, str] | None = None):
        self._root = Path(root)
        self._env = {**ENV, **(env or {})}

    def _path(self, path: str) -> Path:
        return self._root / path.lstrip("/")

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        if not argv:
            raise ValueError("empty argv")
        exe = argv[0] if os.path.isabs(argv[0]) else self.which(argv[0])
        if exe is None:
            raise ToolMissing(f"{argv[0]} is not installed")
        try:
            proc = subprocess.run(
                [exe, *argv[1:]],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**self._env, **(env or {})},
                input=input_text,
                check=False,
                stdin=None if input_text is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise ToolMissing(f"{argv[0]} is not installed") from None
        except PermissionError:
            raise AccessDenied(f"{exe}: permission denied") from None
        except subprocess.TimeoutExpired:
            raise CommandTimeout(f"{argv[0]} did not finish within {timeout:g} s") from None
        result = CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise CommandFailed(
                f"{argv[0]} exited {proc.returncode}: {detail}", proc.returncode, proc.stderr
            )
        return result

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            raise SourceMissing(f"{path} does not exist") from None
        except PermissionError:
            raise AccessDenied(f"{path}: permission denied") from None
        except IsADirectoryError:
            raise SourceMissing(f"{path} is a directory") from None
        except OSError as exc:
            # sysfs attributes answer some reads with EIO/ENODEV/EINVAL: the value is not there.
            raise SourceMissing(f"{path}: {exc.strerror or exc}") from None

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(path)))
        except FileNotFoundError:
            raise SourceMissing(f"{path} does not exist") from None
        except PermissionError:
            raise AccessDenied(f"{path}: permission denied") from None
        except NotADirectoryError:
            raise SourceMissing(f"{path} is not a directory") from None

    def exists(self, path: str) -> bool:
        return os.path.lexists(self._path(path))

    def realpath(self, path: str) -> str:
        """Resolve symlinks (sysfs is made of them), answering in the host's namespace."""
        resolved = os.path.realpath(self._path(path))
        root = str(self._root.resolve())
        if root != "/" and resolved.startswith(root):
            resolved = resolved[len(root) :] or "/"
        return resolved

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self._env["PATH"])
