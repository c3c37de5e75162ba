"""The SSH runner: the gatherers' `Runner` protocol over one SSH connection (paramiko), for
hosts without an agent (`collector/agentless.py`).

Commands are checked against the read-only allow-list (`inventory.network.readonly`) before
they are sent, and run in the same clean C-locale environment `LocalRunner` gives, bounded on
the host by `timeout`; files are read over SFTP (with `sudo`, a read-only `sftp-server -R`
started through `sudo -n`). Host keys are verified against a known_hosts file: unknown ones
refused unless trusted on first use (then recorded), changed ones always refused. Failures map
to the same types `LocalRunner` raises.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import select
import shlex
import socket
import stat
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from inventory.network.readonly import TEMP_MADE, check_read_only
from inventory.runner import (
    ENV,
    AccessDenied,
    CommandFailed,
    CommandResult,
    CommandTimeout,
    GatherError,
    SourceMissing,
    ToolMissing,
)

if TYPE_CHECKING:
    import paramiko

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # RHEL, openEuler, Kylin
    "/usr/lib/ssh/sftp-server",  # Arch, SUSE
    "/usr/libexec/sftp-server",
)
"""Where `--sudo` looks for the sftp-server it starts read-only (-R) as root."""
KILL_GRACE_S = 2
"""The remote `timeout` sends SIGKILL this long after SIGTERM."""
FILE_TIMEOUT_S = 15.0
"""How long one SFTP request may wait for its answer."""
MAX_OUTPUT = 64 << 20
"""A command printing more than this (stdout + stderr) is stopped: no gatherer reads that much."""
_T = TypeVar("_T")


class SshConnectError(Exception):
    """The host could not be reached, refused us, or we refused it. One line naming the host."""


class HostKeyRefused(SshConnectError):
    """The host's key is not the one known_hosts holds for it, or it is unknown (no TOFU)."""


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in. The passphrase of an encrypted key comes from the caller (an
    environment variable, never the command line); with no key file, the ssh-agent is used."""

    host: str
    user: str
    port: int = 22
    key_file: str | None = None
    passphrase: str | None = field(default=None, repr=False)
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    trust_on_first_use: bool = False
    sudo: bool = False
    connect_timeout: float = 10.0

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class CommandRecord:
    """One command run on the host, as the report's evidence lists it."""

    argv: str
    exit: int | None
    """124: the host's `timeout` stopped it at its limit; None: the runner gave up waiting
    (no answer from the host), or the connection went before it ended."""
    seconds: float


def fingerprint(key: paramiko.PKey) -> str:
    """`ssh-ed25519 SHA256:...`, the form `ssh-keygen -lf` prints."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def load_key(path: str, passphrase: str | None = None) -> paramiko.PKey:
    """The private key in `path`; `SshConnectError` naming the file and the problem (a key
    others may read is refused, as ssh refuses it)."""
    import paramiko

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SshConnectError(f"key file {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise SshConnectError(
            f"key file {path}: mode {stat.S_IMODE(mode):04o} lets others read it "
            "(chmod 600, as ssh requires)"
        )
    try:
        return paramiko.PKey.from_path(path, None if passphrase is None else passphrase.encode())  # type: ignore[arg-type]
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        if isinstance(exc, TypeError) and "password" not in str(exc).lower():
            raise SshConnectError(f"key file {path}: not a usable private key ({exc})") from None
        raise SshConnectError(
            f"key file {path} is encrypted: set MEDSEC_SSH_KEY_PASSPHRASE or load it into "
            "ssh-agent (SSH_AUTH_SOCK) and leave out the key file"
        ) from None
    except (paramiko.SSHException, ValueError) as exc:
        if passphrase is not None:  # the library cannot tell a wrong passphrase from garbage
            raise SshConnectError(
                f"key file {path}: cannot be read with the passphrase given: wrong passphrase, "
                "or not a private key"
            ) from None
        raise SshConnectError(f"key file {path}: not a usable private key ({exc})") from None
    except OSError as exc:
        raise SshConnectError(f"key file {path}: {exc.strerror or exc}") from None


class _HostKeyPolicy:
    """Called by paramiko for a host known_hosts does not name (a changed key never gets here:
    paramiko raises `BadHostKeyException` for it). Refuses, or with TOFU records the key."""

    def __init__(self, target: SshTarget, path: str) -> None:
        self.target = target
        self.path = path
        self.recorded: str | None = None

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        seen = fingerprint(key)
        if not self.target.trust_on_first_use:
            raise HostKeyRefused(
                f"{self.target.where}: host key {seen} is not in {self.path}: refused "
                "(compare it with `ssh-keygen -lf` of the host's key on its console, then add "
                "it, or pass --trust-on-first-use)"
            )
        record_host_key(self.path, self.target, key)
        self.recorded = seen


def record_host_key(path: str, target: SshTarget, key: paramiko.PKey) -> None:
    """Append the key to known_hosts (created 0600 in a 0700 folder) under a lock, unless
    another run recorded one for the host meanwhile: the same key is fine, another one is
    `HostKeyRefused` like any changed key."""
    import paramiko

    folder = os.path.dirname(path) or "."
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        known = paramiko.HostKeys()
        with contextlib.suppress(OSError, paramiko.SSHException):
            known.load(path)
        held = known.lookup(target.known_hosts_name)
        if held is not None:
            mine = held.get(key.get_name())
            if mine == key:
                return
            raise HostKeyRefused(
                f"{target.where}: host key {fingerprint(key)} differs from the one recorded in "
                f"{path} at the same time: refused"
            )
        handle.seek(0, os.SEEK_END)
        if handle.tell() and not _ends_with_newline(path):
            handle.write("\n")
        handle.write(f"{target.known_hosts_name} {key.get_name()} {key.get_base64()}\n")


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as raw:
        raw.seek(-1, os.SEEK_END)
        return raw.read(1) == b"\n"


def _universal_newlines(data: bytes) -> str:
    # What `subprocess.run(text=True)` gives LocalRunner: UTF-8, \r\n and \r read as \n.
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class SshRunner:
    """Runs the gatherers against another host over one SSH connection (`SshRunner.connect`).

    Every argv and environment passes `inventory.network.readonly.check_read_only` first
    (`NotReadOnly`, a ValueError, otherwise: it is never sent). A command runs as
    `[sudo -n --] timeout -k 2 T env -i -- LC_ALL=C LANG=C PATH=... [ENV] ARGV`: the same clean
    environment LocalRunner gives, bounded on the host too so nothing outlives a lost connection,
    and never a password prompt. Files are read over SFTP. Errors map to the same types as
    LocalRunner's. `deadline` (time.monotonic) bounds the whole host: past it every call raises
    `CommandTimeout`, so the gatherers end quickly with everything after it unavailable.
    """

    remote = True

    def __init__(
        self,
        target: SshTarget,
        client: paramiko.SSHClient,
        *,
        deadline: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self._client = client
        self._deadline = deadline
        self._env = {**ENV, **(env or {})}
        self._sftp: paramiko.SFTPClient | None = None
        self._keep: Any = None
        self._made: set[str] = set()
        self._found: dict[str, str | None] = {}
        self.commands: list[CommandRecord] = []
        self.file_ops: Counter[str] = Counter()
        self.host_key = ""
        self.host_key_recorded = False
        self.file_access = ""

    # -- connecting ------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        target: SshTarget,
        *,
        deadline: float | None = None,
        pkey: paramiko.PKey | None = None,
    ) -> SshRunner:
        """Log in, check the host key, check that commands (and sudo) work, open SFTP.
        `SshConnectError` (one line) for anything that stops us; nothing is left open then."""
        import paramiko

        limit = target.connect_timeout
        if deadline is not None:
            limit = max(0.1, min(limit, deadline - time.monotonic()))
        path = os.path.expanduser(target.known_hosts)
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(path)
        except FileNotFoundError:
            pass  # nothing known yet: every key is unknown
        except (OSError, paramiko.SSHException) as exc:
            raise SshConnectError(f"known_hosts {path}: {exc}") from None
        policy = _HostKeyPolicy(target, path)
        client.set_missing_host_key_policy(policy)  # type: ignore[arg-type]
        if pkey is None and target.key_file is not None:
            pkey = load_key(target.key_file, target.passphrase)
        try:
            sock = socket.create_connection((target.host, target.port), timeout=limit)
            # Without it, a small request waits on the peer's delayed ACK: 40 ms a command.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(
                target.host,
                port=target.port,
                username=target.user,
                sock=sock,
                pkey=pkey,
                allow_agent=pkey is None,
                look_for_keys=False,
                timeout=limit,
                banner_timeout=limit,
                auth_timeout=limit,
                channel_timeout=limit,
            )
        except BaseException as exc:
            client.close()
            if isinstance(exc, SshConnectError):
                raise
            if isinstance(exc, Exception):
                raise _connect_error(target, path, limit, exc) from None
            raise
        runner = cls(target, client, deadline=deadline)
        transport = client.get_transport()
        server_key = transport.get_remote_server_key() if transport is not None else None
        runner.host_key = fingerprint(server_key) if server_key is not None else ""
        runner.host_key_recorded = policy.recorded is not None
        try:
            runner._preflight(limit)
        except BaseException:
            runner.close()
            raise
        return runner

    def _preflight(self, limit: float) -> None:
        """One command through the whole wrapper (sudo, timeout, env), then SFTP."""
        started = time.monotonic()
        try:
            status, _, err, stopped = self._exec(
                self._command(["true"], limit, {}), None, limit + KILL_GRACE_S
            )
        except GatherError as exc:
            raise SshConnectError(str(exc)) from None
        self.commands.append(CommandRecord("true", status, _since(started)))
        said = _last_line(err)
        if stopped:
            raise SshConnectError(f"{self.target.where}: a first command got no answer")
        if self.target.sudo and status == 1 and said.startswith("sudo:"):
            raise SshConnectError(f"{self.target.where}: sudo -n refused: {said}")
        if status == 127:
            raise SshConnectError(
                f"{self.target.where}: `timeout` or `env` (coreutils) is missing: {said}"
            )
        if status != 0:
            raise SshConnectError(
                f"{self.target.where}: a first command failed (exit {status}): {said}"
            )
        self._sftp = self._open_sftp(limit)

    def _open_sftp(self, limit: float) -> paramiko.SFTPClient:
        import paramiko

        if not self.target.sudo:
            try:
                sftp = self._client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SshConnectError(
                    f"{self.target.where}: SFTP is not available ({exc}); it reads the files"
                ) from None
            self.file_access = "sftp"
            return sftp
        tried: list[str] = []
        for server in SFTP_SERVERS:
            command = shlex.join(["sudo", "-n", "--", server, "-R"])
            try:
                # Keep its stdin file: collected, it would close the channel's input and
                # sftp-server would read EOF and exit.
                self._keep, out, _ = self._client.exec_command(command, timeout=limit)
                sftp = paramiko.SFTPClient(out.channel)
            except (paramiko.SSHException, OSError, EOFError):
                tried.append(server)
                continue
            self.file_access = f"sudo -n -- {server} -R"
            return sftp
        raise SshConnectError(
            f"{self.target.where}: no sftp-server could be started with sudo -n "
            f"(tried {', '.join(tried)}); --sudo reads files through it"
        )

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        self._client.close()

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- limits ----------------------------------------------------------------------------

    def _left(self, wanted: float) -> float:
        """`wanted` seconds, or what is left of the host's time if less; `CommandTimeout`
        when none is."""
        if self._deadline is None:
            return wanted
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CommandTimeout(f"{self.target.where}: the host's time limit ran out")
        return min(wanted, left)

    @property
    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    # -- commands --------------------------------------------------------------------------

    def _command(self, argv: Sequence[str], timeout: float, env: Mapping[str, str]) -> str:
        words = ["sudo", "-n", "--"] if self.target.sudo else []
        words += ["timeout", "-k", str(KILL_GRACE_S), f"{max(timeout, 0.1):.3g}"]
        words += ["env", "-i", "--", *(f"{k}={v}" for k, v in {**self._env, **env}.items())]
        return shlex.join([*words, *argv])

    def _exec(
        self, command: str, stdin: bytes | None, limit: float
    ) -> tuple[int | None, bytes, bytes, bool]:
        """(exit status, stdout, stderr, stopped at `limit`) of one remote command."""
        import paramiko

        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise GatherError(f"{self.target.where}: the SSH connection is closed")
        try:
            # The stdin file is held until the end: collected, it would send EOF early.
            in_file, out_file, _ = self._client.exec_command(
                command, timeout=self.target.connect_timeout
            )
            try:
                return self._talk(out_file.channel, stdin, limit)
            finally:
                del in_file
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if not transport.is_active():
                raise GatherError(f"{self.target.where}: the SSH connection was lost") from None
            raise GatherError(f"{self.target.where}: {exc}") from None

    def _talk(
        self, channel: paramiko.Channel, stdin: bytes | None, limit: float
    ) -> tuple[int | None, bytes, bytes, bool]:
        out, err = bytearray(), bytearray()
        end = time.monotonic() + limit
        with contextlib.closing(channel):
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                got = False
                while channel.recv_ready():
                    out += channel.recv(65536)
                    got = True
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    got = True
                if len(out) + len(err) > MAX_OUTPUT:
                    raise GatherError(f"printed more than {MAX_OUTPUT >> 20} MiB: stopped")
                if channel.exit_status_ready() and not (
                    channel.recv_ready() or channel.recv_stderr_ready()
                ):
                    break
                left = end - time.monotonic()
                if left <= 0:
                    return None, bytes(out), bytes(err), True
                if not got:
                    # The channel's pipe wakes select on data and EOF; the exit status that
                    # follows EOF does not, hence the short cap.
                    ready, _, _ = select.select([channel], [], [], min(left, 0.05))
                    if ready and not (channel.recv_ready() or channel.recv_stderr_ready()):
                        time.sleep(0.001)
            status = channel.recv_exit_status()
        if status == -1:  # no exit status: the connection went (paramiko's -1)
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise GatherError(f"{self.target.where}: the SSH connection was lost")
        return status, bytes(out), bytes(err), False

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 10.0,
        check: bool = True,
        input_text: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        given = argv[0]
        program = check_read_only(argv, env, self._made)  # NotReadOnly: never sent
        # Resolved here as LocalRunner resolves it: the program sees the same argv[0] (tools
        # print it in their messages) and a missing tool is ToolMissing with nothing run.
        exe = given if given.startswith("/") else self._which_cached(given)
        if exe is None:
            raise ToolMissing(f"{given} is not installed")
        resolved = [exe, *argv[1:]]
        check_read_only(resolved, env, self._made)
        limit = self._left(timeout + KILL_GRACE_S + 1)
        command = self._command(resolved, min(timeout, limit), env or {})
        shown = shlex.join(resolved)
        started = time.monotonic()
        stdin = None if input_text is None else input_text.encode("utf-8")
        try:
            status, out, err, stopped = self._exec(command, stdin, limit)
        except GatherError:
            self.commands.append(CommandRecord(shown, None, _since(started)))
            raise
        elapsed = _since(started)
        self.commands.append(CommandRecord(shown, None if stopped else status, elapsed))
        if stopped or status is None or (status == 124 and elapsed >= timeout):
            raise CommandTimeout(f"{given} did not finish within {timeout:g} s")
        stdout, stderr = _universal_newlines(out), _universal_newlines(err)
        said = _last_line(err)
        if self.target.sudo and status == 1 and said.startswith("sudo:") and not stdout:
            raise AccessDenied(f"{given}: sudo -n refused: {said}")
        if status == 127:
            raise ToolMissing(f"{given} is not installed")
        if status == 126:
            raise AccessDenied(f"{exe}: permission denied")
        if program == "mktemp" and status == 0 and TEMP_MADE.fullmatch(stdout.strip()):
            self._made.add(stdout.strip())
        elif program == "rm" and status == 0:
            self._made.discard(argv[-1])
        result = CommandResult(tuple(argv), status, stdout, stderr)
        if check and status != 0:
            detail = (stderr.strip().splitlines() or ["no message"])[-1]
            raise CommandFailed(f"{given} exited {status}: {detail}", status, stderr)
        return result

    def _which_cached(self, name: str) -> str | None:
        if name not in self._found:
            self._found[name] = self.which(name)
        return self._found[name]

    # -- files -----------------------------------------------------------------------------

    def _file(self, kind: str, path: str, call: Callable[[paramiko.SFTPClient], _T]) -> _T:
        """One SFTP request, its failures mapped as LocalRunner maps the OS's."""
        import paramiko

        limit = self._left(FILE_TIMEOUT_S)
        sftp = self._sftp
        if sftp is None:
            raise GatherError(f"{self.target.where}: the SSH connection is closed")
        self.file_ops[kind] += 1
        sftp.get_channel().settimeout(limit)  # type: ignore[union-attr]
        try:
            value = call(sftp)
        except TimeoutError:
            self._sftp = None  # an answer may still come: this channel is out of step now
            with contextlib.suppress(Exception):
                sftp.close()
            raise CommandTimeout(f"{path}: no answer within {limit:g} s") from None
        except (paramiko.SSHException, EOFError) as exc:
            raise GatherError(f"{path}: {self._lost(exc)}") from None
        except OSError as exc:
            if not self._alive():
                raise GatherError(f"{path}: {self._lost(exc)}") from None
            if exc.errno == errno.ENOENT:
                raise SourceMissing(f"{path} does not exist") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise AccessDenied(f"{path}: permission denied") from None
            # SFTP says "Failure" for EIO, EISDIR and the like: the value is not there.
            raise SourceMissing(f"{path}: {exc.strerror or exc}") from None
        if not self._alive():  # a read that met the connection's end looks like EOF
            raise GatherError(f"{path}: {self._lost(None)}")
        return value

    def _alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _lost(self, exc: BaseException | None) -> str:
        if not self._alive():
            return "the SSH connection was lost"
        return f"SFTP: {exc}"

    def read_bytes(self, path: str) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as handle:
                return handle.read()

        return self._file("read", path, read)

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def list_dir(self, path: str) -> list[str]:
        return sorted(self._file("list", path, lambda sftp: sftp.listdir(path)))

    def exists(self, path: str) -> bool:
        try:
            self._file("stat", path, lambda sftp: sftp.lstat(path))
        except (SourceMissing, AccessDenied):
            return False  # os.path.lexists says False for both
        return True

    def realpath(self, path: str) -> str:
        """Resolve symlinks on the host; like os.path.realpath, a missing tail is kept."""
        try:
            return self._file("realpath", path, lambda sftp: sftp.normalize(path))
        except SourceMissing:
            parent, name = posixpath.split(posixpath.normpath(path))
            if not name or parent == path:
                return path
            return posixpath.join(self.realpath(parent), name)

    def which(self, name: str) -> str | None:
        """The first executable `name` in the PATH the commands get, as shutil.which answers."""
        candidates = (
            [name] if "/" in name else [f"{d}/{name}" for d in self._env["PATH"].split(":") if d]
        )
        for path in candidates:
            try:
                found = self._file("stat", path, _stat(path))
            except (SourceMissing, AccessDenied):
                continue
            mode = found.st_mode or 0
            if not stat.S_ISDIR(mode) and mode & 0o111:
                return path
        return None


def _stat(path: str) -> Callable[[paramiko.SFTPClient], paramiko.SFTPAttributes]:
    return lambda sftp: sftp.stat(path)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _last_line(err: bytes) -> str:
    lines = [x.strip() for x in err.decode("utf-8", "replace").splitlines() if x.strip()]
    return lines[-1] if lines else "no message"


def _connect_error(  # noqa: PLR0911 — one answer per kind of failure
    target: SshTarget, path: str, limit: float, exc: Exception
) -> SshConnectError:
    """One line for a failed login, naming the host and what to do."""
    import paramiko

    where = target.where
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRefused(
            f"{where}: host key CHANGED: it offers {fingerprint(exc.key)} but {path} holds "
            f"{fingerprint(exc.expected_key)}: refused (a reinstalled host, or someone in "
            "between: check it on the host's console before you replace the line)"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key {target.key_file}" if target.key_file else "the ssh-agent's keys"
        return SshConnectError(f"{where}: authentication failed with {how}")
    if isinstance(exc, TimeoutError):
        return SshConnectError(f"{where}: no answer within {limit:g} s")
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        # paramiko's "No existing ..." is a handshake that did not end within the timeout.
        if "banner" in text or text.startswith("No existing"):
            return SshConnectError(f"{where}: no SSH answer within {limit:g} s")
        if "No authentication methods" in text:
            return SshConnectError(f"{where}: no key to log in with (no key file, no ssh-agent)")
        return SshConnectError(f"{where}: SSH: {text}")
    if isinstance(exc, OSError):
        return SshConnectError(f"{where}: cannot connect: {exc.strerror or exc}")
    return SshConnectError(f"{where}: {type(exc).__name__}: {exc}")
