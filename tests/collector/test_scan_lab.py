"""The scanner against the hospital-in-a-box lab, built for real (the session's `lab` of
conftest.py, shared with the lab's own tests): the clean lab passes every network check over
nmap's top 1,000 ports; each fault the lab can inject makes exactly the checks it breaks fail,
with evidence naming the cause — a database port no rule names, open to the office, is found by
default and missed by `scan.ports: listed`; cancelling a scan stops every nmap; nothing is
scanned outside the confinement. Needs root and network namespaces (skips with the reason
otherwise); every probe stays inside the lab's namespaces, on 198.18.0.0/15. Faults that do not
concern ports (WAF, TLS, the ZTNA path on a listed port) are scanned over the listed ports only,
which takes seconds instead of the top 1,000's quarter minute.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from checks.catalog import builtin_catalogs
from checks.envelope import parse_report
from checks.model import Status
from checks.net import network_registry
from checks.runner import evaluate
from collector.lab import Lab
from collector.lab.processes import processes_in
from collector.scan.cli import main as scan_main
from collector.scan.cli import results_to_report
from collector.scan.runner import ProgressEvent, scan
from collector.scan.vantage import SshVantage, VantageError
from collector.scan.zones import SshVantageConfig, Zones, load_zones
from tests.collector.lab_zones import write_lab_zones

CONFINE = ("198.18.0.0/15",)
CLI = (sys.executable, "-m", "collector.scan.cli")
pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def zones_file(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lab_zones(lab, tmp_path_factory.mktemp("scan-zones"))


@pytest.fixture(scope="module")
def listed_zones_file(zones_file: Path) -> Path:
    data = yaml.safe_load(zones_file.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    path = zones_file.with_name("listed.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def zones(zones_file: Path) -> Zones:
    return load_zones(zones_file, confine=CONFINE)


@pytest.fixture(scope="module")
def listed_zones(listed_zones_file: Path) -> Zones:
    return load_zones(listed_zones_file, confine=CONFINE)


def test_the_clean_lab_passes_every_check(zones_file: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "--zones", str(zones_file), "--format", "json", "--confine", ",".join(CONFINE)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(f"medsec scan of the clean lab: {time.monotonic() - started:.2f} s")
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    document = json.loads(done.stdout)
    assert document["schema"] == "medsec.scan/v1"
    bad = [r for r in document["results"] if r["status"] not in {"pass", "not_applicable"}]
    assert bad == []
    assert {r["check_id"] for r in document["results"]} == set(network_registry().ids())
    statuses = {(r["check_id"], r["target"]): r["status"] for r in document["results"]}
    assert statuses[("net.waf", "booking")] == "not_applicable"  # require_waf: false
    assert len([k for k in statuses if k[0] == "net.segmentation"]) == 20  # 5 zones, ordered
    runs = {r["zone"]: r for r in document["runs"]}
    assert runs["office"]["vantage"] == "ssh:probe@198.18.3.5"
    assert runs["office"]["privileged"] is False  # the probe user: a connect scan, no UDP
    assert runs["office"]["unscanned"] == [
        "udp/53, udp/69, udp/123, udp/161, udp/500, udp/514, udp/1900: unprivileged vantage "
        "(UDP needs raw sockets)"
    ]
    # nmap's top 1,000 TCP ports (the listed ones among them) and 7 UDP ports.
    assert len(document["ports"]) == 1007
    assert {"tcp/1433", "tcp/3306", "tcp/5432", "udp/53", "udp/161"} <= set(document["ports"])
    assert all(r["status"] == "ok" for r in runs.values())
    # All vantages at once: the whole scan takes about as long as the slowest, not the sum.
    assert document["seconds"] < 0.6 * sum(r["seconds"] for r in runs.values())
    matrix = {(m["from"], m["to"], m["port"]): m for m in document["matrix"]}
    web = matrix[("internet", "dmz", "tcp/80")]
    assert (web["state"], web["reason"]) == ("open", "syn-ack")
    assert {"address": "198.18.1.10", "state": "open", "reason": "syn-ack",
            "reason_ttl": 63} in web["answers"]  # fmt: skip
    assert matrix[("office", "his", "tcp/8443")]["state"] == "filtered"
    results = {(r["check_id"], r["target"]): r for r in document["results"]}
    segmentation = results[("net.segmentation", "internet->his")]
    assert segmentation["message"].startswith(
        "internet->his: no port outside the policy is open among 1,007 probed (open: none;"
    )
    assert segmentation["evidence"]["ports_probed"] == 1007
    assert results[("net.segmentation", "office->his")]["message"].startswith(
        "office->his: no port outside the policy is open among 1,000 probed"
    )
    waf = results[("net.waf", "portal")]
    assert waf["evidence"]["answered_blocks"] == ["HospitalWAF"]
    ztna = results[("net.ztna_coverage", "his-web")]
    assert "No required SSL certificate was sent" in ztna["message"]
    assert "published with a client certificate: 200 OK" in ztna["message"]
    border = results[("net.border_firewall", "office->his")]
    assert border["evidence"]["device"]["sys_object_id"] == "1.3.6.1.4.1.8741.1"
    assert border["evidence"]["device"]["role"] == "firewall"


FAULTS = [
    (
        "office-his-open", "top1000",
        # Every TCP port from office to his: his-web's port too, so ZTNA is bypassed as well;
        # and the database's SQL Server port, which only the wide port set probes. Nothing
        # filters the path, whatever the router's SNMP identity says.
        {"net.segmentation": "office->his: tcp/1433, tcp/5432, tcp/8443 open but not allowed",
         "net.border_firewall": "office->his: nothing filters: every probe to 2 live hosts "
                                "answered",
         "net.ztna_coverage": "his-web: reachable directly, bypassing the ZTNA gateway: "
                              "office -> his 198.18.2.20 tcp/8443 open"},
    ),
    (
        "his-db-leak", "top1000",
        # A port no policy rule, critical system or extra port names: found by default.
        {"net.segmentation": "office->his: tcp/1433 open but not allowed by the policy "
                             "(allowed: nothing); office -> his 198.18.2.10 tcp/1433 open "
                             "(syn-ack; connect scan from ssh:probe@198.18.3.5)"},
    ),
    (
        # The same leak with `scan.ports: listed`: unseen, and the pass says what was probed.
        "his-db-leak", "listed", {},
    ),
    (
        "waf-bypass", "listed",
        {"net.waf": "portal: sqli, xss, traversal, cmdi, scanner, protocol attack requests "
                    "were answered like their benign twins"},
    ),
    (
        "ztna-bypass", "listed",
        # his-web straight from office and internet: outside the policy, and the internet in.
        {"net.ztna_coverage": "his-web: reachable directly, bypassing the ZTNA gateway",
         "net.segmentation": "internet->his: tcp/8443 open but not allowed by the policy",
         "net.internet_isolation": "his is reachable from internet: internet -> his "
                                   "198.18.2.20 tcp/8443 open"},
    ),
    (
        "tls10", "listed",
        {"net.tls_floor": "198.18.1.30:443 (dmz) accepts TLSv1 (TLSv1 "},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "ports", "expected"), FAULTS, ids=[f"{f}-{p}" for f, p, _ in FAULTS]
)
def test_each_fault_fails_exactly_the_checks_it_breaks(  # noqa: PLR0917
    lab: Lab,
    zones: Zones,
    listed_zones: Zones,
    fault: str,
    ports: str,
    expected: dict[str, str],
) -> None:
    chosen = zones if ports == "top1000" else listed_zones
    lab.fault(fault, True)
    try:
        started = time.monotonic()
        facts = asyncio.run(scan(chosen, confine=CONFINE))
        print(
            f"scan with {fault} over {len(facts.ports)} ports: {time.monotonic() - started:.2f} s"
        )
    finally:
        lab.fault(fault, False)
    results = evaluate(network_registry(), facts)
    failing = {r.check_id for r in results if r.status is Status.FAIL}
    assert failing == set(expected), [(r.check_id, r.target, r.message) for r in results
                                      if r.status is Status.FAIL]  # fmt: skip
    assert [r for r in results if r.status is Status.ERROR] == []
    for check_id, words in expected.items():
        messages = [
            r.message for r in results if r.check_id == check_id and r.status is Status.FAIL
        ]
        assert any(words in m for m in messages), messages
    if fault == "his-db-leak":
        leak = next(r for r in results if r.check_id == "net.segmentation"
                    and r.target == "office->his")  # fmt: skip
        evidence = leak.evidence
        assert (evidence["from"], evidence["to"]) == ("office", "his")
        if ports == "top1000":
            assert evidence["violations"] == [
                "office -> his 198.18.2.10 tcp/1433 open (syn-ack; connect scan from "
                "ssh:probe@198.18.3.5)"
            ]
        else:
            # 22, 23, 80, 443, 3389, 5432, 8443 and 8080 (the collector's second port in mgmt)
            assert "among the 8 ports the zones file names (scan.ports: listed" in leak.message
    if fault == "office-his-open":
        # The office vantage cannot send lone ACKs (no raw sockets), so nothing it sees shows a
        # filter on that path: the firewall's identity is named, but does not make it pass.
        border = next(r for r in results if r.check_id == "net.border_firewall"
                      and r.target == "office->his")  # fmt: skip
        assert border.status is Status.FAIL
        assert "SonicWALL" in border.message
        report = results_to_report(facts, results, builtin_catalogs(), zones_file="zones.yaml")
        parsed = parse_report(json.dumps(report).encode())
        assert parsed.schema == "medsec.report/v1"
        assert parsed.host.id.startswith("scan:")
        assert {r.status for r in parsed.results} >= {"pass", "fail"}


def _nmaps_in(lab: Lab) -> list[int]:
    namespaces = [lab.netns(z) for z in ("internet", "dmz", "his", "office", "mgmt")]
    found = []
    for pid in processes_in(namespaces):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if command.endswith(b"nmap"):
            found.append(pid)
    return found


def test_cancelling_a_scan_stops_every_nmap(lab: Lab, zones: Zones) -> None:
    events: list[ProgressEvent] = []

    async def scenario() -> None:
        task = asyncio.create_task(scan(zones, progress=events.append, confine=CONFINE))
        for _ in range(250):
            await asyncio.sleep(0.02)
            if len(_nmaps_in(lab)) == 5:  # every vantage's, the SSH one's too
                break
        assert len(_nmaps_in(lab)) == 5, "not every vantage started nmap"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    deadline = time.monotonic() + 10  # the SSH vantage's nmap dies on its closed channel
    while _nmaps_in(lab) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _nmaps_in(lab) == []
    assert not [e for e in events if e.phase == "done"]


def test_nothing_outside_the_confinement_is_scanned(
    zones_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(zones_file.read_text(encoding="utf-8"))
    # Loopback: outside this confinement, and harmless even if the refusal ever broke.
    data["zones"].append({"name": "guests", "cidrs": ["127.77.0.0/24"]})
    wider = tmp_path / "zones.yaml"
    wider.write_text(yaml.safe_dump(data), encoding="utf-8")
    code = scan_main(["--zones", str(wider), "--confine", "198.18.0.0/15", "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.strip().endswith(
        "zones[5].cidrs[0]: 127.77.0.0/24 is outside the confinement 198.18.0.0/15: refused"
    )
    assert error.count("\n") == 1


def _other_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


@pytest.mark.parametrize(
    ("known", "words"),
    [
        (False, "not found in known_hosts"),
        # The right address with another key: a man in the middle, or a rebuilt host.
        (True, "host key does not match"),
    ],
)
def test_the_ssh_vantage_refuses_an_unknown_host_key(
    zones: Zones, tmp_path: Path, known: bool, words: str
) -> None:
    office = zones.zone("office").vantage
    assert isinstance(office, SshVantageConfig)
    path = tmp_path / "known_hosts"
    path.write_text(f"{office.host} {_other_key()}\n" if known else "", encoding="utf-8")
    vantage = SshVantage("office", msgspec.structs.replace(office, known_hosts=str(path)))
    with pytest.raises(VantageError, match=words):
        asyncio.run(vantage.privileged())


def test_scan_results_are_stored_in_the_collector(listed_zones_file: Path, tmp_path: Path) -> None:
    """`medsec scan --store --config F` keeps the results as a report of the collector's own
    scanner identity, queryable like an agent's, with their clauses."""
    zones_file = listed_zones_file
    from collector.store import Store

    medsec = str(Path(sys.executable).parent / "medsec")
    subprocess.run(
        [medsec, "init", "--dir", str(tmp_path / "c")], check=True, capture_output=True, timeout=120
    )
    config = str(tmp_path / "c" / "collector.yaml")
    done = subprocess.run(
        [
            medsec,
            "scan",
            "--zones",
            str(zones_file),
            "--format",
            "json",
            "--store",
            "--config",
            config,
            "--confine",
            ",".join(CONFINE),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "stored as report" in done.stderr
    store = Store.open(f"sqlite:///{tmp_path / 'c' / 'medsec.db'}")
    try:
        hosts = store.list_hosts(10, 0).items
        assert [h.agent for h in hosts] == ["medsec-scanner"]
        ztna = store.query_results("net.ztna_coverage", None, 10, 0).items
        assert {r.target for r in ztna} == {"his-web", "coverage"}
        assert all("MNDS 6.1.2" in r.clauses for r in ztna)
        audit = [e.action for e in store.audit_entries(100, 0).items]
        assert any(a.startswith("cli scan --zones") for a in audit)
        # Recorded as a scan too, with its report: history and `medsec scans diff` have it.
        scans = store.list_scans(10, 0, datetime.now(UTC)).items
        assert [(s.state.value, s.report_id is not None) for s in scans] == [("passed", True)]
        assert scans[0].zones == str(zones_file.resolve())
    finally:
        store.close()
    refused = subprocess.run(
        [medsec, "scan", "--zones", str(zones_file), "--store"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr == "medsec: --store needs --config (the collector settings)\n"
