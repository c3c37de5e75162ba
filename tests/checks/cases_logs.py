"""Recorded facts for `log.retention`, with the status each must produce under the check's
default parameters (same shape as tests/checks/cases.py).

Each log case holds one stream, so the check yields exactly one result.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from checks.facts import HostFacts
from checks.facts.logs import (
    JournaldConfig,
    LogFacts,
    LogForwarding,
    LogStream,
    OldestRecord,
    Retention,
)
from checks.model import Status, Unavailable

OBSERVED_AT = "2026-11-28T12:00:00Z"

JOURNALD = JournaldConfig(
    storage="auto",
    persistent_dir=False,
    max_retention_sec=None,
    max_retention_raw=None,
    system_max_use=None,
    max_file_sec=None,
    forward_to_syslog=True,
    files=("/etc/systemd/journald.conf",),
)

AUTH_DEBIAN = LogStream(
    name="auth",
    kind="logrotate",
    present=True,
    paths=("/var/log/auth.log", "/var/log/auth.log.1", "/var/log/auth.log.4.gz"),
    retention=Retention(
        28.0, "logrotate keeps 4 weekly = 28 days", sources=("/etc/logrotate.d/rsyslog",)
    ),
    oldest=OldestRecord("2026-10-25T09:00:00Z", "first line of /var/log/auth.log.4.gz"),
)

AUDIT_ROTATE = LogStream(
    name="audit",
    kind="auditd",
    present=True,
    paths=("/var/log/audit/audit.log", "/var/log/audit/audit.log.199"),
    retention=Retention(
        None,
        "auditd keeps 200 files of 50 MB (max_log_file_action = ROTATE): a count, not a time",
        sources=("/etc/audit/auditd.conf",),
    ),
    oldest=OldestRecord("2026-03-23T12:00:00Z", "first line of /var/log/audit/audit.log.199"),
)

UNDECLARED = LogForwarding(
    daemon="rsyslog",
    host="198.18.4.50",
    port=6514,
    protocol="tcp",
    selector="*.*",
    condition=None,
    source="/etc/rsyslog.d/60-central.conf",
)


MAXSIZE = Retention(
    None,
    "logrotate keeps 52 weekly = 364 days only while the file stays under maxsize 10M: it "
    "rotates sooner when it grows, so the days are not known",
    sources=("/etc/logrotate.d/rsyslog",),
)


def ceiling(raw: str, days: float) -> Retention:
    return Retention(
        None,
        f"journald MaxRetentionSec={raw} = {days} days is a ceiling, not a floor: the size cap "
        "(SystemMaxUse default: 10 % of the file system, at most 4G) still deletes older entries",
        ceiling_days=days,
        sources=("/etc/systemd/journald.conf",),
    )


def journald(retention: Retention, oldest_at: str | None) -> HostFacts:
    oldest = None if oldest_at is None else OldestRecord(oldest_at, "journal head (journalctl)")
    return logs(
        LogStream(
            name="journald",
            kind="journald",
            present=True,
            paths=("/var/log/journal", "/run/log/journal"),
            retention=retention,
            oldest=oldest,
        )
    )


def logs(stream: LogStream) -> HostFacts:
    return HostFacts(
        logs=LogFacts(
            observed_at=OBSERVED_AT,
            streams=(stream,),
            journald=JOURNALD,
            logrotate=(),
            auditd=None,
            forwarding=(UNDECLARED,),
        )
    )


def auth(**changes: Any) -> HostFacts:
    return logs(replace(AUTH_DEBIAN, **changes))


def audit(**changes: Any) -> HostFacts:
    return logs(replace(AUDIT_ROTATE, **changes))


# check id → [(case name, facts, expected status, words the message must contain)]
CASES: dict[str, list[tuple[str, HostFacts, Status, str]]] = {
    "log.retention": [
        (
            "logrotate keeps 200 days",
            auth(retention=Retention(200.0, "logrotate keeps 200 daily = 200 days")),
            Status.PASS,
            "200 days ≥ 183",
        ),
        (
            "debian weekly rotate 4",
            auth(forwarded_to=()),
            Status.FAIL,
            "logrotate keeps 4 weekly = 28 days < 183",
        ),
        (
            "forwarded to an undeclared server",
            auth(forwarded_to=(UNDECLARED,)),
            Status.FAIL,
            "not declared in central_log_servers",
        ),
        (
            "auditd rotate by count, 250 days on disk",
            audit(),
            Status.PASS,
            "250 days old ≥ 183",
        ),
        (
            "auditd rotate by count, 3 days on disk",
            audit(
                oldest=OldestRecord(
                    "2026-11-25T12:00:00Z", "first line of /var/log/audit/audit.log.4"
                )
            ),
            Status.FAIL,
            "3 days old < 183",
        ),
        (
            "auditd keep_logs",
            audit(
                retention=Retention(
                    None,
                    "auditd max_log_file_action = KEEP_LOGS: every audit log file is kept",
                    unlimited=True,
                ),
                oldest=None,
            ),
            Status.PASS,
            "KEEP_LOGS",
        ),
        (
            "audit files unreadable",
            audit(oldest=Unavailable("/var/log/audit/audit.log.199: permission denied")),
            Status.ERROR,
            "permission denied",
        ),
        (
            "volatile journald",
            logs(
                LogStream(
                    name="journald",
                    kind="journald",
                    present=True,
                    retention=Retention(
                        None,
                        "journald is volatile (Storage=auto and /var/log/journal does not "
                        "exist): the journal lives in /run and is lost at reboot",
                        volatile=True,
                    ),
                    oldest=OldestRecord("2026-11-28T08:00:00Z", "journal head (journalctl)"),
                )
            ),
            Status.FAIL,
            "volatile",
        ),
        (
            "journald MaxRetentionSec=6month, a year on disk",
            journald(ceiling("6month", 182.6), "2025-11-28T12:00:00Z"),
            Status.FAIL,
            "records older than 182.6 days are deleted < 183",
        ),
        (
            "journald MaxRetentionSec=1year, empty journal",
            journald(ceiling("1year", 365.2), None),
            Status.FAIL,
            "no record is kept yet",
        ),
        (
            "journald MaxRetentionSec=1year, 20 days on disk",
            journald(ceiling("1year", 365.2), "2026-11-08T12:00:00Z"),
            Status.FAIL,
            "20 days old < 183",
        ),
        (
            "journald MaxRetentionSec=1year, 200 days on disk",
            journald(ceiling("1year", 365.2), "2026-05-12T12:00:00Z"),
            Status.PASS,
            "200 days old ≥ 183",
        ),
        (
            "logrotate weekly 52 with maxsize, 20 days on disk",
            auth(
                retention=MAXSIZE,
                oldest=OldestRecord(
                    "2026-11-08T12:00:00Z", "first line of /var/log/auth.log.52.gz"
                ),
            ),
            Status.FAIL,
            "20 days old < 183",
        ),
        (
            "logrotate weekly 52 with maxsize, 200 days on disk",
            auth(
                retention=MAXSIZE,
                oldest=OldestRecord(
                    "2026-05-12T12:00:00Z", "first line of /var/log/auth.log.52.gz"
                ),
            ),
            Status.PASS,
            "200 days old ≥ 183",
        ),
        (
            "logrotate config unreadable",
            auth(retention=Unavailable("/etc/logrotate.d/rsyslog: permission denied")),
            Status.ERROR,
            "permission denied",
        ),
        (
            "no auth file",
            logs(
                LogStream(
                    name="auth",
                    kind="logrotate",
                    present=False,
                    absent_reason="no syslog daemon writes /var/log/auth.log or /var/log/secure",
                )
            ),
            Status.NOT_APPLICABLE,
            "no syslog daemon",
        ),
        ("not gathered", HostFacts(), Status.ERROR, "not gathered"),
    ],
}
