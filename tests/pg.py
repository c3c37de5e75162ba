"""A throw-away PostgreSQL server for tests that must stop, restart or break it: initdb into a
temporary folder, listen on a free loopback port only, torn down at the end. When the tests run as
root the server runs as the `postgres` OS user (initdb refuses root). Never touches the shared
server on 5432.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PgUnavailable(Exception):
    """The server binaries, or a user to run them as, are missing: the test should skip."""


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fast_tmp() -> str | None:
    """/dev/shm when it has room: initdb writes ~1000 files, slow on some disks."""
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 1 << 30 else None
    except OSError:
        return None


class TempPostgres:
    """One PostgreSQL cluster of our own. `url` is a SQLAlchemy URL to its `postgres` database."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.as_user: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise PgUnavailable("runuser is needed to run initdb as a non-root user")
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no postgres user") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp: its root-owned 0700 parents would keep the postgres user out.
        self.work = Path(tempfile.mkdtemp(prefix="medsec-pg-", dir=_fast_tmp()))
        if owner is not None:
            os.chown(self.work, owner.pw_uid, owner.pw_gid)
        self.data = self.work / "data"
        self.port = free_port()
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.work}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *argv: str) -> None:
        proc = subprocess.run(
            [*self.as_user, str(self.bindir / program), *argv],
            capture_output=True,
            text=True,
            cwd=self.work,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"{program} {' '.join(argv)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")  # fmt: skip

    def _ctl(self, *argv: str) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.work / "log"), "-w", "-t", "30",
                 *argv)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "stop"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        shutil.rmtree(self.work, ignore_errors=True)
