"""The converge tests' target hosts are real and separate: own file system, name, machine-id and
network namespace with no route out, reachable by ssh and Ansible from the test process, and
gone without a trace afterwards.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ansible.hosts import Host, ansible_env, base_root, hosts, write_inventory

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(900),
]  # a cold base build takes ~45 s

NAMES = ("alpha", "beta", "gamma")
OUTSIDE = "198.19.255.1"  # in the lab range, outside every host's subnet
ANSIBLE = Path(sys.executable).parent / "ansible"


class Three:
    def __init__(self, members: list[Host], up_seconds: float, tmp: Path) -> None:
        self.members = members
        self.up_seconds = up_seconds
        self.tmp = tmp


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Three]:
    base_root()  # cold: a debootstrap; timed apart from the hosts themselves
    tmp = tmp_path_factory.mktemp("hosts")
    started = time.monotonic()
    with hosts(NAMES, tmp / "keys") as members:
        yield Three(members, time.monotonic() - started, tmp)


def _ok(host: Host, command: str) -> str:
    done = host.run(command)
    assert done.returncode == 0, f"{host.name}: {command}: {done.stderr}"
    return done.stdout


def test_three_hosts_come_up_in_seconds_once_the_base_is_cached(three: Three) -> None:
    assert three.up_seconds < 30, f"three hosts took {three.up_seconds:.1f} s"
    assert [h.name for h in three.members] == list(NAMES)


def test_a_file_written_in_one_host_is_in_no_other_nor_on_the_machine(three: Three) -> None:
    alpha, beta, gamma = three.members
    probe = f"/etc/medsec-probe-{secrets.token_hex(4)}"
    _ok(alpha, f"echo written-in-alpha > {probe}")
    assert _ok(alpha, f"cat {probe}") == "written-in-alpha\n"
    for other in (beta, gamma):
        assert other.run(f"test -e {probe}").returncode == 1, other.name
        assert not (other.root / probe.lstrip("/")).exists()
    assert not Path(probe).exists()
    assert (alpha.root / probe.lstrip("/")).read_text() == "written-in-alpha\n"


def test_each_host_has_its_own_hostname_and_machine_id(three: Three) -> None:
    machine_id = Path("/etc/machine-id").read_text().strip()
    seen: set[str] = set()
    for host in three.members:
        assert _ok(host, "hostname").strip() == host.name
        assert _ok(host, "cat /etc/hostname").strip() == host.name
        host_id = _ok(host, "cat /etc/machine-id").strip()
        assert re.fullmatch(r"[0-9a-f]{32}", host_id), host_id
        assert host_id != machine_id
        seen.add(host_id)
    assert len(seen) == len(NAMES)
    assert socket.gethostname() not in NAMES


def test_a_login_gets_a_terminal_as_ansible_asks_for_one(three: Three) -> None:
    host = three.members[2]
    *options, target = host.ssh_args
    done = subprocess.run(
        [*options, "-tt", target, "tty"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("/dev/pts/")


def test_hosts_have_no_route_out_but_reach_each_other(three: Three) -> None:
    alpha, beta, _ = three.members
    connect = "import socket, sys; socket.create_connection((sys.argv[1], 22), timeout=3)"
    for host in three.members:
        routes = _ok(host, "ip route")
        assert "default" not in routes
        assert routes.split()[0].endswith(".0/24"), routes
        out = host.run(["python3", "-c", connect, OUTSIDE])
        assert out.returncode == 1
        assert "Network is unreachable" in out.stderr
    # the same probe succeeds inside the subnet, by name and by address
    assert beta.run(["python3", "-c", connect, "alpha"]).returncode == 0
    assert alpha.run(["python3", "-c", connect, beta.address]).returncode == 0


def test_systemctl_works_offline_inside_a_host(three: Three) -> None:
    """What the roles rely on: enabling writes the links, starting is ignored, nothing runs."""
    host = three.members[0]
    (host.root / "etc/systemd/system/medsec-probe.service").write_text(
        "[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/sleep 1000\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    enable = host.run("systemctl enable medsec-probe.service")
    assert enable.returncode == 0, enable.stderr
    assert "Created symlink" in enable.stderr
    assert (
        host.root / "etc/systemd/system/multi-user.target.wants/medsec-probe.service"
    ).is_symlink()
    assert _ok(host, "systemctl is-enabled medsec-probe.service").strip() == "enabled"
    for verb in ("daemon-reload", "start medsec-probe.service", "is-active medsec-probe.service"):
        done = host.run(f"systemctl {verb}")
        assert done.returncode == 0
        assert f"Running in chroot, ignoring command '{verb.split()[0]}'" in done.stderr
    now = host.run("systemctl enable --now medsec-probe.service")
    assert now.returncode == 1
    assert "has not been booted with systemd" in now.stderr
    assert "sleep 1000" not in _ok(host, "ps -eo args")
    done = host.run("systemctl disable medsec-probe.service")
    assert done.returncode == 0, done.stderr
    assert host.run("systemctl is-enabled medsec-probe.service").stdout.strip() == "disabled"


def test_a_started_process_runs_as_its_user_inside_the_host_until_stopped(three: Three) -> None:
    host = three.members[1]
    _ok(host, "id probe || useradd --system --no-create-home probe")
    listen = (
        "import os, socket, time; s = socket.socket(); s.bind(('0.0.0.0', 8099)); s.listen();"
        "print(os.getuid(), os.environ['HOME'], flush=True); time.sleep(600)"
    )
    proc = host.start(["/usr/bin/python3", "-c", listen], user="probe", env={"PROBE": "1"})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host.address, 8099), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, host.log_of(proc)
                time.sleep(0.1)
        owner = _ok(host, "ps -o user= -C python3").split()
        assert owner == ["probe"]
        entry = _ok(host, "getent passwd probe").split(":")
        assert host.log_of(proc).split() == [entry[2], entry[5]]  # the user's uid and home
    finally:
        code = host.stop(proc)
    assert code == -15  # SIGTERM reached the process itself, not only nsenter
    assert host.run("ps -o user= -C python3").stdout == ""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host.address, 8099), timeout=1).close()


@pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible-core is not installed in the venv")
def test_ansible_reaches_every_host_over_ssh(three: Three) -> None:
    inventory = write_inventory(three.tmp / "inventory.yml", {"lab": three.members})
    env = ansible_env(three.tmp / "ansible")
    ping = subprocess.run(
        [str(ANSIBLE), "-i", str(inventory), "all", "-m", "ansible.builtin.ping"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for name in NAMES:
        assert re.search(rf'^{name} \| SUCCESS => {{\n\s+"changed": false,\n\s+"ping": "pong"',
                         ping.stdout, re.MULTILINE), ping.stdout  # fmt: skip
    facts = subprocess.run(
        [str(ANSIBLE), "-i", str(inventory), "alpha", "-m", "ansible.builtin.setup",
         "-a", "filter=ansible_service_mgr,ansible_hostname,ansible_default_ipv4", "-o"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert facts.returncode == 0, facts.stdout + facts.stderr
    gathered = json.loads(facts.stdout.split(" => ", 1)[1])["ansible_facts"]
    assert gathered["ansible_service_mgr"] == "sysvinit"  # never "systemd": see hosts.py
    assert gathered["ansible_hostname"] == "alpha"
    assert gathered["ansible_default_ipv4"] == {}
    sockets = list((three.tmp / "ansible" / "cp").iterdir())
    assert sockets, "ssh connections are not shared: every task pays a new handshake"


def test_nothing_remains_after_the_hosts_are_gone(tmp_path: Path) -> None:
    pids: set[int] = set()
    with (  # noqa: PT012 (the body is the point: an exception leaves the context)
        pytest.raises(RuntimeError, match="test body failed"),
        hosts(["one", "two"], tmp_path / "keys") as pair,
    ):
        for host in pair:
            host.start(["/bin/sleep", "600"])
            pids |= {int(p) for p in _ip("netns", "pids", host.netns).split()}
        assert len(pids) >= 6  # per host: PID 1, sshd, sleep
        names = {h.netns for h in pair}
        links = {pair[0].bridge} | {h.veth for h in pair}
        work = pair[0].root.parent
        assert work.is_dir()
        raise RuntimeError("test body failed")
    assert not names & set(_ip("netns", "list").split())
    listed = _ip("-o", "link", "show")
    assert not [link for link in links if f" {link}:" in listed or f" {link}@" in listed]
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not work.exists()
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(work).encode() in _read(p)]


def _ip(*args: str) -> str:
    return subprocess.run(
        ["/usr/bin/ip", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
