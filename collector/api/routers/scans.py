"""The `scans` routes: an operator starts a network scan of a zones file the settings name; any
user role lists scans, polls one, and compares two (`GET /scans/diff?from=&to=`: what changed on
the network, `collector.scan_diff`)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role aliases (Operator, Auditor) are local to the function that registers the routes.
from typing import Annotated, Any

from fastapi import APIRouter

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError, ErrorOut
from collector.api.middleware import Clock
from collector.api.schemas import (
    API,
    Limit,
    Offset,
    PageOut,
    ScanDiffOut,
    ScanFrom,
    ScanId,
    ScanIn,
    ScanOut,
    ScanTo,
    ZonesName,
    to_out,
)
from collector.models import Principal
from collector.scan_diff import NotComparable, diff, to_json
from collector.scan_view import view_of
from collector.scans import ScanLauncher, UnknownZones
from collector.store import NotFound, ScanRunning, Store
from collector.store.scan_history import ScanNotComparable, ScanRefInvalid, resolve_scan_ids


def router(store: Store, auth: Auth, launcher: ScanLauncher, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["scans"])
    Operator = Annotated[Principal, auth.operator]
    Auditor = Annotated[Principal, auth.auditor]

    @routes.post(
        f"{API}/scans",
        status_code=202,
        response_model=ScanOut,
        responses={
            **ERRORS,
            404: {"model": ErrorOut, "description": "unknown_zones"},
            409: {"model": ErrorOut, "description": "scan_running"},
        },
    )
    async def start_scan(body: ScanIn, principal: Operator) -> ScanOut:
        """Start a scan of a zones file the settings name; it runs on, poll `GET /scans/{id}`."""
        try:
            run = await launcher.start(body.zones, principal.name)
        except UnknownZones:
            raise ApiError(
                404, "unknown_zones", f"the collector's settings name no zones file {body.zones!r}"
            ) from None
        except ScanRunning:
            raise ApiError(
                409, "scan_running", f"a scan of {body.zones!r} is running; wait for it"
            ) from None
        return to_out(ScanOut, run)

    @routes.get(f"{API}/scans", response_model=PageOut[ScanOut], responses=ERRORS)
    def list_scans(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[ScanOut]:
        """Scans started through the API, newest first."""
        return to_out(PageOut[ScanOut], store.list_scans(limit, offset, clock()))

    # Before `/scans/{scan_id}`, which would otherwise take "diff" for a scan id.
    @routes.get(
        f"{API}/scans/diff",
        response_model=ScanDiffOut,
        responses={
            **ERRORS_OR_NOT_FOUND,
            409: {
                "model": ErrorOut,
                "description": "scan_running, scan_failed, scan_pruned (no results to compare) "
                "or different_zones",
            },
        },
    )
    def scan_diff(
        _: Auditor, from_: ScanFrom, to: ScanTo, zones: ZonesName = None
    ) -> dict[str, Any]:
        """What changed on the network from scan `from` to scan `to` (both of one zones file):
        paths newly open or closed, policy violations new or cleared, WAFs gone or back, ZTNA
        coverage up or down, TLS floors changed; zone pairs a scan did not measure completely
        are listed as not compared, never as closed."""
        now = clock()
        try:
            first, second = resolve_scan_ids(store, [from_, to], zones, now)
            a = view_of(*store.scan_with_report(first, now))
            b = view_of(*store.scan_with_report(second, now))
            return to_json(diff(a, b))
        except ScanRefInvalid as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        except ScanNotComparable as exc:
            raise ApiError(409, f"scan_{exc.reason}", str(exc)) from None
        except NotComparable as exc:
            raise ApiError(409, "different_zones", str(exc)) from None

    @routes.get(f"{API}/scans/{{scan_id}}", response_model=ScanOut, responses=ERRORS_OR_NOT_FOUND)
    def get_scan(_: Auditor, scan_id: ScanId) -> ScanOut:
        """One scan: running, then passed, findings (its results stored as `report_id`) or
        failed (`message` says why)."""
        run = store.get_scan(scan_id, clock())
        if run is None:
            raise ApiError(404, "not_found", f"no scan {scan_id}")
        return to_out(ScanOut, run)

    return routes
