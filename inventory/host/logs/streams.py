"""Log streams: one `LogStream` for each thing an assessor asks about (the journal, the auth and
system logs, the audit trail, each declared access log), joining where it is written, what keeps
it, its oldest local record and the forwarding rules that carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from checks.facts.logs import (
    AuditdConfig,
    JournaldConfig,
    LogForwarding,
    LogrotateRule,
    LogStream,
    Retention,
)
from checks.model import Unavailable
from inventory.host.logs.auditd import (
    AUDISP_REMOTE_CONFS,
    AUDIT_PLUGIN_DIRS,
    AUDITD_CONF,
    auditd_retention,
    parse_audisp_remote,
    parse_audit_plugin,
    parse_auditd_conf,
    syslog_plugin_facility,
)
from inventory.host.logs.journald import journald_retention, read_journal_oldest
from inventory.host.logs.logrotate import (
    LOGROTATE_CONF,
    find_logrotate_rule,
    logrotate_retention,
    pattern_matches,
    skipped_retention,
)
from inventory.host.logs.oldest import read_stream_files
from inventory.host.logs.syslog import RsyslogConfig, carries, selector_covers
from inventory.runner import GatherError, Runner, SourceMissing

AUTH_FILES = ("/var/log/auth.log", "/var/log/secure")
SYSLOG_FILES = ("/var/log/syslog", "/var/log/messages")
AUTH_FACILITIES = ("auth", "authpriv")
# A rule that forwards these three forwards "the system log"; naming every facility would make a
# common `*.*;mail.none` rule look partial.
SYSLOG_FACILITIES = ("user", "daemon", "kern")
JOURNAL_FACILITIES = (*SYSLOG_FACILITIES, *AUTH_FACILITIES)


@dataclass(frozen=True)
class Sources:
    """What every stream is judged against, read once per collection."""

    rsyslog: RsyslogConfig | Unavailable | None
    forwarding: tuple[LogForwarding, ...] | Unavailable
    logrotate: tuple[LogrotateRule, ...] | Unavailable | None
    now: datetime
    logrotate_errors: tuple[str, ...] = ()


def _syslog_file(
    runner: Runner,
    rsyslog: RsyslogConfig | Unavailable | None,
    candidates: Sequence[str],
    marker: str,
) -> str | None:
    """The file a syslog daemon writes a stream to: a candidate that an unconditional rsyslog
    rule selecting `marker` writes, else the first candidate that exists."""
    if isinstance(rsyslog, RsyslogConfig):
        for path in candidates:
            for out in rsyslog.outputs:
                if (
                    out.path == path
                    and out.condition is None
                    and out.selector is not None
                    and selector_covers(out.selector, marker)
                ):
                    return path
    return next((path for path in candidates if runner.exists(path)), None)


def _forwarded(
    sources: Sources, facilities: Sequence[str], *, via_syslog: bool = True
) -> tuple[LogForwarding, ...] | Unavailable:
    """The syslog forwarding rules that carry every one of `facilities`. `via_syslog` False: the
    records never reach rsyslog (journald does not forward to it), only syslog-ng's own
    journal reader can carry them."""
    if isinstance(sources.forwarding, Unavailable):
        return sources.forwarding
    return tuple(
        f
        for f in sources.forwarding
        if (via_syslog or f.daemon == "syslog-ng") and carries(f, facilities)
    )


def _file_retention(sources: Sources, paths: Sequence[str]) -> Retention | Unavailable:
    rules = sources.logrotate
    if isinstance(rules, Unavailable):
        return rules
    if rules is None:
        return Retention(None, f"logrotate is not installed: nothing rotates {paths[0]}")
    for path in paths:
        rule = find_logrotate_rule(rules, path)
        if rule is not None and rule.rejected is None:
            return logrotate_retention(rule)
        if rule is not None:
            return skipped_retention(rule, path)
    text = f"no logrotate rule names {paths[0]}"
    if sources.logrotate_errors:
        # An error can make logrotate abandon the rest of a file, with the block meant for it.
        text += f" (logrotate reports: {sources.logrotate_errors[0]})"
    return Retention(None, text, sources=(LOGROTATE_CONF,))


def _file_stream(
    runner: Runner,
    sources: Sources,
    name: str,
    path: str,
    forwarded: tuple[LogForwarding, ...] | Unavailable,
    *,
    kind: Literal["logrotate", "file"],
) -> LogStream:
    rules = sources.logrotate
    rule = find_logrotate_rule(rules, path) if isinstance(rules, tuple) else None
    olddir = rule.olddir if rule is not None and rule.rejected is None else None
    files, oldest = read_stream_files(runner, path, now=sources.now, olddir=olddir)
    # A glob names no file logrotate knows: look the rule up by the files it matched.
    retention = _file_retention(sources, [path, *reversed(files)])
    if not files and kind == "file":
        # A declared access log that is not there: a wrong path, or the application logs
        # elsewhere. Either way nothing here proves retention.
        retention = Unavailable(f"access log {path} does not exist (check logs.access_logs)")
    return LogStream(
        name=name,
        kind=kind,
        present=True,
        paths=tuple(reversed(files)) or (path,),
        retention=retention,
        oldest=oldest,
        forwarded_to=forwarded,
    )


def journald_stream(
    runner: Runner, config: JournaldConfig | Unavailable, sources: Sources
) -> LogStream:
    """The journal: absent on a host without systemd's journal."""
    if (
        isinstance(config, JournaldConfig)
        and not config.files
        and runner.which("journalctl") is None
    ):
        return LogStream(
            name="journald",
            kind="journald",
            present=False,
            absent_reason="no systemd journal: neither journald.conf nor journalctl exists",
        )
    rsyslog = sources.rsyslog
    # rsyslog sees the journal when journald forwards to its socket, or reads it (imjournal).
    linked = isinstance(config, JournaldConfig) and bool(config.forward_to_syslog)
    linked = linked or (isinstance(rsyslog, RsyslogConfig) and rsyslog.imjournal)
    return LogStream(
        name="journald",
        kind="journald",
        present=True,
        paths=("/var/log/journal", "/run/log/journal"),
        retention=config if isinstance(config, Unavailable) else journald_retention(config),
        oldest=read_journal_oldest(runner),
        forwarded_to=_forwarded(sources, JOURNAL_FACILITIES, via_syslog=linked),
    )


def _audit_forwarding(runner: Runner, sources: Sources) -> tuple[LogForwarding, ...] | Unavailable:
    """audisp-remote targets, and syslog rules carrying what the audit syslog plugin sends."""
    found: list[LogForwarding] = []
    try:
        for folder in AUDIT_PLUGIN_DIRS:
            try:
                names = runner.list_dir(folder)
            except SourceMissing:
                continue
            for name in names:
                if name not in {"au-remote.conf", "syslog.conf"}:
                    continue
                active, args = parse_audit_plugin(runner.read_text(f"{folder}/{name}"))
                if not active:
                    continue
                if name == "syslog.conf":
                    via_syslog = _forwarded(sources, (syslog_plugin_facility(args),))
                    if isinstance(via_syslog, Unavailable):
                        return via_syslog
                    found.extend(via_syslog)
                    continue
                conf = next((c for c in AUDISP_REMOTE_CONFS if runner.exists(c)), None)
                rule = None if conf is None else parse_audisp_remote(runner.read_text(conf), conf)
                if rule is not None:
                    found.append(rule)
    except (GatherError, ValueError) as exc:
        return Unavailable(f"audit dispatcher plugins unreadable: {exc}")
    return tuple(found)


def audit_stream(
    runner: Runner, sources: Sources
) -> tuple[LogStream, AuditdConfig | Unavailable | None]:
    """The audit trail, and auditd's configuration for `LogFacts.auditd`."""
    if not runner.exists(AUDITD_CONF):
        absent = LogStream(
            name="audit",
            kind="auditd",
            present=False,
            absent_reason=f"auditd is not installed ({AUDITD_CONF} does not exist)",
        )
        return absent, None
    try:
        config = parse_auditd_conf(runner.read_text(AUDITD_CONF))
    except (GatherError, ValueError) as exc:
        unreadable = Unavailable(f"{AUDITD_CONF} unreadable: {exc}")
        return LogStream("audit", "auditd", True, retention=unreadable), unreadable
    files, oldest = read_stream_files(runner, config.log_file, now=sources.now)
    stream = LogStream(
        name="audit",
        kind="auditd",
        present=True,
        paths=tuple(reversed(files)) or (config.log_file,),
        retention=auditd_retention(config),
        oldest=oldest,
        forwarded_to=_audit_forwarding(runner, sources),
    )
    return stream, config


def _access_forwarding(sources: Sources, path: str) -> tuple[LogForwarding, ...] | Unavailable:
    """Forwarding rules carrying what an rsyslog imfile input reads from `path`."""
    rsyslog = sources.rsyslog
    if isinstance(rsyslog, Unavailable):
        return rsyslog
    if rsyslog is None:
        return ()
    found: list[LogForwarding] = []
    for source in rsyslog.inputs:
        if source.pattern != path and not pattern_matches(source.pattern, path):
            continue
        for rule in rsyslog.forwards:
            if source.ruleset is None:
                wanted = carries(rule, (source.facility,))
            else:  # an input bound to a ruleset: its unconditional actions carry it
                wanted = rule.condition == f"ruleset {source.ruleset}" and (
                    rule.selector is None or selector_covers(rule.selector, source.facility)
                )
            if wanted and rule not in found:
                found.append(rule)
    return tuple(found)


def syslog_stream(
    runner: Runner,
    sources: Sources,
    name: str,
    candidates: Sequence[str],
    facilities: Sequence[str],
) -> LogStream:
    """A stream a syslog daemon writes to one of `candidates` (auth, syslog); absent when no
    daemon writes any of them."""
    path = _syslog_file(runner, sources.rsyslog, candidates, facilities[-1])
    if path is None:
        return LogStream(
            name=name,
            kind="logrotate",
            present=False,
            absent_reason=f"no syslog daemon writes {' or '.join(candidates)}: these "
            "records stay in the journal (target journald)",
        )
    forwarded = _forwarded(sources, facilities)
    return _file_stream(runner, sources, name, path, forwarded, kind="logrotate")


def access_log_stream(runner: Runner, sources: Sources, path: str) -> LogStream:
    """An access log the site configuration declares (a path, or a glob of dated files)."""
    forwarded = _access_forwarding(sources, path)
    return _file_stream(runner, sources, path, path, forwarded, kind="file")
