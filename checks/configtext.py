"""One-line messages for config files validated with msgspec, shared by the agent's config, the
collector's settings and the scanner's zones file: "KEY: PROBLEM (value: VALUE)", naming the key
by its dotted path and never echoing the value of a key that may hold a secret.

Sections validate their own fields in `__post_init__` by raising `ValueError("<field>: <problem>")`
(or `"<field>[<index>]: <problem>"` for one item of a list); the message is then attributed to
that field rather than to the whole section.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import msgspec

_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`")
_FIELD = re.compile(r"^(?P<key>[a-z_]+)(?P<index>\[\d+\])?: (?P<rest>.*)$")
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
    # Nothing to show for an absent or null value, nor for a whole section or list.
    if value is None or isinstance(value, dict | list):
        return ""
    if dotted.rsplit(".", 1)[-1] in secret_keys:
        return " (value not shown: it may hold a secret)"
    if isinstance(value, str) and "://" in value and "@" in value.split("://", 1)[1]:
        return " (value not shown: it may hold a password)"
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
        # A section's own validation names the field (and item) it rejects.
        path = f"{path}.{m.group('key')}{m.group('index') or ''}"
        message, dotted = m.group("rest"), path.lstrip(".")
    shown = _shown(dotted, lookup(data, path), secret_keys)
    return f"{dotted or '(top level)'}: {message}{shown}"


class ConfigFileError(ValueError):
    """A config file could not be read as YAML; the message is one line naming the file."""


def read_yaml(path: Path, kind: str, noun: str) -> Any:
    """Read `path` as YAML (libyaml when present). `kind` names the file in "<kind> file not
    found", `noun` in "permission denied reading <noun>". Raises `ConfigFileError`."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: {kind} file not found") from None
    except IsADirectoryError:
        raise ConfigFileError(f"{path}: is a directory, not a {kind} file") from None
    except PermissionError:
        raise ConfigFileError(f"{path}: permission denied reading {noun}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 — a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigFileError(f"{path}: invalid YAML{where}: {problem}") from None
    except (ValueError, RecursionError) as exc:
        # PyYAML's int() of a scalar past 4300 digits, or nesting deeper than the stack.
        reason = "nesting too deep" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise ConfigFileError(f"{path}: invalid YAML: {reason}") from None
