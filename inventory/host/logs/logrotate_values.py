"""How logrotate reads one value: C numbers (`strtol` with base 0), sizes with their units, the
`[mode] owner group` of `create` and `su` (sscanf), the words of a pattern list (popt), taboo
names; and the users and groups `create` and `su` may name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

_SPACE = " \t\n\v\f\r"
_ULONG = 1 << 64


@dataclass(frozen=True)
class Accounts:
    """The users and groups `create` and `su` may name (from /etc/passwd and /etc/group)."""

    users: frozenset[str]
    uids: frozenset[int]
    groups: frozenset[str]
    gids: frozenset[int]

    @staticmethod
    def _known(name: str, names: frozenset[str], ids: frozenset[int]) -> bool:
        if name in names:
            return True
        # logrotate takes a number as an id when no name matches (strtoul base 10, < INT_MAX).
        digits = name[1:] if name[:1] == "+" else name
        return (
            digits.isascii()
            and digits.isdigit()
            and int(digits) < 2**31 - 1
            and (int(digits) in ids)
        )

    def user(self, name: str) -> bool:
        return self._known(name, self.users, self.uids)

    def group(self, name: str) -> bool:
        return self._known(name, self.groups, self.gids)


def parse_accounts(passwd: str, group: str) -> Accounts:
    """Names and ids from /etc/passwd and /etc/group text."""

    def table(text: str) -> tuple[frozenset[str], frozenset[int]]:
        names: set[str] = set()
        ids: set[int] = set()
        for line in text.splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[0] and not parts[0].startswith(("#", "+", "-")):
                names.add(parts[0])
                if parts[2].isdigit():
                    ids.add(int(parts[2]))
        return frozenset(names), frozenset(ids)

    users, uids = table(passwd)
    groups, gids = table(group)
    return Accounts(users, uids, groups, gids)


# ----------------------------------------------------------------------------- C numbers


def c_strtol(text: str) -> tuple[int, str]:
    """(value, rest) as C `strtol(text, &end, 0)` reads them: leading space, a sign, `0x` hex,
    a leading `0` octal, else decimal; no digits at all leaves the whole text as the rest."""
    i = 0
    while i < len(text) and text[i] in _SPACE:
        i += 1
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    hexdigits = "0123456789abcdefABCDEF"
    if text[i : i + 2] in ("0x", "0X") and text[i + 2 : i + 3] and text[i + 2] in hexdigits:
        base, allowed, i = 16, hexdigits, i + 2
    elif text[i : i + 1] == "0":
        base, allowed = 8, "01234567"
    else:
        base, allowed = 10, "0123456789"
    end = i
    while end < len(text) and text[end] in allowed:
        end += 1
    if end == i:
        return 0, text
    return sign * int(text[i:end], base), text[end:]


def as_int(value: int) -> int:
    """C's conversion of a long or unsigned long to a 32-bit int: the low 32 bits."""
    return (value + 2**31) % 2**32 - 2**31


def as_long(value: int) -> int:
    """C's `strtol`: clamped to the range of a long."""
    return max(-(2**63), min(2**63 - 1, value))


def as_ulong(value: int) -> int:
    """C's `strtoul`: the magnitude clamped to ULONG_MAX, a minus sign negated modulo 2**64."""
    magnitude = min(abs(value), _ULONG - 1)
    return (-magnitude) % _ULONG if value < 0 else magnitude


def logrotate_bytes(text: str) -> int | None:
    """The bytes of a `size`/`minsize`/`maxsize` value as logrotate reads it; None: logrotate
    refuses it (an unknown unit such as `m` or `MB`, a bad number, a negative size)."""
    multiplier = 1
    if text and text[-1] in "kK":
        multiplier, text = 1024, text[:-1]
    elif text and text[-1] == "M":
        multiplier, text = 1024**2, text[:-1]
    elif text and text[-1] == "G":
        multiplier, text = 1024**3, text[:-1]
    elif text and text[-1] not in "0123456789":
        return None
    value, rest = c_strtol(text)
    if rest:
        return None
    size = (multiplier * as_ulong(value)) % _ULONG
    return None if size >= 2**63 else size


# ----------------------------------------------------------------------------- scanf and popt


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _word(text: str, i: int) -> tuple[str, int]:
    end = i
    while end < len(text) and text[end] not in _SPACE:
        end += 1
    return text[i:end], end


def scan_owner(text: str, *, with_mode: bool) -> tuple[int, str, str]:  # noqa: PLR0911 — one return per count sscanf can give
    """(sscanf's count, user, group) of `[mode] user group` as logrotate's readModeUidGid reads
    `create`, `createolddir` and `su` (a count of 4 means extra words)."""
    user = group = ""
    i = _skip_space(text, 0)
    if with_mode:
        if i == len(text):
            return -1, user, group
        j = i + 1 if text[i] in "+-" else i
        k = j
        while k < len(text) and text[k] in "01234567":
            k += 1
        if k > j:
            count, i = 1, _skip_space(text, k)
            if i == len(text):
                return count, user, group
            user, i = _word(text, i)
            i = _skip_space(text, i)
            if i == len(text):
                return 2, user, group
            group, i = _word(text, i)
            return (3 if i == len(text) else 4), user, group
    # `key <owner> <group>`: no mode
    if i == len(text):
        return -1, user, group
    user, i = _word(text, i)
    i = _skip_space(text, i)
    if i == len(text):
        return 2, user, group
    group, i = _word(text, i)
    return (3 if i == len(text) else 4), user, group


def popt_split(text: str) -> list[str] | None:  # noqa: PLR0912 — popt's quoting rules, one branch each
    """The words of a pattern list as popt's poptParseArgvString splits them; None: popt refuses
    (a trailing backslash, or no word at all)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote and ch == quote:
            quote = ""
        elif quote:
            if ch == "\\":
                i += 1
                if i == len(text):
                    return None
                if text[i] != quote:
                    current.append("\\")
            current.append(text[i])
        elif ch in _SPACE:
            if current:
                words.append("".join(current))
                current = []
        elif ch in "\"'":
            quote = ch
        else:
            if ch == "\\":
                i += 1
                if i == len(text):
                    return None
            current.append(text[i])
        i += 1
    if current:
        words.append("".join(current))
    return words or None


def weekday(text: str) -> int | None:
    """`weekly N` as sscanf("%u%c") reads N: decimal, nothing after it, at most 7."""
    body = text.lstrip(_SPACE)
    sign = -1 if body[:1] == "-" else 1
    digits = body[1:] if body[:1] in ("+", "-") else body
    if not digits or any(ch not in "0123456789" for ch in digits):
        return None
    value = (sign * int(digits)) % 2**32
    return value if value <= 7 else None


def printable(ch: str) -> bool:
    """isprint(3) in the C locale, and not a space (logrotate's check of a mail address)."""
    return "!" <= ch <= "~"


def taboo_match(pattern: str, name: str) -> bool:
    # fnmatch(3) with FNM_PERIOD: a leading dot is matched only by a dot.
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)
