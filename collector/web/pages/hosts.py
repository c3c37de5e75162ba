"""The hosts (`/hosts`) and a host (`/hosts/{host_id}`).

The list is filtered (site, zone, status, check), searched (name, id, address, serial) and sorted
by the database, a page of `PAGE` at a time, so it answers alike at ten hosts or ten thousand;
only the zone filter, whose zones are the zones files' address ranges, is applied to the hosts'
addresses here. Every filter is checked first: a value it does not know is a 400 page naming it.

A host shows its inventory (identity, hardware, TPM, disks with their encryption, backups
against the RPO, erasure, log streams), every result of its newest report with its evidence and
the clauses it answers, and its report history. An unknown host is the 404 page.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from checks.catalog import Catalogs
from collector.compliance.aggregate import catalog_key
from collector.compliance.service import ComplianceError, zone_map
from collector.compliance.zones import ZoneMap
from collector.models import Role
from collector.scan import SCAN_HOST_PREFIX
from collector.settings import CollectorSettings
from collector.store.dashboard import HOST_STATUSES, SORTS, HostQuery
from collector.web.auth import page_user
from collector.web.context import WebContext, WebUser
from collector.web.pages.inventory import age_words, host_view
from collector.web.render import error_page, render, url

PAGE = 50
"""Hosts per page."""
HISTORY = 20
"""Reports listed in a host's history."""
MAX_TEXT = 200
"""Longest filter value taken (a search, a site name)."""
_RESULT_ORDER = {s: n for n, s in enumerate(("fail", "error", "manual", "pass", "not_applicable"))}


class Zones:
    """The zones files' zones, read again only when one of the files changed."""

    def __init__(self, settings: CollectorSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, float], ...] | None = None
        self._map: ZoneMap | None = None
        self._problem: str | None = None

    def get(self) -> tuple[ZoneMap, str | None]:
        """The zones and, when a zones file cannot be read, why (then no zones)."""
        stamp = tuple(
            (path, _mtime(path)) for _, path in sorted(self._settings.scans.zones.items())
        )
        with self._lock:
            if self._map is None or stamp != self._seen:
                try:
                    self._map, self._problem = zone_map(self._settings), None
                except ComplianceError as exc:
                    self._map, self._problem = ZoneMap(()), str(exc)
                self._seen = stamp
            return self._map, self._problem


def _mtime(path: str) -> float:
    try:
        return os.stat(Path(path)).st_mtime
    except OSError:
        return -1.0


@dataclass(frozen=True)
class ClauseRef:
    standard: str
    clause: str
    qualified: str

    @property
    def link(self) -> str:
        return f"/clauses/{self.standard}/{quote(self.clause, safe='')}"


def clause_index(catalogs: Catalogs) -> dict[str, list[ClauseRef]]:
    """Check id → the clauses it gives evidence for, in every catalog."""
    index: dict[str, list[ClauseRef]] = {}
    for catalog in catalogs:
        key = catalog_key(catalog)
        for clause in catalog.clauses:
            for check_id in clause.checks:
                index.setdefault(check_id, []).append(
                    ClauseRef(key, clause.id, catalog.qualified(clause))
                )
    return index


def host_checks() -> list[str]:
    from checks.registry import builtin_registry

    return sorted(builtin_registry().ids())


def router(ctx: WebContext) -> APIRouter:
    routes = APIRouter()
    Auditor = Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))]
    zones = Zones(ctx.settings)
    checks = host_checks()
    clauses = clause_index(ctx.catalogs)
    sites: list[Any] = [None, []]
    """(evidence version, the sites hosts report): read again when new evidence arrived."""

    def known_sites() -> list[str]:
        version = ctx.store.evidence_version()
        if sites[0] != version:
            sites[:] = [version, ctx.store.host_sites()]
        found: list[str] = sites[1]
        return found

    @routes.get("/hosts", response_class=HTMLResponse)
    def hosts_page(request: Request, user: Auditor) -> HTMLResponse:
        """A page of hosts, filtered, searched and sorted (the module's docstring)."""
        params = request.query_params
        zone_names, zones_problem = zones.get()
        wanted = {k: (params.get(k) or "").strip() or None for k in _FILTERS}
        refused = _refused(wanted, sorted(zone_names.names), checks)
        if refused is not None:
            return error_page(request, user, 400, *refused)
        page = int(wanted["page"] or 1)
        sort = wanted["sort"] or "name"
        query = HostQuery(
            site=wanted["site"],
            status=wanted["status"],  # type: ignore[arg-type]  # checked by _refused
            check=wanted["check"],
            q=wanted["q"],
            sort=sort,
        )
        zone = wanted["zone"]
        keep = None
        if zone is not None:
            keep = lambda addresses: zone in zone_names.of_addresses(addresses)  # noqa: E731
        now = ctx.clock()
        stale_before = now - timedelta(minutes=ctx.settings.reports.stale_after_minutes)
        found = ctx.store.dashboard_hosts(
            query, stale_before=stale_before, limit=PAGE, offset=(page - 1) * PAGE, keep=keep
        )
        pages = max(1, -(-found.total // PAGE))
        filters = {k: wanted[k] for k in ("site", "zone", "status", "check", "q")}
        return render(
            request,
            user,
            "hosts.html",
            section="hosts",
            found=found,
            rows=[
                (h, sorted(zone_names.of_addresses(h.addresses)), h.last_report_at < stale_before)
                for h in found.items
            ],
            page=page,
            pages=pages,
            sort=sort,
            filters=filters,
            sites=known_sites(),
            zones=sorted(zone_names.names),
            zones_problem=zones_problem,
            statuses=HOST_STATUSES,
            checks=checks,
            sorts=SORTS,
            page_url=lambda n: url("/hosts", **filters, sort=sort, page=n),
            sort_url=lambda key: url("/hosts", **filters, sort=("-" + key) if sort == key else key),
        )

    @routes.get("/hosts/{host_id}", response_class=HTMLResponse)
    def host_page(request: Request, user: Auditor, host_id: str) -> HTMLResponse:
        """One host: inventory, results with evidence, report history."""
        found = ctx.store.dashboard_host(host_id) if len(host_id) <= MAX_TEXT else None
        if found is None:
            return error_page(request, user, 404, f"没有主机 {host_id!r}", f"no host {host_id!r}")
        zone_names, _ = zones.get()
        now = ctx.clock()
        stale_before = now - timedelta(minutes=ctx.settings.reports.stale_after_minutes)
        results = sorted(
            found.results,
            key=lambda r: _RESULT_ORDER.get(r.status, len(_RESULT_ORDER)),
        )
        return render(
            request,
            user,
            "host.html",
            section="hosts",
            host=found,
            scan=found.id.startswith(SCAN_HOST_PREFIX),
            stale=found.generated_at < stale_before,
            zones=sorted(zone_names.of_addresses(found.addresses)),
            view=host_view(found.inventory, found.results),
            results=results,
            clauses=clauses,
            history=ctx.store.host_reports(found.id, HISTORY, 0),
            age=lambda seconds: age_words(seconds, user.locale),
        )

    return routes


_FILTERS = ("site", "zone", "status", "check", "q", "sort", "page")


def _refused(
    wanted: Mapping[str, str | None], zones: list[str], checks: list[str]
) -> tuple[str, str] | None:
    """(zh, en) naming the first filter value not understood; None when all are."""
    site, zone, status, check, q, sort, page = (wanted[k] for k in _FILTERS)
    known_zones = ", ".join(zones) or "—"
    statuses, sorts = ", ".join(HOST_STATUSES), ", ".join(SORTS)
    problems = (
        (
            any(v is not None and (len(v) > MAX_TEXT or "\x00" in v) for v in (site, q)),
            (
                f"站点与搜索最长 {MAX_TEXT} 个字符",
                f"site and search: at most {MAX_TEXT} characters",
            ),
        ),
        (
            zone is not None and zone not in zones,
            (
                f"没有区域 {zone!r}（已知：{known_zones}）",
                f"no zone {zone!r} (known: {known_zones})",
            ),
        ),
        (
            status is not None and status not in HOST_STATUSES,
            (
                f"未知的状态 {status!r}（可选：{statuses}）",
                f"unknown status {status!r} ({statuses})",
            ),
        ),
        (
            check is not None and check not in checks,
            (f"未知的检查项 {check!r}", f"unknown check {check!r}"),
        ),
        (
            sort is not None and sort.removeprefix("-") not in SORTS,
            (f"未知的排序 {sort!r}（可选：{sorts}）", f"unknown sort {sort!r} ({sorts})"),
        ),
        (
            page is not None and (not page.isdigit() or len(page) > 7 or int(page) < 1),
            ("页码须为正整数", "page: a whole number from 1 on"),
        ),
    )
    return next((said for refused, said in problems if refused), None)
