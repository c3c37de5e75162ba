"""Recorded network facts for the six `net.*` checks, with the status each must produce under
the checks' default parameters (same shape as tests/checks/cases.py).

The clean facts are the hospital lab as `collector.scan` measured it (collector/lab: internet,
dmz, his, office; the policy of collector/lab/zones.yaml) over the listed ports and, as
`scan.ports: top1000` does, a thousand more on which nothing answered (`SilentPorts`); each
variant changes what one fault changes. A network check yields one result per zone pair, app,
system or service: a case's status and words must appear on at least one result
(tests/checks/meta.py, `case_problem`, says exactly how).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts.network import (
    AttackExchange,
    CriticalSystem,
    GatewayAttempt,
    GatewayProbe,
    HttpExchange,
    MatrixCell,
    NetFacts,
    PolicyRule,
    PortObservation,
    SilentPorts,
    SnmpIdentity,
    TlsService,
    TlsVersionResult,
    VantageRun,
    WebAppProbe,
    ZoneFacts,
)
from checks.model import Status, Unavailable
from collector.scan.probes import ATTACKS, describe_request

ZONES = (
    ZoneFacts("internet", ("198.18.0.0/27",), False, True, False, "netns:lab-internet"),
    ZoneFacts("dmz", ("198.18.1.0/27",), False, False, False, "netns:lab-dmz"),
    ZoneFacts("his", ("198.18.2.0/27",), True, False, False, "netns:lab-his"),
    ZoneFacts("office", ("198.18.3.0/27",), False, False, True, "ssh:probe@198.18.3.5"),
)
ADDRESSES = 32
"""Addresses of each zone's /27, every one probed."""
VANTAGE = {z.name: str(z.vantage) for z in ZONES}
POLICY = (
    PolicyRule("internet", "dmz", "tcp", 80),
    PolicyRule("internet", "dmz", "tcp", 443),
    PolicyRule("office", "dmz", "tcp", 80),
    PolicyRule("office", "dmz", "tcp", 443),
    PolicyRule("dmz", "his", "tcp", 5432),
    PolicyRule("dmz", "his", "tcp", 8443),
)
PORTS = ("tcp/22", "tcp/80", "tcp/443", "tcp/5432", "tcp/8443", "udp/161")
UNLISTED_TCP = (*(n for n in range(1, 1001) if f"tcp/{n}" not in PORTS), 1433)
"""Stand-ins for the rest of nmap's top 1,000 (the database port tcp/1433 among them)."""
UNLISTED_UDP = (53, 69, 123, 500, 514, 1900)
UNPRIVILEGED = (
    "udp/53, udp/69, udp/123, udp/161, udp/500, udp/514, udp/1900: unprivileged vantage "
    "(UDP needs raw sockets)"
)
HOSTS = {
    "dmz": ("198.18.1.10", "198.18.1.11", "198.18.1.30"),
    "his": ("198.18.2.10", "198.18.2.20"),
    "office": ("198.18.3.5",),
    "internet": ("198.18.0.10",),
}
LISTENING = {
    ("198.18.1.10", 80),
    ("198.18.1.11", 80),
    ("198.18.1.30", 443),
    ("198.18.2.10", 5432),
    ("198.18.2.20", 8443),
}
ALLOWED = {(r.source, r.target, f"{r.proto}/{r.port}") for r in POLICY}


def _kind(source: str, proto: str) -> Any:
    if proto == "udp":
        return "udp"
    return "connect" if source == "office" else "syn"


def observation(  # noqa: PLR0917 — reads like the nmap line it stands for
    source: str, target: str, address: str, spec: str, state: str, reason: str, ttl: int = 63
) -> PortObservation:
    proto, port = spec.split("/")
    kind = _kind(source, proto)
    return PortObservation(
        source=source,
        target=target,
        address=address,
        proto="tcp" if proto == "tcp" else "udp",
        port=int(port),
        state=state,
        reason=reason,
        reason_ttl=0 if kind == "connect" else ttl,
        vantage=VANTAGE[source],
        scan=kind,
    )


def _answer(source: str, target: str, address: str, spec: str, open_all: bool) -> Any:
    """What a host answers when the router lets the probe through (None: it does not)."""
    proto, port = spec.split("/")
    through = open_all or (source, target, spec) in ALLOWED
    if not through:
        return None
    if proto == "udp":
        return observation(source, target, address, spec, "closed", "port-unreach")
    if (address, int(port)) in LISTENING:
        return observation(source, target, address, spec, "open", "syn-ack")
    reason = "conn-refused" if _kind(source, proto) == "connect" else "reset"
    return observation(source, target, address, spec, "closed", reason)


def matrix(opened: set[tuple[str, str]] = frozenset()) -> tuple[MatrixCell, ...]:  # type: ignore[assignment]
    """Cells of every pair over PORTS; `opened` pairs let every TCP probe through."""
    cells = []
    for source in ZONES:
        for target in ZONES:
            if source.name == target.name:
                continue
            for spec in PORTS:
                if source.name == "office" and spec.startswith("udp"):
                    continue  # an unprivileged SSH vantage cannot scan UDP
                found = []
                for address in HOSTS[target.name]:
                    open_all = (source.name, target.name) in opened and spec.startswith("tcp")
                    answer = _answer(source.name, target.name, address, spec, open_all)
                    if answer is not None:
                        found.append(answer)
                proto, port = spec.split("/")
                cells.append(
                    MatrixCell(
                        source=source.name,
                        target=target.name,
                        proto="tcp" if proto == "tcp" else "udp",
                        port=int(port),
                        vantage=VANTAGE[source.name],
                        scan=_kind(source.name, proto),
                        probed=ADDRESSES,
                        silent=ADDRESSES - len(found),
                        observations=tuple(found),
                    )
                )
    return tuple(cells)


def run(zone: str, **changes: Any) -> VantageRun:
    base = VantageRun(
        zone=zone,
        vantage=VANTAGE[zone],
        privileged=zone != "office",
        commands=(f"nmap -n -Pn --reason -oX - ... ({zone})",),
        status="ok",
        message="128 hosts in 13.9 s",
        seconds=13.9,
        targets=tuple(c for z in ZONES if z.name != zone for c in z.cidrs),
        unscanned=(UNPRIVILEGED,) if zone == "office" else (),
    )
    return replace(base, **changes)


def exchange(
    url: str,
    status: int | None,
    server: str | None,
    body: str = "",
    *,
    reason: str = "",
    error: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> HttpExchange:
    default = {200: "OK", 400: "Bad Request", 403: "Forbidden", 406: "Not Acceptable"}
    return HttpExchange(
        url=url,
        method="GET",
        status=status,
        reason=reason or default.get(status or 0, ""),
        headers=((("Server", server),) if server else ()) + headers,
        body=body,
        error=error,
        seconds=0.01,
    )


PORTAL = "http://198.18.1.10/"
BLOCK_PAGE = (
    "<!DOCTYPE html><html><head><title>Request blocked</title></head><body><h1>Request blocked"
    "</h1><p>The web application firewall rejected this request.</p></body></html>"
)
APP_PAGE = "<html><head><title>Patient portal</title></head><body>...</body></html>"


APP_404 = "<html><head><title>Not found</title></head><body>No such page</body></html>"
APP_403 = "<html><head><title>Forbidden</title></head><body>Request refused</body></html>"
APP_FILTERED = ("%3Cscript", "%27%20OR", "..%2F", "../")
"""What the application filtering by itself (lab fault app-filter) refuses."""


def attacks(
    status: int | None,
    server: str | None,
    body: str,
    *,
    let_through: frozenset[str] = frozenset(),
    twin: tuple[int, str] = (200, APP_PAGE),
    **extra: Any,
) -> tuple[AttackExchange, ...]:
    """The battery (collector.scan.probes.ATTACKS): each attack answered as given, except the
    `kind/location` pairs in `let_through` (answered like the twin), each twin as `twin`."""
    made = []
    for attack in ATTACKS:
        request = describe_request(attack.attack)
        benign_request = describe_request(attack.benign)
        benign = exchange(f"{PORTAL} {benign_request}", twin[0], "PatientPortal/2.3", twin[1])
        if f"{attack.kind}/{attack.location}" in let_through or attack.kind in let_through:
            answer = replace(benign, url=f"{PORTAL} {request}")
        else:
            answer = exchange(f"{PORTAL} {request}", status, server, body, **extra)
        made.append(AttackExchange(attack.kind, request, answer, attack.location, benign))
    return tuple(made)


def app_filter() -> tuple[AttackExchange, ...]:
    """The application refuses `<script`, `' OR` and `../` itself (403, its own Server)."""
    filtered = frozenset(
        f"{a.kind}/{a.location}" for a in ATTACKS if any(p in str(a.attack) for p in APP_FILTERED)
    )
    everything = frozenset(f"{a.kind}/{a.location}" for a in ATTACKS)
    return attacks(403, "PatientPortal/2.3", APP_403, let_through=everything - filtered)


def portal(**changes: Any) -> WebAppProbe:
    base = WebAppProbe(
        name="portal",
        url=PORTAL,
        zone="dmz",
        require_waf=True,
        vantage_zone="internet",
        vantage=VANTAGE["internet"],
        baseline=exchange(PORTAL, 200, "PatientPortal/2.3", APP_PAGE),
        attacks=attacks(403, "HospitalWAF", BLOCK_PAGE),
        not_found=exchange(
            f"{PORTAL}medsec-probe-no-such-page", 200, "PatientPortal/2.3", APP_PAGE
        ),
    )
    return replace(base, **changes)


BOOKING = WebAppProbe(
    name="booking",
    url="http://198.18.1.11/",
    zone="dmz",
    require_waf=False,
    vantage_zone=None,
    vantage=None,
    baseline=None,
)

HIS_WEB = CriticalSystem("his-web", "198.18.2.20", ("tcp/8443",), "his", "https://198.18.1.30/")
NGINX_400 = (
    "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>\r\n"
    "<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


NGINX_495 = NGINX_400.replace("No required SSL certificate was sent", "The SSL certificate error")
HIS_PAGE = "<title>Hospital information system</title>"
GATEWAY_PATHS = ("/", "/api/", "/medsec-5eed", "/medsec-5eed/../api/")


def attempts(**answers: HttpExchange | None) -> tuple[GatewayAttempt, ...]:
    """The clean lab's gateway attempts (nginx refusing each credential, his-web answering the
    site's certificate on every path), with `answers` replacing some: key `none__api` is the
    path /api/ without a certificate (`root`, `api`, `random`, `dotdot`); None drops one."""
    names = dict(zip(("root", "api", "random", "dotdot"), GATEWAY_PATHS, strict=True))
    clean = {"none": NGINX_400, "untrusted": NGINX_495, "expired": NGINX_495}
    made = []
    for credential in ("none", "untrusted", "expired", "configured"):
        for name, path in names.items():
            url = f"https://198.18.1.30{path}"
            if credential == "configured":
                answer = exchange(url, 200, "HIS-Web/5.1", HIS_PAGE)
            else:
                answer = exchange(url, 400, "nginx", clean[credential])
            answer = answers.get(f"{credential}__{name}", answer)
            if answer is not None:
                made.append(GatewayAttempt(path, credential, answer))
    return tuple(made)


def gateway(**changes: Any) -> GatewayProbe:
    base = GatewayProbe(
        system="his-web",
        gateway_url="https://198.18.1.30/",
        vantage_zone="internet",
        vantage=VANTAGE["internet"],
        handshake=True,
        tls_version="TLSv1.3",
        handshake_error=None,
        anonymous=exchange("https://198.18.1.30/", 400, "nginx", NGINX_400),
        authenticated=exchange(
            "https://198.18.1.30/", 200, "HIS-Web/5.1", "<title>Hospital information system</title>"
        ),
        attempts=attempts(),
    )
    return replace(base, **changes)


def _no_baseline(**answers: HttpExchange | None) -> tuple[GatewayAttempt, ...]:
    return tuple(a for a in attempts(**answers) if a.credential != "configured")


_API_OPEN = exchange("https://198.18.1.30/api/", 200, "HIS-Web/5.1", HIS_PAGE)
_SIGN_IN = exchange(
    "https://198.18.1.30/",
    302,
    "gw",
    headers=(("Location", "https://sso.hospital.lab/oauth2/start?rd=/"),),
    reason="Found",
)
_NOT_FOUND = exchange("https://198.18.1.30/medsec-5eed", 404, "HIS-Web/5.1", "no such page",
                      reason="Not Found")  # fmt: skip


def versions(**accepted: str) -> tuple[TlsVersionResult, ...]:
    modern = {"TLSv1.2": "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384",
              "TLSv1.3": "TLSv1.3 TLS_AES_256_GCM_SHA384"}  # fmt: skip
    refusals = {
        "SSLv3": "alert 40",
        "TLSv1": "TLS: TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSv1.1": "TLS: TLSV1_ALERT_PROTOCOL_VERSION",
    }
    found = []
    for version in ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"):
        key = version.replace(".", "_")
        if key in accepted:
            found.append(TlsVersionResult(version, "accepted", accepted[key]))
        elif version in modern:
            found.append(TlsVersionResult(version, "accepted", modern[version]))
        else:
            found.append(TlsVersionResult(version, "refused", refusals[version]))
    return tuple(found)


def tls_service(address: str, port: int, zone: str, **accepted: str) -> TlsService:
    return TlsService(address, port, zone, "internet", VANTAGE["internet"], versions(**accepted))


SONICWALL = SnmpIdentity(
    host="198.18.4.1",
    version="3",
    sys_descr="SonicWALL TZ 210 (SonicOS Enhanced 5.9.1.6-5o)",
    sys_object_id="1.3.6.1.4.1.8741.1",
    sys_name="border-fw-01",
    vantage="netns:lab-mgmt",
)
NET_SNMP = SnmpIdentity(
    host="198.18.4.1",
    version="2c",
    sys_descr="Linux gw 6.1.0-18-amd64 #1 SMP Debian 6.1.76-1 x86_64",
    sys_object_id="1.3.6.1.4.1.8072.3.2.10",
    sys_name="gw",
    vantage="netns:lab-mgmt",
)


def _ranges(numbers: tuple[int, ...]) -> str:
    spans: list[list[int]] = []
    for number in sorted(numbers):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def silent_ports(without: tuple[str, str, int] | None = None) -> tuple[SilentPorts, ...]:
    """The unlisted ports no address answered on, for every pair (but `without`: source,
    target, tcp port, which something answered on)."""
    records = []
    for source in ZONES:
        for target in ZONES:
            if source.name == target.name:
                continue
            numbers = tuple(n for n in UNLISTED_TCP if without != (source.name, target.name, n))
            found = [("tcp", numbers)] + (
                [] if source.name == "office" else [("udp", UNLISTED_UDP)]
            )
            records += [
                SilentPorts(
                    source=source.name,
                    target=target.name,
                    proto="tcp" if proto == "tcp" else "udp",
                    ports=_ranges(ports),
                    count=len(ports),
                    addresses=ADDRESSES,
                    vantage=VANTAGE[source.name],
                    scan=_kind(source.name, proto),
                )
                for proto, ports in found
            ]
    return tuple(records)


CLEAN = NetFacts(
    zones=ZONES,
    policy=POLICY,
    ports=(
        *PORTS,
        *(f"tcp/{n}" for n in UNLISTED_TCP),
        *(f"udp/{n}" for n in UNLISTED_UDP),
    ),
    runs=tuple(run(z.name) for z in ZONES),
    matrix=matrix(),
    ack=(),
    web_apps=(portal(), BOOKING),
    critical_systems=(HIS_WEB,),
    gateways=(gateway(),),
    tls=(tls_service("198.18.1.30", 443, "dmz"), tls_service("198.18.2.20", 8443, "his")),
    tls_probed=5,
    snmp=SONICWALL,
    silent_ports=silent_ports(),
    port_choice="top1000",
    started_at="2026-11-28T12:00:00Z",
    seconds=14.8,
)


def with_open(*pairs: tuple[str, str]) -> NetFacts:
    return replace(CLEAN, matrix=matrix(set(pairs)))


def with_cells(*extra: PortObservation) -> NetFacts:
    """CLEAN plus answers added to their cells (a port the router now lets through)."""
    cells = []
    for cell in matrix():
        added = tuple(
            o
            for o in extra
            if (o.source, o.target, o.proto, o.port)
            == (cell.source, cell.target, cell.proto, cell.port)
        )
        cells.append(
            replace(cell, observations=cell.observations + added, silent=cell.silent - len(added))
        )
    return replace(CLEAN, matrix=tuple(cells))


ZTNA_BYPASS = with_cells(
    observation("internet", "his", "198.18.2.20", "tcp/8443", "open", "syn-ack"),
    observation("office", "his", "198.18.2.20", "tcp/8443", "open", "syn-ack"),
)
OUTBOUND = with_cells(observation("his", "internet", "198.18.0.10", "tcp/443", "closed", "reset"))


def with_leak(leak: PortObservation) -> NetFacts:
    """CLEAN with an answer on an unlisted port: the port leaves the silent ones for a cell."""
    cell = MatrixCell(
        source=leak.source,
        target=leak.target,
        proto=leak.proto,
        port=leak.port,
        vantage=leak.vantage,
        scan=leak.scan,
        probed=ADDRESSES,
        silent=ADDRESSES - 1,
        observations=(leak,),
    )
    return replace(
        CLEAN,
        matrix=(*matrix(), cell),
        silent_ports=silent_ports((leak.source, leak.target, leak.port)),
    )


# The database's SQL Server port, open from office: a port the policy does not name.
DB_LEAK = with_leak(observation("office", "his", "198.18.2.10", "tcp/1433", "open", "syn-ack"))
LISTED_ONLY = replace(CLEAN, ports=PORTS, silent_ports=(), port_choice="listed")

# A flat network: dmz and his on one segment, nothing between them, no firewall agent.
FLAT = replace(
    with_open(("dmz", "his")),
    matrix=tuple(
        replace(c, observations=tuple(replace(o, reason_ttl=64) for o in c.observations))
        if (c.source, c.target) == ("dmz", "his")
        else c
        for c in matrix({("dmz", "his")})
    ),
    ack=tuple(
        observation("dmz", "his", address, spec, "unfiltered", "reset", ttl=64)
        for address in HOSTS["his"]
        for spec in PORTS
        if spec.startswith("tcp")
    ),
    snmp=NET_SNMP,
)
ACK_FILTERED = replace(
    with_open(("dmz", "his")),
    ack=tuple(
        replace(
            observation("dmz", "his", address, spec, "filtered", "no-response"),
            reason_ttl=0,
            scan="ack",
        )
        for address in HOSTS["his"]
        for spec in PORTS
        if spec.startswith("tcp")
    ),
    snmp=None,
)
PROHIBITED = replace(
    with_cells(
        observation("dmz", "his", "198.18.2.10", "tcp/22", "filtered", "admin-prohibited", ttl=64)
    ),
    snmp=None,
)
OFFICE_FAILED = replace(
    CLEAN,
    runs=tuple(
        run(
            z.name, status="error", message="ssh:probe@198.18.3.5: cannot connect: No route to host"
        )
        if z.name == "office"
        else run(z.name)
        for z in ZONES
    ),
    matrix=tuple(c for c in matrix() if c.source != "office"),
    silent_ports=tuple(s for s in silent_ports() if s.source != "office"),
)
UNKNOWN_AGENT = SnmpIdentity(
    host="198.18.4.1",
    version="2c",
    sys_descr="",
    sys_object_id="1.3.6.1.4.1.99999.1",
    sys_name=None,
    vantage="netns:lab-mgmt",
)
HOST_TIMEOUT = replace(
    CLEAN,
    runs=tuple(
        run(z.name, status="partial", unfinished_hosts=("198.18.2.20",))
        if z.name == "internet"
        else run(z.name)
        for z in ZONES
    ),
)


CASES: dict[str, list[tuple[str, NetFacts, Status, str]]] = {
    "net.segmentation": [
        ("clean", CLEAN, Status.PASS,
         "internet->his: no port outside the policy is open among 1,010 probed (open: none; "
         "allowed: nothing; 32,320 probes)"),
        ("clean, unprivileged vantage", CLEAN, Status.PASS,
         "office->his: no port outside the policy is open among 1,003 probed (open: none; "
         "allowed: nothing; 32,096 probes) (not scanned: udp/53, udp/69"),
        ("his-db-leak", DB_LEAK, Status.FAIL,
         "office->his: tcp/1433 open but not allowed by the policy (allowed: nothing); "
         "office -> his 198.18.2.10 tcp/1433 open (syn-ack; connect scan from "
         "ssh:probe@198.18.3.5)"),
        ("listed ports only", LISTED_ONLY, Status.PASS,
         "dmz->his: no port outside the policy is open among the 6 ports the zones file names "
         "(scan.ports: listed; no other port was probed) (open: tcp/5432, tcp/8443"),
        ("office-his-open", with_open(("office", "his")), Status.FAIL,
         "office->his: tcp/5432, tcp/8443 open but not allowed by the policy (allowed: nothing); "
         "office -> his 198.18.2.10 tcp/5432 open "
         "(syn-ack; connect scan from ssh:probe@198.18.3.5)"),
        ("ztna-bypass", ZTNA_BYPASS, Status.FAIL,
         "internet->his: tcp/8443 open but not allowed by the policy (allowed: nothing); "
         "internet -> his 198.18.2.20 tcp/8443 open (syn-ack ttl 63"),
        ("vantage down", OFFICE_FAILED, Status.ERROR, "office->dmz: could not measure completely: "
         "the vantage in office failed: ssh:probe@198.18.3.5: cannot connect"),
        ("host timeout", HOST_TIMEOUT, Status.ERROR,
         "internet->his: could not measure completely: 1 hosts of his were not finished"),
        ("no vantage", replace(CLEAN, zones=(*ZONES[:3], replace(ZONES[3], vantage=None))),
         Status.NOT_APPLICABLE, "office->internet: zone office has no vantage"),
    ],
    "net.internet_isolation": [
        ("clean", CLEAN, Status.PASS, "his and internet do not reach each other: no answer to "
         "32,320 probes in (1,010 ports) and 32,320 probes out (1,010 ports)"),
        ("inbound", ZTNA_BYPASS, Status.FAIL,
         "his is reachable from internet: internet -> his 198.18.2.20 tcp/8443 open"),
        ("outbound", OUTBOUND, Status.FAIL,
         "his has a path out to internet: his -> internet 198.18.0.10 tcp/443 closed (reset"),
        ("internet vantage down", replace(
            CLEAN,
            runs=tuple(run(z.name, status="timeout", message="nmap stopped after 600 s")
                       if z.name == "internet" else run(z.name) for z in ZONES),
        ), Status.ERROR, "inbound: the vantage in internet ran out of time"),
        ("both ways", with_cells(
            observation("internet", "his", "198.18.2.20", "tcp/8443", "open", "syn-ack"),
            observation("his", "internet", "198.18.0.10", "tcp/443", "closed", "reset"),
        ), Status.FAIL, "his is reachable from and has a path out to internet: internet -> his "
         "198.18.2.20 tcp/8443 open (syn-ack ttl 63; syn scan from netns:lab-internet) (+1 more)"),
        ("no critical zone", replace(CLEAN, zones=tuple(replace(z, critical=False) for z in ZONES)),
         Status.NOT_APPLICABLE, "no zone is marked critical"),
        ("no internet zone", replace(CLEAN, zones=tuple(replace(z, internet=False) for z in ZONES)),
         Status.NOT_APPLICABLE, "no zone is marked internet"),
    ],
    "net.border_firewall": [
        ("clean", CLEAN, Status.PASS,
         "dmz->his: filtered: 6 probes to live hosts dropped (dmz->his 198.18.2.10 tcp/22: "
         "no answer, while 198.18.2.10 answers other ports from dmz)"),
        ("all answered, stateful ACK filter", ACK_FILTERED, Status.PASS,
         "dmz->his: filtered: unsolicited ACKs dropped, a stateful filter"),
        ("icmp admin-prohibited", PROHIBITED, Status.PASS, "ICMP admin-prohibited"),
        ("flat segment", FLAT, Status.FAIL,
         "dmz->his: nothing filters: every probe to 2 live hosts answered"),
        ("routed, not a firewall", replace(with_open(("office", "his")), snmp=NET_SNMP),
         Status.FAIL, "and the boundary device is not a known security device (Linux gw"),
        ("routed, agent of an unknown vendor", replace(with_open(("office", "his")),
                                                       snmp=UNKNOWN_AGENT),
         Status.FAIL, "not a known security device (enterprise 99999 (enterprise 99999, other, "
         "confidence 0.10; sysObjectID 1.3.6.1.4.1.99999.1))"),
        ("routed, SNMP agent silent", replace(with_open(("office", "his")),
                                              snmp=Unavailable("no answer from 198.18.4.1")),
         Status.FAIL, "not a known security device (SNMP: no answer from 198.18.4.1)"),
        ("vantage down, nothing seen", replace(
            OFFICE_FAILED, matrix=tuple(c for c in matrix() if c.source != "office")),
         Status.ERROR, "office->dmz: could not measure: the vantage in office failed"),
    ],
    "net.waf": [
        ("blocked, product unnamed", CLEAN, Status.PASS,
         "all 6 attack classes (sqli, xss, traversal, cmdi, scanner, protocol) blocked in 15 "
         "requests beside their benign twins (403 Forbidden (Server: HospitalWAF)), told from "
         "the application's own errors by Server HospitalWAF where the twin got "
         "PatientPortal/2.3, a block page no benign request got; blocked by a WAF (product not "
         "identified; blocks answered by HospitalWAF)"),
        ("ModSecurity named", replace(CLEAN, web_apps=(portal(attacks=attacks(
            406, "Apache", "<html>This error was generated by Mod_Security</html>")),)),
         Status.PASS, "blocked by ModSecurity"),
        ("SafeLine named", replace(CLEAN, web_apps=(portal(attacks=attacks(
            403, "SafeLine", "<html><!-- event_id: 4f1c2e --></html>")),)),
         Status.PASS, "by Chaitin SafeLine"),
        ("connection cut", replace(CLEAN, web_apps=(portal(attacks=attacks(
            None, None, "", error="connection reset")),)),
         Status.PASS, "(no answer (connection reset)), told from the application's own errors "
         "by a connection cut"),
        ("waf-detection-only", replace(CLEAN, web_apps=(portal(attacks=attacks(
            200, "PatientPortal/2.3", APP_PAGE)),)),
         Status.FAIL, "portal: sqli, xss, traversal, cmdi, scanner, protocol attack requests "
         "were answered like their benign twins, not blocked"),
        ("one class let through", replace(CLEAN, web_apps=(portal(attacks=attacks(
            403, "HospitalWAF", BLOCK_PAGE, let_through=frozenset({"cmdi/body"}))),)),
         Status.FAIL, "portal: cmdi attack requests were answered like their benign twins, not "
         "blocked: cmdi (body); e.g. POST body host=127.0.0.1%3Bcat+%2Fetc%2Fpasswd -> 200 OK "
         "(Server: PatientPortal/2.3) (benign twin: 200 OK (Server: PatientPortal/2.3)); classes "
         "blocked throughout: sqli, xss, traversal, scanner, protocol"),
        ("app-filter: the app refuses a few patterns itself",
         replace(CLEAN, web_apps=(portal(attacks=app_filter()),)),
         Status.FAIL, "portal: sqli, xss, traversal, cmdi, scanner, protocol attack requests were "
         "answered like their benign twins"),
        ("404 to any query string", replace(CLEAN, web_apps=(portal(attacks=tuple(
            replace(a, exchange=replace(a.exchange, status=404, reason="Not Found", body=APP_404),
                    benign=replace(a.benign, status=404, reason="Not Found", body=APP_404))
            if a.location == "query" and a.benign else a
            for a in attacks(200, "PatientPortal/2.3", APP_PAGE))),)),
         Status.FAIL, "portal: sqli, xss, traversal, cmdi, scanner, protocol attack requests were "
         "answered like their benign twins, not blocked: sqli (body, header), xss (body, path)"),
        ("the app's own error page", replace(CLEAN, web_apps=(portal(
            attacks=attacks(403, "PatientPortal/2.3", APP_403),
            not_found=exchange(f"{PORTAL}medsec-probe-no-such-page", 404, "PatientPortal/2.3",
                               APP_403)),)),
         Status.ERROR, "portal: the evidence of a WAF is too weak: refused, but nothing tells the "
         "refusal from the application's own errors: sqli (query, body, header)"),
        ("benign twins refused too", replace(CLEAN, web_apps=(portal(attacks=attacks(
            404, "PatientPortal/2.3", APP_404, twin=(404, APP_404))),)),
         Status.ERROR, "portal: the evidence of a WAF is too weak: cannot be told: sqli, xss, "
         "traversal, cmdi, scanner, protocol (e.g. sqli/query: 404, as its benign twin)"),
        ("a class not sent", replace(CLEAN, web_apps=(portal(attacks=tuple(
            a for a in attacks(403, "HospitalWAF", BLOCK_PAGE) if a.kind != "protocol")),)),
         Status.ERROR, "portal: the evidence of a WAF is too weak: not sent: protocol"),
        ("baseline refused", replace(CLEAN, web_apps=(portal(baseline=exchange(
            PORTAL, 403, "HospitalWAF", BLOCK_PAGE)),)),
         Status.ERROR, "the ordinary request to http://198.18.1.10/ did not succeed"),
        ("no waf required", replace(CLEAN, web_apps=(BOOKING,)), Status.NOT_APPLICABLE,
         "booking: require_waf is false"),
        ("no web application", replace(CLEAN, web_apps=()), Status.NOT_APPLICABLE,
         "the zones file lists no web application"),
        ("not probed", replace(CLEAN, web_apps=(portal(baseline=None, attacks=(),
                                                       error="connection refused"),)),
         Status.ERROR, "portal: could not probe http://198.18.1.10/: connection refused"),
        ("no attack sent", replace(CLEAN, web_apps=(portal(attacks=()),)), Status.ERROR,
         "portal: no attack request was sent"),
    ],
    "net.ztna_coverage": [
        ("clean", CLEAN, Status.PASS, "his-web: dark from every user and internet zone"),
        ("ztna-bypass", ZTNA_BYPASS, Status.FAIL,
         "his-web: reachable directly, bypassing the ZTNA gateway: internet -> his 198.18.2.20 "
         "tcp/8443 open"),
        ("gateway lets anyone in", replace(CLEAN, gateways=(gateway(anonymous=exchange(
            "https://198.18.1.30/", 200, "HIS-Web/5.1")),)),
         Status.FAIL, "lets a client without credentials through (200 OK"),
        ("not published", replace(CLEAN, critical_systems=(replace(HIS_WEB, ztna_gateway=None),),
                                  gateways=()),
         Status.FAIL, "his-web: not published through a ZTNA gateway"),
        ("office unmeasured", OFFICE_FAILED, Status.ERROR,
         "his-web: could not measure every user and internet zone: office"),
        ("handshake refused", replace(CLEAN, gateways=(gateway(
            handshake=False, handshake_error="TLS: CERTIFICATE_REQUIRED", anonymous=None),)),
         Status.PASS, "refuses a client without credentials (TLS handshake refused "
         "(TLS: CERTIFICATE_REQUIRED))"),
        ("no client certificate configured", replace(CLEAN, gateways=(gateway(
            authenticated=None),)),
         Status.PASS, "published not verified (no client certificate in the zones file)"),
        ("client certificate refused", replace(CLEAN, gateways=(gateway(
            authenticated=exchange("https://198.18.1.30/", 400, "nginx")),)),
         Status.FAIL, "his-web: the gateway refuses the configured client certificate too "
         "(400 Bad Request (Server: nginx))"),
        ("gateway out of reach", replace(CLEAN, gateways=(gateway(
            vantage_zone=None, vantage=None, handshake=False, anonymous=None, authenticated=None,
            error="no user or internet zone has a vantage that reaches it"),)),
         Status.FAIL, "his-web: the gateway https://198.18.1.30/ answers no user or internet zone"),
        ("gateway probe failed", replace(CLEAN, gateways=(gateway(
            handshake=False, anonymous=None, authenticated=None,
            error="internet: vantage lost"),)),
         Status.ERROR, "his-web: gateway probe failed: internet: vantage lost"),
        ("gateway not probed", replace(CLEAN, gateways=()), Status.ERROR,
         "his-web: the gateway https://198.18.1.30/ was not probed"),
        ("no critical system", replace(CLEAN, critical_systems=(), gateways=()),
         Status.NOT_APPLICABLE, "the zones file lists no critical system"),
        # Every credential a client without access may hold, on every path (ztna-any-cert,
        # ztna-open-path and their kin on real gateways).
        ("clean attempts", CLEAN, Status.PASS,
         "and all 12 attempts (none, untrusted, expired) on /, /api/, /medsec-5eed, "
         "/medsec-5eed/../api/"),
        ("any certificate passes", replace(CLEAN, gateways=(gateway(attempts=attempts(
            untrusted__root=exchange("https://198.18.1.30/", 200, "HIS-Web/5.1", HIS_PAGE))),)),
         Status.FAIL, "his-web: the gateway https://198.18.1.30/ lets clients without valid "
         "credentials through: / with a certificate from an untrusted CA: 200 OK (Server: "
         "HIS-Web/5.1), the very answer the site's client certificate gets"),
        ("expired certificate passes", replace(CLEAN, gateways=(gateway(attempts=attempts(
            expired__api=_API_OPEN)),)),
         Status.FAIL, "/api/ with an expired certificate: 200 OK"),
        ("api open", replace(CLEAN, gateways=(gateway(attempts=attempts(
            none__api=_API_OPEN, none__dotdot=_API_OPEN, untrusted__api=_API_OPEN)),)),
         Status.FAIL, "through: /api/ without a certificate: 200 OK (Server: HIS-Web/5.1), the "
         "very answer the site's client certificate gets; /medsec-5eed/../api/ without a "
         "certificate"),
        ("api open, no certificate to compare", replace(CLEAN, gateways=(gateway(
            authenticated=None, attempts=_no_baseline(none__api=_API_OPEN)),)),
         Status.FAIL, "through: /api/ without a certificate: 200 OK (Server: HIS-Web/5.1)"),
        ("random path reaches the backend", replace(CLEAN, gateways=(gateway(attempts=attempts(
            none__random=_NOT_FOUND, configured__random=_NOT_FOUND)),)),
         Status.FAIL, "/medsec-5eed without a certificate: 404 Not Found (Server: HIS-Web/5.1), "
         "the very answer the site's client certificate gets"),
        ("gateway hides unknown paths", replace(CLEAN, gateways=(gateway(attempts=attempts(
            none__random=replace(_NOT_FOUND, headers=(("Server", "gw"),), body=""))),)),
         Status.PASS, "his-web: dark from every user and internet zone"),
        ("404 and nothing to compare", replace(CLEAN, gateways=(gateway(
            authenticated=None, attempts=_no_baseline(none__random=_NOT_FOUND)),)),
         Status.ERROR, "his-web: could not tell whether the gateway https://198.18.1.30/ refused "
         "/medsec-5eed without a certificate: 404 Not Found (Server: HIS-Web/5.1), neither a "
         "refusal nor comparable"),
        ("an attempt timed out", replace(CLEAN, gateways=(gateway(attempts=attempts(
            expired__dotdot=exchange("https://198.18.1.30/", None, None, error="timed out"))),)),
         Status.ERROR, "could not tell whether the gateway https://198.18.1.30/ refused "
         "/medsec-5eed/../api/ with an expired certificate: no answer (timed out)"),
        ("refused in TLS", replace(CLEAN, gateways=(gateway(attempts=attempts(
            untrusted__root=exchange("https://198.18.1.30/", None, None,
                                     error="TLS: TLSV13_ALERT_CERTIFICATE_REQUIRED"))),)),
         Status.PASS, "and all 12 attempts"),
        ("sent to sign in", replace(CLEAN, gateways=(gateway(anonymous=_SIGN_IN, attempts=attempts(
            none__root=_SIGN_IN, none__api=_SIGN_IN, none__random=_SIGN_IN,
            none__dotdot=_SIGN_IN)),)),
         Status.PASS, "refuses a client without credentials (302 Found (Server: gw), sent to "
         "sign in at https://sso.hospital.lab/oauth2/start?rd=/)"),
        ("probed on the published path only", replace(CLEAN, gateways=(gateway(attempts=()),)),
         Status.ERROR, "his-web: the gateway https://198.18.1.30/ was probed only without a "
         "certificate on its published path"),
    ],
    "net.tls_floor": [
        ("clean", CLEAN, Status.PASS, "198.18.1.30:443 (dmz) refuses SSLv3, TLSv1, TLSv1.1"),
        ("tls10", replace(CLEAN, tls=(tls_service("198.18.1.30", 443, "dmz",
                                                  TLSv1="TLSv1 ECDHE-ECDSA-AES256-SHA"),)),
         Status.FAIL, "198.18.1.30:443 (dmz) accepts TLSv1 (TLSv1 ECDHE-ECDSA-AES256-SHA)"),
        ("sslv3", replace(CLEAN, tls=(tls_service("198.18.2.20", 8443, "his",
                                                  SSLv3="ServerHello 3.0"),)),
         Status.FAIL, "accepts SSLv3"),
        ("untested", replace(CLEAN, tls=(replace(
            tls_service("198.18.1.30", 443, "dmz"),
            versions=tuple(TlsVersionResult(v.version, "untested", "this client cannot offer it")
                           if v.version == "TLSv1.1" else v
                           for v in versions())),)),
         Status.ERROR, "could not test TLSv1.1"),
        ("version not offered", replace(CLEAN, tls=(replace(
            tls_service("198.18.1.30", 443, "dmz"),
            versions=tuple(v for v in versions() if v.version != "SSLv3")),)),
         Status.ERROR, "198.18.1.30:443: could not test SSLv3: not offered"),
        ("camellia only", replace(CLEAN, tls=(replace(
            tls_service("198.18.1.11", 443, "dmz"),
            versions=(
                TlsVersionResult("SSLv3", "refused", "alert handshake_failure"),
                TlsVersionResult("TLSv1", "accepted", "TLSv1 DHE-RSA-CAMELLIA256-SHA"),
                TlsVersionResult("TLSv1.1", "accepted", "TLSv1.1 DHE-RSA-CAMELLIA256-SHA"),
                TlsVersionResult("TLSv1.2", "refused", "TLS: UNSUPPORTED_PROTOCOL"),
                TlsVersionResult("TLSv1.3", "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION"),
            )),)),
         Status.FAIL, "198.18.1.11:443 (dmz) accepts TLSv1 (TLSv1 DHE-RSA-CAMELLIA256-SHA), "
         "TLSv1.1 (TLSv1.1 DHE-RSA-CAMELLIA256-SHA)"),
        ("no cipher in common", replace(CLEAN, tls=(replace(
            tls_service("198.18.1.11", 443, "dmz"),
            versions=(
                TlsVersionResult("SSLv3", "refused", "alert handshake_failure"),
                TlsVersionResult("TLSv1", "untested", "no cipher in common (TLS: "
                                 "SSLV3_ALERT_HANDSHAKE_FAILURE with the 158 ciphers of this "
                                 "OpenSSL; alert handshake_failure with every suite code)"),
                TlsVersionResult("TLSv1.1", "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION"),
                TlsVersionResult("TLSv1.2", "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION"),
                TlsVersionResult("TLSv1.3", "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION"),
            )),)),
         Status.ERROR, "198.18.1.11:443: could not test TLSv1: no cipher in common"),
        ("only modern, lower ones refused", replace(CLEAN, tls=(replace(
            tls_service("198.18.1.11", 443, "dmz"),
            versions=(
                *(TlsVersionResult(v, "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION")
                  for v in ("SSLv3", "TLSv1", "TLSv1.1")),
                TlsVersionResult("TLSv1.2", "untested", "no cipher in common"),
                TlsVersionResult("TLSv1.3", "refused", "TLS: TLSV1_ALERT_PROTOCOL_VERSION"),
            )),)),
         Status.PASS, "198.18.1.11:443 (dmz) refuses SSLv3, TLSv1, TLSv1.1 "
         "(accepts no version it was offered)"),
        ("no tls", replace(CLEAN, tls=(), tls_probed=3), Status.NOT_APPLICABLE,
         "no TLS service found (3 open TCP endpoints"),
        ("probes failed", replace(CLEAN, tls=Unavailable("TLS probes failed: internet: no answer")),
         Status.ERROR, "tls unavailable: TLS probes failed"),
    ],
}  # fmt: skip
