"""The collector's YAML settings (`collector.yaml`), validated at the boundary.

Any problem — missing file, bad YAML, unknown key, wrong type, an unusable listen address, a TLS
file that is missing or a private key other users can read, a database URL of another kind — is a
`SettingsError` whose message is one line naming the file, the key and the offending value. The
database URL may hold a password, so an error names that key but never echoes its value.
Relative paths (TLS files, a SQLite database) are taken relative to the settings file's folder,
so `medsec serve` behaves the same from any working directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, Literal

import msgspec

from checks.configtext import ConfigFileError, describe, read_yaml
from collector.models import AuditKey

DEFAULT_LISTEN = "127.0.0.1:8443"
DATABASE_SCHEMES = ("sqlite:///", "postgresql+psycopg://")
MIN_AUDIT_RETENTION_DAYS = 183
MAX_WORKERS = 64
"""MNDS 7.2.3.4 and the Cybersecurity Law: network logs are kept at least six months."""

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class SettingsError(Exception):
    """The settings cannot be used. The message is the one line the user sees."""


def check_host(host: str) -> str:
    """`host` if it is an IPv4 or IPv6 address or a DNS name; raises ValueError otherwise."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", host):
            raise ValueError(f"{host!r} is not a valid IPv4 address") from None
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
    return host


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port); raises ValueError naming the problem."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8443")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("the port must be a number between 1 and 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        return host, int(port_text)
    if ":" in host:
        raise ValueError("write an IPv6 address in brackets: [::1]:8443")
    return check_host(host), int(port_text)


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Settings sections are immutable and refuse unknown keys."""


class TlsSettings(_Section, forbid_unknown_fields=True, frozen=True):
    cert_file: str
    """PEM certificate (chain) the collector presents; agents verify it (their `ca_file`)."""
    key_file: str
    """PEM private key of that certificate; must not be readable by other users."""


class LimitSettings(_Section, forbid_unknown_fields=True, frozen=True):
    max_report_bytes: int = 1_048_576
    """Largest accepted report envelope; a bigger body is refused (413) before it is read."""
    max_future_skew_seconds: int = 300
    """How far in the future a report's `generated_at` may be (clock skew) before it is refused."""
    max_header_bytes: int = 32_768
    """Largest request head (request line and header fields, in bytes); a bigger one is refused
    (431) as it arrives, before any of it is parsed into a request. Agents send under 1 KiB."""
    max_header_fields: int = 100
    """Most header fields in one request; more are refused (431)."""
    header_timeout_seconds: int = 10
    """Time a connection has, from its TCP accept (TLS handshake included) or from the first
    byte of its next request, to deliver the complete request head; after it, 408 and closed."""
    max_connections_per_address: int = 64
    """Connections one client address may hold open at once (handshaking, active or closing);
    one more is closed at accept, before its TLS handshake. Counted per worker process."""

    def __post_init__(self) -> None:
        if not 1024 <= self.max_report_bytes <= 64 * 1_048_576:
            raise ValueError("max_report_bytes: must be between 1024 and 67108864 (64 MiB)")
        if not 0 <= self.max_future_skew_seconds <= 86_400:
            raise ValueError("max_future_skew_seconds: must be between 0 and 86400 (a day)")
        bounds = {
            "max_header_bytes": (1024, 1_048_576, "1024 and 1048576 (1 MiB)"),
            "max_header_fields": (16, 1000, "16 and 1000"),
            "header_timeout_seconds": (1, 300, "1 and 300"),
            "max_connections_per_address": (1, 100_000, "1 and 100000"),
        }
        for key, (low, high, say) in bounds.items():
            if not low <= getattr(self, key) <= high:
                raise ValueError(f"{key}: must be between {say}")


class EnrollmentSettings(_Section, forbid_unknown_fields=True, frozen=True):
    token_ttl_minutes: int = 60
    """How long an enrolment token printed by `medsec agents enroll` stays valid."""

    def __post_init__(self) -> None:
        if not 1 <= self.token_ttl_minutes <= 10_080:
            raise ValueError("token_ttl_minutes: must be between 1 and 10080 (a week)")


class ReportSettings(_Section, forbid_unknown_fields=True, frozen=True):
    retention_days: int = 400
    """How long reports (and their results) are kept; each host's newest report always stays.
    At least 183 days (six months of evidence); the default covers a yearly audit."""
    stale_after_minutes: int = 60
    """A host whose newest report is older gives `error` ("stale") in compliance reports."""
    scan_stale_after_minutes: int = 10_080
    """The same for the network evidence of a scan (a week: scans run daily or weekly)."""

    def __post_init__(self) -> None:
        if not MIN_AUDIT_RETENTION_DAYS <= self.retention_days <= 36_500:
            raise ValueError(
                f"retention_days: must be at least {MIN_AUDIT_RETENTION_DAYS} (six months of "
                "evidence) and at most 36500"
            )
        for key in ("stale_after_minutes", "scan_stale_after_minutes"):
            if not 1 <= getattr(self, key) <= 525_600:
                raise ValueError(f"{key}: must be between 1 and 525600 (a year)")


class SnapshotSettings(_Section, forbid_unknown_fields=True, frozen=True):
    dir: str = "snapshots"
    """Where signed auditor snapshots are kept (one zip each, never rewritten). Collectors
    sharing one PostgreSQL must share this folder too."""
    key_file: str = "snapshot.key"
    """The collector's snapshot signing key (PKCS#8 PEM, mode 0600), made on first use."""
    crypto: Literal["ed25519", "sm"] = "ed25519"
    """`sm`: snapshots are signed with SM2 over SM3 (GB/T 32918) instead of Ed25519."""


class AuditSettings(_Section, forbid_unknown_fields=True, frozen=True):
    retention_days: int = MIN_AUDIT_RETENTION_DAYS
    """How long audit entries are kept; the law asks for at least 183 days."""
    key_file: str | None = None
    """The audit key (64 hex digits, readable by the collector only; `medsec init` makes one):
    the chain is then keyed with HMAC, so writing the database is not enough to rewrite it."""

    def __post_init__(self) -> None:
        if not MIN_AUDIT_RETENTION_DAYS <= self.retention_days <= 36_500:
            raise ValueError(
                f"retention_days: must be at least {MIN_AUDIT_RETENTION_DAYS} "
                "(six months, MNDS 7.2.3.4) and at most 36500"
            )


_ZONES_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ScanSettings(_Section, forbid_unknown_fields=True, frozen=True):
    zones: dict[str, str] = msgspec.field(default_factory=dict)
    """Zones files operators may scan through the API (`POST /api/v1/scans {"zones": NAME}`),
    by name. The API takes only these names, never a path."""
    timeout_seconds: int = 3600
    """A scan still running after this long is stopped and recorded as failed."""
    schedule_tick_seconds: float = 5.0
    """How often each collector process looks for schedules that are due."""
    min_every_seconds: int = 60
    """The shortest period a schedule may have (`medsec schedules add --every`)."""

    def __post_init__(self) -> None:
        for name in self.zones:
            if not _ZONES_NAME.match(name):
                raise ValueError(
                    f"zones: {name!r} is not a name (lower-case letters, digits, '_', '-')"
                )
        if not 10 <= self.timeout_seconds <= 86_400:
            raise ValueError("timeout_seconds: must be between 10 and 86400")
        if not 0.1 <= self.schedule_tick_seconds <= 300:
            raise ValueError("schedule_tick_seconds: must be between 0.1 and 300")
        if not 1 <= self.min_every_seconds <= 86_400:
            raise ValueError("min_every_seconds: must be between 1 and 86400")


class ProbeSettings(_Section, forbid_unknown_fields=True, frozen=True):
    lease_seconds: int = 60
    """How long a probe's claim on a job lasts unless it renews it; a probe that dies loses
    its jobs to the next claim this long after its last renewal."""
    max_claim: int = 8
    """Jobs handed to a probe in one claim."""
    job_timeout_seconds: int = 3600
    """A job not done this long after it was queued is failed (its scan fails with it)."""

    def __post_init__(self) -> None:
        if not 2 <= self.lease_seconds <= 3600:
            raise ValueError("lease_seconds: must be between 2 and 3600")
        if not 1 <= self.max_claim <= 100:
            raise ValueError("max_claim: must be between 1 and 100")
        if not 10 <= self.job_timeout_seconds <= 86_400:
            raise ValueError("job_timeout_seconds: must be between 10 and 86400")


SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}  # fmt: skip
"""Facility names as syslog.conf spells them, and their numbers (RFC 5424, table 1)."""
_MAX_URL = 2048


def _check_webhook_url(url: str) -> None:
    """https://, or http:// to a loopback address: alerts name the network's holes, so they
    cross the network only encrypted. Raises ValueError with a message that never quotes the
    URL (its path or query may hold the receiver's token)."""
    from urllib.parse import urlsplit

    if len(url) > _MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"url must be one URL of at most {_MAX_URL} characters, no spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("url is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("url must start with https:// (or http:// to a loopback address)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not carry a user or password (the HMAC secret signs)")
    if parts.fragment:
        raise ValueError("url must not have a #fragment")
    if port == 0:
        raise ValueError("url: the port must be between 1 and 65535")
    try:
        check_host(parts.hostname)
    except ValueError:
        raise ValueError("url: the host is neither an IP address nor a host name") from None
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = False  # a name could resolve anywhere
        if not loopback:
            raise ValueError(
                "url must be https://; http:// only to a loopback address (127.0.0.1, [::1])"
            )


def read_webhook_secret(path: str, source: str = "the settings") -> bytes:
    """The webhook's HMAC key: the file's bytes without surrounding white space; `SettingsError`
    unless the file is readable by this user and no other, and not empty. The message never
    shows the content."""
    key = "alerts.webhook.secret_file"
    secret_path = Path(path)
    try:
        mode = stat.S_IMODE(secret_path.stat().st_mode)
        raw = secret_path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{source}: {key}: {path} does not exist") from None
    except PermissionError:
        raise SettingsError(f"{source}: {key}: {path} is not readable by this user") from None
    except OSError as exc:
        raise SettingsError(f"{source}: {key}: {path} cannot be read ({exc.strerror})") from None
    if mode & 0o077:
        raise SettingsError(
            f"{source}: {key}: {path} is accessible to other users (mode {mode:04o});"
            " run chmod 600 on it"
        )
    secret = raw.strip()
    if not secret:
        raise SettingsError(f"{source}: {key}: {path} is empty (write the shared secret in it)")
    return secret


class WebhookSettings(_Section, forbid_unknown_fields=True, frozen=True):
    url: str
    """Where alerts are POSTed as JSON: https://, or http:// to a loopback address only. TLS
    certificates are verified against the system's trust store."""
    secret_file: str
    """The HMAC-SHA256 key the `X-Medsec-Signature` header is made with: the file's content
    without surrounding white space, mode 0600, not empty. Relative to the settings file."""
    timeout_seconds: float = 10.0
    """How long one attempt may take (connect, send, answer) before it counts as failed."""
    max_attempts: int = 8
    """Attempts per alert event before it is given up (and logged once)."""
    retry_seconds: float = 2.0
    """The wait after the first failed attempt; each further wait doubles (at most an hour)."""
    ca_file: str | None = None
    """PEM certificates to verify the receiver's certificate with, instead of the system's
    trust store (a hospital's own CA). Relative to the settings file."""

    def __post_init__(self) -> None:
        # No "url: " prefix on the URL's messages: the error would then quote the value.
        _check_webhook_url(self.url)
        if not self.secret_file:
            raise ValueError("secret_file: must name a file")
        if not 0.1 <= self.timeout_seconds <= 300:
            raise ValueError("timeout_seconds: must be between 0.1 and 300")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts: must be between 1 and 100")
        if not 0.1 <= self.retry_seconds <= 3600:
            raise ValueError("retry_seconds: must be between 0.1 and 3600")


class SyslogSettings(_Section, forbid_unknown_fields=True, frozen=True):
    address: str = "/dev/log"
    """The local syslog daemon's Unix socket (an absolute path), or HOST:PORT of a syslog
    server over UDP (e.g. `127.0.0.1:514`, `[::1]:514`)."""
    facility: str = "local0"
    """A facility name: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron,
    authpriv, ftp, local0 ... local7."""
    max_attempts: int = 8
    """Attempts per alert event before it is given up (a Unix socket whose daemon is down)."""
    retry_seconds: float = 2.0
    """The wait after the first failed attempt; each further wait doubles (at most an hour)."""

    def __post_init__(self) -> None:
        if not self.address.startswith("/"):
            try:
                parse_listen(self.address)
            except ValueError as exc:
                why = "" if "HOST:PORT" in str(exc) else f": {exc}"
                raise ValueError(
                    "address: must be a Unix socket's absolute path (/dev/log) or HOST:PORT of a"
                    f" syslog server over UDP{why}"
                ) from None
        elif "\x00" in self.address or len(self.address) > 107:
            raise ValueError("address: a Unix socket path has at most 107 characters")
        if self.facility not in SYSLOG_FACILITIES:
            raise ValueError("facility: must be one of " + ", ".join(SYSLOG_FACILITIES))
        if not 1 <= self.max_attempts <= 100:
            raise ValueError("max_attempts: must be between 1 and 100")
        if not 0.1 <= self.retry_seconds <= 3600:
            raise ValueError("retry_seconds: must be between 0.1 and 3600")

    @property
    def udp(self) -> tuple[str, int] | None:
        """(host, port) when the address is a UDP server's, None for a Unix socket."""
        return None if self.address.startswith("/") else parse_listen(self.address)


class AlertSettings(_Section, forbid_unknown_fields=True, frozen=True):
    """Where alerts go: each new policy violation, WAF gone or ZTNA gateway gone is sent once
    when a scan finds it and once when a scan finds it cleared. Without a channel, alerts are
    still recorded (and nothing is sent)."""

    webhook: WebhookSettings | None = None
    syslog: SyslogSettings | None = None
    poll_seconds: float = 1.0
    """How often each collector process looks for alert events due to be sent."""

    def __post_init__(self) -> None:
        if not 0.05 <= self.poll_seconds <= 60:
            raise ValueError("poll_seconds: must be between 0.05 and 60")

    @property
    def channels(self) -> tuple[str, ...]:
        """The configured channels, by name: "webhook", "syslog"."""
        return tuple(name for name in ("webhook", "syslog") if getattr(self, name) is not None)

    def check_files(self, source: str) -> None:
        """`SettingsError` (one line) unless the webhook's secret file (and CA file) is usable."""
        if self.webhook is None:
            return
        read_webhook_secret(self.webhook.secret_file, source)
        if self.webhook.ca_file is not None:
            try:
                present = Path(self.webhook.ca_file).is_file()
            except OSError as exc:
                raise SettingsError(f"{source}: alerts.webhook.ca_file: {exc.strerror}") from None
            if not present:
                raise SettingsError(
                    f"{source}: alerts.webhook.ca_file: {self.webhook.ca_file} does not exist"
                )

    def yaml_text(self) -> str:
        """The `alerts:` section as `medsec init` writes it (strings JSON-quoted: valid YAML)."""
        text = (
            "# Alerts: a policy violation, a WAF or a ZTNA gateway gone is sent once when a scan\n"
            "# finds it and once when a scan finds it cleared, to a webhook (JSON POST signed\n"
            "# with HMAC-SHA256 of the secret_file's content, mode 0600) and/or syslog, e.g.\n"
            '#   webhook: {url: "https://siem.example/medsec", secret_file: "webhook.secret"}\n'
            '#   syslog: {address: "/dev/log", facility: "local0"}  # or HOST:PORT over UDP\n'
        )
        if self.webhook is None and self.syslog is None and self.poll_seconds == 1.0:
            return text + "alerts: {}\n"
        text += f"alerts:\n  poll_seconds: {self.poll_seconds}\n"
        if (hook := self.webhook) is not None:
            text += (
                "  webhook:\n"
                f"    url: {json.dumps(hook.url)}\n"
                f"    secret_file: {json.dumps(hook.secret_file, ensure_ascii=False)}\n"
                f"    timeout_seconds: {hook.timeout_seconds}\n"
                f"    max_attempts: {hook.max_attempts}\n"
                f"    retry_seconds: {hook.retry_seconds}\n"
            )
            if hook.ca_file is not None:
                text += f"    ca_file: {json.dumps(hook.ca_file, ensure_ascii=False)}\n"
        if (log := self.syslog) is not None:
            text += (
                "  syslog:\n"
                f"    address: {json.dumps(log.address, ensure_ascii=False)}\n"
                f"    facility: {json.dumps(log.facility)}\n"
                f"    max_attempts: {log.max_attempts}\n"
                f"    retry_seconds: {log.retry_seconds}\n"
            )
        return text


class DashboardSettings(_Section, forbid_unknown_fields=True, frozen=True):
    session_minutes: int = 480
    """A dashboard login ends this long after it began, however busy (a working day)."""
    idle_minutes: int = 30
    """A dashboard login unused this long ends (exact to a minute)."""
    max_failures: int = 5
    """Wrong passwords in a row that lock a user's dashboard login."""
    lockout_minutes: int = 15
    """How long a locked user is refused, even with the right password."""
    failure_delay_ms: int = 500
    """How long a failed login waits before it is answered."""

    def __post_init__(self) -> None:
        bounds = {
            "session_minutes": (5, 10_080, "5 and 10080 (a week)"),
            "idle_minutes": (1, 1440, "1 and 1440 (a day)"),
            "max_failures": (1, 100, "1 and 100"),
            "lockout_minutes": (1, 1440, "1 and 1440 (a day)"),
            "failure_delay_ms": (0, 10_000, "0 and 10000"),
        }
        for key, (low, high, say) in bounds.items():
            if not low <= getattr(self, key) <= high:
                raise ValueError(f"{key}: must be between {say}")
        if self.idle_minutes > self.session_minutes:
            raise ValueError("idle_minutes: must not exceed session_minutes")


class CollectorSettings(_Section, forbid_unknown_fields=True, frozen=True):
    tls: TlsSettings
    database: str
    """`sqlite:///PATH` (one hospital) or `postgresql+psycopg://USER@HOST:PORT/DB` (at scale)."""
    listen: str = DEFAULT_LISTEN
    """HOST:PORT the HTTPS server binds; loopback unless agents on other hosts must reach it."""
    workers: int = 1
    """HTTP worker processes: one suits a hospital; a province's collector runs one per core."""
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    enrollment: EnrollmentSettings = msgspec.field(default_factory=EnrollmentSettings)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    reports: ReportSettings = msgspec.field(default_factory=ReportSettings)
    scans: ScanSettings = msgspec.field(default_factory=ScanSettings)
    snapshots: SnapshotSettings = msgspec.field(default_factory=SnapshotSettings)
    dashboard: DashboardSettings = msgspec.field(default_factory=DashboardSettings)
    probes: ProbeSettings = msgspec.field(default_factory=ProbeSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)

    def __post_init__(self) -> None:
        try:
            parse_listen(self.listen)
        except ValueError as exc:
            raise ValueError(f"listen: {exc}") from None
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers: must be between 1 and {MAX_WORKERS}")
        if not self.database.startswith(DATABASE_SCHEMES):
            raise ValueError("database: must start with " + " or ".join(DATABASE_SCHEMES))

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    def database_for_display(self) -> str:
        """The database URL with any password replaced by `***`, for logs and messages."""
        return redact_url(self.database)


def redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    if "password=" in tail.lower():
        tail = re.sub(r"(?i)(password=)[^&]*", r"\1***", tail)
    return f"{scheme}{sep}{netloc}{slash}{tail}"


# --------------------------------------------------------------------------- error messages

# Values of these keys may carry a secret: an error names the key but never echoes the value.
_SECRET_VALUE_KEYS = {"database"}


# --------------------------------------------------------------------------- files on disk


def _resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _check_tls_files(tls: TlsSettings, source: str) -> None:
    for key in ("cert_file", "key_file"):
        path = Path(getattr(tls, key))
        try:
            present = path.is_file()
        except OSError as exc:  # a name too long for the file system, say
            raise SettingsError(f"{source}: tls.{key}: {exc.strerror}") from None
        if not present:
            raise SettingsError(
                f"{source}: tls.{key}: {path} does not exist (value: {str(path)!r})"
            )
        if not os.access(path, os.R_OK):
            raise SettingsError(f"{source}: tls.{key}: {path} is not readable by this user")
    mode = stat.S_IMODE(Path(tls.key_file).stat().st_mode)
    if mode & 0o007:
        raise SettingsError(
            f"{source}: tls.key_file: {tls.key_file} is accessible to every user "
            f"(mode {mode:04o}); run chmod 600 on it"
        )


def _with_paths_resolved(settings: CollectorSettings, base: Path) -> CollectorSettings:
    tls = TlsSettings(
        cert_file=_resolve(base, settings.tls.cert_file),
        key_file=_resolve(base, settings.tls.key_file),
    )
    database = settings.database
    if database.startswith("sqlite:///"):
        db_path, query_sep, query = database.removeprefix("sqlite:///").partition("?")
        if db_path and db_path != ":memory:":
            database = f"sqlite:///{_resolve(base, db_path)}{query_sep}{query}"
    audit = msgspec.structs.replace(
        settings.audit,
        key_file=None
        if settings.audit.key_file is None
        else _resolve(base, settings.audit.key_file),
    )
    scans = msgspec.structs.replace(
        settings.scans,
        zones={name: _resolve(base, path) for name, path in settings.scans.zones.items()},
    )
    snapshots = msgspec.structs.replace(
        settings.snapshots,
        dir=_resolve(base, settings.snapshots.dir),
        key_file=_resolve(base, settings.snapshots.key_file),
    )
    alerts = settings.alerts
    if alerts.webhook is not None:
        ca_file = alerts.webhook.ca_file
        webhook = msgspec.structs.replace(
            alerts.webhook,
            secret_file=_resolve(base, alerts.webhook.secret_file),
            ca_file=None if ca_file is None else _resolve(base, ca_file),
        )
        alerts = msgspec.structs.replace(alerts, webhook=webhook)
    return msgspec.structs.replace(
        settings,
        tls=tls,
        database=database,
        audit=audit,
        scans=scans,
        snapshots=snapshots,
        alerts=alerts,
    )


AUDIT_KEY_BYTES = 32


def read_audit_key(path: str, source: str = "the settings") -> AuditKey:
    """The audit key in `path` (`key=` 64 hex digits, `keyed_from=` the first entry it keys);
    `SettingsError` unless it is one, readable by this user and by no other."""
    key_path = Path(path)
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        raw = key_path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{source}: audit.key_file: {path} does not exist") from None
    except PermissionError:
        raise SettingsError(
            f"{source}: audit.key_file: {path} is not readable by this user"
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"{source}: audit.key_file: {path} cannot be read ({exc.strerror})"
        ) from None
    if mode & 0o077:
        raise SettingsError(
            f"{source}: audit.key_file: {path} is accessible to other users (mode {mode:04o});"
            " run chmod 600 on it"
        )
    fields: dict[str, str] = {}
    for line in raw.decode("ascii", errors="replace").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            fields[name.strip()] = value.strip()
    try:
        secret = bytes.fromhex(fields.get("key", ""))
        keyed_from = int(fields.get("keyed_from", ""))
    except ValueError:
        secret, keyed_from = b"", 0
    if len(secret) != AUDIT_KEY_BYTES or keyed_from < 1:  # the message never shows the content
        raise SettingsError(
            f"{source}: audit.key_file: {path} does not hold a key"
            f" (key= {AUDIT_KEY_BYTES * 2} hex digits, keyed_from= the first entry it keys)"
        )
    return AuditKey(secret, keyed_from)


def audit_key(settings: CollectorSettings) -> AuditKey | None:
    """The collector's audit key, when the settings name one."""
    key_file = settings.audit.key_file
    return None if key_file is None else read_audit_key(key_file)


def write_audit_key(path: Path, keyed_from: int = 1) -> None:
    """A new random audit key in `path`, mode 0600, keying entries from `keyed_from` on; never
    overwrites (`FileExistsError`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(
            "# medsec audit key: keep it secret and off the database server; back it up\n"
            f"key={secrets.token_hex(AUDIT_KEY_BYTES)}\n"
            f"keyed_from={keyed_from}\n"
        )


def _check_zones_files(scans: ScanSettings, source: str) -> None:
    for name, path in scans.zones.items():
        try:
            present = Path(path).is_file()
        except OSError as exc:
            raise SettingsError(f"{source}: scans.zones.{name}: {exc.strerror}") from None
        if not present:
            raise SettingsError(f"{source}: scans.zones.{name}: {path} does not exist")


def parse_settings(
    data: Any, source: str, base_dir: Path, *, check_files: bool = True
) -> CollectorSettings:
    """Settings from parsed YAML; relative paths resolved against `base_dir`."""
    if not isinstance(data, dict):
        shape = "empty" if data is None else f"a {type(data).__name__}"
        raise SettingsError(f"{source}: the top level must be a mapping, got {shape}")
    try:
        settings = msgspec.convert(data, CollectorSettings)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{source}: {describe(exc, data, _SECRET_VALUE_KEYS)}") from None
    settings = _with_paths_resolved(settings, base_dir)
    if check_files:
        _check_tls_files(settings.tls, source)
        _check_zones_files(settings.scans, source)
        if settings.audit.key_file is not None:
            read_audit_key(settings.audit.key_file, source)
        settings.alerts.check_files(source)
    return settings


def load_settings(path: Path) -> CollectorSettings:
    """Read and validate `collector.yaml`; raises `SettingsError` (one line)."""
    try:
        data = read_yaml(path, "settings", "the settings")
    except ConfigFileError as exc:
        raise SettingsError(str(exc)) from None
    return parse_settings(data, str(path), path.resolve().parent)


def render_settings(settings: CollectorSettings) -> str:
    """YAML text of `settings`, as `medsec init` writes it (strings JSON-quoted: valid YAML)."""

    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)

    zones = "{" + ", ".join(f"{q(k)}: {q(v)}" for k, v in settings.scans.zones.items()) + "}"

    return (
        "# medsec collector settings. Unknown keys are refused; relative paths are relative to\n"
        "# this file's folder.\n"
        "# HOST:PORT of the HTTPS API; loopback unless agents on other hosts must reach it.\n"
        f"listen: {q(settings.listen)}\n"
        "# HTTP worker processes: 1 for one hospital; one per core for a province's collector.\n"
        f"workers: {settings.workers}\n"
        "tls:\n"
        f"  cert_file: {q(settings.tls.cert_file)}\n"
        f"  key_file: {q(settings.tls.key_file)}  # must not be readable by other users\n"
        "# sqlite:///PATH for one hospital; postgresql+psycopg://USER@HOST:5432/DB at scale.\n"
        f"database: {q(settings.database)}\n"
        "limits:\n"
        f"  max_report_bytes: {settings.limits.max_report_bytes}\n"
        f"  max_future_skew_seconds: {settings.limits.max_future_skew_seconds}\n"
        "  # What a client may make the collector hold before it has authenticated: the request\n"
        "  # head's size and fields (431 beyond), the seconds to deliver it from connect (408),\n"
        "  # and connections open from one address (more are closed at once; per worker).\n"
        f"  max_header_bytes: {settings.limits.max_header_bytes}\n"
        f"  max_header_fields: {settings.limits.max_header_fields}\n"
        f"  header_timeout_seconds: {settings.limits.header_timeout_seconds}\n"
        f"  max_connections_per_address: {settings.limits.max_connections_per_address}\n"
        "enrollment:\n"
        f"  token_ttl_minutes: {settings.enrollment.token_ttl_minutes}\n"
        "audit:\n"
        f"  retention_days: {settings.audit.retention_days}  # at least 183 (MNDS 7.2.3.4)\n"
        + (
            ""
            if settings.audit.key_file is None
            else "  # HMAC key of the audit chain; keep it off the database server, back it up\n"
            f"  key_file: {q(settings.audit.key_file)}\n"
        )
        + "reports:\n"
        f"  retention_days: {settings.reports.retention_days}"
        "  # `medsec db prune` deletes older ones; each host's newest stays\n"
        "  # In compliance reports, a host whose newest report is older is `error` (stale).\n"
        f"  stale_after_minutes: {settings.reports.stale_after_minutes}\n"
        f"  scan_stale_after_minutes: {settings.reports.scan_stale_after_minutes}\n"
        "# Signed auditor snapshots: their folder and signing key (made on first use, mode 0600);\n"
        "# crypto: sm signs with SM2 over SM3 instead of Ed25519.\n"
        "snapshots:\n"
        f"  dir: {q(settings.snapshots.dir)}\n"
        f"  key_file: {q(settings.snapshots.key_file)}\n"
        f"  crypto: {q(settings.snapshots.crypto)}\n"
        '# Zones files operators may scan through the API (POST /api/v1/scans {"zones": NAME}),\n'
        "# by name, e.g. `hospital: /etc/medsec/zones.yaml`; a scan past the timeout is stopped.\n"
        "scans:\n"
        f"  zones: {zones}\n"
        f"  timeout_seconds: {settings.scans.timeout_seconds}\n"
        "# The web dashboard: a login ends after session_minutes, or idle_minutes unused;\n"
        "# max_failures wrong passwords lock the user for lockout_minutes; each failure waits.\n"
        "dashboard:\n"
        f"  session_minutes: {settings.dashboard.session_minutes}\n"
        f"  idle_minutes: {settings.dashboard.idle_minutes}\n"
        f"  max_failures: {settings.dashboard.max_failures}\n"
        f"  lockout_minutes: {settings.dashboard.lockout_minutes}\n"
        f"  failure_delay_ms: {settings.dashboard.failure_delay_ms}\n" + settings.alerts.yaml_text()
    )
