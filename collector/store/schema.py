"""The collector's tables as SQLAlchemy Core metadata: the one description of the schema that the
store queries and that the Alembic migrations must reproduce (a test compares the two).

Strings are unbounded `Text` except fixed-size hashes and short enumerations, so SQLite and
PostgreSQL accept and reject the same values; length limits are enforced at the API boundary.
JSON is `JSONB` on PostgreSQL. Timestamps are `timestamptz` on PostgreSQL; on SQLite, which has
no time zones, `UTCDateTime` stores UTC and gives back aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first audit entry, and the audit head's hash while the log is empty."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """`DateTime(timezone=True)` that stores UTC and always returns aware UTC datetimes.

    A naive datetime is taken to be UTC already (the contract: "naive/aware datetimes: store UTC,
    return aware UTC"). On SQLite the stored text then sorts and compares chronologically.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC) if dialect.name != "sqlite" else value
        value = value.astimezone(UTC)
        # SQLite's DateTime drops tzinfo when it formats the value; make that explicit.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Primary keys of the big tables: BIGINT on PostgreSQL, the rowid alias on SQLite."""
Hash = sa.String(64)
"""A SHA-256 digest in lower-case hex."""

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("alg", sa.String(16)),
    sa.Column("public_key_pem", sa.Text),
    sa.Column("api_token_hash", Hash, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("enrolled_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("last_seen_at", UTCDateTime),
    # A probe's zone: the only zone whose scan jobs its credential may claim (None: not a probe).
    sa.Column("probe_zone", sa.Text),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"), nullable=False, index=True),
    sa.Column("token_hash", Hash, nullable=False, unique=True),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", Hash, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # The dashboard (`web_auth`): an Argon2id hash (None: no dashboard password yet), the
    # language the user chose, and the failed logins since the last success or lockout.
    sa.Column("password_hash", sa.Text),
    sa.Column("locale", sa.String(2), nullable=False, server_default="zh"),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UTCDateTime),
)

web_logins = sa.Table(
    "web_logins",
    metadata,
    # SHA-256 of the cookie's random value: the value itself is never stored.
    sa.Column("id", Hash, primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)
"""Dashboard logins, server-side: a row per signed-in browser, gone at logout, at expiry (idle or
absolute), and with its user (password change, removal)."""

reports = sa.Table(
    "reports",
    metadata,
    sa.Column("pk", BigId, primary_key=True),
    sa.Column("report_id", sa.Text, nullable=False, unique=True),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("host_id", sa.Text, nullable=False),
    sa.Column("generated_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("sha256", Hash, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("counts", JSONType, nullable=False),
    # The envelope it arrived in (None for the collector's own scans): an auditor's snapshot
    # carries the report's exact bytes with them, checkable against the agent's key of the time.
    sa.Column("alg", sa.String(16)),
    sa.Column("signature", sa.Text),
    sa.Column("signer_key", sa.Text),
    sa.Index(None, "host_id", "generated_at"),
    # Compliance "as of" a past instant reads what had been received by then.
    sa.Index(None, "received_at"),
)

hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("last_report_pk", sa.BigInteger, sa.ForeignKey("reports.pk"), nullable=False),
    sa.Column("last_report_at", UTCDateTime, nullable=False),
    sa.Column("inventory", JSONType, nullable=False),
    # From the newest inventory (`values.host_place`): what the compliance filters select on.
    sa.Column("site", sa.Text),
    sa.Column("addresses", JSONType, nullable=False, server_default=sa.text("'[]'")),
    sa.Index(None, "last_report_pk"),
    sa.Index(None, "hostname"),
)

results = sa.Table(
    "results",
    metadata,
    sa.Column("pk", BigId, primary_key=True),
    sa.Column(
        "report_pk",
        sa.BigInteger,
        sa.ForeignKey("reports.pk", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("host_id", sa.Text, nullable=False),
    sa.Column("check_id", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("message_zh", sa.Text),
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("clauses", JSONType, nullable=False),
    # No index on (check_id, status): reads filter each host's newest results (migration 0003).
    sa.Index(None, "report_pk"),
)

scans = sa.Table(
    "scans",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("zones", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    # Past it, a scan still marked running was lost with its collector.
    sa.Column("deadline", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("report_id", sa.Text),
    sa.Column("message", sa.Text),
    # A scan a schedule started, and the due time it was started for (None: started by hand).
    sa.Column("schedule_id", sa.String(36)),
    sa.Column("due_at", UTCDateTime),
    sa.Index(None, "started_at"),
    # A schedule never runs twice for one due time, whichever collector process fires it.
    sa.Index("uq_scans_schedule_id_due_at", "schedule_id", "due_at", unique=True),
    # One running scan per zones file, whichever collector process started it.
    sa.Index(
        "uq_scans_running_zones",
        "zones",
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    ),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("zones", sa.Text, nullable=False),
    # Exactly one of the two: a fixed period, or a cron expression (croniter, UTC).
    sa.Column("every_seconds", sa.Integer),
    sa.Column("cron", sa.Text),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("next_due_at", UTCDateTime, nullable=False),
    sa.Column("last_due_at", UTCDateTime),
    sa.Column("last_scan_id", sa.String(36)),
    sa.Index(None, "next_due_at"),
)
"""Periodic scans: each due time becomes one scan (`scans.schedule_id`, `scans.due_at`)."""

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("scan_id", sa.String(36)),
    sa.Column("zone", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("request", JSONType, nullable=False),
    # queued -> claimed -> done | failed; a claim whose lease ran out is claimable again.
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("deadline", UTCDateTime, nullable=False),
    sa.Column("claim_id", sa.String(36)),
    sa.Column("claimed_by", sa.Text),
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("finished_by", sa.Text),
    sa.Column("result", JSONType),
    sa.Column("error", sa.Text),
    sa.Index(None, "zone", "state", "created_at"),
    sa.Index(None, "scan_id"),
)
"""Scan jobs for probes that dial out: claimed with `FOR UPDATE SKIP LOCKED` under a lease."""

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("zones", sa.Text, nullable=False),
    sa.Column("detail", JSONType, nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("opened_scan_id", sa.String(36)),
    sa.Column("cleared_at", UTCDateTime),
    sa.Column("cleared_scan_id", sa.String(36)),
    # One open alert per key: the violation raises once, clears once.
    sa.Index(
        "uq_alerts_open_key",
        "key",
        unique=True,
        sqlite_where=sa.text("cleared_at IS NULL"),
        postgresql_where=sa.text("cleared_at IS NULL"),
    ),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False, index=True),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Index(None, "state", "next_attempt_at"),
)
"""The alerts' outbox: written with the alert, sent (and retried) by any collector process."""

attestations = sa.Table(
    "attestations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("standard", sa.Text, nullable=False),
    # The standard's short id as clause ids name it: 'GB/T 22239-2019' or 'MNDS'.
    sa.Column("clause", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text),
    sa.Column("file_sha256", Hash),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("valid_until", UTCDateTime),
    sa.Index(None, "standard", "clause"),
)
"""A person's judgement on a manual clause; the newest one per clause still valid counts."""

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("scope", JSONType, nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    # The signed zip's name in the collector's snapshot folder (never a path).
    sa.Column("sha256", Hash, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("key_fingerprint", sa.Text, nullable=False),
    sa.Column("hosts", sa.Integer, nullable=False),
    sa.Index(None, "created_at"),
)
"""Auditor snapshots: immutable once written; the file's hash is checked on every download."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("prev_hash", Hash, nullable=False),
    sa.Column("hash", Hash, nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", Hash, nullable=False),
    sa.Column("base_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("base_hash", Hash, nullable=False, server_default=GENESIS_HASH),
    sa.Column("keyed_from", sa.BigInteger),
    sa.Column("mac", Hash),
)
"""One row (id=1): the last entry's seq and hash; a deleted tail shows as a mismatch with it.
`base_seq`/`base_hash`: the last entry pruned (`Store.prune_audit`), where the chain now starts.
`keyed_from`: the first entry hashed with the audit key (None: no key yet); `mac`: the head's MAC
with that key (`audit.head_mac`).
Appenders lock this row (`FOR UPDATE`), which serialises them across collector processes."""
