"""The web dashboard, served by the collector beside its API: `router(ctx)` assembles the sign-in
routes (`collector.web.auth`), the stylesheet and other files under `/static` (served from this
package: nothing is loaded from elsewhere), and each page module's own router. `mount(app, ctx)`
adds all of it to the collector's app, with the handler that answers a refused page (a redirect
to the sign-in form, or the 401/403 page).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

    from collector.web.context import WebContext

PAGES = ("overview", "clause", "hosts", "network", "snapshots")
"""The page modules under `collector.web.pages`, each exposing `router(ctx) -> APIRouter`."""


def router(ctx: WebContext) -> APIRouter:
    """Every dashboard route over `ctx`. A page module not written yet is left out."""
    # Imported here, not above: `collector.web.context` and the passwd command need no FastAPI.
    from fastapi import APIRouter
    from fastapi.staticfiles import StaticFiles

    from collector.web import auth
    from collector.web.render import STATIC

    assembled = APIRouter(include_in_schema=False)
    assembled.include_router(auth.router(ctx))
    for name in PAGES:
        module_name = f"collector.web.pages.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the page is there but something it imports is not
                raise
            continue
        assembled.include_router(module.router(ctx))
    assembled.mount("/static", StaticFiles(directory=STATIC), name="static")
    return assembled


def mount(app: FastAPI, ctx: WebContext) -> None:
    """Serve the dashboard from `app` (the collector's, beside `/api/v1`)."""
    from collector.web.auth import PageRefused, page_refused

    app.include_router(router(ctx))
    app.add_exception_handler(PageRefused, page_refused)
