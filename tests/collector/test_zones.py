"""The zones file: what a valid one gives the scanner, and the one-line error (file, key, value)
for each way to get it wrong. Targets outside the declared CIDRs are refused at load time, and a
confinement (what tests and labs use) refuses any CIDR outside it.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.scan.zones import (
    CONFINE_ENV,
    COVERAGE_UDP,
    LocalVantageConfig,
    NetnsVantageConfig,
    PortSpec,
    ScopeError,
    SshVantageConfig,
    Zones,
    ZonesError,
    confinement_from_env,
    load_zones,
)

LAB_NETS = ["198.18.0.0/15", "127.0.0.0/8"]


def _base() -> dict[str, Any]:
    return {
        "zones": [
            {"name": "internet", "cidrs": ["198.18.0.0/24"], "internet": True,
             "vantage": {"kind": "netns", "netns": "lab-internet"}},
            {"name": "dmz", "cidrs": ["198.18.1.0/24"], "vantage": {"kind": "local"}},
            {"name": "his", "cidrs": ["198.18.2.0/24"], "critical": True},
            {"name": "office", "cidrs": ["198.18.3.0/24", "198.18.5.0/24"]},
        ],
        "policy": {
            "default": "deny",
            "allow": [
                {"from": "internet", "to": "dmz", "ports": ["tcp/80", "tcp/443"]},
                {"from": "dmz", "to": "his", "ports": ["tcp/5432", "tcp/8443"]},
                {"from": "office", "to": "dmz", "ports": ["tcp/443", "udp/161"]},
            ],
        },
        "web_apps": [{"name": "portal", "url": "http://198.18.1.10/", "zone": "dmz"}],
        "critical_systems": [
            {"name": "his-web", "address": "198.18.2.20", "ports": ["tcp/8443"], "zone": "his",
             "ztna_gateway": "https://198.18.1.30/"},
        ],
        "scan": {"extra_ports": ["tcp/22", "tcp/3389"], "timing": 4},
    }  # fmt: skip


def _write(tmp_path: Path, data: Any, name: str = "zones.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _load(tmp_path: Path, data: Any, **kwargs: Any) -> Zones:
    return load_zones(_write(tmp_path, data), **kwargs)


def _error(tmp_path: Path, data: Any, **kwargs: Any) -> str:
    with pytest.raises(ZonesError) as caught:
        _load(tmp_path, data, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "zones.yaml") + ": ")
    return message.split(": ", 1)[1]


def test_a_valid_file_gives_zones_policy_ports_and_scope(tmp_path: Path) -> None:
    zones = _load(tmp_path, _base(), confine=LAB_NETS)
    assert [z.name for z in zones.zones] == ["internet", "dmz", "his", "office"]
    assert isinstance(zones.zone("internet").vantage, NetnsVantageConfig)
    assert isinstance(zones.zone("dmz").vantage, LocalVantageConfig)
    assert zones.zone("his").vantage is None
    listed = ["tcp/22", "tcp/80", "tcp/443", "tcp/3389", "tcp/5432", "tcp/8443", "udp/161"]
    assert [str(p) for p in zones.listed_ports()] == listed
    assert zones.scan.ports == "top1000"
    assert zones.allowed("office", "dmz") == {PortSpec("tcp", 443), PortSpec("udp", 161)}
    assert zones.allowed("dmz", "office") == frozenset()
    assert zones.zone_of("198.18.5.7") is zones.zone("office")
    assert zones.zone_of("198.19.200.1") is None
    # User zones: neither critical nor internet, and holding no gateway or critical system.
    assert [z.name for z in zones.zones if zones.is_user_zone(z)] == ["office"]
    assert zones.web_apps[0].require_waf is True  # a web app needs a WAF unless said otherwise
    assert zones.scan.max_retries == 1


def test_the_port_set_is_the_listed_ports_plus_the_chosen_coverage(tmp_path: Path) -> None:
    data = _base()
    top = list(range(1, 1001))  # stands in for nmap's --top-ports 1000
    zones = _load(tmp_path, data)
    ports = {str(p) for p in zones.port_set(top)}
    # Listed ports outside the top list stay (tcp/3389, tcp/5432, tcp/8443), and the UDP ones.
    assert {str(p) for p in zones.listed_ports()} <= ports
    assert {f"udp/{n}" for n in COVERAGE_UDP} <= ports
    assert len(ports) == 1000 + 3 + len(COVERAGE_UDP)
    with pytest.raises(ValueError, match="top1000: 10 top ports given, not 1000"):
        zones.port_set(top[:10])  # never silently cut down to the listed ports
    data["scan"]["ports"] = "all"
    everything = _load(tmp_path, data).port_set()
    assert len([p for p in everything if p.proto == "tcp"]) == 65535
    data["scan"]["ports"] = "listed"
    listed = _load(tmp_path, data)
    assert listed.port_set(top) == listed.listed_ports()
    data["scan"]["ports"] = "top100"
    assert _error(tmp_path, data) == "scan.ports: Invalid enum value 'top100' (value: 'top100')"


def test_the_lab_zones_file_loads_once_rendered(tmp_path: Path) -> None:
    template = importlib.resources.files("collector.lab").joinpath("zones.yaml")
    data = yaml.safe_load(template.read_text(encoding="utf-8"))
    for path in ("probe_key", "known_hosts"):
        (tmp_path / path).write_text("x")
    office = next(z for z in data["zones"] if z["name"] == "office")
    office["vantage"]["key_file"] = str(tmp_path / "probe_key")
    office["vantage"]["known_hosts"] = str(tmp_path / "known_hosts")
    zones = _load(tmp_path, data, confine=LAB_NETS)
    vantage = zones.zone("office").vantage
    assert isinstance(vantage, SshVantageConfig)
    assert (vantage.host, vantage.user, vantage.via_netns) == ("198.18.3.5", "probe", "lab-mgmt")
    assert {z.name for z in zones.zones if zones.is_user_zone(z)} == {"office", "mgmt"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(colour="red"), "unknown key colour (value: 'red')"),
        (lambda d: d["zones"][1].update(vantge={}), "unknown key zones[1].vantge"),
        (lambda d: d["zones"][0].pop("cidrs"), "missing key zones[0].cidrs"),
        (lambda d: d["zones"][2].update(cidrs=["198.18.2.1/24"]),
         "zones[2].cidrs[0]: '198.18.2.1/24' is not a CIDR (198.18.2.1/24 has host bits set)"),
        (lambda d: d["zones"][2].update(cidrs=["fd00::/64"]),
         "zones[2].cidrs[0]: IPv6 is not supported yet"),
        (lambda d: d["zones"][3].update(cidrs=["198.18.1.128/25"]),
         "zones[3].cidrs: 198.18.1.128/25 overlaps 198.18.1.0/24 of zone 'dmz'"),
        (lambda d: d["zones"][3].update(name="dmz"), "zones[3].name: 'dmz' is used twice"),
        (lambda d: d["zones"][0].update(critical=True),
         "zones[0].internet: a zone cannot be both critical and internet"),
        (lambda d: d["zones"][1].update(vantage={"kind": "telnet"}),
         "zones[1].vantage.kind: Invalid value 'telnet' (value: 'telnet')"),
        (lambda d: d["zones"][1].update(vantage={"kind": "netns", "netns": "../x"}),
         "zones[1].vantage.netns: must be a namespace name"),
        (lambda d: d["policy"].update(default="allow"),
         "policy.default: Invalid enum value 'allow'"),
        (lambda d: d["policy"]["allow"][1].update(to="lab"),
         "policy.allow[1].to: unknown zone 'lab' (zones: internet, dmz, his, office)"),
        (lambda d: d["policy"]["allow"][0].update(ports=["tcp/80", "tcp80"]),
         "policy.allow[0].ports[1]: 'tcp80' is not proto/port (tcp/80, udp/161) "
         "(value: 'tcp80')"),
        (lambda d: d["policy"]["allow"][0].update(ports=["tcp/70000"]),
         "policy.allow[0].ports[0]: 'tcp/70000' is not proto/port"),
        (lambda d: d["web_apps"][0].update(url="http://198.19.250.5/"),
         "web_apps[0].url: 198.19.250.5/32 is outside the declared CIDRs: refused"),
        (lambda d: d["web_apps"][0].update(url="https://portal.hospital.cn/"),
         "web_apps[0].url: names a host; give its address too"),
        (lambda d: d["web_apps"][0].update(url="http://u:pw@198.18.1.10/"),
         "web_apps[0].url: must not carry a user or password (value not shown"),
        (lambda d: d["web_apps"][0].update(url="ftp://198.18.1.10/"),
         "web_apps[0].url: must be an http:// or https:// URL"),
        (lambda d: d["web_apps"][0].update(zone="lab"), "web_apps[0].zone: unknown zone 'lab'"),
        (lambda d: d["critical_systems"][0].update(address="198.18.1.20"),
         "critical_systems[0].address: 198.18.1.20 is not in zone 'his'"),
        (lambda d: d["critical_systems"][0].update(ztna_gateway="https://198.19.9.9/"),
         "critical_systems[0].ztna_gateway: 198.19.9.9/32 is outside the declared CIDRs"),
        (lambda d: d["critical_systems"][0].update(client_cert_file="/nonexistent.crt"),
         "critical_systems[0].client_cert_file: give both client_cert_file and client_key_file"),
        (lambda d: d["scan"].update(timing=7), "scan.timing: must be between 0 and 5 (nmap -T)"),
        (lambda d: d["scan"].update(extra_ports=["ssh"]),
         "scan.extra_ports[0]: 'ssh' is not proto/port"),
        (lambda d: d["scan"].update(min_rate=10, max_rate=5), "scan.min_rate: must not exceed"),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_value(tmp_path: Path, change: Any, expected: str) -> None:
    data = copy.deepcopy(_base())
    change(data)
    assert expected in _error(tmp_path, data)


def test_errors_are_one_line_ending_in_the_problem_when_there_is_no_value(tmp_path: Path) -> None:
    """An absent or null value has nothing to show: the line ends with the problem."""
    data = _base()
    data["zones"][1]["cidrs"] = None
    path = _write(tmp_path, data)
    with pytest.raises(ZonesError) as info:
        load_zones(path)
    assert str(info.value) == f"{path}: zones[1].cidrs: Expected `array`, got `null`"
    data["zones"][1]["cidrs"] = ["198.18.1.0/24"]
    data["policy"]["allow"][0].pop("ports")
    path = _write(tmp_path, data)
    with pytest.raises(ZonesError) as info:
        load_zones(path)
    assert str(info.value) == f"{path}: policy.allow[0].ports: at least one port (tcp/80, udp/161)"


def test_ssh_vantage_checks_its_files(tmp_path: Path) -> None:
    data = _base()
    data["zones"][3]["vantage"] = {
        "kind": "ssh", "host": "198.18.3.5", "user": "probe",
        "key_file": "keys/probe", "known_hosts": str(tmp_path / "known_hosts"),
    }  # fmt: skip
    assert "zones[3].vantage.key_file: must be an absolute path" in _error(tmp_path, data)
    data["zones"][3]["vantage"]["key_file"] = str(tmp_path / "probe")
    (tmp_path / "probe").write_text("key")
    message = _error(tmp_path, data)
    assert f"zones[3].vantage.known_hosts: {tmp_path / 'known_hosts'} does not exist" in message
    (tmp_path / "known_hosts").write_text("198.18.3.5 ssh-ed25519 AAAA")
    assert isinstance(_load(tmp_path, data).zone("office").vantage, SshVantageConfig)


def test_snmp_section_keeps_secrets_in_files(tmp_path: Path) -> None:
    data = _base()
    data["zones"].append({"name": "mgmt", "cidrs": ["198.18.4.0/24"],
                          "vantage": {"kind": "netns", "netns": "lab-mgmt"}})  # fmt: skip
    data["snmp"] = {"host": "198.18.4.1", "version": "3", "user": "medsec",
                    "auth_key_file": str(tmp_path / "auth")}  # fmt: skip
    assert "snmp.priv_key_file: SNMP v3 needs priv_key_file" in _error(tmp_path, data)
    data["snmp"]["priv_key_file"] = str(tmp_path / "priv")
    assert f"snmp.auth_key_file: {tmp_path / 'auth'} does not exist" in _error(tmp_path, data)
    for name in ("auth", "priv", "community"):
        (tmp_path / name).write_text("secret\n")
    zones = _load(tmp_path, data)
    assert zones.snmp is not None
    assert zones.snmp_zone() is zones.zone("mgmt")
    data["snmp"]["community_file"] = str(tmp_path / "community")
    assert "snmp.community_file: not used by SNMP v3" in _error(tmp_path, data)
    data["snmp"] = {"host": "198.18.4.1", "version": "2c", "user": "medsec",
                    "community_file": str(tmp_path / "community")}  # fmt: skip
    assert "snmp.user: not used by SNMP v2c" in _error(tmp_path, data)
    data["snmp"] = {"host": "198.18.2.1", "version": "2c",
                    "community_file": str(tmp_path / "community")}  # fmt: skip
    assert "snmp.zone: no zone with a vantage to ask the agent from (his)" in _error(tmp_path, data)
    data["snmp"]["community"] = "public"
    assert "unknown key snmp.community (value: 'public')" in _error(tmp_path, data)


def test_confinement_refuses_any_cidr_outside_it(tmp_path: Path) -> None:
    data = _base()
    # Every address here stays in the benchmark range; the confinement is narrowed instead.
    data["zones"][3]["cidrs"] = ["198.19.3.0/24"]
    _load(tmp_path, data)  # production: any declared CIDR may be scanned
    message = _error(tmp_path, data, confine=("198.18.0.0/16", "127.0.0.0/8"))
    assert message == (
        "zones[3].cidrs[0]: 198.19.3.0/24 is outside the confinement 198.18.0.0/16, "
        "127.0.0.0/8: refused"
    )


def test_the_scope_refuses_what_is_not_declared(tmp_path: Path) -> None:
    scope = _load(tmp_path, _base()).scope(LAB_NETS)
    scope.check("198.18.2.20")
    scope.check("198.18.3.0/25")
    for target in ("198.18.4.1", "198.18.0.0/15", "127.0.0.1", "8.8.8.8", "example.org"):
        with pytest.raises(ScopeError, match="refused"):
            scope.check(target, "nmap target")


def test_confinement_from_the_environment() -> None:
    assert confinement_from_env({}) is None
    assert confinement_from_env({CONFINE_ENV: "198.18.0.0/15, 127.0.0.0/8"}) == (
        "198.18.0.0/15",
        " 127.0.0.0/8",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("zones: [\n  {name: a\n", "invalid YAML at line 3, column 1"),
        ("- a\n- b\n", "the top level must be a mapping, got list"),
        ("", "the top level must be a mapping, got empty"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ZonesError, match=r"zones\.yaml: zones file not found"):
        load_zones(tmp_path / "zones.yaml")
