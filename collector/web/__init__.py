"""The web dashboard, served by the collector beside its API: `router(ctx)` assembles the sign-in
routes (`collector.web.auth`), the stylesheet under `/static` (served from this package: nothing
is loaded from elsewhere), and each page module's own router. `mount(app, ctx)` adds all of it to
the collector's app, with the handler that answers a refused page (a redirect to the sign-in
form, or the 401/403 page) and the one that answers a browser asking for a path nothing serves
with the 404 page (an API client, or any path under `/api/`, still gets the JSON error body).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI, Request, Response

    from collector.web.context import WebContext

PAGES = ("overview", "clause", "hosts", "network", "snapshots")
"""The page modules under `collector.web.pages`, each exposing `router(ctx) -> APIRouter`."""
_API_PATHS = ("/api/", "/openapi.json", "/metrics", "/healthz")


def router(ctx: WebContext) -> APIRouter:
    """Every dashboard route over `ctx`."""
    # Imported here, not above: `collector.web.context` and the passwd command need no FastAPI.
    from fastapi import APIRouter
    from fastapi.staticfiles import StaticFiles

    from collector.web import auth
    from collector.web.render import STATIC

    assembled = APIRouter(include_in_schema=False)
    assembled.include_router(auth.router(ctx))
    for name in PAGES:
        module = importlib.import_module(f"collector.web.pages.{name}")
        assembled.include_router(module.router(ctx))
    assembled.mount("/static", StaticFiles(directory=STATIC), name="static")
    return assembled


def mount(app: FastAPI, ctx: WebContext) -> None:
    """Serve the dashboard from `app` (the collector's, beside `/api/v1`)."""
    from collector.web.auth import PageRefused, page_refused

    app.include_router(router(ctx))
    app.add_exception_handler(PageRefused, page_refused)
    app.add_exception_handler(404, _not_found)


async def _not_found(request: Request, exc: Exception) -> Response:
    """A path nothing serves: the 404 page for a browser, the API's JSON error for the rest."""
    from collector.api.errors import error_response
    from collector.web.render import error_page

    browser = "text/html" in request.headers.get("accept", "")
    if not browser or request.url.path.startswith(_API_PATHS):
        return error_response(404, "not_found", "no such resource")
    return error_page(request, None, 404)
