"""The scheduler each collector process runs: every `scans.schedule_tick_seconds` it asks the store
to fire the schedules that are due (`Store.fire_due`) and starts the scans it fired.

Every process of every collector on one database runs one, and needs no coordination with the
others: the database decides which of them fires a due time (rows locked `FOR UPDATE SKIP
LOCKED` on PostgreSQL, one writer at a time on SQLite, and a unique index on the schedule and
due time whatever happens), and the process that fired a scan starts it. A tick that fails —
the database away, a bug — is logged and the next tick tries again: the scheduler never stops
while its collector serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from collector.models import ScanRun, ScanState
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings
from collector.store import Store, StoreError

logger = logging.getLogger("medsec.collector.schedules")

Clock = Callable[[], datetime]
"""The app's "now" (`collector.api.middleware.Clock`, not imported: the API imports this)."""


class Scheduler:
    """Fires due schedules into scans, in the background of one collector process."""

    def __init__(
        self, settings: CollectorSettings, store: Store, launcher: ScanLauncher, clock: Clock
    ) -> None:
        self.settings, self.store, self.launcher, self.clock = settings, store, launcher, clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start looking for due schedules every `scans.schedule_tick_seconds`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="medsec-scheduler")

    async def close(self) -> None:
        """Stop looking (scans already started are the launcher's)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def tick(self) -> list[ScanRun]:
        """Fire what is due now and start the scans fired; the scans fired (skipped due times
        among them, recorded as failed)."""
        fired = await asyncio.to_thread(
            self.store.fire_due, self.clock(), lifetime=self.launcher.lifetime
        )
        for run in fired:
            due = run.due_at.isoformat() if run.due_at else "?"
            if run.state is not ScanState.RUNNING:
                logger.warning(
                    "%s (due %s) not started: %s", run.requested_by, due, run.message or ""
                )
                continue
            logger.info("%s (due %s): scan %s of %s", run.requested_by, due, run.id, run.zones)
            try:
                await self.launcher.launch(run)
            except StoreError as exc:  # the others fired with it are started all the same
                logger.warning("scan %s of %s not started: %s", run.id, run.zones, exc)
        return fired

    async def _run(self) -> None:
        every = self.settings.scans.schedule_tick_seconds
        while True:
            try:
                await self.tick()
            except StoreError as exc:
                logger.warning("schedules not fired this time: %s", exc)
            except Exception:  # the loop's boundary: a bug must not stop every later schedule
                logger.exception("schedules not fired this time")
            await asyncio.sleep(every)
