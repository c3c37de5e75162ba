"""logrotate configuration as logrotate reads it, and the retention each block proves: recorded
Debian and site snippets, the readings that differ from a line-by-line guess (case, values to the
end of the line, C numbers, units, skipped blocks, defaults across includes), and the rule that
only an interval proves days (`size` and `maxsize` leave the oldest record to decide).
`test_logrotate_truth.py` holds these readings against logrotate itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from checks.facts.logs import LogrotateRule
from inventory.host.logs import (
    Accounts,
    NotUnderstood,
    find_logrotate_rule,
    interval_days,
    logrotate_bytes,
    logrotate_retention,
    parse_logrotate_text,
    read_logrotate_config,
)
from inventory.runner import SourceMissing

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "etc"


class DictFiles:
    """A configuration tree held in a dict: path → text; folders are the paths' parents."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def read_text(self, path: str) -> str:
        if path not in self.files:
            raise SourceMissing(f"{path} does not exist")
        return self.files[path]

    def list_dir(self, path: str) -> list[str]:
        names = {p[len(path) + 1 :].split("/")[0] for p in self.files if p.startswith(path + "/")}
        if not names:
            raise SourceMissing(f"{path} is not a directory")
        return sorted(names)

    def exists(self, path: str) -> bool:
        return path in self.files or any(p.startswith(path + "/") for p in self.files)


def _rules(files: Mapping[str, str], accounts: Accounts | None = None) -> list[LogrotateRule]:
    return read_logrotate_config(DictFiles(files), "/etc/logrotate.conf", accounts=accounts).rules


def _one(text: str) -> LogrotateRule:
    (rule,) = parse_logrotate_text(text).rules
    return rule


def test_logrotate_globals_apply_to_later_includes_only() -> None:
    rules = _rules(
        {
            "/etc/logrotate.conf": "weekly\nrotate 4\ninclude /etc/logrotate.d\nrotate 52\n"
            "/var/log/wtmp {\n    monthly\n    rotate 1\n}\n/var/log/late.log {\n}\n",
            "/etc/logrotate.d/rsyslog": (
                FIXTURES / "debian-default/etc/logrotate.d/rsyslog"
            ).read_text(),
            "/etc/logrotate.d/app": '"/srv/app/logs/*.log" /srv/app/other.log {\n  size=100M\n'
            "  rotate 10\n}\n",
        }
    )
    auth = find_logrotate_rule(rules, "/var/log/auth.log")
    assert auth is not None
    assert (auth.interval, auth.rotate, auth.source) == ("weekly", 4, "/etc/logrotate.d/rsyslog")
    assert "/var/log/messages" in auth.patterns  # the pattern list spans 13 lines
    wtmp = find_logrotate_rule(rules, "/var/log/wtmp")
    assert wtmp is not None
    assert (wtmp.interval, wtmp.rotate) == ("monthly", 1)
    late = find_logrotate_rule(rules, "/var/log/late.log")
    assert late is not None
    assert late.rotate == 52  # set after the include: applies to later blocks only
    app = find_logrotate_rule(rules, "/srv/app/logs/access.log")
    assert app is not None
    assert (app.interval, app.size, app.rotate) == (None, "100M", 10)
    assert find_logrotate_rule(rules, "/srv/app/logs/sub/access.log") is None  # * stops at /
    assert find_logrotate_rule(rules, "/srv/app/logs/.hidden.log") is None  # nor takes a dot


def test_global_directives_leak_into_later_files_unless_the_file_had_an_error() -> None:
    rules = _rules(
        {
            "/etc/logrotate.conf": "daily\nrotate 7\ninclude /etc/logrotate.d\n",
            "/etc/logrotate.d/a": "rotate 99\n/var/log/a.log {\n}\n",
            "/etc/logrotate.d/b": "/var/log/b.log {\n}\nrotate 500\n"
            "/var/log/bad.log {\n rotate x\n}\n",
            "/etc/logrotate.d/c": "/var/log/c.log {\n}\n",
            "/etc/logrotate.d/c.dpkg-old": "/var/log/old.log {\n}\n",
        }
    )
    by_path = {r.patterns[0]: r for r in rules}
    assert by_path["/var/log/a.log"].rotate == 99
    assert by_path["/var/log/b.log"].rotate == 99  # a's `rotate 99` reached b
    assert by_path["/var/log/bad.log"].rejected is not None
    # b had an error: logrotate put the defaults back as they were before b (99, not 500).
    assert by_path["/var/log/c.log"].rotate == 99
    assert "/var/log/old.log" not in by_path  # a taboo name: never read


@pytest.mark.parametrize(
    ("text", "interval", "rotate"),
    [
        ("/l {\n Daily\n rotate 30\n}\n", None, 30),  # directives are case-sensitive
        ("/l {\n daily\n ROTATE 30\n}\n", "daily", 0),
        ("/l {\n weekly\n rotate 010\n}\n", "weekly", 8),  # C octal
        ("/l {\n weekly\n rotate 0x10\n}\n", "weekly", 16),
        ("/l {\n weekly\n rotate = 5\n}\n", "weekly", 5),
        ("/l { daily }\n", "daily", 0),
    ],
)
def test_logrotate_reads_directives_its_own_way(
    text: str, interval: str | None, rotate: int
) -> None:
    rule = _one(text)
    assert rule.rejected is None
    assert (rule.interval, rule.rotate) == (interval, rotate)


@pytest.mark.parametrize(
    "line",
    [
        "rotate 4 # four",
        "rotate 08",
        "size 10m",
        "maxsize 10MB",
        "daily 5",
        "maxage -1",
        "size 1.5M",
    ],
)
def test_an_error_skips_the_block(line: str) -> None:
    rule = _one(f"/var/log/app.log {{\n  weekly\n  rotate 52\n  {line}\n}}\n")
    assert rule.rejected is not None
    retention = logrotate_retention(rule)  # what the block would say: never used for a skip
    assert retention.days is not None


def test_skipping_ends_only_at_a_brace_in_the_first_column() -> None:
    rules = parse_logrotate_text(
        "/a {\n rotate x\n  }\n/b {\n weekly\n}\n/c {\n monthly\n}\n"
    ).rules
    assert [(r.patterns, r.rejected is None) for r in rules] == [
        (("/a",), False),  # dropped at /b's `}`, and /b with it
        (("/c",), True),
    ]


def test_unknown_users_skip_the_block_when_accounts_are_known() -> None:
    accounts = Accounts(frozenset({"root"}), frozenset({0}), frozenset({"adm"}), frozenset({4}))
    text = "/a {\n create 0640 zabbix adm\n}\n/b {\n create 0640 root adm\n}\n/c {\n su 0 4\n}\n"
    rules = parse_logrotate_text(text, accounts=accounts).rules
    assert [r.rejected is None for r in rules] == [False, True, True]
    assert all(r.rejected is None for r in parse_logrotate_text(text).rules)


def test_relative_include_is_not_guessed() -> None:
    with pytest.raises(NotUnderstood, match="relative path"):
        _rules({"/etc/logrotate.conf": "include logrotate.d\n"})


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("100k", 102400),
        ("100K", 102400),
        ("10M", 10485760),
        ("1G", 1073741824),
        ("5", 5),
        ("0x10k", 16384),
        ("10m", None),
        ("10MB", None),
        ("-5", None),
        ("10 M", None),
    ],
)
def test_sizes(text: str, count: int | None) -> None:
    assert logrotate_bytes(text) == count


# ----------------------------------------------------------------------------- retention


def test_logrotate_retention_in_words() -> None:
    rules = parse_logrotate_text(
        "/b {\n daily\n rotate -1\n}\nmonthly\nrotate 7\nmaxage 200\n"
        "/a {\n}\n/c {\n rotate -1\n maxage 190\n}\n/d {\n size 1G\n}\n"
        "/e {\n weekly\n rotate 4\n postrotate\n  rotate 99\n endscript\n}\n"
        "/f {\n nomail\n}\n"
    ).rules
    by_path = {r.patterns[0]: logrotate_retention(r) for r in rules}
    assert by_path["/a"].days == 200
    assert by_path["/a"].description == (
        "logrotate keeps 7 monthly = 212 days (the shortest 7 months in a row), "
        "cut to maxage 200 days"
    )
    assert by_path["/b"].unlimited
    assert by_path["/c"].days == 190
    assert by_path["/d"].days is None
    assert "size 1G" in by_path["/d"].description
    assert by_path["/e"].description == "logrotate keeps 4 weekly = 28 days"  # script skipped


@pytest.mark.parametrize(
    ("block", "days", "words"),
    [
        # maxsize rotates before the interval: 52 weeks of files can be 52 days, or 52 hours.
        ("weekly\n rotate 52\n maxsize 10M", None, "only while the file stays under maxsize 10M"),
        ("monthly\n rotate 12\n maxsize 500M\n maxage 400", None, "maxsize 500M"),
        ("daily\n rotate 400\n size 100M", None, "rotates by size (size 100M)"),
        ("rotate 400", None, "built-in size 1M"),
        # minsize only delays rotation: the interval's days still hold.
        ("daily\n rotate 200\n minsize 1M", 200, "200 daily = 200 days"),
        # maxage alone is a floor however often the file rotates.
        ("rotate -1\n maxsize 1M\n maxage 190", 190, "only by maxage 190 days"),
        ("monthly\n rotate 6", 181, "6 monthly = 181 days"),
    ],
)
def test_only_the_interval_proves_days(block: str, days: float | None, words: str) -> None:
    retention = logrotate_retention(_one(f"/var/log/app.log {{\n {block}\n}}\n"))
    assert retention.days == days
    assert words in retention.description


def test_months_are_counted_by_the_shortest_run() -> None:
    assert interval_days("monthly", 1) == 28
    assert interval_days("monthly", 6) == 181  # September to February
    assert interval_days("monthly", 12) == 365
    assert interval_days("monthly", 13) == 365 + 28
    assert interval_days("weekly", 26) == 182
