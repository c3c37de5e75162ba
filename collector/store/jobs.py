"""The probe job queue: scan jobs claimed by probes that dial out, under a lease."""

from __future__ import annotations

from collector.store.engine import Database


class Jobs(Database):
    """(being written)"""
