"""Phase 2 of a scan: probes chosen from what the nmap phase saw, each sent by the probe helper
(`probe_cli`) from inside a vantage — HTTP requests to the web applications (an ordinary one, a
battery of attack requests each beside a benign twin, and a page that does not exist) from a
zone the policy lets reach them, the ZTNA gateways (no certificate, a throwaway untrusted one,
an expired one, and the site's own, on several paths: `gateway_plan`) from a user or internet
zone, every TLS version offered
to every open TCP port from a vantage that saw it open, and the firewall's SNMP identity.

The helper runs as a subprocess in the vantage's namespace, or over SSH on the vantage host, so
HTTP is spoken with the standard library there (httpx would have to be installed on every SSH
vantage); what comes back is turned into the typed facts here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from checks.facts.network import (
    AttackExchange,
    GatewayProbe,
    HttpExchange,
    MatrixCell,
    SnmpIdentity,
    TlsService,
    TlsVersionResult,
    WebAppProbe,
)
from checks.model import Unavailable
from collector.scan.gateway_plan import gateway_attempts, gateway_requests, probe_paths
from collector.scan.probe_vantage import ProbeVantage
from collector.scan.vantage import SshVantage, Vantage, VantageError
from collector.scan.zones import (
    CriticalSystemConfig,
    PortSpec,
    Scope,
    ScopeError,
    WebAppConfig,
    ZoneConfig,
    Zones,
)

TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


@dataclass(frozen=True)
class Attack:
    """One request of the WAF battery beside its benign twin: the same method, location and
    shape, with a harmless value where the attack string goes."""

    kind: str
    """sqli, xss, traversal, cmdi, scanner, protocol."""
    location: str
    """query, path, body or header."""
    attack: Mapping[str, Any]
    """What the request changes (query, path, body, headers, method), attack string included."""
    benign: Mapping[str, Any]


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _pair(kind: str, location: str, attack: str, benign: str, **extra: Any) -> Attack:
    """An attack and its twin whose value at `location` is the given string."""

    def request(value: str) -> dict[str, Any]:
        if location == "query":
            return {"query": value, **extra}
        if location == "path":
            return {"path": value, **extra}
        if location == "body":
            return {"method": "POST", "body": value, "headers": _FORM, **extra}
        name, _, text = value.partition(": ")
        return {"headers": {name: text}, **extra}

    return Attack(kind, location, request(attack), request(benign))


ATTACKS: tuple[Attack, ...] = (
    # The classes a WAF is bought for, each where OWASP CRS at paranoia level 1 looks for it
    # (SQL injection and command injection are not searched for in the path there). The
    # strings are split so an application filtering a few patterns itself (`' OR`, `<script`,
    # `../`) does not pass for a WAF: `UNION SELECT`, `<img onerror>`, `;cat` get through it.
    _pair("sqli", "query", "id=1%27%20OR%20%271%27%3D%271", "id=1"),
    _pair("sqli", "body", "id=1+UNION+SELECT+password+FROM+users--", "id=1"),
    _pair("sqli", "header", "Cookie: session=1 UNION SELECT password FROM users--",
          "Cookie: session=1"),
    _pair("xss", "query", "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "q=hello"),
    _pair("xss", "body", "comment=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E", "comment=hello"),
    _pair("xss", "path", "/search/%3Cscript%3Ealert(1)", "/search/hello"),
    _pair("traversal", "query", "file=..%2F..%2F..%2F..%2Fetc%2Fpasswd", "file=report.pdf"),
    _pair("traversal", "path", "/files/..%5c..%5c..%5c..%5cetc%5cpasswd", "/files/report.pdf"),
    _pair("traversal", "header", "Cookie: file=../../../../etc/passwd", "Cookie: file=report.pdf"),
    _pair("cmdi", "query", "host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd", "host=127.0.0.1"),
    _pair("cmdi", "body", "host=127.0.0.1%3Bcat+%2Fetc%2Fpasswd", "host=127.0.0.1"),
    _pair("cmdi", "header", "Cookie: host=127.0.0.1;cat /etc/passwd", "Cookie: host=127.0.0.1"),
    _pair("scanner", "header", "User-Agent: Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) "
          "(Test:000001)", f"User-Agent: {_BROWSER}"),
    _pair("protocol", "query", "name=ab%00cd", "name=abcd"),
    # A GET carrying a body (CRS 920170); its twin POSTs the same body.
    Attack("protocol", "body", {"method": "GET", "body": "id=1", "headers": _FORM},
           {"method": "POST", "body": "id=1", "headers": _FORM}),
)  # fmt: skip
"""The WAF battery: every attack class in the locations a WAF inspects, each beside a twin."""
NOT_FOUND_PATH = "/medsec-probe-no-such-page"
"""Asked for to see the application's own error page, which a block must differ from."""


T = TypeVar("T")


async def run_all(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently, results in order. Unlike `gather`, a cancellation waits until every
    one has finished its own cleanup (stopping its nmap), so nothing outlives the scan."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(c) for c in coroutines]
    return [t.result() for t in tasks]


class Prober:
    """The probes of one scan, over the matrix cells phase 1 produced."""

    def __init__(
        self,
        zones: Zones,
        vantages: Mapping[str, Vantage],
        scope: Scope,
        cells: Sequence[MatrixCell],
    ) -> None:
        self.zones = zones
        self.vantages = vantages
        self.scope = scope
        self.cells = cells

    def _is_ssh(self, zone: str) -> bool:
        """Whether the zone's vantage runs on another machine (over SSH, or a probe dialling
        out): the site's client certificate stays on this one, and local vantages go first."""
        return isinstance(self.vantages.get(zone), (SshVantage, ProbeVantage))

    def _seen_open(self, address: str, port: int) -> list[str]:
        """Zones whose vantage found address:port open."""
        return [
            c.source
            for c in self.cells
            if c.proto == "tcp" and c.port == port
            for o in c.observations
            if o.address == address and o.state == "open"
        ]

    def _pick(
        self,
        candidates: Iterable[str],
        order: Callable[[ZoneConfig], int],
    ) -> str | None:
        usable = [z for z in dict.fromkeys(candidates) if z in self.vantages]
        if not usable:
            return None
        return min(usable, key=lambda z: (order(self.zones.zone(z)), self._is_ssh(z), z))

    def _user_first(self, zone: ZoneConfig) -> int:
        if zone.internet:
            return 0
        return 1 if self.zones.is_user_zone(zone) else 2

    async def _probe(self, zone: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        return await self.vantages[zone].probe(request, timeout=timeout)

    def _probe_timeout(self, requests: int = 1) -> float:
        return self.zones.scan.probe_timeout_seconds * (2 + requests) + 10

    async def web_apps(self) -> tuple[WebAppProbe, ...]:
        return tuple(await run_all(self._web_app(app) for app in self.zones.web_apps))

    async def _web_app(self, app: WebAppConfig) -> WebAppProbe:
        def declared(**extra: Any) -> WebAppProbe:
            base: dict[str, Any] = {
                "name": app.name,
                "url": app.url,
                "zone": app.zone,
                "require_waf": app.require_waf,
                "vantage_zone": None,
                "vantage": None,
                "baseline": None,
            }
            return WebAppProbe(**{**base, **extra})

        if not app.require_waf:
            return declared()
        address, port = app.connect_address, app.connect_port
        allowed = [
            rule.source
            for rule in self.zones.policy.allow
            if rule.target == app.zone and PortSpec("tcp", port) in rule.port_specs
        ]
        seen = self._seen_open(address, port)
        zone = self._pick([z for z in allowed if z in seen] or seen or allowed, self._user_first)
        if zone is None and app.zone in self.vantages:
            zone = app.zone
        if zone is None:
            return declared(error=f"no vantage reaches {address}:{port} (none saw it open)")
        try:
            self.scope.check(address, f"web app {app.name}")
        except ScopeError as exc:
            return declared(error=str(exc))
        timeout = self.zones.scan.probe_timeout_seconds
        requests: list[dict[str, Any]] = [
            {"id": "baseline", "url": app.url},
            {"id": "not-found", "url": app.url, "path": _under(app.url, NOT_FOUND_PATH)},
        ]
        for index, attack in enumerate(ATTACKS):
            for prefix, request in (("a", attack.attack), ("b", attack.benign)):
                sent = {"id": f"{prefix}{index}", "url": app.url, **request}
                if "path" in sent:
                    sent["path"] = _under(app.url, sent["path"])
                requests.append(sent)
        sent_by_id = {r["id"]: r for r in requests}
        for request in requests:
            request.update(connect=[address, port], timeout=timeout)
        try:
            # The requests run 16 at a time in the helper: the battery costs a few round trips.
            answer = await self._probe(
                zone, {"op": "http", "requests": requests}, self._probe_timeout(len(requests) // 16)
            )
        except VantageError as exc:
            return declared(vantage_zone=zone, vantage=self.vantages[zone].description,
                            error=str(exc))  # fmt: skip
        exchanges = {e.get("id"): _exchange(e) for e in answer.get("exchanges", [])}
        baseline = exchanges.get("baseline")
        return declared(
            vantage_zone=zone,
            vantage=self.vantages[zone].description,
            baseline=baseline,
            not_found=exchanges.get("not-found"),
            attacks=tuple(
                AttackExchange(
                    attack.kind,
                    describe_request(sent_by_id[f"a{index}"]),
                    exchanges[f"a{index}"],
                    location=attack.location,
                    benign=exchanges.get(f"b{index}"),
                )
                for index, attack in enumerate(ATTACKS)
                if f"a{index}" in exchanges
            ),
            error=answer.get("error") or (None if baseline else "the probe gave no answer"),
        )

    async def gateways(self) -> tuple[GatewayProbe, ...]:
        systems = [s for s in self.zones.critical_systems if s.ztna_gateway is not None]
        return tuple(await run_all(self._gateway(s) for s in systems))

    async def _gateway(self, system: CriticalSystemConfig) -> GatewayProbe:
        url = str(system.ztna_gateway)
        connect = system.gateway_connect
        assert connect is not None  # noqa: S101 — only systems with a gateway come here
        address, port = connect

        def made(**extra: Any) -> GatewayProbe:
            base: dict[str, Any] = {
                "system": system.name,
                "gateway_url": url,
                "vantage_zone": None,
                "vantage": None,
                "handshake": False,
                "tls_version": None,
                "handshake_error": None,
                "anonymous": None,
            }
            return GatewayProbe(**{**base, **extra})

        seen = self._seen_open(address, port)
        outside = [z.name for z in self.zones.zones if z.internet or self.zones.is_user_zone(z)]
        with_cert = system.client_cert_file is not None
        # The client certificate stays on this machine: prefer a vantage here when it is used.
        candidates = [z for z in seen if z in outside] or seen
        if with_cert and any(not self._is_ssh(z) for z in candidates if z in self.vantages):
            candidates = [z for z in candidates if not self._is_ssh(z)]
        zone = self._pick(
            candidates,
            lambda z: 0 if self.zones.is_user_zone(z) else 1 if z.internet else 2,
        )
        if zone is None:
            return made(error=f"no vantage reaches the gateway {address}:{port}")
        try:
            self.scope.check(address, f"gateway of {system.name}")
        except ScopeError as exc:
            return made(error=str(exc))
        # Every refused credential on every path, and the site's certificate beside them when
        # it can be used from here (it never leaves this machine).
        local_cert = with_cert and not self._is_ssh(zone)
        paths = probe_paths(url)
        requests = gateway_requests(
            url,
            (address, port),
            timeout=self.zones.scan.probe_timeout_seconds,
            cert_file=system.client_cert_file if local_cert else None,
            key_file=system.client_key_file if local_cert else None,
            paths=paths,
        )
        description = self.vantages[zone].description
        try:
            answer = await self._probe(
                zone, {"op": "http", "requests": requests}, self._probe_timeout(len(requests))
            )
        except VantageError as exc:
            return made(vantage_zone=zone, vantage=description, error=str(exc))
        raw = {e.get("id"): e for e in answer.get("exchanges", [])}
        anonymous = raw.get("anonymous", {})
        return made(
            vantage_zone=zone,
            vantage=description,
            handshake=bool(anonymous.get("handshake")),
            tls_version=anonymous.get("tls_version"),
            handshake_error=anonymous.get("handshake_error"),
            anonymous=_exchange(anonymous) if anonymous else None,
            authenticated=_exchange(raw["authenticated"]) if "authenticated" in raw else None,
            error=answer.get("error"),
            attempts=gateway_attempts(raw, paths, _exchange),
        )

    async def tls(self) -> tuple[tuple[TlsService, ...] | Unavailable, int]:
        endpoints: dict[tuple[str, int], list[str]] = {}
        for cell in self.cells:
            if cell.proto != "tcp":
                continue
            for observation in cell.observations:
                if observation.state == "open":
                    self.scope.check(observation.address, "TLS probe")
                    endpoints.setdefault((observation.address, cell.port), []).append(cell.source)
        by_zone: dict[str, list[tuple[str, int]]] = {}
        for endpoint, sources in sorted(endpoints.items()):
            zone = self._pick(sources, lambda _: 0)
            if zone is not None:
                by_zone.setdefault(zone, []).append(endpoint)
        timeout = self.zones.scan.probe_timeout_seconds
        zones = list(by_zone)

        async def ask(zone: str) -> dict[str, Any] | VantageError:
            try:
                return await self._probe(
                    zone,
                    {
                        "op": "tls",
                        "targets": [{"address": a, "port": p} for a, p in by_zone[zone]],
                        "timeout": timeout,
                        "versions": list(TLS_VERSIONS),
                    },
                    # The helper asks each target once whether it speaks TLS, then offers the
                    # ones that do each version (two timeouts at most), 32 handshakes at a time.
                    self._probe_timeout((1 + 2 * len(TLS_VERSIONS)) * -(-len(by_zone[zone]) // 32)),
                )
            except VantageError as exc:
                return exc

        answers = await run_all(ask(zone) for zone in zones)
        services: list[TlsService] = []
        problems = []
        for zone, answer in zip(zones, answers, strict=True):
            if isinstance(answer, VantageError):
                problems.append(f"{zone}: {answer}")
                continue
            for entry in answer.get("services", []):
                raw = entry.get("versions", [])
                versions = tuple(
                    TlsVersionResult(v["version"], v["outcome"], v.get("detail", "")) for v in raw
                )
                # A TLS service: it accepted a version, or answered in TLS to a handshake that
                # failed for a reason other than the version (no cipher in common), which the
                # check must report as undecided rather than drop.
                if not any(
                    v["outcome"] == "accepted"
                    or (v["outcome"] == "untested" and v.get("tls_answer"))
                    for v in raw
                ):
                    continue
                target_zone = self.zones.zone_of(entry["address"])
                services.append(
                    TlsService(
                        address=entry["address"],
                        port=int(entry["port"]),
                        zone=target_zone.name if target_zone else "?",
                        vantage_zone=zone,
                        vantage=self.vantages[zone].description,
                        versions=versions,
                    )
                )
        if problems and not services:
            return Unavailable("TLS probes failed: " + "; ".join(problems)), len(endpoints)
        return tuple(services), len(endpoints)

    async def snmp(self) -> SnmpIdentity | Unavailable | None:
        config = self.zones.snmp
        zone = self.zones.snmp_zone()
        if config is None or zone is None:
            return None
        request = {
            "op": "snmp",
            "host": config.host,
            "port": config.port,
            "version": config.version,
            "community_file": config.community_file,
            "user": config.user,
            "auth_key_file": config.auth_key_file,
            "priv_key_file": config.priv_key_file,
            "auth_protocol": config.auth_protocol,
            "priv_protocol": config.priv_protocol,
            "timeout": config.timeout_seconds,
            "retries": config.retries,
        }
        where = f"SNMP v{config.version} {config.host}"
        try:
            self.scope.check(config.host, "SNMP agent")
            if zone.name not in self.vantages:
                raise VantageError(f"zone {zone.name} has no usable vantage")
            answer = await self._probe(
                zone.name, request, config.timeout_seconds * (config.retries + 1) + 15
            )
        except (ScopeError, VantageError) as exc:
            return Unavailable(f"{where}: {exc}")
        problem = answer.get("error") or (None if answer.get("sys_object_id") else "no sysObjectID")
        if problem:
            return Unavailable(f"{where}: {problem}")
        return SnmpIdentity(
            host=config.host,
            version=config.version,
            sys_descr=answer.get("sys_descr") or "",
            sys_object_id=str(answer["sys_object_id"]),
            sys_name=answer.get("sys_name"),
            vantage=self.vantages[zone.name].description,
        )


def _exchange(raw: Mapping[str, Any]) -> HttpExchange:
    return HttpExchange(
        url=str(raw.get("url", "")),
        method=str(raw.get("method", "GET")),
        status=raw.get("status"),
        reason=str(raw.get("reason") or ""),
        headers=tuple((str(k), str(v)) for k, v in raw.get("headers") or []),
        body=str(raw.get("body") or ""),
        error=raw.get("error") or raw.get("handshake_error"),
        seconds=float(raw.get("seconds") or 0.0),
    )


def _under(url: str, path: str) -> str:
    """`path` under the application's own path: an app published at /portal/ is probed there."""
    return urlsplit(url).path.rstrip("/") + path


def describe_request(request: Mapping[str, Any]) -> str:
    """The attack as a person reads it: method, where the string went, and the string."""
    parts = [str(request.get("method", "GET"))]
    if "path" in request:
        parts.append(str(request["path"]))
    if "query" in request:
        parts.append("?" + str(request["query"]))
    parts += [f"{k}: {v}" for k, v in (request.get("headers") or {}).items() if k in _HEADERS]
    if request.get("body") is not None:
        parts.append(f"body {request['body']}")
    return " ".join(parts)


_HEADERS = frozenset({"Cookie", "User-Agent", "Referer"})
