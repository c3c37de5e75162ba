"""The log retention gatherer's entry point: `collect_logs` reads the syslog daemons', logrotate's
and journald's configuration once, builds each stream from them, and returns `LogFacts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from checks.facts.logs import LogFacts
from inventory.host.logs.journald import read_journald_config
from inventory.host.logs.logrotate import read_logrotate
from inventory.host.logs.streams import (
    AUTH_FACILITIES,
    AUTH_FILES,
    SYSLOG_FACILITIES,
    SYSLOG_FILES,
    Sources,
    access_log_stream,
    audit_stream,
    journald_stream,
    syslog_stream,
)
from inventory.host.logs.syslog import read_syslog_forwarding
from inventory.host.logs.timestamps import iso_utc
from inventory.runner import Runner


def collect_logs(
    runner: Runner, access_logs: Sequence[str] = (), *, now: datetime | None = None
) -> LogFacts:
    """Log retention facts: journald, auth, syslog, audit, then each access log of the site
    configuration (a path, or a glob such as /var/log/tomcat9/localhost_access_log.*.txt)."""
    now = now or datetime.now(UTC)
    rsyslog, forwarding = read_syslog_forwarding(runner)
    logrotate = read_logrotate(runner)
    sources = Sources(rsyslog, forwarding, logrotate.rules, now, logrotate.errors)
    journald = read_journald_config(runner)
    streams = [
        journald_stream(runner, journald, sources),
        syslog_stream(runner, sources, "auth", AUTH_FILES, AUTH_FACILITIES),
        syslog_stream(runner, sources, "syslog", SYSLOG_FILES, SYSLOG_FACILITIES),
    ]
    audit, auditd = audit_stream(runner, sources)
    streams.append(audit)
    streams.extend(access_log_stream(runner, sources, path) for path in access_logs)
    every_rule = forwarding
    if isinstance(forwarding, tuple) and isinstance(audit.forwarded_to, tuple):
        remote = tuple(f for f in audit.forwarded_to if f.daemon == "audisp-remote")
        every_rule = (*forwarding, *remote)
    return LogFacts(
        observed_at=iso_utc(now),
        streams=tuple(streams),
        journald=journald,
        logrotate=sources.logrotate,
        auditd=auditd,
        forwarding=every_rule,
        logrotate_errors=logrotate.errors,
    )
