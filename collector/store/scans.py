"""The record of network scans: at most one running per set of zones across every collector
process, each closed as passed, findings or failed, and one whose collector died shown as lost."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa

from collector.models import Page, ScanRun, ScanState
from collector.store.engine import Database
from collector.store.errors import NotFound, ScanRunning
from collector.store.rows import LOST_SCAN, SCAN_COLUMNS, to_scan
from collector.store.schema import scans
from collector.store.values import bounded, check_page, safe_text, storable, utc


class Scans(Database):
    """Starting, finishing and listing scans, each method one transaction."""

    def start_scan(
        self, zones: str, requested_by: str, now: datetime, deadline: datetime
    ) -> ScanRun:
        """Record a running scan of `zones` that must end by `deadline`; `ScanRunning` if one
        runs already (in any collector process). A scan still running past its deadline was
        lost with its collector: it is closed as failed first, so it cannot block its zones."""
        now = utc(now)
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(scans)
                .where(
                    scans.c.zones == zones,
                    scans.c.state == ScanState.RUNNING.value,
                    scans.c.deadline < now,
                )
                .values(state=ScanState.FAILED.value, finished_at=now, message=LOST_SCAN)
            )
            row = conn.execute(
                self._insert(scans)
                .values(
                    id=str(uuid.uuid4()),
                    zones=safe_text(zones),
                    requested_by=safe_text(requested_by),
                    state=ScanState.RUNNING.value,
                    started_at=now,
                    deadline=utc(deadline),
                )
                .on_conflict_do_nothing()
                .returning(*SCAN_COLUMNS)
            ).first()
        if row is None:
            raise ScanRunning(f"a scan of {zones!r} is running already")
        return to_scan(row, now)

    def finish_scan(
        self,
        scan_id: str,
        state: ScanState,
        now: datetime,
        *,
        report_id: str | None = None,
        message: str | None = None,
    ) -> ScanRun:
        """Close a running scan (a scan closed already, as lost, stays as it is)."""
        if state is ScanState.RUNNING:
            raise ValueError("a scan is finished as passed, findings or failed")
        with self._tx(write=True) as conn:
            conn.execute(
                sa.update(scans)
                .where(scans.c.id == scan_id, scans.c.state == ScanState.RUNNING.value)
                .values(
                    state=state.value,
                    finished_at=utc(now),
                    report_id=report_id,
                    message=None if message is None else safe_text(message),
                )
            )
            row = conn.execute(sa.select(*SCAN_COLUMNS).where(scans.c.id == scan_id)).first()
        if row is None:
            raise NotFound(f"no scan {scan_id}")
        return to_scan(row, utc(now))

    def get_scan(self, scan_id: str, now: datetime) -> ScanRun | None:
        """The scan; one still marked running past its deadline is shown as lost."""
        if not storable(scan_id):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(sa.select(*SCAN_COLUMNS).where(scans.c.id == scan_id)).first()
        return None if row is None else to_scan(row, utc(now))

    def list_scans(self, limit: int, offset: int, now: datetime) -> Page[ScanRun]:
        """Scans, newest first (as `get_scan` shows each)."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(scans)).scalar_one()
            rows = conn.execute(
                sa.select(*SCAN_COLUMNS)
                .order_by(scans.c.started_at.desc(), scans.c.id)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(to_scan(row, utc(now)) for row in rows), total, limit, offset)
