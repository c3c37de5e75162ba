"""journald: the effective `[Journal]` settings (main file and drop-ins in systemd's order), the
local retention they give, and the oldest entry still in the journal.

`MaxRetentionSec=` is a ceiling, not a floor: journald deletes entries older than it, and its
size limits (`SystemMaxUse=`, `SystemKeepFree=`, and their defaults: 10 % and 15 % of the file
system, at most 4G) delete older entries whatever it says. So the configuration alone never proves
months of retention; the oldest entry actually kept does, and a ceiling below the requirement
disproves it.

The oldest entry comes from `journalctl --since=1970-01-01 --lines=1`: with `--since`, journalctl
seeks to that time and `--lines` counts forward from there (without it, `--lines` counts back from
the tail), and `--header`'s per-file output is meant for people.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from checks.facts.logs import JournaldConfig, OldestRecord, Retention, days_text
from checks.model import Unavailable
from inventory.host import jsontext
from inventory.host.logs.timestamps import SECONDS_PER_DAY, iso_utc, parse_timespan
from inventory.runner import GatherError, Runner, SourceMissing

JOURNALCTL_TIMEOUT_S = 30.0
"""Reading the head of a large journal touches one file per archived journal: allow for that."""

JOURNALD_MAIN = ("/etc/systemd/journald.conf", "/usr/lib/systemd/journald.conf")
# Lowest priority first: a drop-in name in a later folder masks the same name in an earlier one.
JOURNALD_DROPIN_DIRS = (
    "/usr/lib/systemd/journald.conf.d",
    "/usr/local/lib/systemd/journald.conf.d",
    "/run/systemd/journald.conf.d",
    "/etc/systemd/journald.conf.d",
)
_TRUE = {"1", "yes", "y", "true", "t", "on"}
_FALSE = {"0", "no", "n", "false", "f", "off"}


def parse_bool(text: str) -> bool | None:
    """A yes/no setting as systemd and auditd spell it (yes, on, true, 1 ...); None otherwise."""
    value = text.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _journal_section(text: str) -> Iterator[tuple[str, str, bool]]:
    """(key, value, commented) for each `Key=value` of the [Journal] section."""
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        commented = line.startswith(("#", ";"))
        body = line.lstrip("#; ").strip() if commented else line
        key, sep, value = body.partition("=")
        if sep and section == "Journal" and re.fullmatch(r"[A-Za-z]+", key.strip()):
            yield key.strip(), value.strip(), commented


def parse_journald_conf(
    files: Sequence[tuple[str, str]], *, persistent_dir: bool
) -> JournaldConfig:
    """The effective settings from (path, text) pairs in the order systemd applies them."""
    settings: dict[str, str] = {}
    documented: dict[str, str] = {}
    for index, (_, text) in enumerate(files):
        for key, value, commented in _journal_section(text):
            if not commented:
                settings[key] = value
            elif index == 0:
                # The shipped main file lists the compiled-in defaults as comments.
                documented.setdefault(key, value)
    retention_raw = settings.get("MaxRetentionSec") or None
    try:
        retention = parse_timespan(retention_raw) if retention_raw else None
    except ValueError:
        retention = None  # journald logs the bad value and keeps no limit
    if retention == math.inf:
        retention = None
    forward = settings.get("ForwardToSyslog", documented.get("ForwardToSyslog"))
    return JournaldConfig(
        storage=(settings.get("Storage") or "auto").lower(),
        persistent_dir=persistent_dir,
        max_retention_sec=retention or None,
        max_retention_raw=retention_raw,
        system_max_use=settings.get("SystemMaxUse") or None,
        max_file_sec=settings.get("MaxFileSec") or None,
        forward_to_syslog=parse_bool(forward) if forward is not None else None,
        files=tuple(path for path, _ in files),
    )


def journald_retention(config: JournaldConfig) -> Retention:
    sources = config.files
    if config.storage == "none":
        return Retention(
            None, "journald Storage=none keeps no journal", volatile=True, sources=sources
        )
    if config.storage == "volatile" or (config.storage == "auto" and not config.persistent_dir):
        why = (
            "Storage=volatile"
            if config.storage == "volatile"
            else "Storage=auto and /var/log/journal does not exist"
        )
        return Retention(
            None,
            f"journald is volatile ({why}): the journal lives in /run and is lost at reboot",
            volatile=True,
            sources=sources,
        )
    cap = (
        f"SystemMaxUse={config.system_max_use}"
        if config.system_max_use
        else "SystemMaxUse default: 10 % of the file system, at most 4G"
    )
    if config.max_retention_sec is not None:
        days = config.max_retention_sec / SECONDS_PER_DAY
        return Retention(
            None,
            f"journald MaxRetentionSec={config.max_retention_raw} = {days_text(days)} days is a "
            f"ceiling, not a floor: the size cap ({cap}) still deletes older entries",
            ceiling_days=days,
            sources=sources,
        )
    unset = "sets no MaxRetentionSec"
    if config.max_retention_raw:
        unset = f"ignores MaxRetentionSec={config.max_retention_raw} (not a time span)"
    return Retention(
        None,
        f"journald {unset}: entries are kept until the size cap is reached ({cap})",
        sources=sources,
    )


def parse_journal_oldest(text: str) -> datetime | None:
    """The `__REALTIME_TIMESTAMP` of the first JSON entry journalctl printed; None: no entry."""
    for line in text.splitlines():
        if line.strip():
            entry = jsontext.loads(line)
            stamp = entry.get("__REALTIME_TIMESTAMP") if isinstance(entry, dict) else None
            if not isinstance(stamp, str | int) or not re.fullmatch(r"[0-9]{1,19}", str(stamp)):
                raise ValueError("the first entry has no __REALTIME_TIMESTAMP in microseconds")
            try:
                return datetime.fromtimestamp(int(stamp) / 1e6, UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError(f"__REALTIME_TIMESTAMP {stamp} is out of range") from None
    return None


def _journald_files(runner: Runner) -> list[str]:
    files: list[str] = []
    for path in JOURNALD_MAIN:
        if runner.exists(path):
            files.append(path)
            break
    dropins: dict[str, str] = {}
    for folder in JOURNALD_DROPIN_DIRS:
        try:
            names = runner.list_dir(folder)
        except SourceMissing:
            continue
        for name in names:
            if name.endswith(".conf"):
                dropins[name] = f"{folder}/{name}"
    files.extend(dropins[name] for name in sorted(dropins))
    return files


def read_journald_config(runner: Runner) -> JournaldConfig | Unavailable:
    try:
        paths = _journald_files(runner)
        texts = [(path, runner.read_text(path)) for path in paths]
        return parse_journald_conf(texts, persistent_dir=runner.exists("/var/log/journal"))
    except (GatherError, ValueError) as exc:
        return Unavailable(f"journald configuration unreadable: {exc}")


def read_journal_oldest(runner: Runner) -> OldestRecord | Unavailable | None:
    argv = [
        "journalctl",
        "--no-pager",
        "--quiet",
        "--output=json",
        "--since=1970-01-01 00:00:00",
        "--lines=1",
    ]
    try:
        result = runner.run(argv, timeout=JOURNALCTL_TIMEOUT_S, env={"TZ": "UTC"})
        oldest = parse_journal_oldest(result.stdout)
    except GatherError as exc:
        return Unavailable(f"oldest journal entry unreadable: {exc}")
    except (ValueError, KeyError) as exc:
        return Unavailable(f"journalctl printed no usable JSON: {exc}")
    return None if oldest is None else OldestRecord(iso_utc(oldest), "journal head (journalctl)")
