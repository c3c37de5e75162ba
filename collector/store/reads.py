"""What the API reads of the stored reports — hosts with their newest report, a host's reports,
the results of each host's newest report — and the pruning of reports past their retention."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.models import HostSummary, Page, ReportSummary, ResultRow
from collector.store.engine import Database
from collector.store.rows import to_host_summary, to_result_row
from collector.store.schema import agents, hosts, reports, results
from collector.store.values import bounded, check_page, storable, utc

_HOST_SUMMARY = sa.select(
    hosts.c.id,
    hosts.c.hostname,
    agents.c.name.label("agent"),
    reports.c.report_id,
    hosts.c.last_report_at,
    reports.c.counts,
).select_from(
    hosts.join(agents, agents.c.id == hosts.c.agent_id).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)
_RESULT_ROWS = sa.select(
    reports.c.report_id,
    hosts.c.id.label("host_id"),
    hosts.c.hostname,
    results.c.check_id,
    results.c.status,
    results.c.target,
    results.c.message,
    reports.c.generated_at,
    results.c.clauses,
    results.c.evidence,
).select_from(
    hosts.join(results, results.c.report_pk == hosts.c.last_report_pk).join(
        reports, reports.c.pk == hosts.c.last_report_pk
    )
)


class Reads(Database):
    """Queries over hosts, reports and results, and `prune_reports`."""

    def list_hosts(self, limit: int, offset: int) -> Page[HostSummary]:
        """Hosts by hostname, each with its newest report's id, time and counts."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(hosts)).scalar_one()
            rows = conn.execute(
                _HOST_SUMMARY.order_by(hosts.c.hostname, hosts.c.id)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_host_summary(row) for row in rows), total, limit, offset)

    def get_host(self, host_id: str) -> tuple[HostSummary, dict[str, Any], list[ResultRow]] | None:
        """The host's summary, latest inventory and the results of its newest report."""
        if not storable(host_id):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                _HOST_SUMMARY.add_columns(hosts.c.inventory).where(hosts.c.id == host_id)
            ).first()
            if row is None:
                return None
            found = conn.execute(
                _RESULT_ROWS.where(hosts.c.id == host_id).order_by(results.c.pk)
            ).all()
        return to_host_summary(row), dict(row.inventory), [to_result_row(r) for r in found]

    def host_reports(self, host_id: str, limit: int, offset: int) -> Page[ReportSummary]:
        """The host's reports, newest first (an unknown host has none)."""
        check_page(limit, offset)
        if not storable(host_id):
            return Page((), 0, limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(reports).where(reports.c.host_id == host_id)
            ).scalar_one()
            rows = conn.execute(
                sa.select(
                    reports.c.report_id,
                    reports.c.host_id,
                    agents.c.name.label("agent"),
                    reports.c.generated_at,
                    reports.c.received_at,
                    reports.c.counts,
                )
                .select_from(reports.join(agents, agents.c.id == reports.c.agent_id))
                .where(reports.c.host_id == host_id)
                .order_by(reports.c.generated_at.desc(), reports.c.pk.desc())
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        items = tuple(
            ReportSummary(
                report_id=row.report_id,
                host_id=row.host_id,
                agent=row.agent,
                generated_at=row.generated_at,
                received_at=row.received_at,
                counts=dict(row.counts),
            )
            for row in rows
        )
        return Page(items, total, limit, offset)

    def query_results(
        self, check_id: str | None, status: str | None, limit: int, offset: int
    ) -> Page[ResultRow]:
        """Results of each host's newest report, by hostname then report order, filtered."""
        check_page(limit, offset)
        if not storable(check_id, status):
            return Page((), 0, limit, offset)
        conditions: list[sa.ColumnElement[bool]] = []
        if check_id is not None:
            conditions.append(results.c.check_id == check_id)
        if status is not None:
            conditions.append(results.c.status == status)
        with self._tx(write=False) as conn:
            total = conn.execute(
                sa.select(sa.func.count())
                .select_from(hosts.join(results, results.c.report_pk == hosts.c.last_report_pk))
                .where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                _RESULT_ROWS.where(*conditions)
                .order_by(hosts.c.hostname, hosts.c.id, results.c.pk)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_result_row(row) for row in rows), total, limit, offset)

    def prune_reports(self, before: datetime, chunk: int = 2000) -> tuple[int, int]:
        """Delete the reports received before `before`, with their results, except each host's
        newest report (what the API shows). In transactions of `chunk` reports, so writers are
        never held up for long. Returns (reports, results) deleted."""
        before = utc(before)
        current = sa.select(hosts.c.last_report_pk).scalar_subquery()
        doomed = (
            sa.select(reports.c.pk)
            .where(reports.c.received_at < before, reports.c.pk.not_in(current))
            .order_by(reports.c.pk)
            .limit(chunk)
        )
        gone_reports = gone_results = 0
        while True:
            with self._tx(write=True) as conn:
                pks = list(conn.execute(doomed).scalars())
                if not pks:
                    return gone_reports, gone_results
                # Results first: no reliance on ON DELETE CASCADE being enforced (SQLite).
                gone_results += conn.execute(
                    sa.delete(results).where(results.c.report_pk.in_(pks))
                ).rowcount
                gone_reports += conn.execute(
                    sa.delete(reports).where(reports.c.pk.in_(pks))
                ).rowcount
