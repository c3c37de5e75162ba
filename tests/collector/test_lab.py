"""The hospital-in-a-box lab, built for real (the session's `lab` of conftest.py, shared with the
scanner's tests), probed from inside its zones; every fault flips exactly the behaviour it names
and back; `down` leaves nothing, also after the builder was killed mid-way without its state
file. The config builders are tested without root first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from collector.lab import Lab, LabError
from collector.lab import netns as lab_netns
from collector.lab import topology as t
from collector.lab.cli import main as lab_main
from collector.lab.configs import (
    MODSECURITY_RECOMMENDED,
    LabConfigError,
    LabPaths,
    check_zones,
    modsecurity_conf,
    nft_ruleset,
    parse_policy,
    render_zones,
)
from collector.lab.faults import gateway_accepts_tls10
from collector.lab.lab import zones_template
from collector.lab.processes import processes_in
from tests.collector.lab_build import (
    PATH,
    assert_nothing_left,
    cannot_build,
    lab_folder,
    namespace_ids,
    root_links,
)

REPO = Path(__file__).resolve().parents[2]
ATTACK = "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
CLI = (sys.executable, "-m", "collector.lab.cli")

# --- builders, no root needed -----------------------------------------------------------------


def test_packaged_zones_file_matches_the_lab() -> None:
    text = zones_template()
    check_zones(text)
    rules = parse_policy(text)
    assert ("internet", "dmz", "tcp", 443) in {(r.source, r.target, r.proto, r.port) for r in rules}
    document = yaml.safe_load(text)
    portal = next(app for app in document["web_apps"] if app["name"] == "portal")
    assert portal["url"] == f"http://{t.PORTAL[0]}/"
    his_web = document["critical_systems"][0]
    assert (his_web["address"], his_web["ports"]) == (t.HIS_WEB[0], [f"tcp/{t.HIS_WEB[1]}"])
    assert his_web["ztna_gateway"] == f"https://{t.GATEWAY[0]}/"


def test_ruleset_is_the_policy_plus_the_faults_switched_on() -> None:
    rules = parse_policy(zones_template())
    clean = nft_ruleset(rules, ())
    assert "policy drop" in clean
    assert 'iifname "br-dmz" oifname "br-his" tcp dport { 5432, 8443 }' in clean
    assert "tcp flags & (fin | syn | rst | ack) == syn ct state new accept" in clean
    assert 'iifname "br-office" oifname "br-his"' not in clean
    assert "fault" not in clean.replace("policy drop", "")
    broken = nft_ruleset(rules, {t.FAULT_OFFICE_HIS_OPEN, t.FAULT_ZTNA_BYPASS})
    assert f'comment "fault {t.FAULT_OFFICE_HIS_OPEN}"' in broken
    assert f"ip daddr {t.HIS_WEB[0]} tcp dport {t.HIS_WEB[1]}" in broken
    leak = nft_ruleset(rules, {t.FAULT_HIS_DB_LEAK})
    assert (
        f'iifname "br-office" oifname "br-his" ip daddr {t.DATABASE_SQLSERVER[0]} '
        f"tcp dport {t.DATABASE_SQLSERVER[1]}"
    ) in leak


def test_the_leaking_port_is_one_no_policy_rule_and_no_listed_port_names() -> None:
    """his-db-leak is the leak a scan of the listed ports alone cannot see."""
    document = yaml.safe_load(zones_template())
    named = {port for rule in document["policy"]["allow"] for port in rule["ports"]}
    named |= set(document["scan"].get("extra_ports", ()))
    named |= {port for system in document["critical_systems"] for port in system["ports"]}
    assert f"tcp/{t.DATABASE_SQLSERVER[1]}" not in named
    assert document["scan"].get("ports", "top1000") == "top1000"


def test_policy_errors_name_the_entry() -> None:
    bad_zone = "policy: {default: deny, allow: [{from: lab, to: dmz, ports: [tcp/80]}]}"
    with pytest.raises(LabConfigError, match=r"#1: unknown zone from='lab'"):
        parse_policy(bad_zone)
    bad_port = "policy: {default: deny, allow: [{from: office, to: dmz, ports: [tcp/0]}]}"
    with pytest.raises(LabConfigError, match="bad port 'tcp/0'"):
        parse_policy(bad_port)
    with pytest.raises(LabConfigError, match=r"policy\.default must be 'deny'"):
        parse_policy("policy: {default: allow, allow: []}")


def test_rendered_zones_file_has_the_prefix_and_absolute_paths() -> None:
    paths = LabPaths(Path("/run/medsec/x"))
    document = yaml.safe_load(render_zones(zones_template(), "x-", paths))
    vantages = {zone["name"]: zone["vantage"] for zone in document["zones"]}
    assert vantages["his"] == {"kind": "netns", "netns": "x-his"}
    assert vantages["office"]["key_file"] == "/run/medsec/x/ssh/probe_key"
    assert vantages["office"]["known_hosts"] == "/run/medsec/x/ssh/known_hosts"
    assert vantages["office"]["via_netns"] == "x-mgmt"
    assert document["policy"] == yaml.safe_load(zones_template())["policy"]


def test_modsecurity_conf_blocks_is_absolute_and_needs_the_recommended_directives() -> None:
    paths = LabPaths(Path("/run/medsec/x"))
    if os.path.exists(MODSECURITY_RECOMMENDED):
        text = modsecurity_conf(Path(MODSECURITY_RECOMMENDED).read_text(), paths)
        directives = [line.split()[0] for line in text.splitlines() if line.strip()]
        assert "SecRuleEngine" not in directives  # the engine mode lives in engine.conf
        assert "SecUnicodeMapFile /etc/modsecurity/unicode.mapping 20127" in text
        assert "SecAuditLog /run/medsec/x/logs/modsec-audit.log" in text
    with pytest.raises(LabConfigError, match="SecAuditLog"):
        modsecurity_conf("SecRuleEngine On\n", paths)


def test_prefix_and_names_are_checked() -> None:
    for prefix in ("", "lab", "LAB-", "a/b-", "averyveryverylongprefix-"):
        with pytest.raises(LabError, match="prefix"):
            Lab("/tmp/x", prefix)
    lab = Lab("/tmp/x", "ab-")
    assert lab.netns("his") == "ab-his"
    with pytest.raises(LabError, match="unknown lab zone"):
        lab.netns("lab")


def test_proc_net_parser_reads_listening_sockets() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0A0112C6:0050 00000000:0000 0A 00000000:00000000\n"
        "   1: 0A0112C6:0050 0B0112C6:D431 01 00000000:00000000\n"
    )
    assert lab_netns.parse_proc_net(table, "0A") == {("198.18.1.10", 80)}


def test_cli_rejects_unknown_fault() -> None:
    with pytest.raises(SystemExit) as exit_info:
        lab_main(["fault", "no-such-fault", "on"])
    assert exit_info.value.code == 2


# --- the lab, for real ------------------------------------------------------------------------


def _curl(lab: Lab, zone: str, url: str, *extra: str) -> tuple[int, dict[str, str], str]:
    done = subprocess.run(
        lab.command(zone, "curl", "-sS", "-i", "--max-time", "5", *extra, url),
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
        env={"PATH": PATH, "LC_ALL": "C"},
    )
    head, _, body = done.stdout.partition("\n\n")  # text mode: CRLF arrives as LF
    lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _open(lab: Lab, zone: str, address: tuple[str, int]) -> bool:
    return lab_netns.can_connect(lab.netns(zone), *address, timeout=0.4)


def _observe(lab: Lab) -> dict[str, object]:
    """Every behaviour a fault may change, observed at once."""
    probes: dict[str, Callable[[], object]] = {
        "office->db": lambda: _open(lab, "office", t.DATABASE),
        "office->his-web": lambda: _open(lab, "office", t.HIS_WEB),
        "office->sqlserver": lambda: _open(lab, "office", t.DATABASE_SQLSERVER),
        "dmz->sqlserver": lambda: _open(lab, "dmz", t.DATABASE_SQLSERVER),
        "internet->db": lambda: _open(lab, "internet", t.DATABASE),
        "internet->his-web": lambda: _open(lab, "internet", t.HIS_WEB),
        "office->booking": lambda: _open(lab, "office", t.BOOKING),
        "waf attack status": lambda: _curl(lab, "internet", f"http://{t.PORTAL[0]}{ATTACK}")[0],
        "gateway tls1.0": lambda: gateway_accepts_tls10(lab.netns("office")),
    }
    with ThreadPoolExecutor(len(probes)) as pool:
        futures = {name: pool.submit(probe) for name, probe in probes.items()}
        return {name: future.result() for name, future in futures.items()}


CLEAN = {
    "office->db": False,
    "office->his-web": False,
    "office->sqlserver": False,
    "dmz->sqlserver": False,
    "internet->db": False,
    "internet->his-web": False,
    "office->booking": True,
    "waf attack status": 403,
    "gateway tls1.0": False,
}


@pytest.mark.root
def test_portal_answers_through_the_waf_and_the_waf_blocks_xss(lab: Lab) -> None:
    status, headers, body = _curl(lab, "internet", f"http://{t.PORTAL[0]}/")
    assert status == 200
    assert headers["server"] == "PatientPortal/2.3"  # the backend's answer, passed through
    assert headers["x-request-id"]  # ... by the WAF
    assert "Patient portal" in body
    status, headers, body = _curl(lab, "internet", f"http://{t.PORTAL[0]}{ATTACK}")
    assert status == 403
    assert headers["server"] == t.WAF_SERVER
    assert t.WAF_BLOCK_MARKER in body
    assert headers["x-request-id"] in body  # the support id on the block page


@pytest.mark.root
def test_booking_has_no_waf(lab: Lab) -> None:
    status, headers, body = _curl(lab, "office", f"http://{t.BOOKING[0]}{ATTACK}")
    assert status == 200
    assert headers["server"] == "BookingApp/1.4"
    assert "x-request-id" not in headers
    assert "Appointment booking" in body


@pytest.mark.root
def test_his_is_dark_from_internet_and_office_and_open_to_the_dmz(lab: Lab) -> None:
    assert _observe(lab) == CLEAN
    assert _open(lab, "dmz", t.DATABASE)
    assert _open(lab, "dmz", t.HIS_WEB)
    assert not _open(lab, "mgmt", t.DATABASE)


@pytest.mark.root
def test_ack_scan_sees_the_router_as_stateful(lab: Lab) -> None:
    """SYN-only accept rules: an allowed port is open to -sS and filtered to -sA."""
    target = [t.HIS_WEB[0], "-p", str(t.HIS_WEB[1])]
    for scan, expected in (("-sS", "open"), ("-sA", "filtered")):
        done = subprocess.run(
            lab.command("dmz", "nmap", "-n", "-Pn", "-T4", "--max-retries", "1", scan, *target),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert f"{t.HIS_WEB[1]}/tcp {expected}" in " ".join(done.stdout.split())


@pytest.mark.root
def test_gateway_requires_the_lab_client_certificate(lab: Lab) -> None:
    pki = lab.directory / "pki"
    url = f"https://{t.GATEWAY[0]}/"
    status, _, body = _curl(
        lab,
        "office",
        url,
        "--cacert", str(pki / "ca.crt"),
        "--cert", str(pki / "client.crt"),
        "--key", str(pki / "client.key"),
    )  # fmt: skip
    assert (status, "Hospital information system" in body) == (200, True)
    status, _, body = _curl(lab, "office", url, "--cacert", str(pki / "ca.crt"))
    assert status == 400
    assert "No required SSL certificate was sent" in body


@pytest.mark.root
def test_snmp_agent_is_the_firewall_persona_from_mgmt_only(lab: Lab, tmp_path: Path) -> None:
    secrets = json.loads(lab.snmp_file.read_text())
    assert lab.snmp_file.stat().st_mode & 0o777 == 0o600
    persona = t.PERSONAS[t.DEFAULT_PERSONA]
    env = {"PATH": PATH, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp_path)}
    v3 = secrets["v3"]
    v3_argv = ["snmpget", "-On", "-t", "1", "-r", "1", "-v3", "-l", "authPriv", "-u", v3["user"]]
    v3_argv += ["-a", "SHA", "-A", v3["auth_password"], "-x", "AES", "-X", v3["priv_password"]]
    done = subprocess.run(
        lab.command("mgmt", *v3_argv, t.SNMP_AGENT[0], "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.1.0"),
        capture_output=True,
        text=True,
        timeout=15,
        env=env,
        check=True,
    )
    assert f"OID: .{persona.sys_object_id}" in done.stdout
    assert persona.sys_descr in done.stdout
    v2c = ["snmpget", "-On", "-t", "1", "-r", "0", "-v2c", "-c", secrets["v2c"]["community"]]
    for zone, answers in (("mgmt", True), ("office", False)):
        done = subprocess.run(
            lab.command(zone, *v2c, t.SNMP_AGENT[0], "1.3.6.1.2.1.1.5.0"),
            capture_output=True,
            text=True,
            timeout=15,
            env=env,
            check=False,
        )
        assert ("border-fw-01" in done.stdout) is answers, (zone, done.stdout, done.stderr)


@pytest.mark.root
def test_ssh_vantage_takes_the_probe_key_from_mgmt(lab: Lab) -> None:
    ssh = lab.directory / "ssh"
    done = subprocess.run(
        lab.command(
            "mgmt",
            "ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={ssh / 'known_hosts'}",
            "-i", str(ssh / "probe_key"), f"{t.PROBE_USER}@{t.SSH_VANTAGE[0]}", "true",
        ),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    zones = yaml.safe_load(lab.zones_file.read_text())
    office = next(zone for zone in zones["zones"] if zone["name"] == "office")["vantage"]
    assert office["key_file"] == str(ssh / "probe_key")
    assert office["via_netns"] == lab.netns("mgmt")


@pytest.mark.root
@pytest.mark.parametrize(
    ("fault", "changes"),
    [
        (
            t.FAULT_OFFICE_HIS_OPEN,
            {"office->db": True, "office->his-web": True, "office->sqlserver": True},
        ),
        (t.FAULT_HIS_DB_LEAK, {"office->sqlserver": True}),
        (t.FAULT_ZTNA_BYPASS, {"office->his-web": True, "internet->his-web": True}),
        (t.FAULT_WAF_BYPASS, {"waf attack status": 200}),
        (t.FAULT_WAF_DETECTION_ONLY, {"waf attack status": 200}),
        (t.FAULT_TLS10, {"gateway tls1.0": True}),
    ],
)
def test_each_fault_flips_exactly_its_behaviour(
    lab: Lab, fault: str, changes: dict[str, object]
) -> None:
    try:
        lab.fault(fault, True)
        lab.fault(fault, True)  # idempotent
        assert lab.faults() == {fault}
        assert _observe(lab) == {**CLEAN, **changes}
    finally:
        lab.fault(fault, False)
    lab.fault(fault, False)
    assert lab.faults() == frozenset()
    assert _observe(lab) == CLEAN


@pytest.mark.root
def test_status_and_a_second_up(lab: Lab) -> None:
    status = lab.status()
    assert status.healthy, status
    assert {daemon.name for daemon in status.daemons} == {
        "waf", "gateway", "dmz-apps", "his-apps", "snmpd", "sshd",
    }  # fmt: skip
    with pytest.raises(LabError, match="already"):
        lab.up()
    assert lab.status().healthy


def _daemons_launched(lab: Lab) -> bool:
    try:
        state = json.loads((lab.directory / "state.json").read_text())
    except (OSError, ValueError):
        return False
    return len(state.get("daemons", {})) == 6 and bool(processes_in([lab.netns("his")]))


@pytest.mark.root
def test_down_cleans_up_after_a_killed_builder_without_its_state_file() -> None:
    reason = cannot_build()
    if reason:
        pytest.skip(reason)
    crashed = Lab(lab_folder(), f"k{os.getpid() % 100000}-")
    links = root_links()
    builder = subprocess.Popen(
        [*CLI, "up", "--prefix", crashed.prefix, "--dir", str(crashed.directory)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    try:
        # Mid-way: the daemons are launched and the builder waits for them to listen.
        while not _daemons_launched(crashed) and time.monotonic() < deadline:
            if builder.poll() is not None:
                break
            time.sleep(0.002)
        builder.send_signal(signal.SIGKILL)
    finally:
        builder.wait(timeout=10)
    assert builder.returncode == -signal.SIGKILL, "the builder finished before it was killed"
    assert crashed.status().phase == "building"
    ids = namespace_ids(crashed)
    assert len(ids) == len(t.NAMESPACE_SUFFIXES)
    (crashed.directory / "state.json").unlink()
    time.sleep(0.5)  # let the orphaned daemon launchers finish starting
    report = crashed.down()
    assert sorted(report.namespaces) == sorted(crashed.netns(s) for s in t.NAMESPACE_SUFFIXES)
    assert report.stopped > 0
    assert_nothing_left(crashed, ids, links)
    assert crashed.status().phase == "absent"
    shutil.rmtree(crashed.directory, ignore_errors=True)
