"""The ASGI middleware around the API: the body-size limit, and one audit entry per request
(who, role, what, when, from where, outcome) together with the ingest metrics; no answer without
its entry (`AuditHealth` says when entries cannot be written). Also the request state they share
with the routes: the caller (`set_principal`) and whether the request's audit entry was already
committed with its report (`mark_audited`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.api.errors import error_code, send_error
from collector.api.metrics import Metrics
from collector.api.schemas import REPORTS_PATH
from collector.models import Principal
from collector.store import Store, StoreError, StoreUnavailable
from collector.store.audit import escape_text

logger = logging.getLogger("medsec.collector")

Clock = Callable[[], datetime]

UNAUDITED_PATHS = frozenset({"/healthz"})
"""Liveness probes (every few seconds from a load balancer) carry no identity and no data."""
SAFE_METHODS = frozenset({"GET", "HEAD"})
"""Methods of requests that change nothing (the API has no other kind of GET)."""
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


def _action(scope: Scope) -> str:
    return one_line(f"{scope['method']} {_path(scope)}")


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


class AuditHealth:
    """Whether this process can write audit entries: the reason its last write failed, until a
    later one succeeds. The middleware keeps it; `/healthz` reports it (and probes recovery)."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def failed(self, exc: BaseException) -> tuple[str, str]:
        """Record a failed write; the error code and message to answer instead."""
        code, message = unwritable(exc)
        self.problem = message
        return code, message

    def succeeded(self) -> None:
        if self.problem is not None:
            logger.warning("audit log writable again (it was not: %s)", self.problem)
            self.problem = None

    async def probe(self, store: Store, clock: Clock, scope: Scope) -> tuple[str, str] | None:
        """For `/healthz`, which is otherwise not audited: the 503 error code and message while
        entries cannot be written, or None. Healthy so far: the checks an append makes, read
        only (a log altered while idle is found). Unhealthy: the probe's own entry is written;
        once that works, the log is back (and shows where it resumed)."""
        if self.problem is None:
            try:
                problem = await run_in_threadpool(store.audit_problem)
            except StoreError as exc:  # the database went away since the ping
                return unwritable(exc)
            if problem is None:
                return None
            self.problem = f"the audit log cannot be written: {one_line(problem)}"
            logger.error("%s", self.problem)
            return "audit_unavailable", self.problem
        actor, role, action, source = who(scope)
        try:
            entry = store.submit_audit(actor, role, action, source, "200", clock())
            await asyncio.wrap_future(entry)
        except Exception as exc:
            code, self.problem = unwritable(exc)
            return code, self.problem
        self.succeeded()
        return None


def unwritable(exc: BaseException) -> tuple[str, str]:
    """The 503 error code and message for an audit entry that could not be written: the store's
    own message when it has one (those are safe to show), never another exception's text."""
    if isinstance(exc, StoreUnavailable):
        return "database_unavailable", "the database is unreachable"
    if isinstance(exc, StoreError):
        return "audit_unavailable", f"the audit log cannot be written: {one_line(str(exc))}"
    return "audit_unavailable", "the audit log cannot be written; see the server log"


def one_line(text: str, limit: int = 512) -> str:
    """`text` fit for one log line: control characters escaped (a newline in a request path
    would forge a line), cut to `limit` characters."""
    text = escape_text(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AuditMiddleware:
    """One audit entry per request — who, role, what, when, from where, outcome — committed as
    soon as the status (and, for an error, its code) is known and BEFORE the client receives the
    response, so an answered request is always in the log. When the entry cannot be written
    (database unreachable, the chain's end altered, disk full), the answer is not given: 503
    instead (`audit_unavailable`, or `database_unavailable`), one line in the server log, and
    `/healthz` unhealthy until a write succeeds again. A request that may change something
    (any method but GET and HEAD) runs only when its entry can be written: checked before it
    runs, and while entries cannot be written it is refused, each refusal a probe (once its
    entry is written, requests run again). A request the app fails on with an exception is
    answered 500 internal_error here (logged with its traceback, never sent)."""

    _MAX_HELD = 65_536

    def __init__(
        self, app: ASGIApp, store: Store, clock: Clock, metrics: Metrics, health: AuditHealth
    ) -> None:
        self.app = app
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not await self._can_change(scope):
            await self._refuse(scope, send, time.perf_counter())
            return
        await self._exchange(scope, receive, send)

    async def _can_change(self, scope: Scope) -> bool:
        """Whether a request that may change something may run: not while entries cannot be
        written, since its change would be made and its entry not. A report always may: its
        entry is written in its own transaction (both or neither). Anything else is checked
        before it runs (one read of the head and the last entry)."""
        if scope["path"] == REPORTS_PATH:
            return True
        if self.health.problem is not None:
            return False
        try:
            problem = await run_in_threadpool(self.store.audit_problem)
        except StoreError:  # unreachable: the request fails on its own, and is answered 503
            return True
        if problem is not None:
            self.health.problem = f"the audit log cannot be written: {one_line(problem)}"
        return problem is None

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, holding its answer until the request's entry is committed."""
        state = _state(scope)
        started = time.perf_counter()
        status = 0
        held: list[Message] = []
        held_bytes = 0
        recorded = False
        refused = False  # the entry could not be written: the app's answer is dropped

        async def record(code: str | None) -> bool:
            """Write the entry; False (and the 503 sent instead) when it cannot be."""
            nonlocal recorded, refused
            recorded = True
            failure = await self._record(scope, state, status, code)
            if failure is None:
                self._observe(scope, status, code, started)
                return True
            refused = True
            await self._answer_unwritten(scope, send, failure, started)
            return False

        async def audited_send(message: Message) -> None:
            nonlocal status, held_bytes
            if refused:
                return
            if recorded:
                await send(message)
                return
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if status < 400:
                    if await record(None):
                        await send(message)
                else:
                    held.append(message)  # wait for the body: it names the error code
                return
            held.append(message)
            held_bytes += len(message.get("body", b""))
            if message.get("more_body", False) and held_bytes < self._MAX_HELD:
                return
            if await record(error_code(b"".join(m.get("body", b"") for m in held[1:]))):
                for m in held:
                    await send(m)
            held.clear()

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if recorded:  # answered (or refused) already: nothing more can be said to the client
                logger.exception("request %s failed mid-response", _action(scope))
                if refused:
                    return
                raise
            logger.exception("request %s failed", _action(scope))
            status = 500  # what the app had started to answer (an error, held) is not sent
            if await record("internal_error"):
                await send_error(send, 500, "internal_error", "internal error; see the server log")
            return
        if not recorded:  # the app returned without answering (the client left)
            status = status or 499
            await record("no_response")

    async def _refuse(self, scope: Scope, send: Send, started: float) -> None:
        """While the log cannot be written, a request that may change something is not run. Its
        refusal is written like any answer: if that works, the log is back."""
        failure = await self._record(scope, _state(scope), 503, "audit_unavailable")
        if failure is None:
            await send_error(
                send, 503, "audit_unavailable", "the audit log could not be written; try again"
            )
            self._observe(scope, 503, "audit_unavailable", started)
        else:
            await self._answer_unwritten(scope, send, failure, started)

    async def _answer_unwritten(
        self, scope: Scope, send: Send, failure: BaseException, started: float
    ) -> None:
        code, message = self.health.failed(failure)
        self.metrics.audit_unwritten.inc()
        self._observe(scope, 503, code, started)
        actor, _, action, source = who(scope)
        logger.error(
            "audit entry not written, answered 503 %s: %s for %s by %s from %s",
            code,
            one_line(f"{type(failure).__name__}: {failure}"),
            one_line(action),
            one_line(actor),
            source,
        )
        try:
            await send_error(send, 503, code, message)
        except OSError:  # the client left meanwhile
            return

    def _observe(self, scope: Scope, status: int, code: str | None, started: float) -> None:
        if scope["method"] == "POST" and scope["path"] == REPORTS_PATH:
            self.metrics.observe_ingest(status, code, time.perf_counter() - started)

    async def _record(
        self, scope: Scope, state: dict[str, Any], status: int, code: str | None
    ) -> BaseException | None:
        """Write the request's entry and wait for its commit; the failure, or None."""
        if state.get(_STATE_AUDITED):  # committed with its report
            self.health.succeeded()
            return None
        actor, role, action, source = who(scope)
        outcome = outcome_text(status, code)
        try:
            await asyncio.wrap_future(
                self.store.submit_audit(actor, role, action, source, outcome, self.clock())
            )
        except Exception as exc:
            return exc
        self.health.succeeded()
        return None
