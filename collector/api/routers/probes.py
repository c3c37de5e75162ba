"""The `probes` routes: a probe inside a zone dials out to claim that zone's scan jobs (a long
poll), renews its leases while it works, and posts each result as a signed envelope.

Only an agent enrolled as a probe (`medsec agents enroll NAME --probe-zone ZONE`) may call them,
with its agent token: an ordinary agent is refused `not_a_probe` and a user's token `forbidden`.
A probe sees only its own zone's jobs: a job of another zone is answered 404 like one that does
not exist. A probe's token → agent lookup is cached for a few seconds, as report ingest caches it,
and safe for the same reason: every write of the queue checks again, in its own transaction, that
the agent is still an active probe of the job's zone, so a revoked probe claims, renews and
stores nothing from the moment it is revoked; only its `401` may come that much later.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
import asyncio
import time
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from checks import envelope as env
from collector.api.auth import Auth, Credentials, agent_principal, bearer_token
from collector.api.errors import CHALLENGE, ERRORS, ApiError, ErrorOut, unauthenticated
from collector.api.ingest import AgentCache
from collector.api.middleware import Clock, set_principal
from collector.api.schemas import (
    API,
    ClaimedJobOut,
    ClaimIn,
    ClaimOut,
    JobId,
    JobResultOut,
    LeasesIn,
    LeasesOut,
    envelope_schema,
    to_out,
)
from collector.models import Agent
from collector.settings import CollectorSettings
from collector.store import AgentRevoked, NotFound, Store
from collector.store.jobs import Job, LeaseLost

JOB_RESULT_SCHEMA = "medsec.job-result/v1"
PROBE_AUTH_TTL = 10.0
"""Seconds a probe's token → agent lookup is reused (see the module's docstring)."""
POLL_SECONDS = 0.25
"""How often a waiting claim looks for new jobs (a read; the claim itself only when one is
there)."""

_PROBE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": ErrorOut, "description": "unauthenticated, agent_revoked"},
    403: {"model": ErrorOut, "description": "not_a_probe; forbidden (a user's token)"},
}


class JobResult(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a probe signs about a job it ran (`medsec.job-result/v1`)."""

    schema: Literal["medsec.job-result/v1"]
    job_id: Annotated[str, msgspec.Meta(max_length=64)]
    claim_id: Annotated[str, msgspec.Meta(max_length=64)]
    status: Literal["done", "failed"]
    result: dict[str, Any] | None = None
    error: str | None = None


def open_result(agent: Agent, body: bytes) -> JobResult:
    """Envelope → agent and algorithm → signature → payload schema, as report ingest checks a
    report: nothing the probe sent is parsed before its signature verified."""
    if agent.public_key_pem is None or agent.alg is None:  # enrolment never completed
        unauthenticated("an agent token is required")
    try:
        envelope, payload, signature = env.open_envelope(body)
    except env.EnvelopeError as exc:
        raise ApiError(400, "invalid_envelope", str(exc)) from None
    if envelope.agent != agent.name or envelope.alg != agent.alg.value:
        raise ApiError(
            403, "agent_mismatch", "the envelope names another agent or algorithm than the token"
        )
    try:
        env.verify(payload, signature, agent.public_key_pem, envelope.alg)
    except env.SignatureInvalid as exc:
        raise ApiError(403, "bad_signature", str(exc)) from None
    try:
        result = msgspec.json.decode(payload, type=JobResult)
    except RecursionError:
        raise ApiError(400, "invalid_result", "job result: nested too deeply") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "invalid_result", f"job result: {exc}") from None
    if result.status == "done" and result.error is not None:
        raise ApiError(400, "invalid_result", "job result: a done job carries no error")
    return result


def finish(store: Store, clock: Clock, agent: Agent, job_id: str, body: bytes) -> JobResultOut:
    """Check a posted result, then store it under its claim (in the thread pool)."""
    result = open_result(agent, body)
    if result.job_id != job_id:
        raise ApiError(400, "invalid_result", "job result: job_id is not the job posted to")
    try:
        stored = store.finish_job(
            job_id,
            result.claim_id,
            agent.name,
            clock(),
            result=result.result,
            error=(result.error or "failed, no reason given")
            if result.status == "failed"
            else None,
            zone=agent.probe_zone,
            enrolled=True,
        )
    except AgentRevoked:
        raise ApiError(401, "agent_revoked", "this agent was revoked", CHALLENGE) from None
    except LeaseLost:
        raise ApiError(
            409,
            "lease_lost",
            "the job was claimed again after this claim's lease ran out; result not stored",
        ) from None
    except NotFound:  # or another zone's job: this probe may not learn it exists
        raise ApiError(404, "not_found", f"no job {job_id}") from None
    except ValueError as exc:  # the store's own bounds (nesting)
        raise ApiError(400, "invalid_result", f"job result: {exc}") from None
    return JobResultOut(stored=stored, duplicate=not stored)


def router(settings: CollectorSettings, store: Store, auth: Auth, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["probes"])
    lease = timedelta(seconds=settings.probes.lease_seconds)

    known = AgentCache(store, ttl_seconds=PROBE_AUTH_TTL)

    async def probe(request: Request, credentials: Credentials) -> Agent:
        """The probe calling: its agent token, of an active agent enrolled with a zone."""
        token = bearer_token(credentials)
        if token is None or not token.startswith("msa_"):
            # 401 unless a user's token; a user is named in the audit entry, then refused.
            await run_in_threadpool(auth.authenticate, request, credentials)
            raise ApiError(403, "forbidden", "these routes take a probe's agent token")
        agent = await known.get(token)
        if agent is None:
            unauthenticated()
        set_principal(request.scope, agent_principal(agent))
        if agent.revoked_at is not None:
            raise ApiError(401, "agent_revoked", "this agent was revoked", CHALLENGE)
        if agent.probe_zone is None:
            raise ApiError(
                403,
                "not_a_probe",
                "this agent is not enrolled as a probe (medsec agents enroll NAME --probe-zone)",
            )
        return agent

    Probe = Annotated[Agent, Depends(probe)]

    @routes.post(f"{API}/probe/claim", response_model=ClaimOut, responses=_PROBE_ERRORS)
    async def claim(body: ClaimIn, agent: Probe, request: Request) -> ClaimOut:
        """Claim the oldest jobs of the probe's zone under a lease of `probes.lease_seconds`;
        with none, wait up to `wait_seconds` for one (a long poll) before answering none."""
        zone = str(agent.probe_zone)
        limit = min(body.max, settings.probes.max_claim)
        give_up = time.monotonic() + body.wait_seconds

        def take() -> list[Job]:
            return store.claim_jobs(zone, agent.name, clock(), lease, limit, enrolled=True)

        jobs = await run_in_threadpool(take)
        while not jobs:
            left = give_up - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(POLL_SECONDS, left))
            if await request.is_disconnected():  # jobs claimed now would wait out their lease
                break
            if await run_in_threadpool(store.has_claimable, zone, clock()):
                jobs = await run_in_threadpool(take)
        return ClaimOut(
            zone=zone,
            lease_seconds=settings.probes.lease_seconds,
            jobs=[to_out(ClaimedJobOut, job) for job in jobs],
        )

    @routes.post(f"{API}/probe/leases", response_model=LeasesOut, responses=_PROBE_ERRORS)
    def renew(body: LeasesIn, agent: Probe) -> LeasesOut:
        """Renew the probe's leases on the jobs it works on; null for a claim that is lost (the
        job went to another claim, finished, or passed its deadline): stop working on it."""
        claims = [(claim.id, claim.claim_id) for claim in body.claims]
        renewed = store.renew_leases(claims, agent.name, clock(), lease, enrolled=True)
        return LeasesOut(leases=renewed)

    @routes.post(
        f"{API}/probe/jobs/{{job_id}}/result",
        response_model=JobResultOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": envelope_schema()}},
            }
        },
        responses={
            **_PROBE_ERRORS,
            400: {"model": ErrorOut, "description": "invalid_envelope, invalid_result"},
            404: {"model": ErrorOut, "description": "not_found (or another zone's job)"},
            409: {"model": ErrorOut, "description": "lease_lost"},
            413: {"model": ErrorOut, "description": "too_large"},
        },
    )
    async def post_result(job_id: JobId, request: Request, agent: Probe) -> JobResultOut:
        """Store a job's result, a signed envelope whose payload is `medsec.job-result/v1`
        (`job_id`, `claim_id`, `status` done|failed, `result`, `error`). Stored once: a second
        post answers `duplicate`; a claim that lost its lease is refused `lease_lost`."""
        body = await request.body()  # the body-limit middleware has bounded it already
        return await run_in_threadpool(finish, store, clock, agent, job_id, body)

    return routes
