"""auditd: /etc/audit/auditd.conf and the retention it gives the audit trail, and the audit
dispatcher plugins that send it elsewhere (audisp-remote, or the syslog plugin's facility).
"""

from __future__ import annotations

from checks.facts.logs import AuditdConfig, LogForwarding, Retention
from inventory.host.logs.journald import parse_bool
from inventory.host.logs.syslog import FACILITIES

AUDITD_CONF = "/etc/audit/auditd.conf"
AUDIT_PLUGIN_DIRS = ("/etc/audit/plugins.d", "/etc/audisp/plugins.d")
AUDISP_REMOTE_CONFS = ("/etc/audit/audisp-remote.conf", "/etc/audisp/audisp-remote.conf")


def _key_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().lower()] = value.strip()
    return values


def parse_auditd_conf(text: str) -> AuditdConfig:
    values = _key_values(text)
    return AuditdConfig(
        log_file=values.get("log_file", "/var/log/audit/audit.log"),
        num_logs=int(values.get("num_logs", "5")),
        max_log_file_mb=int(values.get("max_log_file", "8")),
        max_log_file_action=values.get("max_log_file_action", "ROTATE").upper(),
        write_logs=parse_bool(values.get("write_logs", "yes")) is not False,
    )


def auditd_retention(config: AuditdConfig) -> Retention:
    sources = (AUDITD_CONF,)
    action = config.max_log_file_action
    if not config.write_logs:
        return Retention(
            0.0, "auditd write_logs = no: no audit log is kept locally", sources=sources
        )
    if action == "KEEP_LOGS":
        return Retention(
            None,
            "auditd max_log_file_action = KEEP_LOGS: every audit log file is kept",
            unlimited=True,
            sources=sources,
        )
    if action == "ROTATE":
        return Retention(
            None,
            f"auditd keeps {config.num_logs} files of {config.max_log_file_mb} MB "
            "(max_log_file_action = ROTATE): a count, not a time",
            sources=sources,
        )
    return Retention(
        None,
        f"auditd max_log_file_action = {action}: {config.log_file} is never rotated away",
        unlimited=True,
        sources=sources,
    )


def parse_audit_plugin(text: str) -> tuple[bool, str]:
    """(`active = yes`, `args`) of an audit dispatcher plugin file."""
    values = _key_values(text)
    return parse_bool(values.get("active", "no")) is True, values.get("args", "")


def syslog_plugin_facility(args: str) -> str:
    """The facility the audit syslog plugin logs to: `LOG_LOCAL6` in its args, else user."""
    for word in args.split():
        name = word.upper().removeprefix("LOG_").lower()
        if name in FACILITIES and name not in {"kern"}:
            return name
    return "user"


def parse_audisp_remote(text: str, source: str) -> LogForwarding | None:
    values = _key_values(text)
    host = values.get("remote_server", "").strip()
    if not host:
        return None
    port = values.get("port", "60")
    return LogForwarding(
        daemon="audisp-remote",
        host=host,
        port=int(port) if port.isdigit() else None,
        protocol=values.get("transport", "tcp").lower(),
        selector=None,
        condition=None,
        source=source,
    )
