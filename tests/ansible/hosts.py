"""Real target hosts on this machine for the Ansible converge tests: each host is its own copy of a
minimal Debian 12 root file system (debootstrap'ed once from the mirror apt already uses, cached
under /var/cache/medsec-tests/), its own network namespace with one address on a 198.18.x.0/24
bridge the controller (the test process, in the root namespace) holds .1 on and no route out, and
its own sshd taking key-only root logins. Nothing is shared between hosts but the kernel.

How a host runs: `ip netns exec NS unshare --uts --mount --pid --fork sh init.sh ROOT NAME`
(init.sh lies beside the hosts' roots, in no host). That `sh` is PID 1 of the host's pid
namespace and stays OUTSIDE the chroot; it mounts proc, sysfs, a small /dev (tmpfs, a few device
nodes, its own devpts instance), /dev/shm and a tmpfs /run under the host's root, sets the
hostname and runs `chroot ROOT /usr/sbin/sshd -D -e`, then waits. `Host.exec` and `Host.start`
join the same namespaces with nsenter and chroot into the same root. Killing PID 1 kills every
process of the host; the mounts live in the host's own mount namespace and vanish with it.

What that means inside a host (measured with systemd 252 on Debian 12, over ssh as root):
- Ansible's `service_mgr` fact is `sysvinit`: /proc/1/comm is `sh`, which Ansible does not
  trust, /run/systemd/system does not exist, /sbin/init is absent (systemd-sysv is not
  installed) and /etc/init.d exists.
- systemctl finds /proc/1/root is not its own root, decides it runs in a chroot and works
  offline on the unit files only:
  `systemctl enable UNIT` writes the wants symlinks ("Created symlink ..." on stderr), exit 0;
  `disable` removes them ("Removed ..."), exit 0; `is-enabled UNIT` prints enabled/disabled
  from the files, exit 0/1; `is-system-running` prints "offline", exit 1.
  `daemon-reload`, `start`, `stop`, `restart`, `status` AND `is-active` print
  "Running in chroot, ignoring command 'X'" on stderr and exit 0 (so is-active's 0 proves
  nothing). `enable --now UNIT` writes the symlinks, then fails: "System has not been booted
  with systemd as init system (PID 1). Can't operate.", exit 1.
  `systemd-analyze verify UNIT` runs (it exits 1 on Documentation=man:... when man is absent).
- Ansible: `ansible.builtin.systemd_service` with `enabled: true|false` edits the symlinks
  (changed, then changed=false on a re-run); with `state: started|restarted` or
  `daemon_reload: true` it succeeds with changed=false and warns "Target is a chroot or
  systemd is offline". `ansible.builtin.service` follows service_mgr=sysvinit and FAILS for a
  unit with no init script: "Could not find the requested service NAME".
  A long-running service is started by the test with `Host.start()` instead.

The base root holds only what `debootstrap --variant=minbase` gives plus openssh-server, python3
(Ansible needs it), systemd (systemctl and the unit directories the roles write into) and
iproute2; apt's own download cache is cleaned, /etc/machine-id is emptied and the ssh host keys
removed (each host gets its own), /etc/resolv.conf names no server (the hosts have no route to
one). /etc/apt/sources.list still names the mirror, which no host can reach: the roles have to
install from the offline bundle.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

CACHE = Path("/var/cache/medsec-tests")
SUITE = "bookworm"
BASE_INCLUDES = ("openssh-server", "python3", "systemd", "iproute2")
SUBNET_THIRD_OCTETS = range(70, 100)  # 198.18.N.0/24, the first one free in the root namespace
_NETNS_PREFIX = "medsec-host-"
_SSH_CONNECT_TIMEOUT = 10
_CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
# What root's processes see inside a host (setpriv --reset-env sets a user's own).
_HOST_ENV = {"PATH": _CLEAN_ENV["PATH"], "LANG": "C.UTF-8", "HOME": "/root", "USER": "root"}

# PID 1 of a host. $1 = root, $2 = hostname. Device numbers are the kernel's fixed ones.
_INIT = r"""
set -e
r=$1
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount -t sysfs -o nosuid,nodev,noexec,ro sysfs "$r/sys"
mount -t tmpfs -o nosuid,mode=0755,size=1m tmpfs "$r/dev"
mknod -m 666 "$r/dev/null" c 1 3
mknod -m 666 "$r/dev/zero" c 1 5
mknod -m 666 "$r/dev/full" c 1 7
mknod -m 666 "$r/dev/random" c 1 8
mknod -m 666 "$r/dev/urandom" c 1 9
mknod -m 666 "$r/dev/tty" c 5 0
mkdir -m 755 "$r/dev/pts"
mkdir -m 1777 "$r/dev/shm"
mount -t devpts -o newinstance,nosuid,noexec,ptmxmode=0666,mode=0620,gid=5 devpts "$r/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$r/dev/shm"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs "$r/run"
mkdir -m 1777 "$r/run/lock"
mkdir -m 0755 "$r/run/sshd"
hostname "$2"
chroot "$r" /usr/sbin/sshd -D -e &
wait
"""


class HostError(RuntimeError):
    """A host could not be built, started or removed; the message says which and why."""


def _tool(name: str) -> str:
    found = shutil.which(name, path=_CLEAN_ENV["PATH"])
    if found is None:
        raise HostError(f"{name} is not installed")
    return found


def _run(argv: Sequence[str], *, timeout: float = 60, check: bool = True) -> str:
    """Run a tool (argv[0] looked up on a fixed PATH) and return its stdout."""
    done = subprocess.run(
        [_tool(argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_CLEAN_ENV,
        check=False,
    )
    if check and done.returncode != 0:
        raise HostError(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _need_root_and(*programs: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("test hosts need root (debootstrap, network namespaces, chroot)")
    for program in programs:
        if shutil.which(program, path=_CLEAN_ENV["PATH"]) is None:
            pytest.skip(
                f"{program} is not installed "
                "(Debian packages debootstrap, iproute2, openssh-client, util-linux)"
            )


# ---------------------------------------------------------------- base root file system


def apt_mirror(etc_apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt on this machine already uses for the main suite (not -security)."""
    for sources in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for stanza in sources.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and SUITE in suites:
                return fields["uris"].split()[0]
    for listing in [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]:
        if not listing.is_file():
            continue
        for line in listing.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()  # drop [signed-by=...] options
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    raise HostError(f"no apt source for Debian {SUITE} under {etc_apt}: no mirror to debootstrap")


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path in this mount namespace (mountinfo field 5, octal-escaped)."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """rm -rf that refuses to cross anything mounted below path (a leaked /proc, a bind mount)."""
    if not path.exists():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        _run(["umount", "--lazy", point], check=False)
    if _mounts_under(path):
        raise HostError(f"{path} still has mounts below it; not removing it")
    _run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=300)


def base_root(includes: Sequence[str] = BASE_INCLUDES) -> Path:
    """The cached minimal Debian 12 root with `includes`; built the first time (about 40 s).

    Built into a temporary folder beside the cache entry and renamed into place, under a file
    lock, so concurrent test processes build it once and never see half of one.
    """
    _need_root_and("debootstrap", "chroot")
    key = hashlib.sha256(f"{SUITE} minbase {' '.join(sorted(includes))}".encode()).hexdigest()
    final = CACHE / f"{SUITE}-minbase-{key[:12]}"
    if final.is_dir():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{final.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # another process built it while this one waited
            return final
        for stale in CACHE.glob(f".{final.name}.*"):  # a build killed half-way
            _remove_tree(stale)
        building = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=CACHE))
        log = CACHE / f"{final.name}.log"
        try:
            with log.open("w") as out:
                done = subprocess.run(
                    [_tool("debootstrap"), "--variant=minbase", f"--include={','.join(includes)}",
                     SUITE, str(building), apt_mirror()],
                    stdout=out, stderr=subprocess.STDOUT, timeout=900, env=_CLEAN_ENV, check=False,
                )  # fmt: skip
            if done.returncode != 0:
                tail = log.read_text().splitlines()[-5:]
                raise HostError(f"debootstrap exited {done.returncode} (log {log}): {tail}")
            _run(["chroot", str(building), "apt-get", "clean"], timeout=120)
            (building / "etc/machine-id").write_text("")  # each host writes its own
            for host_key in (building / "etc/ssh").glob("ssh_host_*"):
                host_key.unlink()
            (building / "etc/hostname").write_text("localhost\n")
            (building / "etc/resolv.conf").unlink(missing_ok=True)
            (building / "etc/resolv.conf").write_text("# test host: no route to any resolver\n")
            building.chmod(0o755)  # mkdtemp made it 0700; it becomes every host's /
            building.rename(final)
        except BaseException:
            _remove_tree(building)
            raise
    return final


# ---------------------------------------------------------------- hosts


@dataclass
class Host:
    """One running host. `root` is its file system as seen from the controller."""

    name: str
    address: str
    root: Path
    netns: str
    bridge: str  # in the root namespace, shared by the hosts of one `hosts()`
    veth: str  # the root-namespace end of the host's eth0
    key: Path
    sshd_log: Path
    _init: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _init_pid: int = field(default=0, repr=False)
    _started: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _logs: dict[int, Path] = field(default_factory=dict, repr=False)

    @property
    def ssh_args(self) -> list[str]:
        """`ssh ... root@ADDRESS`: append a command (one shell string) to run it on the host."""
        return [
            _tool("ssh"), "-F", "/dev/null", "-i", str(self.key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={_SSH_CONNECT_TIMEOUT}", f"root@{self.address}",
        ]  # fmt: skip

    def run(
        self,
        command: str | Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root over ssh, as an administrator would (root's login shell).

        A sequence is quoted for the remote shell; a string is given to it as it is.
        """
        remote = command if isinstance(command, str) else shlex.join(command)
        return subprocess.run(
            [*self.ssh_args, "--", remote],
            input=input, capture_output=True, text=True, timeout=timeout, check=check,
            env=_CLEAN_ENV,
        )  # fmt: skip

    def _enter(
        self, argv: Sequence[str], user: str | None, env: Mapping[str, str] | None
    ) -> list[str]:
        """Enter the host's namespaces and root directly (no sshd involved)."""
        inner = list(argv)
        if env:
            inner = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *inner]
        if user is not None:
            uid, gid = self._ids(user)
            inner = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups",
                     "--reset-env", "--", *inner]  # fmt: skip
        return [
            _tool("nsenter"), f"--target={self._init_pid}", "--mount", "--uts", "--net", "--pid",
            "--", "chroot", str(self.root), *inner,
        ]  # fmt: skip

    def _ids(self, user: str) -> tuple[int, int]:
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3])
        raise HostError(f"{self.name}: no user {user!r} in /etc/passwd")

    def exec(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host without ssh (its namespaces, chroot, optionally as `user`)."""
        return subprocess.run(
            self._enter(argv, user, env), capture_output=True, text=True, timeout=timeout,
            check=check, env=_HOST_ENV, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def start(
        self,
        argv: Sequence[str],
        user: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the host; its stdout and stderr go to `log`
        (default: a file beside the host's root, see `log_of`). Stop it with `stop`; whatever
        is left dies with the host anyway.
        """
        if log is None:
            log = self.root.parent / f"{self.name}.{Path(argv[0]).name}.{len(self._started)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self._enter(argv, user, env), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=_HOST_ENV, process_group=0,
            )  # fmt: skip
        self._started.append(proc)
        self._logs[proc.pid] = log
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self._logs[proc.pid].read_text(errors="replace")

    def stop(
        self, proc: subprocess.Popen[bytes], timeout: float = 15, sig: int = signal.SIGTERM
    ) -> int:
        """Signal the process inside the host (SIGTERM), SIGKILL it after `timeout`; its exit
        code (negative: the signal that ended it).

        nsenter forked the process into the host's pid namespace and relays its exit status, so
        the signal goes to that child, and nsenter, left alive, reaps it: a process killed with
        its parent would linger as a zombie of whoever inherits it.
        """
        for signum, wait in ((sig, timeout), (signal.SIGKILL, 10.0)):
            if proc.poll() is not None:
                break
            for child in _children(proc.pid):
                _signal(child, signum)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
        if proc.poll() is None:  # nsenter itself is stuck
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self._started:
            self.stop(proc, timeout=5, sig=signal.SIGKILL)

    def inventory_vars(self) -> dict[str, str]:
        return {
            "ansible_host": self.address,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
        }


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        return [int(c) for t in tasks for c in (t / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _signal(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def ssh_key(key_dir: Path) -> Path:
    """The controller's ed25519 key pair in key_dir (made once); the private key's path."""
    key = key_dir / "id_ed25519"
    if not key.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "medsec-tests", "-f", str(key)])
    return key


def _sshd_config(address: str) -> str:
    return f"""\
# medsec test host: key-only root logins on the host's own address
ListenAddress {address}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
UseDNS no
PrintMotd no
MaxStartups 50:30:100
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _pid_alive(pid: int) -> bool:
    """A zombie counts as gone: its parent may be slow to reap it, but it holds nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_netns(netns: str) -> None:
    for _ in range(50):
        pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).split()]
        if not pids:
            break
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.1)
    _run(["ip", "netns", "del", netns], check=False)


def sweep_stale() -> None:
    """Remove what a killed run left behind: its netns, links and host copies (names carry the
    pid of the process that made them; only those whose process is gone are touched)."""
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        netns = line.split(" ")[0]
        match = re.fullmatch(rf"{_NETNS_PREFIX}(\d+)-.+", netns)
        if match and not _pid_alive(int(match.group(1))):
            _kill_netns(netns)
    for line in _run(["ip", "-o", "link", "show"], check=False).splitlines():
        link = line.split(": ")[1].split("@")[0]
        match = re.fullmatch(r"ms[bv]([0-9a-z]+)-[0-9a-z-]+", link)
        if match and not _pid_alive(int(match.group(1), 36)):
            _run(["ip", "link", "del", link], check=False)
    for work in (CACHE / "hosts").glob("*-*"):
        pid = work.name.split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            _remove_tree(work)


_counter = iter(range(1 << 30))


def _free_subnet() -> int:
    used = _run(["ip", "-4", "-o", "addr", "show"]) + _run(["ip", "-4", "route", "show"])
    for third in SUBNET_THIRD_OCTETS:
        if f"198.18.{third}." not in used:
            return third
    raise HostError(f"every 198.18.N.0/24 with N in {SUBNET_THIRD_OCTETS} is in use")


def _wait_for_sshd(host: Host, deadline: float) -> None:
    while True:
        assert host._init is not None
        if host._init.poll() is not None:
            raise HostError(
                f"{host.name}: the host exited {host._init.returncode}: "
                f"{host.sshd_log.read_text(errors='replace').strip()[-500:]}"
            )
        try:
            with socket.create_connection((host.address, 22), timeout=1) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HostError(f"{host.name}: sshd does not answer on {host.address}:22")
        time.sleep(0.05)


def _init_pid_of(unshare: subprocess.Popen[bytes], name: str) -> int:
    for _ in range(200):
        children = _children(unshare.pid)
        if children:
            return children[0]
        if unshare.poll() is not None:
            raise HostError(f"{name}: unshare exited {unshare.returncode} before starting the host")
        time.sleep(0.01)
    raise HostError(f"{name}: unshare started no PID 1")


@contextmanager
def hosts(names: Sequence[str], key_dir: Path, *, base: Path | None = None) -> Iterator[list[Host]]:
    """Bring up one host per name (addresses .2, .3, ... of a free 198.18.N.0/24, the controller
    on .1) and take them all down again on exit, whatever the exit.
    """
    _need_root_and("ip", "unshare", "nsenter", "chroot", "ssh", "ssh-keygen")
    if len(set(names)) != len(names) or not names:
        raise HostError(f"host names must be unique and at least one: {list(names)}")
    base = base or base_root()
    key = ssh_key(key_dir)
    public_key = key.with_suffix(".pub").read_text()
    sweep_stale()
    tag = f"{_b36(os.getpid())}-{_b36(next(_counter))}"
    made: list[Host] = []
    with ExitStack() as cleanup:
        (CACHE / "hosts").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=CACHE / "hosts"))
        cleanup.callback(_remove_tree, work)
        bridge = f"msb{tag}"
        # The lock keeps two runs from choosing the same free subnet at the same moment.
        with (CACHE / "subnet.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            third = _free_subnet()
            # Bridged frames skip the root namespace's iptables: a FORWARD policy there must
            # not cut hosts off from each other.
            no_netfilter = ["nf_call_iptables", "0", "nf_call_ip6tables", "0"]
            _run(["ip", "link", "add", bridge, "type", "bridge", *no_netfilter])
            cleanup.callback(_run, ["ip", "link", "del", bridge], check=False)
            _run(["ip", "addr", "add", f"198.18.{third}.1/24", "dev", bridge])
            _run(["ip", "link", "set", bridge, "up"])
        addresses = {name: f"198.18.{third}.{i + 2}" for i, name in enumerate(names)}
        etc_hosts = "127.0.0.1\tlocalhost\n" + "".join(
            f"{addr}\t{name}\n" for name, addr in addresses.items()
        )
        init = work / "init.sh"  # outside every host's root: PID 1 never enters the chroot
        init.write_text(_INIT)
        for i, name in enumerate(names):
            host = Host(
                name=name,
                address=addresses[name],
                root=work / name,
                netns=f"{_NETNS_PREFIX}{os.getpid()}-{tag}-{name}",
                bridge=bridge,
                veth=f"msv{tag}-{_b36(i)}",
                key=key,
                sshd_log=work / f"{name}.sshd.log",
            )
            made.append(host)
            cleanup.callback(_take_down, host)
            _run(["cp", "--reflink=auto", "-a", str(base), str(host.root)], timeout=300)
            _personalise(host, etc_hosts, public_key)
            _run(["ip", "netns", "add", host.netns])
            no_ipv6 = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
            _run(["ip", "netns", "exec", host.netns, "sysctl", "-qw", *no_ipv6])
            _run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
            _run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
                  "netns", host.netns])  # fmt: skip
            _run(["ip", "link", "set", host.veth, "master", bridge, "up"])
            _run(["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
            _run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
            # Its own process group: a Ctrl-C reaches only the test, which then takes the
            # hosts down in order instead of racing a half-killed unshare.
            with host.sshd_log.open("wb") as out:
                host._init = subprocess.Popen(
                    [_tool("ip"), "netns", "exec", host.netns,
                     "unshare", "--uts", "--mount", "--pid", "--fork", "--kill-child",
                     "--propagation", "private",
                     _tool("sh"), str(init), str(host.root), name],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=_CLEAN_ENV, process_group=0,
                )  # fmt: skip
            host._init_pid = _init_pid_of(host._init, name)
        deadline = time.monotonic() + 30
        for host in made:
            _wait_for_sshd(host, deadline)
        yield made


def _personalise(host: Host, etc_hosts: str, public_key: str) -> None:
    etc = host.root / "etc"
    (etc / "machine-id").write_text(secrets.token_hex(16) + "\n")
    (etc / "hostname").write_text(host.name + "\n")
    (etc / "hosts").write_text(etc_hosts)
    (etc / "ssh/sshd_config").write_text(_sshd_config(host.address))
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
          "-f", str(etc / "ssh/ssh_host_ed25519_key")])  # fmt: skip
    dot_ssh = host.root / "root/.ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    (dot_ssh / "authorized_keys").write_text(public_key)
    (dot_ssh / "authorized_keys").chmod(0o600)


def _take_down(host: Host) -> None:
    host.stop_all()
    if host._init is not None:
        # The pid namespace dies with its PID 1; unshare, left alive, reaps it and exits.
        if host._init_pid:
            _signal(host._init_pid, signal.SIGKILL)
        try:
            host._init.wait(10)
        except subprocess.TimeoutExpired:
            _signal_group(host._init.pid, signal.SIGKILL)
            host._init.wait(10)
    _kill_netns(host.netns)  # also removes eth0 and so its root-side peer


# ---------------------------------------------------------------- Ansible


def write_inventory(
    path: Path,
    groups: Mapping[str, Sequence[Host]],
    host_vars: Mapping[str, Mapping[str, Any]] | None = None,
    group_vars: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A YAML inventory of the hosts by group, with how to reach each one and any extra vars."""
    children: dict[str, Any] = {}
    for group, members in groups.items():
        entry: dict[str, Any] = {
            "hosts": {
                h.name: {**h.inventory_vars(), **(host_vars or {}).get(h.name, {})} for h in members
            }
        }
        if group_vars and group in group_vars:
            entry["vars"] = dict(group_vars[group])
        children[group] = entry
    path.write_text(yaml.safe_dump({"all": {"children": children}}, sort_keys=False))
    return path


def ansible_env(tmp: Path) -> dict[str, str]:
    """Environment for ansible/ansible-playbook: a private HOME and temp and control-socket
    folders under tmp, no host key checks, no colour, 5 forks, no ssh agent."""
    home = tmp / "home"
    control = tmp / "cp"
    for folder in (home, control, tmp / "local-tmp"):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # ssh's socket path limit is 108 bytes; the host address (not %C's 40 hex digits) keeps it
    # short. One user (root) per address, so the address alone is unique.
    if len(str(control)) > 80:
        raise HostError(f"{control} is too long for ssh control sockets; use a shorter folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SSH_"))}
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "local-tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control),
        ANSIBLE_SSH_CONTROL_PATH="%(directory)s/%%h",
        ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=30s -o ServerAliveInterval=5",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_FORKS="5",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_TIMEOUT="30",
        LC_ALL="C.UTF-8",
    )
    return env
