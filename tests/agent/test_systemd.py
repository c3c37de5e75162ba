"""The systemd units: they parse (`systemd-analyze verify`), start what the install puts in place,
and keep their sandbox. Installed layout (README "Deployment", the Ansible roles): the venv in
/opt/medsec/.venv, configs in /etc/medsec, state in /var/lib/medsec and /var/lib/medsec-collector.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_SERVICE = ROOT / "agent/systemd/medsec-agent.service"
AGENT_TIMER = ROOT / "agent/systemd/medsec-agent.timer"
COLLECTOR_SERVICE = ROOT / "collector/systemd/medsec-collector.service"
PRUNE_SERVICE = ROOT / "collector/systemd/medsec-prune.service"
PRUNE_TIMER = ROOT / "collector/systemd/medsec-prune.timer"
UNITS = (AGENT_SERVICE, AGENT_TIMER, COLLECTOR_SERVICE, PRUNE_SERVICE, PRUNE_TIMER)

VENV_BIN = "/opt/medsec/.venv/bin"
AGENT_EXEC = f"{VENV_BIN}/medsec-agent run --config /etc/medsec/agent.yaml --format json"
COLLECTOR_EXEC = f"{VENV_BIN}/medsec serve --config /etc/medsec/collector.yaml"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value (systemd keys repeat; configparser would keep the last)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def one(path: Path, section: str, key: str) -> str:
    values = unit(path)[section][key]
    assert len(values) == 1, f"{key} set {len(values)} times in {path.name}"
    return values[0]


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


def _verify(analyze: str, files: list[Path]) -> list[str]:
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on warnings: every line it prints is a finding.
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_units_verify_clean(tmp_path):
    """As shipped: the only complaint allowed is the binary not being installed on this machine."""
    analyze = _analyze()
    copies = []
    for path in UNITS:
        copies.append(tmp_path / path.name)
        shutil.copy(path, copies[-1])
    lines = _verify(analyze, copies)
    absent = {
        f"medsec-agent.service: Command {VENV_BIN}/medsec-agent is not executable: "
        "No such file or directory",
        f"medsec-collector.service: Command {VENV_BIN}/medsec is not executable: "
        "No such file or directory",
        f"medsec-prune.service: Command {VENV_BIN}/medsec is not executable: "
        "No such file or directory",
    }
    if Path(VENV_BIN).is_dir():
        absent = set()
    assert [line for line in lines if line not in absent] == []


def test_units_verify_with_the_binaries_present(tmp_path):
    """Pointed at this checkout's console scripts, verify has nothing at all to say."""
    analyze = _analyze()
    venv_bin = str(Path(sys.executable).parent)
    for path in UNITS:
        text = path.read_text(encoding="utf-8").replace(VENV_BIN, venv_bin)
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    assert _verify(analyze, [tmp_path / p.name for p in UNITS]) == []


def test_exec_lines_match_the_install_layout():
    assert one(AGENT_SERVICE, "Service", "ExecStart") == AGENT_EXEC
    assert one(COLLECTOR_SERVICE, "Service", "ExecStart") == COLLECTOR_EXEC
    # The console scripts the package declares are the ones started.
    scripts = configparser.ConfigParser()
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts.read_string("[s]" + block)
    assert {k: v.strip('"') for k, v in scripts["s"].items()} == {
        "medsec-agent": "agent.cli:main",
        "medsec": "collector.cli:main",
    }


def test_agent_service_sandbox():
    svc = unit(AGENT_SERVICE)["Service"]
    assert svc["Type"] == ["oneshot"]
    assert svc["ProtectSystem"] == ["strict"]
    assert svc["ReadWritePaths"] == ["/var/lib/medsec"]  # the spool lives there, nothing else
    assert svc["ProtectHome"] == ["read-only"]
    assert svc["PrivateTmp"] == ["yes"]
    assert svc["NoNewPrivileges"] == ["yes"]
    assert svc["LockPersonality"] == ["yes"]
    assert set(svc["RestrictAddressFamilies"][0].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert set(svc["CapabilityBoundingSet"][0].split()) == {
        "CAP_SYS_ADMIN",
        "CAP_SYS_RAWIO",
        "CAP_DAC_READ_SEARCH",
        "CAP_NET_ADMIN",
    }
    assert svc["AmbientCapabilities"] == [""]
    # Block devices stay reachable for LUKS headers, hdparm and nvme.
    assert "block-* r" in svc["DeviceAllow"]
    assert svc["MemoryMax"] == ["200M"]
    assert svc["Nice"] == ["10"]
    assert svc["IOSchedulingClass"] == ["idle"]
    assert svc["TimeoutStartSec"] == ["5min"]


def test_pruning_runs_daily_with_no_privilege():
    svc = unit(PRUNE_SERVICE)["Service"]
    assert svc["ExecStart"] == [
        f"{VENV_BIN}/medsec audit prune --config /etc/medsec/collector.yaml",
        f"{VENV_BIN}/medsec db prune --config /etc/medsec/collector.yaml",
    ]
    assert (svc["Type"], svc["User"], svc["CapabilityBoundingSet"]) == (
        ["oneshot"],
        ["medsec"],
        [""],
    )
    timer = unit(PRUNE_TIMER)["Timer"]
    assert (timer["OnCalendar"], timer["Persistent"]) == (["daily"], ["true"])


def test_agent_timer_schedule():
    timer = unit(AGENT_TIMER)
    assert timer["Timer"]["OnBootSec"] == ["2min"]
    assert timer["Timer"]["OnUnitActiveSec"] == ["5min"]
    assert timer["Timer"]["RandomizedDelaySec"] == ["30s"]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Timer"]["Unit"] == [AGENT_SERVICE.name]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_collector_service_sandbox():
    svc = unit(COLLECTOR_SERVICE)["Service"]
    assert svc["Type"] == ["simple"]
    assert svc["User"] == ["medsec"]
    assert svc["ProtectSystem"] == ["strict"]
    assert svc["ReadWritePaths"] == ["/var/lib/medsec-collector"]
    for key in ("PrivateTmp", "PrivateDevices", "NoNewPrivileges", "MemoryDenyWriteExecute"):
        assert svc[key] == ["yes"], key
    assert svc["CapabilityBoundingSet"] == [""]  # none: 8443 is not a privileged port
    assert svc["AmbientCapabilities"] == [""]
    # AF_NETLINK and a whole /proc/net: nmap (API scans) finds routes and interfaces there.
    assert set(svc["RestrictAddressFamilies"][0].split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
        "AF_NETLINK",
    }
    assert "ProcSubset" not in svc
    assert svc["SystemCallFilter"][0] == "@system-service"
    assert svc["Restart"] == ["on-failure"]
    assert unit(COLLECTOR_SERVICE)["Install"]["WantedBy"] == ["multi-user.target"]
