"""The six network checks: their registry, and the rules one recorded case cannot show —
coverage arithmetic, vendor classification, WAF fingerprints, unknown-is-not-false. The recorded
cases themselves (tests/checks/cases_net.py) run in tests/checks/test_cases.py with the host ones.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from checks.facts.network import SnmpIdentity
from checks.model import Status, Unavailable
from checks.net import network_registry
from checks.net.border import classify_identity
from checks.net.waf import identify
from checks.registry import builtin_registry
from checks.runner import run_check
from tests.checks import cases_net
from tests.checks.cases_net import CLEAN, HIS_WEB, ZTNA_BYPASS, exchange

IDS = {
    "net.segmentation",
    "net.internet_isolation",
    "net.border_firewall",
    "net.waf",
    "net.ztna_coverage",
    "net.tls_floor",
}


def test_the_network_registry_holds_the_six_checks_and_the_agent_none() -> None:
    assert set(network_registry().ids()) == IDS
    assert not IDS & set(builtin_registry().ids())


def _results(check_id: str, facts: object) -> dict[str | None, object]:
    return {r.target: r for r in run_check(network_registry().get(check_id), facts)}


def test_one_result_per_zone_pair_with_the_pair_as_target() -> None:
    results = _results("net.segmentation", CLEAN)
    assert set(results) == {
        f"{a}->{b}" for a in ("internet", "dmz", "his", "office")
        for b in ("internet", "dmz", "his", "office") if a != b
    }  # fmt: skip


def test_a_violation_names_from_to_port_and_the_evidence_line() -> None:
    result = _results("net.segmentation", ZTNA_BYPASS)["office->his"]
    assert result.status is Status.FAIL
    assert result.evidence["from"] == "office"
    assert result.evidence["to"] == "his"
    assert result.evidence["violations"] == [
        "office -> his 198.18.2.20 tcp/8443 open (syn-ack; connect scan from ssh:probe@198.18.3.5)"
    ]
    assert (
        "not scanned: udp/53, udp/69, udp/123, udp/161, udp/500, udp/514, udp/1900: unprivileged "
        "vantage" in _results("net.segmentation", CLEAN)["office->dmz"].message
    )


def test_ztna_coverage_is_the_share_of_covered_systems() -> None:
    other = replace(HIS_WEB, name="pacs", address="198.18.2.30")
    half = replace(
        ZTNA_BYPASS,
        critical_systems=(HIS_WEB, other),
        gateways=(*ZTNA_BYPASS.gateways, replace(ZTNA_BYPASS.gateways[0], system="pacs")),
    )
    results = _results("net.ztna_coverage", half)
    assert results["his-web"].status is Status.FAIL
    assert results["pacs"].status is Status.PASS
    assert results["coverage"].status is Status.FAIL
    assert results["coverage"].evidence["coverage_percent"] == 50.0
    assert results["pacs"].evidence["coverage_percent"] == 50.0
    assert "ZTNA coverage 50%" in results["coverage"].message
    lenient = run_check(
        network_registry().get("net.ztna_coverage"), half, {"min_coverage_percent": 50.0}
    )
    assert [r.status for r in lenient if r.target == "coverage"] == [Status.PASS]


def test_gateway_refusal_by_handshake_or_status() -> None:
    gateway = cases_net.gateway(handshake=False, handshake_error="TLS: CERTIFICATE_REQUIRED",
                                anonymous=None)  # fmt: skip
    results = _results("net.ztna_coverage", replace(CLEAN, gateways=(gateway,)))
    assert results["his-web"].status is Status.PASS
    assert "TLS handshake refused (TLS: CERTIFICATE_REQUIRED)" in results["his-web"].message
    refused = cases_net.gateway(authenticated=exchange("https://198.18.1.30/", 400, "nginx"))
    results = _results("net.ztna_coverage", replace(CLEAN, gateways=(refused,)))
    assert "refuses the configured client certificate too" in results["his-web"].message


@pytest.mark.parametrize(
    ("oid", "descr", "vendor", "role"),
    [
        ("1.3.6.1.4.1.8741.1", "SonicWALL TZ 210", "SonicWall", "firewall"),
        ("1.3.6.1.4.1.10704.1.10", "Barracuda Firewall", "Barracuda Networks", "firewall"),
        ("1.3.6.1.4.1.12356.15", "FortiGate-100F", "Fortinet", "firewall"),
        ("1.3.6.1.4.1.35047.1.3", "Sangfor NGAF", "Sangfor (深信服)", "firewall"),
        ("1.3.6.1.4.1.2011.2.125", "Huawei USG6500E", "Huawei (华为)", "firewall"),
        ("1.3.6.1.4.1.2011.2.23.96", "Huawei Versatile Routing Platform S5720",
         "Huawei (华为)", "switch"),
        ("1.3.6.1.4.1.9.1.2133", "Cisco Adaptive Security Appliance Version 9.8", "Cisco",
         "firewall"),
        ("1.3.6.1.4.1.25506.11.1.100", "H3C Comware S5130", "H3C (新华三)", "switch"),
        ("1.3.6.1.4.1.25506.11.1.100", "H3C SecPath T1000 IPS", "H3C (新华三)", "ips"),
        ("1.3.6.1.4.1.8072.3.2.10", "Linux gw", None, "server"),
        ("1.3.6.1.4.1.99999.1", "?", "enterprise 99999", "other"),
    ],
)  # fmt: skip
def test_snmp_identity_classification(oid: str, descr: str, vendor: str, role: str) -> None:
    identity = SnmpIdentity("198.18.4.1", "3", descr, oid, None, "netns:x")
    found = classify_identity(identity)
    assert (found.vendor, found.role) == (vendor, role)


def test_require_firewall_identity_fails_a_plain_router() -> None:
    facts = replace(CLEAN, snmp=cases_net.NET_SNMP)
    results = run_check(
        network_registry().get("net.border_firewall"),
        facts,
        {"require_firewall_identity": True},
    )
    assert {r.status for r in results} == {Status.FAIL}
    assert "not identified as a security device (firewall, IPS or WAF)" in results[0].message


@pytest.mark.parametrize(
    ("server", "body", "extra", "product"),
    [
        ("Apache", "This error was generated by Mod_Security", (), "ModSecurity"),
        ("NOYB", "", (), "ModSecurity"),
        ("nginx", "<!-- event_id: 1a2b -->", (), "Chaitin SafeLine (长亭雷池)"),
        ("NSFocus", "", (), "NSFOCUS WAF (绿盟)"),
        ("qianxin-waf", "", (), "Qi An Xin / 360 WangZhanBao (奇安信网站卫士)"),
        ("nginx", "", (("Set-Cookie", "HWWAFSESID=12ab; path=/"),), "Huawei Cloud WAF (华为云)"),
        ("HospitalWAF", "MEDSEC-LAB-WAF-BLOCK", (), None),
    ],
)
def test_waf_fingerprints(server: str, body: str, extra: tuple, product: str | None) -> None:
    answer = exchange("http://198.18.1.10/?q=x", 403, server, body, headers=extra)
    found = identify([answer])
    assert (found[0] if found else None) == product


def test_status_493_names_qi_an_xin() -> None:
    found = identify([exchange("http://198.18.1.10/?q=x", 493, None)])
    assert found is not None
    assert found[1].en == "status 493"


def test_unavailable_facts_are_errors_never_pass() -> None:
    facts = replace(
        CLEAN,
        matrix=Unavailable("no vantage produced results"),
        ack=Unavailable("no scan results"),
        web_apps=Unavailable("not probed"),
        gateways=Unavailable("not probed"),
    )
    for check_id in IDS - {"net.tls_floor"}:
        results = run_check(network_registry().get(check_id), facts)
        assert [r.status for r in results] == [Status.ERROR], check_id
        assert "unavailable" in results[0].message
