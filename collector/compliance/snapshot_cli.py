"""What `medsec snapshot create|verify` and the snapshot routes call: make a snapshot and keep
it (zip in the snapshot folder, record in the store), read a kept one back, verify a file."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from collector.compliance.model import Scope
from collector.compliance.service import ComplianceError, write_atomically
from collector.compliance.snapshot import (
    SnapshotKey,
    SnapshotUnavailable,
    create_snapshot,
    read_snapshot,
    ready_folder,
    save_snapshot,
)
from collector.models import SnapshotRecord
from collector.settings import CollectorSettings
from collector.store import Store

__all__ = ["create_command", "read_snapshot", "store_snapshot", "verify_command"]


def store_snapshot(
    store: Store, settings: CollectorSettings, scope: Scope, created_by: str, now: datetime
) -> SnapshotRecord:
    """Make a snapshot of `scope` and keep it; its record. `SnapshotUnavailable` before any
    work when the snapshot folder or key cannot be used."""
    ready_folder(settings)
    try:
        key = SnapshotKey.load_or_create(settings.snapshots.key_file, settings.snapshots.crypto)
    except ComplianceError as exc:
        raise SnapshotUnavailable(str(exc)) from None
    data, record = create_snapshot(
        store, settings, scope=scope, now=now, created_by=created_by, key=key
    )
    save_snapshot(store, settings, data, record)
    return record


def create_command(
    store: Store,
    settings: CollectorSettings,
    *,
    scope: Scope,
    out: Path,
    created_by: str,
    now: datetime,
) -> int:
    """`medsec snapshot create`: keep the snapshot and write a copy to `out`. The last line
    printed names the signing key's fingerprint (what an auditor passes to `--expect-key`)."""
    record = store_snapshot(store, settings, scope, created_by, now)
    write_atomically(out, read_snapshot(settings, record), mode=0o640)
    print(
        f"snapshot {record.id}: {record.hosts} hosts, {record.size / 1e6:.1f} MB, "
        f"sha256 {record.sha256}"
    )
    print(f"written to {out} (kept by the collector too: GET /api/v1/snapshots/{record.id})")
    print(f"signed with key {record.key_fingerprint}")
    return 0


def verify_command(path: Path, expect_key: str | None) -> int:
    """`medsec snapshot verify`: 0 intact, 1 altered, 2 unreadable."""
    from collector.compliance.snapshot_verify import format_verdict, verify_snapshot

    verdict = verify_snapshot(path, expect_key)
    print(format_verdict(verdict))
    if verdict.exit_code == 2:
        print(f"medsec: {path}: the snapshot is unreadable", file=sys.stderr)
    return int(verdict.exit_code)
