"""What every backup reader shares: timestamps as the tools print them, the errors a reader
raises for `collect_source` to turn into `Unavailable`, and small runner helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from inventory.runner import GatherError, Runner

# Earlier than this is a placeholder (Go's zero time, a zero epoch), never a real backup.
PLAUSIBLE_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
HELPER_TIMEOUT_S = 5.0


class ConfigMissing(GatherError):
    """The source's configuration lacks what its kind needs (the config should have refused)."""


class ToolSaid(GatherError):
    """The tool refused, with its own one-line reason (never containing a secret)."""


_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(text: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 / RFC 3339 timestamp as an aware UTC datetime.

    Accepts nanoseconds (restic, Go) by truncating to microseconds, `Z` or a numeric offset. A
    timestamp without an offset is refused unless `naive_is_utc` (borg run with TZ=UTC0).
    Raises ValueError, also for placeholder times before 2000.
    """
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {text!r}")
    frac = (m["frac"] or "")[:6].ljust(6, "0")
    tz = m["tz"]
    if tz is None:
        if not naive_is_utc:
            raise ValueError(f"timestamp {text!r} has no UTC offset")
        tz = "+00:00"
    elif tz == "Z":
        tz = "+00:00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    value = datetime.fromisoformat(f"{m['date']}T{m['time']}.{frac}{tz}").astimezone(UTC)
    if value < PLAUSIBLE_SINCE:
        raise ValueError(f"implausible timestamp {text!r} (a placeholder, not a backup time)")
    return value


def age(newest: datetime | None, now: datetime) -> float | None:
    return None if newest is None else (now - newest).total_seconds()


def first_line(text: str, *, prefer: str | None = None, strip: str = "") -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if prefer is not None:
        preferred = [line for line in lines if line.startswith(prefer)]
        lines = preferred or lines
    if not lines:
        return "no message"
    line = lines[0]
    return line.removeprefix(strip).strip() if strip else line


def require_file(runner: Runner, path: str, what: str) -> None:
    if not runner.exists(path):
        raise ConfigMissing(f"{what} {path} does not exist")


@contextmanager
def private_dir(runner: Runner) -> Iterator[str]:
    """A 0700 directory on the runner's host, removed afterwards (borg's BORG_BASE_DIR)."""
    path = runner.run(
        ["mktemp", "-d", "-t", "medsec-backup.XXXXXXXXXX"], timeout=HELPER_TIMEOUT_S
    ).stdout.strip()
    if not path.startswith("/"):
        raise ToolSaid(f"mktemp printed {path!r}, not a directory")
    try:
        yield path
    finally:
        runner.run(["rm", "-rf", "--", path], timeout=HELPER_TIMEOUT_S, check=False)
