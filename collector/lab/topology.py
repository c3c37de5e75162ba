"""The lab's fixed shape: zones, host addresses, services, faults and the firewall personas.

Everything the lab builds is named here once, so the builders (`configs`), the orchestrator
(`lab`) and the tests agree. Addresses come from 198.18.0.0/15 only (RFC 2544 benchmarking space);
every zone is one network namespace holding that zone's host addresses on `eth0`, joined by a veth
to a bridge in the router namespace, whose bridge address (`.1`) is the zone's gateway. Zone
namespaces route only 198.18.0.0/15 through the router; no namespace has a default route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

LAB_RANGE: Final = "198.18.0.0/15"
ROUTER: Final = "rtr"
"""The router namespace's suffix: `<prefix>rtr`."""

DEFAULT_PREFIX: Final = "lab-"
PREFIX_PATTERN: Final = re.compile(r"^[a-z][a-z0-9]{0,9}-$")
"""Namespace prefixes `down` may delete by: short, lower case, ending in '-' (never empty)."""


@dataclass(frozen=True)
class Zone:
    name: str
    cidr: str
    gateway: str
    """The router's address on the zone's bridge."""
    addresses: tuple[str, ...]
    """Host addresses held by the zone's namespace; the first is its source address."""

    @property
    def bridge(self) -> str:
        return f"br-{self.name}"


ZONES: Final = (
    Zone("internet", "198.18.0.0/27", "198.18.0.1", ("198.18.0.10",)),
    Zone("dmz", "198.18.1.0/27", "198.18.1.1", ("198.18.1.10", "198.18.1.11", "198.18.1.30")),
    Zone("his", "198.18.2.0/27", "198.18.2.1", ("198.18.2.10", "198.18.2.20")),
    Zone("office", "198.18.3.0/27", "198.18.3.1", ("198.18.3.5",)),
    Zone("mgmt", "198.18.4.0/27", "198.18.4.1", ("198.18.4.10",)),
)
ZONE_NAMES: Final = tuple(zone.name for zone in ZONES)
NAMESPACE_SUFFIXES: Final = (*ZONE_NAMES, ROUTER)

# Services (address, port) and who serves them.
PORTAL: Final = ("198.18.1.10", 80)
"""Apache + ModSecurity + CRS, reverse proxy to PORTAL_BACKEND."""
PORTAL_BACKEND: Final = ("127.0.0.1", 8080)
"""The portal application, on the dmz namespace's loopback: reachable only through the WAF."""
BOOKING: Final = ("198.18.1.11", 80)
"""The second web application, no WAF in front."""
LEGACY_TLS: Final = ("198.18.1.11", 443)
"""openssl s_server speaking TLS 1.0/1.1 with CAMELLIA only, while the fault `tls-camellia` is on
(`legacy_tls`): on the booking host, on a port the policy opens from internet and office."""
GATEWAY: Final = ("198.18.1.30", 443)
"""nginx requiring client certificates (the ZTNA stand-in), proxying to HIS_WEB."""
DATABASE: Final = ("198.18.2.10", 5432)
DATABASE_SQLSERVER: Final = ("198.18.2.10", 1433)
"""The database host's second listener, on SQL Server's port: no policy names it, and the router
drops it from every zone unless the fault `his-db-leak` is on."""
HIS_WEB: Final = ("198.18.2.20", 8443)
SSH_VANTAGE: Final = ("198.18.3.5", 22)
SNMP_AGENT: Final = ("198.18.4.1", 161)
"""snmpd in the router namespace, on its mgmt address: the border firewall's agent."""

PROBE_USER: Final = "probe"
SNMP_V3_USER: Final = "medsec"
NFT_TABLE: Final = "medsec_lab"

WAF_SERVER: Final = "HospitalWAF"
"""The WAF's Server header (ModSecurity's SecServerSignature) on answers Apache itself makes."""
WAF_BLOCK_MARKER: Final = "MEDSEC-LAB-WAF-BLOCK"
"""Text in the WAF's 403 block page."""
WAF_REQUEST_ID_HEADER: Final = "X-Request-Id"
PORTAL_FILTER_FILE: Final = "portal-filter"
"""In LAB: the portal application refuses a few attack patterns itself while it holds `on`."""
"""Set by the WAF on every answer (mod_unique_id), blocked or not."""

# Fault switches, each breaking one control the scanner must catch.
FAULT_OFFICE_HIS_OPEN: Final = "office-his-open"
FAULT_WAF_BYPASS: Final = "waf-bypass"
FAULT_WAF_DETECTION_ONLY: Final = "waf-detection-only"
FAULT_APP_FILTER: Final = "app-filter"
FAULT_ZTNA_BYPASS: Final = "ztna-bypass"
FAULT_TLS10: Final = "tls10"
FAULT_TLS_CAMELLIA: Final = "tls-camellia"
FAULT_HIS_DB_LEAK: Final = "his-db-leak"
FAULT_ROUTER_RESET: Final = "router-reset"
FAULT_ROUTER_UNFILTERED: Final = "router-unfiltered"
FAULT_ZTNA_ANY_CERT: Final = "ztna-any-cert"
FAULT_ZTNA_OPEN_PATH: Final = "ztna-open-path"
FAULTS: Final = {
    FAULT_OFFICE_HIS_OPEN: "the router accepts every TCP connection from office to his",
    FAULT_WAF_BYPASS: "ModSecurity only detects (SecRuleEngine DetectionOnly): attacks pass",
    FAULT_WAF_DETECTION_ONLY: "the same as waf-bypass, by the name the WAF's setting has",
    FAULT_APP_FILTER: "no WAF (SecRuleEngine Off); the portal refuses `<script`, `' OR` and "
    "`../` itself and lets `UNION SELECT`, `<img onerror>`, `;cat /etc/passwd` through",
    FAULT_ZTNA_BYPASS: "the router accepts office and internet to his-web tcp/8443 directly",
    FAULT_TLS10: "the ZTNA gateway also accepts TLS 1.0 (ciphers DEFAULT:@SECLEVEL=0)",
    FAULT_TLS_CAMELLIA: "a legacy TLS service on the booking host (198.18.1.11 tcp/443) speaks "
    "TLS 1.0 and 1.1 only, with CAMELLIA suites only (not in OpenSSL's DEFAULT list)",
    FAULT_HIS_DB_LEAK: "the router accepts office to the his database's SQL Server port "
    "(198.18.2.10 tcp/1433), a port the policy does not name",
    FAULT_ROUTER_RESET: "the router rejects what the policy does not allow instead of dropping "
    "it: TCP with a reset, UDP with ICMP port unreachable (as it would from a closed port)",
    FAULT_ROUTER_UNFILTERED: "the router forwards everything between zones: no filtering rule "
    "at all (hosts answer for themselves, closed ports with resets)",
    FAULT_ZTNA_ANY_CERT: "the ZTNA gateway checks only that a client certificate was sent "
    "(ssl_verify_client optional_no_ca, $ssl_client_verify not read): a certificate from any "
    "CA reaches his-web (an expired one is still refused: optional_no_ca forgives only the issuer)",
    FAULT_ZTNA_OPEN_PATH: "the ZTNA gateway checks the client certificate only in location /: "
    "a later-added location /api/ proxies to his-web for anyone",
}
ROUTER_FAULTS: Final = frozenset(
    {
        FAULT_OFFICE_HIS_OPEN,
        FAULT_ZTNA_BYPASS,
        FAULT_HIS_DB_LEAK,
        FAULT_ROUTER_RESET,
        FAULT_ROUTER_UNFILTERED,
    }
)


@dataclass(frozen=True)
class Persona:
    """What the router's SNMP agent says it is (system group values)."""

    sys_descr: str
    sys_object_id: str
    source: str
    """Where the values come from."""


PERSONAS: Final = {
    "sonicwall": Persona(
        "SonicWALL TZ 210 (SonicOS Enhanced 5.9.1.6-5o)",
        "1.3.6.1.4.1.8741.1",
        "shared/data/snmp-devices/sonicwall.snmprec (LibreNMS test data)",
    ),
    "barracuda": Persona(
        "Barracuda Firewall",
        "1.3.6.1.4.1.10704.1.10",
        "shared/data/snmp-devices/barracudangfirewall.snmprec (LibreNMS test data)",
    ),
    "fortigate": Persona(
        "FortiGate-100F",
        "1.3.6.1.4.1.12356.15",
        "sysObjectID from shared/data/snmp-devices/fortigate.snmprec; that recording has no "
        "sysDescr, so the model name stands in",
    ),
}
DEFAULT_PERSONA: Final = "sonicwall"


def zone(name: str) -> Zone:
    for candidate in ZONES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


# Scan timing written into the lab's zones file: the lab answers in microseconds, so nmap need
# not wait T4's 1.25 s per probe, and its silent ports cost only what the rate allows. Measured
# on 2 cores with all five vantages at once over nmap's top 1,000 ports (benchmarks/scan.py):
# the four raw-socket vantages take about 9 s at 30,000 probes/s, the unprivileged office
# vantage's connect scan about 16 s (bound by its timeouts, not the rate). nmap's host and
# vantage timeouts are left to size themselves to the work.
LAB_SCAN_TIMING = {
    "min_rate": 30000,
    "max_rtt_timeout_ms": 50,
}
