"""Scan history: the completed scans kept within the retention, each with its stored report, what
comparing two scans reads (a scan and its report by id, the newest completed scans of a zones
file), and the pruning of scans (with their jobs) past `reports.retention_days`.

A scan is *completed* when it ran to the end and its results were stored: state passed or
findings, with a report id. A failed scan has no results; a completed scan whose report was
pruned has none left either; neither can be compared, and each says so (`ScanNotComparable`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from collector.models import Page, ScanRun, ScanState
from collector.store.engine import Database
from collector.store.errors import NotFound, StoreError
from collector.store.rows import SCAN_COLUMNS, to_scan
from collector.store.schema import jobs, reports, scans
from collector.store.values import bounded, check_page, storable, utc

COMPLETED = (ScanState.PASSED.value, ScanState.FINDINGS.value)
"""The states of a scan whose results were stored."""

Unusable = Literal["running", "failed", "pruned"]


class ScanNotComparable(StoreError):
    """The scan exists but has no results to compare: `reason` is running (not finished yet),
    failed (it did not run to the end, nothing was stored) or pruned (its report is gone)."""

    def __init__(self, scan: ScanRun, reason: Unusable) -> None:
        why = {
            "running": "is still running",
            "failed": f"failed, so it has no results ({scan.message or 'no reason recorded'})",
            "pruned": f"has no results left: its report {scan.report_id} was pruned",
        }[reason]
        super().__init__(f"scan {scan.id} of {scan.zones!r} {why}")
        self.scan = scan
        self.reason = reason


class ScanRefInvalid(StoreError):
    """`latest` or `previous` without the zones name they refer to."""


@dataclass(frozen=True)
class ScanRecord:
    """A scan with what its stored report says in brief."""

    scan: ScanRun
    counts: dict[str, int] | None
    """Its report's result counts by status; None: no report (failed, running, or pruned)."""


class ScanHistory(Database):
    """Reads of completed scans and their reports, and `prune_scans`."""

    def scan_with_report(self, scan_id: str, now: datetime) -> tuple[ScanRun, dict[str, Any]]:
        """The scan and its stored report document; `NotFound`, or `ScanNotComparable` for a
        scan that is running, failed, or whose report was pruned."""
        if not storable(scan_id):
            raise NotFound(f"no scan {scan_id!r}")
        with self._tx(write=False, snapshot=True) as conn:
            row = conn.execute(sa.select(*SCAN_COLUMNS).where(scans.c.id == scan_id)).first()
            if row is None:
                raise NotFound(f"no scan {scan_id!r}")
            scan = to_scan(row, utc(now))
            body = (
                None
                if scan.report_id is None
                else conn.execute(
                    sa.select(reports.c.body).where(reports.c.report_id == scan.report_id)
                ).scalar_one_or_none()
            )
        if scan.state is ScanState.RUNNING:
            raise ScanNotComparable(scan, "running")
        if scan.state is ScanState.FAILED or scan.report_id is None:
            raise ScanNotComparable(scan, "failed")
        if body is None:
            raise ScanNotComparable(scan, "pruned")
        document: dict[str, Any] = json.loads(body)
        return scan, document

    def latest_completed(self, zones: str, count: int, now: datetime) -> list[ScanRun]:
        """The `count` newest completed scans of `zones` whose report is still stored, newest
        first (fewer when there are fewer)."""
        if not storable(zones):
            return []
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(*SCAN_COLUMNS)
                .select_from(scans.join(reports, reports.c.report_id == scans.c.report_id))
                .where(scans.c.zones == zones, scans.c.state.in_(COMPLETED))
                .order_by(scans.c.finished_at.desc(), scans.c.id.desc())
                .limit(bounded(count))
            ).all()
        return [to_scan(row, utc(now)) for row in rows]

    def scan_history(
        self,
        limit: int,
        offset: int,
        now: datetime,
        *,
        zones: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        completed_only: bool = True,
    ) -> Page[ScanRecord]:
        """Scans, newest first, each with its report's counts (None once pruned): of one zones
        file, finished (else started) in [since, until), completed ones only by default."""
        check_page(limit, offset)
        if not storable(zones):
            return Page((), 0, limit, offset)
        when = sa.func.coalesce(scans.c.finished_at, scans.c.started_at)
        conditions: list[sa.ColumnElement[bool]] = []
        if zones is not None:
            conditions.append(scans.c.zones == zones)
        if since is not None:
            conditions.append(when >= utc(since))
        if until is not None:
            conditions.append(when < utc(until))
        if completed_only:
            conditions.append(scans.c.state.in_(COMPLETED))
        joined = scans.outerjoin(reports, reports.c.report_id == scans.c.report_id)
        with self._tx(write=False, snapshot=True) as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(scans).where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                sa.select(*SCAN_COLUMNS, reports.c.counts)
                .select_from(joined)
                .where(*conditions)
                .order_by(when.desc(), scans.c.id.desc())
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        items = tuple(
            ScanRecord(to_scan(row, utc(now)), None if row.counts is None else dict(row.counts))
            for row in rows
        )
        return Page(items, total, limit, offset)

    def prune_scans(self, before: datetime, chunk: int = 2000) -> tuple[int, int]:
        """Delete the scans that ended before `before` (a lost one: whose deadline passed
        before it), with their jobs, except each zones file's newest completed scan — as
        `prune_reports` keeps each host's newest report, so the newest comparison stays
        possible. A running scan is never deleted. In transactions of `chunk` scans. Returns
        (scans, jobs) deleted."""
        before = utc(before)
        newest = (
            sa.select(
                scans.c.id,
                sa.func.row_number()
                .over(
                    partition_by=scans.c.zones,
                    order_by=(scans.c.finished_at.desc(), scans.c.id.desc()),
                )
                .label("rank"),
            )
            .where(scans.c.state.in_(COMPLETED))
            .subquery()
        )
        kept = sa.select(newest.c.id).where(newest.c.rank == 1)
        doomed = (
            sa.select(scans.c.id)
            .where(
                sa.func.coalesce(scans.c.finished_at, scans.c.deadline) < before,
                scans.c.id.not_in(kept),
            )
            .order_by(scans.c.id)
            .limit(chunk)
        )
        gone_scans = gone_jobs = 0
        while True:
            with self._tx(write=True) as conn:
                ids = list(conn.execute(doomed).scalars())
                if not ids:
                    return gone_scans, gone_jobs
                gone_jobs += conn.execute(sa.delete(jobs).where(jobs.c.scan_id.in_(ids))).rowcount
                gone_scans += conn.execute(sa.delete(scans).where(scans.c.id.in_(ids))).rowcount


def resolve_scan_ids(
    history: ScanHistory, names: Sequence[str], zones: str | None, now: datetime
) -> list[str]:
    """Scan ids for `names`, where `latest` and `previous` stand for the newest and the one
    before among the completed scans of `zones` (with their reports stored); `NotFound` naming
    what is missing, `ScanRefInvalid` without `zones`."""
    if not any(n in {"latest", "previous"} for n in names):
        return list(names)
    if zones is None:
        raise ScanRefInvalid("latest and previous need the zones name they refer to (zones)")
    newest = history.latest_completed(zones, 2, now)
    picks = {"latest": 0, "previous": 1}
    found: list[str] = []
    for name in names:
        if name not in picks:
            found.append(name)
            continue
        index = picks[name]
        if index >= len(newest):
            have = len(newest)
            raise NotFound(
                f"{name}: the zones {zones!r} have {have} completed scan{'s' * (have != 1)} "
                "with results stored"
            )
        found.append(newest[index].id)
    return found


__all__ = [
    "COMPLETED",
    "ScanHistory",
    "ScanNotComparable",
    "ScanRecord",
    "ScanRefInvalid",
    "resolve_scan_ids",
]
