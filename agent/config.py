"""The agent's YAML config, validated at the boundary.

Any problem — missing file, bad YAML, unknown key, wrong type, unknown check id or parameter — is a
`ConfigError` whose message is one line naming the file, the key and the offending value.
Validated with msgspec (light enough for an agent that must stay under 50 MB). The `collector`
section, the spool and the signature suite say where and how reports are pushed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import msgspec

from checks.configtext import ConfigFileError, describe, read_yaml

if TYPE_CHECKING:
    from checks.facts.backup import BackupSource
    from checks.registry import Registry

# yaml and the check runner are imported where they are used: the process that delivers a report
# (agent/push.py) needs the config types but neither of them, and starts faster without.

DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_CREDENTIAL_FILE = "/etc/medsec/agent.cred"
DEFAULT_SPOOL_DIR = "/var/lib/medsec/spool"
TCTI_NAMES = ("device", "swtpm", "mssim", "tabrmd", "libtpms", "cmd")


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
    only: tuple[str, ...] | None = None
    """Run only the checks matching these ids or patterns (`tpm.*`); None: every check."""
    disabled: tuple[str, ...] = ()
    """Check ids not to run on this host."""

    def selected(self, ids: Iterable[str]) -> list[str]:
        chosen = [i for i in ids if self.only is None or any(fnmatchcase(i, p) for p in self.only)]
        return [i for i in chosen if i not in self.disabled]

    parameters: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    """Per-check parameter overrides: {check_id: {name: value}}."""


class EncryptionConfig(_Section, forbid_unknown_fields=True, frozen=True):
    required_mounts: tuple[str, ...] | None = None
    """Mounts that must sit on dm-crypt; None: the data mounts present (/, /var, /srv, DB dirs)."""
    min_strength: Literal["aes-256", "sm4"] | None = None
    """Alias of `checks.parameters.disk.cipher_strength.min_strength` (the check's default
    applies when neither is set): aes-256 (AES-256 or SM4 pass) or sm4 (only SM4 passes)."""

    def __post_init__(self) -> None:
        for mount in self.required_mounts or ():
            if not mount.startswith("/"):
                raise ValueError(f"required_mounts: {mount!r} is not an absolute path")


_SECRET_KEYS = {"restic": "password_file", "borg": "passphrase_file"}
_NEEDED = {
    "restic": ("repository", "password_file"),
    "borg": ("repository", "passphrase_file"),
    "postgres": ("dsn",),
    "path": ("glob",),
}


class BackupConfig(_Section, forbid_unknown_fields=True, frozen=True):
    name: str
    kind: Literal["restic", "borg", "postgres", "path"]
    repository: str | None = None
    password_file: str | None = None
    passphrase_file: str | None = None
    dsn: str | None = None
    glob: str | None = None
    rpo_minutes: int | None = None
    site: str | None = None

    def __post_init__(self) -> None:
        for key in _NEEDED[self.kind]:
            if not getattr(self, key):
                raise ValueError(f"{key}: a {self.kind} source needs {key}")
        for key in ("repository", "password_file", "passphrase_file", "dsn", "glob"):
            if getattr(self, key) is not None and key not in _NEEDED[self.kind]:
                raise ValueError(f"{key}: not used by a {self.kind} source")
        if self.rpo_minutes is not None and not 0 < self.rpo_minutes <= 525_600:
            raise ValueError("rpo_minutes: must be between 1 and 525600 (a year)")
        secret = _SECRET_KEYS.get(self.kind)
        if secret:
            path = getattr(self, secret)
            if not os.path.isfile(path):
                raise ValueError(f"{secret}: {path} does not exist")
            if not os.access(path, os.R_OK):
                raise ValueError(f"{secret}: {path} is not readable by this user")
        if self.dsn is not None and _dsn_has_password(self.dsn):
            raise ValueError(
                "dsn: must not contain a password (argv is visible to every user); "
                "use passfile= or ~/.pgpass"
            )
        if self.glob is not None and not self.glob.startswith("/"):
            raise ValueError("glob: must be an absolute path pattern")

    def source(self) -> BackupSource:
        from checks.facts.backup import BackupSource

        return BackupSource(
            name=self.name,
            kind=self.kind,
            rpo_minutes=self.rpo_minutes,
            site=self.site,
            repository=self.repository,
            password_file=self.password_file or self.passphrase_file,
            dsn=self.dsn,
            glob=self.glob,
        )


def _dsn_has_password(dsn: str) -> bool:
    if "://" in dsn:
        netloc = dsn.split("://", 1)[1].split("/", 1)[0]
        userinfo = netloc.rpartition("@")[0]
        return ":" in userinfo or "password=" in dsn.lower()
    return bool(re.search(r"(^|\s)password\s*=", dsn, re.IGNORECASE))


class LogsConfig(_Section, forbid_unknown_fields=True, frozen=True):
    min_retention_days: int | None = None
    """Alias of `checks.parameters.log.retention.min_retention_days` (default: the check's, six
    months: MNDS 7.2.3.4 and the Cybersecurity Law)."""
    access_logs: tuple[str, ...] = ()
    """Application access logs whose rotation is checked too (absolute paths)."""
    central_servers: tuple[str, ...] | None = None
    """Alias of `checks.parameters.log.retention.central_log_servers`: log servers declared to
    keep logs centrally; forwarding there satisfies retention."""

    def __post_init__(self) -> None:
        if self.min_retention_days is not None and not 1 <= self.min_retention_days <= 3650:
            raise ValueError("min_retention_days: must be between 1 and 3650")


def check_collector_url(url: str) -> str:
    """The collector's base URL without a trailing slash; ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        # The bearer token and the reports must never travel in clear text.
        raise ValueError("must be an https:// URL (http is refused)")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user or password")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port  # noqa: B018 — raises ValueError for a port out of range
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url.rstrip("/")


class CollectorConfig(_Section, forbid_unknown_fields=True, frozen=True):
    url: str
    """Base URL of the collector, https only: https://collector.example:8443."""
    ca_file: str
    """PEM file of the CA (or the self-signed certificate) the collector's TLS is verified with."""
    credential_file: str = DEFAULT_CREDENTIAL_FILE
    """Written by `medsec-agent enroll` (mode 0600): the API token and the agent's signing key."""
    timeout_seconds: float = 10.0
    """Connect/read timeout of one attempt."""
    retries: int = 3
    """Attempts per report (exponential backoff with jitter between them) before it is spooled."""

    def __post_init__(self) -> None:
        try:
            check_collector_url(self.url)
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        for key in ("ca_file", "credential_file"):
            if not os.path.isabs(getattr(self, key)):
                raise ValueError(f"{key}: must be an absolute path")
        if not os.path.isfile(self.ca_file):
            raise ValueError(f"ca_file: {self.ca_file} does not exist")
        if not 0 < self.timeout_seconds <= 300:
            raise ValueError("timeout_seconds: must be between 0 and 300")
        if not 1 <= self.retries <= 10:
            raise ValueError("retries: must be between 1 and 10")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


class ProbeConfig(_Section, forbid_unknown_fields=True, frozen=True):
    """`medsec-agent probe` (and `run`, once per timer tick): claim this zone's scan jobs from the
    collector, check each against `targets`, run it, post the result (agent/probe.py)."""

    zone: str
    """The zone this probe stands in; the collector enrolled it for that zone and no other."""
    targets: tuple[str, ...]
    """The CIDRs this probe may ever scan or probe: its own safety list. A job naming anything
    outside them is refused here, whatever the collector asks."""
    concurrency: int = 2
    """Jobs run at once."""
    wait_seconds: float = 20.0
    """How long one claim waits at the collector for a job (long poll)."""
    nmap: str | None = None
    """The nmap to run (absolute path); None: nmap from the system PATH."""

    def __post_init__(self) -> None:
        if not _ZONE.match(self.zone):
            raise ValueError(f"zone: {self.zone!r} is not a zone name")
        if not self.targets:
            raise ValueError("targets: at least one CIDR this probe may scan")
        from collector.scan.probe_guard import Targets

        try:
            Targets.parse(self.targets)
        except ValueError as exc:
            raise ValueError(f"targets: {exc}") from None
        if not 1 <= self.concurrency <= 64:
            raise ValueError("concurrency: must be between 1 and 64")
        if not 0 <= self.wait_seconds <= 25:
            raise ValueError("wait_seconds: must be between 0 and 25")
        if self.nmap is not None and not os.path.isabs(self.nmap):
            raise ValueError("nmap: must be an absolute path")


_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class AgentConfig(_Section, forbid_unknown_fields=True, frozen=True):
    site: str | None = None
    """Where this host stands (data centre), e.g. dc1; compared with backup copies' sites."""
    tpm: TpmConfig = msgspec.field(default_factory=TpmConfig)
    encryption: EncryptionConfig = msgspec.field(default_factory=EncryptionConfig)
    backups: tuple[BackupConfig, ...] = ()
    logs: LogsConfig = msgspec.field(default_factory=LogsConfig)
    backup_timeout_seconds: float = 20.0
    """How long one backup source may take before it reports `error` instead of stalling."""
    checks: ChecksConfig = msgspec.field(default_factory=ChecksConfig)
    collector: CollectorConfig | None = None
    """Where `run` pushes its report; None: the report is only printed."""
    spool_dir: str = DEFAULT_SPOOL_DIR
    """Reports the collector has not taken yet (encrypted at rest), and rejected/ beside them."""
    spool_max_mb: int = 50
    """The spool never grows past this; a report that would not fit is refused loudly."""
    crypto: Literal["ed25519", "sm"] = "ed25519"
    """Report signatures: Ed25519, or SM2 over SM3 (GB/T 32918) with `sm`."""
    probe: ProbeConfig | None = None
    """Serve as a probe of a zone (agent/probe.py); None: an ordinary agent."""

    def __post_init__(self) -> None:
        if self.probe is not None and self.collector is None:
            raise ValueError("probe: a probe needs the collector section (it claims jobs there)")
        names = [b.name for b in self.backups]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"backups: the name {dup!r} is used twice")
        if not 0 < self.backup_timeout_seconds <= 600:
            raise ValueError("backup_timeout_seconds: must be between 0 and 600")
        if not os.path.isabs(self.spool_dir):
            raise ValueError("spool_dir: must be an absolute path")
        if not 1 <= self.spool_max_mb <= 102_400:
            raise ValueError("spool_max_mb: must be between 1 and 102400")

    @property
    def signature_alg(self) -> Literal["ed25519", "sm2-sm3"]:
        """The envelope algorithm (checks.envelope) `crypto` selects."""
        return "sm2-sm3" if self.crypto == "sm" else "ed25519"

    def check_overrides(self) -> dict[str, dict[str, Any]]:
        """The site's check parameters: `checks.parameters`, plus the section keys that are
        documented aliases of parameters (`PARAMETER_ALIASES`). Defaults live in the checks only;
        setting a parameter both ways is refused when the config is parsed."""
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.checks.parameters.items()}
        for (section, key), (check_id, name) in PARAMETER_ALIASES.items():
            value = getattr(getattr(self, section), key)
            if value is not None:
                merged.setdefault(check_id, {})[name] = (
                    list(value) if isinstance(value, tuple) else value
                )
        return merged

    def alias_conflicts(self) -> list[str]:
        """Parameters set both through an alias and in `checks.parameters`."""
        return [
            f"{section}.{key} and checks.parameters.{check_id}.{name} both set it"
            for (section, key), (check_id, name) in PARAMETER_ALIASES.items()
            if getattr(getattr(self, section), key) is not None
            and name in self.checks.parameters.get(check_id, {})
        ]


PARAMETER_ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("encryption", "min_strength"): ("disk.cipher_strength", "min_strength"),
    ("encryption", "required_mounts"): ("disk.encrypted_mounts", "required_mounts"),
    ("logs", "min_retention_days"): ("log.retention", "min_retention_days"),
    ("logs", "central_servers"): ("log.retention", "central_log_servers"),
}
"""Config keys kept from before `checks.parameters` existed: each is another spelling of one
check parameter, validated against that parameter's type, with no default of its own."""


# Values of these keys may carry a secret: an error names the key but never echoes the value.
_SECRET_VALUE_KEYS = {"dsn"}


def parse_config(data: Any, source: str, registry: Registry) -> AgentConfig:
    from checks.runner import ParameterError, validate_overrides

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        config = msgspec.convert(data, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc, data, _SECRET_VALUE_KEYS)}") from None
    for pattern in config.checks.only or ():
        if not any(fnmatchcase(i, pattern) for i in registry.ids()):
            raise ConfigError(f"{source}: checks.only: {pattern!r} matches no check")
    for check_id in config.checks.disabled:
        if check_id not in registry:
            raise ConfigError(f"{source}: checks.disabled: unknown check id {check_id!r}")
    unknown = [c for c in config.checks.parameters if c not in registry]
    if unknown:
        raise ConfigError(f"{source}: checks.parameters: unknown check id {unknown[0]!r}")
    conflicts = config.alias_conflicts()
    if conflicts:
        raise ConfigError(f"{source}: {conflicts[0]}; keep one")
    try:
        validate_overrides(
            registry, {k: v for k, v in config.check_overrides().items() if k in registry}
        )
    except ParameterError as exc:
        raise ConfigError(f"{source}: checks.parameters: {exc}") from None
    return config


def load_config(path: Path, registry: Registry) -> AgentConfig:
    try:
        data = read_yaml(path, "config", "the config")
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(data, str(path), registry)
