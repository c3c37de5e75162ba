"""The network page and the scans: the zone × zone matrix of each zones file's newest stored scan,
coloured by the policy's verdict on each pair (its `net.segmentation` result); the WAF and ZTNA
tables (`net.waf`, `net.ztna_coverage`); the network devices of the stored SNMP inventories by
role; and the scans started through the collector, with the form that starts one (operators) and
a page per scan that reloads itself while the scan runs.

Everything is read from what the store holds, as the compliance reports read it: a scan or an
inventory is a host `scan:…` whose newest report's inventory carries `network` (a zones scan) or
`network_devices` (an SNMP inventory). Scans are started by the same `ScanLauncher` the API uses.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the user aliases are local to the function that registers the routes.
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from checks.device.checks import ROLE_ZH
from collector.models import EvidenceHost, Role, ScanRun, ScanState
from collector.scans import UnknownZones
from collector.store import ScanRunning, Store
from collector.web.auth import csrf_checked, form_fields, page_user
from collector.web.context import WebContext, WebUser
from collector.web.render import error_page, render

SCANS_SHOWN = 20
"""The newest scans the network page lists."""
REFRESH_SECONDS = 3
"""How often a running scan's page reloads itself."""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ROLE_ORDER = (
    "firewall",
    "ips",
    "waf",
    "router",
    "switch",
    "wireless",
    "server",
    "storage",
    "power",
    "printer",
    "other",
)
VERDICTS = ("violation", "allowed", "filtered", "error", "unmeasured", "unknown")
"""A matrix cell's verdict: ports open that the policy does not allow; only allowed ports
open; nothing open; the pair could not be measured completely; the source zone has no vantage;
no segmentation result for the pair."""
_SEGMENTATION_VERDICT = {"pass": "allowed", "fail": "violation", "error": "error"}


# --------------------------------------------------------------------------- what the page shows


@dataclass(frozen=True)
class Cell:
    """One ordered zone pair of the matrix."""

    verdict: str
    ports: tuple[str, ...] = ()
    """The ports that answered open (for a violation: those the policy does not allow)."""
    allowed: tuple[str, ...] = ()
    message: str = ""
    message_zh: str | None = None


@dataclass(frozen=True)
class Finding:
    """One result of a network check, as a table row."""

    target: str
    status: str
    message: str
    message_zh: str | None
    evidence: Mapping[str, Any]


@dataclass(frozen=True)
class ZonesScan:
    """The newest stored scan of one zones file."""

    name: str
    """The zones file's name in the settings (`scans.zones`), else its path."""
    zones_file: str
    scanner: str
    host_id: str
    report_id: str
    generated_at: datetime
    zones: tuple[str, ...]
    cells: Mapping[tuple[str, str], Cell]
    runs: tuple[Mapping[str, Any], ...]
    waf: tuple[Finding, ...]
    ztna: tuple[Finding, ...]
    seconds: float | None
    stale: bool
    """Older than `reports.scan_stale_after_minutes`: the compliance reports count it `error`."""

    def cell(self, source: str, target: str) -> Cell:
        return self.cells.get((source, target), Cell("unknown"))

    @property
    def violations(self) -> int:
        return sum(1 for c in self.cells.values() if c.verdict == "violation")


@dataclass(frozen=True)
class Device:
    """A network device of a stored SNMP inventory."""

    address: str
    port: int | None
    role: str
    confidence: float | None
    vendor: str | None
    model: str | None
    name: str | None
    software: str | None
    error: str | None
    inventory: str
    """The targets file of the inventory it was found by."""
    status: str | None
    """Its `net.snmp_secure` result (how its SNMP management is secured)."""
    message: str
    message_zh: str | None


@dataclass(frozen=True)
class RoleGroup:
    role: str
    role_zh: str
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class NetworkView:
    scans: tuple[ZonesScan, ...]
    roles: tuple[RoleGroup, ...]
    inventories: tuple[tuple[str, datetime], ...]
    """(targets file, when) of each stored SNMP inventory."""
    runs: tuple[ScanRun, ...]
    runs_total: int
    zones_names: tuple[str, ...]
    """The zones files an operator may scan (`scans.zones`)."""
    devices: int = field(default=0)


def network_view(ctx: WebContext) -> NetworkView:
    """Everything the network page shows, read from the store in a few queries."""
    store, settings = ctx.store, ctx.settings
    scan_hosts = [h for h in store.evidence_hosts() if h.is_scan]
    inventories = dict(store.host_inventories([h.host_id for h in scan_hosts]))
    results = _results(store, scan_hosts)
    names = {_normal(path): name for name, path in settings.scans.zones.items()}
    stale_before = ctx.clock() - timedelta(minutes=settings.reports.scan_stale_after_minutes)
    scans: list[ZonesScan] = []
    devices: list[Device] = []
    swept: list[tuple[str, datetime]] = []
    for host in scan_hosts:
        inventory = inventories.get(host.host_id, {})
        found = results.get(host.report_pk, [])
        network = inventory.get("network")
        if isinstance(network, dict):
            scans.append(_zones_scan(host, network, found, names, stale_before))
        listed = inventory.get("network_devices")
        if isinstance(listed, list):
            snmp = inventory.get("snmp")
            held = snmp.get("targets_file") if isinstance(snmp, dict) else None
            targets = str(held or host.hostname)
            swept.append((targets, host.generated_at))
            devices.extend(_devices(listed, found, targets))
    page = store.list_scans(SCANS_SHOWN, 0, ctx.clock())
    scans.sort(key=lambda s: (s.name not in settings.scans.zones, s.name, s.zones_file))
    return NetworkView(
        scans=tuple(scans),
        roles=_by_role(devices),
        inventories=tuple(sorted(swept)),
        runs=page.items,
        runs_total=page.total,
        zones_names=tuple(sorted(settings.scans.zones)),
        devices=len(devices),
    )


def _normal(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def _results(store: Store, hosts: Iterable[EvidenceHost]) -> dict[int, list[tuple[str, Finding]]]:
    """The results of these hosts' newest reports, by report, as (check id, finding)."""
    by_report: dict[int, list[tuple[str, Finding]]] = {}
    for pk, check_id, status, target, message, message_zh, evidence in store.evidence_results(
        [h.report_pk for h in hosts]
    ):
        try:
            parsed = json.loads(evidence) if evidence else {}
        except ValueError:  # stored by the ingest, which validated it: never expected
            parsed = {}
        finding = Finding(
            target or "",
            status,
            message,
            message_zh,
            parsed if isinstance(parsed, dict) else {},
        )
        by_report.setdefault(pk, []).append((check_id, finding))
    return by_report


def _of(found: Iterable[tuple[str, Finding]], check_id: str) -> list[Finding]:
    return [f for c, f in found if c == check_id]


def _zones_scan(
    host: EvidenceHost,
    network: Mapping[str, Any],
    found: list[tuple[str, Finding]],
    names: Mapping[str, str],
    stale_before: datetime,
) -> ZonesScan:
    zones_file = str(network.get("zones_file") or "")
    zones = tuple(
        str(z["name"])
        for z in network.get("zones") or ()
        if isinstance(z, dict) and isinstance(z.get("name"), str)
    )
    open_ports: dict[tuple[str, str], set[str]] = {}
    for row in network.get("matrix") or ():
        if not isinstance(row, dict):
            continue
        answers = row.get("answers") or ()
        if any(isinstance(a, dict) and a.get("state") == "open" for a in answers):
            pair = (str(row.get("from")), str(row.get("to")))
            open_ports.setdefault(pair, set()).add(str(row.get("port")))
    cells: dict[tuple[str, str], Cell] = {}
    for result in _of(found, "net.segmentation"):
        source, target = result.evidence.get("from"), result.evidence.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            source, _, target = result.target.partition("->")
        allowed = tuple(str(a) for a in result.evidence.get("allowed") or ())
        opened = sorted(open_ports.get((source, target), set()))
        verdict = _SEGMENTATION_VERDICT.get(result.status, "unmeasured")
        if verdict == "allowed" and not opened:
            verdict = "filtered"
        ports = [p for p in opened if p not in allowed] if verdict == "violation" else opened
        cells[(source, target)] = Cell(
            verdict, tuple(ports), allowed, result.message, result.message_zh
        )
    seconds = network.get("seconds")
    return ZonesScan(
        name=names.get(_normal(zones_file), zones_file) if zones_file else host.hostname,
        zones_file=zones_file,
        scanner=host.hostname,
        host_id=host.host_id,
        report_id=host.report_id,
        generated_at=host.generated_at,
        zones=zones,
        cells=cells,
        runs=tuple(r for r in network.get("runs") or () if isinstance(r, dict)),
        waf=tuple(_of(found, "net.waf")),
        ztna=tuple(_of(found, "net.ztna_coverage")),
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
        stale=host.generated_at < stale_before,
    )


def _devices(listed: list[Any], found: list[tuple[str, Finding]], targets: str) -> list[Device]:
    secured = {f.target: f for f in _of(found, "net.snmp_secure")}
    devices = []
    for item in listed:
        if not isinstance(item, dict):
            continue
        address, port = str(item.get("address") or ""), item.get("port")
        verdict = secured.get(f"{address}:{port}")
        confidence = item.get("confidence")
        devices.append(
            Device(
                address=address,
                port=port if isinstance(port, int) else None,
                role=str(item.get("role") or "other"),
                confidence=float(confidence) if isinstance(confidence, int | float) else None,
                vendor=_text(item.get("vendor")),
                model=_text(item.get("model")),
                name=_text(item.get("sys_name")),
                software=_text(item.get("software")),
                error=_text(item.get("error")),
                inventory=targets,
                status=verdict.status if verdict else None,
                message=verdict.message if verdict else "",
                message_zh=verdict.message_zh if verdict else None,
            )
        )
    return devices


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _by_role(devices: list[Device]) -> tuple[RoleGroup, ...]:
    groups: dict[str, list[Device]] = {}
    for device in devices:
        groups.setdefault(device.role, []).append(device)
    order = {role: n for n, role in enumerate(ROLE_ORDER)}
    return tuple(
        RoleGroup(
            role,
            ROLE_ZH.get(role, role),
            tuple(sorted(groups[role], key=lambda d: (_address_key(d.address), d.port or 0))),
        )
        for role in sorted(groups, key=lambda r: (order.get(r, len(order)), r))
    )


def _address_key(address: str) -> tuple[int, ...] | tuple[int, str]:
    try:
        return tuple(int(part) for part in address.split("."))
    except ValueError:
        return (1_000, address)


# --------------------------------------------------------------------------- forms and pages


def router(ctx: WebContext) -> APIRouter:
    routes = APIRouter()
    Auditor = Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))]
    OperatorPost = Annotated[WebUser, Depends(csrf_checked(ctx, Role.OPERATOR))]

    def network_page(
        request: Request,
        user: WebUser,
        *,
        status: int = 200,
        problem: tuple[str, str] | None = None,
        chosen: str = "",
    ) -> HTMLResponse:
        view = network_view(ctx)
        return render(
            request,
            user,
            "network.html",
            status=status,
            section="network",
            wide=True,
            view=view,
            verdicts=VERDICTS,
            can_scan=user.can(Role.OPERATOR),
            problem=problem,
            chosen=chosen,
        )

    @routes.get("/network", response_class=HTMLResponse)
    def network(request: Request, user: Auditor) -> HTMLResponse:
        return network_page(request, user)

    @routes.post("/scans", response_model=None)
    async def start_scan(request: Request, user: OperatorPost) -> Response:
        """Start a scan of a zones file the settings name; the browser goes to its page."""
        zones = (await form_fields(request)).get("zones", "").strip()
        if zones not in ctx.settings.scans.zones:
            shown = zones[:64] or "—"
            return await run_in_threadpool(
                network_page,
                request,
                user,
                status=400,
                problem=(
                    f"设置中没有名为“{shown}”的区域文件：请从列表中选择。",
                    f"the settings name no zones file {shown!r}: choose one from the list",
                ),
            )
        try:
            run = await ctx.launcher.start(zones, user.name)
        except UnknownZones:  # the settings changed between the check and the start
            return await run_in_threadpool(network_page, request, user, status=400)
        except ScanRunning:
            return await run_in_threadpool(
                network_page,
                request,
                user,
                status=409,
                chosen=zones,
                problem=(
                    f"区域文件“{zones}”的扫描正在运行，请等待其结束。",
                    f"a scan of {zones!r} is running: wait for it to end",
                ),
            )
        return RedirectResponse(f"/scans/{run.id}", status_code=303)

    @routes.get("/scans/{scan_id}", response_class=HTMLResponse)
    def scan_page(request: Request, user: Auditor, scan_id: str) -> HTMLResponse:
        found = ctx.store.get_scan(scan_id, ctx.clock()) if UUID.match(scan_id) else None
        if found is None:
            return error_page(
                request, user, 404, f"没有编号为 {scan_id} 的扫描。", f"There is no scan {scan_id}."
            )
        running = found.state is ScanState.RUNNING
        return render(
            request,
            user,
            "scan.html",
            section="network",
            scan=found,
            running=running,
            refresh=REFRESH_SECONDS if running else None,
            elapsed=((found.finished_at or ctx.clock()) - found.started_at).total_seconds(),
        )

    return routes


__all__ = ["Cell", "Device", "NetworkView", "ZonesScan", "network_view", "router"]
