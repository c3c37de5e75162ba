"""The dashboard's compliance aggregation, made once and reused until the evidence changes.

At 10,000 hosts one aggregation takes seconds, far more than a page may. `ComplianceCache` keeps
the newest aggregation of every standard per scope and checks on each call, with one cheap store
read (`Store.evidence_version`: newest report key, attestations, agents, scans, snapshots),
whether the evidence behind it changed; it also ages out after `max_age`, since a host turns
stale with time alone. A changed or aged aggregation is made again in a background thread while
pages keep showing the older one with the time it was made ("as of T, refreshing"): a page waits
for an aggregation only when there is none yet for its scope, and callers arriving together then
share one computation. Aggregations run one at a time (two at once would only share the cores).

Agents report all the time (10,000 hosts reporting hourly change the evidence three times a
second), so "made again whenever the evidence changed" would keep a core aggregating for as long
as anyone looks. An aggregation is therefore made again no sooner than its own duration ×
(1/`duty` − 1) after the previous one ended: with the default `duty` of 0.1, a 4 s aggregation
is made at most every 40 s and a 40 ms one every 0.4 s, so a small site sees a new report at
once and a province's collector spends at most a tenth of a core on it.

Memory: one entry per scope (all standards of that scope, aggregated over one read of the
store), at most `scopes` of them, the least recently used dropped first; while an entry is made
again, its older aggregation stays until the new one replaces it, then is let go a slice at a
time (`release`). At 10,000 hosts × 40 results one aggregation of both standards holds about a
million records: the collector's RSS is ~0.45 GB after the first and levels off at 0.8–1.1 GB
once it has been made again (Python keeps the freed memory for the next; benchmarks/dashboard.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from collector.compliance.model import Compliance, Scope
from collector.compliance.service import (
    aggregate_all,
    as_of_instant,
    catalog_for,
    collector_paused,
    gather,
)
from collector.store.versions import EvidenceVersion
from collector.web.context import WebContext

logger = logging.getLogger("medsec.collector.web.cache")

MAX_AGE = timedelta(minutes=1)
"""How long an aggregation stands with unchanged evidence: verdicts also change with time alone
(a host whose newest report passes the stale limit turns `error`)."""
SCOPES = 4
"""Scopes kept at once; the dashboard's own pages use the unfiltered one."""
DUTY = 0.1
"""The largest share of the time spent making one scope's aggregation again."""


def aggregate(ctx: WebContext, scope: Scope, now: datetime) -> dict[str, Compliance]:
    """Every standard over `scope` as of `now`, over one read of the store: the work the cache
    saves (the benchmark times it alone)."""
    as_of = as_of_instant(scope.as_of, now)
    with collector_paused():
        gathered = gather(ctx.store, ctx.settings, now, as_of=as_of)
        return aggregate_all(gathered, ctx.catalogs, scope, now)


Aggregate = Callable[[WebContext, Scope, datetime], dict[str, Compliance]]


_RELEASE_SLICE = 2000


def release(*aggregations: dict[str, Compliance]) -> None:
    """Let go of older aggregations a few thousand records at a time. Freed at once, the million
    records of a 10,000-host aggregation hold the interpreter for a quarter of a second (measured),
    which every page being served would wait out; in slices each waits ~10 ms at most. The
    records themselves are left untouched: a page still rendering one keeps what it holds."""
    pieces: list[object] = []
    for documents in aggregations:
        for document in documents.values():
            for clause in document.clauses:
                pieces.extend(clause.evidence)
                pieces.extend(clause.objects)
                pieces.append(clause)  # freed first, its records then one slice at a time
            pieces.extend(document.hosts)
        documents.clear()
    while pieces:
        del pieces[-_RELEASE_SLICE:]
        time.sleep(0)  # let the pages' threads run


class Cached(NamedTuple):
    compliance: Compliance
    made_at: datetime
    """The instant the aggregation was made (its verdicts were judged then)."""


@dataclass(frozen=True)
class _Made:
    documents: dict[str, Compliance]
    version: EvidenceVersion
    made_at: datetime
    took: float
    """Seconds the aggregation took (`timer`)."""
    ended: float
    """When it ended (`timer`)."""

    def cached(self, standard: str) -> Cached:
        return Cached(self.documents[standard], self.made_at)


@dataclass
class _Entry:
    made: _Made | None = None
    busy: bool = False
    """An aggregation of this scope is being made (the first one, or again)."""
    failure: BaseException | None = None
    """Why the last attempt failed: callers that waited for a first aggregation get it."""
    failed: tuple[EvidenceVersion | None, datetime] | None = None
    """(version, when) of the last failed attempt: not tried again on the same evidence before
    `max_age`, so a broken zones file costs one attempt a minute, not one per page."""


class ComplianceCache:
    """Thread-safe; one per collector process (each worker process has its own)."""

    def __init__(
        self,
        ctx: WebContext,
        *,
        max_age: timedelta = MAX_AGE,
        scopes: int = SCOPES,
        duty: float = DUTY,
        aggregate: Aggregate = aggregate,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """`aggregate` makes the documents and `timer` measures how long that takes (seconds):
        tests pass their own."""
        if scopes < 1:
            raise ValueError("scopes: at least 1")
        if not 0 < duty <= 1:
            raise ValueError("duty: more than 0, at most 1")
        self._ctx = ctx
        self._aggregate = aggregate
        self._timer = timer
        self._rest = 1 / duty - 1
        self._max_age = max_age
        self._scopes = scopes
        self._entries: OrderedDict[Scope, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._one_at_a_time = threading.Lock()
        self.computations = 0
        """Aggregations made so far (tests and the benchmark read it)."""

    def get(self, standard: str, scope: Scope | None = None) -> Cached:
        """The newest aggregation of `standard` (`gbt22239-2019-l3` or `mnds`) over `scope`
        (None: everything) and when it was made. Unknown standard: `ComplianceError`; a scope
        naming something unknown: `ScopeError`; an unreachable store: `StoreUnavailable`."""
        catalog_for(standard, self._ctx.catalogs)  # an unknown one fails before any work
        scope = scope or Scope()
        version = self._ctx.store.evidence_version()
        now = self._ctx.clock()
        with self._lock:
            entry = self._entry(scope)
            if entry.made is not None:
                if not entry.busy and self._due(entry, entry.made, version, now):
                    entry.busy = True
                    threading.Thread(
                        target=self._refresh,
                        args=(scope, entry),
                        name="medsec-compliance-refresh",
                        daemon=True,
                    ).start()
                return entry.made.cached(standard)
            if entry.busy:  # another caller makes the first one: share it
                while entry.busy:
                    self._changed.wait()
                if entry.made is None:  # it failed: so does this call, alike
                    raise entry.failure or RuntimeError("compliance was not aggregated")
                return entry.made.cached(standard)
            entry.busy = True
        try:
            made = self._make(scope, entry)
        finally:
            with self._lock:
                entry.busy = False
                self._changed.notify_all()
        return made.cached(standard)

    def refreshing(self, scope: Scope | None = None) -> bool:
        """Whether the aggregation a page shows is being made again right now."""
        with self._lock:
            entry = self._entries.get(scope or Scope())
            return entry is not None and entry.busy and entry.made is not None

    def settle(self, timeout: float) -> bool:
        """Wait until no aggregation is being made (False if one still is after `timeout`)."""
        with self._lock:
            return self._changed.wait_for(
                lambda: not any(e.busy for e in self._entries.values()), timeout
            )

    # -- inside ------------------------------------------------------------------------------

    def _entry(self, scope: Scope) -> _Entry:
        """The scope's entry, now the most recently used; the least recently used idle ones
        beyond `scopes` dropped. Holds the lock."""
        entry = self._entries.get(scope)
        if entry is None:
            entry = self._entries[scope] = _Entry()
        self._entries.move_to_end(scope)
        dropped = []
        for old in [s for s, e in self._entries.items() if s != scope and not e.busy]:
            if len(self._entries) <= self._scopes:
                break
            made = self._entries.pop(old).made
            if made is not None:
                dropped.append(made.documents)
        if dropped:  # not in this page's time
            threading.Thread(
                target=release, args=dropped, name="medsec-compliance-release", daemon=True
            ).start()
        return entry

    def _due(self, entry: _Entry, made: _Made, version: EvidenceVersion, now: datetime) -> bool:
        if made.version == version and now - made.made_at < self._max_age:
            return False
        if self._timer() - made.ended < made.took * self._rest:
            return False
        if entry.failed is not None:
            failed_version, failed_at = entry.failed
            if failed_version == version and now - failed_at < self._max_age:
                return False
        return True

    def _make(self, scope: Scope, entry: _Entry) -> _Made:
        """Aggregate every standard over `scope` and put it in `entry` (not holding the lock).
        The version is read before the evidence: if a report lands in between, the entry
        looks older than it is and is made again, never the other way round."""
        ctx = self._ctx
        version: EvidenceVersion | None = None
        try:
            with self._one_at_a_time:
                version = ctx.store.evidence_version()
                now = ctx.clock()
                started = self._timer()
                documents = self._aggregate(ctx, scope, now)
                ended = self._timer()
        except BaseException as exc:
            with self._lock:
                entry.failure = exc
                entry.failed = (version, ctx.clock())
            raise
        made = _Made(documents, version, now, ended - started, ended)
        with self._lock:
            older, entry.made = entry.made, made
            entry.failure = entry.failed = None
            self.computations += 1
        if older is not None:  # no caller can reach it now (they read `entry.made` locked)
            release(older.documents)
        return made

    def _refresh(self, scope: Scope, entry: _Entry) -> None:
        """Make the entry again in the background; on failure the older one stays shown."""
        try:
            self._make(scope, entry)
        except Exception as exc:  # the thread's boundary: the pages keep the older one
            logger.warning("compliance for the dashboard not made again: %s", exc)
        finally:
            with self._lock:
                entry.busy = False
                self._changed.notify_all()
