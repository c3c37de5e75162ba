"""A real OpenSSH server for the agentless tests and benchmark: its own host key, key-only login,
`StrictModes no` (keys under a temporary folder), `AllowUsers` naming the accounts given, the pid
file and authorized keys in that folder, on a loopback port (or inside a network namespace the
caller made). Root may log in with a key (`PermitRootLogin prohibit-password`): the gatherers need
root to read DMI and LUKS headers, as the agent does. Skips with a reason when sshd is missing or
the tests do not run as root (sshd needs root to switch to the account it logs in)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def need_sshd() -> None:
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to log a user in")


def tool(name: str) -> str:
    """The absolute path of a system tool the fixture runs; skips when it is missing."""
    found = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """A new key pair at `path` (and `path`.pub), mode 0600."""
    subprocess.run(
        [
            tool("ssh-keygen"),
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "medsec-test",
            "-f",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class Sshd:
    host: str
    port: int
    folder: Path
    host_key: Path
    process: subprocess.Popen[bytes]
    log: Path
    netns: str | None = None
    users: dict[str, list[Path]] = field(default_factory=dict)

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {kind} {b64}\n"

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line())
        path.chmod(0o600)
        return path

    def fingerprint(self) -> str:
        out = subprocess.run(
            [
                tool("ssh-keygen"),
                "-l",
                "-E",
                "sha256",
                "-f",
                str(self.host_key.with_suffix(".pub")),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return out[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sshd(
    folder: Path,
    users: dict[str, Sequence[Path]],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    netns: str | None = None,
    host_key: Path | None = None,
    max_startups: int = 100,
    quiet_rc: bool = False,
) -> Sshd:
    """sshd on `host`:`port` letting each user in `users` log in with the given public keys.

    `quiet_rc`: bash sources ~/.bashrc for every command sshd runs, and this machine's root
    .bashrc starts pyenv (~130 ms a command, far more than a server's usually costs); sshd then
    runs in a mount namespace of its own where an empty file is bound over /root/.bashrc. The
    real file is untouched and the commands medsec runs do not read it (`env -i`), but that
    mount shows in what the gatherers see (lsblk, mountinfo): tests comparing with this host's
    own view leave it off; the benchmark turns it on."""
    need_sshd()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege-separation folder
    if host_key is None:
        host_key = make_key(folder / "ssh_host_ed25519_key")
    authorized = folder / "authorized"
    authorized.mkdir(exist_ok=True)
    authorized.chmod(0o755)  # sshd reads them as the user logging in
    for user, keys in users.items():
        (authorized / user).write_text("".join(k.read_text() for k in keys))
        (authorized / user).chmod(0o644)
    port = port or free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {host}",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}/%u",
                "StrictModes no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {' '.join(users)}",
                f"Subsystem sftp {SFTP_SERVER}",
                f"MaxStartups {max_startups}",
                "MaxSessions 64",
                "LogLevel INFO",
                "",
            ]
        )
    )
    log = folder / "sshd.log"
    prefix = [tool("ip"), "netns", "exec", netns] if netns else []
    if quiet_rc and os.path.exists("/root/.bashrc"):
        empty = folder / "empty.bashrc"
        empty.write_text("")
        prefix += [
            "unshare",
            "--mount",
            "sh",
            "-c",
            f'mount --bind {empty} /root/.bashrc && exec "$@"',
            "sh",
        ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*prefix, SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Sshd(
        host, port, folder, host_key, process, log, netns, {u: list(k) for u, k in users.items()}
    )
    deadline = time.monotonic() + 10
    while b"Server listening" not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd did not start: {log.read_text()[-500:]}")
        time.sleep(0.02)
    return server


def ensure_account(name: str) -> bool:
    """A local account `name` that sshd lets in with a key (created when missing, its password
    field set to `*`: `useradd` leaves it locked and sshd then refuses even keys). True when this
    call created it (the caller removes it)."""
    import pwd

    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        return False
    subprocess.run([tool("useradd"), "--create-home", "--shell", "/bin/bash", name], check=True)
    subprocess.run([tool("usermod"), "-p", "*", name], check=True)
    return True


def remove_account(name: str) -> None:
    subprocess.run([tool("userdel"), "--remove", name], check=False, capture_output=True)
