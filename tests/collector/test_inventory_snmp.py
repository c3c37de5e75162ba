"""`medsec inventory snmp` as users run it (the installed console script), against real snmpd
agents on loopback ports: the JSON, CSV and table outputs, exit codes, one-line errors for a bad
targets or zones file, no secret in any output; `--store` on SQLite and PostgreSQL, then the
compliance report showing the device as an object of the clauses its checks map to; and a run
inside the lab, against the router's own snmpd, judging every border of the lab's zones file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.catalog import Catalog, builtin_catalogs
from collector.compliance.aggregate import Evidence, Rules, aggregate, check_kinds
from collector.compliance.model import Compliance, Scope
from collector.compliance.zones import ZoneMap
from collector.lab import Lab
from collector.models import EvidenceHost, EvidenceResult
from collector.scan.zones import parse_zones
from collector.store import Store
from tests.collector import cli_inline
from tests.collector.cli_inline import Done

MEDSEC = str(Path(sys.executable).parent / "medsec")
SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
COMMUNITY = "Vq7xLm2RtZ9kWp4N"
AUTH_KEY = "AuthKey-8dN3qLw2"
PRIV_KEY = "PrivKey-5hT9cRz7"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY)
HILLSTONE = ("1.3.6.1.4.1.28557.1", "Hillstone Networks StoneOS SG-6000-E3960 5.5R6")
CISCO_ISR = (
    "1.3.6.1.4.1.9.1.1041",
    "Cisco IOS Software, ISR4300 Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), Version 16.9.4",
)
ZONES = {
    "zones": [
        {"name": "dmz", "cidrs": ["198.18.1.0/27"]},
        {"name": "his", "cidrs": ["198.18.2.0/27"]},
    ],
    "borders": [{"zones": ["dmz", "his"], "require": ["firewall"]}],
}


# --- real agents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    ports: tuple[int, ...]
    folder: Path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def snmpd_conf(ports: tuple[int, ...], persona: tuple[str, str], *, public: bool) -> str:
    addresses = ",".join(f"udp:127.0.0.1:{port}" for port in ports)
    return (
        f"agentAddress {addresses}\n"
        f"sysDescr {persona[1]}\n"
        f"sysObjectID {persona[0]}\n"
        "sysName border-fw-01\nsysLocation rack B2\nsysContact netops@hospital.test\n"
        f"rocommunity {COMMUNITY} 127.0.0.1\n"
        + ("rocommunity public 127.0.0.1\n" if public else "")
        + f"createUser medsec SHA {AUTH_KEY} AES {PRIV_KEY}\nrouser medsec priv\n"
    )


@contextmanager
def snmpd(
    folder: Path,
    ports: tuple[int, ...],
    persona: tuple[str, str] = HILLSTONE,
    *,
    public: bool = False,
    netns: str | None = None,
) -> Iterator[Agent]:
    """A real snmpd with a v2c community and an SHA/AES v3 user (and, with `public`, the
    well-known community too), stopped at the end. Its secrets are in its 0600 config file,
    never on a command line."""
    folder.mkdir(parents=True, exist_ok=True)
    conf, log = folder / "snmpd.conf", folder / "snmpd.log"
    conf.write_text(snmpd_conf(ports, persona, public=public), encoding="utf-8")
    conf.chmod(0o600)
    argv = [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(log), "-p", str(folder / "pid")]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(folder / "persist")}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while "NET-SNMP version" not in (log.read_text() if log.exists() else ""):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"snmpd did not start: {process.stderr and process.stderr.read()!r}"
                )
            time.sleep(0.05)
        yield Agent(ports, folder)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Agent, Agent]]:
    """A well-run firewall's agent (v3 on its first port, v2c on its second) and a careless
    one that answers `public`."""
    if not os.path.exists(SNMPD):
        pytest.skip("snmpd (net-snmp) is missing")
    base = tmp_path_factory.mktemp("snmpd")
    good_ports = (free_udp_port(), free_udp_port())
    with (
        snmpd(base / "good", good_ports) as good,
        snmpd(base / "careless", (free_udp_port(),), CISCO_ISR, public=True) as careless,
    ):
        yield good, careless


# --- files and runs ---------------------------------------------------------------------------


def write_secret(path: Path, value: str) -> str:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path.name


def targets_file(
    folder: Path,
    devices: list[dict[str, Any]],
    *,
    zones: dict[str, Any] | None = None,
    name: str = "targets.yaml",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_secret(folder / "community", COMMUNITY)
    write_secret(folder / "auth.key", AUTH_KEY)
    write_secret(folder / "priv.key", PRIV_KEY)
    document: dict[str, Any] = {
        "defaults": {"version": "2c", "community_file": "community", "timeout": 1, "retries": 0},
        "devices": devices,
    }
    if zones is not None:
        (folder / "zones.yaml").write_text(yaml.safe_dump(zones), encoding="utf-8")
        document["zones"] = "zones.yaml"
    path = folder / name
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def v3(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "address": "127.0.0.1",
        "port": port,
        "version": 3,
        "user": "medsec",
        "auth": {"protocol": "sha", "key_file": "auth.key"},
        "priv": {"protocol": "aes", "key_file": "priv.key"},
        **extra,
    }


def medsec(*args: str | Path, netns: str | None = None, timeout: float = 60) -> Done:
    argv = [MEDSEC, *map(str, args)]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    assert "Traceback" not in done.stderr, done.stderr
    for secret in SECRETS:
        assert secret not in done.stdout, "a secret reached standard output"
        assert secret not in done.stderr, "a secret reached standard error"
    return Done(done.returncode, done.stdout, done.stderr)


def inventory(targets: Path, *more: str | Path, netns: str | None = None) -> Done:
    return medsec("inventory", "snmp", "--targets", targets, *more, netns=netns)


def inline_medsec(*args: str | Path) -> Done:
    """`medsec ...` in this process, and no secret in what it printed."""
    done = cli_inline.inline_medsec(*args)
    for secret in SECRETS:
        assert secret not in done.out, "a secret reached standard output"
        assert secret not in done.err, "a secret reached standard error"
    return done


def inline(targets: Path, *more: str | Path) -> Done:
    return inline_medsec("inventory", "snmp", "--targets", targets, *more)


def by_target(document: dict[str, Any], check_id: str) -> dict[str, dict[str, Any]]:
    return {r["target"]: r for r in document["results"] if r["check_id"] == check_id}


# --- outputs and exit codes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(agents: tuple[Agent, Agent], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v3 authPriv, v2c to a device that speaks v3, a careless device answering `public`, a
    port nobody answers; a zones file whose one border the first device declares."""
    good, careless = agents
    return targets_file(
        tmp_path_factory.mktemp("mixed"),
        [
            v3(good.ports[0], borders=["dmz<->his"]),
            {"address": "127.0.0.1", "port": good.ports[1]},
            {"address": "127.0.0.1", "port": careless.ports[0]},
            {"address": "127.0.0.1", "port": free_udp_port()},
        ],
        zones=ZONES,
    )


def test_json_names_every_device_its_role_and_every_verdict(
    agents: tuple[Agent, Agent], mixed: Path
) -> None:
    good, careless = agents
    done = inventory(mixed, "--format", "json")
    assert done.code == 1, done.err
    document = json.loads(done.out)
    assert set(document) >= {"devices", "borders", "results"}
    devices = {f"{d['address']}:{d['port']}": d for d in document["devices"]}
    assert len(devices) == 4
    first = devices[f"127.0.0.1:{good.ports[0]}"]
    assert (first["vendor"], first["role"]) == ("Hillstone Networks (山石网科)", "firewall")
    assert first["confidence"] >= 0.6
    assert first["signals"]
    assert first["sys_object_id"] == HILLSTONE[0]
    assert first["sys_descr"] == HILLSTONE[1]
    assert first["sys_name"] == "border-fw-01"
    assert first["source"] == "target"
    assert first["access"]["security_level"] == "authPriv"
    assert first["error"] is None
    for key in ("model", "serial", "software", "interfaces"):
        assert key in first
    assert any("127.0.0.1/8" in i["addresses"] for i in first["interfaces"])
    assert devices[f"127.0.0.1:{careless.ports[0]}"]["role"] == "router"
    silent = next(d for d in document["devices"] if d["error"])
    assert silent["sys_object_id"] == ""

    secure = by_target(document, "net.snmp_secure")
    assert secure[f"127.0.0.1:{good.ports[0]}"]["status"] == "pass"
    assert secure[f"127.0.0.1:{good.ports[1]}"]["status"] == "fail"
    assert (
        "speaks SNMPv3 but medsec is configured to use SNMPv2c"
        in (secure[f"127.0.0.1:{good.ports[1]}"]["message"])
    )
    careless_result = secure[f"127.0.0.1:{careless.ports[0]}"]
    assert careless_result["status"] == "fail"
    assert "'public'" in careless_result["message"]
    assert careless_result["evidence"]["answered_well_known"] == ["public"]
    silent_result = secure[f"{silent['address']}:{silent['port']}"]
    assert silent_result["status"] == "error"
    assert "did not answer" in silent_result["message"]
    assert "GB/T 22239-2019 8.1.4.2 b" in secure[f"127.0.0.1:{good.ports[0]}"]["clauses"]

    assert document["borders"] == [
        {
            "name": "dmz<->his",
            "zones": ["dmz", "his"],
            "cidrs": [["198.18.1.0/27"], ["198.18.2.0/27"]],
            "require": ["firewall"],
        }
    ]
    border = by_target(document, "net.security_devices")["dmz<->his"]
    assert border["status"] == "pass", border["message"]
    assert border["evidence"]["devices"][0]["placed_by"] == "declared"
    assert "MNDS 7.2.4.1" in border["clauses"]


def test_csv_is_one_row_per_device(agents: tuple[Agent, Agent], mixed: Path) -> None:
    good, _ = agents
    done = inline(mixed, "--format", "csv")
    assert done.code == 1
    rows = list(csv.DictReader(io.StringIO(done.out)))
    assert list(rows[0]) == [
        "address", "port", "vendor", "role", "confidence", "model", "serial", "software",
        "sys_name", "error",
    ]  # fmt: skip
    assert len(rows) == 4
    first = next(r for r in rows if r["port"] == str(good.ports[0]))
    assert (first["role"], first["sys_name"], first["error"]) == ("firewall", "border-fw-01", "")
    assert sum(1 for r in rows if r["error"]) == 1


def test_table_is_one_line_per_device_then_per_result(
    agents: tuple[Agent, Agent], mixed: Path
) -> None:
    good, _ = agents
    done = inline(mixed)
    assert done.code == 1
    lines = done.out.splitlines()
    assert lines[0].startswith("devices (4, ")
    device_lines = lines[1:5]
    assert any(
        line.split()[:2] == [f"127.0.0.1:{good.ports[0]}", "firewall"] for line in device_lines
    )
    assert sum("ERROR" in line for line in device_lines) == 1
    results = lines[lines.index("results:") + 1 :]
    assert sum(line.strip().startswith(("PASS", "FAIL", "ERROR")) for line in results) == 5
    assert lines[-1].startswith("pass: 2")


def test_nothing_failed_is_exit_zero(agents: tuple[Agent, Agent], tmp_path: Path) -> None:
    good, _ = agents
    targets = targets_file(tmp_path, [v3(good.ports[0], borders=["his<->dmz"])], zones=ZONES)
    done = inline(targets, "--format", "json")
    assert done.code == 0, done.out
    statuses = {r["check_id"]: r["status"] for r in json.loads(done.out)["results"]}
    assert statuses == {"net.snmp_secure": "pass", "net.security_devices": "pass"}


def test_zones_option_overrides_the_targets_file(
    agents: tuple[Agent, Agent], tmp_path: Path
) -> None:
    """`--zones` wins; this one asks for an IPS too, which a firewall is not."""
    good, _ = agents
    targets = targets_file(tmp_path, [v3(good.ports[0], borders=["dmz<->his"])], zones=ZONES)
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        yaml.safe_dump(
            {**ZONES, "borders": [{"zones": ["dmz", "his"], "require": ["firewall", "ips"]}]}
        )
    )
    done = inline(targets, "--zones", strict, "--format", "json")
    assert done.code == 1
    border = by_target(json.loads(done.out), "net.security_devices")["dmz<->his"]
    assert border["status"] == "fail"
    assert border["message"].startswith(
        "dmz<->his: no ips on the border; devices there: 127.0.0.1:"
    )


def test_without_a_zones_file_no_border_is_judged(
    agents: tuple[Agent, Agent], tmp_path: Path
) -> None:
    good, _ = agents
    done = inline(targets_file(tmp_path, [v3(good.ports[0])]), "--format", "json")
    document = json.loads(done.out)
    assert document["borders"] == []
    border = next(r for r in document["results"] if r["check_id"] == "net.security_devices")
    assert border["status"] == "not_applicable"


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda p: p.chmod(0o644), "targets.yaml"),
        (lambda p: p.write_text("devices: [{address: 127.0.0.1, colour: red}]\n"), "colour"),
        (lambda p: p.unlink(), "targets.yaml"),
        (lambda p: (p.parent / "zones.yaml").write_text("zones: [{name: dmz}]\n"), "zones.yaml"),
        (
            lambda p: (p.parent / "zones.yaml").write_text(
                yaml.safe_dump({**ZONES, "borders": [{"zones": ["dmz", "lab"]}]})
            ),
            "borders[0].zones[1]: unknown zone 'lab'",
        ),
    ],
    ids=["mode-0644", "unknown-key", "missing", "bad-zones", "bad-border"],
)
def test_a_bad_targets_or_zones_file_is_exit_2_in_one_line(
    tmp_path: Path, spoil: Any, words: str
) -> None:
    targets = targets_file(tmp_path, [{"address": "127.0.0.1", "port": 9}], zones=ZONES)
    spoil(targets)
    done = inline(targets, "--format", "json")
    assert done.code == 2, done
    assert done.out == ""
    assert done.err.startswith("medsec inventory snmp: ")
    assert done.err.count("\n") == 1, done.err
    assert words in done.err


def test_store_needs_a_config(tmp_path: Path) -> None:
    targets = targets_file(tmp_path, [{"address": "127.0.0.1", "port": 9}])
    done = inline(targets, "--store")
    assert (done.code, done.err) == (
        2,
        "medsec inventory snmp: --store needs --config (the collector settings)\n",
    )


# --- storing and compliance -------------------------------------------------------------------


def collector_config(folder: Path, database: str) -> Path:
    assert inline_medsec("init", "--dir", folder).code == 0
    config = folder / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = database
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


def test_stored_inventory_counts_in_the_compliance_report(
    agents: tuple[Agent, Agent], mixed: Path, store_url: str, tmp_path: Path
) -> None:
    good, careless = agents
    config = collector_config(tmp_path / "c", store_url)
    done = inventory(mixed, "--format", "json", "--store", "--config", config)
    assert done.code == 1, done.err
    said = done.err.strip().splitlines()[-1]
    assert said.startswith("stored as report ")
    assert "(host scan:" in said

    store = Store.open(store_url)
    try:
        [host] = store.list_hosts(10, 0).items
        assert host.agent == "medsec-snmp"
        assert host.id.startswith("scan:")
        secure = store.query_results("net.snmp_secure", None, 10, 0).items
        assert {r.target: r.status for r in secure}[f"127.0.0.1:{careless.ports[0]}"] == "fail"
        audit = [e.action for e in store.audit_entries(100, 0).items]
        assert any(a.startswith("cli inventory snmp --targets") for a in audit)
        found = store.get_host(host.id)
        assert found is not None
        _, stored_inventory, rows = found
        assert set(stored_inventory) == {"network_devices", "borders", "snmp"}
        assert stored_inventory["snmp"]["targets_file"] == str(mixed)
        assert len(stored_inventory["network_devices"]) == 4
        kept = json.dumps([stored_inventory, [r.evidence for r in rows]], ensure_ascii=False)
        for secret in SECRETS:
            assert secret not in kept
    finally:
        store.close()

    out = tmp_path / "gbt.json"
    report = inline_medsec(
        "report", "--standard", "gbt22239-2019-l3", "--format", "json", "--out", out,
        "--config", config,
    )  # fmt: skip
    assert report.code == 0, report.err
    text = out.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in text
    clauses = {c["id"]: c for c in json.loads(text)["clauses"]}
    defaults = clauses["8.1.4.2 b"]
    objects = {o["id"]: (o["kind"], o["status"]) for o in defaults["objects"]}
    assert objects[f"127.0.0.1:{good.ports[0]}"] == ("device", "pass")
    assert objects[f"127.0.0.1:{careless.ports[0]}"] == ("device", "fail")
    assert defaults["status"] == "fail"
    border = {o["id"]: (o["kind"], o["status"]) for o in clauses["8.1.3.1 a"]["objects"]}
    assert border["dmz<->his"] == ("zone_pair", "pass")

    # The same targets file stored again is the same host: one history per file and collector.
    again = inline(mixed, "--format", "csv", "--store", "--config", config)
    assert again.code == 1
    store = Store.open(store_url)
    try:
        assert [h.id for h in store.list_hosts(10, 0).items] == [host.id]
    finally:
        store.close()


# --- in the lab -------------------------------------------------------------------------------


def lab_targets(lab: Lab, folder: Path, *, address: str, port: int) -> Path:
    secrets = json.loads(lab.snmp_file.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    write_secret(folder / "auth.key", secrets["v3"]["auth_password"])
    write_secret(folder / "priv.key", secrets["v3"]["priv_password"])
    document = {
        "defaults": {"timeout": 1, "retries": 0},
        "devices": [
            {
                "address": address,
                "port": port,
                "version": 3,
                "user": secrets["v3"]["user"],
                "auth": {
                    "protocol": secrets["v3"]["auth_protocol"].lower(),
                    "key_file": "auth.key",
                },
                "priv": {
                    "protocol": secrets["v3"]["priv_protocol"].lower(),
                    "key_file": "priv.key",
                },
            }
        ],
    }
    path = folder / "targets.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    path.chmod(0o600)
    return path


def lab_borders(lab: Lab) -> list[str]:
    zones = [z["name"] for z in yaml.safe_load(lab.zones_file.read_text())["zones"]]
    return [f"{a}<->{b}" for i, a in enumerate(zones) for b in zones[i + 1 :]]


@pytest.mark.root
def test_the_lab_router_guards_every_border(lab: Lab, tmp_path: Path) -> None:
    """From the mgmt zone, the router's snmpd (a firewall persona) over SNMPv3 authPriv: its
    interfaces hold an address in every zone, so it sits on every border of the lab's zones
    file, and each border has its firewall."""
    secrets = json.loads(lab.snmp_file.read_text(encoding="utf-8"))
    targets = lab_targets(lab, tmp_path, address=secrets["address"], port=secrets["port"])
    done = inventory(
        targets, "--zones", lab.zones_file, "--format", "json", netns=lab.netns("mgmt")
    )
    document = json.loads(done.out)
    assert done.code == 0, json.dumps(document["results"], indent=1)
    [router] = document["devices"]
    assert router["sys_object_id"] == secrets["sys_object_id"]
    assert router["role"] == "firewall"
    held = {a.split("/")[0] for i in router["interfaces"] for a in i["addresses"]}
    assert {"198.18.0.1", "198.18.1.1", "198.18.2.1", "198.18.4.1"} <= held
    borders = by_target(document, "net.security_devices")
    assert sorted(borders) == sorted(lab_borders(lab))
    assert {r["status"] for r in borders.values()} == {"pass"}
    assert all(r["evidence"]["devices"][0]["placed_by"] == "addresses" for r in borders.values())
    [secure] = by_target(document, "net.snmp_secure").values()
    assert secure["status"] == "pass"
    assert secure["evidence"]["answered_well_known"] == []


@pytest.mark.root
def test_a_router_on_the_lab_borders_is_no_firewall(lab: Lab, tmp_path: Path) -> None:
    """A second snmpd in the router's namespace saying it is a Cisco ISR router: the same
    interfaces, so the same borders, and every border now fails naming the missing firewall.
    (The lab's input filter admits SNMP only on the agent's own port, so this agent listens on
    the router's loopback and is asked from inside the router's namespace.)"""
    port = 16100 + os.getpid() % 1000
    with snmpd(tmp_path / "router", (port,), CISCO_ISR, netns=lab.netns("rtr")):
        targets = targets_file(tmp_path / "t", [v3(port)])
        done = inventory(
            targets, "--zones", lab.zones_file, "--format", "json", netns=lab.netns("rtr")
        )
    assert done.code == 1, done.err
    document = json.loads(done.out)
    assert document["devices"][0]["role"] == "router"
    borders = by_target(document, "net.security_devices")
    assert sorted(borders) == sorted(lab_borders(lab))
    for name, result in borders.items():
        assert result["status"] == "fail", result["message"]
        assert result["message"].startswith(f"{name}: no firewall on the border; devices there: ")
        assert "router" in result["message"]


# --- how inventories count beside zones scans (the aggregation alone) -------------------------

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _report(pk: int, agent: str) -> EvidenceHost:
    return EvidenceHost(
        host_id=f"scan:{pk:032x}",
        hostname="collector-1",
        agent=agent,
        site=None,
        addresses=(),
        report_pk=pk,
        report_id=f"00000000-0000-4000-8000-{pk:012d}",
        generated_at=NOW - timedelta(hours=1),
        received_at=NOW - timedelta(hours=1),
    )


def _gbt() -> Catalog:
    return next(c for c in builtin_catalogs() if c.standard.id == "GB/T 22239-2019")


def _aggregate(hosts: list[EvidenceHost], rows: list[EvidenceResult], **kwargs: Any) -> Compliance:
    return aggregate(_gbt(), Evidence(hosts, rows), Rules(NOW), check_kinds(), **kwargs)


SCAN, SNMP = _report(1, "medsec-scanner"), _report(2, "medsec-snmp")
ROWS = [
    EvidenceResult(1, "net.segmentation", "pass", "office->his", "no path", "无通路", "{}"),
    EvidenceResult(1, "net.border_firewall", "pass", "office->his", "filtered", "已过滤", "{}"),
    EvidenceResult(2, "net.snmp_secure", "pass", "198.18.4.1:161", "v3", "v3", "{}"),
    EvidenceResult(2, "net.snmp_secure", "fail", "198.18.3.9:161", "public", "public", "{}"),
    EvidenceResult(2, "net.security_devices", "pass", "office<->his", "fw", "防火墙", "{}"),
]


def _clause(doc: Compliance, clause_id: str) -> Any:
    return next(c for c in doc.clauses if c.id == clause_id)


def test_devices_are_objects_and_neither_report_is_held_against_the_other() -> None:
    doc = _aggregate([SCAN, SNMP], ROWS)
    defaults = _clause(doc, "8.1.4.2 b")
    assert {(o.kind, o.id, o.status) for o in defaults.objects} == {
        ("device", "198.18.4.1:161", "pass"),
        ("device", "198.18.3.9:161", "fail"),
    }
    assert (defaults.status, defaults.conformity) == ("fail", "部分符合")
    # The inventory answers no segmentation check; the zones scan does: no placeholder.
    segmentation = _clause(doc, "8.1.2.1 c")
    assert {(o.kind, o.id, o.status) for o in segmentation.objects} == {
        ("zone_pair", "office->his", "pass")
    }
    border = _clause(doc, "8.1.3.1 a")
    assert {(o.kind, o.id) for o in border.objects} == {
        ("zone_pair", "office->his"),
        ("zone_pair", "office<->his"),
    }


def test_without_an_inventory_the_snmp_clauses_are_not_covered() -> None:
    doc = _aggregate([SCAN], [r for r in ROWS if r.report_pk == 1])
    defaults = _clause(doc, "8.1.4.2 b")
    assert defaults.status == "not_covered"
    [placeholder] = defaults.objects
    assert (placeholder.kind, placeholder.reason) == (
        "scan",
        "the scan has no result for net.snmp_secure",
    )
    nothing = _aggregate([], [])
    assert _clause(nothing, "8.1.5.4 b").status == "not_covered"


def test_a_zone_filter_places_devices_by_their_address() -> None:
    zones = ZoneMap(
        [
            parse_zones(
                {
                    "zones": [
                        {"name": "office", "cidrs": ["198.18.3.0/27"]},
                        {"name": "mgmt", "cidrs": ["198.18.4.0/27"]},
                    ]
                },
                "zones.yaml",
            )
        ]
    )
    doc = _aggregate([SCAN, SNMP], ROWS, scope=Scope(zone="mgmt"), zones=zones)
    assert [o.id for o in _clause(doc, "8.1.4.2 b").objects] == ["198.18.4.1:161"]


@pytest.mark.root
def test_a_sweep_of_the_lab_mgmt_zone_finds_the_border_device_alone(
    lab: Lab, tmp_path: Path
) -> None:
    """Every address of the mgmt zone asked with the defaults' v2c community, from inside the
    zone: the router's agent answers and nothing else does. It speaks SNMPv3, so reading it over
    v2c fails its check (without any well-known community tried: never on swept devices)."""
    secrets = json.loads(lab.snmp_file.read_text(encoding="utf-8"))
    zones = yaml.safe_load(lab.zones_file.read_text(encoding="utf-8"))["zones"]
    [mgmt] = [zone["cidrs"][0] for zone in zones if zone["name"] == "mgmt"]
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_secret(tmp_path / "community", secrets["v2c"]["community"])
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        yaml.safe_dump(
            {
                "defaults": {"version": "2c", "community_file": "community", "timeout": 1},
                "sweep": [mgmt],
            }
        ),
        encoding="utf-8",
    )
    targets.chmod(0o600)
    done = inventory(targets, "--format", "json", netns=lab.netns("mgmt"))
    document = json.loads(done.out)
    [router] = document["devices"]
    assert (router["address"], router["source"]) == (secrets["address"], "sweep")
    assert router["sys_object_id"] == secrets["sys_object_id"]
    assert router["role"] == "firewall"
    [secure] = by_target(document, "net.snmp_secure").values()
    assert secure["status"] == "fail", secure["message"]
    assert "speaks SNMPv3" in secure["message"]
    assert secure["evidence"]["well_known_tried"] == []
    assert secrets["v2c"]["community"] not in done.out + done.err
