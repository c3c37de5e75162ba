"""The `alerts` route: any user role lists the alerts scans raised, newest first, open and
cleared, each with its events' delivery state per channel (sent, pending with its attempts, or
failed with the last error): what the webhook and syslog were told, and what they were not told
yet. Alerts are raised and cleared by the collector itself (collector/alerts.py), never here.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Auditor) is local to the function that registers the route.
from typing import Annotated

from fastapi import APIRouter

from collector.api.auth import Auth
from collector.api.errors import ERRORS
from collector.api.schemas import (
    API,
    AlertOut,
    AlertsOpen,
    AlertsZones,
    Limit,
    Offset,
    PageOut,
    to_out,
)
from collector.models import Principal
from collector.store import Store


def router(store: Store, auth: Auth) -> APIRouter:
    routes = APIRouter(tags=["alerts"])
    Auditor = Annotated[Principal, auth.auditor]

    @routes.get(f"{API}/alerts", response_model=PageOut[AlertOut], responses=ERRORS)
    def list_alerts(
        _: Auditor,
        open_: AlertsOpen = False,
        zones: AlertsZones = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> PageOut[AlertOut]:
        """Alerts newest first (of one zones file; only open ones), each with its deliveries."""
        page = store.list_alerts(limit, offset, zones=zones, open_only=open_)
        return to_out(PageOut[AlertOut], page)

    return routes
