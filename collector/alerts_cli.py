"""`medsec alerts list`: the alerts scans raised, newest first, open and cleared, each with where
its events went: per channel and event, sent, pending (with the attempts so far) or failed (with
the last error). A security team reads here what the webhook and syslog were told, and what they
were not told yet. Runs through `collector.cli`'s store handling: audited, one-line errors, exit
codes (0 listed, whatever it shows; 2 refused).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# collector.cli imports this module only from inside its functions, once it is whole.
from collector.cli import EXIT_OK, UsageError, _iso, _stamp, _table, _with_store

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from collector.store import Store
    from collector.store.alerts import Delivery, ListedAlert

_LIST_LIMIT = 1000
_ZONES = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A `scans.zones` name (collector.settings checks the same): alerts are raised per name."""
_ERROR_SHOWN = 80
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def add_alerts_parser(
    sub: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`alerts list` on `medsec`'s command line."""
    alerts = sub.add_parser(
        "alerts", help="alerts raised by scans, and where they were sent"
    ).add_subparsers(dest="action", required=True, parser_class=parser_class)
    listing = alerts.add_parser(
        "list", help="alerts newest first, with each channel's delivery state"
    )
    listing.add_argument("--open", action="store_true", help="only alerts not cleared yet")
    listing.add_argument("--zones", metavar="NAME", help="only alerts of this zones file")
    listing.add_argument(
        "--limit", type=int, default=100, help=f"at most this many (1-{_LIST_LIMIT}, default 100)"
    )
    listing.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: a list of objects, timestamps ISO 8601 UTC or null",
    )
    config_arg(listing)


def run(args: argparse.Namespace) -> int:
    return _list(args)


def _list(args: argparse.Namespace) -> int:
    action = "alerts list" + (" --open" if args.open else "")
    if args.zones is not None:
        action += f" --zones {args.zones[:64]!r}"

    def listing(store: Store, _: CollectorSettings) -> int:
        # Checked here, inside the audited body, so a refused listing is audited too.
        if args.zones is not None and not _ZONES.match(args.zones):
            raise UsageError(
                f"--zones: {args.zones[:64]!r} is not a zones name (lower-case letters, digits,"
                " '_', '-')"
            )
        if not 1 <= args.limit <= _LIST_LIMIT:
            raise UsageError(f"--limit: must be between 1 and {_LIST_LIMIT} (value: {args.limit})")
        page = store.list_alerts(args.limit, 0, zones=args.zones, open_only=args.open)
        if args.format == "json":
            print(json.dumps([_row(a) for a in page.items], ensure_ascii=False, indent=2))
        else:
            _print_table(page.items)
        if page.total > len(page.items):
            print(f"({page.total - len(page.items)} older not shown; --limit)", file=sys.stderr)
        return EXIT_OK

    return _with_store(args, action, listing)


def _print_table(items: tuple[ListedAlert, ...]) -> None:
    header = (
        "ID",
        "KIND",
        "ZONES",
        "KEY",
        "OPENED",
        "OPENED BY SCAN",
        "CLEARED",
        "CLEARED BY SCAN",
        "DELIVERIES",
    )
    rows = [
        (
            str(a.id),
            a.kind,
            _printable(a.zones),
            _printable(a.key),
            _stamp(a.opened_at),
            a.opened_scan_id or "-",
            _stamp(a.cleared_at),
            a.cleared_scan_id or "-",
            "; ".join(_delivery_cell(d) for d in a.deliveries) or "-",
        )
        for a in items
    ]
    _table(header, rows)


def _delivery_cell(delivery: Delivery) -> str:
    """`webhook raised: pending (2 attempts; last: HTTP 503)`."""
    state: str = delivery.state
    if delivery.state == "pending" and delivery.attempts:
        plural = "" if delivery.attempts == 1 else "s"
        state += f" ({delivery.attempts} attempt{plural}"
        if delivery.last_error:
            state += f"; last: {_short(delivery.last_error)}"
        state += ")"
    elif delivery.state == "failed":
        state += f" after {delivery.attempts}: {_short(delivery.last_error or 'no error recorded')}"
    return f"{delivery.channel} {delivery.event}: {state}"


def _short(text: str) -> str:
    shown = _printable(text)
    return shown if len(shown) <= _ERROR_SHOWN else shown[: _ERROR_SHOWN - 1] + "…"


def _printable(text: str) -> str:
    """A receiver's error (or any stored text) cannot move the terminal's cursor or colour it."""
    return _UNPRINTABLE.sub("?", text)


def _row(alert: ListedAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "zones": alert.zones,
        "key": alert.key,
        "detail": alert.detail,
        "opened_at": _iso(alert.opened_at),
        "opened_scan_id": alert.opened_scan_id,
        "cleared_at": _iso(alert.cleared_at),
        "cleared_scan_id": alert.cleared_scan_id,
        "deliveries": [
            {
                "event": d.event,
                "channel": d.channel,
                "state": d.state,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "next_attempt_at": _iso(d.next_attempt_at) if d.state == "pending" else None,
                "sent_at": _iso(d.sent_at),
            }
            for d in alert.deliveries
        ],
    }
