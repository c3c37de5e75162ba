"""The device checks over facts built here (no SNMP): every branch of `net.snmp_secure` and
`net.security_devices`, both languages in every message, no secret in any result; and the
zones file's `borders:` section that says what each border needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.device import device_registry
from checks.facts.devices import (
    BorderFacts,
    Classification,
    DeviceFacts,
    Interface,
    NetworkDevice,
    SnmpAccess,
    SnmpVersion,
)
from checks.model import Result, Status
from checks.runner import run_check
from collector.scan.zones import ZonesError, load_zones, parse_zones
from tests.checks.meta import untranslated

REGISTRY = device_registry()
WELL_KNOWN = ("public", "private", "community", "snmp")

FIREWALL = Classification(
    "Hillstone Networks", "firewall", 0.9, ("sysObjectID under Hillstone StoneOS",), "hillstone"
)
ROUTER = Classification("Cisco", "router", 0.9, ("sysDescr matches 'IOS'",), "cisco-ios")
WAF = Classification("Chaitin", "waf", 0.85, ("sysDescr matches 'SafeLine'",), "safeline")

V3_GOOD = SnmpAccess(
    version="3",
    security_level="authPriv",
    auth_protocol="sha256",
    priv_protocol="aes",
    well_known_tried=WELL_KNOWN,
    v3_supported=True,
)
V2C_GOOD = SnmpAccess(
    version="2c", community_guessable=False, well_known_tried=WELL_KNOWN, v3_supported=False
)

DMZ, HIS, INTERNET = ("198.18.1.0/27",), ("198.18.2.0/27",), ("198.18.0.0/27",)
DMZ_HIS = BorderFacts("dmz<->his", ("dmz", "his"), (DMZ, HIS))
INTERNET_DMZ = BorderFacts(
    "internet<->dmz", ("internet", "dmz"), (INTERNET, DMZ), ("firewall", "waf")
)


def device(
    address: str = "198.18.4.1",
    access: SnmpAccess = V3_GOOD,
    classification: Classification = FIREWALL,
    addresses: tuple[str, ...] = (),
    **changes: Any,
) -> NetworkDevice:
    interfaces = tuple(
        Interface(n, f"eth{n}", f"eth{n}", (cidr,)) for n, cidr in enumerate(addresses, start=1)
    )
    made = NetworkDevice(
        address=address,
        port=161,
        source="target",
        access=access,
        classification=classification,
        sys_descr="Hillstone StoneOS",
        sys_object_id="1.3.6.1.4.1.28557.1",
        sys_name="border-fw-01",
        interfaces=interfaces,
    )
    return replace(made, **changes)


ON_ALL = ("198.18.0.1/27", "198.18.1.1/27", "198.18.2.1/27", "198.18.4.1/27")


def run(check_id: str, facts: DeviceFacts, **params: Any) -> list[Result]:
    results = run_check(REGISTRY.get(check_id), facts, params)
    assert not untranslated(results), untranslated(results)
    return results


def one(check_id: str, facts: DeviceFacts, **params: Any) -> Result:
    results = run(check_id, facts, **params)
    assert len(results) == 1, results
    return results[0]


def snmp(access: SnmpAccess, **changes: Any) -> Result:
    return one("net.snmp_secure", DeviceFacts((device(access=access, **changes),)))


# --- net.snmp_secure --------------------------------------------------------------------------


def test_v3_authpriv_sha_aes_passes_and_names_the_device() -> None:
    result = snmp(V3_GOOD)
    assert result.status is Status.PASS, result.message
    assert result.target == "198.18.4.1:161"
    assert "SNMPv3 authPriv (SHA256, AES)" in result.message
    assert "'public'" in result.message
    assert result.message_zh
    assert "不响应常见团体名" in result.message_zh
    assert result.evidence["version"] == "3"
    assert result.evidence["security_level"] == "authPriv"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"security_level": "authNoPriv", "priv_protocol": None},
            "authNoPriv: management traffic is not encrypted",
        ),
        (
            {"security_level": "noAuthNoPriv", "auth_protocol": None, "priv_protocol": None},
            "neither authenticated nor encrypted",
        ),
        ({"priv_protocol": "des"}, "weak algorithms (des)"),
        ({"priv_protocol": "3des"}, "weak algorithms (3des)"),
        ({"auth_protocol": "md5"}, "weak algorithms (md5)"),
        ({"auth_protocol": "md5", "priv_protocol": "des"}, "weak algorithms (md5, des)"),
    ],
)
def test_v3_below_authpriv_or_with_weak_algorithms_fails(
    changes: dict[str, Any], words: str
) -> None:
    result = snmp(replace(V3_GOOD, **changes))
    assert result.status is Status.FAIL, result.message
    assert words in result.message


def test_weak_algorithms_are_a_site_parameter() -> None:
    facts = DeviceFacts((device(access=replace(V3_GOOD, auth_protocol="sha")),))
    assert one("net.snmp_secure", facts).status is Status.PASS
    strict = one("net.snmp_secure", facts, weak_auth=["md5", "sha"])
    assert strict.status is Status.FAIL
    assert "weak algorithms (sha)" in strict.message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"security_level": None}, "security level is unknown"),
        ({"auth_protocol": None}, "authentication unknown and privacy aes"),
        ({"priv_protocol": "aes512x"}, "privacy aes512x"),
    ],
)
def test_v3_without_enough_facts_is_an_error(changes: dict[str, Any], words: str) -> None:
    result = snmp(replace(V3_GOOD, **changes))
    assert result.status is Status.ERROR, result.message
    assert "cannot judge" in result.message
    assert words in result.message


def test_a_well_known_community_that_answers_fails_whatever_else() -> None:
    answered = replace(V3_GOOD, answered_well_known=("public",))
    result = snmp(answered)
    assert result.status is Status.FAIL
    assert "answers the well-known SNMP community 'public'" in result.message
    assert result.evidence["answered_well_known"] == ["public"]
    # Even when the configured access then failed: the device did answer `public`.
    broken = snmp(answered, error="timeout after 2 s (1 retry)")
    assert broken.status is Status.FAIL


def test_a_device_that_did_not_answer_is_an_error_saying_why() -> None:
    result = snmp(V3_GOOD, error="timeout after 2 s (1 retry)", sys_object_id="", sys_descr="")
    assert result.status is Status.ERROR
    assert result.message == (
        "198.18.4.1:161: cannot judge: the device did not answer: timeout after 2 s (1 retry)"
    )
    assert result.message_zh is not None
    assert "设备无应答" in result.message_zh


@pytest.mark.parametrize("access", [V3_GOOD, replace(V3_GOOD, answered_well_known=("public",))])
def test_a_partial_answer_is_judged_on_how_the_device_is_reached(access: SnmpAccess) -> None:
    # The identity came back and only a table walk was cut short: the access facts stand.
    partial = snmp(access, error="partial answer: ENTITY-MIB walk timed out after 8 s")
    whole = snmp(access)
    assert (partial.status, partial.message) == (whole.status, whole.message)


def test_v2c_with_a_strong_community_where_v3_is_unavailable_passes_saying_why() -> None:
    result = snmp(V2C_GOOD)
    assert result.status is Status.PASS, result.message
    assert "travels in clear text" in result.message
    assert "does not speak SNMPv3" in result.message
    assert result.message_zh
    assert "明文" in result.message_zh


def test_a_site_may_refuse_v2c_even_where_v3_is_unavailable() -> None:
    facts = DeviceFacts((device(access=V2C_GOOD),))
    result = one("net.snmp_secure", facts, accept_v2c_where_no_v3=False)
    assert result.status is Status.FAIL
    assert "accepts only SNMPv3 authPriv" in result.message


@pytest.mark.parametrize("version", ["1", "2c"])
def test_a_guessable_community_fails(version: SnmpVersion) -> None:
    result = snmp(replace(V2C_GOOD, version=version, community_guessable=True))
    assert result.status is Status.FAIL
    assert f"SNMPv{version} community medsec is configured with is guessable" in result.message


def test_v2c_on_a_device_that_speaks_v3_fails() -> None:
    result = snmp(replace(V2C_GOOD, v3_supported=True))
    assert result.status is Status.FAIL
    assert "speaks SNMPv3 but medsec is configured to use SNMPv2c" in result.message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"community_guessable": None}, "whether the configured SNMPv2c community is guessable"),
        ({"v3_supported": None}, "whether the device speaks SNMPv3 was not asked"),
    ],
)
def test_v2c_without_enough_facts_is_an_error(changes: dict[str, Any], words: str) -> None:
    result = snmp(replace(V2C_GOOD, **changes))
    assert result.status is Status.ERROR
    assert words in result.message


@pytest.mark.parametrize("access", [V3_GOOD, V2C_GOOD], ids=["v3", "v2c"])
def test_untried_well_known_communities_never_pass(access: SnmpAccess) -> None:
    swept = snmp(replace(access, well_known_tried=()), source="sweep")
    assert swept.status is Status.ERROR
    assert "well-known communities (public, private) was not tried" in swept.message
    assert "found by a sweep" in swept.message
    listed = snmp(replace(access, well_known_tried=()))
    assert listed.status is Status.ERROR
    assert "the inventory did not try them" in listed.message


def test_untried_does_not_hide_a_failure() -> None:
    weak = replace(V3_GOOD, priv_protocol="des", well_known_tried=())
    assert snmp(weak, source="sweep").status is Status.FAIL


def test_an_empty_inventory_is_an_error_not_a_pass() -> None:
    result = one("net.snmp_secure", DeviceFacts(()))
    assert result.status is Status.ERROR
    assert "no device in the inventory" in result.message


def test_one_result_per_device() -> None:
    facts = DeviceFacts(
        (
            device("198.18.4.1", V3_GOOD),
            device("198.18.4.2", replace(V2C_GOOD, community_guessable=True)),
            device("198.18.4.3", V3_GOOD, error="no answer", sys_object_id=""),
        )
    )
    results = run("net.snmp_secure", facts)
    assert [(r.target, r.status) for r in results] == [
        ("198.18.4.1:161", Status.PASS),
        ("198.18.4.2:161", Status.FAIL),
        ("198.18.4.3:161", Status.ERROR),
    ]


def test_evidence_holds_only_public_words() -> None:
    """Well-known communities are public words; the evidence names nothing else about access
    (the end-to-end test in tests/collector/test_inventory_snmp.py proves a real configured
    community and v3 keys never reach any output)."""
    facts = DeviceFacts(
        (
            device("198.18.4.1", replace(V2C_GOOD, answered_well_known=("public",))),
            device("198.18.4.2", replace(V2C_GOOD, community_guessable=True)),
            device("198.18.4.3", V3_GOOD),
        ),
    )
    for result in run("net.snmp_secure", facts):
        assert set(result.evidence) == {
            "address",
            "port",
            "source",
            "sys_name",
            "vendor",
            "role",
            "version",
            "security_level",
            "auth_protocol",
            "priv_protocol",
            "community_guessable",
            "v3_supported",
            "well_known_tried",
            "answered_well_known",
            "error",
        }
        assert set(result.evidence["answered_well_known"]) <= set(WELL_KNOWN)


# --- net.security_devices ---------------------------------------------------------------------


def borders(*devices: NetworkDevice, on: tuple[BorderFacts, ...] = (DMZ_HIS,)) -> list[Result]:
    return run("net.security_devices", DeviceFacts(devices, on))


def test_without_borders_it_is_not_applicable() -> None:
    result = one("net.security_devices", DeviceFacts((device(addresses=ON_ALL),)))
    assert result.status is Status.NOT_APPLICABLE
    assert "no zones file with borders" in result.message


def test_a_firewall_holding_addresses_in_both_zones_passes() -> None:
    [result] = borders(device(addresses=ON_ALL))
    assert result.status is Status.PASS, result.message
    assert result.target == "dmz<->his"
    assert "firewall: 198.18.4.1:161" in result.message
    assert "border-fw-01, firewall 0.90" in result.message
    assert result.message_zh
    assert "防火墙" in result.message_zh
    [seen] = result.evidence["devices"]
    assert seen["role"] == "firewall"
    assert seen["confidence"] == 0.9
    assert seen["signals"] == ["sysObjectID under Hillstone StoneOS"]
    assert seen["placed_by"] == "addresses"


def test_a_router_alone_fails_naming_the_missing_firewall_and_the_router() -> None:
    [result] = borders(device(classification=ROUTER, addresses=ON_ALL))
    assert result.status is Status.FAIL
    assert result.message == (
        "dmz<->his: no firewall on the border; devices there: "
        "198.18.4.1:161 (border-fw-01, router 0.90)"
    )
    assert result.message_zh == (
        "dmz<->his：边界上缺少防火墙；边界上的设备：198.18.4.1:161（border-fw-01，路由器 0.90）"
    )
    assert result.evidence["missing"] == ["firewall"]


def test_a_device_in_one_zone_only_is_not_on_the_border() -> None:
    [result] = borders(device(addresses=("198.18.1.1/27", "198.18.4.1/27")))
    assert result.status is Status.FAIL
    assert "devices there: none" in result.message


def test_a_declared_border_places_a_transparent_device() -> None:
    transparent = device(
        "198.18.4.9",
        classification=WAF,
        addresses=("198.18.4.9/27",),
        declared_borders=("dmz<->internet",),
    )
    firewall = device(addresses=ON_ALL)
    [result] = borders(firewall, transparent, on=(INTERNET_DMZ,))
    assert result.status is Status.PASS, result.message
    placed = {d["device"]: d["placed_by"] for d in result.evidence["devices"]}
    assert placed == {"198.18.4.1:161": "addresses", "198.18.4.9:161": "declared"}


def test_each_required_role_is_needed_and_an_ngfw_is_no_waf() -> None:
    [result] = borders(device(addresses=ON_ALL), on=(INTERNET_DMZ,))
    assert result.status is Status.FAIL
    assert result.message.startswith("internet<->dmz: no waf on the border")
    assert result.evidence["require"] == ["firewall", "waf"]
    assert result.evidence["missing"] == ["waf"]


def test_a_low_confidence_candidate_is_an_error_not_a_verdict() -> None:
    guess = replace(FIREWALL, confidence=0.45)
    [result] = borders(device(classification=guess, addresses=ON_ALL))
    assert result.status is Status.ERROR
    assert "no firewall classified with confidence 0.60 or more" in result.message
    assert "198.18.4.1:161 (border-fw-01, firewall 0.45)" in result.message
    lenient = one(
        "net.security_devices",
        DeviceFacts((device(classification=guess, addresses=ON_ALL),), (DMZ_HIS,)),
        min_confidence=0.4,
    )
    assert lenient.status is Status.PASS


def test_a_device_that_did_not_answer_makes_a_missing_role_an_error() -> None:
    router = device(classification=ROUTER, addresses=ON_ALL)
    silent = device("198.18.4.7", error="timeout after 2 s", interfaces=())
    [result] = borders(router, silent)
    assert result.status is Status.ERROR
    assert "198.18.4.7:161 did not answer (timeout after 2 s)" in result.message
    assert result.evidence["undecided"] == ["198.18.4.7:161"]
    # A border that is already satisfied does not wait for it.
    [fine] = borders(device(addresses=ON_ALL), silent)
    assert fine.status is Status.PASS


def test_unknown_interfaces_make_a_missing_role_an_error() -> None:
    router = device(classification=ROUTER, addresses=ON_ALL)
    blind = device("198.18.4.8", interfaces=())
    [result] = borders(router, blind)
    assert result.status is Status.ERROR
    assert "198.18.4.8:161 (firewall 0.90) gave no interfaces" in result.message
    # A printer without interfaces cannot be the missing firewall.
    printer = Classification("HP", "printer", 0.9, ("sysDescr matches 'LaserJet'",))
    [still] = borders(router, device("198.18.4.8", classification=printer, interfaces=()))
    assert still.status is Status.FAIL


def test_one_result_per_border() -> None:
    results = borders(device(addresses=ON_ALL), on=(DMZ_HIS, INTERNET_DMZ))
    assert [(r.target, r.status) for r in results] == [
        ("dmz<->his", Status.PASS),
        ("internet<->dmz", Status.FAIL),
    ]


# --- the zones file's borders -----------------------------------------------------------------

ZONES = {
    "zones": [
        {"name": "internet", "cidrs": ["198.18.0.0/27"], "internet": True},
        {"name": "dmz", "cidrs": ["198.18.1.0/27"]},
        {"name": "his", "cidrs": ["198.18.2.0/27"]},
    ]
}


def test_without_borders_every_zone_pair_needs_a_firewall() -> None:
    zones = parse_zones(ZONES, "zones.yaml")
    assert [(b.name, b.require) for b in zones.border_list()] == [
        ("internet<->dmz", ("firewall",)),
        ("internet<->his", ("firewall",)),
        ("dmz<->his", ("firewall",)),
    ]


def test_listed_borders_are_named_in_zone_order(tmp_path: Path) -> None:
    path = tmp_path / "zones.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **ZONES,
                "borders": [
                    {"zones": ["dmz", "internet"], "require": ["waf", "firewall", "ips"]},
                    {"zones": ["his", "dmz"]},
                ],
            }
        )
    )
    listed = load_zones(path).border_list()
    assert [(b.name, b.zones, b.require) for b in listed] == [
        ("internet<->dmz", ("internet", "dmz"), ("firewall", "ips", "waf")),
        ("dmz<->his", ("dmz", "his"), ("firewall",)),
    ]


@pytest.mark.parametrize(
    ("borders", "words"),
    [
        ([{"zones": ["dmz", "lab"]}], "borders[0].zones[1]: unknown zone 'lab'"),
        ([{"zones": ["dmz"]}], "borders[0].zones: a border has exactly two zones, got 1"),
        ([{"zones": ["dmz", "dmz"]}], "borders[0].zones: a border joins two different zones"),
        (
            [{"zones": ["dmz", "his"], "require": ["nids"]}],
            "borders[0].require[0]: 'nids' is not a role a border can require (firewall, ips, waf)",
        ),
        ([{"zones": ["dmz", "his"], "require": []}], "borders[0].require: at least one role"),
        (
            [{"zones": ["dmz", "his"]}, {"zones": ["his", "dmz"]}],
            "borders[1].zones: the border his<->dmz is listed already (borders[0])",
        ),
        ([{"zones": ["dmz", "his"], "needs": ["waf"]}], "unknown key borders[0].needs"),
    ],
)
def test_a_bad_border_is_one_line_naming_it(borders: list[dict[str, Any]], words: str) -> None:
    with pytest.raises(ZonesError) as caught:
        parse_zones({**ZONES, "borders": borders}, "zones.yaml")
    message = str(caught.value)
    assert message.startswith("zones.yaml: ")
    assert words in message
    assert "\n" not in message
