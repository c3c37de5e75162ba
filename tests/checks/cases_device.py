"""Recorded device facts for `net.snmp_secure` and `net.security_devices`, in the shape of
tests/checks/cases_net.py (name, facts, status, words), for the catalog meta-tests: a lab-like
border firewall managed over SNMPv3 authPriv, and its variations. Every branch is tested in
tests/checks/test_device_checks.py; these are the cases a reader recognises."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts.devices import (
    BorderFacts,
    Classification,
    DeviceFacts,
    Interface,
    NetworkDevice,
    SnmpAccess,
)
from checks.model import Status

WELL_KNOWN = ("public", "private")
FIREWALL = Classification(
    "SonicWall", "firewall", 0.9, ("sysObjectID 1.3.6.1.4.1.8741.1 under SonicWall",), "sonicwall"
)
ROUTER = Classification("Cisco", "router", 0.9, ("sysDescr matches 'IOS'",), "cisco-ios")
V3 = SnmpAccess(
    version="3",
    security_level="authPriv",
    auth_protocol="sha",
    priv_protocol="aes",
    well_known_tried=WELL_KNOWN,
    v3_supported=True,
)
ROUTER_NS = NetworkDevice(
    address="198.18.4.1",
    port=161,
    source="target",
    access=V3,
    classification=FIREWALL,
    sys_descr="SonicWALL TZ 210 (SonicOS Enhanced 5.9.1.6-5o)",
    sys_object_id="1.3.6.1.4.1.8741.1",
    sys_name="border-fw-01",
    interfaces=tuple(
        Interface(n, f"br-{zone}", f"br-{zone}", (f"198.18.{n - 1}.1/27",))
        for n, zone in enumerate(("internet", "dmz", "his", "office", "mgmt"), start=1)
    ),
)
BORDERS = (
    BorderFacts("dmz<->his", ("dmz", "his"), (("198.18.1.0/27",), ("198.18.2.0/27",))),
    BorderFacts("internet<->dmz", ("internet", "dmz"), (("198.18.0.0/27",), ("198.18.1.0/27",))),
)
CLEAN = DeviceFacts((ROUTER_NS,), BORDERS, targets_file="/etc/medsec/snmp-targets.yaml")


def _access(**changes: Any) -> DeviceFacts:
    return replace(CLEAN, devices=(replace(ROUTER_NS, access=replace(V3, **changes)),))


CASES: dict[str, list[tuple[str, DeviceFacts, Status, str]]] = {
    "net.snmp_secure": [
        ("v3 authPriv SHA/AES", CLEAN, Status.PASS, "198.18.4.1:161: SNMPv3 authPriv (SHA, AES)"),
        (
            "answers public",
            _access(answered_well_known=("public",)),
            Status.FAIL,
            "answers the well-known SNMP community 'public'",
        ),
        ("v3 with DES", _access(priv_protocol="des"), Status.FAIL, "weak algorithms (des)"),
        (
            "v2c on a v3 device",
            _access(
                version="2c",
                security_level=None,
                auth_protocol=None,
                priv_protocol=None,
                community_guessable=False,
            ),
            Status.FAIL,
            "the device speaks SNMPv3 but medsec is configured to use SNMPv2c",
        ),
        (
            "no answer",
            replace(
                CLEAN,
                devices=(
                    replace(
                        ROUTER_NS,
                        error="timeout after 2 s",
                        sys_object_id="",
                        sys_descr="",
                        sys_name="",
                    ),
                ),
            ),
            Status.ERROR,
            "cannot judge: the device did not answer: timeout after 2 s",
        ),
    ],
    "net.security_devices": [
        (
            "firewall on every border",
            CLEAN,
            Status.PASS,
            "dmz<->his: every required role sits on the border (firewall: 198.18.4.1:161)",
        ),
        (
            "router only",
            replace(CLEAN, devices=(replace(ROUTER_NS, classification=ROUTER),)),
            Status.FAIL,
            "dmz<->his: no firewall on the border; devices there: 198.18.4.1:161",
        ),
        (
            "no borders",
            replace(CLEAN, borders=()),
            Status.NOT_APPLICABLE,
            "no zones file with borders was given",
        ),
    ],
}
