"""Periodic scans: schedules, and the firing of due ones into scans, once per due time.

A schedule is a zones file and a cadence — a fixed period (`every`) or a cron expression read by
croniter, in UTC. `fire_due` turns every due, unpaused schedule into ONE scans row carrying the
schedule's id and the due time it was fired for; the unique index on (schedule_id, due_at) makes
a second row for that due time impossible, however many collector processes fire at once, and on
PostgreSQL the due schedules are locked `FOR UPDATE SKIP LOCKED` so concurrent firers do not even
wait on each other (SQLite has one writer at a time: its write transaction gives the same).
Due times missed while no collector ran are not replayed: the next due time is the first one
strictly after now. A due time whose zones are still being scanned is recorded as a failed scan
saying so, so the history shows every due time exactly once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from croniter import CroniterError, croniter

from collector.models import Page, ScanRun, ScanState
from collector.store.engine import Database
from collector.store.errors import StoreError
from collector.store.rows import LOST_SCAN, SCAN_COLUMNS, Row, to_scan
from collector.store.schema import scans, schedules
from collector.store.values import bounded, check_page, safe_text, storable, utc

MAX_EVERY_SECONDS = 366 * 86_400
"""The longest period: a schedule that runs less than yearly is not periodic scanning."""
MAX_CRON_LENGTH = 100
DEFAULT_SCAN_LIFETIME = timedelta(hours=1, minutes=1)
"""How long a fired scan may stay running before it counts as lost (the launcher passes its own:
`scans.timeout_seconds` and the time to stop a scan)."""
SKIPPED = "skipped: the previous scan of {zones!r} was still running at this due time"
_FIRE_BATCH = 100
"""Schedules fired in one transaction at most; the rest are due still and go at the next tick."""
_CRON_SAMPLES = 500
_EVERY = re.compile(r"^([1-9][0-9]{0,7})([smhd])$")
_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class ScheduleExists(StoreError):
    """A schedule of that name exists already."""


class UnknownSchedule(StoreError):
    """No schedule has that name."""


class InvalidCadence(ValueError):
    """`every` or `cron` is not usable; the message is the one line a user sees."""


@dataclass(frozen=True)
class Cadence:
    """When a schedule is due: every `every_seconds` from its last due time, or at the times of
    the cron expression `cron` (UTC). Exactly one of the two is set."""

    every_seconds: int | None = None
    cron: str | None = None

    @classmethod
    def parse(
        cls, every: str | None, cron: str | None, *, min_seconds: int, now: datetime
    ) -> Cadence:
        """The cadence `--every 24h` or `--cron "0 2 * * *"` asks for; `InvalidCadence` if it is
        malformed, never comes, or comes more often than every `min_seconds`."""
        if (every is None) == (cron is None):
            raise InvalidCadence("give either every (30s, 15m, 24h, 7d) or cron, not both")
        if cron is None:
            seconds = parse_every(every or "")
            if seconds < min_seconds:
                raise InvalidCadence(
                    f"every {every} is more often than scans.min_every_seconds ({min_seconds} s)"
                )
            return cls(every_seconds=seconds)
        cadence = cls(cron=check_cron(cron))
        gap = cadence.shortest_gap(utc(now))
        if gap < min_seconds:
            raise InvalidCadence(
                f"cron {cadence.cron!r} comes {gap} s apart, more often than"
                f" scans.min_every_seconds ({min_seconds} s)"
            )
        return cadence

    @property
    def text(self) -> str:
        """`every 1d` or `cron 0 2 * * *`: how lists show it."""
        if self.every_seconds is not None:
            return f"every {format_every(self.every_seconds)}"
        return f"cron {self.cron}"

    def first_due(self, now: datetime) -> datetime:
        """The first due time of a schedule added or resumed at `now`: one period later, or the
        cron expression's next time strictly after now."""
        now = utc(now)
        if self.every_seconds is not None:
            return now + timedelta(seconds=self.every_seconds)
        return self._cron_after(now)

    def next_due(self, due: datetime, now: datetime) -> datetime:
        """The due time after `due` that comes first strictly after `now`: the ones between are
        missed (no collector ran, or it ran late) and are not made up."""
        due, now = utc(due), utc(now)
        if self.every_seconds is not None:
            period = timedelta(seconds=self.every_seconds)
            if due > now:
                return due + period
            return due + period * ((now - due) // period + 1)
        return self._cron_after(max(due, now))

    def shortest_gap(self, now: datetime) -> int:
        """The shortest time, in seconds, between two of the cron expression's next few hundred
        times from `now` (a cron expression's pattern repeats well within that)."""
        times = croniter(self.cron or "", now)
        previous = times.get_next(datetime)
        shortest = MAX_EVERY_SECONDS
        for _ in range(_CRON_SAMPLES):
            moment = times.get_next(datetime)
            shortest = min(shortest, int((moment - previous).total_seconds()))
            previous = moment
        return shortest

    def _cron_after(self, moment: datetime) -> datetime:
        try:
            following: datetime = croniter(self.cron or "", moment).get_next(datetime)
        except CroniterError as exc:
            raise InvalidCadence(f"cron {self.cron!r} has no time after {moment}") from exc
        return utc(following)


def parse_every(text: str) -> int:
    """`30s`, `15m`, `24h`, `7d` as seconds; `InvalidCadence` for anything else."""
    found = _EVERY.match(text.strip())
    if found is None:
        raise InvalidCadence(
            f"every {text[:40]!r} is not a period: a whole number and s, m, h or d (30s, 24h, 7d)"
        )
    seconds = int(found[1]) * _UNITS[found[2]]
    if seconds > MAX_EVERY_SECONDS:
        raise InvalidCadence(f"every {text} is longer than a year")
    return seconds


def format_every(seconds: int) -> str:
    """The period in its largest whole unit: 86400 → `1d`, 5400 → `90m`."""
    for unit, size in _UNITS.items():
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("a second divides every whole number of seconds")


def check_cron(text: str) -> str:
    """A cron expression of five fields (minute hour day month weekday) or a macro such as
    `@daily`, as croniter reads it; `InvalidCadence` otherwise, or if it never comes (30 Feb)."""
    cron = " ".join(text.split())
    if not cron or len(cron) > MAX_CRON_LENGTH or not cron.isascii() or not cron.isprintable():
        raise InvalidCadence(f"cron must be 1-{MAX_CRON_LENGTH} printable ASCII characters")
    if cron.startswith("@"):
        if cron.lower() not in _CRON_MACROS:
            raise InvalidCadence(f"cron {cron!r}: the macros are {', '.join(_CRON_MACROS)}")
    elif len(cron.split()) != 5:
        raise InvalidCadence(
            f"cron {cron!r} is not five fields: minute hour day-of-month month day-of-week"
        )
    if not croniter.is_valid(cron):
        raise InvalidCadence(f"cron {cron!r} is not a valid cron expression")
    try:
        croniter(cron).get_next(datetime)
    except CroniterError:
        raise InvalidCadence(f"cron {cron!r} never comes") from None
    return cron


@dataclass(frozen=True)
class Schedule:
    """A periodic scan of a zones file, as `schedules list` and `GET /api/v1/schedules` show it."""

    id: str
    name: str
    zones: str
    """The name of a zones file in the collector's settings (`scans.zones`)."""
    every_seconds: int | None
    cron: str | None
    paused: bool
    created_by: str
    created_at: datetime
    next_due_at: datetime
    """When it fires next (while paused: when it would have; resuming recomputes it)."""
    last_due_at: datetime | None
    last_scan_id: str | None
    """The scan its last due time became (a failed one if that time was skipped)."""
    last_scan_state: ScanState | None
    """That scan's state now (a scan lost with its collector shows as failed)."""

    @property
    def cadence(self) -> Cadence:
        return Cadence(self.every_seconds, self.cron)

    @property
    def every(self) -> str | None:
        """The period in its largest whole unit (`1d`), None for a cron schedule."""
        return None if self.every_seconds is None else format_every(self.every_seconds)


_SCHEDULE_COLUMNS = (
    schedules.c.id,
    schedules.c.name,
    schedules.c.zones,
    schedules.c.every_seconds,
    schedules.c.cron,
    schedules.c.paused,
    schedules.c.created_by,
    schedules.c.created_at,
    schedules.c.next_due_at,
    schedules.c.last_due_at,
    schedules.c.last_scan_id,
)
_WITH_LAST_SCAN = schedules.outerjoin(scans, scans.c.id == schedules.c.last_scan_id)
_LISTED = (*_SCHEDULE_COLUMNS, scans.c.state.label("scan_state"), scans.c.deadline)


def _to_schedule(row: Row, now: datetime) -> Schedule:
    state = None if row.scan_state is None else ScanState(row.scan_state)
    if state is ScanState.RUNNING and row.deadline < now:
        state = ScanState.FAILED  # lost with its collector, as `get_scan` shows it
    return Schedule(
        id=row.id,
        name=row.name,
        zones=row.zones,
        every_seconds=row.every_seconds,
        cron=row.cron,
        paused=bool(row.paused),
        created_by=row.created_by,
        created_at=row.created_at,
        next_due_at=row.next_due_at,
        last_due_at=row.last_due_at,
        last_scan_id=row.last_scan_id,
        last_scan_state=state,
    )


class Schedules(Database):
    """Adding, listing, pausing, resuming and removing schedules, and firing the due ones; each
    method one transaction. What may be scheduled (the zones names the settings list, the
    shortest period) is checked by the CLI and the API, which know the settings."""

    def add_schedule(
        self, name: str, zones: str, cadence: Cadence, created_by: str, now: datetime
    ) -> Schedule:
        """A new schedule, first due one period (or the cron's next time) after `now`;
        `ScheduleExists` if the name is taken."""
        now = utc(now)
        with self._tx(write=True) as conn:
            row = conn.execute(
                self._insert(schedules)
                .values(
                    id=str(uuid.uuid4()),
                    name=safe_text(name),
                    zones=safe_text(zones),
                    every_seconds=cadence.every_seconds,
                    cron=cadence.cron,
                    paused=False,
                    created_by=safe_text(created_by),
                    created_at=now,
                    next_due_at=cadence.first_due(now),
                )
                .on_conflict_do_nothing(index_elements=[schedules.c.name])
                .returning(schedules.c.id)
            ).first()
        if row is None:
            raise ScheduleExists(f"a schedule named {name!r} exists already")
        return self._found(name, now)

    def get_schedule(self, name: str, now: datetime) -> Schedule | None:
        if not storable(name):
            return None
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*_LISTED).select_from(_WITH_LAST_SCAN).where(schedules.c.name == name)
            ).first()
        return None if row is None else _to_schedule(row, utc(now))

    def list_schedules(self, limit: int, offset: int, now: datetime) -> Page[Schedule]:
        """Schedules by name."""
        check_page(limit, offset)
        with self._tx(write=False) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(schedules)).scalar_one()
            rows = conn.execute(
                sa.select(*_LISTED)
                .select_from(_WITH_LAST_SCAN)
                .order_by(schedules.c.name)
                .limit(bounded(limit))
                .offset(bounded(offset))
            ).all()
        return Page(tuple(_to_schedule(row, utc(now)) for row in rows), total, limit, offset)

    def pause_schedule(self, name: str, now: datetime) -> Schedule:
        """Stop firing it until it is resumed (pausing a paused schedule changes nothing); a scan
        it started already runs on. `UnknownSchedule` if there is none of that name."""
        self._change(name, {"paused": True})
        return self._found(name, now)

    def resume_schedule(self, name: str, now: datetime) -> Schedule:
        """Fire it again, next one period (or the cron's next time) after `now`: the due times
        it was paused through are not made up. A schedule not paused stays as it is."""
        now = utc(now)
        if not storable(name):
            raise UnknownSchedule(f"no schedule named {name!r}")
        with self._tx(write=True) as conn:
            row = conn.execute(
                sa.select(schedules.c.every_seconds, schedules.c.cron, schedules.c.paused)
                .where(schedules.c.name == name)
                .with_for_update()
            ).first()
            if row is None:
                raise UnknownSchedule(f"no schedule named {name!r}")
            if row.paused:
                cadence = Cadence(row.every_seconds, row.cron)
                conn.execute(
                    sa.update(schedules)
                    .where(schedules.c.name == name)
                    .values(paused=False, next_due_at=cadence.first_due(now))
                )
        return self._found(name, now)

    def remove_schedule(self, name: str) -> None:
        """Delete it; the scans it started stay in the history (their `requested_by` names it).
        `UnknownSchedule` if there is none of that name."""
        if not storable(name):
            raise UnknownSchedule(f"no schedule named {name!r}")
        with self._tx(write=True) as conn:
            gone = conn.execute(sa.delete(schedules).where(schedules.c.name == name)).rowcount
        if not gone:
            raise UnknownSchedule(f"no schedule named {name!r}")

    def fire_due(
        self, now: datetime, *, lifetime: timedelta = DEFAULT_SCAN_LIFETIME
    ) -> list[ScanRun]:
        """Turn every unpaused schedule due at `now` into one scan, in one transaction: a running
        scan (deadline `now + lifetime`) for the caller to start, or a failed one when a scan of
        those zones still runs. Each schedule's next due time is the first one strictly after
        `now`. Any number of processes may call it at once: each due time becomes one scan."""
        now = utc(now)
        due = sa.and_(sa.not_(schedules.c.paused), schedules.c.next_due_at <= now)
        with self._tx(write=False) as conn:  # most ticks find nothing: no write lock for that
            if conn.execute(sa.select(schedules.c.id).where(due).limit(1)).first() is None:
                return []
        query = (
            sa.select(*_SCHEDULE_COLUMNS)
            .where(due)
            # By zones first: every firer then takes the zones' running-scan index entries in
            # one order, so two firers of schedules of the same zones files never deadlock.
            .order_by(schedules.c.zones, schedules.c.next_due_at, schedules.c.id)
            .limit(_FIRE_BATCH)
        )
        if self._dialect == "postgresql":
            # Another process firing locks the rows it fires; skipping them, this one neither
            # waits nor fires them again (it would not anyway: the lock's holder moves their
            # next due time past now, and the re-checked WHERE then leaves them out).
            query = query.with_for_update(skip_locked=True)
        fired: list[ScanRun] = []
        with self._tx(write=True) as conn:
            for row in conn.execute(query).all():
                run = self._fire(conn, row, now, now + lifetime)
                if run is not None:
                    fired.append(run)
        return fired

    def _change(self, name: str, values: dict[str, object]) -> None:
        if not storable(name):
            raise UnknownSchedule(f"no schedule named {name!r}")
        with self._tx(write=True) as conn:
            changed = conn.execute(
                sa.update(schedules).where(schedules.c.name == name).values(**values)
            ).rowcount
        if not changed:
            raise UnknownSchedule(f"no schedule named {name!r}")

    def _found(self, name: str, now: datetime) -> Schedule:
        found = self.get_schedule(name, now)
        if found is None:  # removed in between
            raise UnknownSchedule(f"no schedule named {name!r}")
        return found

    def _fire(
        self, conn: sa.Connection, row: Row, now: datetime, deadline: datetime
    ) -> ScanRun | None:
        """One due schedule (locked by the caller) into its scan; None if its due time had become a
        scan already (the unique index said so: another firer's)."""
        due: datetime = row.next_due_at
        # A scan of these zones still marked running past its deadline was lost with its collector:
        # closed first, as `start_scan` does, so it cannot stand in for a running one.
        conn.execute(
            sa.update(scans)
            .where(
                scans.c.zones == row.zones,
                scans.c.state == ScanState.RUNNING.value,
                scans.c.deadline < now,
            )
            .values(state=ScanState.FAILED.value, finished_at=now, message=LOST_SCAN)
        )
        values = {
            "zones": row.zones,
            "requested_by": f"schedule {row.name}",
            "started_at": now,
            "deadline": deadline,
            "schedule_id": row.id,
            "due_at": due,
        }
        run_row = conn.execute(
            self._insert(scans)
            .values(id=str(uuid.uuid4()), state=ScanState.RUNNING.value, **values)
            .on_conflict_do_nothing()
            .returning(*SCAN_COLUMNS)
        ).first()
        scan_id = None if run_row is None else run_row.id
        if run_row is None:
            fired_already = conn.execute(
                sa.select(scans.c.id).where(scans.c.schedule_id == row.id, scans.c.due_at == due)
            ).first()
            if fired_already is not None:
                scan_id = fired_already.id
            else:  # the zones' running scan took the index: a skipped due time
                run_row = conn.execute(
                    self._insert(scans)
                    .values(
                        id=str(uuid.uuid4()),
                        state=ScanState.FAILED.value,
                        finished_at=now,
                        message=SKIPPED.format(zones=row.zones),
                        **values,
                    )
                    .on_conflict_do_nothing()
                    .returning(*SCAN_COLUMNS)
                ).first()
                scan_id = None if run_row is None else run_row.id
        cadence = Cadence(row.every_seconds, row.cron)
        try:
            following: dict[str, object] = {"next_due_at": cadence.next_due(due, now)}
        except InvalidCadence:  # a cron expression with no time left: it can never fire again
            following = {"paused": True}
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == row.id)
            .values(
                last_due_at=due,
                last_scan_id=scan_id,
                **following,
            )
        )
        return None if run_row is None else to_scan(run_row, now)
