"""What a probe agrees to run for the collector: its own check of every job, made inside the zone
before anything is sent, independent of what the collector already checked.

A probe dials out to a collector it trusts to hand it work, not to hand it a shell: a collector
taken over (or a job row written by hand into its database) must not turn the probe into a
scanner of anything else. So a job is refused unless

- its nmap argument list is EXACTLY of the grammar `collector.scan.nmap.build_argv` and
  `top_ports_argv` produce: the known options, in their order, each value of its shape, `-oX -`,
  the targets after `--`, each target an IPv4 address or CIDR inside the probe's own `targets`
  (argv[0] must be the bare name `nmap`: the probe runs its own nmap, never a path it is given);
- its probe-helper request (`collector.scan.probe_cli`) is a known operation with known keys
  only, every address it connects to inside `targets`, and no file: no key naming a path
  (`*_file`, `client_cert`, `client_key`). The scanner's throwaway client certificates travel
  inside the request (`client_pem`) and are allowed.

Anything else raises `Refused` with one line saying why; the job then fails and nothing runs.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NMAP_NAME = "nmap"
"""The only argv[0] accepted: the probe puts its own nmap there."""
MAX_TARGETS = 4096
MAX_HTTP_REQUESTS = 256
MAX_TLS_TARGETS = 65_536
MAX_TIMEOUT_SECONDS = 86_400 * 2
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
FILE_REFUSED = "the probe reads no file the collector names"

_IPV4 = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_CIDR = re.compile(rf"{_IPV4.pattern}(?:/(?:[0-9]|[12][0-9]|3[0-2]))?")
_INT = re.compile(r"0|[1-9][0-9]{0,8}")
_STATS = re.compile(r"[1-9][0-9]{0,4}(?:ms|s)")
_HOST_TIMEOUT = re.compile(r"(?:0|[1-9][0-9]{0,5})(?:\.[0-9]{1,6})?s")
_RTT = re.compile(r"[1-9][0-9]{0,5}ms")
_TIMING = re.compile(r"-T[0-5]")
_PORTS = re.compile(r"(?:0|[1-9][0-9]{0,4})(?:-(?:0|[1-9][0-9]{0,4}))?")
_METHOD = re.compile(r"[A-Z]{1,16}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_BREAKS = re.compile(r"[\s\0]")
_SCAN_FLAGS = {"-sS": "tcp", "-sT": "tcp", "-sA": "tcp", "-sU": "udp"}
_HTTP_KEYS = frozenset(
    {"id", "url", "connect", "timeout", "path", "query", "method", "headers", "body", "verify",
     "client_pem"}
)  # fmt: skip
_PATH_KEYS = frozenset({"client_cert", "client_key"})
"""Keys of the helper's requests whose value is a file on the machine running it."""


class Refused(Exception):
    """The probe will not run this job; the message is the one line the collector stores."""


@dataclass(frozen=True)
class Targets:
    """The CIDRs this probe may ever scan or probe (its config's `probe.targets`)."""

    networks: tuple[ipaddress.IPv4Network, ...]

    @classmethod
    def parse(cls, cidrs: Iterable[str]) -> Targets:
        """ValueError naming the first entry that is not an IPv4 CIDR."""
        networks = []
        for text in cidrs:
            try:
                network = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a CIDR ({exc})") from None
            if not isinstance(network, ipaddress.IPv4Network):
                raise ValueError(f"{text!r}: IPv6 is not supported")
            networks.append(network)
        return cls(tuple(networks))

    def check(self, target: object, what: str) -> ipaddress.IPv4Network:
        """The target (address or CIDR, written canonically), or `Refused`."""
        if not isinstance(target, str) or not _CIDR.fullmatch(target):
            raise Refused(f"{what}: {_show(target)} is not an IPv4 address or CIDR: refused")
        try:
            network = ipaddress.IPv4Network(target, strict=True)
        except ValueError:
            raise Refused(
                f"{what}: {_show(target)} is not an IPv4 address or CIDR: refused"
            ) from None
        if not any(network.subnet_of(allowed) for allowed in self.networks):
            raise Refused(f"{what}: {target} is outside this probe's targets: refused")
        return network

    def check_address(self, address: object, what: str) -> str:
        if not isinstance(address, str) or not _IPV4.fullmatch(address):
            raise Refused(f"{what}: {_show(address)} is not an IPv4 address: refused")
        self.check(address, what)
        return address


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- nmap -------------------------------------------------------------------------------------


class _Argv:
    """A cursor over the argument list, each step naming what it expected."""

    def __init__(self, argv: Sequence[object]) -> None:
        self.argv = list(argv)
        self.at = 0

    def peek(self) -> object:
        return self.argv[self.at] if self.at < len(self.argv) else None

    def take(self, what: str) -> str:
        if self.at >= len(self.argv):
            raise Refused(f"nmap argv ends where {what} was expected: refused")
        value = self.argv[self.at]
        if not isinstance(value, str):
            raise Refused(f"nmap argv[{self.at}] is not a string: refused")
        self.at += 1
        return value

    def expect(self, literal: str) -> None:
        at = self.at
        value = self.take(repr(literal))
        if value != literal:
            raise Refused(f"nmap argv[{at}]: {_show(value)} where {literal} belongs: refused")

    def value(self, option: str, shape: re.Pattern[str], what: str) -> str:
        self.expect(option)
        at = self.at
        value = self.take(f"the value of {option}")
        if not shape.fullmatch(value):
            raise Refused(f"nmap argv[{at}]: {option} {_show(value)} is not {what}: refused")
        return value


def _port_list(text: str, what: str) -> None:
    if not text:
        raise Refused(f"nmap -p: empty {what} port list: refused")
    for part in text.split(","):
        if not _PORTS.fullmatch(part):
            raise Refused(f"nmap -p: {_show(part)} is not a port or range: refused")
        low, _, high = part.partition("-")
        if not 1 <= int(low) <= int(high or low) <= 65_535:
            raise Refused(f"nmap -p: {part} is not a range of ports 1-65535: refused")


def _port_argument(text: str, protocols: set[str]) -> None:
    """`T:list`, `U:list` or `T:list,U:list`, with exactly the protocols the scans cover."""
    tcp, udp = text, ""
    if ",U:" in text:
        tcp, udp = text.split(",U:", 1)
        udp = "U:" + udp
    elif text.startswith("U:"):
        tcp, udp = "", text
    found = set()
    if tcp:
        if not tcp.startswith("T:"):
            raise Refused(f"nmap -p: {_show(text)} is not T:PORTS,U:PORTS: refused")
        _port_list(tcp[2:], "TCP")
        found.add("tcp")
    if udp:
        _port_list(udp[2:], "UDP")
        found.add("udp")
    if found != protocols:
        raise Refused(f"nmap -p: {_show(text)} does not match the scan types: refused")


def check_nmap_argv(argv: object, targets: Targets) -> list[str]:
    """The argument list as the probe will run it (argv[0] still `nmap`), or `Refused`."""
    if not isinstance(argv, list) or not argv or len(argv) > 64 + MAX_TARGETS:
        raise Refused("nmap argv is not a non-empty list of arguments: refused")
    cursor = _Argv(argv)
    first = cursor.take("nmap")
    if first != NMAP_NAME:
        raise Refused(f"nmap argv[0] is {_show(first)}, not {NMAP_NAME}: refused")
    cursor.expect("-n")
    if cursor.peek() == "-oX":
        _top_ports(cursor)
    else:
        _scan(cursor, targets)
    return [str(a) for a in argv]


def _top_ports(cursor: _Argv) -> None:
    """top_ports_argv: nmap names its --top-ports list and scans nothing."""
    for literal in ("-oX", "-", "-sT"):
        cursor.expect(literal)
    cursor.value("--top-ports", _INT, "a count")
    if cursor.at != len(cursor.argv):
        extra = _show(cursor.argv[cursor.at])
        raise Refused(f"nmap argv[{cursor.at}]: {extra} after --top-ports: refused")


def _scan_types(cursor: _Argv) -> set[str]:
    protocols: set[str] = set()
    flags: list[str] = []
    while cursor.peek() in _SCAN_FLAGS:
        flag = cursor.take("a scan type")
        if flag in flags:
            raise Refused(f"nmap argv: scan type {flag} given twice: refused")
        flags.append(flag)
        protocols.add(_SCAN_FLAGS[flag])
    if not flags or len([f for f in flags if f != "-sU"]) > 1:
        at = cursor.at
        raise Refused(f"nmap argv[{at}]: not one TCP scan type (and optionally -sU): refused")
    return protocols


def _scan(cursor: _Argv, targets: Targets) -> None:
    """build_argv: the options in its order, then `--` and the targets."""
    for literal in ("-Pn", "--reason", "-oX", "-"):
        cursor.expect(literal)
    cursor.value("--stats-every", _STATS, "an interval")
    protocols = _scan_types(cursor)
    ports = cursor.value("-p", re.compile(r"[TU]:[0-9,TU:-]{1,400000}"), "a port argument")
    _port_argument(ports, protocols)
    at = cursor.at
    timing = cursor.take("-T<0-5>")
    if not _TIMING.fullmatch(timing):
        raise Refused(f"nmap argv[{at}]: {_show(timing)} where -T<0-5> belongs: refused")
    cursor.value("--max-retries", re.compile(r"[0-9]|10"), "a count of 0-10")
    cursor.value("--host-timeout", _HOST_TIMEOUT, "a time in seconds")
    cursor.value("--min-hostgroup", _INT, "a count")
    for option, shape, what in (
        ("--min-rate", _INT, "a rate"),
        ("--max-rate", _INT, "a rate"),
        ("--max-rtt-timeout", _RTT, "a time in ms"),
    ):
        if cursor.peek() == option:
            cursor.value(option, shape, what)
    at = cursor.at
    if cursor.take("--") != "--":
        raise Refused(
            f"nmap argv[{at}]: {_show(cursor.argv[at])} is not a known option here: refused"
        )
    rest = cursor.argv[cursor.at :]
    if not rest:
        raise Refused("nmap argv: no target after --: refused")
    if len(rest) > MAX_TARGETS:
        raise Refused(f"nmap argv: {len(rest)} targets, more than {MAX_TARGETS}: refused")
    for target in rest:
        targets.check(target, "nmap target")


# --- the probe helper -----------------------------------------------------------------------


def named_files(value: object, where: str = "request") -> list[str]:
    """Every key (dotted path) in a helper request that names a file on the machine running it."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            if name.endswith("_file") or name in _PATH_KEYS:
                found.append(f"{where}.{name}")
            found += named_files(item, f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += named_files(item, f"{where}[{index}]")
    return found


def _timeout(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(f"{what}: {_show(value)} is not a number of seconds: refused")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TIMEOUT_SECONDS:
        raise Refused(f"{what}: {value} seconds is out of range: refused")
    return seconds


def _port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65_536:
        raise Refused(f"{what}: {_show(value)} is not a port: refused")
    return value


def _only(request: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(request) - set(allowed))
    if unknown:
        raise Refused(f"{what}: unknown key {unknown[0]!r}: refused")


def _check_http(item: object, index: int, targets: Targets) -> None:
    what = f"http request {index}"
    if not isinstance(item, Mapping):
        raise Refused(f"{what} is not an object: refused")
    _only(item, _HTTP_KEYS, what)
    _check_http_target(item, what, targets)
    if "timeout" in item:
        _timeout(item["timeout"], f"{what}: timeout")
    method = item.get("method", "GET")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise Refused(f"{what}: method {_show(method)} is not an HTTP method: refused")
    for key in ("id", "path", "query", "body", "client_pem"):
        value = item.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 65_536):
            raise Refused(f"{what}: {key} is not a string: refused")
        if key in {"path", "query"} and isinstance(value, str) and _BREAKS.search(value):
            raise Refused(f"{what}: {key} holds a space or line break: refused")
    if "verify" in item and not isinstance(item["verify"], bool):
        raise Refused(f"{what}: verify is not true or false: refused")
    headers = item.get("headers") or {}
    if not isinstance(headers, Mapping) or len(headers) > 64:
        raise Refused(f"{what}: headers is not an object: refused")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(str(name)) or not isinstance(value, str):
            raise Refused(f"{what}: header {_show(name)} is not a header: refused")
        if any(c in value for c in "\r\n\0") or len(value) > 8192:
            raise Refused(f"{what}: header {name} holds a line break: refused")


def _check_http_target(item: Mapping[str, Any], what: str, targets: Targets) -> None:
    """Where the request connects (`connect`), and the URL's host when it is an address."""
    url = item.get("url")
    if not isinstance(url, str) or len(url) > 8192:
        raise Refused(f"{what}: url is not a string: refused")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Refused(f"{what}: url {_show(url)} is not http(s)://HOST...: refused")
    if _IPV4.fullmatch(parts.hostname) or ":" in parts.hostname:
        # A name goes only into Host and SNI: the connection goes to `connect`, checked below.
        targets.check_address(parts.hostname, f"{what}: url host")
    connect = item.get("connect")
    if not isinstance(connect, list) or len(connect) != 2:
        raise Refused(f"{what}: connect is not [address, port]: refused")
    targets.check_address(connect[0], f"{what}: connect")
    _port(connect[1], f"{what}: connect port")


def _check_tls(request: Mapping[str, Any], targets: Targets) -> None:
    _only(request, {"op", "targets", "timeout", "versions"}, "tls request")
    items = request.get("targets")
    if not isinstance(items, list) or len(items) > MAX_TLS_TARGETS:
        raise Refused("tls request: targets is not a list: refused")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise Refused(f"tls target {index} is not an object: refused")
        _only(item, {"address", "port"}, f"tls target {index}")
        targets.check_address(item.get("address"), f"tls target {index}")
        _port(item.get("port"), f"tls target {index}: port")
    if "timeout" in request:
        _timeout(request["timeout"], "tls request: timeout")
    versions = request.get("versions", list(TLS_VERSIONS))
    if not isinstance(versions, list) or any(v not in TLS_VERSIONS for v in versions):
        raise Refused(f"tls request: versions {_show(versions)} are not TLS versions: refused")


def check_probe_request(request: object, targets: Targets) -> dict[str, Any]:
    """The helper request as the probe will send it, or `Refused`."""
    if not isinstance(request, dict):
        raise Refused("probe request is not an object: refused")
    files = named_files(request)
    if files:
        raise Refused(f"probe request names a file ({files[0]}): {FILE_REFUSED}: refused")
    op = request.get("op")
    if op == "http":
        _only(request, {"op", "requests"}, "http request")
        items = request.get("requests")
        if not isinstance(items, list) or not 0 < len(items) <= MAX_HTTP_REQUESTS:
            raise Refused(f"http request: requests is not a list of 1-{MAX_HTTP_REQUESTS}: refused")
        for index, item in enumerate(items):
            _check_http(item, index, targets)
    elif op == "tls":
        _check_tls(request, targets)
    else:
        # SNMP names the files its secrets are in, so it never comes this far.
        raise Refused(f"probe operation {_show(op)} is not one a probe runs (http, tls): refused")
    return request


# --- a whole job ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedJob:
    """A job the probe agreed to run: its kind and its checked request."""

    kind: str
    argv: tuple[str, ...] = ()
    probe: Mapping[str, Any] | None = None
    timeout: float = 0.0
    total_hosts: int = 0


def check_job(kind: object, request: object, targets: Targets) -> CheckedJob:
    """Check a claimed job's kind and request; `Refused` with the reason otherwise."""
    if not isinstance(request, dict):
        raise Refused("the job's request is not an object: refused")
    if kind in {"privileged", "noop"}:
        _only(request, (), f"{kind} job")
        return CheckedJob(str(kind))
    if kind == "nmap":
        _only(request, {"argv", "timeout", "total_hosts"}, "nmap job")
        argv = check_nmap_argv(request.get("argv"), targets)
        hosts = request.get("total_hosts", 0)
        if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 0:
            raise Refused("nmap job: total_hosts is not a count: refused")
        return CheckedJob(
            "nmap",
            argv=tuple(argv),
            timeout=_timeout(request.get("timeout"), "nmap job: timeout"),
            total_hosts=hosts,
        )
    if kind == "probe":
        _only(request, {"request", "timeout"}, "probe job")
        return CheckedJob(
            "probe",
            probe=check_probe_request(request.get("request"), targets),
            timeout=_timeout(request.get("timeout"), "probe job: timeout"),
        )
    raise Refused(f"job kind {_show(kind)} is not one a probe runs: refused")
