"""Log retention: how long journald, logrotate and auditd keep each log stream, how old the oldest
local record is, and which rsyslog, syslog-ng and audisp-remote rules forward it elsewhere.

`collect_logs()` does the reads through a `Runner`; every `parse_*` function is pure and is tested
on configuration recorded from real hosts (tests/fixtures/etc/<scenario>/). One module per source:
`journald`, `logrotate` (with `logrotate_config`, logrotate's own reading of its files, and
`logrotate_values`), `auditd`, `syslog` (rsyslog and syslog-ng), `oldest` (the oldest record
in rotated files), `timestamps`; `streams` joins them into one `LogStream` per stream and
`collect` is the entry point. This package re-exports their public names.
"""

from __future__ import annotations

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
from inventory.host.logs.collect import collect_logs
from inventory.host.logs.journald import (
    JOURNALCTL_TIMEOUT_S,
    JOURNALD_DROPIN_DIRS,
    JOURNALD_MAIN,
    journald_retention,
    parse_journal_oldest,
    parse_journald_conf,
    read_journal_oldest,
    read_journald_config,
)
from inventory.host.logs.logrotate import (
    INTERVAL_DAYS,
    LOGROTATE_CONF,
    LogrotateReading,
    find_logrotate_rule,
    interval_days,
    logrotate_retention,
    read_logrotate,
)
from inventory.host.logs.logrotate_config import (
    LogrotateConfig,
    LogrotateCrash,
    NotUnderstood,
    parse_logrotate_text,
    read_logrotate_config,
)
from inventory.host.logs.logrotate_values import Accounts, logrotate_bytes, parse_accounts
from inventory.host.logs.oldest import first_line, read_oldest_record, rotated_files
from inventory.host.logs.streams import (
    AUTH_FACILITIES,
    AUTH_FILES,
    JOURNAL_FACILITIES,
    SYSLOG_FACILITIES,
    SYSLOG_FILES,
)
from inventory.host.logs.syslog import (
    RSYSLOG_CONF,
    RSYSLOG_DIR,
    SYSLOG_NG_CONF,
    SYSLOG_NG_DIR,
    FileInput,
    FileOutput,
    RsyslogConfig,
    carries,
    parse_legacy_forward,
    parse_rsyslog,
    parse_syslog_ng,
    selector_covers,
)
from inventory.host.logs.timestamps import SECONDS_PER_DAY, parse_line_timestamp, parse_timespan

__all__ = [
    "AUDISP_REMOTE_CONFS",
    "AUDITD_CONF",
    "AUDIT_PLUGIN_DIRS",
    "AUTH_FACILITIES",
    "AUTH_FILES",
    "INTERVAL_DAYS",
    "JOURNALCTL_TIMEOUT_S",
    "JOURNALD_DROPIN_DIRS",
    "JOURNALD_MAIN",
    "JOURNAL_FACILITIES",
    "LOGROTATE_CONF",
    "RSYSLOG_CONF",
    "RSYSLOG_DIR",
    "SECONDS_PER_DAY",
    "SYSLOG_FACILITIES",
    "SYSLOG_FILES",
    "SYSLOG_NG_CONF",
    "SYSLOG_NG_DIR",
    "Accounts",
    "FileInput",
    "FileOutput",
    "LogrotateConfig",
    "LogrotateCrash",
    "LogrotateReading",
    "NotUnderstood",
    "RsyslogConfig",
    "auditd_retention",
    "carries",
    "collect_logs",
    "find_logrotate_rule",
    "first_line",
    "interval_days",
    "journald_retention",
    "logrotate_bytes",
    "logrotate_retention",
    "parse_accounts",
    "parse_audisp_remote",
    "parse_audit_plugin",
    "parse_auditd_conf",
    "parse_journal_oldest",
    "parse_journald_conf",
    "parse_legacy_forward",
    "parse_line_timestamp",
    "parse_logrotate_text",
    "parse_rsyslog",
    "parse_syslog_ng",
    "parse_timespan",
    "read_journal_oldest",
    "read_journald_config",
    "read_logrotate",
    "read_logrotate_config",
    "read_oldest_record",
    "rotated_files",
    "selector_covers",
    "syslog_plugin_facility",
]
