"""The agent's YAML config, validated at the boundary.

Any problem — missing file, bad YAML, unknown key, wrong type, unknown check id or parameter — is a
`ConfigError` whose message is one line naming the file, the key and the offending value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from checks.registry import Registry
from checks.runner import ParameterError, validate_overrides

DEFAULT_TCTI = "device:/dev/tpmrm0"


class ConfigError(Exception):
    """The config cannot be used. The message is the one line the user sees."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TpmConfig(_Strict):
    tcti: str = Field(
        DEFAULT_TCTI,
        description="TCTI the TSS connects with: device:/dev/tpmrm0, swtpm:host=H,port=N, ...",
    )

    @field_validator("tcti")
    @classmethod
    def _tcti(cls, value: str) -> str:
        name = value.split(":", 1)[0]
        if name not in {"device", "swtpm", "mssim", "tabrmd", "libtpms", "cmd"}:
            raise ValueError(
                "TCTI must start with device:, swtpm:, mssim:, tabrmd:, libtpms: or cmd:"
            )
        return value


class ChecksConfig(_Strict):
    disabled: tuple[str, ...] = Field((), description="Check ids not to run on this host")
    parameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-check parameter overrides: {check_id: {name: value}}"
    )


class AgentConfig(_Strict):
    site: str | None = Field(None, description="Where this host stands (data centre), e.g. dc1")
    tpm: TpmConfig = TpmConfig()
    checks: ChecksConfig = ChecksConfig()


def _describe(error: Any, data: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {key} (value: {error['input']!r})"
    if error["type"] == "missing":
        return f"missing key {key}"
    msg = error["msg"].removeprefix("Value error, ")
    return f"{key}: {msg} (value: {error['input']!r})"


def parse_config(data: Any, source: str, registry: Registry) -> AgentConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc.errors()[0], data)}") from None
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
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_config(data, str(path), registry)
