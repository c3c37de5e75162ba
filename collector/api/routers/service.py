"""The `service` routes: liveness (`/healthz`, no token, not audited) and Prometheus metrics."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Auditor) is local to the function that registers the routes.
from typing import Annotated

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ApiError, ErrorOut
from collector.api.metrics import Metrics
from collector.api.schemas import HealthOut
from collector.models import Principal
from collector.store import Store, StoreError


def router(store: Store, auth: Auth, metrics: Metrics) -> APIRouter:
    routes = APIRouter(tags=["service"])
    Auditor = Annotated[Principal, auth.auditor]

    @routes.get(
        "/healthz",
        response_model=HealthOut,
        responses={503: {"model": ErrorOut, "description": "database_unavailable"}},
    )
    def healthz() -> HealthOut:
        try:
            alive = store.ping()
        except StoreError:
            alive = False
        if not alive:
            raise ApiError(503, "database_unavailable", "the database is unreachable")
        return HealthOut(status="ok")

    @routes.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **ERRORS},
    )
    def prometheus(_: Auditor) -> Response:
        """Prometheus metrics (any user token)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
