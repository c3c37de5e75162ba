"""logrotate: the blocks of /etc/logrotate.conf and every file it includes, as logrotate itself
reads them (`logrotate_config`), which block rotates a given log file, and the retention a block
gives it.

A block proves a number of days only when nothing but its interval makes it rotate: `rotate N`
files of an interval hold at least N intervals of records, fewer when `maxage` removes them
sooner. `size` makes the file rotate by size alone, and `maxsize` rotates it before the interval
whenever it outgrows the limit: then N files can hold any span, and only the oldest record kept
says how long.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from checks.facts.logs import LogrotateRule, Retention, days_text
from checks.model import Unavailable
from inventory.host.logs.logrotate_config import (
    DEFAULT_SIZE_BYTES,
    NotUnderstood,
    read_logrotate_config,
)
from inventory.host.logs.logrotate_values import Accounts, parse_accounts
from inventory.runner import GatherError, Runner

LOGROTATE_CONF = "/etc/logrotate.conf"
INTERVAL_DAYS: Mapping[str, float] = {
    "hourly": 1 / 24,
    "daily": 1,
    "weekly": 7,
    "yearly": 365,
}
"""Days per rotation; a month depends on which months (see `interval_days`)."""
# A February of 28 days: logrotate rotates monthly when the month changes.
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def interval_days(interval: str, count: int) -> float:
    """The fewest days `count` rotations of `interval` can span: for months, the shortest run of
    `count` months in a row (6 months can be 181 days, never 183)."""
    if interval != "monthly":
        return count * INTERVAL_DAYS[interval]
    years, months = divmod(count, 12)
    shortest = min(sum(_MONTH_DAYS[(start + k) % 12] for k in range(months)) for start in range(12))
    return years * 365 + shortest


def _size_words(rule: LogrotateRule) -> str:
    if rule.size:
        return f"size {rule.size}"
    return f"no interval is set: logrotate's built-in size {DEFAULT_SIZE_BYTES // 1024**2}M"


def logrotate_retention(rule: LogrotateRule) -> Retention:
    """What one block proves about how long rotated records stay."""
    sources = (rule.source,)
    if rule.rotate < 0:
        if rule.maxage is not None:
            # maxage removes a rotated file only once it is older: a floor, however often the
            # file rotates.
            return Retention(
                float(rule.maxage),
                f"logrotate removes rotated files only by maxage {rule.maxage} days",
                sources=sources,
            )
        return Retention(
            None,
            f"logrotate rotate {rule.rotate}: rotated files are never removed",
            unlimited=True,
            sources=sources,
        )
    if rule.interval is None:
        return Retention(
            None,
            f"logrotate rotates by size ({_size_words(rule)}) and keeps {rule.rotate} files: "
            "a size, not a time",
            sources=sources,
        )
    days = interval_days(rule.interval, rule.rotate)
    text = f"logrotate keeps {rule.rotate} {rule.interval} = {days_text(days)} days"
    if rule.interval == "monthly":
        text += f" (the shortest {rule.rotate} months in a row)"
    if rule.maxsize:
        return Retention(
            None,
            f"{text} only while the file stays under maxsize {rule.maxsize}: it rotates "
            "sooner when it grows, so the days are not known",
            sources=sources,
        )
    if rule.maxage is not None and rule.maxage < days:
        days = float(rule.maxage)
        text += f", cut to maxage {rule.maxage} days"
    return Retention(days, text, sources=sources)


def skipped_retention(rule: LogrotateRule, path: str) -> Retention:
    """A block logrotate skips rotates nothing: the file grows, and its oldest record decides."""
    return Retention(
        None,
        f"logrotate skips the block for {path} ({rule.source}:{rule.line}: {rule.rejected}): "
        "nothing rotates it",
        sources=(rule.source,),
    )


def pattern_matches(pattern: str, path: str) -> bool:
    """glob(3) semantics: `*` does not cross `/`, nor match a leading dot."""
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    if len(pat_parts) != len(path_parts):
        return False
    for pat, part in zip(pat_parts, path_parts, strict=True):
        if part.startswith(".") and not pat.startswith("."):
            return False
        if not fnmatch.fnmatchcase(part, pat):
            return False
    return True


def find_logrotate_rule(rules: Iterable[LogrotateRule], path: str) -> LogrotateRule | None:
    """The block that rotates `path`: the first one logrotate keeps that names it (logrotate
    refuses the file in a later block); else the first skipped one, to say why nothing does."""
    skipped: LogrotateRule | None = None
    for rule in rules:
        if any(pattern_matches(p, path) for p in rule.patterns):
            if rule.rejected is None:
                return rule
            skipped = skipped or rule
    return skipped


@dataclass(frozen=True)
class LogrotateReading:
    """`read_logrotate`'s answer: the blocks (None: logrotate is not installed), and
    logrotate's own complaints about its configuration."""

    rules: tuple[LogrotateRule, ...] | Unavailable | None
    errors: tuple[str, ...] = ()


def _accounts(runner: Runner) -> Accounts | None:
    """The users and groups `create`/`su` may name; None (not checked) when unreadable."""
    try:
        return parse_accounts(runner.read_text("/etc/passwd"), runner.read_text("/etc/group"))
    except GatherError:
        return None


def read_logrotate(runner: Runner) -> LogrotateReading:
    if not runner.exists(LOGROTATE_CONF):
        return LogrotateReading(None)
    try:
        config = read_logrotate_config(runner, LOGROTATE_CONF, accounts=_accounts(runner))
    except NotUnderstood as exc:
        return LogrotateReading(Unavailable(f"logrotate configuration not understood: {exc}"))
    except (GatherError, ValueError) as exc:
        return LogrotateReading(Unavailable(f"logrotate configuration unreadable: {exc}"))
    return LogrotateReading(tuple(config.rules), tuple(config.errors))
