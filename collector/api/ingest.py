"""The report ingest pipeline behind `POST /api/v1/reports`.

Its checks run in a fixed order, cheapest and least trusting first (the order is a contract):
size (the body-limit middleware) → token → envelope → agent and algorithm → signature → report
schema, then what a received report must be besides (`checks.report.check_received`: times a
clock could give, a host id and nesting the store and the API can hold) → clock skew → store. The
checks are quick CPU work done on the event loop; the write is queued for the store's group commit
and awaited, together with the request's audit entry. A report that passed every check and still
cannot be written fails alone (the group commit retries its batch job by job) and is answered
500 internal_error, with its traceback in the server log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from checks import envelope as env
from checks import report as contract
from collector.api.auth import agent_principal
from collector.api.errors import CHALLENGE, ApiError, unauthenticated
from collector.api.middleware import Clock, mark_audited, outcome_text, set_principal, who
from collector.models import Agent, IngestOutcome
from collector.scan import SCAN_HOST_PREFIX
from collector.settings import CollectorSettings
from collector.store import (
    AgentRevoked,
    AuditNote,
    HostClaimed,
    ReplayedReport,
    StaleCredential,
    Store,
    StoreError,
)


def refusal(exc: StoreError) -> ApiError:
    """The answer to a report the store refused after every check had passed."""
    if isinstance(exc, ReplayedReport):
        return ApiError(
            409, "replayed_report", "this report id was already received with other content"
        )
    if isinstance(exc, AgentRevoked):
        return ApiError(401, "agent_revoked", "this agent was revoked", CHALLENGE)
    if isinstance(exc, HostClaimed):
        return ApiError(
            403,
            "host_claimed",
            "another agent reports this host; an admin must revoke that agent before this one"
            " may report it",
        )
    return ApiError(401, "unauthenticated", "an agent token is required", CHALLENGE)


def ingest_outcome_text(outcome: object) -> str:
    """The audit outcome of a report request, as the middleware would write it (`AuditNote`)."""
    if isinstance(outcome, IngestOutcome):
        return outcome_text(200 if outcome.duplicate else 201, None)
    if isinstance(outcome, StoreError):
        answer = refusal(outcome)
        return outcome_text(answer.status, answer.code)
    return outcome_text(500, "internal_error")  # pragma: no cover — the store gives no other


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


class Ingest:
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
            unauthenticated("an agent token is required")
        agent = await self.agents.get(token)
        if agent is None:
            unauthenticated("an agent token is required")
        set_principal(request.scope, agent_principal(agent))
        if agent.revoked_at is not None:
            raise ApiError(401, "agent_revoked", "this agent was revoked", CHALLENGE)
        now = self.clock()
        report, report_bytes, signature = self.check(agent, body, now)
        actor, role, action, source = who(request.scope)
        note = AuditNote(actor, role, action, source, now, ingest_outcome_text)
        try:
            outcome = await asyncio.wrap_future(
                self.store.submit_ingest(
                    agent, report, report_bytes, now, token=token, audit=note, signature=signature
                )
            )
        except (ReplayedReport, AgentRevoked, StaleCredential, HostClaimed) as exc:
            mark_audited(request.scope)
            raise refusal(exc) from None
        mark_audited(request.scope)
        return (200 if outcome.duplicate else 201), outcome

    def check(self, agent: Agent, body: bytes, now: datetime) -> tuple[env.Report, bytes, bytes]:
        """Envelope → agent and algorithm → signature → report schema → clock skew."""
        if agent.public_key_pem is None or agent.alg is None:  # enrolment never completed
            unauthenticated("an agent token is required")
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
        try:
            contract.check_received(report)
        except contract.ReportInvalid as exc:
            raise ApiError(400, "invalid_report", str(exc)) from None
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
        return report, report_bytes, signature
