"""Alerts sent: stored scans go through `AlertService.scan_stored` (the launcher's hook) and the
events reach a webhook receiver and syslog servers the test runs on loopback. The receiver checks
each request's HMAC as a real one must; it can answer errors for a while (the event comes again,
with the same delivery id, after doubling waits, until a 2xx) or for ever (given up after
`max_attempts`, logged once); two collectors on one database send each event exactly once."""

from __future__ import annotations

import asyncio
import itertools
import logging
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.alerts import AlertService
from collector.settings import AlertSettings, SyslogSettings, WebhookSettings
from collector.store import Store
from tests.collector.alerts_receivers import (
    Receiver,
    udp_syslog,
    unix_syslog,
    webhook_receiver,
)
from tests.collector.alerts_scans import FACTS, START, ZONES, store_scan
from tests.collector.fixtures_api import make_server_tls

SECRET = b"7f3a0c6e9d5b41b8a2e4f60c1d9e8b7a"
LEAK_TEXT = "office->his 198.18.2.10 tcp/1433"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "webhook.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return str(path)


def hook(receiver: Receiver, secret_file: str, **changes: Any) -> WebhookSettings:
    options: dict[str, Any] = {
        "url": receiver.url,
        "timeout_seconds": 5.0,
        "retry_seconds": 0.1,
        **changes,
    }
    return WebhookSettings(secret_file=secret_file, **options)


def service(store: Store, **channels: Any) -> AlertService:
    return AlertService(AlertSettings(poll_seconds=0.05, **channels), store, now)


async def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def scan(store: Store, alerts: AlertService, facts: str, hour: int) -> None:
    run = await asyncio.to_thread(store_scan, store, FACTS[facts], START + timedelta(hours=hour))
    assert run.report_id is not None
    await alerts.scan_stored(run, run.report_id)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder whose path leaves room for a Unix socket's name (107 bytes at most)."""
    with tempfile.TemporaryDirectory(prefix="medsec-") as folder:
        yield Path(folder)


def test_each_alert_reaches_the_webhook_and_syslog_once_when_raised_and_once_when_cleared(
    store, secret_file
):
    with webhook_receiver(SECRET) as receiver, udp_syslog() as (address, syslog):

        async def scenario() -> list[str]:
            alerts = service(
                store,
                webhook=hook(receiver, secret_file),
                syslog=SyslogSettings(address=address, facility="local0", retry_seconds=0.1),
            )
            await alerts.start()
            try:
                scans = []
                for hour, facts in enumerate(("clean", "db-leak", "db-leak", "clean", "db-leak")):
                    await scan(store, alerts, facts, hour)
                    scans.append(store.list_scans(1, 0, now()).items[0].id)
                    await asyncio.sleep(0.3)  # an event would be out by now
                return scans
            finally:
                await alerts.close()

        scans = asyncio.run(scenario())
        requests = receiver.wait_for(3)
        lines = syslog.lines(3)
    time.sleep(0.2)
    assert len(receiver.received) == 3
    assert len(lines) == 3
    assert [(r.json["event"], r.json["scan_id"]) for r in requests] == [
        ("raised", scans[1]),
        ("cleared", scans[3]),
        ("raised", scans[4]),
    ]
    first = requests[0]
    assert first.signature_ok
    assert all(r.signature_ok for r in requests)
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-medsec-event"] == "raised"
    assert first.headers["x-medsec-delivery"] == first.json["delivery_id"]
    assert first.path == "/hooks/medsec?token=t0k3n"
    body = first.json
    assert body["schema"] == "medsec.alert/v1"
    assert (body["kind"], body["zones"], body["detail"]["text"]) == ("violation", ZONES, LEAK_TEXT)
    assert body["key"] == f"{ZONES}/violation/office->his"
    assert body["detail"]["paths"] == [
        {"address": "198.18.2.10", "proto": "tcp", "port": 1433, "state": "open"}
    ]
    assert isinstance(body["alert_id"], int)
    assert datetime.fromisoformat(body["time"]) <= now()
    assert requests[1].json["alert_id"] == body["alert_id"]  # the same alert, cleared
    assert requests[2].json["alert_id"] != body["alert_id"]  # a new one: it came back
    alert = body["alert_id"]
    # local0 (16) * 8 + warning (4) = 132; notice (5) for the clearing.
    assert sorted(lines) == sorted(
        [
            f"<132>medsec: alert raised violation {ZONES}: {LEAK_TEXT} "
            f"(scan {scans[1]}, alert {alert})".encode(),
            f"<133>medsec: alert cleared violation {ZONES}: {LEAK_TEXT} "
            f"(scan {scans[3]}, alert {alert})".encode(),
            f"<132>medsec: alert raised violation {ZONES}: {LEAK_TEXT} "
            f"(scan {scans[4]}, alert {requests[2].json['alert_id']})".encode(),
        ]
    )
    assert {d.state for d in store.list_deliveries()} == {"sent"}


def test_a_failing_receiver_gets_the_event_again_until_it_answers_2xx(store, secret_file):
    with webhook_receiver(SECRET, answers=[500, 502, 429]) as receiver:

        async def scenario() -> None:
            alerts = service(store, webhook=hook(receiver, secret_file, retry_seconds=0.2))
            await alerts.start()
            try:
                await scan(store, alerts, "db-leak", 0)
                await wait_until(lambda: len(receiver.delivered()) == 1)
                await asyncio.sleep(0.5)
            finally:
                await alerts.close()

        asyncio.run(scenario())
    requests = receiver.received
    assert [r.answered for r in requests] == [500, 502, 429, 200]
    # The same event each time: the same delivery id and the very same signed bytes.
    assert len({r.headers["x-medsec-delivery"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    assert all(r.signature_ok for r in requests)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    # Never before the wait (0.2 s, doubling); the loop looks every 0.05 s.
    assert [round(g, 1) >= w for g, w in zip(gaps, (0.2, 0.4, 0.8), strict=True)] == [True] * 3
    [delivery] = store.list_deliveries()
    assert (delivery.state, delivery.attempts) == ("sent", 4)


def test_an_event_no_answer_accepts_is_given_up_after_max_attempts_and_logged_once(
    store, secret_file, caplog
):
    caplog.set_level(logging.INFO, logger="medsec.collector.alerts")
    with webhook_receiver(SECRET, answers=[500] * 10) as receiver:

        async def scenario() -> None:
            alerts = service(store, webhook=hook(receiver, secret_file, max_attempts=3))
            await alerts.start()
            try:
                await scan(store, alerts, "db-leak", 0)
                await wait_until(lambda: store.list_deliveries()[0].state == "failed")
                await asyncio.sleep(0.6)  # nothing more is sent
            finally:
                await alerts.close()

        asyncio.run(scenario())
    assert len(receiver.received) == 3
    [delivery] = store.list_deliveries()
    assert delivery.attempts == 3
    assert delivery.last_error == f"{receiver.url.split('/hooks')[0]} answered HTTP 500"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "webhook given up after 3 attempts" in errors[0].getMessage()
    assert LEAK_TEXT in errors[0].getMessage()
    # Neither the secret nor the receiver's token is ever logged or stored.
    for text in (caplog.text, delivery.last_error):
        assert SECRET.decode() not in text
        assert "t0k3n" not in text


def test_two_collectors_on_one_database_send_each_event_exactly_once(store_url, secret_file):
    """Two services with their own connections (as two collector processes) on one database;
    each receiver request says which sent it (the URL's `sender`)."""
    keys = [f"{ZONES}/violation/office->z{n}" for n in range(40)]
    conditions = {k: ("violation", {"text": k}) for k in keys}
    stores = [Store.open(store_url) for _ in range(2)]
    with webhook_receiver(SECRET, delay=0.05) as receiver:

        async def scenario() -> None:
            services = [
                service(s, webhook=hook(receiver, secret_file, url=f"{receiver.url}&sender={n}"))
                for s, n in zip(stores, "ab", strict=True)
            ]
            for alerts in services:
                await alerts.start()
            try:
                # Raised, then cleared: 80 events, queued while both senders look.
                stores[0].transition_alerts(ZONES, "s1", conditions, ("webhook",), now())
                await wait_until(lambda: len(receiver.received) >= 40, timeout=30)
                stores[1].transition_alerts(ZONES, "s2", {}, ("webhook",), now())
                await wait_until(lambda: len(receiver.received) >= 80, timeout=30)
                await asyncio.sleep(0.5)
            finally:
                for alerts in services:
                    await alerts.close()

        try:
            asyncio.run(scenario())
            deliveries = stores[0].list_deliveries()
        finally:
            for s in stores:
                s.close()
    ids = [r.headers["x-medsec-delivery"] for r in receiver.received]
    assert len(ids) == 80
    assert len(set(ids)) == 80
    assert {d.state for d in deliveries} == {"sent"}
    assert len(deliveries) == 80
    senders = {r.path.rsplit("=", 1)[1] for r in receiver.received}
    assert senders == {"a", "b"}  # both worked, neither sent what the other did


def test_an_https_receiver_is_verified_against_the_configured_ca(store, secret_file, tmp_path):
    tls = make_server_tls(tmp_path)
    with webhook_receiver(SECRET, tls=(tls.cert, tls.key)) as receiver:

        async def scenario() -> None:
            untrusting = service(store, webhook=hook(receiver, secret_file, retry_seconds=60))
            await untrusting.start()
            try:
                await scan(store, untrusting, "db-leak", 0)
                await wait_until(lambda: store.list_deliveries()[0].attempts == 1)
                await asyncio.sleep(0.2)
            finally:
                await untrusting.close()
            assert receiver.received == []  # the handshake failed: nothing was sent
            error = store.list_deliveries()[0].last_error or ""
            assert "CERTIFICATE_VERIFY_FAILED" in error
            assert "t0k3n" not in error
            # The hospital's CA, configured: the same event goes out once it is due again.
            store_ca = hook(receiver, secret_file, ca_file=str(tls.ca))
            trusting = service(store, webhook=store_ca)
            await trusting.start()
            try:
                await asyncio.to_thread(_make_due, store)
                await wait_until(lambda: len(receiver.delivered()) == 1)
            finally:
                await trusting.close()

        asyncio.run(scenario())
    assert receiver.received[0].signature_ok
    assert store.list_deliveries()[0].state == "sent"


def _make_due(store: Store) -> None:
    """Bring the delivery's retry forward (instead of waiting its 60 s)."""
    import sqlalchemy as sa

    from collector.store.schema import alert_deliveries

    with store._tx(write=True) as conn:
        conn.execute(sa.update(alert_deliveries).values(next_attempt_at=now()))


def test_syslog_over_a_unix_socket(store, short_dir):
    with unix_syslog(short_dir) as (path, syslog):

        async def scenario() -> None:
            alerts = service(store, syslog=SyslogSettings(address=path, facility="auth"))
            await alerts.start()
            try:
                await scan(store, alerts, "waf-gone", 0)
                await scan(store, alerts, "clean", 1)
            finally:
                await asyncio.sleep(0.3)
                await alerts.close()

        asyncio.run(scenario())
        lines = syslog.lines(2)
    assert [line.split(b" (scan")[0] for line in lines] == [
        # auth (4) * 8 + warning (4), then + notice (5)
        f"<36>medsec: alert raised waf_gone {ZONES}: portal: no WAF blocks attacks in front "
        "of it".encode(),
        f"<37>medsec: alert cleared waf_gone {ZONES}: portal: no WAF blocks attacks in front "
        "of it".encode(),
    ]


def test_syslog_unreachable_is_retried_and_then_sent(store, short_dir):
    """The daemon's socket is missing at first (rsyslog restarting): the event waits."""
    path = str(short_dir / "log")

    async def scenario() -> list[bytes]:
        alerts = service(store, syslog=SyslogSettings(address=path, retry_seconds=0.2))
        await alerts.start()
        try:
            await scan(store, alerts, "db-leak", 0)
            await wait_until(lambda: store.list_deliveries()[0].attempts >= 1)
            error = store.list_deliveries()[0].last_error or ""
            assert error.startswith(f"syslog {path}: ")
            with unix_syslog(short_dir) as (_, syslog):
                return await asyncio.to_thread(syslog.lines, 1)
        finally:
            await alerts.close()

    lines = asyncio.run(scenario())
    assert lines[0].startswith(b"<132>medsec: alert raised violation ")
    assert store.list_deliveries()[0].state == "sent"


def test_without_channels_alerts_are_kept_and_nothing_is_queued(store):
    async def scenario() -> None:
        alerts = service(store)
        await alerts.start()
        try:
            await scan(store, alerts, "db-leak", 0)
        finally:
            await alerts.close()

    asyncio.run(scenario())
    assert [a.detail["text"] for a in store.open_alerts()] == [LEAK_TEXT]
    assert store.list_deliveries() == []


def test_the_secret_file_is_checked_when_the_service_is_made(store, tmp_path):
    """(The settings check it at load too: `AlertSettings.check_files`.)"""
    from collector.settings import SettingsError

    loose = tmp_path / "loose.secret"
    loose.write_bytes(SECRET)
    loose.chmod(0o644)
    settings = AlertSettings(
        webhook=WebhookSettings(url="https://siem.example/medsec", secret_file=str(loose))
    )
    with pytest.raises(SettingsError) as info:
        AlertService(settings, store, now)
    message = str(info.value)
    assert "alerts.webhook.secret_file" in message
    assert "chmod 600" in message
    assert "\n" not in message
    assert SECRET.decode() not in message


def test_stopping_finishes_the_event_being_sent_and_records_it(store, secret_file):
    """A collector stopping mid-send: the answer is awaited and recorded, so the receiver does
    not get the event again from another process once the lease runs out."""
    with webhook_receiver(SECRET, delay=0.5) as receiver:

        async def scenario() -> None:
            alerts = service(store, webhook=hook(receiver, secret_file))
            await alerts.start()
            try:
                await scan(store, alerts, "db-leak", 0)
                await wait_until(lambda: len(receiver.received) == 1)  # being answered
            finally:
                await alerts.close()

        asyncio.run(scenario())
    [delivery] = store.list_deliveries()
    assert (delivery.state, delivery.attempts, len(receiver.received)) == ("sent", 1, 1)
