"""The Ansible roles converge real hosts: a collector and two agents, each its own Debian 12 root
file system in its own network namespace with no route out, reached over SSH, installed from the
offline bundle alone (no host can reach a package index).

The plays run in the order a hospital would: the collector first, then the whole site, one agent
with a wrong enrolment token (it fails with the collector's reason, the other carries on), again
with the token the collector role hands over (it enrols and delivers a report the collector
stores), again with nothing to do (changed=0), with one variable changed (only that host's
agent.yaml changes, nothing restarts), and uninstalled. Each test is one step of that story and
builds on the steps before it, so they share one module-scoped deployment.

systemd is not PID 1 on these hosts (see tests/ansible/hosts.py): the test starts the collector
the role deployed itself, and checks the units with `systemd-analyze verify` and their symlinks.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ansible.bundle import bundle_tarball, version
from tests.ansible.hosts import Host, ansible_env, hosts, write_inventory

pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]  # one worker: tests/conftest.py

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "ansible" / "site.yml"
PLAYBOOK_BIN = REPO / ".venv" / "bin" / "ansible-playbook"
COLLECTOR, AGENT1, AGENT2 = "collector", "agent1", "agent2"
CONFIG = "/etc/medsec/collector.yaml"
MEDSEC = "/opt/medsec/.venv/bin/medsec"
AGENT_BIN = "/opt/medsec/.venv/bin/medsec-agent"
ENROL = "medsec_agent : Enrol (the token is not logged)"
UNITS = {
    AGENT1: ("medsec-agent.service", "medsec-agent.timer"),
    COLLECTOR: ("medsec-collector.service", "medsec-prune.service", "medsec-prune.timer"),
}
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Play:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]
    seconds: float

    def changed_tasks(self, host: str) -> list[str]:
        """Names of the tasks that reported `changed` on host."""
        names: list[str] = []
        task = ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith(f"changed: [{host}]") or line.startswith(f"changed: [{host} "):
                names.append(task)
        return names


@dataclass
class Site:
    tmp: Path
    env: dict[str, str]
    hosts: dict[str, Host]
    bundle: Path
    admin_token_file: Path
    ca_copy: Path
    collector_log: Path | None = None
    plays: list[tuple[str, float]] = field(default_factory=list)
    _serving: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.hosts[COLLECTOR].address}:8443"

    def inventory(
        self, name: str, agent_vars: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Path:
        h = self.hosts
        return write_inventory(
            self.tmp / f"{name}.yml",
            {"medsec_collector": [h[COLLECTOR]], "medsec_agents": [h[AGENT1], h[AGENT2]]},
            host_vars={
                COLLECTOR: {
                    "medsec_collector_admin_user": "admin",
                    "medsec_collector_admin_token_file": str(self.admin_token_file),
                    "medsec_collector_ca_copy": str(self.ca_copy),
                    "medsec_collector_bundle": str(self.bundle),
                },
                **(agent_vars or {}),
            },
            group_vars={
                "medsec_agents": {
                    "medsec_agent_bundle": str(self.bundle),
                    "medsec_agent_collector_url": self.url,
                    "medsec_agent_collector_ca": str(self.ca_copy),
                    "medsec_agent_site": "dc1",
                }
            },
        )

    def play(self, name: str, inventory: Path, *args: str) -> Play:
        started = time.monotonic()
        done = subprocess.run(
            [str(PLAYBOOK_BIN), "-i", str(inventory), str(PLAYBOOK), *args],
            capture_output=True, text=True, env=self.env, timeout=600, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
        self.plays.append((name, seconds))
        (self.tmp / f"{name}.log").write_text(done.stdout + done.stderr)
        recap = {
            m.group(1): {
                "ok": int(m.group(2)),
                "changed": int(m.group(3)),
                "unreachable": int(m.group(4)),
                "failed": int(m.group(5)),
            }
            for m in map(_RECAP.match, done.stdout.splitlines())
            if m
        }
        output = done.stdout + done.stderr
        if done.returncode != 0 and self._serving is not None:
            # A failed play after the collector started: how the collector fared belongs with it.
            collector = self.hosts[COLLECTOR]
            state = "running" if self._serving.poll() is None else f"exited {self._serving.poll()}"
            log = collector.log_of(self._serving)[-3000:]
            output += f"\n--- the site's collector ({state}), last of its log ---\n{log}"
        return Play(done.returncode, output, recap, seconds)

    def serve(self) -> None:
        """Start the collector the role deployed, as its own user, and wait for its port."""
        collector = self.hosts[COLLECTOR]
        self._serving = collector.start([MEDSEC, "serve", "--config", CONFIG], user="medsec")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._serving.poll() is not None:
                raise AssertionError(f"collector exited: {collector.log_of(self._serving)}")
            try:
                socket.create_connection((collector.address, 8443), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"collector not listening: {collector.log_of(self._serving)}")

    def medsec(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`medsec ARGS --config ...` inside the collector host, as the collector's user."""
        return self.hosts[COLLECTOR].exec([MEDSEC, *args, "--config", CONFIG], user="medsec")

    def agents(self) -> dict[str, dict[str, Any]]:
        done = self.medsec("agents", "list", "--format", "json")
        assert done.returncode == 0, done.stderr
        return {a["name"]: a for a in json.loads(done.stdout)}

    def api(self, path: str) -> Any:
        token = self.admin_token_file.read_text().strip()
        answer = httpx.get(
            self.url + path,
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=str(self.ca_copy)),
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if not PLAYBOOK_BIN.exists():
        pytest.skip("ansible-playbook is not in .venv (scripts/bootstrap.sh installs it)")
    tmp = Path("/tmp") / f"msa-{time.monotonic_ns() % 10**8}"  # short: ssh control sockets
    tmp.mkdir(mode=0o700)
    credentials = tmp / "credentials"
    with hosts([COLLECTOR, AGENT1, AGENT2], tmp / "keys") as made:
        yield Site(
            tmp=tmp,
            env=ansible_env(tmp / "ansible"),
            hosts={h.name: h for h in made},
            bundle=bundle_tarball(),
            admin_token_file=credentials / "admin.token",
            ca_copy=credentials / "medsec-collector-ca.pem",
        )
    shutil.rmtree(tmp, ignore_errors=True)


def _assert_recap(play: Play, **expected: Mapping[str, int]) -> None:
    for host, counts in expected.items():
        got = play.recap.get(host)
        assert got is not None, f"{host} missing from the recap:\n{play.output[-3000:]}"
        for key, value in counts.items():
            assert got[key] == value, (
                f"{host} {key}={got[key]}, expected {value}; "
                f"changed tasks {play.changed_tasks(host)}\n{play.output[-4000:]}"
            )


def test_collector_converges_from_the_bundle_and_serves(site: Site) -> None:
    play = site.play("collector", site.inventory("collector"), "--limit", "medsec_collector")
    _assert_recap(play, collector={"failed": 0, "unreachable": 0})
    assert play.rc == 0
    # The collector role deployed a complete collector: it starts from what the role wrote.
    site.serve()
    assert site.admin_token_file.stat().st_mode & 0o777 == 0o600
    assert site.api("/api/v1/agents") is not None
    # Nothing from the bundle reached the host through a network: it has no route out.
    routes = site.hosts[COLLECTOR].run("ip route").stdout
    assert "default" not in routes, routes


def test_a_wrong_token_fails_that_host_alone_with_the_collectors_reason(site: Site) -> None:
    inventory = site.inventory(
        "wrong-token", {AGENT2: {"medsec_agent_enrollment_token": "not-a-real-token-0000"}}
    )
    play = site.play("wrong-token", inventory, "-e", '{"medsec_agent_run_now": true}')
    _assert_recap(play, agent1={"failed": 0}, agent2={"failed": 1}, collector={"failed": 0})
    assert play.rc != 0
    reason = next(line for line in play.output.splitlines() if "enrolment of agent2 failed" in line)
    assert "token" in reason.lower(), reason  # the collector's own words about the token
    assert "not-a-real-token" not in play.output  # never logged, not even a wrong one
    agents = site.agents()
    assert agents[AGENT1]["state"] == "active"
    assert agents.get(AGENT2, {}).get("state") != "active"
    assert not (site.hosts[AGENT2].root / "etc/medsec/agent.cred").exists()


def test_a_rerun_enrols_the_failed_host_and_every_agent_reports(site: Site) -> None:
    play = site.play("enrol", site.inventory("enrol"), "-e", '{"medsec_agent_run_now": true}')
    _assert_recap(play, agent1={"failed": 0}, agent2={"failed": 0}, collector={"failed": 0})
    assert ENROL in play.changed_tasks(AGENT2)
    assert ENROL not in play.changed_tasks(AGENT1)
    agents = site.agents()
    assert {agents[a]["state"] for a in (AGENT1, AGENT2)} == {"active"}
    assert all(agents[a]["last_seen_at"] for a in (AGENT1, AGENT2))
    # The reports are stored and listed by the collector's API, one host per agent.
    listed = site.api("/api/v1/hosts")
    rows = {row["agent"]: row for row in listed["items"]}
    assert {AGENT1, AGENT2} <= set(rows), rows
    for agent in (AGENT1, AGENT2):
        assert rows[agent]["hostname"] == agent  # each host is its own machine
        assert sum(rows[agent]["counts"].values()) > 0  # the report carried its results
    for agent in (AGENT1, AGENT2):
        root = site.hosts[agent].root
        assert (root / "etc/medsec/agent.cred").stat().st_mode & 0o777 == 0o600
        spool = (root / "var/lib/medsec/spool").iterdir()
        left = [p.name for p in spool if p.is_file() and not p.name.startswith(".")]
        assert not left, (agent, left, play.output[play.output.find("Show the run") :][:3000])


def test_converging_again_changes_nothing(site: Site) -> None:
    play = site.play("idempotence", site.inventory("idempotence"))
    assert play.rc == 0, play.output[-4000:]
    _assert_recap(
        play,
        collector={"changed": 0, "failed": 0},
        agent1={"changed": 0, "failed": 0},
        agent2={"changed": 0, "failed": 0},
    )


def test_configs_are_valid_and_units_verify_and_are_enabled(site: Site) -> None:
    for name in (AGENT1, AGENT2):
        host = site.hosts[name]
        check = host.exec([AGENT_BIN, "check-config", "/etc/medsec/agent.yaml"])
        assert check.returncode == 0, check.stderr
        wants = host.root / "etc/systemd/system/timers.target.wants/medsec-agent.timer"
        assert wants.is_symlink()
        assert (host.root / "etc/medsec/agent.yaml").stat().st_mode & 0o777 == 0o600
    collector = site.hosts[COLLECTOR]
    assert collector.exec([MEDSEC, "check-config", CONFIG]).returncode == 0
    assert (
        collector.root / "etc/systemd/system/multi-user.target.wants/medsec-collector.service"
    ).is_symlink()
    assert (
        collector.root / "etc/systemd/system/timers.target.wants/medsec-prune.timer"
    ).is_symlink()
    # systemd-analyze verify exits 0 on warnings: its stderr must be empty too.
    for name, units in UNITS.items():
        host = site.hosts[name]
        paths = [f"/etc/systemd/system/{u}" for u in units]
        verified = host.exec(["systemd-analyze", "verify", *paths])
        assert verified.returncode == 0, (name, verified.stderr)
        assert not verified.stderr.strip(), (name, verified.stderr)


def test_changing_a_variable_changes_only_that_config(site: Site) -> None:
    backups = [
        {"name": "pacs-export", "kind": "path", "glob": "/backup/pacs/*.tar", "rpo_minutes": 60}
    ]
    inventory = site.inventory("variable", {AGENT1: {"medsec_agent_backups": backups}})
    before = (site.hosts[AGENT1].root / "etc/medsec/agent.yaml").read_text()
    play = site.play("variable", inventory)
    assert play.rc == 0, play.output[-4000:]
    assert play.changed_tasks(AGENT1) == ["medsec_agent : Write /etc/medsec/agent.yaml"]
    _assert_recap(play, agent1={"changed": 1}, agent2={"changed": 0}, collector={"changed": 0})
    assert "RUNNING HANDLER" not in play.output  # nothing restarted
    after = (site.hosts[AGENT1].root / "etc/medsec/agent.yaml").read_text()
    assert "pacs-export" in after
    assert "pacs-export" not in before


def test_a_config_the_agent_refuses_is_not_written(site: Site) -> None:
    path = site.hosts[AGENT1].root / "etc/medsec/agent.yaml"
    before = path.read_bytes()
    inventory = site.inventory(
        "refused", {AGENT1: {"medsec_agent_checks_disabled": ["no.such_check"]}}
    )
    play = site.play("refused", inventory, "--limit", AGENT1)
    _assert_recap(play, agent1={"failed": 1})
    assert "unknown check id 'no.such_check'" in play.output
    assert path.read_bytes() == before


def test_uninstall_removes_what_the_role_installed_and_revokes_nothing(site: Site) -> None:
    inventory = site.inventory("absent", {AGENT2: {"medsec_agent_state": "absent"}})
    play = site.play("absent", inventory, "--limit", AGENT2)
    assert play.rc == 0, play.output[-4000:]
    root = site.hosts[AGENT2].root
    for gone in (
        "opt/medsec",
        "etc/medsec/agent.yaml",
        "etc/medsec/agent.cred",
        "etc/systemd/system/medsec-agent.timer",
        "etc/systemd/system/timers.target.wants/medsec-agent.timer",
        "etc/apt/sources.list.d/medsec-bundle.list",
        "var/lib/medsec",
    ):
        assert not (root / gone).exists(), gone
    assert site.agents()[AGENT2]["state"] == "active"  # revoking is the collector's decision
    assert "medsec agents revoke agent2" in play.output
    # The other agent and the collector are untouched.
    assert (site.hosts[AGENT1].root / "etc/medsec/agent.cred").exists()
    print("plays (s):", ", ".join(f"{n} {s:.0f}" for n, s in site.plays))


def test_bundle_version_matches_the_roles_default() -> None:
    defaults = (REPO / "ansible/roles/medsec_agent/defaults/main.yml").read_text()
    assert f'medsec_agent_version: "{version()}"' in defaults
