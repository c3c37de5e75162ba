"""Log retention: how long journald, logrotate and auditd keep each log stream, how old the oldest
local record is, and which rsyslog, syslog-ng and audisp-remote rules forward it elsewhere.

`collect_logs()` does the reads through a `Runner`; every `parse_*` function is pure and is tested
on configuration recorded from real hosts (tests/fixtures/etc/<scenario>/). The oldest journal
entry comes from `journalctl --since=1970-01-01 --lines=1`: with `--since`, journalctl seeks to
that time and `--lines` counts forward from there (without it, `--lines` counts back from the
tail), and `--header`'s per-file output is meant for people. Rotated files are dated by their
first line's timestamp, and by their modification time only when that line carries none.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import json
import lzma
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from checks.facts.logs import (
    AuditdConfig,
    JournaldConfig,
    LogFacts,
    LogForwarding,
    LogrotateRule,
    LogStream,
    OldestRecord,
    Retention,
)
from checks.hostport import parse_host_port
from checks.model import Unavailable
from inventory.runner import GatherError, Runner, SourceMissing

JOURNALCTL_TIMEOUT_S = 30.0
"""Reading the head of a large journal touches one file per archived journal: allow for that."""

AUTH_FILES = ("/var/log/auth.log", "/var/log/secure")
SYSLOG_FILES = ("/var/log/syslog", "/var/log/messages")
AUTH_FACILITIES = ("auth", "authpriv")
# A rule that forwards these three forwards "the system log"; naming every facility would make a
# common `*.*;mail.none` rule look partial.
SYSLOG_FACILITIES = ("user", "daemon", "kern")
JOURNAL_FACILITIES = (*SYSLOG_FACILITIES, *AUTH_FACILITIES)

SECONDS_PER_DAY = 86400.0


# ============================================================================= time and sizes

# systemd.time(7): a month is 30.44 days and a year 365.25 days.
_TIMESPAN_UNITS: Mapping[str, float] = {
    **dict.fromkeys(("usec", "us", "µs"), 1e-6),
    **dict.fromkeys(("msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "sec", "s", ""), 1.0),
    **dict.fromkeys(("minutes", "minute", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), SECONDS_PER_DAY),
    **dict.fromkeys(("weeks", "week", "w"), 7 * SECONDS_PER_DAY),
    **dict.fromkeys(("months", "month", "M"), 2629800.0),
    **dict.fromkeys(("years", "year", "y"), 31557600.0),
}
_TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-zµ]*)")


def parse_timespan(text: str) -> float:
    """A systemd time span ("6month", "1y 2w", "3600") in seconds. Raises ValueError."""
    rest = text.strip()
    if not rest:
        raise ValueError("empty time span")
    total = 0.0
    pos = 0
    while pos < len(rest):
        if rest[pos].isspace():
            pos += 1
            continue
        match = _TIMESPAN_PART.match(rest, pos)
        if match is None or match.group(2) not in _TIMESPAN_UNITS:
            raise ValueError(f"not a systemd time span: {text!r}")
        total += float(match.group(1)) * _TIMESPAN_UNITS[match.group(2)]
        pos = match.end()
    return total


def _days(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_AUDIT_STAMP = re.compile(r"msg=audit\((\d+)(?:\.(\d+))?:\d+\)")
_ISO_STAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?\s?(Z|[+-]\d{2}:?\d{2})?"
)
_CLF_STAMP = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
_SLASH_STAMP = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_BSD_STAMP = re.compile(r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\b")


def _offset(text: str | None) -> timedelta:
    if not text or text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def parse_line_timestamp(line: str, *, now: datetime) -> datetime | None:  # noqa: PLR0911 — one return per format
    """The timestamp a log line starts with, in UTC, or None.

    Understands audit records (`msg=audit(EPOCH.ms:serial)`), RFC 3339 (rsyslog's high-precision
    format, JSON logs), Apache/nginx access logs (`[10/Oct/2024:13:55:36 +0800]`), nginx error
    logs (`2024/10/10 13:55:36`) and the traditional syslog format, whose missing year is taken
    as the latest that does not put the line in the future. Times without a zone count as UTC:
    an error of hours, where retention is measured in months.
    """
    if m := _AUDIT_STAMP.search(line):
        return datetime.fromtimestamp(int(m.group(1)), UTC)
    if m := _ISO_STAMP.search(line):
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC) - _offset(m.group(7))
        except ValueError:
            return None
    if m := _CLF_STAMP.search(line):
        day, mon, year, hour, minute, sec, tz = m.groups()
        if mon not in _MONTHS:
            return None
        moment = datetime(
            int(year), _MONTHS[mon], int(day), int(hour), int(minute), int(sec), tzinfo=UTC
        )
        return moment - _offset(tz)
    if m := _SLASH_STAMP.match(line):
        y, mo, d, h, mi, s = (int(x) for x in m.groups())
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
        except ValueError:
            return None
    if m := _BSD_STAMP.match(line):
        mon, day, hour, minute, sec = m.groups()
        if mon not in _MONTHS:
            return None
        for guess in (now.year, now.year - 1):
            try:
                moment = datetime(
                    guess, _MONTHS[mon], int(day), int(hour), int(minute), int(sec), tzinfo=UTC
                )
            except ValueError:  # 29 February in a common year
                continue
            if moment <= now + timedelta(days=1):
                return moment
    return None


# ============================================================================= journald

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


def _bool(text: str) -> bool | None:
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
    retention = parse_timespan(retention_raw) if retention_raw else None
    forward = settings.get("ForwardToSyslog", documented.get("ForwardToSyslog"))
    return JournaldConfig(
        storage=(settings.get("Storage") or "auto").lower(),
        persistent_dir=persistent_dir,
        max_retention_sec=retention or None,
        max_retention_raw=retention_raw,
        system_max_use=settings.get("SystemMaxUse") or None,
        max_file_sec=settings.get("MaxFileSec") or None,
        forward_to_syslog=_bool(forward) if forward is not None else None,
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
        f"SystemMaxUse={config.system_max_use}" if config.system_max_use else "SystemMaxUse default"
    )
    if config.max_retention_sec is not None:
        days = config.max_retention_sec / SECONDS_PER_DAY
        return Retention(
            days,
            f"journald MaxRetentionSec={config.max_retention_raw} = {_days(days)} days ({cap})",
            sources=sources,
        )
    return Retention(
        None,
        "journald sets no MaxRetentionSec: entries are kept until the size cap is reached "
        f"({cap}: 10 % of the file system, at most 4G, unless set)",
        sources=sources,
    )


def parse_journal_oldest(text: str) -> datetime | None:
    """The `__REALTIME_TIMESTAMP` of the first JSON entry journalctl printed; None: no entry."""
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            micros = int(entry["__REALTIME_TIMESTAMP"])
            return datetime.fromtimestamp(micros / 1e6, UTC)
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


def collect_journald_config(runner: Runner) -> JournaldConfig | Unavailable:
    try:
        paths = _journald_files(runner)
        texts = [(path, runner.read_text(path)) for path in paths]
        return parse_journald_conf(texts, persistent_dir=runner.exists("/var/log/journal"))
    except (GatherError, ValueError) as exc:
        return Unavailable(f"journald configuration unreadable: {exc}")


def collect_journal_oldest(runner: Runner) -> OldestRecord | Unavailable | None:
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
    return None if oldest is None else OldestRecord(_iso(oldest), "journal head (journalctl)")


# ============================================================================= logrotate

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
    text = f"logrotate keeps {rule.rotate} {rule.interval} = {_days(days)} days"
    if rule.maxage is not None and rule.maxage < days:
        days = float(rule.maxage)
        text += f", cut to maxage {rule.maxage} days"
    if rule.maxsize:
        text += f" (maxsize {rule.maxsize} may rotate sooner)"
    return Retention(days, text, sources=sources)


def _pattern_matches(pattern: str, path: str) -> bool:
    """glob(3) semantics: `*` does not cross `/`."""
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    return len(pat_parts) == len(path_parts) and all(
        fnmatch.fnmatchcase(p, q) for q, p in zip(pat_parts, path_parts, strict=True)
    )


def find_logrotate_rule(rules: Iterable[LogrotateRule], path: str) -> LogrotateRule | None:
    """The block that rotates `path` (logrotate refuses a file named by two blocks)."""
    for rule in rules:
        if any(_pattern_matches(p, path) for p in rule.patterns):
            return rule
    return None


def collect_logrotate(runner: Runner) -> tuple[LogrotateRule, ...] | Unavailable | None:
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


# ============================================================================= auditd

AUDITD_CONF = "/etc/audit/auditd.conf"
AUDIT_PLUGIN_DIRS = ("/etc/audit/plugins.d", "/etc/audisp/plugins.d")
AUDISP_REMOTE_CONFS = ("/etc/audit/audisp-remote.conf", "/etc/audisp/audisp-remote.conf")


def _key_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def parse_auditd_conf(text: str) -> AuditdConfig:
    values = _key_values(text)
    return AuditdConfig(
        log_file=values.get("log_file", "/var/log/audit/audit.log"),
        num_logs=int(values.get("num_logs", "5")),
        max_log_file_mb=int(values.get("max_log_file", "8")),
        max_log_file_action=values.get("max_log_file_action", "ROTATE").upper(),
        write_logs=_bool(values.get("write_logs", "yes")) is not False,
    )


def auditd_retention(config: AuditdConfig) -> Retention:
    sources = (AUDITD_CONF,)
    action = config.max_log_file_action
    if not config.write_logs:
        return Retention(
            0.0, "auditd write_logs = no: no audit log is kept locally", sources=sources
        )
    if action == "KEEP_LOGS":
        return Retention(
            None,
            "auditd max_log_file_action = KEEP_LOGS: every audit log file is kept",
            unlimited=True,
            sources=sources,
        )
    if action == "ROTATE":
        return Retention(
            None,
            f"auditd keeps {config.num_logs} files of {config.max_log_file_mb} MB "
            "(max_log_file_action = ROTATE): a count, not a time",
            sources=sources,
        )
    return Retention(
        None,
        f"auditd max_log_file_action = {action}: {config.log_file} is never rotated away",
        unlimited=True,
        sources=sources,
    )


def parse_audit_plugin(text: str) -> tuple[bool, str]:
    """(`active = yes`, `args`) of an audit dispatcher plugin file."""
    values = _key_values(text)
    return _bool(values.get("active", "no")) is True, values.get("args", "")


def syslog_plugin_facility(args: str) -> str:
    """The facility the audit syslog plugin logs to: `LOG_LOCAL6` in its args, else user."""
    for word in args.split():
        name = word.upper().removeprefix("LOG_").lower()
        if name in _FACILITIES and name not in {"kern"}:
            return name
    return "user"


def parse_audisp_remote(text: str, source: str) -> LogForwarding | None:
    values = _key_values(text)
    host = values.get("remote_server", "").strip()
    if not host:
        return None
    port = values.get("port", "60")
    return LogForwarding(
        daemon="audisp-remote",
        host=host,
        port=int(port) if port.isdigit() else None,
        protocol=values.get("transport", "tcp").lower(),
        selector=None,
        condition=None,
        source=source,
    )


# ============================================================================= syslog selectors

_SEVERITIES = {
    "emerg": 0,
    "panic": 0,
    "alert": 1,
    "crit": 2,
    "err": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
_FACILITIES = {
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "security",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    *(f"local{i}" for i in range(8)),
}
_SELECTOR = re.compile(r"^[A-Za-z0-9*,]+\.!?=?[A-Za-z*]+(?:;[A-Za-z0-9*,]+\.!?=?[A-Za-z*]+)*$")


def selector_covers(selector: str, facility: str, severity: str = "info") -> bool:
    """Whether a classic syslog selector (`*.*;auth,authpriv.none`) passes `facility` messages of
    `severity`. Later parts override earlier ones for the facilities they name, as in rsyslog."""
    level = _SEVERITIES[severity]
    covered = False
    for part in selector.split(";"):
        facilities, _, priority = part.partition(".")
        names = {f.strip().lower() for f in facilities.split(",")}
        if "*" not in names and facility not in names:
            continue
        negate = priority.startswith("!")
        spec = priority.lstrip("!")
        exact = spec.startswith("=")
        spec = spec.lstrip("=").lower()
        if spec == "none":
            covered = False
            continue
        if spec == "*":
            matches = True
        elif spec in _SEVERITIES:
            matches = level == _SEVERITIES[spec] if exact else level <= _SEVERITIES[spec]
        else:
            continue
        covered = (covered and not matches) if negate else (covered or matches)
    return covered


def carries(rule: LogForwarding, facilities: Iterable[str]) -> bool:
    """A rule carries a stream when it applies to all of the stream's facilities."""
    if rule.condition is not None:
        return False
    if rule.selector is None:
        return True
    return all(selector_covers(rule.selector, f) for f in facilities)


# ============================================================================= rsyslog

RSYSLOG_CONF = "/etc/rsyslog.conf"
RSYSLOG_DIR = "/etc/rsyslog.d"


@dataclass(frozen=True)
class FileInput:
    """An rsyslog imfile input: a file rsyslog reads and passes on."""

    pattern: str
    facility: str
    ruleset: str | None


@dataclass(frozen=True)
class FileOutput:
    """An rsyslog rule writing to a file."""

    path: str
    selector: str | None
    condition: str | None


@dataclass
class RsyslogConfig:
    """What rsyslog's configuration says about forwarding, files written and files read."""

    forwards: list[LogForwarding] = field(default_factory=list)
    outputs: list[FileOutput] = field(default_factory=list)
    inputs: list[FileInput] = field(default_factory=list)
    imjournal: bool = False
    """rsyslog reads the journal itself (RHEL): no ForwardToSyslog needed."""


_PARAM = re.compile(
    r"([A-Za-z_][\w.]*)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\[[^\]]*\]|[^\s,)]+)"
)
_OBJECTS = {"action", "input", "module", "ruleset", "template", "global", "main_queue", "include"}


def _params(text: str) -> dict[str, str]:
    return {k.lower(): v.strip("\"'") for k, v in _PARAM.findall(text)}


def _strip_comments(text: str) -> str:
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            out.append(c)
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i) and (i == 0 or text[i - 1].isspace()):
            # A comment, not a glob such as `$IncludeConfig /etc/rsyslog.d/*.conf`.
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _balanced(text: str, start: int) -> int:
    """Index just past the `)` that closes the `(` at `start`, quotes respected."""
    depth = 0
    quote: str | None = None
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def parse_legacy_forward(action: str) -> tuple[str, int | None, str] | None:
    """(host, port, protocol) of a legacy forwarding action: `@@(o)host:port;Template`,
    `@[2001:db8::1]:514`, `:omrelp:host:port`; None for any other action."""
    action = action.split(";", 1)[0].strip()
    if action.startswith(":omrelp:"):
        host, port = parse_host_port(action[len(":omrelp:") :])
        return host, port, "relp"
    if not action.startswith("@"):
        return None
    protocol = "tcp" if action.startswith("@@") else "udp"
    target = re.sub(r"^\([^)]*\)", "", action.lstrip("@"))
    host, port = parse_host_port(target)
    return (host, port, protocol) if host else None


def _open_condition(prefix: str) -> bool:
    """Whether the text since the last statement is an `if ... then` or `else` still waiting for
    its statement or block (which may follow on a later line)."""
    words = prefix.split()
    if not words:
        return False
    if words[-1] in {"then", "else"}:
        return True
    return words[0] == "if" and "then" not in words


class _RsyslogParser:
    def __init__(self, source: str, config: RsyslogConfig) -> None:
        self.source = source
        self.config = config
        self.last_filter: tuple[str | None, str | None] = (None, None)
        self.legacy_input: dict[str, str] = {}

    def filter_of(self, prefix: str, context: Sequence[str]) -> tuple[str | None, str | None]:
        """(selector, condition) of a statement from the text before it and its enclosing blocks."""
        conditions = [c for c in context if c]
        prefix = prefix.strip()
        selector: str | None = None
        if prefix == "&":
            selector, condition = self.last_filter
            if condition:
                conditions.append(condition)
        elif m := re.fullmatch(r"if\s+prifilt\(\s*[\"']([^\"']+)[\"']\s*\)\s+then", prefix):
            selector = m.group(1)
        elif _SELECTOR.match(prefix):
            selector = prefix
        elif prefix:
            conditions.append(prefix)
        condition = "; ".join(conditions) or None
        self.last_filter = (selector, condition)
        return selector, condition

    def action(
        self, params: Mapping[str, str], selector: str | None, condition: str | None
    ) -> None:
        kind = params.get("type", "").lower()
        if kind in {"omfwd", "omrelp"} and params.get("target"):
            port = params.get("port", "")
            protocol = "relp" if kind == "omrelp" else params.get("protocol", "udp").lower()
            if (
                params.get("streamdriver", "").lower() in {"gtls", "ossl"}
                or params.get("streamdrivermode") == "1"
            ):
                protocol = "tls"
            self.config.forwards.append(
                LogForwarding(
                    daemon="rsyslog",
                    host=params["target"],
                    port=int(port) if port.isdigit() else None,
                    protocol=protocol,
                    selector=selector,
                    condition=condition,
                    source=self.source,
                )
            )
        elif kind == "omfile" and params.get("file"):
            self.config.outputs.append(FileOutput(params["file"], selector, condition))

    def legacy_line(self, line: str, context: Sequence[str]) -> bool:
        """Handle a legacy directive or `selector action` line; False when it is neither."""
        if line.startswith("$"):
            words = line.split()
            key = words[0].lower()
            value = words[1] if len(words) > 1 else ""
            if key == "$modload" and value.removesuffix(".so") == "imjournal":
                self.config.imjournal = True
            elif key in {"$inputfilename", "$inputfilefacility"}:
                self.legacy_input[key] = value
            elif key == "$inputrunfilemonitor" and "$inputfilename" in self.legacy_input:
                self.config.inputs.append(
                    FileInput(
                        self.legacy_input["$inputfilename"],
                        self.legacy_input.get("$inputfilefacility", "local0").lower(),
                        None,
                    )
                )
                self.legacy_input = {}
            return True
        head, _, action = re.sub(r"\s+", " ", line, count=1).partition(" ")
        head, action = head.strip(), action.strip()
        if not action or not (_SELECTOR.match(head) or head == "&" or head.startswith(":")):
            return False
        if action.lower().startswith("action("):
            return False  # RainerScript action after a selector: the object scanner takes it
        if head.startswith(":"):
            # A property-based filter `:msg, contains, "x"  action`: its action follows the
            # last comma-separated argument, so split at the last whitespace instead.
            head, _, action = re.sub(r"\s+", " ", line).rpartition(" ")
        selector, condition = self.filter_of(head, context)
        forward = parse_legacy_forward(action)
        if forward is not None:
            host, port, protocol = forward
            self.config.forwards.append(
                LogForwarding("rsyslog", host, port, protocol, selector, condition, self.source)
            )
        elif action.lstrip("-").startswith("/"):
            path = action.lstrip("-").split(";", 1)[0]
            self.config.outputs.append(FileOutput(path, selector, condition))
        return True

    def object(self, name: str, body: str, prefix: str, context: Sequence[str]) -> None:
        params = _params(body)
        if name == "action":
            self.action(params, *self.filter_of(prefix, context))
        elif name == "module" and params.get("load", "").removesuffix(".so") == "imjournal":
            self.config.imjournal = True
        elif name == "input" and params.get("type", "").lower() == "imfile" and params.get("file"):
            self.config.inputs.append(
                FileInput(
                    params["file"],
                    params.get("facility", "local0").lower(),
                    params.get("ruleset"),
                )
            )

    def parse(self, text: str) -> None:  # noqa: PLR0912 — a hand-written scanner
        text = _strip_comments(text)
        context: list[str] = []
        prefix_start = 0
        i = 0
        while i < len(text):
            c = text[i]
            if c in "\"'":
                end = text.find(c, i + 1)
                i = len(text) if end < 0 else end + 1
                continue
            if c == "\n":
                line = text[max(prefix_start, text.rfind("\n", 0, i) + 1) : i].strip()
                handled = bool(line) and self.legacy_line(line, context)
                if handled or not _open_condition(text[prefix_start:i]):
                    prefix_start = i + 1
                i += 1
                continue
            if c == "{":
                label = text[prefix_start:i].strip()
                if m := re.match(r"ruleset\s*\((.*)\)\s*$", label, re.S):
                    label = f"ruleset {_params(m.group(1)).get('name', '?')}"
                context.append(label)
                prefix_start = i = i + 1
                continue
            if c == "}":
                if context:
                    context.pop()
                prefix_start = i = i + 1
                continue
            m = re.compile(r"([A-Za-z_]+)\s*\(").match(text, i)
            if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                name = m.group(1).lower()
                end = _balanced(text, m.end() - 1)
                if name in _OBJECTS:
                    prefix = text[prefix_start:i]
                    # A selector may stand before an action on the same line; an if-condition
                    # may span lines. Keep the condition, drop earlier unrelated lines.
                    if "if" not in prefix.split():
                        prefix = prefix.rsplit("\n", 1)[-1]
                    if name == "ruleset":
                        i = end
                        continue  # its `{` follows; the label is taken from the prefix
                    self.object(name, text[m.end() : end - 1], prefix, context)
                    prefix_start = end
                i = end
                continue
            i += 1
        line = text[max(prefix_start, text.rfind("\n") + 1) :].strip()
        if line:
            self.legacy_line(line, context)


def parse_rsyslog(files: Sequence[tuple[str, str]]) -> RsyslogConfig:
    """rsyslog's forwarding rules, file outputs and imfile inputs from (path, text) pairs."""
    config = RsyslogConfig()
    for path, text in files:
        _RsyslogParser(path, config).parse(text)
    return config


def _conf_files(runner: Runner, main: str, folder: str) -> list[tuple[str, str]] | None:
    """(path, text) of `main` and `folder/*.conf`; None when `main` does not exist."""
    if not runner.exists(main):
        return None
    files = [(main, runner.read_text(main))]
    try:
        names = runner.list_dir(folder)
    except SourceMissing:
        names = []
    files.extend(
        (f"{folder}/{n}", runner.read_text(f"{folder}/{n}")) for n in names if n.endswith(".conf")
    )
    return files


# ============================================================================= syslog-ng

SYSLOG_NG_CONF = "/etc/syslog-ng/syslog-ng.conf"
SYSLOG_NG_DIR = "/etc/syslog-ng/conf.d"
_NG_DRIVERS = {"network", "tcp", "udp", "tcp6", "udp6", "syslog"}


def _ng_blocks(text: str, keyword: str) -> Iterator[tuple[str, str]]:
    """(name, body) of each `keyword name { body };` (name empty for `log { ... };`)."""
    for m in re.finditer(rf"\b{keyword}\s+(\w*)\s*\{{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), text[m.end() : i - 1]


def parse_syslog_ng(files: Sequence[tuple[str, str]]) -> list[LogForwarding]:
    """Network destinations of syslog-ng that a `log` path uses; a path with a filter is
    conditional."""
    destinations: dict[str, list[tuple[str, int | None, str, str]]] = {}
    logs: list[tuple[str, str]] = []
    for path, raw in files:
        text = _strip_comments(raw)
        for name, body in _ng_blocks(text, "destination"):
            for m in re.finditer(r"\b(\w+)\s*\(", body):
                driver = m.group(1).lower()
                if driver not in _NG_DRIVERS:
                    continue
                args = body[m.end() : _balanced(body, m.end() - 1) - 1]
                host = re.match(r"\s*[\"']?([^\"'\s)]+)", args)
                if host is None:
                    continue
                port = re.search(r"\bport\s*\(\s*(\d+)\s*\)", args)
                transport = re.search(r"\btransport\s*\(\s*[\"']?(\w+)", args)
                default = driver.rstrip("6") if driver in {"tcp", "udp", "tcp6", "udp6"} else "tcp"
                destinations.setdefault(name, []).append(
                    (
                        host.group(1),
                        int(port.group(1)) if port else None,
                        transport.group(1).lower() if transport else default,
                        path,
                    )
                )
        logs.extend((path, body) for _, body in _ng_blocks(text, "log"))
    forwards: list[LogForwarding] = []
    for _, body in logs:
        used = re.findall(r"\bdestination\s*\(\s*(\w+)\s*\)", body)
        filters = re.findall(r"\bfilter\s*\(\s*(\w+)\s*\)", body)
        condition = "filter " + ", ".join(filters) if filters or " if " in body else None
        for name in used:
            for target, number, protocol, source in destinations.get(name, []):
                forwards.append(
                    LogForwarding("syslog-ng", target, number, protocol, None, condition, source)
                )
    return forwards


# ============================================================================= oldest record

_COMPRESSED: Mapping[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
    ".bz2": bz2.decompress,
}
_ROTATED = r"(?:[.-](\d+(?:-\d+)*|\d{4}-\d{2}-\d{2}(?:-\d+)?))?(\.gz|\.xz|\.bz2|\.zst|\.lz4)?"


def rotated_files(path: str, names: Iterable[str]) -> list[str]:
    """`path` and its rotated copies among `names` (files of its folder), oldest first:
    numbered copies by descending number, dated ones by ascending date, the live file last."""
    folder, base = posixpath.split(path)
    pattern = re.compile(re.escape(base) + _ROTATED + "$")
    ranked: list[tuple[tuple[int, int | str], str]] = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is None:
            continue
        suffix = m.group(1)
        if suffix is None:
            rank: tuple[int, int | str] = (2, 0)
        elif suffix.isdigit() and len(suffix) < 8:
            rank = (0, -int(suffix))
        else:
            rank = (1, suffix)
        ranked.append((rank, posixpath.join(folder, name)))
    return [p for _, p in sorted(ranked)]


def first_line(data: bytes, name: str) -> str | None:
    """The first non-empty line of a (possibly compressed) log file; None when there is none."""
    for ext, decompress in _COMPRESSED.items():
        if name.endswith(ext):
            data = decompress(data)
            break
    else:
        if name.endswith((".zst", ".lz4")):
            raise ValueError(f"{name}: cannot decompress {posixpath.splitext(name)[1]}")
    for line in data[:65536].decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line
    return None


def _mtime(runner: Runner, path: str) -> datetime:
    result = runner.run(["stat", "--format=%Y", "--", path], timeout=5.0)
    return datetime.fromtimestamp(int(result.stdout.strip()), UTC)


def oldest_record(
    runner: Runner, files: Sequence[str], *, now: datetime
) -> OldestRecord | Unavailable | None:
    """The oldest record among `files` (oldest first): the first line with a timestamp; the
    modification time of the oldest file when no line has one; None when all are empty."""
    problems: list[str] = []
    for path in files:
        try:
            line = first_line(runner.read_bytes(path), path)
        except (GatherError, ValueError, OSError, EOFError) as exc:
            problems.append(str(exc))
            continue
        if line is None:
            continue
        moment = parse_line_timestamp(line, now=now)
        if moment is not None:
            return OldestRecord(_iso(moment), f"first line of {path}")
        problems.append(f"{path}: first line has no timestamp")
    if not problems:
        return None
    try:
        return OldestRecord(_iso(_mtime(runner, files[0])), f"mtime of {files[0]}")
    except (GatherError, ValueError) as exc:
        problems.append(f"mtime: {exc}")
    return Unavailable("; ".join(problems))


def _siblings(runner: Runner, path: str) -> list[str] | Unavailable:
    folder = posixpath.dirname(path) or "/"
    try:
        names = runner.list_dir(folder)
    except SourceMissing:
        return []
    except GatherError as exc:
        return Unavailable(str(exc))
    base = posixpath.basename(path)
    if any(ch in base for ch in "*?["):
        # Applications that name their own files (Tomcat's localhost_access_log.2024-05-01.txt)
        # put the date in the name, so the names sort oldest first.
        return sorted(posixpath.join(folder, n) for n in names if fnmatch.fnmatchcase(n, base))
    return rotated_files(path, names)


# ============================================================================= streams


@dataclass(frozen=True)
class _Sources:
    rsyslog: RsyslogConfig | Unavailable | None
    forwarding: tuple[LogForwarding, ...] | Unavailable
    logrotate: tuple[LogrotateRule, ...] | Unavailable | None
    now: datetime


def _syslog_file(
    runner: Runner,
    rsyslog: RsyslogConfig | Unavailable | None,
    candidates: Sequence[str],
    marker: str,
) -> str | None:
    """The file a syslog daemon writes a stream to: a candidate that an unconditional rsyslog
    rule selecting `marker` writes, else the first candidate that exists."""
    if isinstance(rsyslog, RsyslogConfig):
        for path in candidates:
            for out in rsyslog.outputs:
                if (
                    out.path == path
                    and out.condition is None
                    and out.selector is not None
                    and selector_covers(out.selector, marker)
                ):
                    return path
    return next((path for path in candidates if runner.exists(path)), None)


def _forwarded(
    sources: _Sources, facilities: Sequence[str], *, via_syslog: bool = True
) -> tuple[LogForwarding, ...] | Unavailable:
    """The syslog forwarding rules that carry every one of `facilities`. `via_syslog` False: the
    records never reach rsyslog (journald does not forward to it), only syslog-ng's own
    journal reader can carry them."""
    if isinstance(sources.forwarding, Unavailable):
        return sources.forwarding
    return tuple(
        f
        for f in sources.forwarding
        if (via_syslog or f.daemon == "syslog-ng") and carries(f, facilities)
    )


def _file_retention(sources: _Sources, paths: Sequence[str]) -> Retention | Unavailable:
    rules = sources.logrotate
    if isinstance(rules, Unavailable):
        return rules
    if rules is None:
        return Retention(None, f"logrotate is not installed: nothing rotates {paths[0]}")
    for path in paths:
        rule = find_logrotate_rule(rules, path)
        if rule is not None:
            return logrotate_retention(rule)
    return Retention(None, f"no logrotate rule names {paths[0]}", sources=(LOGROTATE_CONF,))


def _file_stream(
    runner: Runner,
    sources: _Sources,
    name: str,
    path: str,
    forwarded: tuple[LogForwarding, ...] | Unavailable,
    *,
    kind: Literal["logrotate", "file"],
) -> LogStream:
    files = _siblings(runner, path)
    oldest: OldestRecord | Unavailable | None
    if isinstance(files, Unavailable):
        oldest, files = files, []
    else:
        oldest = oldest_record(runner, files, now=sources.now) if files else None
    # A glob names no file logrotate knows: look the rule up by the files it matched.
    retention = _file_retention(sources, [path, *reversed(files)])
    if not files and kind == "file":
        # A declared access log that is not there: a wrong path, or the application logs
        # elsewhere. Either way nothing here proves retention.
        retention = Unavailable(f"access log {path} does not exist (check logs.access_logs)")
    return LogStream(
        name=name,
        kind=kind,
        present=True,
        paths=tuple(reversed(files)) or (path,),
        retention=retention,
        oldest=oldest,
        forwarded_to=forwarded,
    )


def _journald_stream(
    runner: Runner, config: JournaldConfig | Unavailable, sources: _Sources
) -> LogStream:
    if (
        isinstance(config, JournaldConfig)
        and not config.files
        and runner.which("journalctl") is None
    ):
        return LogStream(
            name="journald",
            kind="journald",
            present=False,
            absent_reason="no systemd journal: neither journald.conf nor journalctl exists",
        )
    rsyslog = sources.rsyslog
    # rsyslog sees the journal when journald forwards to its socket, or reads it (imjournal).
    linked = isinstance(config, JournaldConfig) and bool(config.forward_to_syslog)
    linked = linked or (isinstance(rsyslog, RsyslogConfig) and rsyslog.imjournal)
    return LogStream(
        name="journald",
        kind="journald",
        present=True,
        paths=("/var/log/journal", "/run/log/journal"),
        retention=config if isinstance(config, Unavailable) else journald_retention(config),
        oldest=collect_journal_oldest(runner),
        forwarded_to=_forwarded(sources, JOURNAL_FACILITIES, via_syslog=linked),
    )


def _audit_forwarding(runner: Runner, sources: _Sources) -> tuple[LogForwarding, ...] | Unavailable:
    """audisp-remote targets, and syslog rules carrying what the audit syslog plugin sends."""
    found: list[LogForwarding] = []
    try:
        for folder in AUDIT_PLUGIN_DIRS:
            try:
                names = runner.list_dir(folder)
            except SourceMissing:
                continue
            for name in names:
                if name not in {"au-remote.conf", "syslog.conf"}:
                    continue
                active, args = parse_audit_plugin(runner.read_text(f"{folder}/{name}"))
                if not active:
                    continue
                if name == "syslog.conf":
                    via_syslog = _forwarded(sources, (syslog_plugin_facility(args),))
                    if isinstance(via_syslog, Unavailable):
                        return via_syslog
                    found.extend(via_syslog)
                    continue
                conf = next((c for c in AUDISP_REMOTE_CONFS if runner.exists(c)), None)
                rule = None if conf is None else parse_audisp_remote(runner.read_text(conf), conf)
                if rule is not None:
                    found.append(rule)
    except (GatherError, ValueError) as exc:
        return Unavailable(f"audit dispatcher plugins unreadable: {exc}")
    return tuple(found)


def _audit_stream(
    runner: Runner, sources: _Sources
) -> tuple[LogStream, AuditdConfig | Unavailable | None]:
    if not runner.exists(AUDITD_CONF):
        absent = LogStream(
            name="audit",
            kind="auditd",
            present=False,
            absent_reason=f"auditd is not installed ({AUDITD_CONF} does not exist)",
        )
        return absent, None
    try:
        config = parse_auditd_conf(runner.read_text(AUDITD_CONF))
    except (GatherError, ValueError) as exc:
        unreadable = Unavailable(f"{AUDITD_CONF} unreadable: {exc}")
        return LogStream("audit", "auditd", True, retention=unreadable), unreadable
    files = _siblings(runner, config.log_file)
    oldest: OldestRecord | Unavailable | None
    if isinstance(files, Unavailable):  # /var/log/audit is 0700 root: a non-root agent
        oldest, files = files, []
    else:
        oldest = oldest_record(runner, files, now=sources.now) if files else None
    stream = LogStream(
        name="audit",
        kind="auditd",
        present=True,
        paths=tuple(reversed(files)) or (config.log_file,),
        retention=auditd_retention(config),
        oldest=oldest,
        forwarded_to=_audit_forwarding(runner, sources),
    )
    return stream, config


def _access_forwarding(sources: _Sources, path: str) -> tuple[LogForwarding, ...] | Unavailable:
    """Forwarding rules carrying what an rsyslog imfile input reads from `path`."""
    rsyslog = sources.rsyslog
    if isinstance(rsyslog, Unavailable):
        return rsyslog
    if rsyslog is None:
        return ()
    found: list[LogForwarding] = []
    for source in rsyslog.inputs:
        if source.pattern != path and not _pattern_matches(source.pattern, path):
            continue
        for rule in rsyslog.forwards:
            if source.ruleset is None:
                wanted = carries(rule, (source.facility,))
            else:  # an input bound to a ruleset: its unconditional actions carry it
                wanted = rule.condition == f"ruleset {source.ruleset}" and (
                    rule.selector is None or selector_covers(rule.selector, source.facility)
                )
            if wanted and rule not in found:
                found.append(rule)
    return tuple(found)


def _syslog_forwarding(
    runner: Runner,
) -> tuple[RsyslogConfig | Unavailable | None, tuple[LogForwarding, ...] | Unavailable]:
    try:
        files = _conf_files(runner, RSYSLOG_CONF, RSYSLOG_DIR)
        rsyslog: RsyslogConfig | Unavailable | None = (
            None if files is None else parse_rsyslog(files)
        )
    except GatherError as exc:
        rsyslog = Unavailable(f"rsyslog configuration unreadable: {exc}")
    try:
        syslog_ng = parse_syslog_ng(_conf_files(runner, SYSLOG_NG_CONF, SYSLOG_NG_DIR) or [])
    except GatherError as exc:
        return rsyslog, Unavailable(f"syslog-ng configuration unreadable: {exc}")
    if isinstance(rsyslog, Unavailable):
        return rsyslog, rsyslog
    return rsyslog, (*(rsyslog.forwards if rsyslog else ()), *syslog_ng)


def collect_logs(
    runner: Runner, access_logs: Sequence[str] = (), *, now: datetime | None = None
) -> LogFacts:
    """Log retention facts: journald, auth, syslog, audit, then each access log of the site
    configuration (a path, or a glob such as /var/log/tomcat9/localhost_access_log.*.txt)."""
    now = now or datetime.now(UTC)
    rsyslog, forwarding = _syslog_forwarding(runner)
    sources = _Sources(rsyslog, forwarding, collect_logrotate(runner), now)
    journald = collect_journald_config(runner)
    streams = [_journald_stream(runner, journald, sources)]
    for name, candidates, facilities in (
        ("auth", AUTH_FILES, AUTH_FACILITIES),
        ("syslog", SYSLOG_FILES, SYSLOG_FACILITIES),
    ):
        path = _syslog_file(runner, rsyslog, candidates, facilities[-1])
        if path is None:
            streams.append(
                LogStream(
                    name=name,
                    kind="logrotate",
                    present=False,
                    absent_reason=f"no syslog daemon writes {' or '.join(candidates)}: these "
                    "records stay in the journal (target journald)",
                )
            )
            continue
        forwarded = _forwarded(sources, facilities)
        streams.append(_file_stream(runner, sources, name, path, forwarded, kind="logrotate"))
    audit, auditd = _audit_stream(runner, sources)
    streams.append(audit)
    for path in access_logs:
        forwarded = _access_forwarding(sources, path)
        streams.append(_file_stream(runner, sources, path, path, forwarded, kind="file"))
    every_rule = forwarding
    if isinstance(forwarding, tuple) and isinstance(audit.forwarded_to, tuple):
        remote = tuple(f for f in audit.forwarded_to if f.daemon == "audisp-remote")
        every_rule = (*forwarding, *remote)
    return LogFacts(
        observed_at=_iso(now),
        streams=tuple(streams),
        journald=journald,
        logrotate=sources.logrotate,
        auditd=auditd,
        forwarding=every_rule,
    )
