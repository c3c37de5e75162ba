"""Alerts raised and cleared by scans, sent by webhook and syslog (being written)."""

from __future__ import annotations

from collector.api.middleware import Clock
from collector.models import ScanRun
from collector.settings import AlertSettings
from collector.store import Store


class AlertService:
    def __init__(self, settings: AlertSettings, store: Store, clock: Clock) -> None:
        self.settings, self.store, self.clock = settings, store, clock

    async def scan_stored(self, run: ScanRun, report_id: str) -> None:
        """A scan's results were stored as `report_id`: raise and clear alerts from them."""

    async def start(self) -> None:
        """Start sending what the outbox holds."""

    async def close(self) -> None:
        """Stop sending (what is unsent stays in the outbox for any collector process)."""
