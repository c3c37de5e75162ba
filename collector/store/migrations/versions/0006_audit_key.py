"""The audit chain keyed with the collector's audit key: `audit_head.keyed_from` is the first
entry hashed with HMAC-SHA256 (NULL while no key is configured) and `audit_head.mac` the head
row's MAC with that key. Entries before `keyed_from` keep their plain SHA-256 links.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as table:
        table.add_column(sa.Column("keyed_from", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as table:
        table.drop_column("mac")
        table.drop_column("keyed_from")
