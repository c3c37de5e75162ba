"""The collector's domain records, shared by the store, the API and the CLI.

The store returns these (never ORM rows); the API renders them, each response model reading the
fields of the same names (`collector.api.schemas.to_out`); nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from collector.scan import SCAN_HOST_PREFIX

T = TypeVar("T")


class Role(enum.StrEnum):
    """Who may do what. Each role includes the rights of the ones below it."""

    AUDITOR = "auditor"  # reads hosts, reports, results, the audit log
    OPERATOR = "operator"  # also starts scans
    ADMIN = "admin"  # also manages agents and users

    def allows(self, needed: Role) -> bool:
        order = [Role.AUDITOR, Role.OPERATOR, Role.ADMIN]
        return order.index(self) >= order.index(needed)


class SignatureAlg(enum.StrEnum):
    ED25519 = "ed25519"
    SM2_SM3 = "sm2-sm3"  # SM2 signature over SM3 (GB/T 32918), for `crypto: sm`


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    alg: SignatureAlg | None
    """None until the agent has enrolled."""
    public_key_pem: str | None
    """The agent's signing key (SubjectPublicKeyInfo PEM), registered at enrolment."""
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None = None
    probe_zone: str | None = None
    """The zone whose scan jobs this agent may claim, when it is a probe."""

    @property
    def active(self) -> bool:
        return self.enrolled_at is not None and self.revoked_at is None

    @property
    def state(self) -> Literal["pending", "active", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.enrolled_at is not None else "pending"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of an API request: a user (with a role) or an agent."""

    kind: str  # "user" | "agent"
    name: str
    role: Role | None  # agents have no role: they may only post their own reports
    agent_id: int | None = None


@dataclass(frozen=True)
class AuditKey:
    """The collector's audit key, from its key file (never from the database): the secret and
    the first audit entry it keys. Knowing where keying starts outside the database is what lets
    `verify` see keying switched off."""

    secret: bytes = field(repr=False)
    keyed_from: int


class ScanState(enum.StrEnum):
    RUNNING = "running"
    PASSED = "passed"  # the scan ran; no check failed or errored
    FINDINGS = "findings"  # the scan ran; some check failed or could not decide
    FAILED = "failed"  # the scan did not run to the end (see `message`)


@dataclass(frozen=True)
class ScanRun:
    """A network scan, started by hand (the API, the dashboard) or by a schedule."""

    id: str
    zones: str
    """The name of the zones file in the collector's settings (`scans.zones`)."""
    requested_by: str
    """The user who started it, or `schedule NAME` for a schedule's (kept when it is removed)."""
    state: ScanState
    started_at: datetime
    finished_at: datetime | None
    report_id: str | None
    """The stored report of the scan's results, once it has run."""
    message: str | None
    schedule_id: str | None = None
    """The schedule that started it (None: started by hand)."""
    due_at: datetime | None = None
    """The due time of that schedule it was started for: one scan per due time, ever."""


@dataclass(frozen=True)
class IngestOutcome:
    report_id: str
    host_id: str
    duplicate: bool
    """True when the same report (same id, same bytes, same agent) was already stored."""


@dataclass(frozen=True)
class HostSummary:
    id: str
    hostname: str
    agent: str
    last_report_id: str
    last_report_at: datetime
    counts: dict[str, int]
    """Result counts of the latest report by status."""


@dataclass(frozen=True)
class ReportSummary:
    report_id: str
    host_id: str
    agent: str
    generated_at: datetime
    received_at: datetime
    counts: dict[str, int]


@dataclass(frozen=True)
class ResultRow:
    report_id: str
    host_id: str
    hostname: str
    check_id: str
    status: str
    target: str | None
    message: str
    generated_at: datetime
    clauses: tuple[str, ...] = ()
    """The clauses as stored with the report (the agent's catalogs); the API serves the
    collector's own join instead (`collector.api.routers.read`)."""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    """User or agent name, or "-" for an unauthenticated request."""
    role: str
    """The actor's role, "agent", or "-"."""
    action: str
    """e.g. "POST /api/v1/reports" or "cli users add"."""
    source: str
    """Client address, or "cli"."""
    outcome: str
    """HTTP status code and error code, e.g. "201" or "403 forbidden"."""
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head: tuple[int, str] | None = None
    """The last entry's seq and hash when the chain verified: kept outside the database, it
    lets a later `verify --expect` see a rollback (the log put back to an earlier state)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int
    limit: int
    offset: int


# --------------------------------------------------------------------------- compliance evidence


@dataclass(frozen=True, slots=True)
class EvidenceHost:
    """A host (or a scan) with the report whose results count as its evidence."""

    host_id: str
    hostname: str
    agent: str
    site: str | None
    addresses: tuple[str, ...]
    report_pk: int
    report_id: str
    generated_at: datetime
    received_at: datetime

    @property
    def is_scan(self) -> bool:
        """A scan stored as a report, not an agent's host."""
        return self.host_id.startswith(SCAN_HOST_PREFIX)


class EvidenceResult(NamedTuple):
    """One stored result; `evidence` is its JSON exactly as stored (copied, never re-parsed).
    A tuple: the store hands out the driver's rows as they are, 400,000 at 10,000 hosts."""

    report_pk: int
    check_id: str
    status: str
    target: str | None
    message: str
    message_zh: str | None
    evidence: str


EvidenceRow = tuple[int, str, str, str | None, str, str | None, str]
"""An `EvidenceResult`'s fields as the database driver returns them."""


@dataclass(frozen=True, slots=True)
class MissingAgent:
    """An enrolled, active agent that has stored no report (by the instant asked about)."""

    name: str
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class Attestation:
    """A person's judgement on a manual clause, with the SHA-256 of the document behind it."""

    id: str
    standard: str
    clause: str
    status: Literal["pass", "fail", "not_applicable"]
    note: str
    file_name: str | None
    file_sha256: str | None
    created_by: str
    created_at: datetime
    valid_until: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        return self.created_at <= moment and (self.valid_until is None or moment < self.valid_until)


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A stored auditor snapshot: the signed zip's name in the snapshot folder and its hash."""

    id: str
    created_by: str
    created_at: datetime
    scope: dict[str, Any]
    file_name: str
    sha256: str
    size: int
    key_fingerprint: str
    hosts: int
