"""Log retention facts: how long each log stream is kept on the host, how old its oldest record
is, and where it is forwarded — from journald, logrotate, auditd, rsyslog and syslog-ng.

A *stream* is what an assessor asks about ("the auth log", "the audit trail", "nginx's access
log"); the per-daemon configuration it was derived from is kept beside it for the evidence.
Timestamps are ISO 8601 strings in UTC, so stored facts replay to the same result later: the
check measures ages against `LogFacts.observed_at`, not against its own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from checks.model import Unavailable

StreamKind = Literal["journald", "logrotate", "auditd", "file"]


def days_text(value: float) -> str:
    """A number of days as retention descriptions and check messages write it: "183", "27.5"."""
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


@dataclass(frozen=True)
class Retention:
    """What the configuration says about how long a stream's records are kept locally."""

    days: float | None
    """The days the configuration guarantees (a floor): logrotate `rotate` × interval (or
    `maxage` when smaller) when only the interval rotates the file. None when the configuration
    bounds the stream by size or by a number of files (logrotate `size`/`maxsize`, journald's size
    limits, auditd's file count), or not at all: then only the observed oldest record tells."""
    description: str
    """The configuration in words, e.g. "logrotate keeps 4 weekly = 28 days"."""
    unlimited: bool = False
    """Nothing is ever deleted by age or count (auditd `KEEP_LOGS`, logrotate `rotate -1`)."""
    volatile: bool = False
    """The records live in RAM only and are lost at reboot (journald `Storage=volatile`, or
    `auto` without /var/log/journal), or are not kept at all (`Storage=none`)."""
    sources: tuple[str, ...] = ()
    """The configuration files the retention was read from."""
    ceiling_days: float | None = None
    """Records older than this are deleted whatever else holds (journald `MaxRetentionSec`): a
    ceiling below the required days proves too short a retention; at or above it, nothing."""


@dataclass(frozen=True)
class OldestRecord:
    """The oldest record still available locally for a stream."""

    at: str
    """Its timestamp, ISO 8601 UTC."""
    source: str
    """Where it was read: "journal head", "first line of /var/log/auth.log.4.gz",
    "mtime of ..." (the fallback when the first line carries no parsable timestamp)."""


@dataclass(frozen=True)
class LogForwarding:
    """A rule that sends log records to another host."""

    daemon: Literal["rsyslog", "syslog-ng", "audisp-remote"]
    """The program that forwards."""
    host: str
    """Target host name or address, as configured (IPv6 without brackets)."""
    port: int | None
    """Target port; None when the configuration leaves the daemon's default."""
    protocol: str
    """`tcp`, `udp`, `relp`, `tls` ... as configured (`@` is udp, `@@` tcp in rsyslog)."""
    selector: str | None
    """The syslog selector the rule applies to (`*.*`, `auth,authpriv.*`); None when the rule is
    unconditional (a top-level RainerScript action, a syslog-ng log path without filter)."""
    condition: str | None
    """A RainerScript `if`, a ruleset or a syslog-ng filter that restricts the rule; set when the
    rule is not a plain selector, so the gatherer cannot tell which streams it carries."""
    source: str
    """The configuration file the rule is in."""


@dataclass(frozen=True)
class JournaldConfig:
    """The effective `[Journal]` settings: /etc/systemd/journald.conf, then the drop-ins of
    /usr/lib, /usr/local/lib, /run and /etc `systemd/journald.conf.d/*.conf` in file-name order
    (a later file overrides; a name in /etc masks the same name in /usr/lib)."""

    storage: str
    """`Storage=`: volatile, persistent, auto (default) or none."""
    persistent_dir: bool
    """/var/log/journal exists (with `Storage=auto`, journald then writes to disk)."""
    max_retention_sec: float | None
    """`MaxRetentionSec=` in seconds; None when unset, 0 (no time limit), or not a time span
    (journald then ignores it). A ceiling: entries older are deleted, younger ones are not kept
    for it, since the size limits delete too."""
    max_retention_raw: str | None
    """`MaxRetentionSec=` as written."""
    system_max_use: str | None
    """`SystemMaxUse=` as written; None: journald's default (10 % of the file system, ≤ 4 G)."""
    max_file_sec: str | None
    """`MaxFileSec=` as written (when journal files are rotated; not a retention)."""
    forward_to_syslog: bool | None
    """`ForwardToSyslog=`; when unset, the default the distribution documents in the shipped
    journald.conf (`#ForwardToSyslog=yes` on Debian); None when neither says."""
    files: tuple[str, ...]
    """The configuration files read, in the order applied."""


@dataclass(frozen=True)
class LogrotateRule:
    """One logrotate block, with the global defaults in force where it appears."""

    patterns: tuple[str, ...]
    """The file patterns before the `{`."""
    source: str
    """The file the block is in."""
    interval: Literal["hourly", "daily", "weekly", "monthly", "yearly"] | None
    """The rotation interval; None when none is set (logrotate then rotates by size)."""
    rotate: int
    """`rotate N`: rotated files kept (0: none; -1: never removed except by `maxage`)."""
    maxage: int | None
    """`maxage N`: rotated files older than N days are removed."""
    size: str | None
    """`size` as written when the block rotates by size instead of time (no interval); None with
    no interval means logrotate's built-in 1M."""
    maxsize: str | None
    """`maxsize` as written: rotation also when the file outgrows this, before the interval."""
    minsize: str | None = None
    """`minsize` as written: no rotation before the file reaches this, even after the interval."""
    olddir: str | None = None
    """`olddir`: the folder rotated copies are moved to."""
    line: int = 0
    """The line of `source` the block starts on."""
    rejected: str | None = None
    """Why logrotate skips this block (an error in it, or in the file around it); None when
    logrotate keeps it. A skipped block rotates nothing."""


@dataclass(frozen=True)
class AuditdConfig:
    """/etc/audit/auditd.conf (auditd(8) defaults where a key is absent)."""

    log_file: str
    """`log_file` (default /var/log/audit/audit.log)."""
    num_logs: int
    """`num_logs` (default 5): files kept with `max_log_file_action = ROTATE`."""
    max_log_file_mb: int
    """`max_log_file` in MiB (default 8)."""
    max_log_file_action: str
    """`max_log_file_action` upper-cased (default ROTATE): KEEP_LOGS keeps every file."""
    write_logs: bool
    """`write_logs` (default yes): no keeps nothing locally."""


@dataclass(frozen=True)
class LogStream:
    """One log stream an assessor asks about, with its local retention and forwarding."""

    name: str
    """"journald", "auth", "syslog", "audit", or an access-log path from the site config."""
    kind: StreamKind
    """Which mechanism keeps it."""
    present: bool
    """False when the host has no such stream (no syslog daemon writes an auth file, auditd is
    not installed); `absent_reason` says why."""
    paths: tuple[str, ...] = ()
    """The files the stream lives in (the current file first)."""
    retention: Retention | Unavailable | None = None
    """The configured local retention; None when the stream is absent."""
    oldest: OldestRecord | Unavailable | None = None
    """The oldest local record; None when there is none (empty journal, empty file)."""
    forwarded_to: tuple[LogForwarding, ...] | Unavailable = ()
    """The forwarding rules known to carry this stream (selector or unconditional rules only)."""
    absent_reason: str | None = None
    """Why the stream is absent."""


@dataclass(frozen=True)
class LogFacts:
    """Log retention and forwarding on one host."""

    observed_at: str
    """When the facts were gathered, ISO 8601 UTC: ages are measured from here."""
    streams: tuple[LogStream, ...]
    """journald, auth, syslog, audit and each configured access log, in that order."""
    journald: JournaldConfig | Unavailable
    """The effective journald configuration."""
    logrotate: tuple[LogrotateRule, ...] | Unavailable | None
    """Every block of /etc/logrotate.conf and what it includes, skipped ones marked, in the order
    logrotate reads them; None when it does not exist."""
    auditd: AuditdConfig | Unavailable | None
    """auditd's configuration; None when /etc/audit/auditd.conf does not exist."""
    forwarding: tuple[LogForwarding, ...] | Unavailable
    """Every forwarding rule of rsyslog, syslog-ng and audisp-remote, conditional ones too."""
    logrotate_errors: tuple[str, ...] = ()
    """What logrotate itself reports reading its configuration ("file:line message")."""
