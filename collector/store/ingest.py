"""Storing reports: each verified report is queued for the group commit and written with its
results, its host's latest inventory and its agent's last sighting, or not at all. The agent must
still hold its credential at the commit, and may speak only for the hosts it claimed first —
except that a DMI-derived host id another machine reports is a placeholder, and the report is
kept apart under the id its next anchor gives (`collector.store.anchors` says when and why), and
agentless collection's hold on a host gives way to the host's own agent."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite

from checks.envelope import Report, ReportResult
from collector.models import Agent, IngestOutcome
from collector.store import anchors, batch
from collector.store.audit import AuditNote
from collector.store.engine import Database
from collector.store.errors import (
    AgentRevoked,
    HostClaimed,
    ReplayedReport,
    StaleCredential,
    StoreError,
)
from collector.store.identity import hash_token
from collector.store.rows import Row
from collector.store.schema import agents, hosts, reports, results
from collector.store.values import host_place, strip_nul, utc

logger = logging.getLogger("medsec.collector.store")

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

# PostgreSQL unpacks the results from the report body it has just stored, in report order: one
# statement and no per-result work in Python. jsonb keeps the last of duplicate keys, as msgspec
# did when it validated the report; SQLite's JSON functions keep the first, so SQLite gets the
# parsed results instead. Only the store's own text reaches this SQL (the body is a parameter).
_RESULTS_FROM_BODY = """
INSERT INTO results
    (report_pk, host_id, check_id, status, severity, target, message, message_zh, evidence,
     clauses)
SELECT r.pk, r.host_id, e.value ->> 'check_id', e.value ->> 'status', e.value ->> 'severity',
       e.value ->> 'target', e.value ->> 'message', e.value ->> 'message_zh',
       COALESCE(e.value -> 'evidence', '{}'::jsonb), COALESCE(e.value -> 'clauses', '[]'::jsonb)
FROM reports AS r
CROSS JOIN LATERAL jsonb_array_elements(CAST(r.body AS jsonb) -> 'results')
    WITH ORDINALITY AS e(value, n)
WHERE r.pk = ANY(:report_pks)
ORDER BY r.pk, e.n
"""


class IngestStatements:
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
                "site": host.excluded.site,
                "addresses": host.excluded.addresses,
            },
            # The host's own agent keeps its newest report (an old one replayed from its spool
            # arrives late); once that agent is revoked, or when it is agentless collection
            # (anchors.YIELDING_AGENTS), the agent taking the host over writes its report
            # whatever its age (`Store._host_claims` decided who may).
            where=sa.or_(
                sa.and_(
                    hosts.c.agent_id == host.excluded.agent_id,
                    hosts.c.last_report_at <= host.excluded.last_report_at,
                ),
                sa.and_(
                    hosts.c.agent_id != host.excluded.agent_id,
                    sa.exists().where(
                        agents.c.id == hosts.c.agent_id,
                        sa.or_(
                            agents.c.revoked_at.is_not(None),
                            # Literal comparisons, not an expanding IN: this statement runs
                            # as an executemany for the whole batch, which refuses those.
                            *(agents.c.name == name for name in sorted(anchors.YIELDING_AGENTS)),
                        ),
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
            sa.select(hosts.c.id, hosts.c.agent_id, agents.c.name, agents.c.revoked_at)
            .select_from(hosts.join(agents, agents.c.id == hosts.c.agent_id))
            .where(hosts.c.id.in_(sa.bindparam("ids", expanding=True)))
            .order_by(hosts.c.id)
            .with_for_update(of=hosts)
        )
        # Read only when another agent reports a DMI-derived id: the row is locked by then.
        self.host_identities = sa.select(
            hosts.c.id, hosts.c.inventory[("hardware", "identity")].label("identity")
        ).where(hosts.c.id.in_(sa.bindparam("ids", expanding=True)))


class HeldByAgent(HostClaimed):
    """An agentless report refused because an enrolled agent reports the host itself."""

    def __init__(self, host_id: str, holder: str) -> None:
        super().__init__(
            f"host {host_id} is reported by its agent {holder}; agentless evidence not stored"
        )
        self.host_id = host_id
        self.holder = holder


@dataclass(eq=False)
class IngestJob:
    """A verified report queued for the group commit."""

    agent: Agent
    report: Report
    report_bytes: bytes
    now: datetime
    token_hash: str | None
    digest: str
    audit: AuditNote | None
    signature: bytes | None = None
    """The envelope's signature over `report_bytes` by `agent`'s key (None: the collector's own
    scan, which travelled in no envelope)."""
    future: Future[IngestOutcome] = field(default_factory=Future)
    has_nul: bool = field(init=False)
    claim: anchors.Claim = field(init=False)
    host_id: str = field(init=False)
    """The id the report is stored under: the one it names, unless that is a shared DMI value."""
    note: dict[str, Any] | None = field(init=False, default=None)
    """The collector's `collector` entry for the stored inventory when `host_id` differs."""
    generated_at: datetime = field(init=False)
    """The report's time in UTC."""

    def __post_init__(self) -> None:
        # Parsed strings hold U+0000 only where the bytes had that escape, which PostgreSQL
        # cannot store: then (rarely) the values are cleaned and the rows built in Python.
        self.has_nul = b"\\u0000" in self.report_bytes
        self.claim = anchors.claim_of(self.report.host.id, self.report.inventory)
        self.host_id = self.report.host.id
        # Converted here, on the caller's thread: a time with no UTC instant (which the API
        # refuses first) raises for its own request and never reaches a batch.
        self.generated_at = utc(self.report.generated_at)

    def clean(self, value: Any) -> Any:
        return strip_nul(value) if self.has_nul else value

    def row(self) -> dict[str, Any]:
        return {
            "report_id": self.report.report_id,
            "agent_id": self.agent.id,
            "host_id": self.host_id,
            "generated_at": self.generated_at,
            "received_at": self.now,
            "sha256": self.digest,
            "body": self.report_bytes.decode("utf-8"),
            "counts": dict(Counter(result.status for result in self.report.results)),
            "alg": None if self.signature is None or not self.agent.alg else self.agent.alg.value,
            "signature": None
            if self.signature is None
            else base64.b64encode(self.signature).decode("ascii"),
            "signer_key": None if self.signature is None else self.agent.public_key_pem,
        }

    def host_row(self, report_pk: int) -> dict[str, Any]:
        site, addresses = host_place(self.report.inventory)
        return {
            "site": site,
            "addresses": addresses,
            "id": self.host_id,
            "hostname": self.clean(self.report.host.hostname),
            "agent_id": self.agent.id,
            "last_report_pk": report_pk,
            "last_report_at": self.generated_at,
            "inventory": self.clean(self.inventory()),
        }

    def inventory(self) -> dict[str, Any]:
        """The inventory to store: the report's, with the collector's note (and never an
        agent's own entry under the collector's key)."""
        inventory = self.report.inventory
        if self.note is None and anchors.RESERVED_KEY not in inventory:
            return inventory
        stored = {k: v for k, v in inventory.items() if k != anchors.RESERVED_KEY}
        if self.note is not None:
            stored[anchors.RESERVED_KEY] = self.note
        return stored


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
        "message_zh": clean(result.message_zh),
        "evidence": clean(result.evidence),
        "clauses": clean(result.clauses),
    }


def _refusal(job: IngestJob, route: anchors.Route) -> HostClaimed:
    """Why the job may not store under its host: agentless collection is told which agent holds
    the host; an enrolled agent is not told other agents' names."""
    if job.agent.name in anchors.YIELDING_AGENTS and route.held_by is not None:
        return HeldByAgent(job.claim.reported, route.held_by)
    return HostClaimed(f"host {job.claim.reported} is reported by another agent")


def _newest(
    new: list[tuple[IngestJob, int]], owners: dict[str, int]
) -> dict[str, tuple[IngestJob, int]]:
    """Each host's newest new report by its holder after the batch: the host row points at it."""
    newest: dict[str, tuple[IngestJob, int]] = {}
    for job, pk in new:
        if owners.get(job.host_id, job.agent.id) != job.agent.id:
            continue  # stored, but another agent of this batch took the host over after it
        best = newest.get(job.host_id)
        if best is None or (job.generated_at, pk) >= (best[0].generated_at, best[1]):
            newest[job.host_id] = (job, pk)
    return newest


def _lock_key(host_id: str) -> int:
    """A host id's advisory-lock key: the first 8 bytes of its SHA-256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(host_id.encode()).digest()[:8], "big", signed=True)


def _credential_problem(job: IngestJob, enrolled: Row | None) -> StoreError | None:
    """Why the agent may no longer store this report (its row locked at commit), or None."""
    if enrolled is None or enrolled.public_key_pem != job.agent.public_key_pem:
        return StaleCredential("the agent's key changed since this report was checked")
    if job.token_hash is not None and enrolled.api_token_hash != job.token_hash:
        return StaleCredential("the agent's token changed since this report was checked")
    if enrolled.revoked_at is not None:
        return AgentRevoked(f"agent {job.agent.name!r} was revoked")
    return None


class Ingest(Database):
    """Reports in: queued by `submit_ingest`, written a batch at a time by `_ingest_batch`."""

    _sql: IngestStatements
    _writer: batch.GroupWriter

    def ingest(
        self,
        agent: Agent,
        report: Report,
        report_bytes: bytes,
        now: datetime,
        *,
        token: str | None = None,
        audit: AuditNote | None = None,
        signature: bytes | None = None,
    ) -> IngestOutcome:
        """`submit_ingest`, waiting for the outcome."""
        return self.submit_ingest(
            agent, report, report_bytes, now, token=token, audit=audit, signature=signature
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
        signature: bytes | None = None,
    ) -> Future[IngestOutcome]:
        """Queue a verified report for the next group commit; the future settles once it is
        committed. Atomic per report: its row (its exact bytes), its results, the host's latest
        inventory (when this report is its newest) and the agent's last sighting, or nothing.
        `report` must be `report_bytes` parsed (the API parses, then calls this).

        The same report again (same id, bytes and agent) → `duplicate=True`, nothing written;
        the same id with other bytes or from another agent → `ReplayedReport`. The agent must
        still be enrolled with the key in `agent` (and, when given, hold `token`) at commit:
        `AgentRevoked` or `StaleCredential` otherwise, so a cached credential is safe to use.
        With `audit`, the request's audit entry is written in the same transaction; with
        `signature` (the envelope's, already verified), it is kept with the report."""
        job = IngestJob(
            agent,
            report,
            report_bytes,
            utc(now),
            None if token is None else hash_token(token),
            hashlib.sha256(report_bytes).hexdigest(),
            audit,
            signature,
        )
        self._writer.submit(job)
        return job.future

    def _ingest_batch(
        self, conn: sa.Connection, jobs: list[IngestJob]
    ) -> list[tuple[IngestJob, object]]:
        """Write the batch's reports in a few statements; returns each job's outcome or error."""
        settled: list[tuple[IngestJob, object]] = []
        ids = sorted({job.agent.id for job in jobs})
        enrolled = {row.id: row for row in conn.execute(_LOCK_AGENTS, {"ids": ids})}
        accepted: list[IngestJob] = []
        for job in jobs:
            problem = _credential_problem(job, enrolled.get(job.agent.id))
            if problem is None:
                accepted.append(job)
            else:
                settled.append((job, problem))
        accepted, claimed, owners = self._host_claims(conn, accepted)
        settled += claimed
        if not accepted:
            return settled
        returned = conn.execute(self._sql.insert_report, [job.row() for job in accepted])
        pks = {row.report_id: row.pk for row in returned}
        new: list[tuple[IngestJob, int]] = []
        again: list[IngestJob] = []
        for job in accepted:
            pk = pks.pop(job.report.report_id, None)  # pop: a second copy in this batch is "again"
            if pk is None:
                again.append(job)
            else:
                new.append((job, pk))
        settled += self._stored_before(conn, again)
        self._insert_results(conn, new)
        newest = _newest(new, owners)
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
            (job, IngestOutcome(job.report.report_id, job.host_id, duplicate=False))
            for job, _ in new
        ]
        return settled

    def _host_claims(
        self, conn: sa.Connection, jobs: list[IngestJob]
    ) -> tuple[list[IngestJob], list[tuple[IngestJob, object]], dict[str, int]]:
        """Split the jobs into those whose agent may report their host and `HostClaimed` refusals,
        and set the id each allowed job is stored under.

        A host belongs to the agent that reported it first; another agent may take it over
        only once that agent is revoked — unless the id comes from a DMI value that the two
        reports' evidence shows two machines share: then the report goes to its next anchor's id
        (`anchors.route`). On PostgreSQL every id a job may be stored under, known or new, is
        locked first (a transaction-scoped advisory lock, in key order), so two collectors'
        batches that share hosts run one after the other and never deadlock on a host one of
        them is inserting; then the existing rows are read under a row lock. A new host goes to
        the first of this batch's agents that reports it. Also returned: each host's holder (agent
        id) once the batch is routed, so a host taken over within the batch is not handed back.
        Agentless collection (`anchors.YIELDING_AGENTS`) gives way to any other agent; its own
        refusals name the holder (`HeldByAgent`)."""
        if not jobs:
            return jobs, [], {}
        ids = sorted({host for job in jobs for host, _ in job.claim.chain})
        if self._sql.lock_host_ids is not None:
            # In key order: two ids may share a key, and locks taken in id order could then
            # cross between two batches.
            conn.execute(self._sql.lock_host_ids, {"keys": sorted({_lock_key(h) for h in ids})})
        holders = {
            row.id: anchors.Holder(row.agent_id, row.name, revoked=row.revoked_at is not None)
            for row in conn.execute(self._sql.lock_hosts, {"ids": ids})
        }
        wanted = sorted(
            {host for job in jobs for host in anchors.contested(job.claim, job.agent.id, holders)}
        )
        if wanted:
            for row in conn.execute(self._sql.host_identities, {"ids": wanted}):
                holders[row.id].evidence = anchors.evidence_of(row.identity)
        allowed: list[IngestJob] = []
        refused: list[tuple[IngestJob, object]] = []
        for job in jobs:
            route = anchors.route(job.claim, job.agent.id, job.agent.name, holders)
            if route.host_id is None:
                refused.append((job, _refusal(job, route)))
                continue
            # Set on every attempt: a batch that failed is retried job by job, and the
            # retry's decision replaces the failed one's.
            job.host_id, job.note = route.host_id, None
            if route.shared:
                job.note = anchors.note(job.claim.reported, route.host_id, list(route.shared))
                logger.warning(
                    "report %s of agent %r: host id %s is also reported by another machine "
                    "(a placeholder DMI value); stored as %s",
                    job.report.report_id,
                    job.agent.name,
                    job.claim.reported,
                    route.host_id,
                )
            allowed.append(job)
        return allowed, refused, {host: holder.agent for host, holder in holders.items()}

    def _stored_before(
        self, conn: sa.Connection, jobs: list[IngestJob]
    ) -> list[tuple[IngestJob, object]]:
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
        settled: list[tuple[IngestJob, object]] = []
        for job in jobs:
            row = stored[job.report.report_id]
            if row.agent_id == job.agent.id and row.sha256 == job.digest:
                outcome: object = IngestOutcome(job.report.report_id, row.host_id, duplicate=True)
            else:
                outcome = ReplayedReport(f"report {job.report.report_id} was already received")
            settled.append((job, outcome))
        return settled

    def _insert_results(self, conn: sa.Connection, new: list[tuple[IngestJob, int]]) -> None:
        unpack = self._sql.results_from_body
        from_body = [(job, pk) for job, pk in new if unpack is not None and not job.has_nul]
        if unpack is not None and from_body:
            added = conn.execute(unpack, {"report_pks": [pk for _, pk in from_body]}).rowcount
            if added != sum(len(job.report.results) for job, _ in from_body):
                raise ValueError("a parsed report does not match its bytes")
        built = [
            _result_params(pk, job.host_id, result, job.clean)
            for job, pk in new
            if unpack is None or job.has_nul
            for result in job.report.results
        ]
        if built:
            conn.execute(sa.insert(results), built)
