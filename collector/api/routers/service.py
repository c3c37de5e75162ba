"""The `service` routes: liveness (`/healthz`, no token, not audited unless the audit log was
unwritable) and Prometheus metrics."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Auditor) is local to the function that registers the routes.
from typing import Annotated

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ApiError, ErrorOut
from collector.api.metrics import Metrics
from collector.api.middleware import AuditHealth, Clock
from collector.api.schemas import HealthOut
from collector.models import Principal
from collector.store import Store, StoreError


def router(
    store: Store, auth: Auth, metrics: Metrics, health: AuditHealth, clock: Clock
) -> APIRouter:
    routes = APIRouter(tags=["service"])
    Auditor = Annotated[Principal, auth.auditor]

    @routes.get(
        "/healthz",
        response_model=HealthOut,
        responses={
            503: {
                "model": ErrorOut,
                "description": "database_unavailable, or audit_unavailable: audit entries"
                " cannot be written (the message says why), so requests are refused",
            }
        },
    )
    async def healthz(request: Request) -> HealthOut:
        try:
            alive = await run_in_threadpool(store.ping)
        except StoreError:
            alive = False
        if not alive:
            raise ApiError(503, "database_unavailable", "the database is unreachable")
        unhealthy = await health.probe(store, clock, request.scope)
        if unhealthy is not None:
            raise ApiError(503, *unhealthy)
        return HealthOut(status="ok")

    @routes.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **ERRORS},
    )
    def prometheus(_: Auditor) -> Response:
        """Prometheus metrics of the whole collector, every worker process summed (any user
        token)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return routes
