"""Which ports a scan probes (`scan.ports`), end to end through the scanner with a stand-in
vantage that answers with nmap output captured in the lab (tests/fixtures/raw/nmap): nmap's own
top-1,000 list is asked for first and every vantage probes it with the listed ports; a list that
cannot be had stops the scan with `error`, never with a smaller port set; folded ports nmap does
not name are an `error`; an unprivileged vantage's UDP ports are named as not scanned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from checks.model import Status, Unavailable
from checks.net import network_registry
from checks.runner import evaluate, run_check
from collector.scan.nmap import (
    NmapError,
    NmapResult,
    ProgressCallback,
    parse_nmap_xml,
    port_numbers,
)
from collector.scan.runner import scan
from collector.scan.zones import COVERAGE_UDP, parse_zones

RAW = Path(__file__).resolve().parents[1] / "fixtures" / "raw" / "nmap"
CONFINE = ("198.18.0.0/15",)
ZONES = {
    "zones": [
        {"name": "his", "cidrs": ["198.18.2.0/24"], "critical": True},
        {"name": "office", "cidrs": ["198.18.3.0/24"], "users": True},
    ],
    "policy": {"allow": [{"from": "office", "to": "his", "ports": ["tcp/8443"]}]},
    "scan": {"extra_ports": ["tcp/22"]},
}


class _Vantage:
    """Answers like nmap in the lab's office zone: its top-ports list, then the captured scan
    of the his zone with the fault his-db-leak on (or `scan`, when given)."""

    zone = "office"
    description = "ssh:probe@198.18.3.5"
    nmap = "nmap"

    def __init__(self, *, top: str = "top_ports_1000.xml", scan: bytes | None = None) -> None:
        self.top = top
        self.scan = scan
        self.argvs: list[list[str]] = []

    async def privileged(self) -> bool:
        return False

    async def run_nmap(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        total_hosts: int,
        on_progress: ProgressCallback | None = None,
    ) -> NmapResult:
        self.argvs.append(list(argv))
        if "--top-ports" in argv:
            if not self.top:
                raise NmapError("nmap: not found on 198.18.3.5")
            data = (RAW / self.top).read_bytes()
        else:
            data = self.scan or (RAW / "lab_office_connect_top1000_his-db-leak.xml").read_bytes()
        return NmapResult(tuple(argv), parse_nmap_xml(data), "ok", "done", 0.1)

    async def probe(self, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        return {"services": []}

    async def close(self) -> None:
        return None


def _scan(vantage: _Vantage, **scan_settings: Any) -> Any:
    data = {**ZONES, "scan": {**ZONES["scan"], **scan_settings}}
    zones = parse_zones(data, "zones.yaml", confine=CONFINE)
    return asyncio.run(scan(zones, confine=CONFINE, vantages={"office": vantage}))


def _segmentation(facts: Any) -> Any:
    [result] = [
        r
        for r in run_check(network_registry().get("net.segmentation"), facts)
        if r.target == "office->his"
    ]
    return result


def test_by_default_nmaps_top_ports_and_the_listed_ones_are_probed() -> None:
    vantage = _Vantage()
    facts = _scan(vantage)
    lookup, main = vantage.argvs
    assert lookup == ["nmap", "-n", "-oX", "-", "-sT", "--top-ports", "1000"]
    probed = main[main.index("-p") + 1]
    assert probed.startswith("T:1,3-4,6-7,")
    assert "U:" not in probed  # unprivileged: no UDP scan is even attempted
    assert 1433 in port_numbers(probed.removeprefix("T:"))
    # tcp/22 and tcp/8443 are in the top 1,000 already: 1,000 TCP + 7 UDP ports in all.
    assert len(facts.ports) == 1000 + len(COVERAGE_UDP)
    assert facts.port_choice == "top1000"
    result = _segmentation(facts)
    assert result.status is Status.FAIL
    assert result.message.startswith(
        "office->his: tcp/1433 open but not allowed by the policy (allowed: tcp/8443); "
        "office -> his 198.18.2.10 tcp/1433 open (syn-ack; connect scan from ssh:probe@198.18.3.5)"
    )
    assert (result.evidence["from"], result.evidence["to"]) == ("office", "his")
    assert result.evidence["ports_probed"] == 1000
    assert result.evidence["unscanned"] == [
        "udp/53, udp/69, udp/123, udp/161, udp/500, udp/514, udp/1900: unprivileged vantage "
        "(UDP needs raw sockets)"
    ]


def test_listed_ports_alone_miss_the_leak_and_say_so() -> None:
    vantage = _Vantage()
    facts = _scan(vantage, ports="listed")
    [main] = vantage.argvs  # no top-ports lookup
    assert main[main.index("-p") + 1] == "T:22,8443"
    result = _segmentation(facts)
    assert result.status is Status.PASS
    assert (
        "among the 2 ports the zones file names (scan.ports: listed; no other port was probed)"
        in (result.message)
    )


def test_all_ports_are_one_short_argument() -> None:
    vantage = _Vantage()
    _scan(vantage, ports="all")
    [main] = vantage.argvs
    assert main[main.index("-p") + 1] == "T:1-65535"


def test_without_nmaps_list_nothing_is_scanned_and_every_check_says_error() -> None:
    vantage = _Vantage(top="")
    facts = _scan(vantage)
    assert len(vantage.argvs) == 1  # the lookup only
    assert isinstance(facts.matrix, Unavailable)
    [run] = facts.runs
    assert run.status == "error"
    assert run.message == (
        "nmap's --top-ports 1000 list could not be read (office: nmap: not found on 198.18.3.5)"
    )
    # Every check needing the scan says error, TLS too: no scan is not "no TLS service".
    results = evaluate(network_registry(), facts)
    statuses = {r.check_id: r.status for r in results if r.check_id != "net.waf"}
    assert set(statuses.values()) == {Status.ERROR}, statuses
    [tls] = [r for r in results if r.check_id == "net.tls_floor"]
    assert "no vantage produced results (office: nmap's --top-ports 1000" in tls.message
    assert [r.status for r in results if r.check_id == "net.waf"] == [Status.NOT_APPLICABLE]


def test_folded_ports_without_numbers_are_an_error_not_silence() -> None:
    unnamed = (
        b'<nmaprun args="nmap" version="7.0"><scaninfo type="connect" protocol="tcp" '
        b'services="1-1000"/><host><status state="up" reason="user-set"/><address '
        b'addr="198.18.2.10" addrtype="ipv4"/><ports><extraports state="filtered" count="1000"/>'
        b'</ports></host><runstats><finished elapsed="1.0" exit="success"/></runstats></nmaprun>'
    )
    facts = _scan(_Vantage(scan=unnamed))
    [run] = facts.runs
    assert run.status == "error"
    assert "folded 1000 ports without naming them" in run.message
    results = run_check(network_registry().get("net.segmentation"), facts)
    assert results
    assert {r.status for r in results} == {Status.ERROR}
    assert "folded 1000 ports without naming them" in results[0].message
