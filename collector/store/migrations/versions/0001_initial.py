"""The collector's first schema: agents, enrolment tokens, users, hosts, reports, results and the
hash-chained audit log with its head row.

Revision ID: 0001
Revises:
Create Date: 2026-05-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the schema's types: a migration must not change when schema.py does.
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
HASH = sa.String(64)


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("alg", sa.String(16)),
        sa.Column("public_key_pem", sa.Text),
        sa.Column("api_token_hash", HASH),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("enrolled_at", _when()),
        sa.Column("revoked_at", _when()),
        sa.Column("last_seen_at", _when()),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint("name", name="uq_agents_name"),
        sa.UniqueConstraint("api_token_hash", name="uq_agents_api_token_hash"),
    )
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=False),
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("expires_at", _when(), nullable=False),
        sa.Column("used_at", _when()),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_tokens"),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name="fk_enrollment_tokens_agent_id_agents"
        ),
        sa.UniqueConstraint("token_hash", name="uq_enrollment_tokens_token_hash"),
    )
    op.create_index("ix_enrollment_tokens_agent_id", "enrollment_tokens", ["agent_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
        sa.UniqueConstraint("token_hash", name="uq_users_token_hash"),
    )
    op.create_table(
        "reports",
        sa.Column("pk", BIG_ID, nullable=False),
        sa.Column("report_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=False),
        sa.Column("host_id", sa.Text, nullable=False),
        sa.Column("generated_at", _when(), nullable=False),
        sa.Column("received_at", _when(), nullable=False),
        sa.Column("sha256", HASH, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_reports"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_reports_agent_id_agents"),
        sa.UniqueConstraint("report_id", name="uq_reports_report_id"),
    )
    op.create_index("ix_reports_host_id_generated_at", "reports", ["host_id", "generated_at"])
    op.create_table(
        "hosts",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=False),
        sa.Column("last_report_pk", sa.BigInteger, nullable=False),
        sa.Column("last_report_at", _when(), nullable=False),
        sa.Column("inventory", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hosts"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_hosts_agent_id_agents"),
        sa.ForeignKeyConstraint(
            ["last_report_pk"], ["reports.pk"], name="fk_hosts_last_report_pk_reports"
        ),
    )
    op.create_index("ix_hosts_last_report_pk", "hosts", ["last_report_pk"])
    op.create_index("ix_hosts_hostname", "hosts", ["hostname"])
    op.create_table(
        "results",
        sa.Column("pk", BIG_ID, nullable=False),
        sa.Column("report_pk", sa.BigInteger, nullable=False),
        sa.Column("host_id", sa.Text, nullable=False),
        sa.Column("check_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("clauses", JSON, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_results"),
        sa.ForeignKeyConstraint(
            ["report_pk"],
            ["reports.pk"],
            name="fk_results_report_pk_reports",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_results_check_id_status", "results", ["check_id", "status"])
    op.create_index("ix_results_report_pk", "results", ["report_pk"])
    op.create_table(
        "audit_log",
        sa.Column("seq", BIG_ID, nullable=False, autoincrement=False),
        sa.Column("at", _when(), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("prev_hash", HASH, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    _compress_big_columns_with_lz4()
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", HASH, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def _compress_big_columns_with_lz4() -> None:
    """Report bodies (~30 KB) and inventories are TOASTed; lz4 compresses them several times
    faster than the default pglz (PostgreSQL 14+ built with lz4; elsewhere nothing changes)."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    has_lz4 = bind.execute(
        sa.text(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
    ).scalar()
    if has_lz4:
        op.execute("ALTER TABLE reports ALTER COLUMN body SET COMPRESSION lz4")
        op.execute("ALTER TABLE hosts ALTER COLUMN inventory SET COMPRESSION lz4")


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_log",
        "results",
        "hosts",
        "reports",
        "users",
        "enrollment_tokens",
        "agents",
    ):
        op.drop_table(table)
