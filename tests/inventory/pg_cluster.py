"""Private PostgreSQL clusters for the backup tests: `initdb` (as the postgres user when the
tests run as root) into a temporary folder, `pg_ctl start` on a free loopback port with the
socket in that folder, stopped with `-m immediate` and removed afterwards. Tests skip with a
reason when the server binaries are missing."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def fast_tmp() -> str | None:
    """/dev/shm when it has room: four clusters are ~4000 files, slow to create on some disks."""
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 1 << 30 else None
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A work folder (owned by the server's user) holding data directories and an archive."""

    def __init__(self, prefix: str) -> None:
        bindir = pg_bindir()
        if bindir is None or shutil.which("psql") is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) or psql not installed")
        self.as_user: list[str] = []
        self.uid: tuple[int, int] | None = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("runuser is needed to run initdb as a non-root user")
            try:
                import pwd

                pg_user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres user for initdb")
            self.as_user = ["runuser", "-u", "postgres", "--"]
            self.uid = (pg_user.pw_uid, pg_user.pw_gid)
        self.bindir = bindir
        # Not under pytest's tmp: its root-owned 0700 parents would keep the postgres user out.
        self.work = Path(tempfile.mkdtemp(prefix=prefix, dir=fast_tmp()))
        self.chown(self.work)
        self.started: list[Path] = []

    def chown(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, *self.uid)

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir()
        self.chown(path)
        return path

    def pg(self, *argv: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / argv[0]), *argv[1:]],
            check=True,
            capture_output=True,
            cwd=self.work,
            timeout=60,
        )

    def initdb(self, name: str) -> Path:
        data = self.work / name
        self.pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--wal-segsize=1")  # fmt: skip
        return data

    def copy(self, template: Path, name: str) -> Path:
        subprocess.run(
            [*self.as_user, "cp", "-a", str(template), str(self.work / name)], check=True
        )
        return self.work / name

    def start(self, data: Path, port: int, settings: str) -> str:
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        self.started.append(data)
        self.pg(
            "pg_ctl", "-D", str(data), "-l", str(data / "log"), "-w", "-t", "30", "start",
            "-o", f"-c port={port} -c listen_addresses=127.0.0.1"
                  f" -c unix_socket_directories={self.work}",
        )  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop_all(self) -> None:
        for data in reversed(self.started):
            subprocess.run(
                [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                 "stop"],
                capture_output=True,
                check=False,
                timeout=30,
            )  # fmt: skip
        shutil.rmtree(self.work, ignore_errors=True)


FAST = "fsync=off\nsynchronous_commit=off\nfull_page_writes=off\n"


def sql(dsn: str, *commands: str) -> str:
    argv = ["psql", "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn]
    for command in commands:
        argv += ["-c", command]
    return subprocess.run(
        argv, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def wait_for(dsn: str, query: str, what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while sql(dsn, query) != "t":
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
