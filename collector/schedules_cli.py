"""`medsec schedules`: periodic scans of a zones file the settings name (`scans.zones`).

`add NAME --zones ZONES (--every 24h | --cron "0 2 * * *")`, `list`, `pause NAME`, `resume NAME`
and `remove NAME`, each audited like every other administrative command. The collector's
processes fire the schedules (collector/periodic.py); these commands only change the database,
so they work whether or not a collector is serving.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

# collector.cli imports this module only from inside its functions, once it is whole.
from collector.cli import (
    EXIT_OK,
    UsageError,
    _iso,
    _name,
    _now,
    _os_user,
    _stamp,
    _table,
    _with_store,
)

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from collector.store import Store
    from collector.store.schedules import Schedule

CLI_ACTOR = "cli:"
"""`created_by` of a schedule added here starts with it, then the OS user: not an API user."""


def add_schedules_parser(
    sub: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    actions = sub.add_parser(
        "schedules", help="periodic scans of a zones file (scans.zones)"
    ).add_subparsers(dest="action", required=True, parser_class=parser_class)
    add = actions.add_parser("add", help="scan a zones file periodically")
    add.add_argument("name")
    add.add_argument("--zones", required=True, help="a zones file name from scans.zones")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--every",
        metavar="PERIOD",
        help="a period: 30s, 15m, 24h, 7d (at least scans.min_every_seconds)",
    )
    when.add_argument(
        "--cron",
        metavar="EXPR",
        help='a cron expression in UTC, five fields ("0 2 * * *") or @daily, @hourly, ...',
    )
    config_arg(add)
    listed = actions.add_parser("list", help="list schedules, when they fire and their last scan")
    listed.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: a list of objects, timestamps ISO 8601 UTC or null",
    )
    config_arg(listed)
    for action, text in (
        ("pause", "stop firing a schedule (a scan it started runs on)"),
        ("resume", "fire a paused schedule again, next one period (or cron time) from now"),
        ("remove", "delete a schedule (its scans stay in the history)"),
    ):
        one = actions.add_parser(action, help=text)
        one.add_argument("name")
        config_arg(one)


def run(args: argparse.Namespace) -> int:
    if args.action == "add":
        action = f"schedules add {args.name} --zones {args.zones}"
        action += f" --every {args.every}" if args.every else f" --cron {args.cron!r}"
        return _with_store(args, action, lambda store, settings: _add(args, store, settings))
    if args.action == "list":
        return _with_store(args, "schedules list", lambda store, _: _list(args, store))
    change = _CHANGES[args.action]
    return _with_store(
        args, f"schedules {args.action} {args.name}", lambda store, _: change(args.name, store)
    )


def _add(args: argparse.Namespace, store: Store, settings: CollectorSettings) -> int:
    from collector.store.schedules import Cadence, InvalidCadence, ScheduleExists

    name = _name(args.name, "schedule")
    if args.zones not in settings.scans.zones:
        known = ", ".join(sorted(settings.scans.zones)) or "none"
        raise UsageError(
            f"the settings name no zones file {args.zones!r} (scans.zones: {known})",
            "unknown_zones",
        )
    try:
        cadence = Cadence.parse(
            args.every, args.cron, min_seconds=settings.scans.min_every_seconds, now=_now()
        )
    except InvalidCadence as exc:
        raise UsageError(str(exc), "invalid_schedule") from None
    try:
        added = store.add_schedule(name, args.zones, cadence, f"{CLI_ACTOR}{_os_user()}", _now())
    except ScheduleExists:
        raise UsageError(f"a schedule named {name!r} exists already", "schedule_exists") from None
    print(
        f"schedule {added.name} added: {added.zones} {added.cadence.text},"
        f" first due {_stamp(added.next_due_at)}"
    )
    return EXIT_OK


def _list(args: argparse.Namespace, store: Store) -> int:
    rows = [_row(s) for s in _all(store)]
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    keys = ("name", "zones", "when", "paused", "next_due_at", "last_due_at", "last_scan_id")
    header = ("NAME", "ZONES", "WHEN", "PAUSED", "NEXT DUE", "LAST DUE", "LAST SCAN", "STATE")
    _table(
        header, [(*(_cell(row[k]) for k in keys), _cell(row["last_scan_state"])) for row in rows]
    )
    return EXIT_OK


def _all(store: Store) -> list[Schedule]:
    found: list[Schedule] = []
    while True:
        page = store.list_schedules(500, len(found), _now())
        found += page.items
        if not page.items or len(found) >= page.total:
            return found


def _row(schedule: Schedule) -> dict[str, Any]:
    """One schedule as `list --format json` prints it (keys stable: scripts read them)."""
    from collector.store.schedules import format_every

    every = schedule.every_seconds
    state = schedule.last_scan_state
    return {
        "name": schedule.name,
        "zones": schedule.zones,
        "every": None if every is None else format_every(every),
        "cron": schedule.cron,
        "when": schedule.cadence.text,
        "paused": schedule.paused,
        "created_by": schedule.created_by,
        "created_at": _iso(schedule.created_at),
        "next_due_at": _iso(schedule.next_due_at),
        "last_due_at": _iso(schedule.last_due_at),
        "last_scan_id": schedule.last_scan_id,
        "last_scan_state": None if state is None else state.value,
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _pause(name: str, store: Store) -> int:
    with _known(name):
        schedule = store.pause_schedule(name, _now())
    print(f"schedule {schedule.name} paused")
    return EXIT_OK


def _resume(name: str, store: Store) -> int:
    with _known(name):
        schedule = store.resume_schedule(name, _now())
    print(f"schedule {schedule.name} resumed, next due {_stamp(schedule.next_due_at)}")
    return EXIT_OK


def _remove(name: str, store: Store) -> int:
    with _known(name):
        store.remove_schedule(name)
    print(f"schedule {name} removed (its scans stay in the history)")
    return EXIT_OK


_CHANGES: dict[str, Callable[[str, Store], int]] = {
    "pause": _pause,
    "resume": _resume,
    "remove": _remove,
}


@contextmanager
def _known(name: str) -> Iterator[None]:
    from collector.store.schedules import UnknownSchedule

    try:
        yield
    except UnknownSchedule:
        raise UsageError(f"no schedule named {name!r}", "not_found") from None
