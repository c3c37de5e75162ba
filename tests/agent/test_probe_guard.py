"""The probe's own check of what it runs (collector/scan/probe_guard.py), differentially against
the scanner: every argument list the real `build_argv` / `top_ports_argv` make (random options,
scan types, ports and targets inside the probe's CIDRs) is accepted unchanged, and every mutation
a hostile collector could make (an extra option, a file, a target outside, a hostname, a wider
CIDR, another program) is refused with one line. The helper requests are the real ones too
(`gateway_requests`, the TLS request the Prober sends)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.scan.gateway_plan import gateway_requests, probe_paths
from collector.scan.nmap import NmapOptions, ScanKind, build_argv, top_ports_argv
from collector.scan.probe_guard import (
    Refused,
    Targets,
    check_job,
    check_nmap_argv,
    check_probe_request,
)
from collector.scan.zones import PortSpec, Scope

ALLOWED = ("127.0.0.0/8", "198.18.0.0/16")  # 198.19.0.0/16 stays outside: the refused ones
TARGETS = Targets.parse(ALLOWED)
SCOPE = Scope(tuple(ipaddress.IPv4Network(c) for c in ALLOWED))


@st.composite
def inside(draw: st.DrawFn) -> str:
    """An address or CIDR inside one of the probe's CIDRs."""
    base = ipaddress.IPv4Network(draw(st.sampled_from(ALLOWED)))
    prefix = draw(st.integers(base.prefixlen, 32))
    offset = draw(st.integers(0, base.num_addresses - 1))
    address = ipaddress.IPv4Address(int(base.network_address) + offset)
    network = ipaddress.IPv4Network(f"{address}/{prefix}", strict=False)
    return str(network.network_address) if prefix == 32 else str(network)


scans_st = st.one_of(
    st.sampled_from(["syn", "connect", "ack"]).map(lambda s: [s]),
    st.sampled_from(["syn", "connect", "ack"]).map(lambda s: [s, "udp"]),
    st.sampled_from(["syn", "connect", "ack"]).map(lambda s: ["udp", s]),
    st.just(["udp"]),
)
options_st = st.builds(
    NmapOptions,
    timing=st.integers(0, 5),
    max_retries=st.integers(0, 10),
    min_rate=st.none() | st.integers(1, 1_000_000),
    max_rate=st.none() | st.integers(1, 1_000_000),
    min_hostgroup=st.integers(1, 4096),
    max_rtt_timeout_ms=st.none() | st.integers(10, 60_000),
    host_timeout_seconds=st.none() | st.floats(1, 86_400),
)


@st.composite
def argv_st(draw: st.DrawFn) -> list[str]:
    scans: list[ScanKind] = draw(scans_st)
    tcp = draw(st.lists(st.integers(1, 65_535), min_size=1, max_size=40))
    udp = draw(st.lists(st.integers(1, 65_535), min_size=1, max_size=10))
    ports = [PortSpec("tcp", p) for p in tcp] + [PortSpec("udp", p) for p in udp]
    return build_argv(
        nmap="nmap",
        scans=scans,
        ports=ports,
        targets=draw(st.lists(inside(), min_size=1, max_size=6)),
        scope=SCOPE,
        options=draw(options_st),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv_st())
def test_every_argv_the_scanner_builds_is_accepted(argv: list[str]) -> None:
    assert check_nmap_argv(argv, TARGETS) == argv


@given(st.integers(1, 65_535))
def test_the_top_ports_question_is_accepted(count: int) -> None:
    argv = top_ports_argv("nmap", count)
    assert check_nmap_argv(argv, TARGETS) == argv


HOSTILE_OPTIONS = [
    ["--script", "vuln"],
    ["--script=http-title"],
    ["-iL", "/etc/passwd"],
    ["-oN", "/tmp/x"],
    ["-oX", "/tmp/x.xml"],
    ["--datadir", "/tmp"],
    ["--resume", "/tmp/x"],
    ["-sV"],
    ["-O"],
    ["--privileged"],
    ["-e", "eth0"],
    ["-S", "127.0.0.9"],
    ["--interactive"],
    ["--excludefile", "/etc/shadow"],
]
HOSTILE_TARGETS = [
    "198.19.0.1",  # outside every CIDR of the probe
    "198.19.1.0/24",
    "198.18.0.0/15",  # wider than the allowed /16
    "127.0.0.0/7",  # wider than the allowed /8
    "0.0.0.0/0",
    "example.org",  # a name resolves anywhere
    "localhost",
    "127.0.0.1-5",  # nmap's own range syntax
    "127.0.0.*",
    "127.0.0.1/255.0.0.0",
    "127.1",
    "::1",
    "-iL",
    "",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv_st(), st.sampled_from(HOSTILE_OPTIONS), st.data())
def test_an_extra_option_anywhere_is_refused(
    argv: list[str], option: list[str], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(argv)))
    mutated = argv[:at] + option + argv[at:]
    with pytest.raises(Refused) as caught:
        check_nmap_argv(mutated, TARGETS)
    assert "\n" not in str(caught.value)
    assert str(caught.value).endswith("refused")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv_st(), st.sampled_from(HOSTILE_TARGETS), st.data())
def test_a_target_outside_the_probes_cidrs_is_refused(
    argv: list[str], target: str, data: st.DataObject
) -> None:
    first = argv.index("--") + 1
    at = data.draw(st.integers(first, len(argv) - 1))
    replace = data.draw(st.booleans())
    mutated = [*argv[:at], target, *argv[at + 1 if replace else at :]]
    with pytest.raises(Refused):
        check_nmap_argv(mutated, TARGETS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv_st(), st.data())
def test_a_dropped_or_changed_argument_is_refused(argv: list[str], data: st.DataObject) -> None:
    """Any fixed part removed, or any option's value made into something of another shape."""
    end = argv.index("--")
    at = data.draw(st.integers(0, end))
    dropped = argv[:at] + argv[at + 1 :]
    with pytest.raises(Refused):
        check_nmap_argv(dropped, TARGETS)
    values = [i for i in range(1, end) if not argv[i].startswith("-") or argv[i] == "-"]
    if values:
        at = data.draw(st.sampled_from(values))
        changed = [
            *argv[:at],
            data.draw(st.sampled_from(["/tmp/x", "1;id", "", "-x"])),
            *argv[at + 1 :],
        ]
        with pytest.raises(Refused):
            check_nmap_argv(changed, TARGETS)


def test_argv0_must_be_the_bare_name_the_probe_replaces() -> None:
    argv = top_ports_argv("nmap", 10)
    for program in ("/usr/bin/nmap", "/tmp/evil", "sh", "nmap "):
        with pytest.raises(Refused, match="argv\\[0\\]"):
            check_nmap_argv([program, *argv[1:]], TARGETS)
    with pytest.raises(Refused):
        check_nmap_argv([*argv, "127.0.0.1"], TARGETS)


# --- helper requests ------------------------------------------------------------------------


def _gateway(cert: str | None, key: str | None) -> dict[str, Any]:
    url = "https://127.0.0.20:8443/portal/"
    requests = gateway_requests(
        url,
        ("127.0.0.20", 8443),
        timeout=5.0,
        cert_file=cert,
        key_file=key,
        paths=probe_paths(url),
    )
    return {"op": "http", "requests": requests}


def test_the_gateway_requests_with_throwaway_certificates_are_accepted() -> None:
    request = _gateway(None, None)
    assert any("client_pem" in r for r in request["requests"])
    assert check_probe_request(request, TARGETS) is request


def test_a_request_naming_a_file_is_refused(tmp_path: Any) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not read by the test\n")
    with pytest.raises(Refused, match="reads no file"):
        check_probe_request(_gateway(str(cert), str(cert)), TARGETS)
    snmp = {"op": "snmp", "host": "127.0.0.1", "version": "2c", "community_file": "/etc/c"}
    with pytest.raises(Refused, match=r"community_file.*reads no file"):
        check_probe_request(snmp, TARGETS)
    with pytest.raises(Refused, match="operation"):
        check_probe_request({"op": "shell", "command": "id"}, TARGETS)


def test_http_and_tls_targets_are_checked_against_the_probes_cidrs() -> None:
    ok = {
        "op": "http",
        "requests": [{"id": "a", "url": "http://app.example/", "connect": ["127.0.0.5", 80]}],
    }
    assert check_probe_request(ok, TARGETS)
    for connect in (["198.19.0.1", 80], ["app.example", 80], ["127.0.0.5", 0], ["127.0.0.5"]):
        bad = {"op": "http", "requests": [{"url": "http://app.example/", "connect": connect}]}
        with pytest.raises(Refused):
            check_probe_request(bad, TARGETS)
    outside_url = {
        "op": "http",
        "requests": [{"url": "http://198.19.0.1/", "connect": ["127.0.0.5", 80]}],
    }
    with pytest.raises(Refused, match="url host"):
        check_probe_request(outside_url, TARGETS)
    tls = {"op": "tls", "targets": [{"address": "127.0.0.5", "port": 443}], "timeout": 5.0,
           "versions": ["TLSv1.2", "TLSv1.3"]}  # fmt: skip
    assert check_probe_request(tls, TARGETS)
    tls["targets"] = [{"address": "198.19.1.1", "port": 443}]
    with pytest.raises(Refused, match="outside"):
        check_probe_request(tls, TARGETS)


def test_whole_jobs() -> None:
    assert check_job("noop", {}, TARGETS).kind == "noop"
    assert check_job("privileged", {}, TARGETS).kind == "privileged"
    argv = top_ports_argv("nmap", 100)
    job = check_job("nmap", {"argv": argv, "timeout": 30, "total_hosts": 0}, TARGETS)
    assert job.argv == tuple(argv)
    assert job.timeout == 30
    with pytest.raises(Refused, match="unknown key"):
        check_job("nmap", {"argv": argv, "timeout": 30, "env": {"LD_PRELOAD": "x"}}, TARGETS)
    with pytest.raises(Refused, match="not one a probe runs"):
        check_job("shell", {}, TARGETS)
    with pytest.raises(Refused, match="timeout"):
        check_job("probe", {"request": {"op": "tls", "targets": []}, "timeout": -1}, TARGETS)
    with pytest.raises(Refused):
        check_job("noop", {"sleep": 5}, TARGETS)
