"""`medsec schedules` as users run it (the console script in a subprocess), on SQLite and
PostgreSQL: add, list (table and JSON), pause, resume and remove; each refusal one line and exit
2 with nothing written; every action in the audit log, the refused ones too.
"""

from __future__ import annotations

import json
import os
import pwd
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.store import Store
from tests.collector.fixtures_api import TlsFiles, make_server_tls
from tests.collector.schedules_serving import Done, loopback_zones, medsec, write_settings

ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def config(store_url: str, tls: TlsFiles, tmp_path: Path) -> Path:
    return write_settings(
        tmp_path, tls, store_url, {"loopback": loopback_zones(tmp_path)}, min_every_seconds=60
    )


def refused(done: Done, *words: str) -> None:
    assert done.code == 2, done
    assert done.err.startswith("medsec"), done.err
    assert done.err.count("\n") == 1, done.err  # exactly one line
    for word in words:
        assert word in done.err, done.err


def test_add_list_pause_resume_remove(config: Path, store: Store) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    added = medsec(
        "schedules", "add", "daily", "--zones", "loopback", "--every", "24h", "--config", config
    )
    assert added.code == 0, added
    assert added.out.startswith("schedule daily added: loopback every 1d, first due ")
    nightly = medsec(
        "schedules",
        "add",
        "nightly",
        "--zones",
        "loopback",
        "--cron",
        "0 2 * * *",
        "--config",
        config,
    )
    assert nightly.code == 0, nightly

    listed = medsec("schedules", "list", "--format", "json", "--config", config)
    assert listed.code == 0, listed
    rows = {row["name"]: row for row in json.loads(listed.out)}
    assert set(rows) == {"daily", "nightly"}
    daily = rows["daily"]
    assert (daily["zones"], daily["every"], daily["cron"], daily["paused"]) == (
        "loopback",
        "1d",
        None,
        False,
    )
    assert daily["created_by"] == f"cli:{ME}"
    next_due = datetime.fromisoformat(daily["next_due_at"])
    assert before + timedelta(days=1) <= next_due <= datetime.now(UTC) + timedelta(days=1)
    assert rows["nightly"]["next_due_at"].endswith("T02:00:00Z")
    assert (daily["last_due_at"], daily["last_scan_id"], daily["last_scan_state"]) == (None,) * 3

    assert (
        medsec("schedules", "pause", "daily", "--config", config).out == "schedule daily paused\n"
    )
    table = medsec("schedules", "list", "--config", config).out.splitlines()
    assert table[0].split() == [
        "NAME", "ZONES", "WHEN", "PAUSED", "NEXT", "DUE", "LAST", "DUE", "LAST", "SCAN", "STATE",
    ]  # fmt: skip
    assert table[1].split()[:5] == ["daily", "loopback", "every", "1d", "yes"]
    assert table[2].split()[:9] == ["nightly", "loopback", "cron", "0", "2", "*", "*", "*", "no"]

    resumed = medsec("schedules", "resume", "daily", "--config", config)
    assert resumed.code == 0, resumed
    schedule = store.get_schedule("daily", datetime.now(UTC))
    assert schedule is not None
    assert not schedule.paused
    assert schedule.next_due_at > next_due  # recomputed from now
    assert medsec("schedules", "remove", "daily", "--config", config).code == 0
    assert [s.name for s in store.list_schedules(10, 0, datetime.now(UTC)).items] == ["nightly"]

    actions = [(e.actor, e.action, e.outcome) for e in store.audit_entries(100, 0).items]
    assert (ME, "cli schedules add daily --zones loopback --every 24h", "0") in actions
    assert (ME, "cli schedules add nightly --zones loopback --cron '0 2 * * *'", "0") in actions
    for action in ("list", "pause daily", "resume daily", "remove daily"):
        assert (ME, f"cli schedules {action}", "0") in actions


def test_refusals_are_one_line_write_nothing_and_are_audited(tls: TlsFiles, tmp_path: Path) -> None:
    """The refusals are the CLI's own (on SQLite only: the round trip above covers both
    databases, and the store's answers are tested on both in test_schedules_store.py)."""
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    store = Store.open(url)
    store.upgrade()
    try:
        refusals(
            write_settings(
                tmp_path, tls, url, {"loopback": loopback_zones(tmp_path)}, min_every_seconds=60
            ),
            store,
        )
    finally:
        store.close()


def refusals(config: Path, store: Store) -> None:
    add = ("schedules", "add")
    assert (
        medsec(*add, "daily", "--zones", "loopback", "--every", "1d", "--config", config).code == 0
    )
    cases = [
        (("daily", "--zones", "loopback", "--every", "2d"), "schedule_exists", "exists already"),
        (("x", "--zones", "elsewhere", "--every", "1h"), "unknown_zones", "loopback"),
        (("x", "--zones", "loopback", "--every", "30s"), "invalid_schedule", "min_every_seconds"),
        (("x", "--zones", "loopback", "--cron", "*/5 * *"), "invalid_schedule", "five fields"),
        (("x", "--zones", "loopback", "--cron", "0 2 30 2 *"), "invalid_schedule", "never"),
        (("bad/name", "--zones", "loopback", "--every", "1h"), "invalid_name", "invalid"),
    ]
    for args, _, words in cases:
        refused(medsec(*add, *args, "--config", config), words)
    refused(medsec("schedules", "pause", "weekly", "--config", config), "no schedule named")
    refused(medsec("schedules", "remove", "weekly", "--config", config), "no schedule named")
    # argparse's own refusals: both cadences, or none.
    both = medsec(
        *add, "x", "--zones", "loopback", "--every", "1h", "--cron", "0 2 * * *", "--config", config
    )
    refused(both, "not allowed with")
    refused(medsec(*add, "x", "--zones", "loopback", "--config", config), "--every --cron")

    [kept] = store.list_schedules(10, 0, datetime.now(UTC)).items
    assert (kept.name, kept.every) == ("daily", "1d")
    outcomes = [e.outcome for e in store.audit_entries(100, 0).items]
    for _, code, _ in cases:
        assert f"2 {code}" in outcomes
    assert outcomes.count("2 not_found") == 2
