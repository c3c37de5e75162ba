"""What every dashboard page is built from: the collector's settings, store, catalogs, clock and
scan launcher (the same objects the API uses, so both answer alike), and the signed-in user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from checks.catalog import Catalogs
from collector.models import Role
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings
from collector.store import Store

Locale = Literal["zh", "en"]
"""Chinese is the default; a user's switch to English is remembered with the user."""


@dataclass(frozen=True)
class WebContext:
    settings: CollectorSettings
    store: Store
    catalogs: Catalogs
    clock: Callable[[], datetime]
    launcher: ScanLauncher


@dataclass(frozen=True)
class WebUser:
    """The user a dashboard request comes from, with its server-side login."""

    name: str
    role: Role
    locale: Locale
    csrf: str
    """The login's CSRF token: every form carries it (field `csrf`), every POST is checked."""

    def can(self, needed: Role) -> bool:
        return self.role.allows(needed)
