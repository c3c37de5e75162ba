"""The dashboard's pages, one module each, every one exposing `router(ctx) -> APIRouter`: the
overview, a clause, the hosts and a host (`overview`, `clause`, `hosts`), the network and scans
(`network`), snapshots and report downloads (`snapshots`).

What several pages share in one collector process lives here: the compliance aggregation of each
standard, kept by one `ComplianceCache` per context (an aggregation at 10,000 hosts takes
seconds: the overview and the clause pages must not each make their own), and the comparison
with the newest snapshot (`SnapshotChanges`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from collector.compliance.model import Compliance
from collector.web.cache import ComplianceCache
from collector.web.context import WebContext

T = TypeVar("T")
_KEPT = 4
"""Contexts remembered at once (one per app; tests make a few)."""


class Aggregation(NamedTuple):
    compliance: Compliance
    made_at: datetime
    """When the aggregation was made: its verdicts were judged at that instant."""
    refreshing: bool
    """The evidence changed since, and a newer aggregation is being made."""


class Shared:
    """One context's compliance cache and snapshot comparison."""

    def __init__(self, ctx: WebContext) -> None:
        from collector.web.pages.changes import SnapshotChanges

        self.ctx = ctx
        self.cache = ComplianceCache(ctx)
        self.changes = SnapshotChanges()
        self._derived: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self._derived_lock = threading.Lock()

    def compliance(self, standard: str) -> Aggregation:
        """The newest aggregation of `standard` over every host; `ComplianceError` for an
        unknown standard or unreadable zones files."""
        cached = self.cache.get(standard)
        return Aggregation(cached.compliance, cached.made_at, self.cache.refreshing())

    def derived(self, name: str, sources: tuple[Any, ...], make: Callable[[], T]) -> T:
        """`make()`, made again only when one of `sources` (aggregations: the cache hands out
        the same object until the evidence changes) is not the object it was made from."""
        with self._derived_lock:
            held = self._derived.get(name)
            if (
                held is not None
                and len(held[0]) == len(sources)
                and all(a is b for a, b in zip(held[0], sources, strict=True))
            ):
                found: T = held[1]
                return found
        made = make()
        with self._derived_lock:
            self._derived[name] = (sources, made)
        return made


_shared: OrderedDict[int, Shared] = OrderedDict()
_lock = threading.Lock()


def shared(ctx: WebContext) -> Shared:
    """The `Shared` of this context, made on first use. Contexts are told apart by identity
    (the `Shared` keeps its context, so an id is never reused while remembered)."""
    with _lock:
        found = _shared.get(id(ctx))
        if found is not None and found.ctx is ctx:
            _shared.move_to_end(id(ctx))
            return found
        made = Shared(ctx)
        _shared[id(ctx)] = made
        while len(_shared) > _KEPT:
            _shared.popitem(last=False)
        return made
