"""nmap as the scanner runs it: the argument list (scope-checked), the XML parser on output
captured from real nmap runs (tests/fixtures/raw/nmap/README.md), nmap's own top-ports list, the
matrix built from a thousand ports per host (silent ports summarised, answers kept), and real
runs against ports this test opens on 127.0.0.1 — with reasons and TTLs kept, a timeout that
keeps what was done, and cancellation that leaves no nmap behind. The probe helper is exercised
on real HTTP and TLS servers on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.scan.nmap import (
    NMAP_DEFAULTS,
    NmapError,
    NmapOptions,
    NmapResult,
    NmapXmlParser,
    build_argv,
    parse_nmap_xml,
    port_argument,
    port_list,
    port_numbers,
    run_nmap_process,
    sized_host_timeout,
    top_ports,
    top_ports_argv,
)
from collector.scan.runner import ack_targets, build_cells, nmap_options
from collector.scan.vantage import PROBE_SCRIPT, LocalVantage
from collector.scan.zones import PortSpec, Scope, ScopeError, parse_zones

RAW = Path(__file__).resolve().parents[1] / "fixtures" / "raw" / "nmap"
LOOPBACK = Scope((ipaddress.IPv4Network("127.0.0.0/8"),))
NMAP = shutil.which("nmap", path="/usr/sbin:/usr/bin:/sbin:/bin")
FAST = NmapOptions(min_rate=1000, host_timeout_seconds=20, stats_every="200ms")

needs_root_nmap = pytest.mark.skipif(
    NMAP is None or os.geteuid() != 0,
    reason="needs nmap (Debian package nmap) and root for SYN scans",
)

LAB_ZONES = {
    "zones": [
        {"name": "internet", "cidrs": ["198.18.0.0/24"], "internet": True},
        {"name": "dmz", "cidrs": ["198.18.1.0/24"]},
        {"name": "his", "cidrs": ["198.18.2.0/24"], "critical": True},
        {"name": "office", "cidrs": ["198.18.3.0/24"]},
        {"name": "mgmt", "cidrs": ["198.18.4.0/24"]},
    ],
}


def _raw(name: str) -> bytes:
    return (RAW / name).read_bytes()


def _ports(run, address):  # type: ignore[no-untyped-def]
    host = next(h for h in run.hosts if h.address == address)
    return {(p.proto, p.port): (p.state, p.reason, p.reason_ttl) for p in host.all_ports()}


# --- the parser, on captured output -----------------------------------------------------------


def test_ports_folded_into_extraports_stay_folded_and_expand_on_demand() -> None:
    run = parse_nmap_xml(_raw("loopback_syn_extraports.xml"))
    assert run.finished
    assert run.exit_status == "success"
    assert run.scan_types == ("syn",)
    assert run.services == (("tcp", "47000-47040"),)
    host = run.hosts[0]
    assert [(e.state, e.reason, e.ports, e.total) for e in host.extra] == [
        ("closed", "reset", "47000,47003-47040", 39)
    ]
    assert {p.port for p in host.ports} == {47001, 47002}
    ports = _ports(run, "127.0.0.1")
    assert len(ports) == 41
    assert ports[("tcp", 47001)] == ("open", "syn-ack", 64)
    assert ports[("tcp", 47000)] == ports[("tcp", 47040)] == ("closed", "reset", 0)


def test_port_lists_in_nmap_syntax() -> None:
    assert port_numbers("1,3-4,6-7,9") == (1, 3, 4, 6, 7, 9)
    assert port_list([9, 1, 3, 4, 6, 7, 4]) == "1,3-4,6-7,9"
    assert port_list(range(1, 65536)) == "1-65535"
    assert port_argument([PortSpec("tcp", n) for n in range(1, 65536)], ["syn"]) == "T:1-65535"


def test_nmaps_own_top_ports_are_read_from_a_run_without_target() -> None:
    run = parse_nmap_xml(_raw("top_ports_1000.xml"))
    ports = top_ports(run, 1000)
    assert len(ports) == len(set(ports)) == 1000
    # Databases and remote access a leak between zones is made of (nmap-services' ranking).
    assert {22, 23, 80, 443, 445, 1433, 1521, 3306, 3389, 5432, 5900, 8443} <= set(ports)
    with pytest.raises(NmapError, match="nmap named 1000 ports for --top-ports 100"):
        top_ports(run, 100)
    assert top_ports_argv("nmap", 1000) == ["nmap", "-n", "-oX", "-", "-sT", "--top-ports", "1000"]


@pytest.mark.skipif(NMAP is None, reason="needs nmap (Debian package nmap)")
def test_the_installed_nmap_names_its_top_ports() -> None:
    result = asyncio.run(run_nmap_process(top_ports_argv(str(NMAP), 1000), timeout=30))
    assert result.status == "ok", result.message
    assert len(top_ports(result.run, 1000)) == 1000


def test_state_reason_and_reason_ttl_are_kept() -> None:
    run = parse_nmap_xml(_raw("lab_internet_syn_udp.xml"))
    assert run.scan_types == ("syn", "udp")
    assert len(run.hosts) == 32
    portal = _ports(run, "198.18.1.10")
    assert portal[("tcp", 80)] == ("open", "syn-ack", 63)  # one hop: through the router
    assert portal[("tcp", 443)] == ("closed", "reset", 63)
    assert portal[("tcp", 22)] == ("filtered", "no-response", 0)
    assert portal[("udp", 161)] == ("open|filtered", "no-response", 0)
    loop = parse_nmap_xml(_raw("loopback_syn_udp.xml"))
    assert _ports(loop, "127.0.0.1")[("udp", 47004)] == ("closed", "port-unreach", 64)
    mgmt = parse_nmap_xml(_raw("lab_mgmt_syn_udp.xml"))
    assert _ports(mgmt, "198.18.1.11")[("udp", 161)] == ("closed", "port-unreach", 63)


def test_connect_and_ack_scans() -> None:
    connect = parse_nmap_xml(_raw("lab_office_connect_office-his-open.xml"))
    assert connect.scan_types == ("connect",)
    database = _ports(connect, "198.18.2.10")
    assert database[("tcp", 5432)] == ("open", "syn-ack", 0)
    assert database[("tcp", 22)] == ("closed", "conn-refused", 0)
    ack = parse_nmap_xml(_raw("lab_office_ack_office-his-open.xml"))
    assert ack.scan_types == ("ack",)
    assert {p.state for h in ack.hosts for p in h.ports} == {"filtered"}


def test_timed_out_hosts_are_marked_and_have_no_ports() -> None:
    run = parse_nmap_xml(_raw("lab_internet_host_timeout.xml"))
    assert len(run.hosts) == 5
    assert all(h.timed_out and not h.ports for h in run.hosts)


def test_output_cut_short_keeps_every_finished_host() -> None:
    run = parse_nmap_xml(_raw("lab_internet_syn_udp_truncated.xml"))
    assert not run.finished
    assert run.exit_status is None
    assert len(run.hosts) == 13
    assert all(len(h.ports) == 8 for h in run.hosts)


def test_streamed_in_small_chunks_with_progress() -> None:
    seen: list[tuple[float, str]] = []
    parser = NmapXmlParser(total_hosts=32, on_progress=lambda f, n: seen.append((f, n)))
    data = _raw("lab_internet_syn_udp.xml")
    for start in range(0, len(data), 97):
        parser.feed(data[start : start + 97])
    run = parser.close()
    assert run.finished
    assert len(run.hosts) == 32
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert seen[-1][1] == "32/32 hosts"


def test_cells_summarise_silence_and_list_answers() -> None:
    zones = parse_zones(LAB_ZONES, "zones.yaml")
    run = parse_nmap_xml(_raw("lab_internet_syn_udp.xml"))
    result = NmapResult((), run, "ok", "", 0.8)
    ports = [PortSpec.parse(p) for p in ("tcp/22", "tcp/80", "tcp/443", "udp/161")]
    built = build_cells(zones, "internet", "netns:lab-internet", result, ports)
    cells = built.cells
    assert built.unfinished == ()
    assert built.silent == []  # every port listed: each has its cell
    by_key = {(c.target, c.spec): c for c in cells}
    web = by_key[("dmz", "tcp/80")]
    assert (web.probed, web.silent, web.state, web.reason) == (16, 14, "open", "syn-ack")
    assert [(o.address, o.reason_ttl, o.scan) for o in web.observations] == [
        ("198.18.1.10", 63, "syn"),
        ("198.18.1.11", 63, "syn"),
    ]
    assert by_key[("his", "tcp/80")].observations == ()
    assert by_key[("dmz", "udp/161")].state == "open|filtered"
    assert ack_targets(cells) == {}  # tcp/22 is silent toward the web hosts: filtering is seen


def test_ack_probes_go_where_every_tcp_port_answered() -> None:
    zones = parse_zones(LAB_ZONES, "zones.yaml")
    run = parse_nmap_xml(_raw("lab_office_connect_office-his-open.xml"))
    built = build_cells(
        zones,
        "office",
        "ssh:probe@198.18.3.5",
        NmapResult((), run, "ok", "", 0.3),
        [PortSpec("tcp", p) for p in (22, 23, 80, 443, 3389, 5432, 8443)],
    )
    assert ack_targets(built.cells) == {"his": ["198.18.2.10"]}


def test_timed_out_hosts_are_reported_unfinished() -> None:
    zones = parse_zones(LAB_ZONES, "zones.yaml")
    run = parse_nmap_xml(_raw("lab_internet_host_timeout.xml"))
    built = build_cells(
        zones, "internet", "x", NmapResult((), run, "ok", "", 0.2), [PortSpec("tcp", 22)]
    )
    assert built.cells == []
    assert built.silent == []
    assert set(built.unfinished) == {
        "198.18.2.8",
        "198.18.2.9",
        "198.18.2.10",
        "198.18.2.11",
        "198.18.1.10",
    }


def test_a_leak_among_a_thousand_silent_ports_gets_its_cell() -> None:
    """The his database's SQL Server port, open to office (lab fault his-db-leak): the one
    answer among 16 hosts x 1,000 ports becomes a cell; the ports the zones file names keep
    theirs; every other port, silent on every host, is one SilentPorts record."""
    zones = parse_zones(LAB_ZONES, "zones.yaml")
    top = top_ports(parse_nmap_xml(_raw("top_ports_1000.xml")), 1000)
    run = parse_nmap_xml(_raw("lab_office_connect_top1000_his-db-leak.xml"))
    assert len({e.ports for h in run.hosts for e in h.extra}) == 2  # 2.10's list lacks 1433
    listed = [PortSpec("tcp", p) for p in (22, 5432, 8443)]
    built = build_cells(
        zones,
        "office",
        "ssh:probe@198.18.3.5",
        NmapResult((), run, "ok", "", 12.0),
        [PortSpec("tcp", p) for p in top],
        listed=listed,
    )
    assert sorted(c.spec for c in built.cells) == ["tcp/1433", "tcp/22", "tcp/5432", "tcp/8443"]
    leak = next(c for c in built.cells if c.port == 1433)
    assert (leak.probed, leak.silent, leak.state, leak.scan) == (16, 15, "open", "connect")
    assert [o.line() for o in leak.open] == [
        "office -> his 198.18.2.10 tcp/1433 open (syn-ack; connect scan from ssh:probe@198.18.3.5)"
    ]
    [silent] = built.silent
    assert (silent.target, silent.proto, silent.count, silent.addresses) == ("his", "tcp", 996, 16)
    assert 1433 not in port_numbers(silent.ports)
    assert ack_targets(built.cells, built.silent) == {}


def test_silent_hosts_sharing_a_port_list_are_counted_not_expanded() -> None:
    """1,024 silent hosts x 1,000 ports: nmap's one folded list per host, shared and read once."""
    zones = parse_zones(LAB_ZONES, "zones.yaml")
    listing = port_list(range(1, 1001))
    hosts = "".join(
        f'<host><status state="up" reason="user-set"/><address addr="198.18.{n // 256}.'
        f'{n % 256}" addrtype="ipv4"/><ports><extraports state="filtered" count="1000">'
        f'<extrareasons reason="no-response" count="1000" proto="tcp" ports="{listing}"/>'
        "</extraports></ports></host>"
        for n in range(256, 256 * 5)  # dmz, his, office, mgmt
    )
    document = (
        '<nmaprun args="nmap" version="7.93"><scaninfo type="syn" protocol="tcp" '
        f'numservices="1000" services="{listing}"/>{hosts}'
        '<runstats><finished elapsed="1.0" exit="success"/></runstats></nmaprun>'
    )
    run = parse_nmap_xml(document)
    assert len(run.hosts) == 1024
    assert len({id(e.ports) for h in run.hosts for e in h.extra}) == 1
    ports = [PortSpec("tcp", n) for n in range(1, 1001)]
    built = build_cells(
        zones, "internet", "x", NmapResult((), run, "ok", "", 1.0), ports, listed=ports[:2]
    )
    zones_probed = ("dmz", "his", "mgmt", "office")
    assert sorted((c.target, c.port, c.probed, c.silent) for c in built.cells) == [
        (zone, port, 256, 256) for zone in zones_probed for port in (1, 2)
    ]
    assert [(s.target, s.ports, s.count, s.addresses) for s in built.silent] == [
        (zone, "3-1000", 998, 256) for zone in zones_probed
    ]


def test_folded_ports_nmap_does_not_name_are_never_taken_as_silence() -> None:
    document = (
        '<nmaprun args="nmap" version="7.0"><scaninfo type="syn" protocol="tcp" services="1-9"/>'
        '<host><status state="up" reason="user-set"/><address addr="198.18.1.10" '
        'addrtype="ipv4"/><ports><extraports state="filtered" count="9"/></ports></host>'
        '<runstats><finished elapsed="1.0" exit="success"/></runstats></nmaprun>'
    )
    [host] = parse_nmap_xml(document).hosts
    assert [(e.ports, e.total) for e in host.extra] == [("", 9)]


# --- the command line -------------------------------------------------------------------------


def test_argv_has_reasons_xml_on_stdout_and_the_timing() -> None:
    ports = [PortSpec("tcp", 80), PortSpec("tcp", 22), PortSpec("udp", 161)]
    argv = build_argv(
        nmap="/usr/bin/nmap",
        scans=["syn", "udp"],
        ports=ports,
        targets=["127.0.0.0/30"],
        scope=LOOPBACK,
        options=NmapOptions(max_rtt_timeout_ms=200),
    )
    assert argv[:8] == ["/usr/bin/nmap", "-n", "-Pn", "--reason", "-oX", "-", "--stats-every", "1s"]
    text = " ".join(argv)
    for part in ("-sS -sU", "-p T:22,80,U:161", "-T4", "--max-retries 1", "--host-timeout 60s",
                 "--min-hostgroup 1024", "--min-rate 3000", "--max-rtt-timeout 200ms",
                 "-- 127.0.0.0/30"):  # fmt: skip
        assert part in text
    assert port_argument(ports, ["connect"]) == "T:22,80"
    assert port_argument(ports, ["ack"]) == "T:22,80"
    with pytest.raises(NmapError, match="no port"):
        port_argument([PortSpec("udp", 161)], ["connect"])
    with pytest.raises(NmapError, match="one TCP scan type"):
        build_argv(nmap="nmap", scans=["syn", "ack"], ports=ports, targets=["127.0.0.1"],
                   scope=LOOPBACK, options=NmapOptions())  # fmt: skip


def test_a_zones_file_without_scan_settings_gives_nmap_its_defaults() -> None:
    assert nmap_options(parse_zones(LAB_ZONES, "zones.yaml")) == NMAP_DEFAULTS
    tuned = NmapOptions(
        timing=3,
        max_retries=0,
        min_rate=None,
        max_rate=50,
        min_hostgroup=16,
        max_rtt_timeout_ms=300,
        host_timeout_seconds=9.0,
    )
    scan = {k: v for k, v in vars(tuned).items() if k != "stats_every"}
    assert nmap_options(parse_zones({**LAB_ZONES, "scan": scan}, "zones.yaml")) == tuned


def test_an_unset_host_timeout_is_sized_to_the_whole_host_group() -> None:
    # nmap's clock for each host runs while its whole group is scanned: 1,024 hosts x 1,007
    # ports x 2 tries at 3,000 probes/s take 687 s, far past a fixed 60 s.
    assert NMAP_DEFAULTS.host_timeout_seconds is None
    assert sized_host_timeout(NMAP_DEFAULTS, 1024, 1007) == 60 + 2062  # 3 x 687.4 s
    assert sized_host_timeout(NMAP_DEFAULTS, 1, 8) == 60
    unlimited = NmapOptions(min_rate=None)  # then 1,000 probes/s are assumed
    assert sized_host_timeout(unlimited, 1024, 1007) == 60 + 6187  # 3 x 2062.3 s
    assert sized_host_timeout(unlimited, 65536, 65542) == 86_400
    argv = build_argv(nmap="nmap", scans=["syn"], ports=[PortSpec("tcp", 80)],
                      targets=["127.0.0.0/24"], scope=LOOPBACK, options=NMAP_DEFAULTS)  # fmt: skip
    assert argv[argv.index("--host-timeout") + 1] == "60s"


@pytest.mark.parametrize("target", ["198.18.0.7", "0.0.0.0/0", "127.0.0.1/7", "localhost"])
def test_a_target_outside_the_scope_is_refused_before_anything_runs(target: str) -> None:
    with pytest.raises(ScopeError, match="refused"):
        build_argv(
            nmap="nmap",
            scans=["syn"],
            ports=[PortSpec("tcp", 80)],
            targets=["127.0.0.1", target],
            scope=LOOPBACK,
            options=NmapOptions(),
        )


# --- real nmap on loopback --------------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[list[int]]:
    """Two TCP ports listening on 127.0.0.1, and one free (closed) port after them."""
    sockets = []
    for _ in range(2):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        sockets.append(server)
    ports = [s.getsockname()[1] for s in sockets]
    try:
        yield ports
    finally:
        for server in sockets:
            server.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_root_nmap
def test_a_real_syn_scan_keeps_reasons(listening: list[int]) -> None:
    closed = _free_port()
    ports = [PortSpec("tcp", p) for p in (*listening, closed)]
    argv = build_argv(nmap=str(NMAP), scans=["syn"], ports=ports, targets=["127.0.0.1"],
                      scope=LOOPBACK, options=FAST)  # fmt: skip
    seen: list[float] = []
    result = asyncio.run(
        run_nmap_process(argv, timeout=30, total_hosts=1, on_progress=lambda f, _: seen.append(f))
    )
    assert result.status == "ok", result.message
    found = _ports(result.run, "127.0.0.1")
    assert found[("tcp", listening[0])] == ("open", "syn-ack", 64)
    assert found[("tcp", closed)] == ("closed", "reset", 64)
    assert seen
    assert seen[-1] == 1.0


def _nmaps_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if cmdline[0].endswith(b"nmap") and any(marker.encode() in a for a in cmdline):
                    found.append(int(entry))
    return found


def _slow_argv(marker_port: int) -> list[str]:
    # A whole /24 at 20 packets/s: minutes of work, so it is surely running when stopped.
    slow = NmapOptions(min_rate=None, max_rate=20, host_timeout_seconds=600)
    return build_argv(nmap=str(NMAP), scans=["syn"],
                      ports=[PortSpec("tcp", marker_port), PortSpec("tcp", 9)],
                      targets=["127.0.2.0/24"], scope=LOOPBACK, options=slow)  # fmt: skip


@needs_root_nmap
def test_a_timeout_stops_nmap_and_keeps_what_it_finished() -> None:
    marker = _free_port()
    result = asyncio.run(run_nmap_process(_slow_argv(marker), timeout=1.5, total_hosts=256))
    assert result.status == "timeout"
    assert "stopped after" in result.message
    assert not result.run.finished
    assert _nmaps_with(str(marker)) == []


@needs_root_nmap
def test_cancelling_the_scan_stops_nmap() -> None:
    marker = _free_port()

    async def scenario() -> None:
        task = asyncio.create_task(
            run_nmap_process(_slow_argv(marker), timeout=120, total_hosts=256)
        )
        for _ in range(100):
            await asyncio.sleep(0.05)
            if _nmaps_with(str(marker)):
                break
        assert _nmaps_with(str(marker)), "nmap did not start"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _nmaps_with(str(marker)) == []


def test_nmap_that_cannot_start_is_one_line() -> None:
    argv = ["/nonexistent/nmap", "-oX", "-", "127.0.0.1"]
    with pytest.raises(NmapError, match="/nonexistent/nmap: cannot run"):
        asyncio.run(run_nmap_process(argv, timeout=5))


@needs_root_nmap
def test_nmap_errors_are_reported() -> None:
    result = asyncio.run(run_nmap_process([str(NMAP), "-oX", "-", "--no-such-option"], timeout=20))
    assert result.status == "error"
    assert result.message.startswith("nmap exited 255")


# --- the probe helper, on real servers --------------------------------------------------------


class _App(http.server.BaseHTTPRequestHandler):
    server_version = "TestApp/1.0"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        blocked = "script" in self.path or "passwd" in self.path or "UNION" in self.path
        body = b"Request blocked" if blocked else b"hello"
        self.send_response(403 if blocked else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def web() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _tls_server(legacy: bool) -> tuple[int, threading.Event]:
    import trustme

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if legacy:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), connection:
                connection.settimeout(2)
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), stop


def test_http_probes_report_status_server_and_body(web: int) -> None:
    url = f"http://127.0.0.1:{web}/"
    request = {
        "op": "http",
        "requests": [
            {"id": "baseline", "url": url, "connect": ["127.0.0.1", web]},
            {"id": "xss", "url": url, "query": "q=%3Cscript%3E", "connect": ["127.0.0.1", web]},
            {"id": "refused", "url": url, "connect": ["127.0.0.1", _free_port()], "timeout": 2},
        ],
    }
    answer = asyncio.run(LocalVantage("here").probe(request, timeout=30))
    got = {e["id"]: e for e in answer["exchanges"]}
    assert got["baseline"]["status"] == 200
    assert got["baseline"]["body"] == "hello"
    assert ["Server", "TestApp/1.0"] in got["baseline"]["headers"]
    assert got["xss"]["status"] == 403
    assert got["xss"]["url"].endswith("/?q=%3Cscript%3E")
    assert got["refused"]["status"] is None
    assert got["refused"]["error"] == "connection refused"


@pytest.mark.parametrize(("legacy", "tls10"), [(False, "refused"), (True, "accepted")])
def test_tls_versions_are_offered_one_by_one(legacy: bool, tls10: str) -> None:
    port, stop = _tls_server(legacy)
    try:
        answer = asyncio.run(
            LocalVantage("here").probe(
                {"op": "tls", "targets": [{"address": "127.0.0.1", "port": port}], "timeout": 3},
                timeout=30,
            )
        )
    finally:
        stop.set()
    outcomes = {v["version"]: v["outcome"] for v in answer["services"][0]["versions"]}
    assert outcomes["TLSv1"] == tls10
    assert outcomes["SSLv3"] == "refused"  # OpenSSL 3 servers have no SSLv3 at all
    assert outcomes["TLSv1.2"] == "accepted"


def test_a_plain_service_is_not_tls(web: int) -> None:
    answer = asyncio.run(
        LocalVantage("here").probe(
            {"op": "tls", "targets": [{"address": "127.0.0.1", "port": web}], "timeout": 3},
            timeout=30,
        )
    )
    outcomes = {v["version"]: v for v in answer["services"][0]["versions"]}
    assert {v["outcome"] for v in outcomes.values()} == {"refused"}
    assert "not TLS" in outcomes["SSLv3"]["detail"]


def test_the_probe_helper_needs_only_the_standard_library() -> None:
    # Shipped to SSH vantages as `python3 -I -`: it must run with nothing but the stdlib.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-", "e30="],  # base64 of "{}"
        input=PROBE_SCRIPT.read_bytes(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert b"bad probe request" in done.stdout
