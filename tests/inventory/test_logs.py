"""Log retention gatherer: parsers on configuration recorded from real hosts, `collect_logs` on
recorded /etc and /var/log trees (tests/fixtures/etc/<scenario>/), on a real journal written by
systemd-journal-remote, and on this machine.

The trees are read through `LocalRunner(root=...)`. Commands are not re-based, so journalctl gets
`--root=TREE` from a thin adapter: it then reads the tree's journal files (none, or the ones a
test wrote), exactly as it reads /var/log/journal on a host.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.facts import HostFacts
from checks.facts.logs import (
    JournaldConfig,
    LogFacts,
    LogStream,
    OldestRecord,
    Retention,
)
from checks.host.logs import log_retention
from checks.model import Status, Unavailable
from checks.runner import run_check
from inventory.host.logs import (
    auditd_retention,
    carries,
    collect_logs,
    first_line,
    journald_retention,
    parse_audisp_remote,
    parse_auditd_conf,
    parse_journal_oldest,
    parse_journald_conf,
    parse_legacy_forward,
    parse_line_timestamp,
    parse_rsyslog,
    parse_syslog_ng,
    parse_timespan,
    rotated_files,
    selector_covers,
    syslog_plugin_facility,
)
from tests.inventory.log_trees import TreeRunner, need_journalctl, write_journal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "etc"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # when the fixture logs were recorded
CENTRAL = "198.18.4.50"


def gather(scenario: str, *access_logs: str) -> LogFacts:
    need_journalctl()
    return collect_logs(TreeRunner(FIXTURES / scenario), access_logs, now=NOW)


def streams(facts: LogFacts) -> dict[str, LogStream]:
    return {s.name: s for s in facts.streams}


def judge(facts: LogFacts, servers: Sequence[str] = ()) -> dict[str, tuple[Status, str]]:
    results = run_check(
        log_retention, HostFacts(logs=facts), {"central_log_servers": list(servers)}
    )
    return {str(r.target): (r.status, r.message) for r in results}


# ----------------------------------------------------------------------------- time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("1year", 31557600),
        ("6month", 6 * 2629800),
        ("1y 2w", 31557600 + 14 * 86400),
        ("5min", 300),
        ("200d", 200 * 86400),
        ("1.5h", 5400),
    ],
)
def test_parse_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text) == pytest.approx(seconds)


def test_parse_timespan_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="time span"):
        parse_timespan("six months")


def test_six_systemd_months_are_less_than_183_days() -> None:
    """A trap worth knowing: systemd's month is 30.44 days, so `6month` is 182.6 days."""
    assert parse_timespan("6month") / 86400 == pytest.approx(182.6, abs=0.05)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "type=USER_LOGIN msg=audit(1774267200.203:1203): pid=2231 uid=0",
            datetime(2026, 3, 23, 12, 0, tzinfo=UTC),
        ),
        (
            "2026-11-27T18:03:11.123456+08:00 his-db-01 sshd[812]: Accepted publickey",
            datetime(2026, 11, 27, 10, 3, 11, tzinfo=UTC),
        ),
        (
            '198.18.3.10 - - [13/May/2026:08:00:00 +0800] "GET / HTTP/1.1" 200 5',
            datetime(2026, 5, 13, 0, 0, tzinfo=UTC),
        ),
        (
            "2026/10/01 03:12:44 [error] 811#811: *1 open() failed",
            datetime(2026, 10, 1, 3, 12, 44, tzinfo=UTC),
        ),
        ("Nov 22 09:00:00 his-db-01 CRON[1]: x", datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        # December's line read in late November is from last year.
        ("Dec  3 09:00:00 his-db-01 CRON[1]: x", datetime(2025, 12, 3, 9, 0, tzinfo=UTC)),
        ("no timestamp here", None),
    ],
)
def test_parse_line_timestamp(line: str, expected: datetime | None) -> None:
    assert parse_line_timestamp(line, now=NOW) == expected


def test_rotated_files_oldest_first() -> None:
    names = ["auth.log", "auth.log.1", "auth.log.2.gz", "auth.log.10.gz", "authx.log", "kern.log"]
    assert rotated_files("/var/log/auth.log", names) == [
        "/var/log/auth.log.10.gz",
        "/var/log/auth.log.2.gz",
        "/var/log/auth.log.1",
        "/var/log/auth.log",
    ]
    dated = ["secure", "secure-20261101.gz", "secure-20260601.gz", "secure-20260901"]
    assert rotated_files("/var/log/secure", dated) == [
        "/var/log/secure-20260601.gz",
        "/var/log/secure-20260901",
        "/var/log/secure-20261101.gz",
        "/var/log/secure",
    ]


def test_first_line_of_compressed_and_empty_files() -> None:
    data = (FIXTURES / "debian-default/var/log/auth.log.4.gz").read_bytes()
    line = first_line(data, "auth.log.4.gz")
    assert line is not None
    assert line.startswith("Oct 25 09:00:00")
    assert first_line(b"\n\n", "auth.log") is None
    with pytest.raises(ValueError, match="zst"):
        first_line(b"(\xb5/\xfd", "auth.log.2.zst")


# ----------------------------------------------------------------------------- journald


def test_journald_dropins_override_in_name_order() -> None:
    main = "[Journal]\n#Storage=auto\n#ForwardToSyslog=yes\n"
    config = parse_journald_conf(
        [
            ("/etc/systemd/journald.conf", main),
            ("/usr/lib/systemd/journald.conf.d/10-a.conf", "[Journal]\nStorage=volatile\n"),
            (
                "/etc/systemd/journald.conf.d/20-b.conf",
                "[Journal]\nStorage=persistent\nMaxRetentionSec=1year\n",
            ),
        ],
        persistent_dir=False,
    )
    assert config.storage == "persistent"
    assert config.max_retention_sec == pytest.approx(31557600)
    # Not set anywhere: the default the shipped file documents.
    assert config.forward_to_syslog is True


def test_journald_documented_default_comes_only_from_the_main_file() -> None:
    config = parse_journald_conf(
        [
            ("/etc/systemd/journald.conf", "[Journal]\n#ForwardToSyslog=no\n"),
            ("/etc/systemd/journald.conf.d/x.conf", "[Journal]\n#ForwardToSyslog=yes\n"),
        ],
        persistent_dir=True,
    )
    assert config.forward_to_syslog is False
    assert parse_journald_conf([], persistent_dir=True).forward_to_syslog is None


def test_journald_other_sections_are_ignored_and_zero_means_unset() -> None:
    config = parse_journald_conf(
        [("x", "[Other]\nStorage=none\n[Journal]\nMaxRetentionSec=0\n")], persistent_dir=True
    )
    assert config.storage == "auto"
    assert config.max_retention_sec is None


JOURNALD = JournaldConfig(
    storage="auto",
    persistent_dir=True,
    max_retention_sec=None,
    max_retention_raw=None,
    system_max_use=None,
    max_file_sec=None,
    forward_to_syslog=None,
    files=("/etc/systemd/journald.conf",),
)


def _journald(**changes: Any) -> JournaldConfig:
    return replace(JOURNALD, **changes)


def test_journald_retention() -> None:
    assert journald_retention(_journald(persistent_dir=False)).volatile
    assert journald_retention(_journald(storage="volatile")).volatile
    none = journald_retention(_journald(storage="none"))
    assert none.volatile
    assert "Storage=none" in none.description
    unset = journald_retention(_journald())
    assert (unset.days, unset.volatile) == (None, False)
    six = journald_retention(
        _journald(max_retention_sec=parse_timespan("6month"), max_retention_raw="6month")
    )
    # A ceiling, not a floor: the size cap deletes older entries whatever it says.
    assert six.days is None
    assert six.ceiling_days == pytest.approx(182.6, abs=0.05)
    assert "MaxRetentionSec=6month = 182.6 days is a ceiling, not a floor" in six.description
    bad = parse_journald_conf(
        [("x", "[Journal]\nMaxRetentionSec=six months\n")], persistent_dir=True
    )
    assert bad.max_retention_sec is None  # journald ignores a value it cannot read
    assert "ignores MaxRetentionSec=six months" in journald_retention(bad).description


def test_parse_journal_oldest() -> None:
    line = '{"__REALTIME_TIMESTAMP":"1778609916000000","MESSAGE":"oldest"}\n'
    assert parse_journal_oldest(line) == datetime.fromtimestamp(1778609916, UTC)
    assert parse_journal_oldest("") is None


# ----------------------------------------------------------------------------- auditd


def test_auditd_conf_and_retention() -> None:
    hardened = parse_auditd_conf((FIXTURES / "hardened/etc/audit/auditd.conf").read_text())
    assert (hardened.num_logs, hardened.max_log_file_mb, hardened.max_log_file_action) == (
        200,
        50,
        "ROTATE",
    )
    rotate = auditd_retention(hardened)
    assert rotate.days is None
    assert "a count, not a time" in rotate.description
    defaults = parse_auditd_conf("")
    assert (defaults.num_logs, defaults.max_log_file_action) == (5, "ROTATE")
    keep = auditd_retention(parse_auditd_conf("max_log_file_action = keep_logs\n"))
    assert keep.unlimited
    off = auditd_retention(parse_auditd_conf("write_logs = no\n"))
    assert off.days == 0


def test_audit_plugins() -> None:
    assert syslog_plugin_facility("LOG_INFO LOG_LOCAL6") == "local6"
    assert syslog_plugin_facility("LOG_INFO") == "user"
    remote = parse_audisp_remote(
        "remote_server = 198.18.4.50\nport = 60\ntransport = TCP\n", "/etc/audit/audisp-remote.conf"
    )
    assert remote is not None
    assert (remote.host, remote.port, remote.protocol) == ("198.18.4.50", 60, "tcp")
    assert parse_audisp_remote("remote_server =\n", "x") is None


# ----------------------------------------------------------------------------- syslog


@pytest.mark.parametrize(
    ("selector", "facility", "covered"),
    [
        ("*.*", "auth", True),
        ("*.*;auth,authpriv.none", "authpriv", False),
        ("*.*;auth,authpriv.none", "daemon", True),
        ("auth,authpriv.*", "authpriv", True),
        ("auth,authpriv.*", "user", False),
        ("*.info", "kern", True),
        ("*.warn", "kern", False),  # info messages are dropped
        ("*.=info", "user", True),
        ("*.*;user.!info", "user", False),
        ("*.info;mail.none;authpriv.none;cron.none", "authpriv", False),
    ],
)
def test_selector_covers(selector: str, facility: str, covered: bool) -> None:
    assert selector_covers(selector, facility) is covered


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("@@198.18.4.50:514", ("198.18.4.50", 514, "tcp")),
        ("@198.18.4.50", ("198.18.4.50", None, "udp")),
        ("@@(o)loghost.his.local:10514;RSYSLOG_ForwardFormat", ("loghost.his.local", 10514, "tcp")),
        ("@[2001:db8::50]:514", ("2001:db8::50", 514, "udp")),
        (":omrelp:198.18.4.50:2514", ("198.18.4.50", 2514, "relp")),
        ("-/var/log/syslog", None),
    ],
)
def test_parse_legacy_forward(action: str, expected: tuple[str, int | None, str] | None) -> None:
    assert parse_legacy_forward(action) == expected


def test_rsyslog_debian_default_writes_files_and_forwards_nothing() -> None:
    text = (FIXTURES / "debian-default/etc/rsyslog.conf").read_text()
    config = parse_rsyslog([("/etc/rsyslog.conf", text)])
    assert config.forwards == []
    outputs = {o.path: o.selector for o in config.outputs}
    assert outputs["/var/log/syslog"] == "*.*;auth,authpriv.none"
    assert outputs["/var/log/auth.log"] == "auth,authpriv.*"
    assert not config.imjournal


def test_rsyslog_rhel_reads_the_journal() -> None:
    text = (FIXTURES / "hardened/etc/rsyslog.conf").read_text()
    config = parse_rsyslog([("/etc/rsyslog.conf", text)])
    assert config.imjournal
    assert {o.path for o in config.outputs} >= {"/var/log/secure", "/var/log/messages"}


def test_rsyslog_forwarding_forms() -> None:
    text = """
# legacy, with tabs
auth,authpriv.*\t\t@@198.18.4.50:514
&\t@198.18.4.51
:programname, isequal, "sudo"  @@198.18.4.52
*.* action(type="omfwd" target="198.18.4.53" port="514" protocol="tcp") # same line
if prifilt("local6.*") then action(type="omfwd" target="198.18.4.54" protocol="tcp")
if $programname == 'nginx' then
    action(type="omfwd" target="198.18.4.55")
action(type="omrelp" target="198.18.4.56" port="2514")
ruleset(name="remote") {
    action(type="omfwd" Target="198.18.4.57" Port="6514" Protocol="tcp"
           StreamDriver="gtls" StreamDriverMode="1")
}
*.*\t@@198.18.4.58 # "quoted # in a comment"
"""
    rules = {f.host: f for f in parse_rsyslog([("/etc/rsyslog.d/fwd.conf", text)]).forwards}
    assert list(rules) == [f"198.18.4.{n}" for n in range(50, 59)]
    assert (rules["198.18.4.50"].selector, rules["198.18.4.50"].protocol) == (
        "auth,authpriv.*",
        "tcp",
    )
    assert rules["198.18.4.51"].selector == "auth,authpriv.*"  # `&`: the previous filter
    assert rules["198.18.4.52"].condition is not None
    assert rules["198.18.4.53"].selector == "*.*"
    assert (rules["198.18.4.53"].port, rules["198.18.4.53"].condition) == (514, None)
    assert rules["198.18.4.54"].selector == "local6.*"
    assert rules["198.18.4.55"].condition == "if $programname == 'nginx' then"
    assert rules["198.18.4.55"].protocol == "udp"  # omfwd's default
    assert (rules["198.18.4.56"].selector, rules["198.18.4.56"].protocol) == (None, "relp")
    assert rules["198.18.4.57"].condition == "ruleset remote"
    assert rules["198.18.4.57"].protocol == "tls"
    assert rules["198.18.4.58"].selector == "*.*"
    assert carries(rules["198.18.4.53"], ("auth", "authpriv", "user"))
    assert not carries(rules["198.18.4.50"], ("user",))
    assert not carries(rules["198.18.4.55"], ("user",))
    assert carries(rules["198.18.4.56"], ("auth",))


def test_syslog_ng_destinations_used_by_log_paths() -> None:
    text = """
@version: 3.38
source s_src { system(); internal(); };
destination d_central { network("198.18.4.50" port(6514) transport("tls")
    tls(ca-dir("/etc/syslog-ng/ca.d"))); };
destination d_udp { udp("198.18.4.51" port(514)); };
destination d_unused { tcp("198.18.4.52" port(514)); };
filter f_auth { facility(auth, authpriv); };
log { source(s_src); destination(d_central); };
log { source(s_src); filter(f_auth); destination(d_udp); };
"""
    rules = parse_syslog_ng([("/etc/syslog-ng/syslog-ng.conf", text)])
    by_host = {r.host: r for r in rules}
    assert set(by_host) == {"198.18.4.50", "198.18.4.51"}
    assert (by_host["198.18.4.50"].port, by_host["198.18.4.50"].protocol) == (6514, "tls")
    assert by_host["198.18.4.50"].condition is None
    assert by_host["198.18.4.51"].protocol == "udp"
    assert by_host["198.18.4.51"].condition == "filter f_auth"


# ----------------------------------------------------------------------------- recorded hosts


def test_debian_default_keeps_four_weeks() -> None:
    facts = gather("debian-default")
    by_name = streams(facts)
    assert list(by_name) == ["journald", "auth", "syslog", "audit"]
    auth = by_name["auth"]
    assert auth.paths[0] == "/var/log/auth.log"
    assert auth.paths[-1] == "/var/log/auth.log.4.gz"
    assert isinstance(auth.retention, Retention)
    assert auth.retention.days == 28
    assert auth.oldest == OldestRecord(
        "2026-10-25T09:00:00Z", "first line of /var/log/auth.log.4.gz"
    )
    assert facts.forwarding == ()
    journald = facts.journald
    assert isinstance(journald, JournaldConfig)
    assert (journald.storage, journald.persistent_dir) == ("auto", True)
    assert journald.forward_to_syslog is True  # Debian's documented default
    assert by_name["journald"].oldest is None  # the recorded journal folder is empty

    verdicts = judge(facts)
    assert verdicts["auth"] == (Status.FAIL, "logrotate keeps 4 weekly = 28 days < 183")
    assert verdicts["syslog"][0] is Status.FAIL
    assert verdicts["journald"][0] is Status.FAIL
    assert "no record is kept yet" in verdicts["journald"][1]
    assert verdicts["audit"] == (
        Status.NOT_APPLICABLE,
        "auditd is not installed (/etc/audit/auditd.conf does not exist)",
    )


def test_hardened_hospital_host_keeps_six_months() -> None:
    facts = gather("hardened", "/var/log/nginx/access.log")
    by_name = streams(facts)
    assert by_name["auth"].paths[0] == "/var/log/secure"
    assert by_name["syslog"].paths[0] == "/var/log/messages"
    audit = by_name["audit"]
    assert audit.paths[-1] == "/var/log/audit/audit.log.199"
    assert isinstance(audit.oldest, OldestRecord)
    assert audit.oldest.at == "2026-03-23T12:00:00Z"  # 250 days before NOW
    nginx = by_name["/var/log/nginx/access.log"]
    assert isinstance(nginx.retention, Retention)
    assert nginx.retention.days == 200  # logrotate.d/nginx, not the .rpmsave beside it
    assert isinstance(nginx.oldest, OldestRecord)
    assert nginx.oldest.source == "first line of /var/log/nginx/access.log-20260513.gz"

    verdicts = judge(facts)
    assert {name: status for name, (status, _) in verdicts.items()} == {
        # MaxRetentionSec=1year is a ceiling: with nothing in the journal, nothing is kept.
        "journald": Status.FAIL,
        "auth": Status.PASS,
        "syslog": Status.PASS,
        "audit": Status.PASS,
        "/var/log/nginx/access.log": Status.PASS,
    }
    assert verdicts["journald"][1].startswith(
        "journald MaxRetentionSec=1year = 365.2 days is a ceiling, not a floor"
    )
    assert verdicts["journald"][1].endswith("no record is kept yet")
    assert "200 files of 50 MB" in verdicts["audit"][1]
    assert "250 days old ≥ 183" in verdicts["audit"][1]


def test_forwarding_to_a_declared_central_server() -> None:
    facts = gather("central-forward", "/var/log/his/access.log")
    by_name = streams(facts)
    assert isinstance(facts.forwarding, tuple)
    hosts = sorted({(f.host, f.condition) for f in facts.forwarding}, key=str)
    assert hosts == [
        ("198.18.4.50", "ruleset his_access"),
        ("198.18.4.50", None),
        ("198.18.4.60", "if $programname == 'sudo' then"),
    ]
    assert isinstance(by_name["journald"].retention, Retention)
    assert by_name["journald"].retention.volatile
    access = by_name["/var/log/his/access.log"]
    assert isinstance(access.forwarded_to, tuple)
    assert [f.condition for f in access.forwarded_to] == ["ruleset his_access"]

    declared = judge(facts, [CENTRAL])
    for name in ("journald", "auth", "syslog", "/var/log/his/access.log"):
        status, message = declared[name]
        assert status is Status.PASS, (name, message)
        assert "declared central log server 198.18.4.50:6514 (tls)" in message
    assert declared["audit"][0] is Status.NOT_APPLICABLE
    assert judge(facts, [f"{CENTRAL}:6514"])["auth"][0] is Status.PASS
    assert judge(facts, [f"{CENTRAL}:514"])["auth"][0] is Status.FAIL

    undeclared = judge(facts)
    status, message = undeclared["auth"]
    assert status is Status.FAIL
    assert "forwarded to 198.18.4.50:6514, which is not declared in central_log_servers" in message
    assert message.startswith("logrotate keeps 4 weekly = 28 days < 183")


def test_volatile_journald_fails() -> None:
    facts = gather("volatile-journald")
    journald = facts.journald
    assert isinstance(journald, JournaldConfig)
    # /etc's 10-persistent.conf masks the vendor's; 20-size.conf still applies.
    assert journald.files == (
        "/etc/systemd/journald.conf",
        "/etc/systemd/journald.conf.d/10-persistent.conf",
        "/usr/lib/systemd/journald.conf.d/20-size.conf",
    )
    assert (journald.storage, journald.persistent_dir, journald.max_retention_sec) == (
        "auto",
        False,
        None,
    )
    verdicts = judge(facts)
    status, message = verdicts["journald"]
    assert status is Status.FAIL
    assert "volatile" in message
    assert verdicts["auth"][0] is Status.NOT_APPLICABLE
    assert logs_absent_reason(facts, "syslog").endswith("(target journald)")


def logs_absent_reason(facts: LogFacts, name: str) -> str:
    stream = streams(facts)[name]
    assert not stream.present
    return stream.absent_reason or ""


def test_missing_access_log_is_an_error_not_a_pass() -> None:
    verdicts = judge(gather("hardened", "/var/log/nginx/missing.log"))
    status, message = verdicts["/var/log/nginx/missing.log"]
    assert status is Status.ERROR
    assert "does not exist" in message


def test_glob_access_logs_are_dated_by_name(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "hardened", tmp_path / "tree")
    logs = tmp_path / "tree/var/log/tomcat"
    logs.mkdir()
    for day in ("2026-05-01", "2026-11-27"):
        stamp = f"{datetime.fromisoformat(day):%d/%b/%Y}:10:00:00 +0000"
        (logs / f"localhost_access_log.{day}.txt").write_text(
            f'198.18.3.10 - - [{stamp}] "GET / HTTP/1.1" 200 1\n'
        )
    facts = collect_logs(
        TreeRunner(tmp_path / "tree"), ["/var/log/tomcat/localhost_access_log.*.txt"], now=NOW
    )
    stream = streams(facts)["/var/log/tomcat/localhost_access_log.*.txt"]
    assert isinstance(stream.oldest, OldestRecord)
    assert stream.oldest.at == "2026-05-01T10:00:00Z"
    status, message = judge(facts)[stream.name]
    assert status is Status.PASS  # no logrotate rule, but 211 days are on disk
    assert "no logrotate rule names" in message


def test_unreadable_config_is_an_error() -> None:
    """A non-root agent may not read a file: the stream is `error`, never pass or fail."""
    need_journalctl()
    runner = TreeRunner(FIXTURES / "debian-default", denied={"/etc/logrotate.d/rsyslog"})
    facts = collect_logs(runner, (), now=NOW)
    auth = streams(facts)["auth"]
    assert isinstance(auth.retention, Unavailable)
    assert "permission denied" in auth.retention.reason
    status, message = judge(facts)["auth"]
    assert status is Status.ERROR
    assert "/etc/logrotate.d/rsyslog: permission denied" in message


def test_unreadable_audit_folder_is_an_error() -> None:
    """/var/log/audit is root-only: a count-bound trail whose files cannot be dated is `error`."""
    need_journalctl()
    runner = TreeRunner(FIXTURES / "hardened", denied={"/var/log/audit"})
    facts = collect_logs(runner, (), now=NOW)
    assert isinstance(streams(facts)["audit"].oldest, Unavailable)
    status, message = judge(facts)["audit"]
    assert status is Status.ERROR
    assert "the oldest record is unreadable: /var/log/audit: permission denied" in message


# ----------------------------------------------------------------------------- a real journal


def test_oldest_entry_of_a_real_journal(tmp_path: Path) -> None:
    need_journalctl()
    now = datetime.now(UTC).replace(microsecond=0)
    machine = tmp_path / "var/log/journal/0123456789abcdef0123456789abcdef"
    write_journal(
        machine / "remote-a.journal",
        [(now - timedelta(days=150), "a-first"), (now - timedelta(days=1), "a-last")],
    )
    # An older file: journalctl must interleave files, not read the first one it finds.
    write_journal(
        machine / "remote-b.journal",
        [(now - timedelta(days=200), "b-first"), (now - timedelta(days=100), "b-middle")],
    )
    (tmp_path / "etc/systemd").mkdir(parents=True)
    (tmp_path / "etc/systemd/journald.conf").write_text("[Journal]\n#Storage=auto\n")
    facts = collect_logs(TreeRunner(tmp_path), (), now=now)
    journald = streams(facts)["journald"]
    assert journald.oldest == OldestRecord(
        (now - timedelta(days=200)).isoformat().replace("+00:00", "Z"), "journal head (journalctl)"
    )
    status, message = judge(facts)["journald"]
    assert status is Status.PASS  # no MaxRetentionSec: the 200 days on disk decide
    assert "the oldest record is 200 days old ≥ 183" in message


def test_rotated_copies_in_olddir_are_dated_too(tmp_path: Path) -> None:
    """logrotate's `olddir` moves rotated copies away from the log: the oldest record is there."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "debian-default", tree)
    rsyslog = tree / "etc/logrotate.d/rsyslog"
    rsyslog.write_text(rsyslog.read_text().replace("\tweekly\n", "\tweekly\n\tolddir old\n"))
    (tree / "var/log/old").mkdir()
    for rotated in (tree / "var/log").glob("auth.log.*"):
        rotated.rename(tree / "var/log/old" / rotated.name)
    facts = collect_logs(TreeRunner(tree), (), now=NOW)
    auth = streams(facts)["auth"]
    assert auth.oldest == OldestRecord(
        "2026-10-25T09:00:00Z", "first line of /var/log/old/auth.log.4.gz"
    )
    assert auth.paths[0] == "/var/log/auth.log"
