"""Compliance reports and auditor snapshots: each report keeps the signature it arrived with (and
the key that made it), results keep their Chinese message, hosts carry their site and addresses
(the compliance filters), and attestations and snapshots get their tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("reports") as table:
        table.add_column(sa.Column("alg", sa.String(16), nullable=True))
        table.add_column(sa.Column("signature", sa.Text(), nullable=True))
        table.add_column(sa.Column("signer_key", sa.Text(), nullable=True))
        table.create_index("ix_reports_received_at", ["received_at"])
    with op.batch_alter_table("results") as table:
        table.add_column(sa.Column("message_zh", sa.Text(), nullable=True))
    with op.batch_alter_table("hosts") as table:
        table.add_column(sa.Column("site", sa.Text(), nullable=True))
        table.add_column(
            sa.Column("addresses", _JSON, nullable=False, server_default=sa.text("'[]'"))
        )
    _backfill_hosts()
    op.create_table(
        "attestations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("standard", sa.Text(), nullable=False),
        sa.Column("clause", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("file_sha256", sa.String(64), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("valid_until", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attestations"),
    )
    op.create_index("ix_attestations_standard_clause", "attestations", ["standard", "clause"])
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("scope", _JSON, nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("key_fingerprint", sa.Text(), nullable=False),
        sa.Column("hosts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_created_at", "snapshots", ["created_at"])


def _backfill_hosts() -> None:
    """Site and addresses of the hosts stored before, from their inventory."""
    from collector.store.values import host_place

    conn = op.get_bind()
    hosts = sa.table(
        "hosts",
        sa.column("id", sa.Text),
        sa.column("inventory", _JSON),
        sa.column("site", sa.Text),
        sa.column("addresses", _JSON),
    )
    rows: list[Any] = list(conn.execute(sa.select(hosts.c.id, hosts.c.inventory)))
    for row in rows:
        site, addresses = host_place(row.inventory)
        conn.execute(
            sa.update(hosts).where(hosts.c.id == row.id).values(site=site, addresses=addresses)
        )


def downgrade() -> None:
    op.drop_index("ix_snapshots_created_at", table_name="snapshots")
    op.drop_table("snapshots")
    op.drop_index("ix_attestations_standard_clause", table_name="attestations")
    op.drop_table("attestations")
    with op.batch_alter_table("hosts") as table:
        table.drop_column("addresses")
        table.drop_column("site")
    with op.batch_alter_table("results") as table:
        table.drop_column("message_zh")
    with op.batch_alter_table("reports") as table:
        table.drop_index("ix_reports_received_at")
        table.drop_column("signer_key")
        table.drop_column("signature")
        table.drop_column("alg")
