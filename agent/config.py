"""The agent's YAML config, validated at the boundary.

Any problem — missing file, bad YAML, unknown key, wrong type, unknown check id or parameter — is a
`ConfigError` whose message is one line naming the file, the key and the offending value.
Validated with msgspec (light enough for an agent that must stay under 50 MB).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from checks.registry import Registry
from checks.runner import ParameterError, validate_overrides

DEFAULT_TCTI = "device:/dev/tpmrm0"
TCTI_NAMES = ("device", "swtpm", "mssim", "tabrmd", "libtpms", "cmd")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(Exception):
    """The config cannot be used. The message is the one line the user sees."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Config sections are immutable and refuse unknown keys."""


class TpmConfig(_Section, forbid_unknown_fields=True, frozen=True):
    tcti: str = DEFAULT_TCTI
    """TCTI the TSS connects with: device:/dev/tpmrm0, swtpm:host=H,port=N, ..."""

    def __post_init__(self) -> None:
        if self.tcti.split(":", 1)[0] not in TCTI_NAMES:
            # "<field>: <problem>" lets the error name the key, not just its section.
            raise ValueError("tcti: must start with " + ", ".join(f"{n}:" for n in TCTI_NAMES))


class ChecksConfig(_Section, forbid_unknown_fields=True, frozen=True):
    disabled: tuple[str, ...] = ()
    """Check ids not to run on this host."""
    parameters: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Per-check parameter overrides: {check_id: {name: value}}."""


class AgentConfig(_Section, forbid_unknown_fields=True, frozen=True):
    site: str | None = None
    """Where this host stands (data centre), e.g. dc1."""
    tpm: TpmConfig = msgspec.field(default_factory=TpmConfig)
    checks: ChecksConfig = msgspec.field(default_factory=ChecksConfig)


_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`")
_FIELD = re.compile(r"^(?P<key>[a-z_]+): (?P<rest>.*)$")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _lookup(data: Any, path: str) -> Any:
    """The value at a msgspec path such as `.checks.disabled[0]`."""
    for key, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        try:
            data = data[key] if key else data[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _describe(error: msgspec.ValidationError, data: Any) -> str:
    text = str(error)
    at = _AT.search(text)
    path = at.group("path") if at else ""
    message = text[: at.start()] if at else text
    dotted = path.lstrip(".")
    if m := _UNKNOWN.match(message):
        key = ".".join(p for p in (dotted, m.group("key")) if p)
        value = _lookup(data, f"{path}.{m.group('key')}")
        return f"unknown key {key} (value: {value!r})"
    if m := _MISSING.match(message):
        return f"missing key {'.'.join(p for p in (dotted, m.group('key')) if p)}"
    if (m := _FIELD.match(message)) and isinstance(_lookup(data, path), dict):
        # A section's own validation names the field it rejects.
        path, message = f"{path}.{m.group('key')}", m.group("rest")
        dotted = path.lstrip(".")
    return f"{dotted or '(top level)'}: {message} (value: {_lookup(data, path)!r})"


def parse_config(data: Any, source: str, registry: Registry) -> AgentConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        config = msgspec.convert(data, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, data)}") from None
    for check_id in config.checks.disabled:
        if check_id not in registry:
            raise ConfigError(f"{source}: checks.disabled: unknown check id {check_id!r}")
    unknown = [c for c in config.checks.parameters if c not in registry]
    if unknown:
        raise ConfigError(f"{source}: checks.parameters: unknown check id {unknown[0]!r}")
    try:
        validate_overrides(registry, config.checks.parameters)
    except ParameterError as exc:
        raise ConfigError(f"{source}: checks.parameters: {exc}") from None
    return config


def load_config(path: Path, registry: Registry) -> AgentConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied reading the config") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 — a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_config(data, str(path), registry)
