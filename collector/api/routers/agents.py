"""The `agents` routes: enrolment (a one-time token for the agent's API token) and report ingest."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
import re

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from checks import envelope as env
from collector.api.auth import Credentials, agent_principal, bearer_token
from collector.api.errors import ApiError, ErrorOut
from collector.api.ingest import Ingest
from collector.api.middleware import Clock, set_principal
from collector.api.schemas import (
    API,
    REPORTS_PATH,
    EnrollIn,
    EnrollOut,
    IngestOut,
    envelope_schema,
    to_out,
)
from collector.settings import CollectorSettings
from collector.store import EnrollmentInvalid, Store

_PEM_PUBLIC_KEY = re.compile(
    r"-----BEGIN PUBLIC KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n){1,100}-----END PUBLIC KEY-----"
)


def key_problem(public_key: str, alg: env.Alg) -> str | None:
    """Why `public_key` cannot be registered for `alg`, or None: it must be one PEM public key
    block (surrounding blank space aside) of printable ASCII — no NUL, which PostgreSQL cannot
    store, and nothing around it that the store would keep unread — and a key of that kind."""
    if not _PEM_PUBLIC_KEY.fullmatch(public_key.strip(" \t\r\n")):
        return "public_key is not one PEM public key block (-----BEGIN PUBLIC KEY-----)"
    if not env.valid_public_key(public_key, alg):
        return f"public_key is not a {alg} public key (PEM)"
    return None


def router(settings: CollectorSettings, store: Store, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["agents"])
    ingest = Ingest(settings, store, clock)

    @routes.post(
        f"{API}/enroll",
        status_code=201,
        response_model=EnrollOut,
        responses={
            400: {"model": ErrorOut, "description": "invalid_public_key"},
            401: {"model": ErrorOut, "description": "enrollment_token_invalid"},
        },
    )
    def enroll(body: EnrollIn, request: Request, response: Response) -> EnrollOut:
        """Trade a one-time enrolment token for the agent's API token, registering its key."""
        # The token first: a refused token is refused alike whatever key came with it, and
        # nothing an unauthenticated caller sent is read before that.
        try:
            store.check_enrollment(body.token, body.name, clock())
            problem = key_problem(body.public_key, body.alg)
            if problem is not None:  # the token stays unspent
                raise ApiError(400, "invalid_public_key", problem)
            agent, api_token = store.redeem_enrollment(
                body.token, body.name, body.alg, body.public_key, clock()
            )
        except EnrollmentInvalid as exc:
            raise ApiError(
                401,
                "enrollment_token_invalid",
                f"the enrolment token is unknown, expired, used or for another name ({exc.reason})",
            ) from None
        set_principal(request.scope, agent_principal(agent))
        response.headers["Cache-Control"] = "no-store"
        return EnrollOut(agent=agent.name, api_token=api_token, alg=body.alg)

    @routes.post(
        REPORTS_PATH,
        status_code=201,
        response_model=IngestOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": envelope_schema()}},
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
        status, outcome = await ingest(request, bearer_token(credentials), body)
        return JSONResponse(to_out(IngestOut, outcome).model_dump(), status_code=status)

    return routes
