"""Times in log configuration and log files: systemd time spans (`MaxRetentionSec=6month`), the
timestamp a log line starts with (audit, RFC 3339, access-log, nginx and BSD syslog formats), and
how instants are written in the facts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

SECONDS_PER_DAY = 86400.0


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
_TIMESPAN_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-zµ]*)")


def parse_timespan(text: str) -> float:
    """A systemd time span ("6month", "1y 2w", ".5d", "3600") in seconds; `infinity` is
    `math.inf`. Raises ValueError."""
    rest = text.strip()
    if not rest:
        raise ValueError("empty time span")
    if rest == "infinity":
        return math.inf
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


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as `LogFacts` stores instants."""
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
