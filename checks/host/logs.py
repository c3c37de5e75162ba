"""Log retention: every log stream is kept for the retention the site requires (by default six
months: Cybersecurity Law Art. 21/23, MNDS 7.2.3.4, GB/T 22239 8.1.5.4 d), locally or on a
central log server the site declares.

One result per stream. Locally, a guaranteed number of days in the configuration decides
(logrotate `rotate` × interval when nothing but the interval rotates the file); where the
configuration bounds a stream by size or by a number of files (logrotate `size`/`maxsize`,
journald's size limits, auditd), the age of the oldest record still on the host decides. A
ceiling below the requirement (journald `MaxRetentionSec`) fails whatever is on disk; a ceiling
above it proves nothing, since the size limits still delete. Forwarding counts only to a server
the site has declared: the agent cannot see how long a remote server keeps logs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from checks.facts.logs import (
    LogFacts,
    LogForwarding,
    LogStream,
    OldestRecord,
    Retention,
    days_text,
)
from checks.hostport import parse_host_port
from checks.model import (
    Msg,
    Outcome,
    Severity,
    Unavailable,
    errored,
    failed,
    not_applicable,
    passed,
    require,
)
from checks.registry import check

# Ports the daemons use when the configuration names none, to compare with "host:port" entries.
_DEFAULT_PORTS = {"rsyslog": 514, "syslog-ng": 514, "audisp-remote": 60}


def _logs(facts: Any) -> LogFacts:
    return require(facts.logs, LogFacts)


def _declared(rule: LogForwarding, servers: Sequence[str]) -> bool:
    """A declared entry is a host (any port) or host:port ([v6]:port)."""
    for entry in servers:
        host, port = parse_host_port(entry.strip())
        if host.lower() != rule.host.lower():
            continue
        if port is None or port == (rule.port or _DEFAULT_PORTS[rule.daemon]):
            return True
    return False


def _target(rule: LogForwarding) -> str:
    host = f"[{rule.host}]" if ":" in rule.host else rule.host
    return f"{host}:{rule.port}" if rule.port else host


def _age_days(oldest: OldestRecord, observed_at: datetime) -> float:
    return (observed_at - datetime.fromisoformat(oldest.at)).total_seconds() / 86400


def _local(
    retention: Retention,
    oldest: OldestRecord | Unavailable | None,
    observed_at: datetime,
    minimum: int,
) -> tuple[bool | None, Msg]:
    """(kept long enough locally: True/False/None for unknown, the reason in words).

    The gatherer's description of the configuration is English; the Chinese quotes it verbatim,
    as an assessor quotes a configuration line, and says the conclusion in Chinese around it."""
    text = retention.description
    if retention.volatile:
        return False, Msg(text, f"日志仅存于易失存储，重启即丢失（{text}）")
    if retention.unlimited:
        return True, Msg(text, f"不限留存期限（{text}）")
    ceiling = retention.ceiling_days
    if ceiling is not None and ceiling < minimum:
        return False, Msg(
            f"{text}; records older than {days_text(ceiling)} days are deleted < {minimum}",
            f"{text}（超过 {days_text(ceiling)} 天的记录会被删除，少于要求的 {minimum} 天）",
        )
    if retention.days is not None:
        ok = retention.days >= minimum
        return ok, Msg(
            f"{text} {'≥' if ok else '<'} {minimum}",
            f"{text}（留存 {days_text(retention.days)} 天，{'达到' if ok else '不足'}要求的 "
            f"{minimum} 天）",
        )
    return _by_oldest(text, oldest, observed_at, minimum)


def _by_oldest(
    text: str, oldest: OldestRecord | Unavailable | None, observed_at: datetime, minimum: int
) -> tuple[bool | None, Msg]:
    """No number of days in the configuration: the oldest record still kept decides."""
    unbounded = f"配置未规定留存时限（{text}）"
    if isinstance(oldest, Unavailable):
        return None, Msg(
            f"{text}; the oldest record is unreadable: {oldest.reason}",
            f"{unbounded}；无法读取最早的日志记录：{oldest.reason}",
        )
    if oldest is None:
        return False, Msg(f"{text}; no record is kept yet", f"{unbounded}；尚无留存的日志记录")
    age = _age_days(oldest, observed_at)
    ok = age >= minimum
    return ok, Msg(
        f"{text}; the oldest record is {days_text(age)} days old {'≥' if ok else '<'} {minimum}",
        f"{unbounded}；最早的日志记录已留存 {days_text(age)} 天，{'达到' if ok else '不足'}要求的 "
        f"{minimum} 天",
    )


def _evidence(
    stream: LogStream, logs: LogFacts, minimum: int, servers: Sequence[str]
) -> dict[str, Any]:
    retention = stream.retention
    oldest = stream.oldest
    forwarded = stream.forwarded_to
    evidence: dict[str, Any] = {
        "kind": stream.kind,
        "paths": list(stream.paths),
        "min_retention_days": minimum,
        "central_log_servers": list(servers),
        "observed_at": logs.observed_at,
    }
    if isinstance(retention, Retention):
        evidence["configured"] = {
            "days": None if retention.days is None else round(retention.days, 1),
            "description": retention.description,
            "unlimited": retention.unlimited,
            "volatile": retention.volatile,
            "ceiling_days": None
            if retention.ceiling_days is None
            else round(retention.ceiling_days, 1),
            "sources": list(retention.sources),
        }
    elif isinstance(retention, Unavailable):
        evidence["configured"] = {"unavailable": retention.reason}
    if isinstance(oldest, OldestRecord):
        age = _age_days(oldest, datetime.fromisoformat(logs.observed_at))
        evidence["oldest_record"] = {
            "at": oldest.at,
            "age_days": round(age, 1),
            "source": oldest.source,
        }
    elif isinstance(oldest, Unavailable):
        evidence["oldest_record"] = {"unavailable": oldest.reason}
    else:
        evidence["oldest_record"] = None
    if isinstance(forwarded, Unavailable):
        evidence["forwarded_to"] = {"unavailable": forwarded.reason}
    else:
        evidence["forwarded_to"] = [
            {
                "daemon": f.daemon,
                "target": _target(f),
                "protocol": f.protocol,
                "selector": f.selector,
                "source": f.source,
            }
            for f in forwarded
        ]
    return evidence


def _judge(  # noqa: PLR0911 — one return per conclusion
    stream: LogStream, logs: LogFacts, minimum: int, servers: Sequence[str]
) -> Outcome:
    name = stream.name
    if not stream.present:
        absent = stream.absent_reason
        if absent:
            return not_applicable(Msg(absent, f"该日志流不存在：{absent}"), target=name)
        return not_applicable(Msg("stream not present", "该日志流不存在"), target=name)
    evidence = _evidence(stream, logs, minimum, servers)
    retention = stream.retention
    if not isinstance(retention, Retention):
        if isinstance(retention, Unavailable):
            reason = reason_zh = retention.reason
        else:
            reason, reason_zh = "not gathered", "未采集"
        return errored(
            Msg(f"cannot tell the retention: {reason}", f"无法判断留存期限：{reason_zh}"),
            evidence,
            target=name,
        )
    ok, local = _local(retention, stream.oldest, datetime.fromisoformat(logs.observed_at), minimum)
    if ok:
        return passed(local, evidence, target=name)
    forwarded = stream.forwarded_to
    if isinstance(forwarded, Unavailable):
        return errored(
            Msg(
                f"{local.en}; forwarding configuration unreadable: {forwarded.reason}",
                f"{local.zh}；无法读取日志转发配置：{forwarded.reason}",
            ),
            evidence,
            target=name,
        )
    declared = [f for f in forwarded if _declared(f, servers)]
    if declared:
        rule = declared[0]
        return passed(
            Msg(
                f"forwarded by {rule.daemon} to declared central log server {_target(rule)} "
                f"({rule.protocol}); locally: {local.en}",
                f"由 {rule.daemon} 转发至已登记的集中日志服务器 {_target(rule)}"
                f"（{rule.protocol}）；本地：{local.zh}",
            ),
            evidence,
            target=name,
        )
    if forwarded:
        targets = ", ".join(sorted({_target(f) for f in forwarded}))
        return failed(
            Msg(
                f"{local.en}; forwarded to {targets}, which is not declared in "
                f"central_log_servers: declare it if that server keeps logs ≥ {minimum} days",
                f"{local.zh}；日志转发至 {targets}，但其未登记在 central_log_servers 中，"
                f"不符合：如该服务器留存日志不少于 {minimum} 天，请予以登记",
            ),
            evidence,
            target=name,
        )
    if ok is None:
        return errored(local, evidence, target=name)
    return failed(local, evidence, target=name)


@check(
    "log.retention",
    title_en="Logs are kept for the required period, locally or on a declared central log server",
    title_zh="日志留存满足规定期限（本地留存或转发至已登记的集中日志服务器）",
    severity=Severity.HIGH,
    needs=("logs",),
    params={"min_retention_days": 183, "central_log_servers": []},
)
def log_retention(
    facts: Any, min_retention_days: int, central_log_servers: list[str]
) -> Iterator[Outcome]:
    logs = _logs(facts)
    for stream in logs.streams:
        yield _judge(stream, logs, min_retention_days, central_log_servers)
