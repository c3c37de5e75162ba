"""Schedules in the store, on SQLite and PostgreSQL: when a schedule is due (a period, a cron
expression in UTC), what `fire_due` makes of a due time (one scan, or a failed one when the
zones are still being scanned), missed times not made up, pause and resume; and, with several
processes firing at once on one database, each due time fired exactly once.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from collector.models import ScanState
from collector.store import Store
from collector.store.schedules import (
    SKIPPED,
    Cadence,
    InvalidCadence,
    ScheduleExists,
    UnknownSchedule,
    check_cron,
    format_every,
    parse_every,
)

T0 = datetime(2026, 3, 2, 1, 30, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def every(text: str, min_seconds: int = 1) -> Cadence:
    return Cadence.parse(text, None, min_seconds=min_seconds, now=T0)


def cron(text: str, min_seconds: int = 60) -> Cadence:
    return Cadence.parse(None, text, min_seconds=min_seconds, now=T0)


# --------------------------------------------------------------------------- cadences


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86_400), ("7d", 604_800), (" 1s ", 1)],
)
def test_a_period_is_a_whole_number_of_seconds_minutes_hours_or_days(
    text: str, seconds: int
) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "1", "1w", "1.5h", "-1h", "h", "1 h", "400d", "1hh"])
def test_a_period_in_any_other_form_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(InvalidCadence) as refused:
        parse_every(text)
    assert "\n" not in str(refused.value)


def test_a_period_is_shown_in_its_largest_whole_unit() -> None:
    assert [format_every(s) for s in (86_400, 5_400, 3_600, 61, 604_800)] == [
        "1d",
        "90m",
        "1h",
        "61s",
        "7d",
    ]


def test_a_period_shorter_than_the_settings_allow_is_refused() -> None:
    with pytest.raises(InvalidCadence, match="min_every_seconds"):
        every("30s", min_seconds=60)
    assert every("60s", min_seconds=60).every_seconds == 60


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("61 * * * *", "not a valid"),
        ("* * * *", "five fields"),
        ("0 2 * * * *", "five fields"),  # croniter would read a sixth field as seconds
        ("0 2 30 2 *", "never comes"),
        ("@reboot", "macros"),
        ("0 2 * * *\n0 3 * * *", "five fields"),
        ("x" * 200, "characters"),
        ("0 2 * * é", "characters"),
    ],
)
def test_a_cron_expression_croniter_cannot_use_is_refused_in_one_line(text: str, why: str) -> None:
    with pytest.raises(InvalidCadence, match=why) as refused:
        check_cron(text)
    assert "\n" not in str(refused.value)


def test_a_cron_expression_that_comes_more_often_than_allowed_is_refused() -> None:
    assert cron("*/5 * * * *", min_seconds=300).cron == "*/5 * * * *"
    with pytest.raises(InvalidCadence, match="300 s apart"):
        cron("*/5 * * * *", min_seconds=301)
    # Often only at one hour of one day: still too often.
    with pytest.raises(InvalidCadence, match="60 s apart"):
        cron("0,1 3 1 * *", min_seconds=3600)


def test_every_and_cron_are_exclusive_and_one_is_needed() -> None:
    for asked in ((None, None), ("1h", "0 2 * * *")):
        with pytest.raises(InvalidCadence, match="either"):
            Cadence.parse(*asked, min_seconds=1, now=T0)


def test_the_next_due_time_is_the_first_strictly_after_now() -> None:
    hourly = Cadence(every_seconds=3600)
    due = T0
    assert hourly.next_due(due, T0) == T0 + timedelta(hours=1)
    assert hourly.next_due(due, T0 + timedelta(hours=1)) == T0 + timedelta(hours=2)
    assert hourly.next_due(due, T0 + timedelta(hours=5, minutes=1)) == T0 + timedelta(hours=6)
    nightly = Cadence(cron="0 2 * * *")
    assert nightly.first_due(T0) == T0.replace(hour=2, minute=0)
    at_two = T0.replace(hour=2, minute=0)
    assert nightly.next_due(at_two, at_two) == at_two + timedelta(days=1)
    assert nightly.next_due(at_two, at_two + timedelta(days=3, hours=1)) == at_two + timedelta(
        days=4
    )


# --------------------------------------------------------------------------- the store


def test_add_list_pause_resume_remove(store: Store) -> None:
    added = store.add_schedule("nightly", "hospital", cron("0 2 * * *"), "ops", T0)
    assert (added.name, added.zones, added.cron, added.every, added.paused) == (
        "nightly",
        "hospital",
        "0 2 * * *",
        None,
        False,
    )
    assert added.next_due_at == T0.replace(hour=2, minute=0)
    store.add_schedule("daily", "office", every("24h"), "ops", T0)
    with pytest.raises(ScheduleExists):
        store.add_schedule("daily", "office", every("1h"), "ops", T0)
    listed = store.list_schedules(10, 0, T0)
    assert [s.name for s in listed.items] == ["daily", "nightly"]
    assert listed.items[0].every == "1d"
    assert listed.items[0].next_due_at == T0 + timedelta(days=1)

    later = T0 + timedelta(hours=5)
    assert store.pause_schedule("daily", later).paused
    assert store.pause_schedule("daily", later).paused  # again: no change, no error
    resumed = store.resume_schedule("daily", later)
    assert not resumed.paused
    assert resumed.next_due_at == later + timedelta(days=1)  # recomputed from now
    assert store.resume_schedule("daily", later + S).next_due_at == resumed.next_due_at

    store.remove_schedule("daily")
    assert [s.name for s in store.list_schedules(10, 0, T0).items] == ["nightly"]
    for change in (
        lambda: store.remove_schedule("daily"),
        lambda: store.pause_schedule("daily", T0),
        lambda: store.resume_schedule("daily", T0),
        lambda: store.pause_schedule("no\x00such", T0),
    ):
        with pytest.raises(UnknownSchedule):
            change()
    assert store.get_schedule("no\x00such", T0) is None


def test_a_schedule_fires_once_per_due_time_and_not_before(store: Store) -> None:
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    first_due = T0 + timedelta(minutes=10)
    assert store.fire_due(first_due - S) == []
    [run] = store.fire_due(first_due, lifetime=timedelta(minutes=5))
    assert (run.state, run.zones, run.due_at, run.requested_by) == (
        ScanState.RUNNING,
        "hospital",
        first_due,
        "schedule often",
    )
    assert run.started_at == first_due
    assert store.fire_due(first_due) == []  # the same moment again: fired already
    assert store.fire_due(first_due + timedelta(minutes=9)) == []
    schedule = store.get_schedule("often", first_due)
    assert schedule is not None
    assert (schedule.last_due_at, schedule.last_scan_id, schedule.last_scan_state) == (
        first_due,
        run.id,
        ScanState.RUNNING,
    )
    assert schedule.next_due_at == first_due + timedelta(minutes=10)
    # Scans by hand and by schedule are one record: the scan is listed with its due time.
    listed = store.get_scan(run.id, first_due)
    assert listed is not None
    assert (listed.schedule_id, listed.due_at) == (schedule.id, first_due)


def test_missed_due_times_are_not_made_up(store: Store) -> None:
    """No collector ran for five periods: one scan, for the due time it had, and the next due
    time is the first after now."""
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    now = T0 + timedelta(minutes=57)
    [run] = store.fire_due(now)
    assert run.due_at == T0 + timedelta(minutes=10)
    schedule = store.get_schedule("often", now)
    assert schedule is not None
    assert schedule.next_due_at == T0 + timedelta(minutes=60)
    store.finish_scan(run.id, ScanState.PASSED, now)
    [after] = store.fire_due(T0 + timedelta(minutes=60))
    assert after.due_at == T0 + timedelta(minutes=60)
    assert after.state is ScanState.RUNNING


def test_a_cron_schedule_fires_at_its_times_in_utc(store: Store) -> None:
    store.add_schedule("nightly", "hospital", cron("0 2 * * *"), "ops", T0)
    two = T0.replace(hour=2, minute=0)
    assert store.fire_due(two - S) == []
    [run] = store.fire_due(two + timedelta(seconds=3))
    assert run.due_at == two
    store.finish_scan(run.id, ScanState.FINDINGS, two + timedelta(minutes=5))
    schedule = store.get_schedule("nightly", two)
    assert schedule is not None
    assert schedule.next_due_at == two + timedelta(days=1)
    assert schedule.last_scan_state is ScanState.FINDINGS
    # Two days missed: one scan for the first, then on at the next 02:00.
    [late] = store.fire_due(two + timedelta(days=3, hours=4))
    assert late.due_at == two + timedelta(days=1)
    again = store.get_schedule("nightly", two)
    assert again is not None
    assert again.next_due_at == two + timedelta(days=4)


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(store: Store) -> None:
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    store.pause_schedule("often", T0 + S)
    assert store.fire_due(T0 + timedelta(hours=3)) == []
    resumed_at = T0 + timedelta(hours=3, minutes=1)
    resumed = store.resume_schedule("often", resumed_at)
    assert resumed.next_due_at == resumed_at + timedelta(minutes=10)
    assert store.fire_due(resumed_at + timedelta(minutes=9)) == []
    [run] = store.fire_due(resumed_at + timedelta(minutes=10))
    assert run.due_at == resumed_at + timedelta(minutes=10)


def test_a_due_time_while_its_zones_are_scanned_is_recorded_as_skipped(store: Store) -> None:
    """A scan by hand of the same zones still runs: the due time becomes a failed scan saying
    so, and the schedule goes on; another zones file's schedule is not held up."""
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    store.add_schedule("office", "office", every("10m"), "ops", T0)
    by_hand = store.start_scan("hospital", "alice", T0, T0 + timedelta(hours=1))
    due = T0 + timedelta(minutes=10)
    fired = {run.zones: run for run in store.fire_due(due)}
    skipped = fired["hospital"]
    assert skipped.state is ScanState.FAILED
    assert skipped.message == SKIPPED.format(zones="hospital")
    assert (skipped.due_at, skipped.finished_at) == (due, due)
    assert fired["office"].state is ScanState.RUNNING
    schedule = store.get_schedule("often", due)
    assert schedule is not None
    assert (schedule.last_scan_id, schedule.last_scan_state) == (skipped.id, ScanState.FAILED)
    store.finish_scan(by_hand.id, ScanState.PASSED, due + S)
    [next_run] = [r for r in store.fire_due(due + timedelta(minutes=10)) if r.zones == "hospital"]
    assert next_run.state is ScanState.RUNNING


def test_a_scan_lost_with_its_collector_does_not_block_the_schedule(store: Store) -> None:
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    lost = store.start_scan("hospital", "alice", T0, T0 + timedelta(minutes=5))
    [run] = store.fire_due(T0 + timedelta(minutes=10))
    assert run.state is ScanState.RUNNING
    closed = store.get_scan(lost.id, T0)
    assert closed is not None
    assert closed.state is ScanState.FAILED
    # The schedule's last scan, lost in turn, is listed as failed once past its deadline.
    later = T0 + timedelta(hours=3)
    schedule = store.get_schedule("often", later)
    assert schedule is not None
    assert schedule.last_scan_state is ScanState.FAILED


def test_the_database_refuses_a_second_scan_for_one_due_time(store_url: str, store: Store) -> None:
    """The last word is the database's: whatever code inserts it, a second scan row for the same
    schedule and due time is refused by the unique index."""
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    [run] = store.fire_due(T0 + timedelta(minutes=10))
    engine = sa.create_engine(store_url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO scans (id, zones, requested_by, state, started_at, deadline,"
                    " finished_at, schedule_id, due_at)"
                    " SELECT :id, 'other', requested_by, 'failed', started_at, deadline,"
                    " started_at, schedule_id, due_at FROM scans WHERE id = :run"
                ),
                {"id": str(uuid.uuid4()), "run": run.id},
            )
    finally:
        engine.dispose()


def test_removing_a_schedule_keeps_its_scans(store: Store) -> None:
    store.add_schedule("often", "hospital", every("10m"), "ops", T0)
    [run] = store.fire_due(T0 + timedelta(minutes=10))
    store.remove_schedule("often")
    kept = store.get_scan(run.id, T0)
    assert kept is not None
    assert kept.requested_by == "schedule often"


# --------------------------------------------------------------------------- many firers


PROCESSES = 4
ZONES = 3
STEPS = 60
STEP = timedelta(milliseconds=250)
"""The processes step together through 15 s of made-up time, each calling fire_due at every
step at the same moment: 15 due times per schedule, each asked for by every process at once.
Two schedules per zones file, named so that the order of their names crosses the order of their
zones: firers taking zones in different orders would deadlock."""


def _hammer(
    url: str, start: datetime, barrier: Any, out: multiprocessing.queues.Queue[Any]
) -> None:
    """One firing process: fire at each step, close the scans it fired (so the next due time
    finds its zones free); sends back (scan id, schedule id, due time) of each scan it fired."""
    store = Store.open(url)
    fired = []
    try:
        for step in range(1, STEPS + 1):
            barrier.wait(timeout=60)
            now = start + STEP * step
            for run in store.fire_due(now, lifetime=timedelta(minutes=5)):
                fired.append((run.id, run.schedule_id, run.due_at, run.state.value))
                if run.state is ScanState.RUNNING:
                    store.finish_scan(run.id, ScanState.PASSED, now)
    finally:
        store.close()
        out.put(fired)


def test_processes_firing_at_once_fire_each_due_time_exactly_once(
    store_url: str, store: Store
) -> None:
    for n in range(ZONES):
        store.add_schedule(f"a{n}", f"zones-{n}", every("1s"), "ops", T0)
        store.add_schedule(f"b{n}", f"zones-{ZONES - 1 - n}", every("1s"), "ops", T0)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    out: multiprocessing.queues.Queue[Any] = context.Queue()
    processes = [
        context.Process(target=_hammer, args=(store_url, T0, barrier, out), daemon=True)
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    fired = [scan for result in results for scan in result]
    rows = [
        (run.id, run.schedule_id, run.due_at)
        for run in store.list_scans(10_000, 0, T0 + timedelta(hours=1)).items
    ]
    # Every scan in the database was handed to exactly one firer, and nothing else was.
    assert sorted(scan[:3] for scan in fired) == sorted(rows)
    assert len({scan[0] for scan in fired}) == len(fired)
    end = T0 + STEP * STEPS
    schedules = store.list_schedules(10, 0, end).items
    assert len(schedules) == 2 * ZONES
    for schedule in schedules:
        dues = sorted(due for _, sid, due in rows if sid == schedule.id)
        # Each due time once, none missed, none twice: 1 s apart from the first to the last.
        assert dues == [T0 + S * k for k in range(1, len(dues) + 1)], schedule.name
        assert dues[-1] == end
        assert schedule.next_due_at == end + S
    # Each firer closed its scans before the next step: at every due time each zones file was
    # free, so one of its two schedules' scans ran (the other was skipped, or ran after it).
    zones_of = {s.id: s.zones for s in schedules}
    ran = {(zones_of[sid], due) for _, sid, due, state in fired if state == "running"}
    assert len(ran) == ZONES * STEPS // 4
    counts = [len(result) for result in results]
    print(f"{len(fired)} scans fired, by process: {counts}")
