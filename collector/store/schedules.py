"""Periodic scans: schedules, and the firing of due ones into scans (once per due time)."""

from __future__ import annotations

from collector.store.engine import Database


class Schedules(Database):
    """(being written)"""
