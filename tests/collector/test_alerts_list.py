"""Listing alerts, on SQLite and PostgreSQL: alerts opened and cleared through the store's real
transitions, their deliveries claimed and settled as the senders settle them (sent, retried,
given up), then read back through `medsec alerts list` (the console script, table and JSON) and
`GET /api/v1/alerts` (the collector served over TLS): newest first, each channel's state with its
attempts and last error, `--open` / `open=true` without the cleared ones, a zones name with no
alerts listing none, bad parameters refused with one line or a JSON 422, and only users (an
auditor and up) allowed to read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.models import Role
from collector.store import Store
from tests.collector.fixtures_api import Server, TlsFiles, enrol, make_server_tls, serving
from tests.collector.schedules_serving import Done, medsec, write_settings

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
LEAK = "hospital/violation/office->his"
WAF = "hospital/waf_gone/portal"
CLINIC = "clinic/ztna_gone/pacs"
BOTH = ("webhook", "syslog")
LEASE = timedelta(seconds=30)


def cond(*keys: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {k: (k.split("/")[1], {"text": k.split("/", 2)[2]}) for k in keys}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def settle(store: Store, channel: str, now: datetime, outcome: dict[str, str | None]) -> None:
    """Claim every due delivery on `channel` as a sender does and settle each as `outcome` says
    by its alert's key: None sent, "retry: why" failed and due again later, "give up: why"
    failed for good. A key not named stays claimed, as a sender mid-send leaves it."""
    for delivery in store.claim_deliveries([channel], now, LEASE, 16):
        what = outcome.get(delivery.alert.key, "skip")
        if what is None:
            assert store.delivery_sent(delivery, now)
        elif what.startswith("retry: "):
            assert store.delivery_failed(delivery, what[7:], now + timedelta(minutes=1))
        elif what.startswith("give up: "):
            assert store.delivery_failed(delivery, what[9:], None)


def make_alerts(store: Store) -> dict[str, int]:
    """Three alerts, one cleared, with every delivery state; their ids by key."""
    store.transition_alerts("hospital", "scan-1", cond(LEAK, WAF), BOTH, at(0))
    # The webhook took the leak at once; the WAF's failed twice (still pending). Syslog gave up
    # on the leak and took the WAF's.
    settle(store, "webhook", at(0), {LEAK: None, WAF: "retry: HTTP 503"})
    settle(store, "webhook", at(1), {WAF: "retry: timed out"})
    settle(store, "syslog", at(0), {LEAK: "give up: [Errno 111] Connection refused", WAF: None})
    # The next scan finds the WAF blocking again: cleared, its clear queued on both channels.
    store.transition_alerts("hospital", "scan-2", cond(LEAK), BOTH, at(5))
    store.transition_alerts("clinic", "scan-3", cond(CLINIC), ("webhook",), at(10))
    ids = {a.key: a.id for a in store.alert_history("hospital") + store.alert_history("clinic")}
    assert len(ids) == 3
    return ids


def states(alert: dict[str, object]) -> list[tuple[object, ...]]:
    deliveries = alert["deliveries"]
    assert isinstance(deliveries, list)
    return [
        (d["channel"], d["event"], d["state"], d["attempts"], d["last_error"]) for d in deliveries
    ]


EXPECTED_STATES = {
    CLINIC: [("webhook", "raised", "pending", 0, None)],
    WAF: [
        ("webhook", "raised", "pending", 2, "timed out"),
        ("syslog", "raised", "sent", 1, None),
        ("webhook", "cleared", "pending", 0, None),
        ("syslog", "cleared", "pending", 0, None),
    ],
    LEAK: [
        ("webhook", "raised", "sent", 1, None),
        ("syslog", "raised", "failed", 1, "[Errno 111] Connection refused"),
    ],
}


def check_listed(items: list[dict[str, object]]) -> None:
    """The three alerts of `make_alerts`, newest first, with their scans and delivery states."""
    # The leak and the WAF opened in one scan: the later id first.
    assert [a["key"] for a in items] == [CLINIC, WAF, LEAK]
    by_key = {a["key"]: a for a in items}
    assert {k: states(a) for k, a in by_key.items()} == EXPECTED_STATES
    waf = by_key[WAF]
    assert (waf["kind"], waf["zones"], waf["detail"]) == (
        "waf_gone",
        "hospital",
        {"text": "portal"},
    )
    assert (waf["opened_scan_id"], waf["cleared_scan_id"]) == ("scan-1", "scan-2")
    assert (waf["opened_at"], waf["cleared_at"]) == ("2026-12-07T02:00:00Z", "2026-12-07T02:05:00Z")
    leak = by_key[LEAK]
    assert (leak["cleared_at"], leak["cleared_scan_id"]) == (None, None)


# --------------------------------------------------------------------------- the store


def test_the_store_lists_newest_first_filtered_and_paged(store: Store) -> None:
    ids = make_alerts(store)
    page = store.list_alerts(10, 0)
    assert [a.key for a in page.items] == [CLINIC, WAF, LEAK]
    assert page.total == 3
    assert [a.key for a in store.list_alerts(10, 0, open_only=True).items] == [CLINIC, LEAK]
    hospital_open = store.list_alerts(10, 0, zones="hospital", open_only=True)
    assert ([a.id for a in hospital_open.items], hospital_open.total) == ([ids[LEAK]], 1)
    second = store.list_alerts(1, 1)
    assert ([a.key for a in second.items], second.total) == ([WAF], 3)
    assert len(second.items[0].deliveries) == 4
    assert store.list_alerts(10, 0, zones="nowhere").items == ()
    assert store.list_alerts(10, 0, zones="hos\x00pital").total == 0  # PostgreSQL refuses NUL
    assert store.list_alerts(10, 5).items == ()


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def config(store_url: str, tls: TlsFiles, tmp_path: Path) -> Path:
    return write_settings(tmp_path, tls, store_url, {})


def last_audit(store: Store) -> tuple[str, str, str]:
    entries = store.audit_entries(1, store.audit_entries(1, 0).total - 1).items
    return entries[0].role, entries[0].action, entries[0].outcome


def refused(done: Done, *words: str) -> None:
    assert done.code == 2, done
    assert done.out == ""
    assert done.err.startswith("medsec"), done.err
    assert done.err.count("\n") == 1, done.err  # exactly one line
    for word in words:
        assert word in done.err, done.err


def test_the_cli_lists_alerts_with_their_delivery_states(config: Path, store: Store) -> None:
    make_alerts(store)
    listed = medsec("alerts", "list", "--format", "json", "--config", config)
    assert listed.code == 0, listed
    check_listed(json.loads(listed.out))
    assert last_audit(store) == ("cli", "cli alerts list", "0")

    table = medsec("alerts", "list", "--config", config)
    assert table.code == 0, table
    # Cells hold single spaces at most: two or more separate the columns.
    rows = [re.split(r"\s{2,}", line) for line in table.out.splitlines()]
    assert rows[0] == [
        "ID", "KIND", "ZONES", "KEY", "OPENED", "OPENED BY SCAN", "CLEARED", "CLEARED BY SCAN",
        "DELIVERIES",
    ]  # fmt: skip
    assert [row[1:4] for row in rows[1:]] == [
        ["ztna_gone", "clinic", CLINIC],
        ["waf_gone", "hospital", WAF],
        ["violation", "hospital", LEAK],
    ]
    waf, leak = rows[2], rows[3]
    assert waf[4:] == [
        "2026-12-07T02:00:00Z",
        "scan-1",
        "2026-12-07T02:05:00Z",
        "scan-2",
        "webhook raised: pending (2 attempts; last: timed out); syslog raised: sent;"
        " webhook cleared: pending; syslog cleared: pending",
    ]
    assert leak[4:] == [
        "2026-12-07T02:00:00Z",
        "scan-1",
        "-",
        "-",
        "webhook raised: sent; syslog raised: failed after 1: [Errno 111] Connection refused",
    ]

    opened = medsec("alerts", "list", "--open", "--zones", "hospital", "--format", "json",
                    "--config", config)  # fmt: skip
    assert opened.code == 0, opened
    assert [a["key"] for a in json.loads(opened.out)] == [LEAK]
    assert last_audit(store) == ("cli", "cli alerts list --open --zones 'hospital'", "0")

    limited = medsec("alerts", "list", "--limit", "1", "--format", "json", "--config", config)
    assert [a["key"] for a in json.loads(limited.out)] == [CLINIC]
    assert limited.err == "(2 older not shown; --limit)\n"

    none = medsec("alerts", "list", "--zones", "nowhere", "--format", "json", "--config", config)
    assert (none.code, json.loads(none.out)) == (0, [])


def test_the_cli_refuses_bad_options_in_one_line_and_audits_them(
    config: Path, store: Store
) -> None:
    refused(
        medsec("alerts", "list", "--limit", "0", "--config", config),
        "--limit",
        "between 1 and 1000",
    )
    assert last_audit(store) == ("cli", "cli alerts list", "2 usage_error")
    refused(medsec("alerts", "list", "--zones", "Bad Name", "--config", config), "--zones")
    refused(medsec("alerts", "list", "--format", "xml", "--config", config), "--format")


# --------------------------------------------------------------------------- the API


@pytest.fixture
def server(store: Store, tls: TlsFiles) -> Iterator[Server]:
    with serving(store, tls) as running:
        yield running


def test_the_api_lists_alerts_for_auditors_and_operators(server: Server) -> None:
    make_alerts(server.store)
    for role in (Role.AUDITOR, Role.OPERATOR):
        client = server.client(server.user(role))
        answer = client.get("/api/v1/alerts")
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert (page["total"], page["limit"], page["offset"]) == (3, 100, 0)
        check_listed(page["items"])

    client = server.client(server.user(Role.AUDITOR))
    opened = client.get("/api/v1/alerts", params={"open": "true"}).json()
    assert [a["key"] for a in opened["items"]] == [CLINIC, LEAK]
    hospital = client.get("/api/v1/alerts", params={"zones": "hospital", "open": "false"}).json()
    assert [a["key"] for a in hospital["items"]] == [WAF, LEAK]
    paged = client.get("/api/v1/alerts", params={"limit": 1, "offset": 2}).json()
    assert ([a["key"] for a in paged["items"]], paged["total"]) == ([LEAK], 3)
    none = client.get("/api/v1/alerts", params={"zones": "nowhere"}).json()
    assert (none["items"], none["total"]) == ([], 0)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"offset": -1},
        {"limit": "ten"},
        {"open": "maybe"},
        {"zones": "Bad Name"},
        {"zones": "x" * 64},
    ],
)
def test_the_api_refuses_bad_parameters_with_a_json_422(
    server: Server, params: dict[str, object]
) -> None:
    answer = server.client(server.user(Role.AUDITOR)).get("/api/v1/alerts", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert isinstance(answer.json()["message"], str)


def test_an_agent_or_no_token_may_not_read_alerts(server: Server) -> None:
    make_alerts(server.store)
    agent = enrol(server, "alerts-agent")
    answer = server.client(agent.token).get("/api/v1/alerts")
    assert (answer.status_code, answer.json()["error"]) == (403, "forbidden")
    assert "hospital" not in answer.text
    anonymous = server.client().get("/api/v1/alerts")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "unauthenticated")
