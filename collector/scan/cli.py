"""`medsec scan --zones FILE [--format json|table|report] [--store]`: scan every zone from its
vantage, evaluate the network checks, print the reachability matrix and the results (or, with
`report`, the results as the `medsec.report/v1` document the collector stores).

`add_scan_parser(subparsers)` hangs the command under `medsec`; `run_scan(args)` runs it;
`main()` serves `python -m collector.scan.cli` alone. `results_to_report()` shapes the results as
a `medsec.report/v1` document (the collector stores those).

Exit codes: 0 no `fail`/`error`; 1 at least one; 2 usage or zones-file error (one line on stderr
naming file, key and value); 4 a vantage failed (unreachable, connection lost, timed out): the
results are printed but are incomplete, so they are not stored, and the last line on stderr names
each vantage and why; 130 cancelled (Ctrl-C: every nmap and probe is stopped first).

Zones whose vantage is a probe (`kind: probe`, a `medsec-agent probe` dialling out from inside
the zone) are reached through the collector's job queue (collector/scan/probe_vantage.py): the
collector's launcher names it in the environment; run by hand, `--config` names the collector
settings. Without either such a scan exits 2 naming the zone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar

from checks import report as contract
from checks.catalog import Catalogs, builtin_catalogs
from checks.facts.network import MatrixCell, NetFacts, VantageRun
from checks.model import Result, Unavailable, jsonable
from checks.net import network_registry
from checks.runner import evaluate
from collector.scan import SCAN_HOST_PREFIX
from collector.scan.nmap import NmapError
from collector.scan.runner import ProgressEvent, scan
from collector.scan.vantage import VantageError
from collector.scan.zones import (
    ProbeVantageConfig,
    Zones,
    ZonesError,
    confinement_from_env,
    load_zones,
)

if TYPE_CHECKING:
    from collector.scan.probe_vantage import ScanJobQueue

SCAN_SCHEMA = "medsec.scan/v1"
VERSION = "0.1.0"
EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_VANTAGE, EXIT_CANCELLED = 0, 1, 2, 4, 130
"""3 is `medsec`'s internal error (collector/cli.py), which `medsec scan` may also exit with."""
EXIT_CODES = (
    "exit codes: 0 no fail or error; 1 at least one; 2 usage or zones-file error; 4 a vantage "
    "failed (unreachable, connection lost, timed out): the results are incomplete and not "
    "stored, the last line on stderr names the vantage and why; 130 cancelled"
)
_FAILED_RUN = frozenset({"error", "timeout", "cancelled"})

StoreReport = Callable[[dict[str, Any]], None]
T = TypeVar("T")


# --- progress ---------------------------------------------------------------------------------


class ProgressBar:
    """One line on a terminal, redrawn in place: the mean of the vantages' progress."""

    def __init__(self, stream: IO[str], zones: Sequence[str], width: int = 28) -> None:
        self.stream = stream
        self.fractions = dict.fromkeys(zones, 0.0)
        self.width = width
        self.started = time.monotonic()
        self.note = ""
        self._last = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.zone in self.fractions:
            self.fractions[event.zone] = max(self.fractions[event.zone], event.fraction)
            self.note = f"{event.zone}: {event.note}"
        elif event.phase in {"probes", "done"}:
            self.note = "HTTP, TLS and SNMP probes" if event.phase == "probes" else "done"
        now = time.monotonic()
        if now - self._last < 0.1 and event.phase not in {"done", "failed"}:
            return
        self._last = now
        done = sum(self.fractions.values()) / max(len(self.fractions), 1)
        filled = int(done * self.width)
        columns = shutil.get_terminal_size((100, 20)).columns
        line = (
            f"scan [{'#' * filled}{'.' * (self.width - filled)}] {done * 100:3.0f}% "
            f"{now - self.started:5.1f}s {self.note}"
        )
        self.stream.write("\r" + line[: columns - 1].ljust(columns - 1))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self.stream.flush()


# --- outputs ----------------------------------------------------------------------------------


def matrix_rows(facts: NetFacts) -> list[dict[str, Any]]:
    """The reachability matrix: one row per (from zone, to zone, port)."""
    cells = facts.matrix
    if isinstance(cells, Unavailable):
        return []
    return [_row(cell) for cell in cells]


def _row(cell: MatrixCell) -> dict[str, Any]:
    return {
        "from": cell.source,
        "to": cell.target,
        "port": cell.spec,
        "state": cell.state,
        "reason": cell.reason,
        "vantage": cell.vantage,
        "scan": cell.scan,
        "probed": cell.probed,
        "no_answer": cell.silent,
        "answers": [
            {
                "address": o.address,
                "state": o.state,
                "reason": o.reason,
                "reason_ttl": o.reason_ttl,
            }
            for o in cell.observations
        ],
    }


def _run_row(run: VantageRun) -> dict[str, Any]:
    return jsonable(run)  # type: ignore[no-any-return]


def scan_document(
    facts: NetFacts, results: Sequence[Result], catalogs: Catalogs, zones_file: str
) -> dict[str, Any]:
    """What `--format json` prints: the matrix, the results and how each vantage did."""
    return {
        "schema": SCAN_SCHEMA,
        "generated_at": facts.started_at,
        "zones_file": zones_file,
        "seconds": facts.seconds,
        "ports": list(facts.ports),
        "runs": [_run_row(r) for r in facts.runs],
        "matrix": matrix_rows(facts),
        "summary": contract.counts(r.status for r in results),
        "results": [contract.result_item(r, catalogs) for r in results],
    }


def results_to_report(
    facts: NetFacts,
    results: Sequence[Result],
    catalogs: Catalogs,
    *,
    zones_file: str,
    scanner: str | None = None,
    now: datetime | None = None,
    report_id: str | None = None,
) -> dict[str, Any]:
    """The scan as a `medsec.report/v1` document, for the collector's store.

    The "host" is the scan itself: `scan:<sha256 of the zones file path and scanner>` — one
    history per zones file and collector — named after the collector that ran it. Inventory
    carries the zones, the vantages' runs and the matrix; results carry their clause ids.
    """
    scanner = scanner or socket.gethostname()
    digest = hashlib.sha256(f"{scanner}\0{os.path.abspath(zones_file)}".encode()).hexdigest()
    return contract.build_report(
        host_id=f"{SCAN_HOST_PREFIX}{digest[:32]}",
        hostname=scanner[:253] or "collector",
        producer=f"medsec-scan {VERSION}",
        inventory={
            "network": {
                "zones_file": zones_file,
                "zones": jsonable(facts.zones),
                "ports": list(facts.ports),
                "runs": [_run_row(r) for r in facts.runs],
                "matrix": matrix_rows(facts),
                "snmp": jsonable(facts.snmp),
                "seconds": facts.seconds,
            }
        },
        results=results,
        catalogs=catalogs,
        generated_at=now,
        report_id=report_id,
    )


def render_table(facts: NetFacts, results: Sequence[Result], width: int = 120) -> str:
    """A terminal view: what answered between zones, then one line per result."""
    lines = [f"vantages ({facts.seconds:.1f} s):"]
    for run in facts.runs:
        how = (
            "raw sockets" if run.privileged else "connect scan" if run.privileged is False else "-"
        )
        lines.append(f"  {run.zone:<12} {run.vantage:<28} {run.status:<8} {how:<12} {run.message}")
    lines.append("")
    lines.append("reachability (answers only; every other probe got no answer):")
    shown = False
    for row in matrix_rows(facts):
        if not row["answers"]:
            continue
        shown = True
        addresses = ", ".join(f"{a['address']} {a['state']}" for a in row["answers"][:4]) + (
            f" (+{len(row['answers']) - 4})" if len(row["answers"]) > 4 else ""
        )
        lines.append(f"  {row['from']:>10} -> {row['to']:<10} {row['port']:<10} {addresses}")
    if not shown:
        lines.append("  (nothing answered)")
    lines.append("")
    lines.append("results:")
    for result in results:
        head = (
            f"  {result.status.value.upper():<14} {result.check_id:<22} {result.target or '-':<18}"
        )
        room = max(20, width - len(head) - 1)
        message = (
            result.message if len(result.message) <= room else result.message[: room - 1] + "…"
        )
        lines.append(f"{head} {message}")
    summary = contract.counts(r.status for r in results)
    lines.append("")
    lines.append("  ".join(f"{k}: {v}" for k, v in summary.items() if v))
    return "\n".join(lines) + "\n"


# --- the command ------------------------------------------------------------------------------


def failed_vantages(facts: NetFacts) -> list[VantageRun]:
    """The vantages that produced no usable results: the scan is incomplete without them."""
    return [run for run in facts.runs if run.status in _FAILED_RUN]


def vantage_failure(runs: Sequence[VantageRun]) -> str:
    """One line naming each failed vantage, its zone and why."""
    parts = []
    for run in runs:
        why = run.message.removeprefix(f"{run.vantage}: ")
        if run.vantage == "unavailable":  # the vantage could not even be made
            parts.append(f"zone {run.zone}: no usable vantage: {why}")
        elif run.status == "timeout":
            parts.append(f"zone {run.zone}, vantage {run.vantage} ran out of time: {why}")
        else:
            parts.append(f"zone {run.zone}, vantage {run.vantage}: {why}")
    what = "a vantage failed" if len(runs) == 1 else f"{len(runs)} vantages failed"
    return " ".join(f"{what}, the scan is incomplete: {'; '.join(parts)}".split())


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zones", required=True, metavar="FILE", help="the zones file")
    parser.add_argument(
        "--format",
        choices=("json", "table", "report"),
        default="table",
        help="output (default: table); report: the results as a medsec.report/v1 document",
    )
    parser.add_argument(
        "--store", action="store_true", help="also store the results in the collector's database"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    parser.add_argument(
        "--confine",
        metavar="CIDR[,CIDR]",
        help="refuse any zone CIDR outside these (default: $MEDSEC_SCAN_CONFINE, else none)",
    )


def add_scan_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `scan`; dispatch with `run_scan(args)`."""
    parser = subparsers.add_parser(
        "scan",
        help="scan the zones from their vantages and evaluate the network checks",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EXIT_CODES,
    )
    _add_arguments(parser)
    return parser


def run_scan(
    args: argparse.Namespace,
    *,
    store: StoreReport | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run `medsec scan`; `store` receives the report when `--store` is given."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if args.store and store is None:
        err.write("medsec scan: --store: no collector store is configured here\n")
        return EXIT_USAGE
    confine = (
        tuple(c for c in args.confine.split(",") if c.strip())
        if args.confine
        else confinement_from_env()
    )
    try:
        zones = load_zones(args.zones, confine=confine)
        queue = _job_queue(args, zones)
    except ZonesError as exc:
        err.write(f"medsec scan: {exc}\n")
        return EXIT_USAGE
    except ValueError as exc:  # a malformed --confine
        err.write(f"medsec scan: --confine: {exc}\n")
        return EXIT_USAGE
    show = args.progress if args.progress is not None else err.isatty()
    bar = ProgressBar(err, [z.name for z in zones.zones if z.vantage is not None]) if show else None
    try:
        vantages = queue.vantages(zones) if queue is not None else None
        facts = asyncio.run(
            _sigterm_cancels(scan(zones, progress=bar, confine=confine, vantages=vantages))
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        if bar is not None:
            bar.close()
        err.write("medsec scan: cancelled; every nmap and probe was stopped\n")
        return EXIT_CANCELLED
    except (ZonesError, NmapError, VantageError) as exc:
        if bar is not None:
            bar.close()
        err.write(f"medsec scan: {exc}\n")
        return EXIT_USAGE
    finally:
        if queue is not None:
            queue.close()
    if bar is not None:
        bar.close()
    return _conclude(args, facts, store, out, err)


def _job_queue(args: argparse.Namespace, zones: Zones) -> ScanJobQueue | None:
    """The collector's job queue when a zone's vantage is a probe (None: no zone's is);
    ZonesError naming the zone that needs one when there is none to open."""
    if not any(isinstance(zone.vantage, ProbeVantageConfig) for zone in zones.zones):
        return None
    from collector.scan.probe_vantage import QueueUnavailable, ScanJobQueue, probe_zones

    config = getattr(args, "config", None)
    try:
        return ScanJobQueue.open(None if config is None else str(config), os.environ)
    except QueueUnavailable as exc:
        zone = next(iter(probe_zones(zones)))
        raise ZonesError(
            f"zone {zone} has a probe vantage, which needs the collector's job queue: "
            f"{exc} (give --config with the collector settings, or run the scan from the "
            "collector)"
        ) from None


def _conclude(
    args: argparse.Namespace,
    facts: NetFacts,
    store: StoreReport | None,
    out: IO[str],
    err: IO[str],
) -> int:
    """Evaluate, print, store what may be stored; the exit code."""
    results = evaluate(network_registry(), facts)
    catalogs = builtin_catalogs()
    report = results_to_report(facts, results, catalogs, zones_file=str(args.zones))
    if args.format == "json":
        document = scan_document(facts, results, catalogs, str(args.zones))
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "report":
        out.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        out.write(render_table(facts, results, shutil.get_terminal_size((120, 20)).columns))
    failed = failed_vantages(facts)
    if failed:
        # Stored, an incomplete scan would stand as the network's state: what the failed
        # vantage could not see reads as `error`, and the reason sits deep in the report.
        kept = " (not stored)" if args.store else ""
        err.write(f"medsec scan: {vantage_failure(failed)}{kept}\n")
        return EXIT_VANTAGE
    if args.store and store is not None:
        store(report)
    return EXIT_FINDING if contract.exit_code(r.status for r in results) else EXIT_OK


async def _sigterm_cancels(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; SIGTERM cancels it as Ctrl-C does, so every nmap (each started with setsid,
    out of reach of the signal) is stopped before the scan exits: a collector or systemd
    stopping a scan must not leave nmap running. (Signal handlers: main thread only.)"""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    handled = task is not None and threading.current_thread() is threading.main_thread()
    if handled and task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.scan.cli",
        description="scan the zones from their vantages and evaluate the network checks",
        epilog=EXIT_CODES,
    )
    _add_arguments(parser)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="collector settings: the job queue of the zones whose vantage is a probe "
        "(default: the collector's launcher gives it in $MEDSEC_JOBS_DATABASE)",
    )
    return run_scan(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FINDING",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VANTAGE",
    "ProgressBar",
    "add_scan_parser",
    "failed_vantages",
    "main",
    "matrix_rows",
    "render_table",
    "results_to_report",
    "run_scan",
    "scan_document",
    "vantage_failure",
]
