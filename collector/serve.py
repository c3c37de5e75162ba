"""Running the API with uvicorn over hardened TLS: in this process, or in N worker processes
that share one listening socket (`workers:` in the settings, `medsec serve --workers N`).

One Python process runs on one core; a collector for a province needs several. uvicorn's own
supervisor starts the workers (a fresh interpreter each), restarts one that dies and stops them
all on SIGTERM/SIGINT. Each worker builds its app from the settings file named in
`MEDSEC_COLLECTOR_CONFIG` with its own connection pool and group-commit writer; on PostgreSQL
the audit chain's head row serialises their appends, so the chain never forks.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from collector.api.limits import Guard, LimitedHttpToolsProtocol
from collector.settings import LimitSettings
from collector.tls import TlsError, harden

CONFIG_ENV = "MEDSEC_COLLECTOR_CONFIG"
WORKER_APP = "collector.serve:worker_app"
GC_GEN0_THRESHOLD = 50_000
"""Allocations between collections of the youngest generation (CPython's default: 700)."""


class HardenedConfig(uvicorn.Config):
    """uvicorn's config whose TLS context is hardened wherever it is built (uvicorn builds a
    context from the certificate files in `load()`, in this process or in each worker), served by
    the limited HTTP protocol (`collector.api.limits`) under `limits`.

    That protocol makes the TLS handshake itself, so that a connection is counted and timed from
    its accept: the hardened context goes to its `Guard`, and uvicorn, left without one, hands it
    bare TCP connections."""

    def __init__(self, app: Any, *, limits: LimitSettings, **kwargs: Any) -> None:
        # No WebSocket (the API has none): an upgraded connection would leave the protocol, and
        # its limits, behind.
        super().__init__(app, http=LimitedHttpToolsProtocol, ws="none", **kwargs)
        self.guard = Guard(limits)

    def load(self) -> None:
        super().load()
        if self.ssl is None:  # pragma: no cover — uvicorn makes one whenever a certificate is given
            raise TlsError("uvicorn did not build a TLS context")
        self.guard.tls = harden(self.ssl)
        self.ssl = None


def worker_app() -> FastAPI:
    """The app of one worker process (the parent has migrated the database already)."""
    from collector.api import create_app
    from collector.settings import audit_key, load_settings
    from collector.store import Store

    log_medsec_events()
    settings = load_settings(Path(os.environ[CONFIG_ENV]))
    store = Store.open(settings.database, audit_key=audit_key(settings))
    app = create_app(settings, store, owns_store=True)
    tune_gc()
    return app


def log_medsec_events() -> None:
    """The collector's own events (a schedule fired, a scan ended, an alert sent) at INFO on
    stderr, where uvicorn's lines go: without a handler only warnings would reach the journal."""
    medsec = logging.getLogger("medsec")
    if medsec.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    medsec.addHandler(handler)
    medsec.setLevel(logging.INFO)


def tune_gc() -> None:
    """Fewer, cheaper full collections while serving. A report's parsed objects live for its
    request — tens of milliseconds while it waits for its commit — so with CPython's default
    thresholds many of them outlive the young generations, and the full collections they cause
    scan every live object: measured, 60–85 ms pauses a few times a second at 250 reports/s,
    which stalled every request in flight. The objects made at start-up (modules, the app) are
    frozen out of collections, and the youngest generation is collected less often, so objects
    of one request die young."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
