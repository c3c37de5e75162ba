"""`net.tls_floor` against the truth, on the lab built for real (the session's `lab`): with the
fault `tls-camellia` on (a service that speaks TLS 1.0/1.1 only, and only with CAMELLIA suites)
and with the clean lab, every open TCP endpoint the scan found is handshaken by this test's own
`openssl s_client`, run from the namespace of the zone whose vantage saw it open, offering one
version at a time with every suite the local OpenSSL has (`-cipher ALL:COMPLEMENTOFALL:@SECLEVEL=0`,
all TLS 1.3 suites). The set of TLS services, each version's outcome and each verdict must
equal what those handshakes say — with the legacy service probed from a netns vantage and, with
the internet zone's vantage removed, from the SSH vantage (the probe helper shipped over SSH).
Needs root and network namespaces (skips otherwise).

SSLv3 has no truth here: OpenSSL 3 cannot speak it, and neither can any server of the lab (all
are OpenSSL 3 builds), so the scanner's SSLv3 outcome is asserted to be a refusal.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from checks.facts.network import NetFacts
from checks.model import Status
from checks.net import network_registry
from checks.runner import evaluate
from collector.lab import Lab
from collector.lab import topology as t
from collector.scan.runner import scan
from collector.scan.zones import Zones, load_zones
from tests.collector.lab_zones import write_lab_zones

CONFINE = ("198.18.0.0/15",)
FORBIDDEN = ("SSLv3", "TLSv1", "TLSv1.1")
EVERY_CIPHER = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
    "TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"
)
FLAGS = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
pytestmark = pytest.mark.root


def _zones_file(lab: Lab, folder: Path, *, ssh_only: bool) -> Zones:
    path = write_lab_zones(lab, folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    if ssh_only:
        # Without the internet zone's vantage, the dmz's tcp/443 is seen only from the office,
        # whose vantage is the SSH host: the probe helper then runs shipped over SSH.
        for zone in data["zones"]:
            if zone["name"] == "internet":
                zone.pop("vantage", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_zones(path, confine=CONFINE)


@pytest.fixture(scope="module")
def zones(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Zones:
    """The lab's zones over the listed ports (tcp/443 of the dmz among them): seconds, not the
    top 1,000's quarter minute; the legacy service's port is not one named as TLS anywhere."""
    return _zones_file(lab, tmp_path_factory.mktemp("tls-truth"), ssh_only=False)


@pytest.fixture(scope="module")
def ssh_zones(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Zones:
    return _zones_file(lab, tmp_path_factory.mktemp("tls-truth-ssh"), ssh_only=True)


def _openssl() -> str:
    found = shutil.which("openssl", path="/usr/bin:/bin")
    if found is None:
        pytest.skip("openssl is not installed (Debian package openssl)")
    return found


def handshake(
    lab: Lab, zone: str, address: str, port: int, version: str, *, ciphers: str = EVERY_CIPHER
) -> bool:
    """Whether `openssl s_client` from the zone's namespace completes a handshake at exactly
    `version` offering `ciphers` (TLS 1.0-1.2) or every TLS 1.3 suite."""
    suites = ["-ciphersuites", TLS13_SUITES] if version == "TLSv1.3" else ["-cipher", ciphers]
    done = subprocess.run(
        lab.command(
            zone, _openssl(), "s_client", "-connect", f"{address}:{port}", FLAGS[version], *suites
        ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
    )
    # By the exit code and the cipher line, never by s_client's "Protocol :" line.
    return done.returncode == 0 and "Cipher is (NONE)" not in done.stdout


def open_endpoints(facts: NetFacts) -> dict[tuple[str, int], str]:
    """Every open TCP endpoint of the scan's nmap phase, with one zone that saw it open."""
    assert isinstance(facts.matrix, tuple), facts.matrix
    found: dict[tuple[str, int], str] = {}
    for cell in facts.matrix:
        if cell.proto != "tcp":
            continue
        for observation in cell.observations:
            if observation.state == "open":
                found.setdefault((observation.address, cell.port), cell.source)
    return found


def compare_with_truth(lab: Lab, facts: NetFacts) -> dict[str, Status]:
    """Assert medsec's TLS services, outcomes and verdicts equal the handshakes' truth; return
    the verdict per endpoint."""
    truth: dict[str, dict[str, bool]] = {}
    for (address, port), zone in sorted(open_endpoints(facts).items()):
        accepted = {version: handshake(lab, zone, address, port, version) for version in FLAGS}
        if any(accepted.values()):
            truth[f"{address}:{port}"] = accepted
    assert isinstance(facts.tls, tuple), facts.tls
    services = {s.endpoint: s for s in facts.tls}
    assert set(services) == set(truth)
    for endpoint, accepted in truth.items():
        service = services[endpoint]
        assert service.outcome("SSLv3") is not None
        assert service.outcome("SSLv3").outcome == "refused"  # type: ignore[union-attr]
        for version, yes in accepted.items():
            outcome = service.outcome(version)
            assert outcome is not None
            assert outcome.outcome == ("accepted" if yes else "refused"), (endpoint, outcome)
    results = [r for r in evaluate(network_registry(), facts) if r.check_id == "net.tls_floor"]
    verdicts = {str(r.target): r.status for r in results}
    expected = {
        endpoint: Status.FAIL if any(accepted[v] for v in FORBIDDEN if v in accepted)
        else Status.PASS
        for endpoint, accepted in truth.items()
    }  # fmt: skip
    assert verdicts == expected, [(r.target, r.status, r.message) for r in results]
    return verdicts


@pytest.mark.parametrize("vantage", ["netns", "ssh"])
def test_camellia_only_legacy_tls_is_caught(
    lab: Lab, zones: Zones, ssh_zones: Zones, vantage: str
) -> None:
    chosen = ssh_zones if vantage == "ssh" else zones
    address, port = t.LEGACY_TLS
    endpoint = f"{address}:{port}"
    lab.fault(t.FAULT_TLS_CAMELLIA, True)
    try:
        # The class of the bug: with OpenSSL's DEFAULT list the server looks TLS-less.
        for version in ("TLSv1", "TLSv1.1", "TLSv1.2"):
            assert not handshake(
                lab, "internet", address, port, version, ciphers="DEFAULT:@SECLEVEL=0"
            )
        assert handshake(lab, "internet", address, port, "TLSv1")
        facts = asyncio.run(scan(chosen, confine=CONFINE))
        verdicts = compare_with_truth(lab, facts)
    finally:
        lab.fault(t.FAULT_TLS_CAMELLIA, False)
    assert verdicts[endpoint] is Status.FAIL
    assert isinstance(facts.tls, tuple)
    legacy = next(s for s in facts.tls if s.endpoint == endpoint)
    assert legacy.vantage_zone == ("office" if vantage == "ssh" else "internet")
    result = next(
        r
        for r in evaluate(network_registry(), facts)
        if r.check_id == "net.tls_floor" and r.target == endpoint
    )
    assert "accepts TLSv1 (TLSv1 " in result.message
    assert "CAMELLIA" in result.message
    assert "TLSv1.1 (TLSv1.1 " in result.message


def test_the_clean_lab_agrees_with_the_truth(lab: Lab, zones: Zones) -> None:
    assert t.FAULT_TLS_CAMELLIA not in lab.faults()
    facts = asyncio.run(scan(zones, confine=CONFINE))
    verdicts = compare_with_truth(lab, facts)
    address, port = t.LEGACY_TLS
    assert f"{address}:{port}" not in verdicts
    # The ZTNA gateway (seen from internet and office) and his-web (from the dmz): TLS 1.2+.
    assert verdicts == {"198.18.1.30:443": Status.PASS, "198.18.2.20:8443": Status.PASS}


def test_the_fault_switches_back_and_forth(lab: Lab) -> None:
    address, port = t.LEGACY_TLS
    for _ in range(2):
        lab.fault(t.FAULT_TLS_CAMELLIA, True)
        try:
            assert t.FAULT_TLS_CAMELLIA in lab.faults()
            assert handshake(lab, "office", address, port, "TLSv1.1")
            assert not handshake(lab, "office", address, port, "TLSv1.2")
        finally:
            lab.fault(t.FAULT_TLS_CAMELLIA, False)
        assert not handshake(lab, "office", address, port, "TLSv1")
