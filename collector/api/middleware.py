"""The ASGI middleware around the API: the body-size limit, and one audit entry per request
(who, role, what, when, from where, outcome) together with the ingest metrics. Also the request
state they share with the routes: the caller (`set_principal`) and whether the request's audit
entry was already committed with its report (`mark_audited`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.api.errors import error_code, send_error
from collector.api.metrics import Metrics
from collector.api.schemas import REPORTS_PATH
from collector.models import Principal
from collector.store import Store

logger = logging.getLogger("medsec.collector")

Clock = Callable[[], datetime]

UNAUDITED_PATHS = frozenset({"/healthz"})
"""Liveness probes (every few seconds from a load balancer) carry no identity and no data."""
_STATE_PRINCIPAL = "medsec.principal"
_STATE_AUDITED = "medsec.audited"
"""Set once the request's audit entry is committed with its report (`AuditNote`)."""


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def set_principal(scope: Scope, principal: Principal) -> None:
    """Remember who called, for the audit entry written when the answer is known."""
    _state(scope)[_STATE_PRINCIPAL] = principal


def mark_audited(scope: Scope) -> None:
    """The request's audit entry was committed with its report: the middleware writes none."""
    _state(scope)[_STATE_AUDITED] = True


def who(scope: Scope) -> tuple[str, str, str, str]:
    """The audit entry's actor, role, action and source for a request."""
    principal: Principal | None = _state(scope).get(_STATE_PRINCIPAL)
    actor = principal.name if principal else "-"
    role = "-"
    if principal is not None:
        role = "agent" if principal.kind == "agent" else str(principal.role or "-")
    client = scope.get("client")
    source = str(client[0]) if client else "-"
    return actor, role, f"{scope['method']} {_path(scope)}", source


def outcome_text(status: int, code: str | None) -> str:
    return f"{status} {code}" if code else str(status)


def _path(scope: Scope) -> str:
    path = str(scope["path"])
    return path if len(path) <= 512 else path[:509] + "..."


class BodyLimitMiddleware:
    """Refuses (413 too_large) a body over the route's limit before anything else looks at the
    request. The body is read as it streams and kept only up to the limit; a declared
    Content-Length over the limit is refused without reading a byte of the body."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, 400, "invalid_request", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await send_error(send, 413, "too_large", f"the body exceeds {limit} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: nobody to answer
                return
            body: bytes = message.get("body", b"")
            size += len(body)
            if size > limit:
                await send_error(send, 413, "too_large", f"the body exceeds {limit} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(first: list[Message], receive: Receive) -> Receive:
    pending = list(first)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class AuditMiddleware:
    """One audit entry per request — who, role, what, when, from where, outcome — written as
    soon as the status (and, for an error, its code) is known and BEFORE the client receives the
    response, so an answered request is always in the log. A request the app fails on with an
    exception is answered 500 internal_error here (logged with its traceback, never sent)."""

    _MAX_HELD = 65_536

    def __init__(self, app: ASGIApp, store: Store, clock: Clock, metrics: Metrics) -> None:
        self.app = app
        self.store = store
        self.clock = clock
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        state = _state(scope)
        started = time.perf_counter()
        status = 0
        held: list[Message] = []
        held_bytes = 0
        recorded = False

        async def record(code: str | None) -> None:
            nonlocal recorded
            recorded = True
            await self._record(scope, state, status, code, time.perf_counter() - started)

        async def audited_send(message: Message) -> None:
            nonlocal status, held_bytes
            if recorded:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status < 400:
                    await record(None)
                    await send(message)
                else:
                    held.append(message)  # wait for the body: it names the error code
                return
            held.append(message)
            held_bytes += len(message.get("body", b""))
            if message.get("more_body", False) and held_bytes < self._MAX_HELD:
                return
            await record(error_code(b"".join(m.get("body", b"") for m in held[1:])))
            for m in held:
                await send(m)
            held.clear()

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if status:  # the response has started: nothing more can be said to the client
                logger.exception("request %s %s failed mid-response", scope["method"], _path(scope))
                if not recorded:
                    await record("internal_error")
                raise
            logger.exception("request %s %s failed", scope["method"], _path(scope))
            status = 500
            await record("internal_error")
            await send_error(send, 500, "internal_error", "internal error; see the server log")
            return
        if not recorded:  # the app returned without answering (the client left)
            status = status or 499
            await record("no_response")

    async def _record(
        self, scope: Scope, state: dict[str, Any], status: int, code: str | None, seconds: float
    ) -> None:
        if scope["method"] == "POST" and scope["path"] == REPORTS_PATH:
            self.metrics.observe_ingest(status, code, seconds)
        if state.get(_STATE_AUDITED):
            return
        actor, role, action, source = who(scope)
        outcome = outcome_text(status, code)
        try:
            await asyncio.wrap_future(
                self.store.submit_audit(actor, role, action, source, outcome, self.clock())
            )
        except Exception as exc:  # the request is answered anyway; the operator must see this
            logger.error(
                "audit entry not written (%s: %s) for %s by %s from %s: %s",
                type(exc).__name__,
                exc,
                action,
                actor,
                source,
                outcome,
            )
