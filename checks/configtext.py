"""One-line messages for config files validated with msgspec, shared by the agent's config and the
collector's settings: "KEY: PROBLEM (value: VALUE)", naming the key by its dotted path and never
echoing the value of a key that may hold a secret.

Sections validate their own fields in `__post_init__` by raising `ValueError("<field>: <problem>")`;
the message is then attributed to that field rather than to the whole section.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import msgspec

_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`")
_FIELD = re.compile(r"^(?P<key>[a-z_]+): (?P<rest>.*)$")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def lookup(data: Any, path: str) -> Any:
    """The value at a msgspec path such as `.checks.disabled[0]`; None when absent."""
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        try:
            data = data[key] if key else data[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _shown(dotted: str, value: Any, secret_keys: Collection[str]) -> str:
    if dotted.rsplit(".", 1)[-1] in secret_keys:
        return " (value not shown: it may hold a secret)"
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1]:
        return " (value not shown: it may hold a password)"
    if isinstance(value, dict | list):
        return ""
    return f" (value: {value!r})"


def describe(error: msgspec.ValidationError, data: Any, secret_keys: Collection[str] = ()) -> str:
    """The one line for a validation error of `data` (the parsed YAML)."""
    text = str(error)
    at = _AT.search(text)
    path = at.group("path") if at else ""
    message = text[: at.start()] if at else text
    dotted = path.lstrip(".")
    if m := _UNKNOWN.match(message):
        key = ".".join(p for p in (dotted, m.group("key")) if p)
        value = lookup(data, f"{path}.{m.group('key')}")
        return f"unknown key {key}{_shown(key, value, secret_keys)}"
    if m := _MISSING.match(message):
        return f"missing key {'.'.join(p for p in (dotted, m.group('key')) if p)}"
    if (m := _FIELD.match(message)) and isinstance(lookup(data, path), dict):
        path, message = f"{path}.{m.group('key')}", m.group("rest")
        dotted = path.lstrip(".")
    shown = _shown(dotted, lookup(data, path), secret_keys)
    return f"{dotted or '(top level)'}: {message}{shown}"
