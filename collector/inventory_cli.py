"""`medsec inventory snmp --targets FILE [--zones FILE] [--format table|json|csv] [--store
--config F]`: ask every device of a targets file (and every device a sweep finds) over SNMP what
it is, classify its role, judge its SNMP management (`net.snmp_secure`) and which security
devices sit on each border of the zones file (`net.security_devices`); print the devices and
the results, and with `--store` keep them in the collector as a report of its own.

The zones file is `--zones`, else the targets file's `zones:`; without either, no border is
judged (`net.security_devices` is not applicable). A stored inventory is one `medsec.report/v1`
per targets file and collector: host id `scan:` + sha256("snmp\\0" + collector hostname + "\\0" +
absolute targets path)[:32], stored under the service agent `medsec-snmp`, so the compliance
reports count it as network evidence beside the zones scans. No secret (community, v3 keys) is
ever printed or stored: the facts hold none.

Exit codes: 0 no `fail`/`error`; 1 at least one; 2 a bad targets file, zones file or settings,
one line on stderr naming the problem (3 is `medsec`'s internal error).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from checks import report as contract
from checks.catalog import Catalogs, builtin_catalogs
from checks.facts.devices import BorderFacts, DeviceFacts, NetworkDevice
from checks.model import Result, jsonable
from collector.scan import SCAN_HOST_PREFIX

if TYPE_CHECKING:
    from collector.models import IngestOutcome
    from collector.scan.zones import Zones
    from collector.settings import CollectorSettings
    from collector.store import Store

PROG = "medsec inventory snmp"
VERSION = "0.1.0"
INVENTORY_SCHEMA = "medsec.snmp-inventory/v1"
SNMP_AGENT = "medsec-snmp"
"""The service agent stored inventories are recorded under (the store records who sent each
report; an inventory has no agent of its own)."""
EXIT_OK, EXIT_FINDING, EXIT_USAGE = 0, 1, 2
EXIT_CODES = (
    "exit codes: 0 no fail or error; 1 at least one; 2 a bad targets file, zones file or "
    "settings (one line on stderr)"
)
CSV_COLUMNS = (
    "address",
    "port",
    "vendor",
    "role",
    "confidence",
    "model",
    "serial",
    "software",
    "sys_name",
    "error",
)


class InventoryUsageError(ValueError):
    """The command cannot run as asked; the message is the one line the user sees."""


@dataclass(frozen=True)
class _Prepared:
    """What the command runs on, validated before any device is asked."""

    targets: Any
    """`inventory.network.targets.Targets`."""
    borders: tuple[BorderFacts, ...]
    zones_file: str | None


# --- the parser -------------------------------------------------------------------------------


def add_inventory_parser(
    sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """`inventory snmp` on `medsec`'s command line; dispatch with `run(args)`."""
    inventory = sub.add_parser(
        "inventory", help="inventory devices that run no agent (network and security devices)"
    )
    kinds = inventory.add_subparsers(
        dest="inventory_kind", required=True, parser_class=parser_class
    )
    snmp = kinds.add_parser(
        "snmp",
        help="ask network and security devices over SNMP, classify them, judge their "
        "management and the borders they guard",
        description="Ask every device of a targets file (and every device a sweep finds) over "
        "SNMP what it is, classify its role, judge how its SNMP management is secured "
        "(net.snmp_secure) and which security devices sit on each border of the zones file "
        "(net.security_devices). Secrets are read from the targets file, never printed.",
        epilog=EXIT_CODES,
    )
    snmp.add_argument(
        "--targets", required=True, type=Path, metavar="FILE", help="the targets file (mode 0600)"
    )
    snmp.add_argument(
        "--zones",
        type=Path,
        metavar="FILE",
        help="the zones file whose borders are judged (default: the targets file's zones:)",
    )
    snmp.add_argument("--format", choices=("table", "json", "csv"), default="table")
    snmp.add_argument(
        "--store", action="store_true", help="also store the results in the collector's database"
    )
    snmp.add_argument("--config", type=Path, help="collector settings (YAML); needed with --store")


def run(args: argparse.Namespace) -> int:
    """Run `medsec inventory <kind>` (only `snmp` exists)."""
    return run_snmp(args)


# --- the command ------------------------------------------------------------------------------


def run_snmp(
    args: argparse.Namespace, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if args.store and args.config is None:
        err.write(f"{PROG}: --store needs --config (the collector settings)\n")
        return EXIT_USAGE
    try:
        prepared = _prepare(args)
    except InventoryUsageError as exc:
        err.write(f"{PROG}: {exc}\n")
        return EXIT_USAGE
    if not args.store:
        return _inventory(args, prepared, None, out, err)

    from collector import cli as base

    def inventory_and_store(store: Store, _: CollectorSettings) -> int:
        return _inventory(args, prepared, store, out, err)

    return base._with_store(
        args, f"inventory snmp --targets {args.targets} --store", inventory_and_store
    )


def _prepare(args: argparse.Namespace) -> _Prepared:
    """The targets, the borders to judge and the zones file they come from; every problem an
    `InventoryUsageError` of one line."""
    from collector.scan.zones import ZonesError, load_zones
    from inventory.network.targets import TargetsError, load_targets

    try:
        targets = load_targets(args.targets)
    except TargetsError as exc:
        raise InventoryUsageError(_one_line(exc)) from None
    zones_path = _zones_path(args.zones, targets.zones, Path(args.targets))
    if zones_path is None:
        return _Prepared(targets, (), None)
    try:
        zones = load_zones(zones_path)
    except ZonesError as exc:
        raise InventoryUsageError(_one_line(exc)) from None
    return _Prepared(targets, border_facts(zones), str(zones_path))


def _zones_path(given: Path | None, declared: str | None, targets: Path) -> Path | None:
    """`--zones`, else the targets file's `zones:` (relative to the targets file's folder)."""
    if given is not None:
        return given
    if not declared:
        return None
    path = Path(declared)
    return path if path.is_absolute() else targets.resolve().parent / path


def border_facts(zones: Zones) -> tuple[BorderFacts, ...]:
    """The zones file's borders as the device checks read them."""
    found = []
    for border in zones.border_list():
        a, b = (zones.zone(name) for name in border.zones)
        found.append(
            BorderFacts(
                name=border.name,
                zones=border.zones,
                cidrs=(tuple(a.cidrs), tuple(b.cidrs)),
                require=border.require,
            )
        )
    return tuple(found)


def _inventory(
    args: argparse.Namespace,
    prepared: _Prepared,
    store: Store | None,
    out: IO[str],
    err: IO[str],
) -> int:
    """Ask the devices, evaluate, print, store if asked; the exit code."""
    from checks.device import device_registry
    from checks.runner import evaluate
    from inventory.network.snmp import collect_devices

    zones_file = prepared.zones_file
    swept = collect_devices(prepared.targets)
    facts = DeviceFacts(
        devices=tuple(swept.devices),
        borders=prepared.borders,
        targets_file=os.path.abspath(args.targets),
        swept=tuple(swept.swept),
        addresses_swept=swept.addresses_swept,
        seconds=swept.seconds,
    )
    results = evaluate(device_registry(), facts)
    catalogs = builtin_catalogs()
    if args.format == "json":
        document = inventory_document(facts, results, catalogs, zones_file=zones_file)
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        out.write(render_csv(facts))
    else:
        out.write(render_table(facts, results, shutil.get_terminal_size((120, 20)).columns))
    out.flush()
    if store is not None:
        report = inventory_report(facts, results, catalogs, zones_file=zones_file)
        stored = store_inventory(store, report, datetime.now(UTC))
        err.write(f"stored as report {stored.report_id} (host {stored.host_id})\n")
    return EXIT_FINDING if contract.exit_code(r.status for r in results) else EXIT_OK


# --- outputs ----------------------------------------------------------------------------------


def device_item(device: NetworkDevice) -> dict[str, Any]:
    """One device as the JSON output and the stored inventory carry it (no secret: `access`
    says how management is secured, never with what)."""
    c = device.classification
    return {
        "address": device.address,
        "port": device.port,
        "source": device.source,
        "vendor": c.vendor,
        "role": c.role,
        "confidence": c.confidence,
        "signals": list(c.signals),
        "rule": c.rule,
        "sys_object_id": device.sys_object_id,
        "sys_descr": device.sys_descr,
        "sys_name": device.sys_name,
        "sys_location": device.sys_location,
        "sys_contact": device.sys_contact,
        "sys_uptime_seconds": device.sys_uptime_seconds,
        "sys_services": device.sys_services,
        "model": device.model,
        "serial": device.serial,
        "software": device.software,
        "entities": jsonable(device.entities),
        "interfaces": jsonable(device.interfaces),
        "declared_borders": list(device.declared_borders),
        "access": jsonable(device.access),
        "error": device.error,
        "seconds": device.seconds,
    }


def border_item(border: BorderFacts) -> dict[str, Any]:
    return {
        "name": border.name,
        "zones": list(border.zones),
        "cidrs": [list(c) for c in border.cidrs],
        "require": list(border.require),
    }


def inventory_document(
    facts: DeviceFacts,
    results: Sequence[Result],
    catalogs: Catalogs,
    *,
    zones_file: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What `--format json` prints: the devices, the borders and the results."""
    return {
        "schema": INVENTORY_SCHEMA,
        "generated_at": contract.rfc3339(now or datetime.now(UTC)),
        "targets_file": facts.targets_file,
        "zones_file": zones_file,
        "swept": list(facts.swept),
        "addresses_swept": facts.addresses_swept,
        "seconds": facts.seconds,
        "devices": [device_item(d) for d in facts.devices],
        "borders": [border_item(b) for b in facts.borders],
        "summary": contract.counts(r.status for r in results),
        "results": [contract.result_item(r, catalogs) for r in results],
    }


def render_csv(facts: DeviceFacts) -> str:
    """One row per device."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for device in facts.devices:
        item = device_item(device)
        writer.writerow(["" if item[k] is None else item[k] for k in CSV_COLUMNS])
    return buffer.getvalue()


def _clip(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(room - 1, 0)] + "…"


def render_table(facts: DeviceFacts, results: Sequence[Result], width: int = 120) -> str:
    """A terminal view: one line per device, then one line per result."""
    swept = (
        f"; swept {', '.join(facts.swept)}: {facts.addresses_swept} addresses"
        if facts.swept
        else ""
    )
    lines = [f"devices ({len(facts.devices)}, {facts.seconds:.1f} s{swept}):"]
    for device in facts.devices:
        c = device.classification
        head = (
            f"  {device.address + ':' + str(device.port):<21} {c.role:<9} {c.confidence:4.2f} "
            f"{(c.vendor or '-')[:24]:<24}"
        )
        what = (
            f"ERROR {device.error}"
            if device.error
            else " ".join(p for p in (device.model, device.software, device.sys_name) if p)
        )
        lines.append(f"{head} {_clip(what or '-', max(20, width - len(head) - 1))}")
    if not facts.devices:
        lines.append("  (none)")
    lines.append("")
    lines.append("results:")
    for result in results:
        head = (
            f"  {result.status.value.upper():<14} {result.check_id:<20} {result.target or '-':<21}"
        )
        lines.append(f"{head} {_clip(result.message, max(20, width - len(head) - 1))}")
    summary = contract.counts(r.status for r in results)
    lines.append("")
    lines.append("  ".join(f"{k}: {v}" for k, v in summary.items() if v))
    return "\n".join(lines) + "\n"


# --- storing ----------------------------------------------------------------------------------


def inventory_host_id(targets_file: str, collector: str) -> str:
    """One history per targets file and collector."""
    digest = hashlib.sha256(
        f"snmp\0{collector}\0{os.path.abspath(targets_file)}".encode()
    ).hexdigest()
    return f"{SCAN_HOST_PREFIX}{digest[:32]}"


def inventory_report(
    facts: DeviceFacts,
    results: Sequence[Result],
    catalogs: Catalogs,
    *,
    zones_file: str | None,
    collector: str | None = None,
    now: datetime | None = None,
    report_id: str | None = None,
) -> dict[str, Any]:
    """The inventory as a `medsec.report/v1` document, for the collector's store."""
    collector = collector or socket.gethostname()
    return contract.build_report(
        host_id=inventory_host_id(facts.targets_file, collector),
        hostname=collector[:253] or "collector",
        producer=f"medsec-inventory-snmp {VERSION}",
        inventory={
            "network_devices": [device_item(d) for d in facts.devices],
            "borders": [border_item(b) for b in facts.borders],
            "snmp": {
                "targets_file": facts.targets_file,
                "zones_file": zones_file,
                "swept": list(facts.swept),
                "addresses_swept": facts.addresses_swept,
                "seconds": facts.seconds,
            },
        },
        results=results,
        catalogs=catalogs,
        generated_at=now,
        report_id=report_id,
    )


def store_inventory(store: Store, report: dict[str, Any], now: datetime) -> IngestOutcome:
    """Validate an inventory report and store it under the `medsec-snmp` service agent."""
    from checks.envelope import generate_private_key, parse_report, public_key_pem

    body = json.dumps(report, ensure_ascii=False).encode("utf-8")
    parsed = parse_report(body)
    # The key is never used to sign: the collector stores its own inventories directly.
    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    agent = store.service_agent(SNMP_AGENT, key, now)
    return store.ingest(agent, parsed, body, now)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = [
    "EXIT_FINDING",
    "EXIT_OK",
    "EXIT_USAGE",
    "SNMP_AGENT",
    "add_inventory_parser",
    "border_facts",
    "device_item",
    "inventory_document",
    "inventory_host_id",
    "inventory_report",
    "render_csv",
    "render_table",
    "run",
    "run_snmp",
    "store_inventory",
]
