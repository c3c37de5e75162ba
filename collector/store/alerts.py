"""Alerts: open/cleared state per violation, and the outbox of their deliveries."""

from __future__ import annotations

from collector.store.engine import Database


class Alerts(Database):
    """(being written)"""
