"""Alerts: which alert conditions of each zones file are open, and the outbox of their deliveries.

A condition (a policy violation, a WAF gone, a ZTNA gateway gone) is an alert row from the scan
that first finds it to the scan that first finds it gone. `transition_alerts` compares a scan's
conditions with the open alerts of its zones file and, in the same transaction, writes one
delivery per configured channel for each alert it opens or clears: so an alert is announced once
when it appears and once when it clears, whichever collector process stored the scan, and none
is lost if that process dies before sending. The partial unique index `uq_alerts_open_key` (one
open alert per key) makes a second open of the same condition impossible, even from another
collector.

The deliveries are sent by any collector process: `claim_deliveries` hands out due ones under a
lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two senders never take the same one; SQLite's
single writer gives the same), and `delivery_sent` / `delivery_failed` settle them, each only
while the claim is still the delivery's current one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from collector.models import Page
from collector.store.engine import Database
from collector.store.rows import Row
from collector.store.schema import alert_deliveries, alerts
from collector.store.values import bounded, check_page, safe_text, storable, strip_nul, utc

AlertEvent = Literal["raised", "cleared"]
DeliveryState = Literal["pending", "sent", "failed"]
CHANNELS = ("webhook", "syslog")
_LOCK_SPACE = 0x6D6461  # "mda": the advisory lock space of alert transitions, one key per zones
_PENDING = "pending"


@dataclass(frozen=True)
class Alert:
    """One alert condition of one zones file, from the scan that found it to the one that found
    it gone (open while `cleared_at` is None)."""

    id: int
    key: str
    """What the condition is, unique among open alerts (it starts with the zones file's name)."""
    kind: str
    """"violation", "waf_gone" or "ztna_gone"."""
    zones: str
    detail: dict[str, Any]
    """What the scan saw, as the channels show it (`detail["text"]` is the one-line summary)."""
    opened_at: datetime
    opened_scan_id: str | None
    cleared_at: datetime | None
    cleared_scan_id: str | None


@dataclass(frozen=True)
class Delivery:
    """One event of one alert to send on one channel, as claimed by a sender."""

    id: int
    alert: Alert
    event: AlertEvent
    channel: str
    state: DeliveryState
    attempts: int
    """Attempts so far, the current one included: it also identifies the claim."""
    created_at: datetime
    next_attempt_at: datetime
    lease_until: datetime | None
    sent_at: datetime | None
    last_error: str | None

    @property
    def scan_id(self) -> str | None:
        """The scan the event comes from."""
        return self.alert.opened_scan_id if self.event == "raised" else self.alert.cleared_scan_id

    @property
    def at(self) -> datetime:
        """When the event happened (the alert's opening or clearing)."""
        if self.event == "cleared" and self.alert.cleared_at is not None:
            return self.alert.cleared_at
        return self.alert.opened_at


@dataclass(frozen=True)
class ListedAlert(Alert):
    """An alert as a person reviews it: with every delivery of its events (raised, then
    cleared), each channel's state, attempts and last error."""

    deliveries: tuple[Delivery, ...] = ()


_ALERT_COLUMNS = (
    alerts.c.id,
    alerts.c.key,
    alerts.c.kind,
    alerts.c.zones,
    alerts.c.detail,
    alerts.c.opened_at,
    alerts.c.opened_scan_id,
    alerts.c.cleared_at,
    alerts.c.cleared_scan_id,
)
_DELIVERY_COLUMNS = (
    alert_deliveries.c.id.label("delivery_id"),
    alert_deliveries.c.event,
    alert_deliveries.c.channel,
    alert_deliveries.c.state,
    alert_deliveries.c.attempts,
    alert_deliveries.c.created_at,
    alert_deliveries.c.next_attempt_at,
    alert_deliveries.c.lease_until,
    alert_deliveries.c.sent_at,
    alert_deliveries.c.last_error,
)
_DELIVERIES = sa.select(*_DELIVERY_COLUMNS, *_ALERT_COLUMNS).select_from(
    alert_deliveries.join(alerts, alerts.c.id == alert_deliveries.c.alert_id)
)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def _kept(key: str, unevaluated: Sequence[str]) -> bool:
    return any(key == u or (u.endswith("/") and key.startswith(u)) for u in unevaluated)


def _to_alert(row: Row) -> Alert:
    return Alert(
        id=row.id,
        key=row.key,
        kind=row.kind,
        zones=row.zones,
        detail=dict(row.detail),
        opened_at=utc(row.opened_at),
        opened_scan_id=row.opened_scan_id,
        cleared_at=_aware(row.cleared_at),
        cleared_scan_id=row.cleared_scan_id,
    )


def _to_delivery(row: Row) -> Delivery:
    return Delivery(
        id=row.delivery_id,
        alert=_to_alert(row),
        event=row.event,
        channel=row.channel,
        state=row.state,
        attempts=row.attempts,
        created_at=utc(row.created_at),
        next_attempt_at=utc(row.next_attempt_at),
        lease_until=_aware(row.lease_until),
        sent_at=_aware(row.sent_at),
        last_error=row.last_error,
    )


class Alerts(Database):
    """Opening and clearing alerts, and the outbox their events are sent from."""

    def transition_alerts(
        self,
        zones: str,
        scan_id: str | None,
        conditions: Mapping[str, tuple[str, dict[str, Any]]],
        channels: Sequence[str],
        now: datetime,
        *,
        unevaluated: Collection[str] = (),
    ) -> tuple[list[Alert], list[Alert]]:
        """Make the open alerts of `zones` what a scan found: `conditions` maps each condition's
        key (which must start with the zones file's name, keys being unique across zones files)
        to its (kind, detail). An open alert whose key is absent is cleared, unless it is one
        of `unevaluated` or starts with one of those that end in "/" (what the scan could not
        evaluate neither raises nor clears). One delivery per channel is queued for each alert
        opened or cleared, in the same transaction. Returns (opened, cleared)."""
        now = utc(now)
        for channel in channels:
            if channel not in CHANNELS:
                raise ValueError(f"unknown alert channel {channel!r}")
        kept = tuple(unevaluated)
        with self._tx(write=True) as conn:
            if self._dialect == "postgresql":
                # Scans of one zones file stored by two collectors at once take turns here, so
                # one never clears what the other is opening.
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:zones))"),
                    {"space": _LOCK_SPACE, "zones": zones},
                )
            open_rows = conn.execute(
                sa.select(*_ALERT_COLUMNS).where(
                    alerts.c.zones == zones, alerts.c.cleared_at.is_(None)
                )
            ).all()
            already = {row.key for row in open_rows}
            opened: list[Alert] = []
            for key, (kind, detail) in conditions.items():
                if key in already:
                    continue
                row = conn.execute(
                    self._insert(alerts)
                    .values(
                        key=safe_text(key),
                        kind=kind,
                        zones=safe_text(zones),
                        detail=strip_nul(detail),
                        opened_at=now,
                        opened_scan_id=scan_id,
                    )
                    .on_conflict_do_nothing()  # open already (uq_alerts_open_key): nothing new
                    .returning(*_ALERT_COLUMNS)
                ).first()
                if row is not None:
                    opened.append(_to_alert(row))
            gone = [
                row.id
                for row in open_rows
                if row.key not in conditions and not _kept(row.key, kept)
            ]
            cleared: list[Alert] = []
            if gone:
                cleared = [
                    _to_alert(row)
                    for row in conn.execute(
                        sa.update(alerts)
                        .where(alerts.c.id.in_(gone), alerts.c.cleared_at.is_(None))
                        .values(cleared_at=now, cleared_scan_id=scan_id)
                        .returning(*_ALERT_COLUMNS)
                    )
                ]
            events = [(a.id, "raised") for a in opened] + [(a.id, "cleared") for a in cleared]
            if events and channels:
                conn.execute(
                    sa.insert(alert_deliveries),
                    [
                        {
                            "alert_id": alert_id,
                            "event": event,
                            "channel": channel,
                            "state": _PENDING,
                            "attempts": 0,
                            "created_at": now,
                            "next_attempt_at": now,
                        }
                        for alert_id, event in events
                        for channel in channels
                    ],
                )
        cleared.sort(key=lambda a: a.key)
        return opened, cleared

    def open_alerts(self, zones: str | None = None) -> list[Alert]:
        """The open alerts (of one zones file), by zones file and key."""
        query = sa.select(*_ALERT_COLUMNS).where(alerts.c.cleared_at.is_(None))
        if zones is not None:
            query = query.where(alerts.c.zones == zones)
        with self._tx(write=False) as conn:
            rows = conn.execute(query.order_by(alerts.c.zones, alerts.c.key)).all()
        return [_to_alert(row) for row in rows]

    def alert_history(self, zones: str, limit: int = 1000) -> list[Alert]:
        """Alerts of a zones file, open or cleared, newest first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                sa.select(*_ALERT_COLUMNS)
                .where(alerts.c.zones == zones)
                .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
                .limit(limit)
            ).all()
        return [_to_alert(row) for row in rows]

    def list_alerts(
        self, limit: int, offset: int, *, zones: str | None = None, open_only: bool = False
    ) -> Page[ListedAlert]:
        """Alerts (of one zones file; only open ones), newest first, each with its deliveries
        oldest first: the count, the page and the deliveries are read in one snapshot, so a
        delivery settled meanwhile is never shown half."""
        check_page(limit, offset)
        if not storable(zones):
            return Page((), 0, limit, offset)
        conditions: list[sa.ColumnElement[bool]] = []
        if zones is not None:
            conditions.append(alerts.c.zones == zones)
        if open_only:
            conditions.append(alerts.c.cleared_at.is_(None))
        with self._tx(write=False, snapshot=True) as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(alerts).where(*conditions)
            ).scalar_one()
            rows = conn.execute(
                sa.select(*_ALERT_COLUMNS)
                .where(*conditions)
                .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
            ids = [row.id for row in rows]
            sent: dict[int, list[Delivery]] = {alert_id: [] for alert_id in ids}
            if ids:
                for row in conn.execute(
                    _DELIVERIES.where(alert_deliveries.c.alert_id.in_(ids)).order_by(
                        alert_deliveries.c.id
                    )
                ):
                    sent[row.id].append(_to_delivery(row))
        items = tuple(
            ListedAlert(**vars(_to_alert(row)), deliveries=tuple(sent[row.id])) for row in rows
        )
        return Page(items, total, limit, offset)

    def next_delivery_at(self, channels: Sequence[str]) -> datetime | None:
        """When the earliest pending delivery on these channels may next be claimed (a read:
        an idle sender looks without taking SQLite's write lock)."""
        if not channels:
            return None
        due = sa.case(
            (
                sa.and_(
                    alert_deliveries.c.lease_until.is_not(None),
                    alert_deliveries.c.lease_until > alert_deliveries.c.next_attempt_at,
                ),
                alert_deliveries.c.lease_until,
            ),
            else_=alert_deliveries.c.next_attempt_at,
        )
        with self._tx(write=False) as conn:
            found = conn.execute(
                sa.select(sa.func.min(due)).where(
                    alert_deliveries.c.state == _PENDING,
                    alert_deliveries.c.channel.in_(list(channels)),
                )
            ).scalar_one()
        return _aware(found)

    def claim_deliveries(
        self, channels: Sequence[str], now: datetime, lease: timedelta, limit: int
    ) -> list[Delivery]:
        """Up to `limit` pending deliveries on these channels that are due and not leased, now
        leased to the caller until `now + lease` with their attempt counted, oldest first. A
        delivery whose sender died is claimable again once its lease has run out."""
        if not channels or limit < 1:
            return []
        now = utc(now)
        with self._tx(write=True) as conn:
            due = (
                sa.select(alert_deliveries.c.id)
                .where(
                    alert_deliveries.c.state == _PENDING,
                    alert_deliveries.c.channel.in_(list(channels)),
                    alert_deliveries.c.next_attempt_at <= now,
                    sa.or_(
                        alert_deliveries.c.lease_until.is_(None),
                        alert_deliveries.c.lease_until <= now,
                    ),
                )
                .order_by(alert_deliveries.c.next_attempt_at, alert_deliveries.c.id)
                .limit(limit)
            )
            if self._dialect == "postgresql":  # another sender's claim in progress is skipped
                due = due.with_for_update(skip_locked=True)
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            conn.execute(
                sa.update(alert_deliveries)
                .where(alert_deliveries.c.id.in_(ids))
                .values(lease_until=now + lease, attempts=alert_deliveries.c.attempts + 1)
            )
            rows = conn.execute(
                _DELIVERIES.where(alert_deliveries.c.id.in_(ids)).order_by(
                    alert_deliveries.c.next_attempt_at, alert_deliveries.c.id
                )
            ).all()
        return [_to_delivery(row) for row in rows]

    def delivery_sent(self, delivery: Delivery, now: datetime) -> bool:
        """Record `delivery` (as claimed) as sent; False if it was settled already."""
        with self._tx(write=True) as conn:
            done = conn.execute(
                sa.update(alert_deliveries)
                .where(
                    alert_deliveries.c.id == delivery.id,
                    alert_deliveries.c.state == _PENDING,
                )
                .values(state="sent", sent_at=utc(now), lease_until=None, last_error=None)
            ).rowcount
        return bool(done)

    def delivery_failed(self, delivery: Delivery, error: str, retry_at: datetime | None) -> bool:
        """Record a failed attempt of `delivery` (as claimed): tried again from `retry_at`, or
        given up (`failed`) when it is None. False if the claim is no longer the delivery's
        current one (its lease ran out and another sender took it) or it was settled."""
        values: dict[str, Any] = {"lease_until": None, "last_error": safe_text(error)[:1000]}
        if retry_at is None:
            values["state"] = "failed"
        else:
            values["next_attempt_at"] = utc(retry_at)
        with self._tx(write=True) as conn:
            done = conn.execute(
                sa.update(alert_deliveries)
                .where(
                    alert_deliveries.c.id == delivery.id,
                    alert_deliveries.c.state == _PENDING,
                    alert_deliveries.c.attempts == delivery.attempts,
                )
                .values(**values)
            ).rowcount
        return bool(done)

    def list_deliveries(self, alert_id: int | None = None) -> list[Delivery]:
        """Deliveries (of one alert), oldest first: what was sent, what waits, what failed."""
        query = _DELIVERIES
        if alert_id is not None:
            query = query.where(alert_deliveries.c.alert_id == alert_id)
        with self._tx(write=False) as conn:
            rows = conn.execute(query.order_by(alert_deliveries.c.id)).all()
        return [_to_delivery(row) for row in rows]

    def prune_alerts(self, before: datetime) -> int:
        """Delete alerts cleared before `before`, with their deliveries; the number deleted.
        Open alerts stay, however old."""
        with self._tx(write=True) as conn:
            old = sa.select(alerts.c.id).where(
                alerts.c.cleared_at.is_not(None), alerts.c.cleared_at < utc(before)
            )
            conn.execute(
                sa.delete(alert_deliveries).where(
                    alert_deliveries.c.alert_id.in_(old.scalar_subquery())
                )
            )
            return conn.execute(
                sa.delete(alerts).where(alerts.c.id.in_(old.scalar_subquery()))
            ).rowcount
