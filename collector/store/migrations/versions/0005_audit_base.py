"""Where the audit chain starts once old entries are pruned: `audit_head.base_seq` and
`base_hash` record the last pruned entry (0 and the genesis hash while nothing was pruned), so
`medsec audit verify` checks the remaining chain from there and still finds any gap after it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GENESIS = "0" * 64


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as table:
        table.add_column(sa.Column("base_seq", sa.BigInteger(), nullable=False, server_default="0"))
        table.add_column(
            sa.Column("base_hash", sa.String(64), nullable=False, server_default=_GENESIS)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as table:
        table.drop_column("base_hash")
        table.drop_column("base_seq")
