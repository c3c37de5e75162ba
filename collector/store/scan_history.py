"""Scan history: completed scans kept within the retention, and what comparing two needs."""

from __future__ import annotations

from collector.store.engine import Database


class ScanHistory(Database):
    """(being written)"""
