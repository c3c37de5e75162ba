"""logrotate: the blocks of /etc/logrotate.conf and every file it includes, with the global
defaults in force where each block appears, and the retention a block gives a log file.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from checks.facts.logs import LogrotateRule, Retention
from checks.model import Unavailable
from inventory.host.logs.timestamps import days_text
from inventory.runner import GatherError, Runner, SourceMissing

LOGROTATE_CONF = "/etc/logrotate.conf"
Interval = Literal["hourly", "daily", "weekly", "monthly", "yearly"]
INTERVAL_DAYS: Mapping[str, float] = {
    "hourly": 1 / 24,
    "daily": 1,
    "weekly": 7,
    "monthly": 30,
    "yearly": 365,
}
_INTERVALS: tuple[Interval, ...] = ("hourly", "daily", "weekly", "monthly", "yearly")
_SCRIPTS = {"postrotate", "prerotate", "firstaction", "lastaction", "preremove"}
# logrotate's default `tabooext` list: files in an included folder ending so are skipped.
_TABOO = (
    ",v",
    ".cfsaved",
    ".disabled",
    ".dpkg-bak",
    ".dpkg-del",
    ".dpkg-dist",
    ".dpkg-new",
    ".dpkg-old",
    ".rhn-cfg-tmp-",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".swp",
    ".ucf-dist",
    ".ucf-new",
    ".ucf-old",
    "~",
)


@dataclass
class LogrotateDefaults:
    """The global options in force at a point of a logrotate configuration."""

    interval: Interval | None = None
    rotate: int = 0
    maxage: int | None = None
    size: str | None = None
    maxsize: str | None = None

    def apply(self, words: Sequence[str]) -> None:
        """Apply one directive line; unknown and irrelevant directives are ignored."""
        key = words[0].lower()
        arg = words[1] if len(words) > 1 else None
        interval = next((i for i in _INTERVALS if i == key), None)
        if interval is not None:
            self.interval, self.size = interval, None
        elif key == "rotate" and arg is not None:
            self.rotate = int(arg)
        elif key == "maxage" and arg is not None:
            self.maxage = int(arg)
        elif key == "size" and arg is not None:
            self.size, self.interval = arg, None
        elif key == "maxsize" and arg is not None:
            self.maxsize = arg


def _logrotate_words(line: str) -> list[str]:
    # `size=100M` is accepted by logrotate as well as `size 100M`.
    words = re.findall(r'"[^"]*"|\'[^\']*\'|[^\s=]+', line)
    return [w.strip("\"'") for w in words]


def parse_logrotate(  # noqa: PLR0912 — one branch per kind of line
    text: str,
    source: str,
    *,
    defaults: LogrotateDefaults,
    include: Callable[[str, LogrotateDefaults], list[LogrotateRule]] | None = None,
) -> list[LogrotateRule]:
    """The blocks of one logrotate file. Global directives update `defaults` in place (they carry
    on into files included later); `include` resolves an `include` directive."""
    rules: list[LogrotateRule] = []
    pending: list[str] = []
    block: LogrotateDefaults | None = None
    in_script = False
    for raw in text.splitlines():
        line = raw.strip()
        if in_script:
            in_script = line != "endscript"
            continue
        if not line or line.startswith("#"):
            continue
        if block is not None:
            if line.startswith("}"):
                rules.append(
                    LogrotateRule(
                        patterns=tuple(pending),
                        source=source,
                        interval=block.interval,
                        rotate=block.rotate,
                        maxage=block.maxage,
                        size=block.size,
                        maxsize=block.maxsize,
                    )
                )
                pending, block = [], None
                continue
            words = _logrotate_words(line)
            if words[0].lower() in _SCRIPTS:
                in_script = True
            else:
                block.apply(words)
            continue
        if "{" in line:
            head, _, rest = line.partition("{")
            pending.extend(_logrotate_words(head))
            block = replace(defaults)
            if rest.strip():
                block.apply(_logrotate_words(rest))
            continue
        words = _logrotate_words(line)
        key = words[0].lower()
        if key == "include" and len(words) > 1:
            if include is not None:
                rules.extend(include(words[1], defaults))
        elif key.startswith("/") or key.startswith("~") or "*" in key:
            pending.extend(words)  # patterns of a block whose `{` is on a later line
        else:
            defaults.apply(words)
    return rules


def logrotate_retention(rule: LogrotateRule) -> Retention:
    sources = (rule.source,)
    if rule.interval is None:
        why = f"size {rule.size}" if rule.size else "no rotation interval"
        return Retention(
            None,
            f"logrotate rotates by size ({why}) and keeps {rule.rotate} files: a size, not a time",
            sources=sources,
        )
    if rule.rotate < 0:
        if rule.maxage is not None:
            return Retention(
                float(rule.maxage),
                f"logrotate removes rotated files only by maxage {rule.maxage} days",
                sources=sources,
            )
        return Retention(
            None,
            "logrotate rotate -1: rotated files are never removed",
            unlimited=True,
            sources=sources,
        )
    days = rule.rotate * INTERVAL_DAYS[rule.interval]
    text = f"logrotate keeps {rule.rotate} {rule.interval} = {days_text(days)} days"
    if rule.maxage is not None and rule.maxage < days:
        days = float(rule.maxage)
        text += f", cut to maxage {rule.maxage} days"
    if rule.maxsize:
        text += f" (maxsize {rule.maxsize} may rotate sooner)"
    return Retention(days, text, sources=sources)


def pattern_matches(pattern: str, path: str) -> bool:
    """glob(3) semantics: `*` does not cross `/`."""
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    return len(pat_parts) == len(path_parts) and all(
        fnmatch.fnmatchcase(p, q) for q, p in zip(pat_parts, path_parts, strict=True)
    )


def find_logrotate_rule(rules: Iterable[LogrotateRule], path: str) -> LogrotateRule | None:
    """The block that rotates `path` (logrotate refuses a file named by two blocks)."""
    for rule in rules:
        if any(pattern_matches(p, path) for p in rule.patterns):
            return rule
    return None


def read_logrotate(runner: Runner) -> tuple[LogrotateRule, ...] | Unavailable | None:
    if not runner.exists(LOGROTATE_CONF):
        return None

    def include(target: str, defaults: LogrotateDefaults) -> list[LogrotateRule]:
        try:
            names = runner.list_dir(target)
        except SourceMissing:
            names = None  # a file, or missing: read_text says which
        if names is None:
            return parse_logrotate(
                runner.read_text(target), target, defaults=defaults, include=include
            )
        found: list[LogrotateRule] = []
        for name in names:
            if name.startswith(".") or any(t in name for t in _TABOO):
                continue
            path = f"{target.rstrip('/')}/{name}"
            found.extend(
                parse_logrotate(runner.read_text(path), path, defaults=defaults, include=include)
            )
        return found

    try:
        return tuple(include(LOGROTATE_CONF, LogrotateDefaults()))
    except (GatherError, ValueError) as exc:
        return Unavailable(f"logrotate configuration unreadable: {exc}")
