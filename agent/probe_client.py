"""The probe's side of the collector's probe API (`/api/v1/probe/...`): claim jobs (a long
poll), renew their leases, post each result as a signed envelope.

The same pieces as report delivery (agent/push.py): TLS verified against the configured CA only,
TLS 1.2 at least, the agent's API token, no redirects followed (the token goes to the configured
URL and nowhere else). Asynchronous (httpx's AsyncClient) so that a claim waiting at the collector
can be given up at once when the probe is told to stop. Answers are sorted into three outcomes
the loop acts on: the collector is down or busy (`CollectorDown`: wait and try again), refuses
this probe (`ProbeRefused`: a person must act), or says the claim is no longer ours (`LeaseLost`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from agent import __version__
from agent.push import error_of, import_httpx, tls_context

if TYPE_CHECKING:
    import httpx

PROG = "medsec-agent"
CLAIM_PATH = "/api/v1/probe/claim"
LEASES_PATH = "/api/v1/probe/leases"
RESULT_PATH = "/api/v1/probe/jobs/{id}/result"
RESULT_SCHEMA = "medsec.job-result/v1"
_TRANSIENT = {408, 425, 429}


class CollectorDown(Exception):
    """The collector could not be reached, or answered 5xx/429: try again later."""


class ProbeRefused(Exception):
    """The collector refuses this probe (not enrolled as one, token revoked, request refused)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class LeaseLost(Exception):
    """The job's claim is no longer this probe's (its lease ran out and another took it)."""


class ClaimedJob(msgspec.Struct, frozen=True):
    """One job as `POST /api/v1/probe/claim` hands it out (unknown fields are ignored: a newer
    collector may say more)."""

    id: str
    claim_id: str
    kind: str
    request: Any
    lease_until: str | None = None
    deadline: str | None = None
    scan_id: str | None = None
    attempts: int = 1

    def __repr__(self) -> str:
        return f"ClaimedJob(id={self.id!r}, kind={self.kind!r}, attempts={self.attempts})"


class Claim(msgspec.Struct, frozen=True):
    zone: str
    lease_seconds: float
    jobs: list[ClaimedJob] = msgspec.field(default_factory=list)


class _Leases(msgspec.Struct, frozen=True):
    leases: dict[str, str | None]


def result_payload(job: ClaimedJob, *, result: dict[str, Any] | None, error: str | None) -> bytes:
    """The signed part of a result: which job and claim, done or failed, and what came of it."""
    return msgspec.json.encode(
        {
            "schema": RESULT_SCHEMA,
            "job_id": job.id,
            "claim_id": job.claim_id,
            "status": "failed" if error is not None else "done",
            "result": result if error is None else None,
            "error": error,
        }
    )


class ProbeClient:
    """One collector, one agent token. `async with` it, or `aclose()` it."""

    def __init__(
        self, base_url: str, ca_file: str, api_token: str, *, timeout: float = 10.0
    ) -> None:
        hx = import_httpx()
        self._httpx = hx
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient = hx.AsyncClient(
            verify=tls_context(ca_file),
            timeout=timeout,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {api_token}",
                "User-Agent": f"{PROG}/{__version__} probe",
            },
        )

    async def __aenter__(self) -> ProbeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(
        self, path: str, *, json: Any = None, content: bytes | None = None, wait: float = 0.0
    ) -> httpx.Response:
        hx = self._httpx
        try:
            response = await self._client.post(
                self.base_url + path,
                json=json,
                content=content,
                headers={"Content-Type": "application/json"},
                # A long poll holds the answer back for up to `wait` seconds.
                timeout=self.timeout + wait,
            )
        except hx.TransportError as exc:
            detail = " ".join(str(exc).split())[:300] or "no detail"
            raise CollectorDown(f"{type(exc).__name__}: {detail}") from None
        status = response.status_code
        if status >= 500 or status in _TRANSIENT:
            code, message = error_of(response)
            raise CollectorDown(f"answered {status} {code}: {message}")
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            raise ProbeRefused(status, "redirect", f"redirect to {where}: check collector.url")
        if status == 409:
            raise LeaseLost(error_of(response)[1])
        if status >= 400:
            raise ProbeRefused(status, *error_of(response))
        return response

    async def claim(self, most: int, wait: float) -> Claim:
        response = await self._post(CLAIM_PATH, json={"max": most, "wait_seconds": wait}, wait=wait)
        try:
            return msgspec.json.decode(response.content, type=Claim)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProbeRefused(response.status_code, "bad_answer", f"claim answer: {exc}") from None

    async def renew(self, claims: list[tuple[str, str]]) -> dict[str, bool]:
        """job id -> whether its lease was renewed (False: lost, stop working on it)."""
        body = {"claims": [{"id": job_id, "claim_id": claim_id} for job_id, claim_id in claims]}
        response = await self._post(LEASES_PATH, json=body)
        try:
            leases = msgspec.json.decode(response.content, type=_Leases).leases
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ProbeRefused(
                response.status_code, "bad_answer", f"leases answer: {exc}"
            ) from None
        return {job_id: leases.get(job_id) is not None for job_id, _ in claims}

    async def post_result(self, job_id: str, envelope: bytes) -> bool:
        """Stored: True; the collector had it already (a duplicate): False."""
        response = await self._post(RESULT_PATH.format(id=job_id), content=envelope)
        try:
            body = response.json()
        except ValueError:
            body = None
        return not (isinstance(body, dict) and body.get("duplicate") is True)
