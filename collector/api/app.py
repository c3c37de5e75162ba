"""`create_app(settings, store)`: the collector's HTTP API (`/api/v1/`) assembled from its parts —
the routers (one per OpenAPI tag), the error handlers, the audit and body-limit middleware, the
metrics, and the catalogs results are joined with when read. Storage is the `Store`'s business:
reads run in the thread pool; reports and audit entries are queued for the store's group commit
and awaited, so concurrent requests share one transaction and the event loop never waits on the
database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from checks.catalog import builtin_catalogs
from collector.alerts import AlertService
from collector.api.auth import Auth
from collector.api.errors import install_error_handlers
from collector.api.metrics import Metrics
from collector.api.middleware import AuditHealth, AuditMiddleware, BodyLimitMiddleware, Clock
from collector.api.routers import (
    admin,
    agents,
    alerts,
    compliance,
    probes,
    read,
    scans,
    schedules,
    service,
)
from collector.api.schemas import REPORTS_PATH
from collector.periodic import Scheduler
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings
from collector.store import Store

PROBE_JOBS_PATH = "/api/v1/probe/jobs/"
MAX_OTHER_BODY_BYTES = 65_536
"""Bodies of routes other than report ingest (enrolment) are small JSON documents."""


def create_app(
    settings: CollectorSettings,
    store: Store,
    *,
    clock: Clock = lambda: datetime.now(UTC),
    owns_store: bool = False,
) -> FastAPI:
    """The collector's ASGI app over `store`; `clock` gives "now" (enrolment expiry, skew).
    With `owns_store`, the app closes the store when it shuts down (after the last request)."""
    metrics = Metrics()
    health = AuditHealth()
    catalogs = builtin_catalogs()  # loaded once: every read joins clauses from it
    alerting = AlertService(settings.alerts, store, clock)
    launcher = ScanLauncher(
        settings.scans,
        store,
        clock,
        database_url=settings.database,
        probes=settings.probes,
        on_stored=alerting.scan_stored,
    )
    scheduler = Scheduler(settings, store, launcher, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await scheduler.start()
        await alerting.start()
        yield
        await scheduler.close()
        await launcher.close()  # scans still running are stopped and recorded as failed
        await alerting.close()
        if owns_store:
            await run_in_threadpool(store.close)
        metrics.close()

    app = FastAPI(
        lifespan=lifespan,
        title="medsec collector",
        version="1",
        description="Ingests signed host reports from medsec agents; serves hosts, results and "
        "the audit log to auditors, operators and admins.",
        docs_url=None,  # the UI loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    auth = Auth(store)
    app.include_router(agents.router(settings, store, clock))
    app.include_router(read.router(store, auth, catalogs))
    app.include_router(scans.router(store, auth, launcher, clock))
    app.include_router(schedules.router(settings, store, auth, clock))
    app.include_router(alerts.router(store, auth))
    app.include_router(probes.router(settings, store, auth, clock))
    app.include_router(compliance.router(settings, store, auth, catalogs, clock))
    app.include_router(admin.router(store, auth, clock))
    app.include_router(service.router(store, auth, metrics, health, clock))
    from collector.web import mount
    from collector.web.context import WebContext

    mount(app, WebContext(settings, store, catalogs, clock, launcher))
    max_report = settings.limits.max_report_bytes
    # Added last = outermost: the audit sees every answer, the body limit's 413 included.
    app.add_middleware(
        BodyLimitMiddleware,
        limit_for=lambda path: max_report if _carries_evidence(path) else MAX_OTHER_BODY_BYTES,
    )
    app.add_middleware(AuditMiddleware, store=store, clock=clock, metrics=metrics, health=health)
    return app


def _carries_evidence(path: str) -> bool:
    """Reports, and probes' job results (nmap's XML of a zone), may be as large as a report."""
    return path == REPORTS_PATH or (path.startswith(PROBE_JOBS_PATH) and path.endswith("/result"))
