"""medsec's reachability verdicts against the truth, for a router that drops (the clean lab), one
that rejects instead (`router-reset`: TCP resets and ICMP port unreachable in the hosts' place)
and one that does not filter at all (`router-unfiltered`).

The truth comes from the test's own nmap, run as root in each zone's namespace with `--reason`
over a few ports listed one by one (so every answer keeps its TTL), toward every host of the
other zones and one address of each zone that holds no host. Whatever answers for the address
with no host is the router; an answer from a host's address reached the host only when it is a
SYN-ACK or differs from the router's answer (a reset one hop further, TTL 63 against 64). From
that: a zone pair is filtered when some probe to a host did not reach it; a critical zone is
isolated when no probe between it and the internet reached a host; segmentation holds when no
port outside the policy answered open; the ZTNA gateway is bypassed when his-web's port answers
from a user or internet zone. medsec's verdicts (`net.border_firewall`, `net.internet_isolation`,
`net.segmentation`, the bypass part of `net.ztna_coverage`) must equal it on every pair. Needs
root and network namespaces; every probe stays inside the lab's namespaces, on 198.18.0.0/15.
"""

from __future__ import annotations

import asyncio
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from checks.model import Result, Status
from checks.net import network_registry
from checks.runner import evaluate
from collector.lab import Lab
from collector.lab import topology as t
from collector.lab.configs import parse_policy
from collector.lab.lab import zones_template
from collector.scan.runner import scan
from collector.scan.zones import load_zones
from tests.collector.lab_zones import write_lab_zones

pytestmark = pytest.mark.root

CONFINE = ("198.18.0.0/15",)
TRUTH_PORTS = (22, 23, 80, 443, 1433, 3389, 5432, 8443)
"""The ports the truth probes: every service the lab runs and some it does not."""
HOSTLESS = 25
"""The last octet of an address no lab zone holds (each zone is a /27: .1 is the router)."""
CHECKS = ("net.border_firewall", "net.internet_isolation", "net.segmentation", "net.ztna_coverage")
SCENARIOS = (None, t.FAULT_ROUTER_RESET, t.FAULT_ROUTER_UNFILTERED)


@dataclass(frozen=True)
class Answer:
    address: str
    port: int
    state: str
    reason: str
    ttl: int

    @property
    def signature(self) -> tuple[str, str, int]:
        return self.state, self.reason, self.ttl


def _hostless(zone: t.Zone) -> str:
    return zone.cidr.rsplit(".", 1)[0].rsplit("/", 1)[0] + f".{HOSTLESS}"


def _truth_scan(lab: Lab, source: t.Zone) -> dict[str, list[Answer]]:
    """nmap from `source`'s namespace toward every host of the other zones and one address of
    each that holds no host, every port listed one by one: answers per address."""
    targets = [
        address
        for zone in t.ZONES
        if zone.name != source.name
        for address in (*zone.addresses, _hostless(zone))
    ]
    ports = ",".join(str(p) for p in TRUTH_PORTS)
    argv = lab.command(
        source.name,
        "nmap", "-n", "-Pn", "--reason", "-sS", "-p", ports, "--max-retries", "2",
        "-T4", "--max-rtt-timeout", "200ms", "-oX", "-", *targets,
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    found: dict[str, list[Answer]] = {}
    for host in ET.fromstring(done.stdout).iter("host"):  # noqa: S314
        address = host.find("address")
        assert address is not None
        answers = found.setdefault(address.get("addr", ""), [])
        for port in host.iter("port"):
            state = port.find("state")
            assert state is not None
            answers.append(
                Answer(
                    address.get("addr", ""),
                    int(port.get("portid", "0")),
                    state.get("state", ""),
                    state.get("reason", ""),
                    int(state.get("reason_ttl", "0")),
                )
            )
    return found


@dataclass(frozen=True)
class PairTruth:
    reached: bool
    """Some probe reached a host."""
    filtered: bool
    """Some probe to a host did not reach it (dropped, or answered by the router)."""
    open_ports: frozenset[tuple[str, int]]
    """(address, port) that answered SYN-ACK."""


def _truth(lab: Lab) -> dict[tuple[str, str], PairTruth]:
    truth: dict[tuple[str, str], PairTruth] = {}
    for source in t.ZONES:
        answers = _truth_scan(lab, source)
        for target in t.ZONES:
            if target.name == source.name:
                continue
            router = {
                a.signature for a in answers.get(_hostless(target), []) if a.state != "filtered"
            }
            reached_any, not_reached, opened = False, False, set()
            for address in target.addresses:
                seen = answers.get(address, [])
                assert len(seen) == len(TRUTH_PORTS), (source.name, address, seen)
                for answer in seen:
                    from_host = answer.state == "open" or (
                        answer.state == "closed" and answer.signature not in router
                    )
                    reached_any |= from_host
                    not_reached |= not from_host
                    if answer.state == "open":
                        opened.add((address, answer.port))
            truth[(source.name, target.name)] = PairTruth(
                reached_any, not_reached, frozenset(opened)
            )
    return truth


@pytest.fixture(scope="module")
def zones_file(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's zones file without its web applications (what the WAF probes judge is not
    what this test compares)."""
    path = write_lab_zones(lab, tmp_path_factory.mktemp("router-truth"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["web_apps"] = []
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _verdicts(zones_file: Path) -> list[Result]:
    facts = asyncio.run(
        scan(load_zones(zones_file, confine=CONFINE), confine=CONFINE),
    )
    checks = [c for c in network_registry() if c.id in CHECKS]
    return evaluate(checks, facts)


@pytest.fixture
def fault(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str | None]:
    name: str | None = request.param
    if name is not None:
        lab.fault(name, True)
    try:
        yield name
    finally:
        if name is not None:
            lab.fault(name, False)


def _one(results: list[Result], check_id: str, target: str) -> Result:
    found = [r for r in results if r.check_id == check_id and r.target == target]
    assert len(found) == 1, (check_id, target, found)
    return found[0]


@pytest.mark.parametrize("fault", SCENARIOS, indirect=True, ids=lambda f: f or "clean")
def test_verdicts_equal_the_truth(lab: Lab, zones_file: Path, fault: str | None) -> None:
    truth = _truth(lab)
    results = _verdicts(zones_file)
    policy = {(r.source, r.target, f"{r.proto}/{r.port}") for r in parse_policy(zones_template())}
    wrong: list[str] = []
    for (source, target), seen in sorted(truth.items()):
        name = f"{source}->{target}"
        border = _one(results, "net.border_firewall", name)
        expected = Status.PASS if seen.filtered else Status.FAIL
        if border.status != expected:
            wrong.append(f"border {name}: {border.status} ({border.message}), truth {seen}")
        segmentation = _one(results, "net.segmentation", name)
        outside = {p for _, p in seen.open_ports if (source, target, f"tcp/{p}") not in policy}
        expected = Status.FAIL if outside else Status.PASS
        if segmentation.status != expected:
            wrong.append(f"segmentation {name}: {segmentation.status}, truth open {outside}")
    isolated = not truth[("internet", "his")].reached and not truth[("his", "internet")].reached
    isolation = _one(results, "net.internet_isolation", "his<->internet")
    if isolation.status != (Status.PASS if isolated else Status.FAIL):
        wrong.append(f"isolation: {isolation.status} ({isolation.message}), truth {isolated}")
    address, port = t.HIS_WEB
    bypassed = any(
        (address, port) in truth[(zone, "his")].open_ports for zone in ("internet", "office")
    )
    ztna = _one(results, "net.ztna_coverage", "his-web")
    said_bypassed = "bypassing the ZTNA gateway" in ztna.message
    if said_bypassed != bypassed or (bypassed and ztna.status != Status.FAIL):
        wrong.append(f"ztna: {ztna.status} ({ztna.message}), truth bypassed={bypassed}")
    assert not wrong, "\n".join(wrong)
    # The scenarios differ where they should: the truth itself is not trivially constant.
    if fault == t.FAULT_ROUTER_UNFILTERED:
        assert truth[("internet", "his")].reached
        assert bypassed
    else:
        assert all(seen.filtered for seen in truth.values())
        assert isolated
        assert not bypassed
