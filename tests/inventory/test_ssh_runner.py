"""`SshRunner` against a real sshd on a loopback port: it answers as `LocalRunner` answers for the
same commands and files of this host, refuses any command off the read-only allow-list before
sending it, verifies host keys (unknown refused, TOFU recorded, changed always refused), logs in
with a key file, an encrypted key or the ssh-agent, bounds every wait, and with `sudo` runs as
root through `sudo -n`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.gather import gather
from checks.registry import builtin_registry
from inventory.host.backup.postgres import POSTGRES_QUERY
from inventory.network.readonly import RULES, NotReadOnly, check_read_only
from inventory.network.ssh import HostKeyRefused, SshConnectError, SshRunner, SshTarget, load_key
from inventory.runner import (
    AccessDenied,
    CommandFailed,
    CommandResult,
    CommandTimeout,
    GatherError,
    LocalRunner,
    SourceMissing,
    ToolMissing,
)
from tests.inventory.sshd import (
    Sshd,
    ensure_account,
    make_key,
    need_sshd,
    remove_account,
    start_sshd,
    tool,
)

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_sshd()
    folder = tmp_path_factory.mktemp("keys")
    make_key(folder / "root")
    make_key(folder / "stranger")
    return folder


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"), {"root": [keys / "root.pub"]})
    try:
        yield server
    finally:
        server.stop()


def target(sshd: Sshd, keys: Path, tmp_path: Path, **changes: Any) -> SshTarget:
    known = tmp_path / "known_hosts"
    if not known.exists():
        sshd.write_known_hosts(known)
    fields: dict[str, Any] = {
        "host": sshd.host,
        "user": "root",
        "port": sshd.port,
        "key_file": str(keys / "root"),
        "known_hosts": str(known),
        "connect_timeout": 5.0,
    }
    fields.update(changes)
    return SshTarget(**fields)


@pytest.fixture
def runner(sshd: Sshd, keys: Path, tmp_path: Path) -> Iterator[SshRunner]:
    with SshRunner.connect(target(sshd, keys, tmp_path)) as opened:
        yield opened


def outcome(call: Any) -> Any:
    """A call's value, or its exception's type: what a gatherer can tell apart."""
    try:
        value = call()
    except GatherError as exc:
        return type(exc)
    if isinstance(value, CommandResult):
        return (value.returncode, value.stdout, value.stderr)
    return value


# --------------------------------------------------------------------------- the same answers


def _disk() -> str:
    out = subprocess.run(
        [tool("lsblk"), "-dnpo", "NAME,TYPE"], capture_output=True, text=True, check=True
    ).stdout
    return next(line.split()[0] for line in out.splitlines() if line.split()[1] == "disk")


def test_commands_answer_as_they_do_locally(runner: SshRunner) -> None:
    local = LocalRunner()
    commands: list[tuple[list[str], dict[str, str] | None]] = [
        (["lsblk", "--json", "--bytes", "--output", "NAME,TYPE,SIZE,MOUNTPOINTS"], None),
        (["ip", "-j", "address", "show"], None),
        (["sysctl", "-n", "kernel.hostname", "net.ipv4.ip_forward"], None),
        (["openssl", "version"], None),
        (["stat", "--format=%Y", "--", "/etc/hostname"], None),
        (["blkid", "-p", "-o", "export", _disk()], None),  # exit 2 here: no permission
        (["nft", "-j", "list", "ruleset"], None),
        # The environment reaches the command: find prints the zone the times are shown in.
        (["find", "/", "-maxdepth", "0", "-printf", "%TZ"], {"TZ": "UTC0"}),
        (["find", "/", "-maxdepth", "0", "-printf", "%TZ"], None),
    ]
    for argv, env in commands:
        here = outcome(lambda a=argv, e=env: local.run(a, check=False, env=e))
        there = outcome(lambda a=argv, e=env: runner.run(a, check=False, env=e))
        assert there == here, argv
    # Failures have the same type and the same one line.
    argv = ["stat", "--format=%Y", "--", "/nonexistent/file"]
    with pytest.raises(CommandFailed) as at_home:
        local.run(argv)
    with pytest.raises(CommandFailed) as over_ssh:
        runner.run(argv)
    assert str(over_ssh.value) == str(at_home.value)
    assert over_ssh.value.returncode == at_home.value.returncode == 1
    if shutil.which("nwipe") is None:  # a tool not installed: ToolMissing both ways
        with pytest.raises(ToolMissing, match="nwipe is not installed"):
            local.run(["nwipe", "--version"])
        with pytest.raises(ToolMissing, match="nwipe is not installed"):
            runner.run(["nwipe", "--version"])
    recorded = [(c.argv, c.exit) for c in runner.commands]
    assert ("/usr/bin/stat --format=%Y -- /nonexistent/file", 1) in recorded
    assert recorded[0] == ("true", 0)  # the check made when connecting


def test_files_answer_as_they_do_locally(runner: SshRunner, tmp_path: Path) -> None:
    local = LocalRunner()
    (tmp_path / "secret").write_text("root only\r\nline two\n")
    (tmp_path / "secret").chmod(0o600)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "folder").mkdir()
    paths = [
        "/proc/sys/kernel/hostname",
        "/etc/os-release",
        "/sys/class/dmi/id/product_uuid",  # root only
        "/sys/class/net/lo/address",
        str(tmp_path / "secret"),
        str(tmp_path / "folder"),  # a directory: SourceMissing both ways
        str(tmp_path / "dangling"),
        "/nonexistent/file",
    ]
    for path in paths:
        assert outcome(lambda p=path: runner.read_bytes(p)) == outcome(
            lambda p=path: local.read_bytes(p)
        ), path
        assert runner.exists(path) == local.exists(path), path
    for path in ["/sys/class/net", "/etc/ssh", str(tmp_path / "secret"), "/nonexistent"]:
        assert outcome(lambda p=path: runner.list_dir(p)) == outcome(
            lambda p=path: local.list_dir(p)
        ), path
    for path in ["/sys/class/net/lo", "/sys/block", str(tmp_path / "dangling"), "/no/such/tail"]:
        assert runner.realpath(path) == local.realpath(path), path
    for name in ["nft", "lsblk", "journalctl", "no-such-tool", "/usr/bin/stat"]:
        assert runner.which(name) == local.which(name), name
    assert runner.read_text(str(tmp_path / "secret")) == "root only\r\nline two\n"
    assert runner.file_ops["read"] >= len(paths)


# --------------------------------------------------------------------------- read-only


WRITING = [
    ["rm", "-rf", "/"],
    ["shred", "-u", "/dev/vda"],
    ["blkdiscard", "/dev/vda"],
    ["hdparm", "--security-erase", "x", "/dev/sda"],
    ["nft", "flush", "ruleset"],
    ["nft", "-f", "/tmp/rules"],
    ["ip", "link", "set", "lo", "down"],
    ["ip", "addr", "flush", "dev", "lo"],
    ["sysctl", "-w", "net.ipv4.ip_forward=1"],
    ["sysctl", "net.ipv4.ip_forward=1"],
    ["journalctl", "--vacuum-time=1s"],
    ["journalctl", "--rotate"],
    ["find", "/var/log", "-delete"],
    ["find", "/", "-exec", "sh", "-c", "id", ";"],
    ["cryptsetup", "luksDump", "--dump-volume-key", "/dev/vda"],
    ["cryptsetup", "luksErase", "/dev/vda"],
    ["dmsetup", "table", "--showkeys"],
    ["dmsetup", "remove_all"],
    ["ipset", "flush"],
    ["iptables-save", "-f", "/etc/passwd"],
    ["restic", "--repo", "/r", "forget", "--prune"],
    ["restic", "--repo", "/r", "--password-command", "sh -c id", "--no-lock", "snapshots"],
    ["borg", "delete", "/r"],
    ["borg", "list", "/r"],  # without --bypass-lock borg takes a lock in the repository
    ["psql", "--dbname=x", "--command=DROP TABLE patients"],
    ["pg_waldump", "--save-fullpage=/tmp/x", "0001"],
    ["mktemp", "/etc/XXXXXX"],
    ["openssl", "req", "-new"],
    ["nvme", "format", "/dev/nvme0n1"],
    ["sg_opcodes", "/dev/sda", "--raw"],
    ["lsblk2"],
    ["sh", "-c", "lsblk"],
    ["bash"],
    ["/tmp/lsblk"],
    ["./lsblk"],
    ["/home/x/bin/stat", "/"],
]


@pytest.fixture(scope="module")
def shared_runner(
    sshd: Sshd, keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SshRunner]:
    with SshRunner.connect(target(sshd, keys, tmp_path_factory.mktemp("kh"))) as opened:
        yield opened


@pytest.mark.parametrize("argv", WRITING, ids=[" ".join(a)[:40] for a in WRITING])
def test_commands_off_the_allow_list_are_never_sent(
    shared_runner: SshRunner, argv: list[str]
) -> None:
    before = len(shared_runner.commands)
    with pytest.raises(NotReadOnly, match="refused"):
        shared_runner.run(argv)
    assert len(shared_runner.commands) == before  # nothing ran


def test_environment_that_could_run_a_program_is_refused(shared_runner: SshRunner) -> None:
    run = shared_runner.run
    with pytest.raises(NotReadOnly, match="BORG_PASSCOMMAND"):
        run(["borg", "--version"], env={"BORG_PASSCOMMAND": "sh -c 'rm -rf /'"})
    with pytest.raises(NotReadOnly, match="LD_PRELOAD"):
        run(["lsblk"], env={"LD_PRELOAD": "/tmp/x.so"})
    with pytest.raises(NotReadOnly, match="BORG_BASE_DIR"):
        run(["borg", "--version"], env={"BORG_BASE_DIR": "/tmp/medsec-backup.AAAAAAAAAA"})


def test_rm_removes_only_the_folder_its_mktemp_made(shared_runner: SshRunner) -> None:
    runner = shared_runner
    made = runner.run(["mktemp", "-d", "-t", "medsec-backup.XXXXXXXXXX"]).stdout.strip()
    assert os.path.isdir(made)
    with pytest.raises(NotReadOnly):
        runner.run(["rm", "-rf", "--", "/tmp"])
    runner.run(["rm", "-rf", "--", made])
    assert not os.path.exists(made)
    with pytest.raises(NotReadOnly):  # once removed, the folder is no longer the runner's
        runner.run(["rm", "-rf", "--", made])


def test_every_command_the_gatherers_run_here_is_allowed() -> None:
    """A gatherer whose argv is not on the allow-list would get `error` over SSH only: record
    what the agent's gatherers run on this host and judge each."""
    seen: list[tuple[tuple[str, ...], dict[str, str] | None]] = []

    class Recording(LocalRunner):
        def run(self, argv: Any, **kw: Any) -> CommandResult:
            seen.append((tuple(argv), kw.get("env")))
            return super().run(argv, **kw)

    registry = builtin_registry()
    config = parse_config({}, "defaults", registry)
    gather(Recording(), config, registry.needs(registry.ids()))
    assert len(seen) >= 10
    for argv, env in seen:
        check_read_only(argv, env)
    # And the forms the backup gatherers use with their sources configured.
    made = ["/tmp/medsec-backup.Ab3dE6gH9j"]
    check_read_only(["mktemp", "-d", "-t", "medsec-backup.XXXXXXXXXX"])
    check_read_only(["rm", "-rf", "--", made[0]], made=made)
    check_read_only(
        ["borg", "list", "--json", "--bypass-lock", "/srv/borg"],
        {
            "BORG_BASE_DIR": made[0],
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
            "TZ": "UTC0",
            "BORG_PASSCOMMAND": "cat /etc/medsec/borg.pass",
        },
        made,
    )
    restic = ["restic", "--repo", "/srv/restic", "--password-file", "/etc/medsec/r.pass"]
    check_read_only([*restic, "--no-lock", "--no-cache", "--json", "snapshots"])
    psql = ["psql", "--no-psqlrc", "--no-password", "--quiet", "--no-align", "--tuples-only"]
    check_read_only(
        [*psql, "--set=ON_ERROR_STOP=1", "--dbname=x", f"--command={POSTGRES_QUERY}"],
        {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "medsec-agent"},
    )
    check_read_only(["/usr/lib/postgresql/15/bin/pg_waldump", "--version"])
    check_read_only(["find", "-H", "/backup", "-mindepth", "1", "-maxdepth", "1", "-type", "f"])
    assert "true" in RULES


# --------------------------------------------------------------------------- host keys


def test_a_changed_host_key_is_refused_even_with_trust_on_first_use(
    sshd: Sshd, keys: Path, tmp_path: Path
) -> None:
    other = make_key(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    kind, b64 = other.with_suffix(".pub").read_text().split()[:2]
    known.write_text(f"[{sshd.host}]:{sshd.port} {kind} {b64}\n")
    for tofu in (False, True):
        with pytest.raises(HostKeyRefused) as refused:
            SshRunner.connect(target(sshd, keys, tmp_path, trust_on_first_use=tofu))
        said = str(refused.value)
        assert f"root@{sshd.host}:{sshd.port}: host key CHANGED" in said
        assert sshd.fingerprint() in said  # what the server offers
        assert "\n" not in said
    assert known.read_text().count("\n") == 1  # nothing recorded


def test_an_unknown_host_key_is_refused_then_recorded_with_trust_on_first_use(
    sshd: Sshd, keys: Path, tmp_path: Path
) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # folder and file do not exist yet
    with pytest.raises(HostKeyRefused) as refused:
        SshRunner.connect(target(sshd, keys, tmp_path, known_hosts=str(known)))
    said = str(refused.value)
    assert said.startswith(f"root@{sshd.host}:{sshd.port}: host key ssh-ed25519 ")
    assert sshd.fingerprint() in said
    assert "--trust-on-first-use" in said
    assert not known.exists()

    with SshRunner.connect(
        target(sshd, keys, tmp_path, known_hosts=str(known), trust_on_first_use=True)
    ) as first:
        assert first.host_key_recorded
        assert first.host_key == f"ssh-ed25519 {sshd.fingerprint()}"
    assert known.read_text() == sshd.known_hosts_line()
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert oct(known.parent.stat().st_mode & 0o777) == "0o700"
    with SshRunner.connect(target(sshd, keys, tmp_path, known_hosts=str(known))) as again:
        assert not again.host_key_recorded  # known now, without TOFU
    assert known.read_text() == sshd.known_hosts_line()


def test_concurrent_first_uses_record_the_key_once(sshd: Sshd, keys: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# kept\n")
    errors: list[BaseException] = []

    def connect() -> None:
        try:
            SshRunner.connect(
                target(sshd, keys, tmp_path, known_hosts=str(known), trust_on_first_use=True)
            ).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert known.read_text() == "# kept\n" + sshd.known_hosts_line()


# --------------------------------------------------------------------------- logging in


def test_a_key_the_account_does_not_accept_is_an_authentication_failure(
    sshd: Sshd, keys: Path, tmp_path: Path
) -> None:
    for changes in ({"key_file": str(keys / "stranger")}, {"user": "nobody"}):
        with pytest.raises(SshConnectError, match="authentication failed with key"):
            SshRunner.connect(target(sshd, keys, tmp_path, **changes))


def test_an_encrypted_key_needs_its_passphrase_from_the_environment(
    sshd: Sshd, tmp_path: Path
) -> None:
    words = "correct horse"
    key = make_key(tmp_path / "locked", passphrase=words)
    with pytest.raises(SshConnectError, match="MEDSEC_SSH_KEY_PASSPHRASE"):
        load_key(str(key))
    key.chmod(0o644)
    with pytest.raises(SshConnectError, match="mode 0644 lets others read it"):
        load_key(str(key), words)
    key.chmod(0o600)
    server = start_sshd(tmp_path / "sshd", {"root": [key.with_suffix(".pub")]})
    try:
        known = server.write_known_hosts(tmp_path / "kh")
        login = SshTarget(
            server.host,
            "root",
            port=server.port,
            key_file=str(key),
            passphrase=words,
            known_hosts=str(known),
        )
        assert words not in repr(login)
        with SshRunner.connect(login) as opened:
            assert opened.read_text("/proc/sys/kernel/hostname")
    finally:
        server.stop()


def test_the_ssh_agent_logs_in_when_no_key_file_is_given(
    sshd: Sshd, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = shutil.which("ssh-agent")
    if agent is None:
        pytest.skip("ssh-agent is not installed (Debian package openssh-client)")
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen([agent, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(
            [tool("ssh-add"), str(keys / "root")], env=env, check=True, capture_output=True
        )
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SshRunner.connect(target(sshd, keys, tmp_path, key_file=None)) as opened:
            assert opened.run(["openssl", "version"]).returncode == 0
    finally:
        process.terminate()
        process.wait(5)


# --------------------------------------------------------------------------- time limits


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_port_that_never_answers_is_an_error_in_bounded_time(
    sshd: Sshd, keys: Path, tmp_path: Path, silent_port: int
) -> None:
    started = time.monotonic()
    with pytest.raises(SshConnectError, match=r"no SSH answer within 1 s"):
        SshRunner.connect(target(sshd, keys, tmp_path, port=silent_port, connect_timeout=1.0))
    assert time.monotonic() - started < 3
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(SshConnectError, match="cannot connect: Connection refused"):
        SshRunner.connect(target(sshd, keys, tmp_path, port=port))


def test_a_command_past_its_timeout_is_stopped(runner: SshRunner, silent_port: int) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed (it waits on the silent server here)")
    argv = [
        "psql",
        "--no-psqlrc",
        "--no-password",
        f"--dbname=host=127.0.0.1 port={silent_port} user=x dbname=x",
        f"--command={POSTGRES_QUERY}",
    ]
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="psql did not finish within 1 s"):
        runner.run(argv, timeout=1.0, env={"PGCONNECT_TIMEOUT": "60"})
    assert time.monotonic() - started < 4
    assert runner.commands[-1].exit == 124  # `timeout` on the host ended it, as it should
    assert runner.run(["openssl", "version"]).returncode == 0  # the connection is still good


def test_the_hosts_time_limit_ends_every_call(sshd: Sshd, keys: Path, tmp_path: Path) -> None:
    opened = SshRunner.connect(target(sshd, keys, tmp_path), deadline=time.monotonic() + 30)
    with opened:
        assert not opened.expired
        opened._deadline = time.monotonic()  # the limit has come
        assert opened.expired
        for call in (
            lambda: opened.run(["openssl", "version"]),
            lambda: opened.read_text("/etc/hostname"),
            lambda: opened.list_dir("/"),
        ):
            with pytest.raises(CommandTimeout, match="time limit ran out"):
                call()


def test_a_lost_connection_is_a_gather_error(runner: SshRunner) -> None:
    runner._client.close()
    with pytest.raises(GatherError, match="connection"):
        runner.run(["openssl", "version"])
    with pytest.raises(GatherError):
        runner.read_text("/etc/hostname")


# --------------------------------------------------------------------------- sudo


ACCOUNT = "medsec-ssh-t"


@pytest.fixture(scope="module")
def sudo_account(keys: Path) -> Iterator[str]:
    """A non-root account allowed `sudo -n` without a password (a sudoers.d file removed at the
    end), and sudo's own check that the file is valid."""
    sudo = shutil.which("sudo")
    if sudo is None:
        pytest.skip("sudo is not installed (Debian package sudo)")
    created = ensure_account(ACCOUNT)
    rule = Path(f"/etc/sudoers.d/{ACCOUNT}")
    rule.write_text(f"{ACCOUNT} ALL=(root) NOPASSWD: ALL\n")
    rule.chmod(0o440)
    try:
        subprocess.run([tool("visudo"), "-cf", str(rule)], check=True, capture_output=True)
        yield ACCOUNT
    finally:
        rule.unlink(missing_ok=True)
        if created:
            remove_account(ACCOUNT)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every account may enter (sshd reads a user's authorized keys as that user;
    pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="medsec-ssh-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_sudo_runs_commands_and_reads_files_as_root(
    keys: Path, open_folder: Path, sudo_account: str
) -> None:
    tmp_path = open_folder
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    (vault / "key").write_text("root's\n")
    (vault / "key").chmod(0o600)
    server = start_sshd(tmp_path / "sshd", {sudo_account: [keys / "root.pub"]})
    try:
        login = target(server, keys, tmp_path, user=sudo_account)
        with SshRunner.connect(login) as plain:
            with pytest.raises(AccessDenied):
                plain.read_text(str(vault / "key"))
            with pytest.raises(CommandFailed, match="Permission denied"):
                plain.run(["stat", "--format=%U", "--", str(vault / "key")])
            assert plain.file_access == "sftp"
        with SshRunner.connect(SshTarget(**{**vars(login), "sudo": True})) as root:
            assert root.read_text(str(vault / "key")) == "root's\n"
            assert root.run(["stat", "--format=%U", "--", str(vault / "key")]).stdout == "root\n"
            assert root.file_access.startswith("sudo -n -- ")
            assert root.file_access.endswith(" -R")
            assert root.list_dir(str(vault)) == ["key"]
    finally:
        server.stop()


def test_sudo_that_wants_a_password_is_refused_in_one_line(
    keys: Path, open_folder: Path, sudo_account: str
) -> None:
    tmp_path = open_folder
    rule = Path(f"/etc/sudoers.d/{sudo_account}")
    kept = rule.read_text()
    rule.write_text(f"{sudo_account} ALL=(root) ALL\n")  # a password would be asked
    server = start_sshd(tmp_path / "sshd", {sudo_account: [keys / "root.pub"]})
    try:
        login = target(server, keys, tmp_path, user=sudo_account, sudo=True)
        with pytest.raises(SshConnectError) as refused:
            SshRunner.connect(login)
        said = str(refused.value)
        assert said.startswith(f"{sudo_account}@127.0.0.1:{server.port}: sudo -n refused: sudo:")
        assert "\n" not in said
    finally:
        rule.write_text(kept)
        server.stop()


def test_source_missing_and_tool_missing_over_sudo(
    keys: Path, open_folder: Path, sudo_account: str
) -> None:
    tmp_path = open_folder
    server = start_sshd(tmp_path / "sshd", {sudo_account: [keys / "root.pub"]})
    try:
        login = target(server, keys, tmp_path, user=sudo_account, sudo=True)
        with SshRunner.connect(login) as root:
            with pytest.raises(SourceMissing):
                root.read_bytes("/nonexistent")
            if shutil.which("nwipe") is None:
                with pytest.raises(ToolMissing):
                    root.run(["nwipe", "--version"])
    finally:
        server.stop()
