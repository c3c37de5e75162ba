"""`Store`: every read and write the collector makes to its database, one transaction per method,
in SQLAlchemy Core over SQLite (one hospital) or PostgreSQL (a province).

The facade joins the store's parts — the engine and its transactions (`engine`), enrolment, agents
and users (`identity`), report ingest (`ingest`), reads of hosts, reports and results (`reads`),
scans (`scans`), what compliance reports and snapshots read, with attestations and snapshot
records (`evidence`), and the audit log (`audit`) — and runs the group commit (`batch`) that writes
queued reports and audit entries together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from collector.models import AuditKey
from collector.store import batch
from collector.store.alerts import Alerts
from collector.store.audit import AuditJob, AuditLog, AuditNote
from collector.store.dashboard import Dashboard
from collector.store.engine import connect
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
from collector.store.evidence import Evidence
from collector.store.identity import Identities
from collector.store.ingest import Ingest, IngestJob, IngestStatements
from collector.store.jobs import Jobs
from collector.store.reads import Reads
from collector.store.scan_history import ScanHistory
from collector.store.scans import Scans
from collector.store.schedules import Schedules
from collector.store.versions import Versions
from collector.store.web_auth import WebAuth

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

_Job = IngestJob | AuditJob


class Store(
    Identities,
    Ingest,
    Reads,
    Evidence,
    Scans,
    ScanHistory,
    Schedules,
    Jobs,
    Alerts,
    Versions,
    WebAuth,
    Dashboard,
    AuditLog,
):
    """The collector's database. Thread-safe: one engine, a pool of connections."""

    def __init__(
        self, engine: sa.Engine, password: str | None = None, audit_key: AuditKey | None = None
    ) -> None:
        self._engine = engine
        self._password = password
        self._audit_key = audit_key
        self._dialect = engine.dialect.name
        self._sql = IngestStatements(self._dialect)
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
        ingests = [job for job in jobs if isinstance(job, IngestJob)]
        audits = [job for job in jobs if isinstance(job, AuditJob)]
        with self._tx(write=True) as conn:
            settled: list[tuple[_Job, object]] = []
            if ingests:
                settled += self._ingest_batch(conn, ingests)
            # Each report's own request entry, now that its outcome is known: in the same
            # transaction, so a stored report is never missing from the log.
            audits += [
                job.audit.entry(outcome)
                for job, outcome in settled
                if isinstance(job, IngestJob) and job.audit is not None
            ]
            if audits:
                settled += self._audit_batch(conn, audits)
        return settled
