"""The probe job queue: scan jobs claimed by probes that dial out, under a lease.

A scan queues one job per operation a probe must run in its zone (`enqueue_jobs`); a probe of that
zone claims the oldest claimable ones (`claim_jobs`) — queued, or claimed under a lease that ran
out — each claim getting a fresh `claim_id`, one more attempt and a lease it renews while it works
(`renew_leases`); its result is stored once, and only under the job's current claim
(`finish_job`). On PostgreSQL claims take rows with `SELECT … FOR UPDATE SKIP LOCKED`, so any
number of collector processes hand out each job to one claim at a time without waiting on each
other; on SQLite the claim's transaction starts with `BEGIN IMMEDIATE` (the store's write
transactions), so claims from every process and thread run one after the other with the same
outcome. A job past its deadline is never handed out: claims, `expire_jobs` and
`fail_jobs_of_scan` close it as failed instead.

Rows that several jobs' writers touch are locked in id order (`_lock_in_order`) so that two
multi-row writers on PostgreSQL can never wait on each other in a cycle; the claim itself never
waits at all (it skips locked rows).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import msgspec
import sqlalchemy as sa

from collector.store.engine import Database
from collector.store.errors import AgentRevoked, NotFound, StoreError
from collector.store.rows import Row
from collector.store.schema import agents, jobs
from collector.store.values import safe_text, storable, strip_nul, utc

JobKind = Literal["privileged", "nmap", "probe", "noop"]
"""What a job asks a probe to do: the `Vantage` operations of a scan, and `noop` (tests and
benchmarks: the probe answers at once)."""
JobState = Literal["queued", "claimed", "done", "failed"]

JOB_KINDS: frozenset[str] = frozenset(get_args(JobKind))
MAX_REQUEST_BYTES = 65_536
"""A job's request (argv, targets, options) is small; more means a bug or an attack."""
MAX_ERROR_CHARS = 2000
"""A job's error is one line for a person; longer text is cut."""
MAX_DEPTH = 32
"""Nesting a job's request or result may have: what probes send is shallow (nmap's XML travels
as one string), and deeper documents would only exhaust the recursion of the code that stores
them."""
MAX_CLAIM = 100
MAX_IDS = 1000
"""Jobs one `get_jobs` or `renew_leases` call may name."""
DEADLINE_PASSED = "deadline passed"

_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""A zone's name as zones files allow it (collector.scan.zones)."""
_UNFINISHED = ("queued", "claimed")


class LeaseLost(StoreError):
    """The claim is no longer the job's current one: its lease ran out and another claim took
    the job (or it never held it). Whoever held it must stop working on the job."""


@dataclass(frozen=True)
class JobSpec:
    """A job to queue."""

    zone: str
    """The zone whose probes may claim it."""
    kind: JobKind
    request: dict[str, Any]
    """What the probe runs (JSON, at most `MAX_REQUEST_BYTES` encoded); the probe checks it."""
    deadline: datetime
    """Past this the job is failed, never handed out."""
    scan_id: str | None = None


@dataclass(frozen=True)
class Job:
    """A job as stored."""

    id: str
    scan_id: str | None
    zone: str
    kind: str
    request: dict[str, Any]
    state: JobState
    attempts: int
    """Claims made so far (a claim whose lease ran out and was claimed again counts twice)."""
    created_at: datetime
    deadline: datetime
    claim_id: str | None
    """The current claim: only a result posted under it is stored."""
    claimed_by: str | None
    """The agent holding (or that last held) the job."""
    lease_until: datetime | None
    finished_at: datetime | None
    finished_by: str | None
    """The agent whose result closed the job; None when the collector failed it."""
    result: dict[str, Any] | None
    error: str | None


_JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.scan_id,
    jobs.c.zone,
    jobs.c.kind,
    jobs.c.request,
    jobs.c.state,
    jobs.c.attempts,
    jobs.c.created_at,
    jobs.c.deadline,
    jobs.c.claim_id,
    jobs.c.claimed_by,
    jobs.c.lease_until,
    jobs.c.finished_at,
    jobs.c.finished_by,
    jobs.c.result,
    jobs.c.error,
)


def _to_job(row: Row) -> Job:
    return Job(
        id=row.id,
        scan_id=row.scan_id,
        zone=row.zone,
        kind=row.kind,
        request=row.request,
        state=row.state,
        attempts=row.attempts,
        created_at=row.created_at,
        deadline=row.deadline,
        claim_id=row.claim_id,
        claimed_by=row.claimed_by,
        lease_until=row.lease_until,
        finished_at=row.finished_at,
        finished_by=row.finished_by,
        result=row.result,
        error=row.error,
    )


def check_zone(zone: str) -> None:
    if not isinstance(zone, str) or not _ZONE.match(zone):
        raise ValueError(f"{zone!r} is not a zone name")


def _check_spec(spec: JobSpec) -> dict[str, Any]:
    check_zone(spec.zone)
    if spec.kind not in JOB_KINDS:
        raise ValueError(f"job kind {spec.kind!r} is not one of {', '.join(sorted(JOB_KINDS))}")
    if not isinstance(spec.request, dict):
        raise ValueError("a job's request must be a JSON object")
    check_depth("a job's request", spec.request)
    try:
        size = len(msgspec.json.encode(spec.request))
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValueError(f"a job's request is not JSON: {exc}") from None
    if size > MAX_REQUEST_BYTES:
        raise ValueError(f"a job's request is {size} bytes encoded; at most {MAX_REQUEST_BYTES}")
    if spec.scan_id is not None and not storable(spec.scan_id):
        raise ValueError("a scan id must not contain NUL characters")
    request: dict[str, Any] = strip_nul(spec.request)
    return request


def check_depth(what: str, value: object) -> None:
    """`ValueError` when `value` nests lists and objects deeper than `MAX_DEPTH` (iterative:
    the check itself cannot run out of stack)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if not children:
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"{what} nests deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _error_text(error: str) -> str:
    text = " ".join(safe_text(error).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _check_ids(ids: Sequence[str], what: str) -> list[str]:
    if len(ids) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} {what} at once (got {len(ids)})")
    return [i for i in ids if isinstance(i, str) and storable(i)]


def _probe_of(agent: str, zone: sa.ColumnElement[str] | str) -> sa.Exists:
    """`agent` is an active agent enrolled as a probe of `zone` — what the API checked when it
    authenticated the request, checked again in the transaction that acts on it (the API may
    have relied on a cached lookup)."""
    return sa.exists().where(
        agents.c.name == agent,
        agents.c.revoked_at.is_(None),
        agents.c.enrolled_at.is_not(None),
        agents.c.probe_zone == zone,
    )


class Jobs(Database):
    """The job queue, each method one transaction."""

    def _lock_in_order(self, conn: sa.Connection, where: sa.ColumnElement[bool]) -> list[str]:
        """Lock the rows `where` selects, in id order (PostgreSQL; SQLite's transaction holds
        the whole database already), and give their ids."""
        query = sa.select(jobs.c.id).where(where).order_by(jobs.c.id)
        if self._dialect == "postgresql":
            query = query.with_for_update()
        return list(conn.execute(query).scalars())

    def enqueue_jobs(self, specs: Sequence[JobSpec], now: datetime) -> list[str]:
        """Queue the jobs (all or none); their ids, in the order given. `ValueError` names the
        first spec that cannot be queued (a zone name, a kind, a request too large)."""
        now = utc(now)
        rows: list[dict[str, Any]] = [
            {
                "id": str(uuid.uuid4()),
                "scan_id": spec.scan_id,
                "zone": spec.zone,
                "kind": spec.kind,
                "request": _check_spec(spec),
                "state": "queued",
                "attempts": 0,
                "created_at": now,
                "deadline": utc(spec.deadline),
            }
            for spec in specs
        ]
        if rows:
            with self._tx(write=True) as conn:
                conn.execute(sa.insert(jobs), rows)
        return [str(row["id"]) for row in rows]

    def claim_jobs(
        self,
        zone: str,
        agent: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        *,
        enrolled: bool = False,
    ) -> list[Job]:
        """Claim up to `limit` jobs of `zone` for `agent`, oldest first: queued ones, and claimed
        ones whose lease ran out (their old claim is lost). Each gets a fresh `claim_id`, one
        more attempt and a lease until `now + lease`. Jobs of the zone past their deadline are
        failed here, never handed out. On PostgreSQL rows another claim holds are skipped, so
        concurrent claims from any number of processes take disjoint jobs without waiting.
        With `enrolled`, nothing is claimed unless `agent` is an active probe of `zone`."""
        check_zone(zone)
        if not 1 <= limit <= MAX_CLAIM:
            raise ValueError(f"a claim takes 1 to {MAX_CLAIM} jobs (got {limit})")
        if lease <= timedelta(0):
            raise ValueError("a lease must be positive")
        agent = safe_text(agent)
        now = utc(now)
        pg = self._dialect == "postgresql"
        with self._tx(write=True) as conn:
            expired = (
                sa.select(jobs.c.id)
                .where(
                    jobs.c.zone == zone,
                    jobs.c.state.in_(_UNFINISHED),
                    jobs.c.deadline <= now,
                )
                .limit(1000)
            )
            if pg:  # a row another transaction holds is left for the next claim
                expired = expired.with_for_update(skip_locked=True)
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(expired.scalar_subquery()))
                .values(state="failed", finished_at=now, error=DEADLINE_PASSED)
            )
            claimable = (
                sa.select(jobs.c.id)
                .where(
                    jobs.c.zone == zone,
                    sa.or_(
                        jobs.c.state == "queued",
                        sa.and_(jobs.c.state == "claimed", jobs.c.lease_until < now),
                    ),
                    jobs.c.deadline > now,
                    *([_probe_of(agent, zone)] if enrolled else []),
                )
                .order_by(jobs.c.created_at)
                .limit(limit)
            )
            if pg:
                claimable = claimable.with_for_update(skip_locked=True)
            ids = list(conn.execute(claimable).scalars())
            if not ids:
                return []
            claims = {job_id: str(uuid.uuid4()) for job_id in ids}
            rows = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(ids))
                .values(
                    state="claimed",
                    claim_id=sa.case(claims, value=jobs.c.id),
                    attempts=jobs.c.attempts + 1,
                    claimed_by=agent,
                    claimed_at=now,
                    lease_until=now + lease,
                )
                .returning(*_JOB_COLUMNS)
            ).all()
        order = {job_id: i for i, job_id in enumerate(ids)}
        return sorted((_to_job(row) for row in rows), key=lambda job: order[job.id])

    def has_claimable(self, zone: str, now: datetime) -> bool:
        """Whether a claim of `zone` now would take or fail a job: a read, so that a probe
        waiting for work costs no write transaction (on SQLite, the database's one writer)."""
        check_zone(zone)
        now = utc(now)
        with self._tx(write=False) as conn:
            found = conn.execute(
                sa.select(jobs.c.id)
                .where(
                    jobs.c.zone == zone,
                    sa.or_(
                        jobs.c.state == "queued",
                        sa.and_(
                            jobs.c.state == "claimed",
                            sa.or_(jobs.c.lease_until < now, jobs.c.deadline <= now),
                        ),
                    ),
                )
                .limit(1)
            ).first()
        return found is not None

    def renew_leases(
        self,
        claims: Sequence[tuple[str, str]],
        agent: str,
        now: datetime,
        lease: timedelta,
        *,
        enrolled: bool = False,
    ) -> dict[str, datetime | None]:
        """Extend `agent`'s leases on the jobs it claims (job id, claim id) to `now + lease`;
        each job id → its new lease end, or None when the claim is lost (claimed again by
        another, finished, past its deadline, or never the job's): stop working on it. A lease
        that ran out but was not claimed again is still the job's and is renewed. With
        `enrolled`, every claim is lost unless `agent` is an active probe of the job's zone."""
        if lease <= timedelta(0):
            raise ValueError("a lease must be positive")
        if len(claims) > MAX_IDS:
            raise ValueError(f"at most {MAX_IDS} leases at once (got {len(claims)})")
        now = utc(now)
        outcome: dict[str, datetime | None] = {job_id: None for job_id, _ in claims}
        wanted = [
            (job_id, claim_id)
            for job_id, claim_id in claims
            if isinstance(job_id, str) and isinstance(claim_id, str) and storable(job_id, claim_id)
        ]
        if not wanted:
            return outcome
        until = now + lease
        with self._tx(write=True) as conn:
            held = sa.and_(
                sa.tuple_(jobs.c.id, jobs.c.claim_id).in_(wanted),
                jobs.c.state == "claimed",
                jobs.c.claimed_by == safe_text(agent),
                jobs.c.deadline > now,
                *([_probe_of(safe_text(agent), jobs.c.zone)] if enrolled else []),
            )
            ids = self._lock_in_order(conn, held)
            if ids:
                conn.execute(sa.update(jobs).where(jobs.c.id.in_(ids)).values(lease_until=until))
        for job_id in ids:
            outcome[job_id] = until
        return outcome

    def finish_job(
        self,
        job_id: str,
        claim_id: str,
        agent: str,
        now: datetime,
        *,
        result: dict[str, Any] | None,
        error: str | None,
        zone: str | None = None,
        enrolled: bool = False,
    ) -> bool:
        """Store a probe's outcome for the job under its claim: done when `error` is None,
        failed (with `error`) otherwise. True when stored; False when the job was finished
        already (a result posted twice, or the job failed meanwhile): nothing changes.
        `LeaseLost` when the job is unfinished and `claim_id` is not its current claim (held by
        `agent`); `NotFound` when there is no such job — or, given `zone`, when the job is of
        another zone (what a probe of `zone` may not learn exists). With `enrolled`,
        `AgentRevoked` unless `agent` is an active probe of the job's zone (nothing stored)."""
        if result is not None and not isinstance(result, dict):
            raise ValueError("a job's result must be a JSON object or None")
        check_depth("a job's result", result)
        if not storable(job_id, claim_id):
            raise NotFound(f"no job {job_id!r}")
        now = utc(now)
        agent = safe_text(agent)
        values: dict[str, Any] = {
            "state": "done" if error is None else "failed",
            "finished_at": now,
            "finished_by": agent,
            "result": None if result is None else strip_nul(result),
            "error": None if error is None else _error_text(error),
        }
        with self._tx(write=True) as conn:
            stored = conn.execute(
                sa.update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.claim_id == claim_id,
                    jobs.c.claimed_by == agent,
                    jobs.c.state == "claimed",
                    *([_probe_of(agent, jobs.c.zone)] if enrolled else []),
                )
                .values(**values)
                .returning(jobs.c.id)
            ).first()
            if stored is not None:
                return True
            row = conn.execute(
                sa.select(
                    jobs.c.state, jobs.c.zone, _probe_of(agent, jobs.c.zone).label("probe")
                ).where(jobs.c.id == job_id)
            ).first()
        if row is None or (zone is not None and row.zone != zone):
            raise NotFound(f"no job {job_id!r}")
        if enrolled and not row.probe:
            raise AgentRevoked(f"agent {agent!r} is no longer a probe of zone {row.zone!r}")
        if row.state in _UNFINISHED:
            raise LeaseLost(f"job {job_id} is claimed by a newer claim; its result was not stored")
        return False

    def get_jobs(self, ids: Sequence[str]) -> list[Job]:
        """The jobs named (at most `MAX_IDS`), in the order asked; unknown ids are left out."""
        wanted = _check_ids(ids, "jobs")
        if not wanted:
            return []
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*_JOB_COLUMNS).where(jobs.c.id.in_(wanted))).all()
        found = {row.id: _to_job(row) for row in rows}
        return [found[i] for i in dict.fromkeys(wanted) if i in found]

    def fail_jobs_of_scan(self, scan_id: str, now: datetime, reason: str) -> int:
        """Fail the scan's unfinished jobs with `reason` (the scan is over: no probe's result
        for them matters any more); how many."""
        if not storable(scan_id):
            return 0
        now = utc(now)
        with self._tx(write=True) as conn:
            ids = self._lock_in_order(
                conn, sa.and_(jobs.c.scan_id == scan_id, jobs.c.state.in_(_UNFINISHED))
            )
            return self._fail(conn, ids, now, reason)

    def expire_jobs(self, now: datetime) -> int:
        """Fail every unfinished job past its deadline ("deadline passed"); how many."""
        now = utc(now)
        with self._tx(write=True) as conn:
            ids = self._lock_in_order(
                conn, sa.and_(jobs.c.state.in_(_UNFINISHED), jobs.c.deadline <= now)
            )
            return self._fail(conn, ids, now, DEADLINE_PASSED)

    def prune_jobs(self, before: datetime) -> int:
        """Delete jobs finished before `before` (unfinished ones stay until they finish or
        expire); how many."""
        with self._tx(write=True) as conn:
            deleted = conn.execute(
                sa.delete(jobs).where(
                    jobs.c.state.in_(("done", "failed")), jobs.c.finished_at < utc(before)
                )
            )
        return int(deleted.rowcount)

    def _fail(self, conn: sa.Connection, ids: list[str], now: datetime, reason: str) -> int:
        for start in range(0, len(ids), MAX_IDS):
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(ids[start : start + MAX_IDS]))
                .values(state="failed", finished_at=now, error=_error_text(reason))
            )
        return len(ids)
