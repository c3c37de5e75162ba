"""Periodic scans, probe jobs and alerts: `schedules` (each due time becomes one scan, so `scans`
gets `schedule_id` + `due_at`, unique together), `jobs` (the queue probes claim from, under a
lease), `agents.probe_zone` (the zone a probe's credential may claim jobs for), and `alerts` with
their outbox `alert_deliveries`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("agents") as table:
        table.add_column(sa.Column("probe_zone", sa.Text(), nullable=True))
    with op.batch_alter_table("scans") as table:
        table.add_column(sa.Column("schedule_id", sa.String(36), nullable=True))
        table.add_column(sa.Column("due_at", _TIME, nullable=True))
    op.create_index("uq_scans_schedule_id_due_at", "scans", ["schedule_id", "due_at"], unique=True)
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("zones", sa.Text(), nullable=False),
        sa.Column("every_seconds", sa.Integer(), nullable=True),
        sa.Column("cron", sa.Text(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("next_due_at", _TIME, nullable=False),
        sa.Column("last_due_at", _TIME, nullable=True),
        sa.Column("last_scan_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("name", name="uq_schedules_name"),
    )
    op.create_index("ix_schedules_next_due_at", "schedules", ["next_due_at"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("scan_id", sa.String(36), nullable=True),
        sa.Column("zone", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request", _JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("deadline", _TIME, nullable=False),
        sa.Column("claim_id", sa.String(36), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_at", _TIME, nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("finished_at", _TIME, nullable=True),
        sa.Column("finished_by", sa.Text(), nullable=True),
        sa.Column("result", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_zone_state_created_at", "jobs", ["zone", "state", "created_at"])
    op.create_index("ix_jobs_scan_id", "jobs", ["scan_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("zones", sa.Text(), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.Column("opened_at", _TIME, nullable=False),
        sa.Column("opened_scan_id", sa.String(36), nullable=True),
        sa.Column("cleared_at", _TIME, nullable=True),
        sa.Column("cleared_scan_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    still_open = sa.text("cleared_at IS NULL")
    op.create_index(
        "uq_alerts_open_key",
        "alerts",
        ["key"],
        unique=True,
        sqlite_where=still_open,
        postgresql_where=still_open,
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_alert_deliveries_alert_id_alerts"
        ),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_index(
        "ix_alert_deliveries_state_next_attempt_at",
        "alert_deliveries",
        ["state", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alerts")
    op.drop_table("jobs")
    op.drop_table("schedules")
    op.drop_index("uq_scans_schedule_id_due_at", table_name="scans")
    with op.batch_alter_table("scans") as table:
        table.drop_column("due_at")
        table.drop_column("schedule_id")
    with op.batch_alter_table("agents") as table:
        table.drop_column("probe_zone")
