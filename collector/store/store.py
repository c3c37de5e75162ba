"""`Store`: every read and write the collector makes to its database, one transaction per method,
in SQLAlchemy Core over SQLite (one hospital) or PostgreSQL (a province). Its engine and
transactions live in `engine`, its errors in `errors`, and `rows` turns rows into models.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from checks.envelope import Report, ReportResult
from collector.models import (
    Agent,
    AuditEntry,
    AuditKey,
    AuditVerdict,
    HostSummary,
    IngestOutcome,
    Page,
    ReportSummary,
    ResultRow,
    Role,
    ScanRun,
    ScanState,
    SignatureAlg,
    User,
)
from collector.store import audit, batch
from collector.store.engine import Database, connect
from collector.store.errors import (
    AgentExists,
    AgentRevoked,
    AuditAltered,
    EnrollmentInvalid,
    HostClaimed,
    NotFound,
    ReplayedReport,
    ScanRunning,
    StaleCredential,
    StoreError,
    StoreUnavailable,
    UserExists,
)
from collector.store.rows import (
    AGENT_COLUMNS,
    LOST_SCAN,
    SCAN_COLUMNS,
    USER_COLUMNS,
    Row,
    to_agent,
    to_audit_entry,
    to_host_summary,
    to_result_row,
    to_scan,
    to_user,
)
from collector.store.schema import (
    agents,
    audit_head,
    audit_log,
    enrollment_tokens,
    hosts,
    reports,
    results,
    scans,
    users,
)
from collector.store.values import (
    MAX_ROWS,
    bounded,
    check_page,
    refuse_nul,
    safe_text,
    storable,
    strip_nul,
    utc,
)

__all__ = [
    "AgentExists",
    "AgentRevoked",
    "AuditAltered",
    "AuditNote",
    "EnrollmentInvalid",
    "HostClaimed",
    "NotFound",
    "ReplayedReport",
    "ScanRunning",
    "StaleCredential",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UserExists",
]

logger = logging.getLogger("medsec.collector.store")

_DATA_ERRORS = (sa.exc.SQLAlchemyError, ValueError)
"""How one report's data can break a batch's transaction (the database refusing a value, or the
parsed report not matching its bytes); anything else is a bug and fails the whole batch."""


def hash_token(token: str) -> str:
    """How every token is stored and looked up: SHA-256 hex of its text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


_HOST_SUMMARY = sa.select(
    hosts.c.id,
    hosts.c.hostname,
    agents.c.name.label("agent"),
    reports.c.report_id,
    hosts.c.last_report_at,
    reports.c.counts,
).select_from(
    hosts.join(agents, agents.c.id == hosts.c.agent_id).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)
_RESULT_ROWS = sa.select(
    reports.c.report_id,
    hosts.c.id.label("host_id"),
    hosts.c.hostname,
    results.c.check_id,
    results.c.status,
    results.c.target,
    results.c.message,
    reports.c.generated_at,
    results.c.clauses,
    results.c.evidence,
).select_from(
    hosts.join(results, results.c.report_pk == hosts.c.last_report_pk).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)


def _result_params(
    report_pk: int, host_id: str, result: ReportResult, clean: Any
) -> dict[str, Any]:
    return {
        "report_pk": report_pk,
        "host_id": host_id,
        "check_id": result.check_id,
        "status": result.status,
        "severity": result.severity,
        "target": clean(result.target),
        "message": clean(result.message),
        "evidence": clean(result.evidence),
        "clauses": clean(result.clauses),
    }


_TOUCH_AGENT = (
    sa.update(agents)
    .where(agents.c.id == sa.bindparam("agent_pk"))
    .values(last_seen_at=sa.bindparam("seen", type_=agents.c.last_seen_at.type))
)

# Locked in id order by every batch: a revocation waits for the batch's commit (so a report is
# stored only if its agent was still enrolled then), and two collectors never deadlock on them.
_LOCK_AGENTS = (
    sa.select(agents.c.id, agents.c.revoked_at, agents.c.public_key_pem, agents.c.api_token_hash)
    .where(agents.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(agents.c.id)
    .with_for_update()
)

_HEAD = sa.select(
    audit_head.c.seq,
    audit_head.c.hash,
    audit_head.c.base_seq,
    audit_head.c.base_hash,
    audit_head.c.keyed_from,
    audit_head.c.mac,
).where(audit_head.c.id == 1)
_LOCK_HEAD = _HEAD.with_for_update()
_INSERT_ENTRY = sa.insert(audit_log)
_MOVE_HEAD = (
    sa.update(audit_head)
    .where(audit_head.c.id == 1)
    .values(
        seq=sa.bindparam("new_seq"),
        hash=sa.bindparam("new_hash"),
        base_seq=sa.bindparam("new_base_seq"),
        base_hash=sa.bindparam("new_base_hash"),
        keyed_from=sa.bindparam("new_keyed_from"),
        mac=sa.bindparam("new_mac"),
    )
)

# PostgreSQL unpacks the results from the report body it has just stored, in report order: one
# statement and no per-result work in Python. jsonb keeps the last of duplicate keys, as msgspec
# did when it validated the report; SQLite's JSON functions keep the first, so SQLite gets the
# parsed results instead. Only the store's own text reaches this SQL (the body is a parameter).
_RESULTS_FROM_BODY = """
INSERT INTO results
    (report_pk, host_id, check_id, status, severity, target, message, evidence, clauses)
SELECT r.pk, r.host_id, e.value ->> 'check_id', e.value ->> 'status', e.value ->> 'severity',
       e.value ->> 'target', e.value ->> 'message',
       COALESCE(e.value -> 'evidence', '{}'::jsonb), COALESCE(e.value -> 'clauses', '[]'::jsonb)
FROM reports AS r
CROSS JOIN LATERAL jsonb_array_elements(CAST(r.body AS jsonb) -> 'results')
    WITH ORDINALITY AS e(value, n)
WHERE r.pk = ANY(:report_pks)
ORDER BY r.pk, e.n
"""


class _Statements:
    """The hot path's statements, built once per store: SQLAlchemy then only looks up its
    compiled form instead of building and hashing a new statement on every report."""

    def __init__(self, dialect: str) -> None:
        insert = pg.insert if dialect == "postgresql" else sqlite.insert
        self.insert_report = (
            insert(reports)
            .on_conflict_do_nothing(index_elements=[reports.c.report_id])
            .returning(reports.c.pk, reports.c.report_id)
        )
        self.results_from_body = sa.text(_RESULTS_FROM_BODY) if dialect == "postgresql" else None
        host = insert(hosts)
        self.upsert_host = host.on_conflict_do_update(
            index_elements=[hosts.c.id],
            set_={
                "hostname": host.excluded.hostname,
                "agent_id": host.excluded.agent_id,
                "last_report_pk": host.excluded.last_report_pk,
                "last_report_at": host.excluded.last_report_at,
                "inventory": host.excluded.inventory,
            },
            # The host's own agent keeps its newest report (an old one replayed from its spool
            # arrives late); once that agent is revoked, the agent taking the host over writes
            # its report whatever its age (`Store._host_claims` decided who may).
            where=sa.or_(
                sa.and_(
                    hosts.c.agent_id == host.excluded.agent_id,
                    hosts.c.last_report_at <= host.excluded.last_report_at,
                ),
                sa.and_(
                    hosts.c.agent_id != host.excluded.agent_id,
                    sa.exists().where(
                        agents.c.id == hosts.c.agent_id, agents.c.revoked_at.is_not(None)
                    ),
                ),
            ),
        )
        # unnest yields the (sorted) keys in array order, so the locks are taken in that order.
        self.lock_host_ids = (
            sa.text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:keys AS bigint[])) AS k"
            )
            if dialect == "postgresql"
            else None  # SQLite: one writer at a time already
        )
        self.lock_hosts = (
            sa.select(hosts.c.id, hosts.c.agent_id, agents.c.revoked_at)
            .select_from(hosts.join(agents, agents.c.id == hosts.c.agent_id))
            .where(hosts.c.id.in_(sa.bindparam("ids", expanding=True)))
            .order_by(hosts.c.id)
            .with_for_update(of=hosts)
        )


@dataclass(eq=False)
class _IngestJob:
    agent: Agent
    report: Report
    report_bytes: bytes
    now: datetime
    token_hash: str | None
    digest: str
    audit: AuditNote | None
    future: Future[IngestOutcome] = field(default_factory=Future)
    has_nul: bool = field(init=False)

    def __post_init__(self) -> None:
        # Parsed strings hold U+0000 only where the bytes had that escape, which PostgreSQL
        # cannot store: then (rarely) the values are cleaned and the rows built in Python.
        self.has_nul = b"\\u0000" in self.report_bytes

    @property
    def generated_at(self) -> datetime:
        return utc(self.report.generated_at)

    def clean(self, value: Any) -> Any:
        return strip_nul(value) if self.has_nul else value

    def row(self) -> dict[str, Any]:
        return {
            "report_id": self.report.report_id,
            "agent_id": self.agent.id,
            "host_id": self.report.host.id,
            "generated_at": self.generated_at,
            "received_at": self.now,
            "sha256": self.digest,
            "body": self.report_bytes.decode("utf-8"),
            "counts": dict(Counter(result.status for result in self.report.results)),
        }

    def host_row(self, report_pk: int) -> dict[str, Any]:
        return {
            "id": self.report.host.id,
            "hostname": self.clean(self.report.host.hostname),
            "agent_id": self.agent.id,
            "last_report_pk": report_pk,
            "last_report_at": self.generated_at,
            "inventory": self.clean(self.report.inventory),
        }


@dataclass(eq=False)
class _AuditJob:
    at: datetime
    fields: dict[str, str]
    future: Future[AuditEntry] = field(default_factory=Future)


_Job = _IngestJob | _AuditJob


@dataclass(frozen=True)
class AuditNote:
    """The audit entry of the request that submits a report, written in the report's own
    transaction once its outcome is known: `outcome` turns the outcome (an `IngestOutcome`, or
    the `StoreError` the caller will get) into the entry's outcome text."""

    actor: str
    role: str
    action: str
    source: str
    at: datetime
    outcome: Callable[[object], str]

    def entry(self, outcome: object) -> _AuditJob:
        return _audit_job(
            self.actor, self.role, self.action, self.source, self.outcome(outcome), self.at
        )


def _audit_job(  # noqa: PLR0917 — the audit entry's fields, in the log's order
    actor: str, role: str, action: str, source: str, outcome: str, at: datetime
) -> _AuditJob:
    fields = {
        "actor": safe_text(actor),
        "role": safe_text(role),
        "action": safe_text(action),
        "source": safe_text(source),
        "outcome": safe_text(outcome),
    }
    # The hash covers the microsecond UTC text; store exactly that instant.
    return _AuditJob(utc(at), fields)


def _lock_key(host_id: str) -> int:
    """A host id's advisory-lock key: the first 8 bytes of its SHA-256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(host_id.encode()).digest()[:8], "big", signed=True)


def _credential_problem(job: _IngestJob, enrolled: Row | None) -> StoreError | None:
    """Why the agent may no longer store this report (its row locked at commit), or None."""
    if enrolled is None or enrolled.public_key_pem != job.agent.public_key_pem:
        return StaleCredential("the agent's key changed since this report was checked")
    if job.token_hash is not None and enrolled.api_token_hash != job.token_hash:
        return StaleCredential("the agent's token changed since this report was checked")
    if enrolled.revoked_at is not None:
        return AgentRevoked(f"agent {job.agent.name!r} was revoked")
    return None


# ----------------------------------------------------------------------------- the store


class Store(Database):
    """The collector's database. Thread-safe: one engine, a pool of connections."""

    def __init__(
        self, engine: sa.Engine, password: str | None = None, audit_key: AuditKey | None = None
    ) -> None:
        self._engine = engine
        self._password = password
        self._audit_key = audit_key
        self._dialect = engine.dialect.name
        self._sql = _Statements(self._dialect)
        self._writer = batch.GroupWriter(self._write_batch, "medsec-store-writer")

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, audit_key: AuditKey | None = None) -> Store:
        """An engine for `url` (`sqlite:///PATH` or `postgresql+psycopg://...`); no I/O yet and
        no migration (see `upgrade`)."""
        engine, password = connect(url)
        return cls(engine, password, audit_key)

    def close(self) -> None:
        """Write what is queued, then release the connections."""
        self._writer.close()
        self._engine.dispose()

    # -- agents and enrolment ----------------------------------------------------------------

    def create_enrollment(self, name: str, ttl: timedelta, now: datetime) -> str:
        """A one-time `mse_` token for agent `name`, valid for `ttl`. Creates the agent if new;
        an active agent of that name → `AgentExists`; a revoked one may enrol again. Any earlier
        unused token for the agent stops working."""
        if ttl <= timedelta(0):
            raise ValueError("the enrolment token's lifetime must be positive")
        refuse_nul("an agent name", name)
        now = utc(now)
        token = _new_token("mse_")
        with self._tx(write=True) as conn:
            row = self._lock_agent_row(conn, name, now)
            if row.enrolled_at is not None and row.revoked_at is None:
                raise AgentExists(f"agent {name!r} is enrolled and active; revoke it first")
            conn.execute(
                sa.delete(enrollment_tokens).where(
                    enrollment_tokens.c.agent_id == row.id, enrollment_tokens.c.used_at.is_(None)
                )
            )
            conn.execute(
                sa.insert(enrollment_tokens).values(
                    agent_id=row.id, token_hash=hash_token(token), expires_at=now + ttl
                )
            )
        return token

    def redeem_enrollment(
        self, token: str, name: str, alg: str, public_key_pem: str, now: datetime
    ) -> tuple[Agent, str]:
        """Spend an enrolment token: register the agent's key and alg and issue its `msa_` API
        token (replacing any earlier one). `EnrollmentInvalid` says why a token is refused."""
        signature_alg = SignatureAlg(alg)
        refuse_nul("a public key", public_key_pem)
        now = utc(now)
        api_token = _new_token("msa_")
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.select(
                    enrollment_tokens.c.id,
                    enrollment_tokens.c.agent_id,
                    enrollment_tokens.c.expires_at,
                    enrollment_tokens.c.used_at,
                ).where(enrollment_tokens.c.token_hash == hash_token(token))
            ).first()
            if found is None:
                raise EnrollmentInvalid("unknown")
            # Lock the agent before the token, in the same order as create_enrollment.
            agent = conn.execute(
                sa.select(*AGENT_COLUMNS).where(agents.c.id == found.agent_id).with_for_update()
            ).one()
            if found.used_at is not None:
                raise EnrollmentInvalid("used")
            if now >= found.expires_at:
                raise EnrollmentInvalid("expired")
            if agent.name != name:
                raise EnrollmentInvalid("name_mismatch")
            spent = conn.execute(
                sa.update(enrollment_tokens)
                .where(enrollment_tokens.c.id == found.id, enrollment_tokens.c.used_at.is_(None))
                .values(used_at=now)
            )
            if spent.rowcount != 1:
                raise EnrollmentInvalid("used")
            conn.execute(
                sa.update(agents)
                .where(agents.c.id == agent.id)
                .values(
                    alg=signature_alg.value,
                    public_key_pem=public_key_pem,
                    api_token_hash=hash_token(api_token),
                    enrolled_at=now,
                    revoked_at=None,
                )
            )
            enrolled = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == agent.id)).one()
        return to_agent(enrolled), api_token

    def _lock_agent_row(self, conn: sa.Connection, name: str, now: datetime) -> Row:
        """Agent `name`'s row, created (never enrolled) if new, locked until the commit."""
        conn.execute(
            self._insert(agents)
            .values(name=name, created_at=now)
            .on_conflict_do_nothing(index_elements=[agents.c.name])
        )
        return conn.execute(
            sa.select(*AGENT_COLUMNS).where(agents.c.name == name).with_for_update()
        ).one()

    def agent_by_token(self, token: str) -> Agent | None:
        """The agent holding API token `token`, revoked or not (the caller decides)."""
        if not token.startswith("msa_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*AGENT_COLUMNS).where(agents.c.api_token_hash == hash_token(token))
            ).first()
        return None if row is None else to_agent(row)

    def service_agent(self, name: str, public_key_pem: str, now: datetime) -> Agent:
        """An agent identity the collector itself uses (its scanner), enrolled with
        `public_key_pem` unless it is active already. One transaction: processes creating it
        at once all get the same agent. Its API token is random and never shown."""
        refuse_nul("an agent name", name)
        now = utc(now)
        with self._tx(write=True) as conn:
            row = self._lock_agent_row(conn, name, now)
            if row.enrolled_at is None or row.revoked_at is not None:
                conn.execute(
                    sa.update(agents)
                    .where(agents.c.id == row.id)
                    .values(
                        alg=SignatureAlg.ED25519.value,
                        public_key_pem=public_key_pem,
                        api_token_hash=hash_token(_new_token("msa_")),
                        enrolled_at=now,
                        revoked_at=None,
                    )
                )
                row = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == row.id)).one()
        return to_agent(row)

    def list_agents(self) -> list[Agent]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*AGENT_COLUMNS).order_by(agents.c.name)).all()
        return [to_agent(row) for row in rows]

    def revoke_agent(self, name: str, now: datetime) -> Agent:
        """Revoke `name` (kept as revoked if it already was) and void its unused enrolment
        tokens. Its API token then identifies a revoked agent."""
        now = utc(now)
        if not storable(name):
            raise NotFound(f"no agent named {name!r}")
        with self._tx(write=True) as conn:
            row = conn.execute(
                sa.select(agents.c.id, agents.c.revoked_at)
                .where(agents.c.name == name)
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"no agent named {name!r}")
            if row.revoked_at is None:
                conn.execute(sa.update(agents).where(agents.c.id == row.id).values(revoked_at=now))
            conn.execute(
                sa.delete(enrollment_tokens).where(
                    enrollment_tokens.c.agent_id == row.id, enrollment_tokens.c.used_at.is_(None)
                )
            )
            revoked = conn.execute(sa.select(*AGENT_COLUMNS).where(agents.c.id == row.id)).one()
        return to_agent(revoked)

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, now: datetime) -> tuple[User, str]:
        """A new user and their `msu_` API token (shown once; only its hash is kept)."""
        role = Role(role)
        refuse_nul("a user name", name)
        now = utc(now)
        token = _new_token("msu_")
        with self._tx(write=True) as conn:
            inserted = conn.execute(
                self._insert(users)
                .values(name=name, role=role.value, token_hash=hash_token(token), created_at=now)
                .on_conflict_do_nothing(index_elements=[users.c.name])
                .returning(*USER_COLUMNS)
            ).first()
            if inserted is None:
                raise UserExists(f"a user named {name!r} already exists")
        return to_user(inserted), token

    def user_by_token(self, token: str) -> User | None:
        if not token.startswith("msu_"):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*USER_COLUMNS).where(users.c.token_hash == hash_token(token))
            ).first()
        return None if row is None else to_user(row)

    def list_users(self) -> list[User]:
        with self._tx(write=False) as conn:
            rows = conn.execute(sa.select(*USER_COLUMNS).order_by(users.c.name)).all()
        return [to_user(row) for row in rows]

    def remove_user(self, name: str) -> None:
        with self._tx(write=True) as conn:
            if (
                not storable(name)
                or conn.execute(sa.delete(users).where(users.c.name == name)).rowcount == 0
            ):
                raise NotFound(f"no user named {name!r}")

    # -- reports -----------------------------------------------------------------------------

    def ingest(
        self,
        agent: Agent,
        report: Report,
        report_bytes: bytes,
        now: datetime,
        *,
        token: str | None = None,
        audit: AuditNote | None = None,
    ) -> IngestOutcome:
        """`submit_ingest`, waiting for the outcome."""
        return self.submit_ingest(
            agent, report, report_bytes, now, token=token, audit=audit
        ).result()

    def submit_ingest(
        self,
        agent: Agent,
        report: Report,
        report_bytes: bytes,
        now: datetime,
        *,
        token: str | None = None,
        audit: AuditNote | None = None,
    ) -> Future[IngestOutcome]:
        """Queue a verified report for the next group commit; the future settles once it is
        committed. Atomic per report: its row (its exact bytes), its results, the host's latest
        inventory (when this report is its newest) and the agent's last sighting, or nothing.
        `report` must be `report_bytes` parsed (the API parses, then calls this).

        The same report again (same id, bytes and agent) → `duplicate=True`, nothing written;
        the same id with other bytes or from another agent → `ReplayedReport`. The agent must
        still be enrolled with the key in `agent` (and, when given, hold `token`) at commit:
        `AgentRevoked` or `StaleCredential` otherwise, so a cached credential is safe to use.
        With `audit`, the request's audit entry is written in the same transaction."""
        job = _IngestJob(
            agent,
            report,
            report_bytes,
            utc(now),
            None if token is None else hash_token(token),
            hashlib.sha256(report_bytes).hexdigest(),
            audit,
        )
        self._writer.submit(job)
        return job.future

    def _ingest_batch(
        self, conn: sa.Connection, jobs: list[_IngestJob]
    ) -> list[tuple[_Job, object]]:
        """Write the batch's reports in a few statements; returns each job's outcome or error."""
        settled: list[tuple[_Job, object]] = []
        ids = sorted({job.agent.id for job in jobs})
        enrolled = {row.id: row for row in conn.execute(_LOCK_AGENTS, {"ids": ids})}
        accepted: list[_IngestJob] = []
        for job in jobs:
            problem = _credential_problem(job, enrolled.get(job.agent.id))
            if problem is None:
                accepted.append(job)
            else:
                settled.append((job, problem))
        accepted, claimed = self._host_claims(conn, accepted)
        settled += claimed
        if not accepted:
            return settled
        returned = conn.execute(self._sql.insert_report, [job.row() for job in accepted])
        pks = {row.report_id: row.pk for row in returned}
        new: list[tuple[_IngestJob, int]] = []
        again: list[_IngestJob] = []
        for job in accepted:
            pk = pks.pop(job.report.report_id, None)  # pop: a second copy in this batch is "again"
            if pk is None:
                again.append(job)
            else:
                new.append((job, pk))
        settled += self._stored_before(conn, again)
        self._insert_results(conn, new)
        newest: dict[str, tuple[_IngestJob, int]] = {}
        for job, pk in new:
            best = newest.get(job.report.host.id)
            if best is None or (job.generated_at, pk) >= (best[0].generated_at, best[1]):
                newest[job.report.host.id] = (job, pk)
        if newest:  # in host order: concurrent collectors lock host rows in the same order
            conn.execute(
                self._sql.upsert_host,
                [job.host_row(pk) for job, pk in (newest[host] for host in sorted(newest))],
            )
        seen: dict[int, datetime] = {}
        for job, _ in new:
            seen[job.agent.id] = max(job.now, seen.get(job.agent.id, job.now))
        if seen:
            conn.execute(
                _TOUCH_AGENT, [{"agent_pk": a, "seen": at} for a, at in sorted(seen.items())]
            )
        settled += [
            (job, IngestOutcome(job.report.report_id, job.report.host.id, duplicate=False))
            for job, _ in new
        ]
        return settled

    def _host_claims(
        self, conn: sa.Connection, jobs: list[_IngestJob]
    ) -> tuple[list[_IngestJob], list[tuple[_Job, object]]]:
        """Split the jobs into those whose agent may report their host and `HostClaimed` refusals.

        A host belongs to the agent that reported it first; another agent may take it over
        only once that agent is revoked. On PostgreSQL every host id of the batch, known or new,
        is locked first (a transaction-scoped advisory lock, in id order), so two collectors'
        batches that share hosts run one after the other and never deadlock on a host one of
        them is inserting; then the existing rows are read under a row lock. A new host goes to
        the first of this batch's agents that reports it."""
        if not jobs:
            return jobs, []
        ids = sorted({job.report.host.id for job in jobs})
        if self._sql.lock_host_ids is not None:
            # In key order: two ids may share a key, and locks taken in id order could then
            # cross between two batches.
            conn.execute(self._sql.lock_host_ids, {"keys": sorted({_lock_key(h) for h in ids})})
        owners: dict[str, int | None] = {
            row.id: None if row.revoked_at is not None else row.agent_id
            for row in conn.execute(self._sql.lock_hosts, {"ids": ids})
        }
        allowed: list[_IngestJob] = []
        refused: list[tuple[_Job, object]] = []
        for job in jobs:
            host = job.report.host.id
            owner = owners.get(host)
            if owner is None:
                owners[host] = owner = job.agent.id
            if owner == job.agent.id:
                allowed.append(job)
            else:
                refused.append((job, HostClaimed(f"host {host} is reported by another agent")))
        return allowed, refused

    def _stored_before(
        self, conn: sa.Connection, jobs: list[_IngestJob]
    ) -> list[tuple[_Job, object]]:
        """Reports whose id is stored already: the same report again, or a replay."""
        if not jobs:
            return []
        stored = {
            row.report_id: row
            for row in conn.execute(
                sa.select(
                    reports.c.report_id, reports.c.agent_id, reports.c.sha256, reports.c.host_id
                ).where(reports.c.report_id.in_({job.report.report_id for job in jobs}))
            )
        }
        settled: list[tuple[_Job, object]] = []
        for job in jobs:
            row = stored[job.report.report_id]
            if row.agent_id == job.agent.id and row.sha256 == job.digest:
                outcome: object = IngestOutcome(job.report.report_id, row.host_id, duplicate=True)
            else:
                outcome = ReplayedReport(f"report {job.report.report_id} was already received")
            settled.append((job, outcome))
        return settled

    def _insert_results(self, conn: sa.Connection, new: list[tuple[_IngestJob, int]]) -> None:
        unpack = self._sql.results_from_body
        from_body = [(job, pk) for job, pk in new if unpack is not None and not job.has_nul]
        if unpack is not None and from_body:
            added = conn.execute(unpack, {"report_pks": [pk for _, pk in from_body]}).rowcount
            if added != sum(len(job.report.results) for job, _ in from_body):
                raise ValueError("a parsed report does not match its bytes")
        built = [
            _result_params(pk, job.report.host.id, result, job.clean)
            for job, pk in new
            if unpack is None or job.has_nul
            for result in job.report.results
        ]
        if built:
            conn.execute(sa.insert(results), built)

    def list_hosts(self, limit: int, offset: int) -> Page[HostSummary]:
        """Hosts by hostname, each with its newest report's id, time and counts."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(hosts)).scalar_one()
            rows = conn.execute(
                _HOST_SUMMARY.order_by(hosts.c.hostname, hosts.c.id)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_host_summary(row) for row in rows), total, limit, offset)

    def get_host(self, host_id: str) -> tuple[HostSummary, dict[str, Any], list[ResultRow]] | None:
        """The host's summary, latest inventory and the results of its newest report."""
        if not storable(host_id):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                _HOST_SUMMARY.add_columns(hosts.c.inventory).where(hosts.c.id == host_id)
            ).first()
            if row is None:
                return None
            found = conn.execute(
                _RESULT_ROWS.where(hosts.c.id == host_id).order_by(results.c.pk)
            ).all()
        return to_host_summary(row), dict(row.inventory), [to_result_row(r) for r in found]

    def host_reports(self, host_id: str, limit: int, offset: int) -> Page[ReportSummary]:
        """The host's reports, newest first (an unknown host has none)."""
        check_page(limit, offset)
        if not storable(host_id):
            return Page((), 0, limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(reports).where(reports.c.host_id == host_id)
            ).scalar_one()
            rows = conn.execute(
                sa.select(
                    reports.c.report_id,
                    reports.c.host_id,
                    agents.c.name.label("agent"),
                    reports.c.generated_at,
                    reports.c.received_at,
                    reports.c.counts,
                )
                .select_from(reports.join(agents, agents.c.id == reports.c.agent_id))
                .where(reports.c.host_id == host_id)
                .order_by(reports.c.generated_at.desc(), reports.c.pk.desc())
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        items = tuple(
            ReportSummary(
                report_id=row.report_id,
                host_id=row.host_id,
                agent=row.agent,
                generated_at=row.generated_at,
                received_at=row.received_at,
                counts=dict(row.counts),
            )
            for row in rows
        )
        return Page(items, total, limit, offset)

    def query_results(
        self, check_id: str | None, status: str | None, limit: int, offset: int
    ) -> Page[ResultRow]:
        """Results of each host's newest report, by hostname then report order, filtered."""
        check_page(limit, offset)
        if not storable(check_id, status):
            return Page((), 0, limit, offset)
        conditions: list[sa.ColumnElement[bool]] = []
        if check_id is not None:
            conditions.append(results.c.check_id == check_id)
        if status is not None:
            conditions.append(results.c.status == status)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count())
                .select_from(hosts.join(results, results.c.report_pk == hosts.c.last_report_pk))
                .where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                _RESULT_ROWS.where(*conditions)
                .order_by(hosts.c.hostname, hosts.c.id, results.c.pk)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_result_row(row) for row in rows), total, limit, offset)

    def prune_reports(self, before: datetime, chunk: int = 2000) -> tuple[int, int]:
        """Delete the reports received before `before`, with their results, except each host's
        newest report (what the API shows). In transactions of `chunk` reports, so writers are
        never held up for long. Returns (reports, results) deleted."""
        before = utc(before)
        current = sa.select(hosts.c.last_report_pk).scalar_subquery()
        doomed = (
            sa.select(reports.c.pk)
            .where(reports.c.received_at < before, reports.c.pk.not_in(current))
            .order_by(reports.c.pk)
            .limit(chunk)
        )
        gone_reports = gone_results = 0
        while True:
            with self._tx(write=True) as conn:
                pks = list(conn.execute(doomed).scalars())
                if not pks:
                    return gone_reports, gone_results
                # Results first: no reliance on ON DELETE CASCADE being enforced (SQLite).
                gone_results += conn.execute(
                    sa.delete(results).where(results.c.report_pk.in_(pks))
                ).rowcount
                gone_reports += conn.execute(
                    sa.delete(reports).where(reports.c.pk.in_(pks))
                ).rowcount

    # -- scans -------------------------------------------------------------------------------

    def start_scan(
        self, zones: str, requested_by: str, now: datetime, deadline: datetime
    ) -> ScanRun:
        """Record a running scan of `zones` that must end by `deadline`; `ScanRunning` if one
        runs already (in any collector process). A scan still running past its deadline was
        lost with its collector: it is closed as failed first, so it cannot block its zones."""
        now = utc(now)
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(scans)
                .where(
                    scans.c.zones == zones,
                    scans.c.state == ScanState.RUNNING.value,
                    scans.c.deadline < now,
                )
                .values(state=ScanState.FAILED.value, finished_at=now, message=LOST_SCAN)
            )
            row = conn.execute(
                self._insert(scans)
                .values(
                    id=str(uuid.uuid4()),
                    zones=safe_text(zones),
                    requested_by=safe_text(requested_by),
                    state=ScanState.RUNNING.value,
                    started_at=now,
                    deadline=utc(deadline),
                )
                .on_conflict_do_nothing()
                .returning(*SCAN_COLUMNS)
            ).first()
        if row is None:
            raise ScanRunning(f"a scan of {zones!r} is running already")
        return to_scan(row, now)

    def finish_scan(
        self,
        scan_id: str,
        state: ScanState,
        now: datetime,
        *,
        report_id: str | None = None,
        message: str | None = None,
    ) -> ScanRun:
        """Close a running scan (a scan closed already, as lost, stays as it is)."""
        if state is ScanState.RUNNING:
            raise ValueError("a scan is finished as passed, findings or failed")
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(scans)
                .where(scans.c.id == scan_id, scans.c.state == ScanState.RUNNING.value)
                .values(
                    state=state.value,
                    finished_at=utc(now),
                    report_id=report_id,
                    message=None if message is None else safe_text(message),
                )
            )
            row = conn.execute(sa.select(*SCAN_COLUMNS).where(scans.c.id == scan_id)).first()
        if row is None:
            raise NotFound(f"no scan {scan_id}")
        return to_scan(row, utc(now))

    def get_scan(self, scan_id: str, now: datetime) -> ScanRun | None:
        """The scan; one still marked running past its deadline is shown as lost."""
        if not storable(scan_id):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(*SCAN_COLUMNS).where(scans.c.id == scan_id)).first()
        return None if row is None else to_scan(row, utc(now))

    def list_scans(self, limit: int, offset: int, now: datetime) -> Page[ScanRun]:
        """Scans, newest first (as `get_scan` shows each)."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(scans)).scalar_one()
            rows = conn.execute(
                sa.select(*SCAN_COLUMNS)
                .order_by(scans.c.started_at.desc(), scans.c.id)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_scan(row, utc(now)) for row in rows), total, limit, offset)

    # -- audit -------------------------------------------------------------------------------

    def append_audit(  # noqa: PLR0917 — the contract's signature; the API calls it positionally
        self, actor: str, role: str, action: str, source: str, outcome: str, now: datetime
    ) -> AuditEntry:
        """`submit_audit`, waiting for the committed entry."""
        return self.submit_audit(actor, role, action, source, outcome, now).result()

    def submit_audit(  # noqa: PLR0917 — as append_audit
        self, actor: str, role: str, action: str, source: str, outcome: str, now: datetime
    ) -> Future[AuditEntry]:
        """Queue one entry for the hash chain; the future gives it once committed. Concurrent
        entries (and reports) share a transaction; across processes the head row is locked for
        each transaction, so the chain never forks."""
        job = _audit_job(actor, role, action, source, outcome, now)
        self._writer.submit(job)
        return job.future

    def _audit_batch(self, conn: sa.Connection, jobs: list[_AuditJob]) -> list[tuple[_Job, object]]:
        head = conn.execute(_LOCK_HEAD).first()
        if head is None:
            raise StoreError("the audit head row is missing: run `medsec db upgrade`")
        keyed_from = self._audit_keying(conn, head)
        seq, prev = int(head.seq), str(head.hash)
        rows: list[dict[str, Any]] = []
        for job in jobs:
            seq += 1
            key = (
                self._audit_key.secret
                if self._audit_key is not None and keyed_from is not None and seq >= keyed_from
                else None
            )
            digest = audit.entry_hash(prev, key=key, seq=seq, at=job.at, **job.fields)
            rows.append({"seq": seq, "at": job.at, "prev_hash": prev, "hash": digest} | job.fields)
            prev = digest
        conn.execute(_INSERT_ENTRY, rows)
        self._move_head(conn, seq, prev, int(head.base_seq), str(head.base_hash), keyed_from)
        return [(job, AuditEntry(**row)) for job, row in zip(jobs, rows, strict=True)]

    def _audit_keying(self, conn: sa.Connection, head: Row) -> int | None:
        """The first keyed entry of the chain whose head row `head` is locked, for an append or
        a prune. The key file says where keying starts; the head row must agree (it records it
        once the chain gets there, with its MAC). A keyed chain without the key, keying switched
        off in the database, or a head whose MAC is wrong, is refused."""
        keyed_from = None if head.keyed_from is None else int(head.keyed_from)
        if self._audit_key is None:
            if keyed_from is not None:
                raise StoreError(
                    "the audit log is keyed: set audit.key_file in the settings to its key"
                )
            return None
        problem = self._keying_problem(head)
        if problem is not None:
            raise AuditAltered(problem)
        expected = self._audit_key.keyed_from
        if keyed_from is None:  # not there yet (a new log): from now on the head says so
            self._move_head(
                conn,
                int(head.seq),
                str(head.hash),
                int(head.base_seq),
                str(head.base_hash),
                expected,
            )
        return expected

    def _keying_problem(self, head: Row) -> str | None:
        """With the key: what is wrong with the head row's keying, or None."""
        if self._audit_key is None:
            return None
        expected = self._audit_key.keyed_from
        if head.keyed_from is None:
            if int(head.seq) >= expected:
                return (
                    f"keying was switched off: the key file keys entries from {expected} on,"
                    f" the head row of entry {int(head.seq)} says none are keyed"
                )
            return None
        if int(head.keyed_from) != expected:
            return "the head row was altered: it moves where keying starts"
        mac = self._head_mac(
            int(head.seq), str(head.hash), int(head.base_seq), str(head.base_hash), expected
        )
        if mac is None or not hmac.compare_digest(str(head.mac or ""), mac):
            return "the head row was altered: its MAC does not match the audit key"
        return None

    def _head_mac(
        self, seq: int, hash_: str, base_seq: int, base_hash: str, keyed_from: int | None
    ) -> str | None:
        if self._audit_key is None or keyed_from is None:
            return None
        return audit.head_mac(
            self._audit_key.secret,
            seq=seq,
            hash_=hash_,
            base_seq=base_seq,
            base_hash=base_hash,
            keyed_from=keyed_from,
        )

    def _move_head(  # noqa: PLR0917 — as _head_mac
        self,
        conn: sa.Connection,
        seq: int,
        hash_: str,
        base_seq: int,
        base_hash: str,
        keyed_from: int | None,
    ) -> None:
        conn.execute(
            _MOVE_HEAD,
            {
                "new_seq": seq,
                "new_hash": hash_,
                "new_base_seq": base_seq,
                "new_base_hash": base_hash,
                "new_keyed_from": keyed_from,
                "new_mac": self._head_mac(seq, hash_, base_seq, base_hash, keyed_from),
            },
        )

    # -- group commit ------------------------------------------------------------------------

    def _write_batch(self, jobs: Sequence[batch.Job]) -> None:
        """One transaction for the queued reports, then the queued audit entries (the head row
        is locked last, so for as short a time as possible). Outcomes are given out only after
        the commit. If the transaction fails for one job's data, each job is retried alone, so
        that job fails and the others are stored; an unreachable database fails them all."""
        try:
            settled = self._write_together(jobs)
        except _DATA_ERRORS as exc:  # StoreUnavailable is none: a lost database fails them all
            if len(jobs) == 1:
                raise
            logger.warning("a batch of %d failed (%s); writing its jobs one by one", len(jobs), exc)
            for job in jobs:
                try:
                    self._write_batch([job])
                except (StoreError, *_DATA_ERRORS) as alone:  # that job's caller gets it
                    job.future.set_exception(alone)
            return
        for job, outcome in settled:
            future: Future[Any] = job.future
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _write_together(self, jobs: Sequence[batch.Job]) -> list[tuple[_Job, object]]:
        """Write the jobs in one transaction; each job's outcome or error once committed."""
        ingests = [job for job in jobs if isinstance(job, _IngestJob)]
        audits = [job for job in jobs if isinstance(job, _AuditJob)]
        with self._tx(write=True) as conn:
            settled = self._ingest_batch(conn, ingests) if ingests else []
            # Each report's own request entry, now that its outcome is known: in the same
            # transaction, so a stored report is never missing from the log.
            audits += [
                job.audit.entry(outcome)
                for job, outcome in settled
                if isinstance(job, _IngestJob) and job.audit is not None
            ]
            if audits:
                settled += self._audit_batch(conn, audits)
        return settled

    def audit_entries(self, limit: int, offset: int) -> Page[AuditEntry]:
        """Entries oldest first (seq order), so pages stay put while the log grows."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one()
            rows = conn.execute(
                sa.select(audit_log)
                .order_by(audit_log.c.seq)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_audit_entry(row) for row in rows), total, limit, offset)

    def audit_entry(self, seq: int) -> AuditEntry | None:
        """Entry `seq`, or None (never written, pruned or deleted)."""
        if not 0 < seq < MAX_ROWS:
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).first()
        return None if row is None else to_audit_entry(row)

    def verify_audit(self) -> AuditVerdict:
        """Re-walk the whole chain and compare its end with the head, in one snapshot (entries
        appended meanwhile are simply not seen). With the audit key, the entries from where the
        key file says keying starts must carry its HMAC and the head row its MAC; a keyed chain
        cannot be checked without the key (`StoreError`)."""
        with self._tx(write=False, snapshot=True) as conn:
            head = conn.execute(_HEAD).first()
            if head is None:
                return audit.verify_chain((), None)
            if head.keyed_from is not None and self._audit_key is None:
                raise StoreError(
                    "the audit log is keyed: set audit.key_file in the settings to its key"
                )
            problem = self._keying_problem(head)
            if problem is not None:
                return AuditVerdict(False, 0, int(head.seq), problem)
            rows = conn.execute(
                sa.select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=2000)
            )
            key = self._audit_key
            return audit.verify_chain(
                (to_audit_entry(row) for row in rows),
                (int(head.seq), str(head.hash)),
                (int(head.base_seq), str(head.base_hash)),
                key=None if key is None else key.secret,
                keyed_from=None if key is None else key.keyed_from,
            )

    def prune_audit(self, before: datetime, chunk: int = 10_000) -> int:
        """Delete the entries older than `before` — the oldest run of them, up to the first entry
        at or after `before`, so nothing younger goes — and start the chain after the last one
        deleted. Returns how many were deleted. The caller keeps `before` at least as old as the
        law's retention (`audit.retention_days`).

        Each entry is checked before it goes (`AuditAltered`, and nothing more is deleted): a
        prune must not erase the trace of an edit. In transactions of `chunk` entries, each
        moving the chain's start, so appends (which lock the head row) wait only briefly."""
        before = utc(before)
        with self._tx(write=False) as conn:
            first_young = conn.execute(
                sa.select(sa.func.min(audit_log.c.seq)).where(audit_log.c.at >= before)
            ).scalar_one()
        pruned = 0
        while True:
            with self._tx(write=True) as conn:
                head = conn.execute(_LOCK_HEAD).first()
                if head is None:
                    raise StoreError("the audit head row is missing: run `medsec db upgrade`")
                keyed_from = self._audit_keying(conn, head)
                last_old = head.seq if first_young is None else int(first_young) - 1
                upto = min(last_old, int(head.base_seq) + chunk)
                if upto <= head.base_seq:
                    return pruned
                rows = conn.execute(
                    sa.select(audit_log)
                    .where(audit_log.c.seq > head.base_seq, audit_log.c.seq <= upto)
                    .order_by(audit_log.c.seq)
                ).all()
                entries = [to_audit_entry(row) for row in rows]
                end = (upto, entries[-1].hash) if entries else (upto, "")
                verdict = audit.verify_chain(
                    entries,
                    end,
                    (int(head.base_seq), str(head.base_hash)),
                    key=None if self._audit_key is None else self._audit_key.secret,
                    keyed_from=keyed_from,
                )
                if not verdict.ok:
                    raise AuditAltered(
                        f"the audit log is altered at seq {verdict.first_bad_seq}"
                        f" ({verdict.problem}); nothing more was pruned"
                    )
                pruned += conn.execute(sa.delete(audit_log).where(audit_log.c.seq <= upto)).rowcount
                self._move_head(
                    conn, int(head.seq), str(head.hash), upto, entries[-1].hash, keyed_from
                )
