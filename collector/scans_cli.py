"""`medsec scans list` and `medsec scans diff A B`: the history of completed network scans, and
what changed on the network between two of them (paths newly open or closed, policy violations
new or cleared, WAFs gone or back, ZTNA coverage up or down, TLS floors changed).

A and B are scan ids, or `latest` / `previous` with `--zones NAME` (the newest completed scan of
that zones file and the one before). A scan that does not exist, has not finished, failed (no
results) or whose report was pruned, and two scans of different zones files, are refused with one
line (exit 2). Both commands run through `collector.cli`'s store handling: audited, one-line
errors, exit codes (0 done, whatever the difference; 2 refused).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from collector.store import Store
    from collector.store.scan_history import ScanRecord

_LIST_LIMIT = 1000


def add_scans_parser(
    sub: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`scans list` and `scans diff` on `medsec`'s command line."""
    scans = sub.add_parser(
        "scans", help="the history of network scans, and what changed between two"
    ).add_subparsers(dest="action", required=True, parser_class=parser_class)
    listing = scans.add_parser("list", help="completed scans, newest first")
    listing.add_argument("--zones", metavar="NAME", help="only scans of this zones file")
    listing.add_argument(
        "--all", action="store_true", help="failed and running scans too, not only completed ones"
    )
    listing.add_argument(
        "--limit", type=int, default=100, help=f"at most this many (1-{_LIST_LIMIT}, default 100)"
    )
    listing.add_argument("--format", choices=("table", "json"), default="table")
    config_arg(listing)
    compare = scans.add_parser(
        "diff",
        help="what changed on the network from scan A to scan B",
        description="A and B: scan ids, or latest / previous with --zones NAME",
    )
    compare.add_argument("a", metavar="A", help="the earlier scan (id, latest or previous)")
    compare.add_argument("b", metavar="B", help="the later scan (id, latest or previous)")
    compare.add_argument(
        "--zones", metavar="NAME", help="the zones file whose latest / previous scans to take"
    )
    compare.add_argument("--format", choices=("table", "json"), default="table")
    config_arg(compare)


def run(args: argparse.Namespace) -> int:
    if args.action == "diff":
        return _diff(args)
    return _list(args)


def _list(args: argparse.Namespace) -> int:
    from collector import cli as base

    if not 1 <= args.limit <= _LIST_LIMIT:
        raise base.UsageError(f"--limit: must be between 1 and {_LIST_LIMIT} (value: {args.limit})")

    def listing(store: Store, _: CollectorSettings) -> int:
        page = store.scan_history(
            args.limit, 0, base._now(), zones=args.zones, completed_only=not args.all
        )
        rows = [_row(record) for record in page.items]
        if args.format == "json":
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return base.EXIT_OK
        header = ("ID", "ZONES", "STATE", "FINISHED", "BY", "FAIL", "ERROR", "REPORT")
        table = [
            (
                str(r["id"]),
                str(r["zones"]),
                str(r["state"]),
                str(r["finished_at"] or "-"),
                str(r["requested_by"]),
                "-" if r["counts"] is None else str(r["counts"].get("fail", 0)),
                "-" if r["counts"] is None else str(r["counts"].get("error", 0)),
                "pruned" if r["report_id"] and r["counts"] is None else r["report_id"] or "-",
            )
            for r in rows
        ]
        base._table(header, table)
        if page.total > len(rows):
            print(f"({page.total - len(rows)} older not shown; --limit)", file=sys.stderr)
        return base.EXIT_OK

    zones = f" --zones {args.zones}" if args.zones else ""
    return base._with_store(args, f"scans list{zones}", listing)


def _row(record: ScanRecord) -> dict[str, Any]:
    from collector import cli as base

    scan = record.scan
    return {
        "id": scan.id,
        "zones": scan.zones,
        "state": scan.state.value,
        "requested_by": scan.requested_by,
        "started_at": base._iso(scan.started_at),
        "finished_at": base._iso(scan.finished_at),
        "report_id": scan.report_id,
        "counts": record.counts,
        "schedule_id": scan.schedule_id,
        "message": scan.message,
    }


def _diff(args: argparse.Namespace) -> int:
    from collector import cli as base
    from collector.scan_diff import NotComparable, diff, render_table, to_json
    from collector.scan_view import view_of
    from collector.store.scan_history import resolve_scan_ids

    def compare(store: Store, _: CollectorSettings) -> int:
        now = base._now()
        first, second = resolve_scan_ids(store, [args.a, args.b], args.zones, now)
        a = view_of(*store.scan_with_report(first, now))
        b = view_of(*store.scan_with_report(second, now))
        try:
            found = diff(a, b)
        except NotComparable as exc:
            raise base.UsageError(str(exc), "not_comparable") from None
        if args.format == "json":
            print(json.dumps(to_json(found), ensure_ascii=False, indent=2))
        else:
            sys.stdout.write(render_table(found))
        return base.EXIT_OK

    zones = f" --zones {args.zones}" if args.zones else ""
    action = f"scans diff {args.a[:64]} {args.b[:64]}{zones}"
    return base._with_store(args, action, compare)
