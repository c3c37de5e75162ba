"""The `scans` routes: an operator starts a network scan of a zones file the settings name; any
user role lists scans and polls one."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role aliases (Operator, Auditor) are local to the function that registers the routes.
from typing import Annotated

from fastapi import APIRouter

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError, ErrorOut
from collector.api.middleware import Clock
from collector.api.schemas import API, Limit, Offset, PageOut, ScanId, ScanIn, ScanOut, to_out
from collector.models import Principal
from collector.scans import ScanLauncher, UnknownZones
from collector.store import ScanRunning, Store


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

    @routes.get(f"{API}/scans/{{scan_id}}", response_model=ScanOut, responses=ERRORS_OR_NOT_FOUND)
    def get_scan(_: Auditor, scan_id: ScanId) -> ScanOut:
        """One scan: running, then passed, findings (its results stored as `report_id`) or
        failed (`message` says why)."""
        run = store.get_scan(scan_id, clock())
        if run is None:
            raise ApiError(404, "not_found", f"no scan {scan_id}")
        return to_out(ScanOut, run)

    return routes
