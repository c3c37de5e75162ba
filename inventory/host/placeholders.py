"""Which SMBIOS strings name no machine: fillers firmware vendors leave when the OEM never set the
field, recognised by their shape rather than only by a list of known strings.

Two kinds of field are judged differently. A *text* field (vendor, product name, BIOS version)
is a placeholder when it is empty, a known filler, one repeated character, or made only of the
words firmware templates use ("System Product Name", "Type2 - Board Version", "TBD by OEM").
An *identifier* (system and board serial, system UUID) must also tell machines apart, so it is
a placeholder as well when it names a field or a filler anywhere ("Type2 - Board Serial Number",
"OEM-0001"), is too short to be unique (fewer than four letters and digits, Scaleway's "42"),
or is a sequence: a counting run of digits or letters ("123456789", "abcdef"), one with a vendor
or model prefix ("SYS-1234567890"), a zero-padded counter ("00000001"), or one short unit
repeated ("121212"). A UUID-shaped identifier is a placeholder when its 32 hex digits walk up by
0 or 1 with at most four breaks ("12345678-1234-5678-90AB-CDDEEFAABBCC",
"11111111-2222-3333-4444-555555555555") or its bytes, 16-bit or 32-bit words form one arithmetic
progression in either byte order the kernel may print (AMI's
"03000200-0400-0500-0006-000700080009" is the words 0002…0009). Real identifiers with a long
constant stretch keep a random part and pass: Supermicro's `00000000-0000-0000-0000-<MAC>`,
Oracle's `080020FF-FFFF-FFFF-FFFF-<MAC>`, HP's UUIDs of ASCII serial digits.
"""

from __future__ import annotations

import re
import uuid
from itertools import pairwise
from typing import Literal

Kind = Literal["text", "identifier"]

# Matched whole, case-insensitively after trimming: the fillers the rules below cannot see in a
# text field ("N/A" is two one-letter words; a product name may be digits, a serial may not).
_KNOWN = frozenset(("n/a", "123456789", "0123456789", "1234567890"))

# Words that SMBIOS templates are made of: the names of the fields themselves and the ways of
# saying "not set". A value made only of these (a trailing digit allowed: "Type2", "Name1")
# describes a field, not a machine.
_FILLER_WORDS = frozenset(
    (
        # the fields' own names
        "system",
        "product",
        "name",
        "manufacturer",
        "manufacture",
        "vendor",
        "version",
        "serial",
        "number",
        "num",
        "no",
        "sn",
        "uuid",
        "sku",
        "family",
        "asset",
        "tag",
        "chassis",
        "base",
        "board",
        "baseboard",
        "mainboard",
        "motherboard",
        "location",
        "in",
        "type",
        "config",
        "id",
        # the ways of saying "not set"
        "default",
        "string",
        "to",
        "be",
        "filled",
        "fill",
        "by",
        "oem",
        "tbd",
        "tba",
        "define",
        "defined",
        "undefined",
        "not",
        "specified",
        "unspecified",
        "applicable",
        "available",
        "settable",
        "present",
        "provided",
        "none",
        "null",
        "nil",
        "na",
        "unknown",
        "empty",
        "blank",
        "invalid",
    )
)

# Template text inside an identifier: a serial never contains the name of its own field.
_TEMPLATE = re.compile(
    r"serial\s*(?:number|num|no)\b|\bto be filled\b|\bfilled by\b|\btbd\b|\boem\b|\bdefault\b"
    r"|\bplaceholder\b|\bnot (?:specified|applicable|available|settable|present)\b"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_OEM = re.compile(r"\bo\.\s*e\.\s*m\b\.?")
_DIGITS = "0123456789"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_MIN_IDENTIFIER = 4
"""Fewer letters and digits than this cannot tell the machines of one vendor apart."""
_MIN_SEQUENCE = 4
"""A whole identifier that counts (1234, abcd) is a sequence from this length on."""
_MIN_PREFIXED_RUN = 6
"""A run after a prefix must be this long: a random 6-digit tail counts by chance 2 in 10^5."""
_MAX_UUID_BREAKS = 4
"""A random UUID breaks its walk ~27 times in 31 steps; templates break it at most 4 times."""


def placeholder_reason(value: str, kind: Kind = "text") -> str | None:  # noqa: PLR0911 — a rule each
    """Why `value` names no machine, or None when it may. `kind` says what the field is."""
    text = value.strip()
    # Words run together are told apart by their capitals ("Type1ProductConfigId"), but only in
    # mixed case: in "CZA9O65OEM" a capital after a digit starts no word.
    spaced = _CAMEL.sub(" ", text) if text.upper() != text and text.lower() != text else text
    folded = _OEM.sub("oem", spaced.casefold())
    if not text:
        return "empty"
    if text.casefold() in _KNOWN:
        return "a known filler"
    if len(set(text.casefold())) == 1:
        return "one repeated character"
    words = re.findall(r"[^\W_]+", folded)
    if words and all(_is_filler_word(word) for word in words):
        return "filler words"
    if _UUID.fullmatch(text.casefold()):  # judged as a UUID in whichever field it stands
        return _uuid_reason(text.casefold())
    if kind == "text":
        return None
    if _TEMPLATE.search(folded):
        return "names a field or a filler"
    return _sequence_reason(words)


def is_placeholder(value: str, kind: Kind = "text") -> bool:
    """True when a DMI string carries no identity (see `placeholder_reason`)."""
    return placeholder_reason(value, kind) is not None


def _is_filler_word(word: str) -> bool:
    return word in _FILLER_WORDS or (word[-1:].isdigit() and word[:-1] in _FILLER_WORDS)


def _step(a: str, b: str) -> int | None:
    """The signed step from one character to the next within digits or within letters."""
    if a in _DIGITS and b in _DIGITS:
        # 9 → 0 counts on: "1234567890" is how a keyboard counts to ten.
        return {0: 0, 1: 1, 9: -1}.get((int(b) - int(a)) % 10)
    if a.isalpha() and b.isalpha() and a.isascii() and b.isascii():
        diff = ord(b) - ord(a)
        return diff if diff in (-1, 0, 1) else None
    return None


def _is_run(chars: str) -> bool:
    """Counting up or down by one at every step."""
    steps = {_step(a, b) for a, b in pairwise(chars)}
    return steps in ({1}, {-1})


def _sequence_reason(words: list[str]) -> str | None:  # noqa: PLR0911 — one return per shape
    """`words`: the identifier's runs of letters and digits, case-folded."""
    core = "".join(words)
    if len(core) < _MIN_IDENTIFIER:
        return "too short to tell machines apart"
    if len(set(core)) == 1:
        return "one repeated character"
    if len(core) >= _MIN_SEQUENCE and _is_run(core):
        return "a counting sequence"
    for size in range(1, 5):
        repeats, rest = divmod(len(core), size)
        if repeats >= 3 and not rest and core == core[:size] * repeats:
            return "one short unit repeated"
    if set(core) <= set(_DIGITS) and len(core) >= 6 and core[:-2] == "0" * (len(core) - 2):
        return "a zero-padded counter"
    # The prefix ends where the last word's digits start: "SYS-1234567890", "SN123456789",
    # "X10DRH 1234567890" (a model's own digits stay out of the run).
    tail = re.search(r"[0-9]+$", words[-1])
    if tail and (tail.start() > 0 or len(words) > 1) and len(tail.group()) >= _MIN_PREFIXED_RUN:
        digits = tail.group()
        if _is_run(digits) or len(set(digits)) == 1:
            return "a digit sequence after a prefix"
    return None


def _uuid_reason(text: str) -> str | None:
    """Template UUIDs: a slow walk over the hex digits, or bytes in arithmetic progression."""
    raw = uuid.UUID(text)
    # The kernel prints SMBIOS 2.6+ UUIDs with the first three fields little-endian; older
    # tables (and some firmware) in network order. A template is a template in either.
    for data in (raw.bytes, raw.bytes_le):
        digits = data.hex()
        breaks = sum(1 for a, b in pairwise(digits) if (int(b, 16) - int(a, 16)) % 16 > 1)
        if breaks <= _MAX_UUID_BREAKS:
            return "a template UUID (its hex digits count)"
        for width in (1, 2, 4):
            words = [int.from_bytes(data[i : i + width], "big") for i in range(0, 16, width)]
            modulus = 1 << (8 * width)
            if len({(b - a) % modulus for a, b in pairwise(words)}) == 1:
                return "a template UUID (its bytes count)"
    return None
