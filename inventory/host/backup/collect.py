"""Every configured backup source, each read on its own with its kind's reader and bounded by a
timeout; anything that stops one source becomes `Unavailable(reason)` in its slot and the next
source is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from checks.facts.backup import BackupFacts, BackupSource, BackupStatus, RecoveryPoint
from checks.model import Unavailable
from inventory.host.backup.common import ToolSaid
from inventory.host.backup.files import read_path
from inventory.host.backup.postgres import read_postgres
from inventory.host.backup.repos import read_borg, read_restic
from inventory.runner import GatherError, Runner

_TOOLS = {"restic": "restic", "borg": "borg", "postgres": "psql", "path": "find"}

Reader = Callable[[Runner, BackupSource, Callable[[], datetime], float], RecoveryPoint]

READERS: Mapping[str, Reader] = {
    "restic": read_restic,
    "borg": read_borg,
    "postgres": read_postgres,
    "path": read_path,
}


def collect_source(
    runner: Runner, source: BackupSource, *, now: datetime | None = None, timeout: float = 20.0
) -> BackupStatus:
    """Read one source; anything that stops it becomes `Unavailable` naming the tool's reason."""

    def clock() -> datetime:
        return now if now is not None else datetime.now(UTC)

    reader = READERS.get(source.kind)
    if reader is None:
        return BackupStatus(source, Unavailable(f"unknown backup kind {source.kind!r}"))
    try:
        return BackupStatus(source, reader(runner, source, clock, timeout))
    except ToolSaid as exc:
        return BackupStatus(source, Unavailable(f"{_TOOLS[source.kind]}: {exc}"))
    except GatherError as exc:  # missing tool, timeout, access denied, missing config
        return BackupStatus(source, Unavailable(str(exc)))
    except ValueError as exc:  # also json.JSONDecodeError and UnicodeDecodeError
        return BackupStatus(
            source, Unavailable(f"unexpected output from {_TOOLS[source.kind]}: {exc}")
        )


def collect_backups(
    runner: Runner,
    sources: Sequence[BackupSource],
    host_site: str | None,
    *,
    now: datetime | None = None,
    timeout: float = 20.0,
) -> BackupFacts:
    """Every configured source, each bounded by `timeout` seconds. `now` fixes the clock (tests);
    by default each source's age is measured when its tool has answered."""
    return BackupFacts(
        host_site=host_site,
        sources=tuple(collect_source(runner, s, now=now, timeout=timeout) for s in sources),
    )
