"""Drop the results index on (check_id, status).

The API reads only each host's newest results: `/results?check_id=&status=` walks the hosts and
their newest report's results (by `report_pk`), and filters those. An index over every result
ever stored answered none of these reads well, since it grows with the whole history (about
11 million rows a day per thousand hosts at a 5-minute interval) while the question is about one
report per host, and each insert landed at a random place in it: measured, storing a report's
~40 results cost about a tenth more with it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_results_check_id_status", table_name="results")


def downgrade() -> None:
    op.create_index("ix_results_check_id_status", "results", ["check_id", "status"])
