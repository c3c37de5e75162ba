"""The web dashboard's logins: users get a password hash (Argon2id), the language they chose, and
their failed-login count and lockout; signed-in browsers get the `web_logins` table (the cookie's
SHA-256, never the cookie, with the login's CSRF token and its times).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
        table.add_column(sa.Column("locale", sa.String(2), nullable=False, server_default="zh"))
        table.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(sa.Column("locked_until", _TIME, nullable=True))
    op.create_table(
        "web_logins",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_seen_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_logins"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_web_logins_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_web_logins_user_id", "web_logins", ["user_id"])
    op.create_index("ix_web_logins_expires_at", "web_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_web_logins_expires_at", table_name="web_logins")
    op.drop_index("ix_web_logins_user_id", table_name="web_logins")
    op.drop_table("web_logins")
    with op.batch_alter_table("users") as table:
        table.drop_column("locked_until")
        table.drop_column("failed_logins")
        table.drop_column("locale")
        table.drop_column("password_hash")
