"""Alerts raised and cleared by scans, and sent by webhook and syslog.

When a scan's results are stored (`scan_stored`, called by the `ScanLauncher`), the scan's alert
conditions (`collector.alerts_conditions`: policy violations, WAFs gone, ZTNA gateways gone) are
compared with the open alerts of its zones file in one transaction
(`Store.transition_alerts`): new conditions open an alert, conditions gone clear one, and each of
those events is queued once per channel in the database's outbox. A condition seen again by the
next scan is the same open alert, so nothing is sent again; what a scan could not evaluate
neither raises nor clears. Since every scan restates the whole set, a scan whose transition was
lost (the database away for a moment) is caught up by the next one.

Every collector process sends from the outbox (`start`): one loop per configured channel claims
the due events under a lease, sends them, and marks each sent, or due again after a wait that
doubles from the channel's `retry_seconds` (at most an hour) until `max_attempts`, when it is
given up and logged once. Claims are exclusive across processes (`FOR UPDATE SKIP LOCKED` on
PostgreSQL), so an event goes out once however many collectors serve the database; only a
sender that dies between sending and recording it leaves it to be sent again after its lease,
with the same delivery id for the receiver to drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from collector.alerts_conditions import conditions_of
from collector.alerts_send import LEASE_MARGIN_S, Channel, SendFailed, Syslog, Webhook, summary
from collector.models import ScanRun
from collector.scan_view import view_of
from collector.settings import AlertSettings, read_webhook_secret
from collector.store import Store, StoreError
from collector.store.alerts import Alert, Delivery
from collector.store.scan_history import ScanNotComparable

logger = logging.getLogger("medsec.collector.alerts")

CLAIM_BATCH = 16
"""Events one loop sends at once (concurrently): a slow receiver holds up at most these."""
MAX_RETRY_WAIT = timedelta(hours=1)
Clock = Callable[[], datetime]  # as collector.api.middleware's (not imported: the app imports this)


class AlertService:
    """Raises and clears alerts from stored scans; sends them from the outbox."""

    def __init__(self, settings: AlertSettings, store: Store, clock: Clock) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        # Read now, so a secret file gone since the settings were loaded stops the start-up
        # with one line rather than failing every delivery.
        self._secret = (
            None if settings.webhook is None else read_webhook_secret(settings.webhook.secret_file)
        )
        self._channels: list[Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}
        self._stopping = asyncio.Event()

    @property
    def channels(self) -> tuple[str, ...]:
        return self.settings.channels

    # -- raising and clearing ----------------------------------------------------------------

    async def scan_stored(self, run: ScanRun, report_id: str) -> None:
        """A scan's results were stored as `report_id`: raise and clear alerts from them."""
        try:
            await self.evaluate(run)
        except ScanNotComparable as exc:  # failed, or its report pruned already: no results
            logger.warning("alerts: scan %s not evaluated: %s", run.id, exc)
        except StoreError as exc:  # the next scan of these zones states every condition again
            logger.warning("alerts: scan %s (report %s) not evaluated: %s", run.id, report_id, exc)

    async def evaluate(self, run: ScanRun) -> tuple[list[Alert], list[Alert]]:
        """Open and clear the alerts of `run`'s zones file from its stored report; the alerts
        opened and cleared (each event queued on every configured channel)."""
        scan, report = await asyncio.to_thread(self.store.scan_with_report, run.id, self.clock())
        found = conditions_of(view_of(scan, report), report)
        opened, cleared = await asyncio.to_thread(
            self.store.transition_alerts,
            scan.zones,
            scan.id,
            found.present,
            self.channels,
            self.clock(),
            unevaluated=found.unevaluated,
        )
        for note in found.notes:
            logger.info("alerts of %s, scan %s: not evaluated: %s", scan.zones, scan.id, note)
        if opened or cleared:
            logger.info(
                "alerts of %s, scan %s: %d raised, %d cleared, %d open",
                scan.zones,
                scan.id,
                len(opened),
                len(cleared),
                len(found.present),
            )
            for event in self._wake.values():
                event.set()
        return opened, cleared

    # -- sending -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start sending what the outbox holds, one loop per configured channel."""
        if self._tasks:
            return
        self._stopping.clear()
        if self.settings.webhook is not None and self._secret is not None:
            self._channels.append(Webhook(self.settings.webhook, self._secret))
        if self.settings.syslog is not None:
            self._channels.append(Syslog(self.settings.syslog))
        for channel in self._channels:
            self._wake[channel.name] = asyncio.Event()
            self._tasks.append(
                asyncio.create_task(self._run(channel), name=f"medsec-alerts-{channel.name}")
            )

    async def close(self) -> None:
        """Stop sending: the events being sent are finished and recorded (for at most one
        attempt's time), then the loops end. What is unsent stays in the outbox for any
        collector process; an event cut short is sent again once its lease runs out."""
        self._stopping.set()
        for event in self._wake.values():
            event.set()
        if self._tasks:
            grace = max(c.lease.total_seconds() for c in self._channels) - LEASE_MARGIN_S
            _, late = await asyncio.wait(self._tasks, timeout=max(grace, 1.0))
            for task in late:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for channel in self._channels:
            await channel.close()
        self._tasks, self._channels, self._wake = [], [], {}

    async def _run(self, channel: Channel) -> None:
        wake = self._wake[channel.name]
        unavailable = False
        while not self._stopping.is_set():
            wake.clear()
            try:
                await self.send_due(channel)
            except StoreError as exc:  # said once per outage; the loop tries again
                if not unavailable:
                    logger.warning("alerts: %s: the outbox cannot be read: %s", channel.name, exc)
                unavailable = True
            else:
                if unavailable:
                    logger.info("alerts: %s: the outbox can be read again", channel.name)
                unavailable = False
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.settings.poll_seconds)

    async def send_due(self, channel: Channel) -> int:
        """Send every event due on `channel`; how many were claimed."""
        due = await asyncio.to_thread(self.store.next_delivery_at, [channel.name])
        if due is None or due > self.clock():
            return 0  # an idle loop only reads: SQLite's write lock stays free
        claimed_total = 0
        while not self._stopping.is_set():
            claimed = await asyncio.to_thread(
                self.store.claim_deliveries,
                [channel.name],
                self.clock(),
                channel.lease,
                CLAIM_BATCH,
            )
            if not claimed:
                return claimed_total
            claimed_total += len(claimed)
            outcomes = await asyncio.gather(
                *(self._deliver(channel, delivery) for delivery in claimed),
                return_exceptions=True,
            )
            # The others were settled; one not recorded (the database away) goes again after
            # its lease, with the same delivery id.
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        return claimed_total

    async def _deliver(self, channel: Channel, delivery: Delivery) -> None:
        try:
            await channel.send(delivery)
        except SendFailed as exc:
            await self._failed(channel, delivery, str(exc))
            return
        await asyncio.to_thread(self.store.delivery_sent, delivery, self.clock())

    async def _failed(self, channel: Channel, delivery: Delivery, why: str) -> None:
        if delivery.attempts >= channel.max_attempts:
            if await asyncio.to_thread(self.store.delivery_failed, delivery, why, None):
                logger.error(
                    "alerts: %s given up after %d attempts: %s; last: %s",
                    channel.name,
                    delivery.attempts,
                    summary(delivery),
                    why,
                )
            return
        wait = min(
            timedelta(seconds=channel.retry_seconds * 2 ** (delivery.attempts - 1)),
            MAX_RETRY_WAIT,
        )
        await asyncio.to_thread(self.store.delivery_failed, delivery, why, self.clock() + wait)
        logger.info(
            "alerts: %s attempt %d of %d failed (%s), again in %.1f s: %s",
            channel.name,
            delivery.attempts,
            channel.max_attempts,
            why,
            wait.total_seconds(),
            summary(delivery),
        )
