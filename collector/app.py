"""The collector's HTTP API (`/api/v1/`), built by `create_app(settings, store)`.

Owns authentication (bearer tokens → a user with a role, or an agent), authorisation per route,
the report ingest pipeline, JSON errors with stable codes, the body-size limit, one audit entry
per request and the Prometheus metrics. Storage is the `Store`'s business: reads run in the
thread pool; reports and audit entries are queued for the store's group commit and awaited, so
concurrent requests share one transaction and the event loop never waits on the database.

Ingest checks run in a fixed order, cheapest and least trusting first (the order is a contract):
size → token → envelope → agent and algorithm → signature → report schema → clock skew → store.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role aliases (Auditor, Admin, ...) are local to the functions that register the routes.
import asyncio
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, Literal, NoReturn, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from checks import envelope as env
from collector.models import (
    Agent,
    AuditEntry,
    HostSummary,
    IngestOutcome,
    Page,
    Principal,
    ReportSummary,
    ResultRow,
    Role,
    ScanRun,
    User,
)
from collector.scan import SCAN_HOST_PREFIX
from collector.scans import ScanLauncher, UnknownZones
from collector.settings import CollectorSettings
from collector.store import (
    AgentRevoked,
    AuditNote,
    EnrollmentInvalid,
    HostClaimed,
    NotFound,
    ReplayedReport,
    ScanRunning,
    StaleCredential,
    Store,
    StoreError,
    StoreUnavailable,
)

logger = logging.getLogger("medsec.collector")

Clock = Callable[[], datetime]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API = "/api/v1"
REPORTS_PATH = f"{API}/reports"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Agent and user names: a host name or a login, nothing a terminal or a log could misread."""
MAX_TOKEN_LENGTH = 200
MAX_OTHER_BODY_BYTES = 65_536
"""Bodies of routes other than report ingest (enrolment) are small JSON documents."""
UNAUDITED_PATHS = frozenset({"/healthz"})
"""Liveness probes (every few seconds from a load balancer) carry no identity and no data."""
_STATE_PRINCIPAL = "medsec.principal"
_STATE_AUDITED = "medsec.audited"
"""Set once the request's audit entry is committed with its report (`AuditNote`)."""
_RESULT_STATUSES = Literal["pass", "fail", "error", "not_applicable", "manual"]


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as {"error": code, "message": message} with `status`."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthenticated(message: str = "a valid bearer token is required") -> NoReturn:
    raise ApiError(401, "unauthenticated", message, _CHALLENGE)


# --------------------------------------------------------------------------- wire models


class ErrorOut(BaseModel):
    error: str = Field(description="Stable error code, e.g. `bad_signature`.")
    message: str = Field(description="What went wrong, for a person.")


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    alg: Literal["ed25519", "sm2-sm3"]
    public_key: Annotated[str, Field(min_length=1, max_length=8192)]


class EnrollOut(BaseModel):
    agent: str
    api_token: str = Field(description="The agent's API token (`msa_…`); shown once.")
    alg: str


class IngestOut(BaseModel):
    report_id: str
    host_id: str
    duplicate: bool


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zones: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
            description="The name of a zones file in the collector's settings (`scans.zones`).",
        ),
    ]


class ScanOut(BaseModel):
    id: str
    zones: str
    requested_by: str
    state: Literal["running", "passed", "findings", "failed"]
    started_at: datetime
    finished_at: datetime | None
    report_id: str | None = Field(description="The stored report of the scan's results.")
    message: str | None = Field(description="Why a failed scan failed.")


class HostOut(BaseModel):
    id: str
    hostname: str
    agent: str
    last_report_id: str
    last_report_at: datetime
    counts: dict[str, int]


class ReportOut(BaseModel):
    report_id: str
    host_id: str
    agent: str
    generated_at: datetime
    received_at: datetime
    counts: dict[str, int]


class ResultOut(BaseModel):
    report_id: str
    host_id: str
    hostname: str
    check_id: str
    status: str
    target: str | None
    message: str
    generated_at: datetime
    clauses: list[str]
    evidence: dict[str, Any]


class HostDetailOut(BaseModel):
    host: HostOut
    inventory: dict[str, Any]
    results: list[ResultOut]


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    source: str
    outcome: str
    prev_hash: str
    hash: str


class AgentOut(BaseModel):
    name: str
    state: Literal["pending", "active", "revoked"]
    alg: str | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None


class UserOut(BaseModel):
    name: str
    role: str
    created_at: datetime


class HealthOut(BaseModel):
    status: str


T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def _page(page: Page[Any], convert: Callable[[Any], T]) -> PageOut[T]:
    return PageOut[T](
        items=[convert(i) for i in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


def _host(h: HostSummary) -> HostOut:
    return HostOut(
        id=h.id,
        hostname=h.hostname,
        agent=h.agent,
        last_report_id=h.last_report_id,
        last_report_at=h.last_report_at,
        counts=dict(h.counts),
    )


def _report(r: ReportSummary) -> ReportOut:
    return ReportOut(
        report_id=r.report_id,
        host_id=r.host_id,
        agent=r.agent,
        generated_at=r.generated_at,
        received_at=r.received_at,
        counts=dict(r.counts),
    )


def _result(r: ResultRow) -> ResultOut:
    return ResultOut(
        report_id=r.report_id,
        host_id=r.host_id,
        hostname=r.hostname,
        check_id=r.check_id,
        status=r.status,
        target=r.target,
        message=r.message,
        generated_at=r.generated_at,
        clauses=list(r.clauses),
        evidence=dict(r.evidence),
    )


def _audit(e: AuditEntry) -> AuditOut:
    return AuditOut(
        seq=e.seq,
        at=e.at,
        actor=e.actor,
        role=e.role,
        action=e.action,
        source=e.source,
        outcome=e.outcome,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


def agent_state(a: Agent) -> Literal["pending", "active", "revoked"]:
    if a.revoked_at is not None:
        return "revoked"
    return "active" if a.enrolled_at is not None else "pending"


def _agent(a: Agent) -> AgentOut:
    return AgentOut(
        name=a.name,
        state=agent_state(a),
        alg=a.alg.value if a.alg is not None else None,
        enrolled_at=a.enrolled_at,
        revoked_at=a.revoked_at,
        last_seen_at=a.last_seen_at,
    )


def _user(u: User) -> UserOut:
    return UserOut(name=u.name, role=u.role.value, created_at=u.created_at)


def _envelope_schema() -> dict[str, Any]:
    """The JSON schema of `medsec.envelope/v1`, for the OpenAPI document (and its fuzzers)."""
    import msgspec

    _, components = msgspec.json.schema_components([env.Envelope])
    schema: dict[str, Any] = components["Envelope"]
    return schema


# --------------------------------------------------------------------------- metrics


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (two apps never share counters)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "medsec_reports_received",
            "Reports accepted at POST /api/v1/reports (stored, or already stored: duplicate).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "medsec_reports_rejected",
            "Reports refused at POST /api/v1/reports, by the error code answered.",
            ["reason"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "medsec_ingest_seconds",
            "Time to answer POST /api/v1/reports, from the first byte read to the status sent.",
            registry=self.registry,
        )

    def observe_ingest(self, status: int, code: str | None, seconds: float) -> None:
        self.ingest_seconds.observe(seconds)
        if status in (200, 201):
            self.received.inc()
        else:
            self.rejected.labels(reason=code or f"http_{status}").inc()


# --------------------------------------------------------------------------- middleware


def _state(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
                await _send_error(send, 400, "invalid_request", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _send_error(send, 413, "too_large", f"the body exceeds {limit} bytes")
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
                await _send_error(send, 413, "too_large", f"the body exceeds {limit} bytes")
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
            await record(_error_code(b"".join(m.get("body", b"") for m in held[1:])))
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
            await _send_error(send, 500, "internal_error", "internal error; see the server log")
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
        actor, role, action, source = _who(scope)
        outcome = _outcome_text(status, code)
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


def _who(scope: Scope) -> tuple[str, str, str, str]:
    """The audit entry's actor, role, action and source for a request."""
    principal: Principal | None = _state(scope).get(_STATE_PRINCIPAL)
    actor = principal.name if principal else "-"
    role = "-"
    if principal is not None:
        role = "agent" if principal.kind == "agent" else str(principal.role or "-")
    client = scope.get("client")
    source = str(client[0]) if client else "-"
    return actor, role, f"{scope['method']} {_path(scope)}", source


def _outcome_text(status: int, code: str | None) -> str:
    return f"{status} {code}" if code else str(status)


def _path(scope: Scope) -> str:
    path = str(scope["path"])
    return path if len(path) <= 512 else path[:509] + "..."


def _error_code(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    return code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,64}", code) else None


# --------------------------------------------------------------------------- the app


_bearer = HTTPBearer(
    auto_error=False,
    description="`msu_…` user token (auditor, operator, admin) or `msa_…` agent token.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (at most 500).")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
HostId = Annotated[str, Path(min_length=1, max_length=300)]
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ScanId = Annotated[str, Path(pattern=_UUID)]
AgentName = Annotated[str, Path(pattern=NAME_PATTERN)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid token"},
    403: {"model": ErrorOut, "description": "The token's role may not do this"},
    422: {"model": ErrorOut, "description": "Invalid parameters"},
    503: {"model": ErrorOut, "description": "The database is unreachable"},
}


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    token = credentials.credentials
    return token if 0 < len(token) <= MAX_TOKEN_LENGTH else None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        what = str(first.get("msg", "invalid"))
        # Never echo the input: it may be a token.
        return _error_response(422, "invalid_request", f"{where}: {what}" if where else what)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        message = "no such resource" if exc.status_code == 404 else str(exc.detail)
        return _error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)

    @app.exception_handler(StoreUnavailable)
    async def on_unavailable(request: Request, exc: StoreUnavailable) -> Response:
        logger.error("%s", exc)
        return _error_response(503, "database_unavailable", "the database is unreachable")

    @app.exception_handler(StoreError)
    async def on_store_error(request: Request, exc: StoreError) -> Response:
        logger.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return _error_response(500, "internal_error", "internal error; see the server log")


def _agent_principal(agent: Agent) -> Principal:
    return Principal(kind="agent", name=agent.name, role=None, agent_id=agent.id)


def _set_principal(request: Request, principal: Principal) -> None:
    """Remember who called, for the audit entry written when the answer is known."""
    _state(request.scope)[_STATE_PRINCIPAL] = principal


class _Auth:
    """Bearer token → principal, and the role each route needs (FastAPI dependencies)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.auditor = Depends(self.require(Role.AUDITOR))
        self.operator = Depends(self.require(Role.OPERATOR))
        self.admin = Depends(self.require(Role.ADMIN))

    def authenticate(self, request: Request, credentials: Credentials) -> Principal:
        """The user or agent the bearer token belongs to; 401 unless there is one."""
        token = _token(credentials)
        if token is None:
            _unauthenticated()
        if token.startswith("msu_"):
            user = self.store.user_by_token(token)
            if user is not None:
                principal = Principal(kind="user", name=user.name, role=user.role)
                _set_principal(request, principal)
                return principal
        elif token.startswith("msa_"):
            agent = self.store.agent_by_token(token)
            if agent is not None:
                _set_principal(request, _agent_principal(agent))
                if agent.revoked_at is not None:
                    raise ApiError(401, "agent_revoked", "this agent was revoked", _CHALLENGE)
                return _agent_principal(agent)
        _unauthenticated()

    def require(self, role: Role) -> Callable[..., Principal]:
        def dependency(principal: Annotated[Principal, Depends(self.authenticate)]) -> Principal:
            if principal.role is None or not principal.role.allows(role):
                raise ApiError(403, "forbidden", f"this needs the {role.value} role")
            return principal

        return dependency


def _refusal(exc: StoreError) -> ApiError:
    """The answer to a report the store refused after every check had passed."""
    if isinstance(exc, ReplayedReport):
        return ApiError(
            409, "replayed_report", "this report id was already received with other content"
        )
    if isinstance(exc, AgentRevoked):
        return ApiError(401, "agent_revoked", "this agent was revoked", _CHALLENGE)
    if isinstance(exc, HostClaimed):
        return ApiError(
            403,
            "host_claimed",
            "another agent reports this host; an admin must revoke that agent before this one"
            " may report it",
        )
    return ApiError(401, "unauthenticated", "an agent token is required", _CHALLENGE)


def _ingest_outcome_text(outcome: object) -> str:
    """The audit outcome of a report request, as the middleware would write it (`AuditNote`)."""
    if isinstance(outcome, IngestOutcome):
        return _outcome_text(200 if outcome.duplicate else 201, None)
    if isinstance(outcome, StoreError):
        refusal = _refusal(outcome)
        return _outcome_text(refusal.status, refusal.code)
    return _outcome_text(500, "internal_error")  # pragma: no cover — the store gives no other


class AgentCache:
    """Agent token → agent, so that a report's authentication and signature check need no
    database read. Safe to keep for long: the store re-checks, in the transaction that stores the
    report, that the agent is still enrolled with that key and token (`StaleCredential`,
    `AgentRevoked`); a stale entry costs a rejected report's signature check, never a stored one.
    Unknown tokens are not kept. Bounded: least recently used first out."""

    def __init__(self, store: Store, ttl_seconds: float = 900.0, size: int = 50_000) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, Agent]] = OrderedDict()

    async def get(self, token: str) -> Agent | None:
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(token)
            if cached is not None and now - cached[0] < self.ttl:
                self._entries.move_to_end(token)
                return cached[1]
        agent = await run_in_threadpool(self.store.agent_by_token, token)
        with self._lock:
            if agent is None or agent.revoked_at is not None:
                self._entries.pop(token, None)
            else:
                self._entries[token] = (now, agent)
                self._entries.move_to_end(token)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return agent


class _Ingest:
    """The report pipeline, in the contract's order. The checks are quick CPU work done on the
    event loop; the write is queued for the store's group commit and awaited."""

    def __init__(self, settings: CollectorSettings, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.agents = AgentCache(store)
        self.max_skew = timedelta(seconds=settings.limits.max_future_skew_seconds)

    async def __call__(
        self, request: Request, token: str | None, body: bytes
    ) -> tuple[int, IngestOutcome]:
        if not token or not token.startswith("msa_"):
            _unauthenticated("an agent token is required")
        agent = await self.agents.get(token)
        if agent is None:
            _unauthenticated("an agent token is required")
        _set_principal(request, _agent_principal(agent))
        if agent.revoked_at is not None:
            raise ApiError(401, "agent_revoked", "this agent was revoked", _CHALLENGE)
        now = self.clock()
        report, report_bytes = self.check(agent, body, now)
        actor, role, action, source = _who(request.scope)
        note = AuditNote(actor, role, action, source, now, _ingest_outcome_text)
        try:
            outcome = await asyncio.wrap_future(
                self.store.submit_ingest(agent, report, report_bytes, now, token=token, audit=note)
            )
        except (ReplayedReport, AgentRevoked, StaleCredential, HostClaimed) as exc:
            _state(request.scope)[_STATE_AUDITED] = True
            raise _refusal(exc) from None
        _state(request.scope)[_STATE_AUDITED] = True
        return (200 if outcome.duplicate else 201), outcome

    def check(self, agent: Agent, body: bytes, now: datetime) -> tuple[env.Report, bytes]:
        """Envelope → agent and algorithm → signature → report schema → clock skew."""
        if agent.public_key_pem is None or agent.alg is None:  # enrolment never completed
            _unauthenticated("an agent token is required")
        try:
            envelope, report_bytes, signature = env.open_envelope(body)
        except env.EnvelopeError as exc:
            raise ApiError(400, "invalid_envelope", str(exc)) from None
        except RecursionError:
            raise ApiError(400, "invalid_envelope", "envelope: nested too deeply") from None
        if envelope.agent != agent.name or envelope.alg != agent.alg.value:
            raise ApiError(
                403,
                "agent_mismatch",
                "the envelope names another agent or algorithm than the token",
            )
        try:
            env.verify(report_bytes, signature, agent.public_key_pem, envelope.alg)
        except env.SignatureInvalid as exc:  # also for a malformed signature: verify says so
            raise ApiError(403, "bad_signature", str(exc)) from None
        try:
            report = env.parse_report(report_bytes)
        except env.EnvelopeError as exc:
            raise ApiError(400, "invalid_report", str(exc)) from None
        except RecursionError:  # msgspec's depth limit on a deeply nested inventory or evidence
            raise ApiError(400, "invalid_report", "report: nested too deeply") from None
        if report.host.id.startswith(SCAN_HOST_PREFIX):
            raise ApiError(
                403,
                "host_claimed",
                f"host ids starting with {SCAN_HOST_PREFIX!r} belong to the collector's scans",
            )
        if report.generated_at > now + self.max_skew:
            raise ApiError(
                400,
                "report_from_future",
                f"generated_at is more than {int(self.max_skew.total_seconds())} s ahead of the "
                "collector's clock",
            )
        return report, report_bytes


def _agent_routes(app: FastAPI, settings: CollectorSettings, store: Store, clock: Clock) -> None:
    ingest = _Ingest(settings, store, clock)

    @app.post(
        f"{API}/enroll",
        status_code=201,
        response_model=EnrollOut,
        tags=["agents"],
        responses={
            400: {"model": ErrorOut, "description": "invalid_public_key"},
            401: {"model": ErrorOut, "description": "enrollment_token_invalid"},
        },
    )
    def enroll(body: EnrollIn, request: Request, response: Response) -> EnrollOut:
        """Trade a one-time enrolment token for the agent's API token, registering its key."""
        if not env.valid_public_key(body.public_key, body.alg):
            raise ApiError(
                400, "invalid_public_key", f"public_key is not a {body.alg} public key (PEM)"
            )
        try:
            agent, api_token = store.redeem_enrollment(
                body.token, body.name, body.alg, body.public_key, clock()
            )
        except EnrollmentInvalid as exc:
            raise ApiError(
                401,
                "enrollment_token_invalid",
                f"the enrolment token is unknown, expired, used or for another name ({exc.reason})",
            ) from None
        _set_principal(request, _agent_principal(agent))
        response.headers["Cache-Control"] = "no-store"
        return EnrollOut(agent=agent.name, api_token=api_token, alg=body.alg)

    @app.post(
        REPORTS_PATH,
        status_code=201,
        response_model=IngestOut,
        tags=["agents"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _envelope_schema()}},
            }
        },
        responses={
            200: {"model": IngestOut, "description": "Already stored (duplicate)"},
            400: {"model": ErrorOut, "description": "invalid_envelope, invalid_report, ..."},
            401: {"model": ErrorOut, "description": "unauthenticated, agent_revoked"},
            403: {"model": ErrorOut, "description": "agent_mismatch, bad_signature, host_claimed"},
            409: {"model": ErrorOut, "description": "replayed_report"},
            413: {"model": ErrorOut, "description": "too_large"},
            503: {"model": ErrorOut, "description": "database_unavailable"},
        },
    )
    async def post_report(request: Request, credentials: Credentials) -> JSONResponse:
        """Ingest one signed report (a `medsec.envelope/v1` document) with the agent's token."""
        body = await request.body()  # the body-limit middleware has bounded it already
        status, outcome = await ingest(request, _token(credentials), body)
        out = IngestOut(
            report_id=outcome.report_id, host_id=outcome.host_id, duplicate=outcome.duplicate
        )
        return JSONResponse(out.model_dump(), status_code=status)


def _read_routes(app: FastAPI, store: Store, auth: _Auth) -> None:
    Auditor = Annotated[Principal, auth.auditor]

    @app.get(f"{API}/hosts", response_model=PageOut[HostOut], tags=["read"], responses=_ERRORS)
    def list_hosts(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[HostOut]:
        """Hosts with their latest report's result counts."""
        return _page(store.list_hosts(limit, offset), _host)

    @app.get(
        f"{API}/hosts/{{host_id}}",
        response_model=HostDetailOut,
        tags=["read"],
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found"}},
    )
    def get_host(_: Auditor, host_id: HostId) -> HostDetailOut:
        """One host: its latest inventory and the results of its latest report."""
        found = store.get_host(host_id)
        if found is None:
            raise ApiError(404, "not_found", "no such host")
        host, inventory, results = found
        return HostDetailOut(
            host=_host(host), inventory=inventory, results=[_result(r) for r in results]
        )

    @app.get(
        f"{API}/hosts/{{host_id}}/reports",
        response_model=PageOut[ReportOut],
        tags=["read"],
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found"}},
    )
    def host_reports(
        _: Auditor, host_id: HostId, limit: Limit = 100, offset: Offset = 0
    ) -> PageOut[ReportOut]:
        """A host's reports, newest first."""
        page = store.host_reports(host_id, limit, offset)
        if page.total == 0 and store.get_host(host_id) is None:
            raise ApiError(404, "not_found", "no such host")
        return _page(page, _report)

    @app.get(f"{API}/results", response_model=PageOut[ResultOut], tags=["read"], responses=_ERRORS)
    def query_results(
        _: Auditor,
        check_id: Annotated[str | None, Query(max_length=200)] = None,
        status: _RESULT_STATUSES | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> PageOut[ResultOut]:
        """Results of each host's latest report, optionally of one check and one status."""
        return _page(store.query_results(check_id, status, limit, offset), _result)

    @app.get(f"{API}/audit", response_model=PageOut[AuditOut], tags=["read"], responses=_ERRORS)
    def audit_log(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[AuditOut]:
        """The audit log, in sequence order."""
        return _page(store.audit_entries(limit, offset), _audit)


def _scan_out(run: ScanRun) -> ScanOut:
    return ScanOut.model_validate(run, from_attributes=True)


def _scan_routes(
    app: FastAPI, store: Store, auth: _Auth, launcher: ScanLauncher, clock: Clock
) -> None:
    Operator = Annotated[Principal, auth.operator]
    Auditor = Annotated[Principal, auth.auditor]

    @app.post(
        f"{API}/scans",
        status_code=202,
        response_model=ScanOut,
        tags=["scans"],
        responses={
            **_ERRORS,
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
        return _scan_out(run)

    @app.get(f"{API}/scans", response_model=PageOut[ScanOut], tags=["scans"], responses=_ERRORS)
    def list_scans(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[ScanOut]:
        """Scans started through the API, newest first."""
        return _page(store.list_scans(limit, offset, clock()), _scan_out)

    @app.get(
        f"{API}/scans/{{scan_id}}",
        response_model=ScanOut,
        tags=["scans"],
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found"}},
    )
    def get_scan(_: Auditor, scan_id: ScanId) -> ScanOut:
        """One scan: running, then passed, findings (its results stored as `report_id`) or
        failed (`message` says why)."""
        run = store.get_scan(scan_id, clock())
        if run is None:
            raise ApiError(404, "not_found", f"no scan {scan_id}")
        return _scan_out(run)


def _admin_routes(app: FastAPI, store: Store, auth: _Auth, clock: Clock) -> None:
    Admin = Annotated[Principal, auth.admin]

    @app.get(f"{API}/agents", response_model=list[AgentOut], tags=["admin"], responses=_ERRORS)
    def list_agents(_: Admin) -> list[AgentOut]:
        return [_agent(a) for a in store.list_agents()]

    @app.post(
        f"{API}/agents/{{name}}/revoke",
        response_model=AgentOut,
        tags=["admin"],
        responses={**_ERRORS, 404: {"model": ErrorOut, "description": "not_found"}},
    )
    def revoke_agent(_: Admin, name: AgentName) -> AgentOut:
        """Revoke an agent: its token stops working at once; its reports stay."""
        try:
            return _agent(store.revoke_agent(name, clock()))
        except NotFound:
            raise ApiError(404, "not_found", f"no agent named {name}") from None

    @app.get(f"{API}/users", response_model=list[UserOut], tags=["admin"], responses=_ERRORS)
    def list_users(_: Admin) -> list[UserOut]:
        return [_user(u) for u in store.list_users()]


def _service_routes(app: FastAPI, store: Store, auth: _Auth, metrics: Metrics) -> None:
    Auditor = Annotated[Principal, auth.auditor]

    @app.get(
        "/healthz",
        response_model=HealthOut,
        tags=["service"],
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

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **_ERRORS},
    )
    def prometheus(_: Auditor) -> Response:
        """Prometheus metrics (any user token)."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


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

    launcher = ScanLauncher(settings.scans, store, clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await launcher.close()  # scans still running are stopped and recorded as failed
        if owns_store:
            await run_in_threadpool(store.close)

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
    _install_error_handlers(app)
    auth = _Auth(store)
    _agent_routes(app, settings, store, clock)
    _read_routes(app, store, auth)
    _scan_routes(app, store, auth, launcher, clock)
    _admin_routes(app, store, auth, clock)
    _service_routes(app, store, auth, metrics)
    max_report = settings.limits.max_report_bytes
    # Added last = outermost: the audit sees every answer, the body limit's 413 included.
    app.add_middleware(
        BodyLimitMiddleware,
        limit_for=lambda path: max_report if path == REPORTS_PATH else MAX_OTHER_BODY_BYTES,
    )
    app.add_middleware(AuditMiddleware, store=store, clock=clock, metrics=metrics)
    return app
