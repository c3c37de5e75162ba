"""The scheduler each collector process runs: fires due schedules into scans (being written)."""

from __future__ import annotations

from collector.api.middleware import Clock
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings
from collector.store import Store


class Scheduler:
    def __init__(
        self, settings: CollectorSettings, store: Store, launcher: ScanLauncher, clock: Clock
    ) -> None:
        self.settings, self.store, self.launcher, self.clock = settings, store, launcher, clock

    async def start(self) -> None:
        """Start looking for due schedules every `scans.schedule_tick_seconds`."""

    async def close(self) -> None:
        """Stop looking (scans already started are the launcher's)."""
