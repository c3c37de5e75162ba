"""The machine under the lab: what the lab needs from it (root, the programs and files of the
Debian packages it uses, the web servers' user, the SSH vantage's account), how it runs a command
there (`run`: absolute argv, a timeout, `LC_ALL=C`, any failure one line), and the errors every
lab step raises.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from collector.lab import topology as t
from collector.lab.configs import CRS_LOAD, MODSECURITY_RECOMMENDED

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": SYSTEM_PATH, "LC_ALL": "C", "LANG": "C"}

TOOLS = {
    # name: Debian package
    "ip": "iproute2",
    "nft": "nftables",
    "apache2": "apache2",
    "nginx": "nginx",
    "snmpd": "snmpd",
    "sshd": "openssh-server",
    "useradd": "passwd",
    "usermod": "passwd",
}
FILES = {
    "/usr/lib/apache2/modules/mod_security2.so": "libapache2-mod-security2",
    MODSECURITY_RECOMMENDED: "libapache2-mod-security2",
    CRS_LOAD: "modsecurity-crs",
}


class LabError(Exception):
    """The lab could not be built, switched or removed; the message is one actionable line."""


class LabUnavailable(LabError):
    """This machine cannot run the lab (not root, no network namespaces, a tool missing)."""


def tool(name: str) -> str:
    """The absolute path of a system program; `LabUnavailable` names its package if absent."""
    path = shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        raise LabUnavailable(f"{name} is not installed (Debian package {TOOLS.get(name, name)})")
    return path


def preflight() -> dict[str, str]:
    """Every program the lab runs, by name; `LabUnavailable` on the first thing missing."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces, nftables, daemons)")
    tools = {name: tool(name) for name in TOOLS}
    try:
        pwd.getpwnam("www-data")  # the web servers' workers
    except KeyError:
        raise LabUnavailable("user www-data is missing (Debian package base-passwd)") from None
    for path, package in FILES.items():
        if not os.path.exists(path):
            raise LabUnavailable(f"{path} is missing (Debian package {package})")
    return tools


def in_netns(netns: str, *argv: str) -> list[str]:
    """argv running `argv` inside a named network namespace (`ip netns exec`)."""
    return [tool("ip"), "netns", "exec", netns, *argv]


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 20.0) -> str:
    """stdout of a command that must succeed; `LabError` with its stderr otherwise."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=BASE_ENV,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer in {timeout} s") from exc
    except OSError as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().replace("\n", " | ")
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {message}")
    return done.stdout


def ensure_probe_user() -> None:
    """The SSH vantage's account: made if absent, unlocked ('*') if locked (`useradd` default)."""
    try:
        pwd.getpwnam(t.PROBE_USER)
    except KeyError:
        run(
            [
                tool("useradd"),
                "--system",
                "--no-create-home",
                "--home-dir", "/",
                "--shell", "/bin/sh",
                "--comment", "medsec lab SSH vantage",
                t.PROBE_USER,
            ]
        )  # fmt: skip
    shadow = Path("/etc/shadow").read_text(encoding="utf-8", errors="replace")
    for line in shadow.splitlines():
        fields = line.split(":")
        if fields[0] == t.PROBE_USER and len(fields) > 1 and fields[1].startswith("!"):
            run([tool("usermod"), "-p", "*", t.PROBE_USER])
