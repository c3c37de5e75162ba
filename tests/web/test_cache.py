"""The dashboard's aggregation cache over a real store (SQLite and PostgreSQL): what a page shows
changes once the evidence does (a report, an attestation, time making a host stale), a page never
waits for an aggregation being made again, callers arriving together share one aggregation, and
a failing aggregation neither hides the older one nor runs again on every page."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.catalog import builtin_catalogs
from collector.compliance.aggregate import ScopeError
from collector.compliance.model import Compliance, Scope
from collector.compliance.service import ComplianceError
from collector.scans import ScanLauncher
from collector.settings import CollectorSettings, SnapshotSettings, TlsSettings
from collector.store import Store
from collector.web import cache as cache_module
from collector.web.cache import ComplianceCache
from collector.web.context import WebContext
from tests.collector.fixtures_api import Clock
from tests.web.evidence import enrolled, store_report

GBT = "gbt22239-2019-l3"
MNDS = "mnds"
SETTLE_S = 60.0


def _context(store: Store, clock: Clock, folder: Path) -> WebContext:
    settings = CollectorSettings(
        tls=TlsSettings(cert_file="unused", key_file="unused"),
        database="sqlite:///unused-by-the-cache.db",  # the cache reads the store it is given
        snapshots=SnapshotSettings(dir=str(folder / "snapshots"), key_file=str(folder / "key")),
    )
    return WebContext(
        settings=settings,
        store=store,
        catalogs=builtin_catalogs(),
        clock=clock,
        launcher=ScanLauncher(settings.scans, store, clock),
    )


class Timer:
    """The cache's measure of how long aggregations take: still unless a test moves it, so an
    aggregation takes no time and may be made again at once unless the test says otherwise."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting:
    """The real aggregation, counted; optionally slow (for real, or on the test's `Timer`) or
    failing (the test says which)."""

    def __init__(self, delay_s: float = 0.0, timer: Timer | None = None, took: float = 0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.failing = False
        self._timer = timer
        self._took = took
        self._lock = threading.Lock()

    def __call__(self, ctx: WebContext, scope: Scope, now: datetime) -> dict[str, Compliance]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self._timer is not None:
            self._timer.advance(self._took)
        if self.failing:
            raise ComplianceError("scans.zones.lab: cannot read lab.yaml")
        return cache_module.aggregate(ctx, scope, now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timer() -> Timer:
    return Timer()


@pytest.fixture
def ctx(store: Store, clock: Clock, tmp_path: Path) -> WebContext:
    return _context(store, clock, tmp_path)


def _host_status(doc: Compliance, hostname: str) -> set[str]:
    """The statuses the host's object has across the document's clauses."""
    return {o.status for c in doc.clauses for o in c.objects if o.name == hostname}


def test_a_new_report_shows_after_one_background_aggregation(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    cache = ComplianceCache(ctx, timer=timer)

    first, made_at = cache.get(GBT)
    assert first.summary.hosts == 1
    assert made_at == clock()
    again = cache.get(GBT)
    assert again.compliance is first, "unchanged evidence: the same aggregation, not a new one"
    assert cache.get(MNDS).compliance.standard == MNDS
    assert cache.computations == 1, "both standards come from one aggregation"

    held = [(c.id, c.status, len(c.objects), len(c.evidence)) for c in first.clauses]
    store_report(ctx.store, agent, agent_template, "his-db-02", clock())
    shown = cache.get(GBT)
    assert shown.compliance is first, "the page got the older aggregation without waiting"
    assert cache.settle(SETTLE_S)
    assert [(c.id, c.status, len(c.objects), len(c.evidence)) for c in first.clauses] == held, (
        "a page still rendering the older aggregation keeps all of it once it is let go"
    )
    fresh = cache.get(GBT).compliance
    assert fresh.summary.hosts == 2
    assert {h.hostname for h in fresh.hosts} == {"his-db-01", "his-db-02"}
    assert cache.computations == 2
    assert not cache.refreshing()


def test_callers_arriving_together_share_one_aggregation(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    counting = Counting(delay_s=0.5)  # long enough for every caller to arrive while it runs
    cache = ComplianceCache(ctx, aggregate=counting, timer=timer)
    callers = 8
    start = threading.Barrier(callers)
    got: list[Compliance] = []
    lock = threading.Lock()

    def page() -> None:
        start.wait()
        document = cache.get(GBT).compliance
        with lock:
            got.append(document)

    threads = [threading.Thread(target=page) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SETTLE_S)
    assert len(got) == callers
    assert counting.calls == 1
    assert all(document is got[0] for document in got)


def test_an_attestation_decides_a_manual_clause(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    cache = ComplianceCache(ctx, timer=timer)
    before = {c.id: c.status for c in cache.get(MNDS).compliance.clauses}
    assert before["4.1"] == "manual"

    ctx.store.add_attestation(
        "MNDS", "4.1", status="pass", note="分类分级制度已发布", created_by="auditor", now=clock()
    )
    cache.get(MNDS)
    assert cache.settle(SETTLE_S)
    after = {c.id: c.status for c in cache.get(MNDS).compliance.clauses}
    assert after["4.1"] == "pass"


def test_time_alone_makes_a_silent_host_stale(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    cache = ComplianceCache(ctx, timer=timer)
    assert "fail" in _host_status(cache.get(GBT).compliance, "his-db-01")
    assert cache.get(GBT).compliance.summary.stale_hosts == 0

    clock.advance(timedelta(minutes=ctx.settings.reports.stale_after_minutes + 1))
    cache.get(GBT)
    assert cache.settle(SETTLE_S)
    later, made_at = cache.get(GBT)
    assert made_at == clock()
    assert later.summary.stale_hosts == 1
    assert _host_status(later, "his-db-01") == {"error"}, "a stale host's old verdicts are gone"


def test_a_failed_refresh_keeps_the_older_aggregation_and_waits_before_trying_again(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    counting = Counting()
    cache = ComplianceCache(ctx, aggregate=counting, timer=timer)
    shown = cache.get(GBT).compliance

    store_report(ctx.store, agent, agent_template, "his-db-02", clock())
    counting.failing = True
    for _ in range(5):  # pages keep loading while the aggregation is broken
        assert cache.get(GBT).compliance is shown
        assert cache.settle(SETTLE_S)
    assert counting.calls == 2, "one failed attempt on the same evidence, not one per page"

    counting.failing = False
    clock.advance(cache_module.MAX_AGE)
    assert cache.get(GBT).compliance is shown
    assert cache.settle(SETTLE_S)
    assert cache.get(GBT).compliance.summary.hosts == 2


def test_a_first_aggregation_that_fails_fails_every_caller_and_runs_again_later(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock(), site="dc1")
    counting = Counting()
    cache = ComplianceCache(ctx, aggregate=counting, timer=timer)
    for _ in range(2):
        with pytest.raises(ScopeError):
            cache.get(GBT, Scope(site="nowhere"))
    assert counting.calls == 2, "nothing to show: each page tries again"
    with pytest.raises(ComplianceError, match="unknown standard"):
        cache.get("iso27001")
    assert counting.calls == 2, "an unknown standard costs no aggregation"


def test_scopes_kept_are_bounded(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock(), site="dc1")
    store_report(ctx.store, agent, agent_template, "pacs-01", clock(), site="dc2")
    cache = ComplianceCache(ctx, scopes=2, timer=timer)
    assert cache.get(GBT).compliance.summary.hosts == 2
    assert cache.get(GBT, Scope(site="dc1")).compliance.summary.hosts == 1
    cache.get(GBT)  # the unfiltered one stays the most recently used
    assert cache.get(GBT, Scope(site="dc2")).compliance.summary.hosts == 1  # drops dc1
    assert cache.computations == 3
    cache.get(GBT)
    assert cache.computations == 3
    cache.get(GBT, Scope(site="dc1"))
    assert cache.computations == 4, "the least recently used scope was dropped"


def test_a_long_aggregation_rests_before_it_is_made_again(
    ctx: WebContext, clock: Clock, agent_template: dict[str, Any], timer: Timer
) -> None:
    """Reports arrive all the time at scale: a 4 s aggregation (on the cache's timer) is made
    again no sooner than 36 s after it ended (a tenth of the time), whatever changed since."""
    agent = enrolled(ctx.store, "agent-a", clock())
    store_report(ctx.store, agent, agent_template, "his-db-01", clock())
    counting = Counting(timer=timer, took=4.0)
    cache = ComplianceCache(ctx, aggregate=counting, timer=timer)
    first = cache.get(GBT).compliance

    store_report(ctx.store, agent, agent_template, "his-db-02", clock())
    timer.advance(35)
    assert cache.get(GBT).compliance is first
    assert not cache.refreshing()
    assert cache.settle(SETTLE_S)
    assert counting.calls == 1

    timer.advance(1)
    assert cache.get(GBT).compliance is first
    assert cache.settle(SETTLE_S)
    assert counting.calls == 2
    assert cache.get(GBT).compliance.summary.hosts == 2
