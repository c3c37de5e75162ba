"""What the dashboard reads beyond the compliance aggregation: the hosts as a filtered, sorted,
searched page (in SQL, so a page costs the same at ten hosts or ten thousand), one host with its
inventory and the results of its newest report, the newest zones scan's results of some checks,
and the sites hosts report.

A host's status in the listing rolls up its newest report's results as compliance does: `fail`
if any failed, else `error`, else `manual`, else `pass` when one passed, else `not_applicable`;
`stale` is a host whose newest report is older than the limit given. With a check, the status is
that check's results' roll-up. Scans (`scan:` ids) are network evidence, not hosts: never listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from collector.models import Page
from collector.scan import SCAN_HOST_PREFIX
from collector.store.engine import Database
from collector.store.rows import Row
from collector.store.schema import agents, hosts, reports, results
from collector.store.values import bounded, check_page, storable, utc

HostStatus = Literal["fail", "error", "manual", "pass", "not_applicable", "stale"]
HOST_STATUSES: tuple[HostStatus, ...] = (
    "fail",
    "error",
    "manual",
    "pass",
    "not_applicable",
    "stale",
)
_ROLLUP: tuple[str, ...] = ("fail", "error", "manual", "pass", "not_applicable")
"""Result statuses in roll-up order: a host is the first it has."""
SORTS = ("name", "site", "last", "fail", "error")
"""Sort keys of the listing; `-key` reverses."""
_LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class HostQuery:
    """What the hosts page asks for; None: not filtered."""

    site: str | None = None
    status: HostStatus | None = None
    check: str | None = None
    q: str | None = None
    """Part of a host name, host id, address or serial number (system, board or disk)."""
    sort: str = "name"


@dataclass(frozen=True)
class HostListRow:
    id: str
    hostname: str
    agent: str
    site: str | None
    addresses: tuple[str, ...]
    last_report_at: datetime
    report_id: str
    counts: dict[str, int]
    """Results of the newest report by status."""
    serial: str | None
    """The system serial (DMI `product_serial`) from the newest inventory."""


@dataclass(frozen=True)
class HostResult:
    check_id: str
    status: str
    severity: str
    target: str | None
    message: str
    message_zh: str | None
    evidence: Any


@dataclass(frozen=True)
class HostDetail:
    id: str
    hostname: str
    agent: str
    site: str | None
    addresses: tuple[str, ...]
    inventory: dict[str, Any]
    report_id: str
    generated_at: datetime
    received_at: datetime
    counts: dict[str, int]
    results: tuple[HostResult, ...]


@dataclass(frozen=True)
class ScanResults:
    """The newest scan report holding results of the checks asked about."""

    host_id: str
    hostname: str
    report_id: str
    generated_at: datetime
    results: tuple[HostResult, ...]


def _count(status: str) -> sa.ColumnElement[int]:
    """The newest report's count of results with `status` (0 when it has none)."""
    return sa.func.coalesce(reports.c.counts[status].as_integer(), 0)


def _has(status: str, check: str | None) -> sa.ColumnElement[bool]:
    """The host's newest report has a result with `status` (of `check`, when given)."""
    if check is None:
        return _count(status) > 0
    return sa.exists().where(
        results.c.report_pk == hosts.c.last_report_pk,
        results.c.check_id == check,
        results.c.status == status,
    )


def _rolls_up_to(status: str, check: str | None) -> sa.ColumnElement[bool]:
    before = _ROLLUP[: _ROLLUP.index(status)]
    return sa.and_(_has(status, check), *(sa.not_(_has(s, check)) for s in before))


def _sort_columns(sort: str) -> list[sa.ColumnElement[Any]]:
    key = sort.removeprefix("-")
    if key not in SORTS:
        raise ValueError(f"sort: {sort!r} is not one of {', '.join(SORTS)} (or -key)")
    descending = sort.startswith("-")
    if key == "name":
        first: sa.ColumnElement[Any] = hosts.c.hostname
    elif key == "site":
        first = sa.func.coalesce(hosts.c.site, "")
    elif key == "last":
        first = hosts.c.last_report_at
    else:
        first = _count(key)
    order: list[sa.ColumnElement[Any]] = [first.desc() if descending else first.asc()]
    if key != "name":
        order.append(hosts.c.hostname.asc())
    order.append(hosts.c.id.asc())
    return order


def _like(text: str) -> str:
    escaped = (
        text.lower()
        .replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


class Dashboard(Database):
    """The dashboard's reads of hosts (`dashboard_hosts`, `dashboard_host`), the newest scan's
    results (`newest_scan_results`) and the sites (`host_sites`)."""

    def _serial(self) -> sa.ColumnElement[str]:
        serial: sa.ColumnElement[str] = hosts.c.inventory[
            ("hardware", "dmi", "product_serial")
        ].as_string()
        return serial

    def _searched(self, q: str) -> sa.ColumnElement[bool]:
        """Name, id, addresses or a serial (system, board, disk) containing `q`, any case."""
        pattern = _like(q)

        def has(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
            return sa.func.lower(column).like(pattern, escape=_LIKE_ESCAPE)

        board = hosts.c.inventory[("hardware", "dmi", "board_serial")].as_string()
        found = [
            has(hosts.c.hostname),
            has(hosts.c.id),
            has(sa.cast(hosts.c.addresses, sa.Text)),
            has(self._serial()),
            has(board),
        ]
        if self._dialect == "postgresql":
            disks = sa.text(
                "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN"
                " jsonb_typeof(hosts.inventory #> '{hardware,disks}') = 'array'"
                " THEN hosts.inventory #> '{hardware,disks}' ELSE '[]'::jsonb END) AS d"
                " WHERE lower(d ->> 'serial') LIKE :disk_serial ESCAPE '\\')"
            )
        else:
            disks = sa.text(
                "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_type(hosts.inventory,"
                " '$.hardware.disks') = 'array' THEN json_extract(hosts.inventory,"
                " '$.hardware.disks') ELSE '[]' END) AS d"
                " WHERE CASE WHEN d.type = 'object' THEN lower(json_extract(d.value, '$.serial'))"
                " END LIKE :disk_serial ESCAPE '\\')"
            )
        found.append(disks.bindparams(disk_serial=pattern))  # type: ignore[arg-type]
        return sa.or_(*found)

    def _conditions(self, query: HostQuery, stale_before: datetime) -> list[Any]:
        conditions: list[Any] = [sa.not_(hosts.c.id.startswith(SCAN_HOST_PREFIX, autoescape=True))]
        if query.site is not None:
            conditions.append(hosts.c.site == query.site)
        if query.check is not None and query.status is None:
            conditions.append(
                sa.exists().where(
                    results.c.report_pk == hosts.c.last_report_pk,
                    results.c.check_id == query.check,
                )
            )
        if query.status == "stale":
            conditions.append(hosts.c.last_report_at < utc(stale_before))
            if query.check is not None:
                conditions.append(
                    sa.exists().where(
                        results.c.report_pk == hosts.c.last_report_pk,
                        results.c.check_id == query.check,
                    )
                )
        elif query.status is not None:
            if query.status not in _ROLLUP:
                raise ValueError(f"status: {query.status!r} is not one of {HOST_STATUSES}")
            conditions.append(_rolls_up_to(query.status, query.check))
        if query.q:
            conditions.append(self._searched(query.q))
        return conditions

    def dashboard_hosts(
        self,
        query: HostQuery,
        *,
        stale_before: datetime,
        limit: int,
        offset: int,
        keep: Callable[[Sequence[str]], bool] | None = None,
    ) -> Page[HostListRow]:
        """A page of the hosts `query` selects, sorted as it says. `keep`, when given, is asked
        of each selected host's addresses (the zone filter: zones are address ranges of the
        zones files, which the database does not know); then the selection is read whole, a
        few small columns per host, and the page cut from it."""
        check_page(limit, offset)
        if not storable(query.site, query.check, query.q):
            return Page((), 0, limit, offset)
        conditions = self._conditions(query, stale_before)
        order = _sort_columns(query.sort)
        # The newest report's counts only when the filter or the order reads them: on SQLite a
        # report row holds the report's body before its counts, so reading counts is costly.
        counted = (query.check is None and query.status in _ROLLUP) or query.sort.removeprefix(
            "-"
        ) in ("fail", "error")
        joined = hosts.join(reports, reports.c.pk == hosts.c.last_report_pk) if counted else hosts
        with self._tx(write=False, snapshot=True) as conn:
            if keep is None:
                total = conn.execute(
                    sa.select(sa.func.count()).select_from(joined).where(*conditions)
                ).scalar_one()
                ids = list(
                    conn.execute(
                        sa.select(hosts.c.id)
                        .select_from(joined)
                        .where(*conditions)
                        .order_by(*order)
                        .limit(bounded(limit))
                        .offset(bounded(offset))
                    ).scalars()
                )
            else:
                chosen = [
                    row.id
                    for row in conn.execute(
                        sa.select(hosts.c.id, hosts.c.addresses)
                        .select_from(joined)
                        .where(*conditions)
                        .order_by(*order)
                    )
                    if keep(tuple(row.addresses or ()))
                ]
                total = len(chosen)
                ids = chosen[offset : offset + limit]
            rows = self._list_rows(conn, ids)
        return Page(tuple(rows), total, limit, offset)

    def _list_rows(self, conn: sa.Connection, ids: Sequence[str]) -> list[HostListRow]:
        if not ids:
            return []
        found = {
            row.id: row
            for row in conn.execute(
                sa.select(
                    hosts.c.id,
                    hosts.c.hostname,
                    agents.c.name.label("agent"),
                    hosts.c.site,
                    hosts.c.addresses,
                    hosts.c.last_report_at,
                    reports.c.report_id,
                    reports.c.counts,
                    self._serial().label("serial"),
                )
                .select_from(
                    hosts.join(reports, reports.c.pk == hosts.c.last_report_pk).join(
                        agents, agents.c.id == hosts.c.agent_id
                    )
                )
                .where(hosts.c.id.in_(ids))
            )
        }
        return [_list_row(found[i]) for i in ids if i in found]

    def dashboard_host(self, host_id: str) -> HostDetail | None:
        """The host (or scan) with its newest inventory and that report's results in report
        order; None when no host has this id."""
        if not storable(host_id):
            return None
        with self._tx(write=False, snapshot=True) as conn:
            row = conn.execute(
                sa.select(
                    hosts.c.id,
                    hosts.c.hostname,
                    agents.c.name.label("agent"),
                    hosts.c.site,
                    hosts.c.addresses,
                    hosts.c.inventory,
                    hosts.c.last_report_pk,
                    reports.c.report_id,
                    reports.c.generated_at,
                    reports.c.received_at,
                    reports.c.counts,
                )
                .select_from(
                    hosts.join(reports, reports.c.pk == hosts.c.last_report_pk).join(
                        agents, agents.c.id == hosts.c.agent_id
                    )
                )
                .where(hosts.c.id == host_id)
            ).first()
            if row is None:
                return None
            found = _results(conn, sa.and_(results.c.report_pk == row.last_report_pk))
        inventory = row.inventory if isinstance(row.inventory, dict) else {}
        return HostDetail(
            id=row.id,
            hostname=row.hostname,
            agent=row.agent,
            site=row.site,
            addresses=tuple(row.addresses or ()),
            inventory=dict(inventory),
            report_id=row.report_id,
            generated_at=row.generated_at,
            received_at=row.received_at,
            counts=dict(row.counts),
            results=found,
        )

    def newest_scan_results(self, check_ids: Sequence[str]) -> ScanResults | None:
        """The results of `check_ids` in the newest scan report that has any (None: none).
        Scans are few: each one's newest report is asked in turn, newest first, by its key."""
        wanted = list(check_ids)
        with self._tx(write=False, snapshot=True) as conn:
            scans = conn.execute(
                sa.select(
                    hosts.c.id,
                    hosts.c.hostname,
                    hosts.c.last_report_pk,
                    reports.c.report_id,
                    reports.c.generated_at,
                )
                .select_from(hosts.join(reports, reports.c.pk == hosts.c.last_report_pk))
                .where(hosts.c.id.startswith(SCAN_HOST_PREFIX, autoescape=True))
                .order_by(reports.c.generated_at.desc(), hosts.c.id)
            ).all()
            for row in scans:
                found = _results(
                    conn,
                    sa.and_(
                        results.c.report_pk == row.last_report_pk,
                        results.c.check_id.in_(wanted),
                    ),
                )
                if found:
                    return ScanResults(row.id, row.hostname, row.report_id, row.generated_at, found)
        return None

    def host_sites(self) -> list[str]:
        """The sites hosts report, sorted."""
        with self._tx(write=False) as conn:
            return list(
                conn.execute(
                    sa.select(hosts.c.site)
                    .where(hosts.c.site.is_not(None))
                    .distinct()
                    .order_by(hosts.c.site)
                ).scalars()
            )


def _results(conn: sa.Connection, where: sa.ColumnElement[bool]) -> tuple[HostResult, ...]:
    return tuple(
        HostResult(
            check_id=r.check_id,
            status=r.status,
            severity=r.severity,
            target=r.target,
            message=r.message,
            message_zh=r.message_zh,
            evidence=r.evidence,
        )
        for r in conn.execute(
            sa.select(
                results.c.check_id,
                results.c.status,
                results.c.severity,
                results.c.target,
                results.c.message,
                results.c.message_zh,
                results.c.evidence,
            )
            .where(where)
            .order_by(results.c.pk)
        )
    )


def _list_row(row: Row) -> HostListRow:
    serial = row.serial if isinstance(row.serial, str) and row.serial else None
    return HostListRow(
        id=row.id,
        hostname=row.hostname,
        agent=row.agent,
        site=row.site,
        addresses=tuple(row.addresses or ()),
        last_report_at=row.last_report_at,
        report_id=row.report_id,
        counts=dict(row.counts),
        serial=serial,
    )
