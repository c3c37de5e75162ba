"""What changed since the newest snapshot: each standard's clauses whose status differs from the
report frozen in that snapshot, and how many objects (hosts, network objects) got better or
worse, as `medsec report --since SNAPSHOT` would list them.

A snapshot is immutable, so its statuses are read from its zip once and kept until a newer
snapshot appears; the comparison is made once per aggregation (the cache hands out the same
`Compliance` object until the evidence changes). Only snapshots of everything (no site, zone or
host filter) are compared with: a filtered one would show every host it left out as a change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from collector.compliance.model import Compliance
from collector.compliance.service import ComplianceError, previous_statuses, with_changes
from collector.models import SnapshotRecord
from collector.web.context import WebContext

_RANK = {
    "pass": 0,
    "not_applicable": 0,
    "manual": 1,
    "not_covered": 2,
    "error": 3,
    "fail": 4,
}
"""How bad a status is, to tell an object that got better from one that got worse."""


@dataclass(frozen=True)
class ClauseChange:
    clause: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class ChangeSummary:
    snapshot: SnapshotRecord
    since: str
    """When the snapshot's report was generated."""
    clauses: tuple[ClauseChange, ...]
    """Clauses whose own status changed."""
    better: int
    """Objects whose status improved, in any clause."""
    worse: int
    new: int
    """Objects a clause has now and did not have then (a new host, a new scan object)."""
    gone: int


@dataclass(frozen=True)
class Unreadable:
    snapshot: SnapshotRecord
    problem: str


class SnapshotChanges:
    """Thread-safe memo of the comparison with the newest snapshot of everything."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._before: dict[tuple[str, str], tuple[str, dict[str, Any]] | str] = {}
        self._done: dict[str, tuple[str, Compliance, ChangeSummary | Unreadable]] = {}

    def since_newest(
        self, ctx: WebContext, compliance: Compliance
    ) -> ChangeSummary | Unreadable | None:
        """The changes of `compliance` since the newest unfiltered snapshot (None: there is
        none); `Unreadable` when that snapshot's report cannot be read."""
        snapshot = next((s for s in ctx.store.list_snapshots() if _everything(s)), None)
        if snapshot is None:
            return None
        standard = compliance.standard
        with self._lock:
            done = self._done.get(standard)
            if done is not None and done[0] == snapshot.id and done[1] is compliance:
                return done[2]
            before = self._statuses(ctx, snapshot, standard)
        if isinstance(before, str):
            summary: ChangeSummary | Unreadable = Unreadable(snapshot, before)
        else:
            summary = _summary(snapshot, compliance, *before)
        with self._lock:
            self._done[standard] = (snapshot.id, compliance, summary)
        return summary

    def _statuses(
        self, ctx: WebContext, snapshot: SnapshotRecord, standard: str
    ) -> tuple[str, dict[str, Any]] | str:
        key = (snapshot.id, standard)
        found = self._before.get(key)
        if found is None:
            from collector.compliance.snapshot import snapshot_file

            try:
                found = previous_statuses(snapshot_file(ctx.settings, snapshot), standard)
            except ComplianceError as exc:
                found = str(exc).removeprefix("--since: ")
            # Only the newest snapshot's statuses are worth keeping.
            for old in [k for k in self._before if k[0] != snapshot.id]:
                del self._before[old]
            self._before[key] = found
        return found


def _everything(snapshot: SnapshotRecord) -> bool:
    scope = snapshot.scope
    return not any(scope.get(key) for key in ("site", "zone", "host"))


def _summary(
    snapshot: SnapshotRecord, compliance: Compliance, since: str, before: dict[str, Any]
) -> ChangeSummary:
    changes = with_changes(compliance, since, before).changes or []
    clauses: list[ClauseChange] = []
    better = worse = new = gone = 0
    for change in changes:
        if change.object is None:
            clauses.append(ClauseChange(change.clause, change.before, change.after))
        elif change.before is None:
            new += 1
        elif change.after is None:
            gone += 1
        elif _RANK.get(change.after, 5) < _RANK.get(change.before, 5):
            better += 1
        elif _RANK.get(change.after, 5) > _RANK.get(change.before, 5):
            worse += 1
    return ChangeSummary(snapshot, since, tuple(clauses), better, worse, new, gone)
