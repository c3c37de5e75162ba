"""Compliance from what the collector stores: read the evidence once, aggregate it against one
catalog or both, compare with an earlier report, write a file without leaving half of it.

Shared by the CLI (`medsec report`, `medsec snapshot`) and the API (`/api/v1/compliance`,
`/api/v1/snapshots`), so both answer alike.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from checks.catalog import Catalog, Catalogs, builtin_catalogs
from collector.compliance.aggregate import (
    Evidence,
    Rules,
    ScopeError,
    aggregate_many,
    catalog_key,
    check_kinds,
)
from collector.compliance.model import Change, Compliance, Scope
from collector.compliance.zones import ZoneMap
from collector.models import EvidenceHost
from collector.settings import CollectorSettings
from collector.store import Store

STANDARDS = ("gbt22239-2019-l3", "mnds")


class ComplianceError(ValueError):
    """A report cannot be made as asked (unknown standard, unreadable earlier report, a path
    that cannot be written). The message is the one line the user sees."""


def catalog_for(standard: str, catalogs: Catalogs | None = None) -> Catalog:
    """The catalog a standard is asked for by (`gbt22239-2019-l3` or `mnds`)."""
    for catalog in catalogs or builtin_catalogs():
        if catalog_key(catalog) == standard:
            return catalog
    raise ComplianceError(f"unknown standard {standard!r}: use one of {', '.join(STANDARDS)}")


def zone_map(settings: CollectorSettings) -> ZoneMap:
    """The zones of every zones file the settings list (`scans.zones`)."""
    from collector.scan.zones import ZonesError, load_zones

    files = []
    for name, path in sorted(settings.scans.zones.items()):
        try:
            files.append(load_zones(path))
        except ZonesError as exc:
            raise ComplianceError(f"scans.zones.{name}: {exc}") from None
    return ZoneMap(files)


@dataclass(frozen=True)
class Gathered:
    """Everything one instant's compliance reads from the store, read once."""

    hosts: list[EvidenceHost]
    evidence: Evidence
    rules: Rules
    zones: ZoneMap


def gather(
    store: Store,
    settings: CollectorSettings,
    now: datetime,
    *,
    as_of: datetime | None = None,
    hosts: Iterable[EvidenceHost] | None = None,
) -> Gathered:
    """Read the hosts' newest reports (as of `as_of`), missing agents and attestations; the
    results are streamed from the database as the aggregation (`aggregate_all`, one join for
    every standard) reads them, once. `hosts` narrows the results read to those hosts."""
    found = store.evidence_hosts(as_of) if hosts is None else list(hosts)
    results = store.evidence_results([h.report_pk for h in found])
    evidence = Evidence(
        hosts=found,
        results=results,
        missing=store.missing_agents(as_of),
        attestations=store.list_attestations(),
    )
    rules = Rules(
        evaluated_at=as_of or now,
        stale_after=timedelta(minutes=settings.reports.stale_after_minutes),
        scan_stale_after=timedelta(minutes=settings.reports.scan_stale_after_minutes),
    )
    return Gathered(found, evidence, rules, zone_map(settings))


def build(
    store: Store,
    settings: CollectorSettings,
    standards: Iterable[str],
    scope: Scope,
    now: datetime,
    *,
    catalogs: Catalogs | None = None,
) -> dict[str, Compliance]:
    """The compliance document of each standard, over one read of the store."""
    chosen = [catalog_for(s, catalogs) for s in standards]
    as_of = as_of_instant(scope.as_of, now)
    with collector_paused():
        gathered = gather(store, settings, now, as_of=as_of)
        return aggregate_all(gathered, chosen, scope, now)


def aggregate_all(
    gathered: Gathered, chosen: Iterable[Catalog], scope: Scope, now: datetime
) -> dict[str, Compliance]:
    """Each catalog's document over one gathering (and one join of its results)."""
    chosen = list(chosen)
    documents = aggregate_many(
        chosen,
        gathered.evidence,
        gathered.rules,
        check_kinds(),
        scope=scope,
        zones=gathered.zones,
        generated_at=now,
    )
    return {catalog_key(c): d for c, d in zip(chosen, documents, strict=True)}


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while hundreds of thousands of acyclic records
    are made (it would scan them again and again, for nothing); on again after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def as_of_instant(text: str | None, now: datetime) -> datetime | None:
    """A scope's `as_of` as a time, never in the future; `ComplianceError` naming the problem."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ComplianceError(
            f"--as-of: {text!r} is not a time (use RFC 3339, e.g. 2026-12-01T08:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise ComplianceError(f"--as-of: {text!r} has no time zone (add Z or +08:00)")
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > timedelta(hours=14):
        raise ComplianceError(f"--as-of: {text!r} has a UTC offset beyond ±14:00")
    try:
        moment.astimezone(UTC)
    except OverflowError:  # year 1 at +01:00 has no UTC instant
        raise ComplianceError(f"--as-of: {text!r} has no instant in UTC") from None
    if moment > now:
        raise ComplianceError(f"--as-of {text} is in the future")
    return moment


# --------------------------------------------------------------------------- changes


def previous_statuses(path: Path, standard: str) -> tuple[str, dict[str, Any]]:
    """(generated_at, {clause: (status, {object id: status})}) of an earlier JSON report of
    `standard`, or of the report of that standard inside a snapshot zip."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(f"reports/{standard}.json")
        else:
            data = path.read_bytes()
        document = msgspec.json.decode(data)
    except KeyError:
        raise ComplianceError(f"--since: {path} holds no {standard} report") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ComplianceError(f"--since: cannot read {path}: {exc}") from None
    except msgspec.DecodeError:
        raise ComplianceError(f"--since: {path} is not a JSON report or a snapshot") from None
    if not isinstance(document, dict) or document.get("schema") != "medsec.compliance/v1":
        raise ComplianceError(f"--since: {path} is not a medsec.compliance/v1 report")
    if document.get("standard") != standard:
        raise ComplianceError(
            f"--since: {path} is a {document.get('standard')} report, not {standard}"
        )
    statuses: dict[str, Any] = {}
    for clause in document.get("clauses", []):
        objects = {o.get("id"): o.get("status") for o in clause.get("objects", [])}
        statuses[clause.get("id")] = (clause.get("status"), objects)
    return str(document.get("generated_at")), statuses


def with_changes(compliance: Compliance, since: str, before: Mapping[str, Any]) -> Compliance:
    """`compliance` with the clauses and objects whose status differs from `before`'s."""
    changes: list[Change] = []
    for clause in compliance.clauses:
        old_status, old_objects = before.get(clause.id, (None, {}))
        if old_status != clause.status:
            changes.append(Change(clause.id, None, old_status, clause.status))
        now_objects = {o.id: o.status for o in clause.objects}
        for object_id in sorted(set(old_objects) | set(now_objects)):
            was, is_ = old_objects.get(object_id), now_objects.get(object_id)
            if was != is_:
                changes.append(Change(clause.id, object_id, was, is_))
    return msgspec.structs.replace(compliance, changes=changes, since=since)


# --------------------------------------------------------------------------- files


def write_atomically(
    path: Path, data: bytes | Callable[[BinaryIO], None], mode: int = 0o640
) -> None:
    """`data` (or what the function writes) at `path`, or nothing there at all: a temporary
    file in the same folder, renamed."""
    folder = path.parent if str(path.parent) else Path()
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise ComplianceError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            if callable(data):
                data(out)
            else:
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ComplianceError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


__all__ = [
    "STANDARDS",
    "ComplianceError",
    "Gathered",
    "ScopeError",
    "aggregate_all",
    "as_of_instant",
    "build",
    "catalog_for",
    "collector_paused",
    "gather",
    "previous_statuses",
    "with_changes",
    "write_atomically",
    "zone_map",
]
