"""An SSH vantage host for the fault tests, as small as one can be: a network namespace of our own
(`mfv-PID`) with a veth pair inside it, one end holding 198.18.240.5/24 and a route for
198.18.241.0/24 (the other end answers nothing, so a scan of that zone crawls and is still running
when the vantage dies), and sshd listening on 198.18.240.5:22 inside it for the `probe` user (the
lab's vantage account) with a key made for the test. The collector reaches it from inside the
namespace (`via_netns`); nothing leaves the namespace, and no address outside 198.18.0.0/15 is
ever used. `down()` kills everything in the namespace and deletes it; `sweep()` removes what a
killed run left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from collector.lab.host import ensure_probe_user
from collector.lab.topology import PROBE_USER
from tests.faults.rig import tool

PREFIX = "mfv-"
ADDRESS = "198.18.240.5"
ZONE = "198.18.240.0/24"
DARK_ZONE = "198.18.241.0/24"
IP = tool("ip")


class VantageUnavailable(Exception):
    """No namespace or sshd here (not root, tools missing)."""


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([IP, *argv], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise VantageUnavailable(f"ip {' '.join(argv)}: {done.stderr.strip()}")
    return done


def _pair() -> tuple[bytes, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


class SshVantageHost:
    def __init__(self) -> None:
        self.netns = f"{PREFIX}{os.getpid()}"
        # Not under pytest's tmp_path (0700): sshd reads authorized_keys as the probe user.
        self.folder = Path(tempfile.mkdtemp(prefix="medsec-fault-vantage-"))
        self.folder.chmod(0o755)  # traversable; the private keys inside are 0600
        self.key_file = self.folder / "probe_key"
        self.known_hosts = self.folder / "known_hosts"
        self.sshd: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        ensure_probe_user()
        host_private, host_public = _pair()
        _write(self.folder / "host_key", host_private, 0o600)
        _write(self.known_hosts, f"{ADDRESS} ".encode() + host_public + b"\n", 0o644)
        probe_private, probe_public = _pair()
        _write(self.key_file, probe_private, 0o600)
        _write(self.folder / "authorized_keys", probe_public + b"\n", 0o644)
        (self.folder / "sshd_config").write_text(
            f"ListenAddress {ADDRESS}:22\n"
            f"HostKey {self.folder}/host_key\n"
            f"PidFile {self.folder}/sshd.pid\n"
            f"AuthorizedKeysFile {self.folder}/authorized_keys\n"
            f"AllowUsers {PROBE_USER}\n"
            "PermitRootLogin no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nX11Forwarding no\nAllowTcpForwarding no\n"
            "PrintMotd no\n",
            encoding="utf-8",
        )
        _ip("netns", "add", self.netns)
        ns = ("-n", self.netns)
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _ip(*ns, "addr", "add", f"{ADDRESS}/24", "dev", "v0")
        _ip(*ns, "link", "set", "v0", "up")
        _ip(*ns, "link", "set", "v1", "up")
        _ip(*ns, "route", "add", DARK_ZONE, "dev", "v0")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        self.sshd = subprocess.Popen(
            [IP, "netns", "exec", self.netns, tool("sshd"), "-D", "-f",
             str(self.folder / "sshd_config"), "-E", str(self.folder / "sshd.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not self.listening():
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise VantageUnavailable(f"sshd did not start: {self.log()}")
            time.sleep(0.05)

    def listening(self) -> bool:
        done = _ip("netns", "exec", self.netns, tool("ss"), "-Htln", f"src {ADDRESS}", check=False)
        return ":22" in done.stdout

    def log(self) -> str:
        try:
            return (self.folder / "sshd.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def pids(self) -> list[int]:
        """Every process in the namespace: sshd, its logins, what they run (nmap)."""
        done = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in done.stdout.split()]

    def programs(self) -> list[str]:
        names = []
        for pid in self.pids():
            try:
                names.append(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                continue
        return names

    def signal_all(self, signum: signal.Signals) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                continue

    def down(self) -> None:
        self.signal_all(signal.SIGKILL)
        if self.sshd is not None:
            self.sshd.wait(timeout=10)
        _ip("netns", "del", self.netns, check=False)
        for path in self.folder.iterdir():
            path.unlink()
        self.folder.rmdir()


def sweep() -> None:
    """Remove the namespaces of fault-test runs that were killed (their PID is gone)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    continue
            _ip("netns", "del", name, check=False)
