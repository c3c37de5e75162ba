"""The alerts part of the store, on SQLite and PostgreSQL: an alert opens once when its condition
appears, stays one open alert while scans keep finding it, clears once when a scan no longer
does, and opens anew if it comes back; each of those events queues exactly one delivery per
channel; what a scan could not evaluate neither opens nor clears; deliveries are claimed under a
lease, exclusively, and settled only under the current claim."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from collector.store import Store

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
LEAK = "hospital/violation/office->his"
WAF = "hospital/waf_gone/portal"
BOTH = ("webhook", "syslog")


def cond(*keys: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {k: (k.split("/")[1], {"text": k.split("/", 2)[2]}) for k in keys}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def events(store: Store) -> list[tuple[str, str, str]]:
    """(key, event, channel) of every delivery queued, in order."""
    return [(d.alert.key, d.event, d.channel) for d in store.list_deliveries()]


def test_an_alert_opens_once_stays_open_clears_once_and_can_open_again(store):
    opened, cleared = store.transition_alerts("hospital", "s1", cond(LEAK), BOTH, at(0))
    assert [a.key for a in opened] == [LEAK]
    assert cleared == []
    assert opened[0].detail == {"text": "office->his"}
    assert opened[0].opened_scan_id == "s1"
    assert opened[0].cleared_at is None

    # The next scans find it again: nothing new, nothing queued.
    for scan in ("s2", "s3"):
        assert store.transition_alerts("hospital", scan, cond(LEAK), BOTH, at(1)) == ([], [])
    assert events(store) == [(LEAK, "raised", "webhook"), (LEAK, "raised", "syslog")]

    opened, cleared = store.transition_alerts("hospital", "s4", {}, BOTH, at(2))
    assert opened == []
    assert [a.key for a in cleared] == [LEAK]
    assert cleared[0].cleared_scan_id == "s4"
    assert cleared[0].cleared_at == at(2)
    assert store.transition_alerts("hospital", "s5", {}, BOTH, at(3)) == ([], [])

    reopened, _ = store.transition_alerts("hospital", "s6", cond(LEAK), BOTH, at(4))
    assert [a.key for a in reopened] == [LEAK]
    assert reopened[0].id != opened_id(store, "s1")
    assert events(store) == [
        (LEAK, "raised", "webhook"),
        (LEAK, "raised", "syslog"),
        (LEAK, "cleared", "webhook"),
        (LEAK, "cleared", "syslog"),
        (LEAK, "raised", "webhook"),
        (LEAK, "raised", "syslog"),
    ]
    history = store.alert_history("hospital")
    assert [(a.opened_scan_id, a.cleared_scan_id) for a in history] == [("s6", None), ("s1", "s4")]
    assert [a.key for a in store.open_alerts()] == [LEAK]


def opened_id(store: Store, scan_id: str) -> int:
    return next(a.id for a in store.alert_history("hospital") if a.opened_scan_id == scan_id)


def test_what_was_not_evaluated_neither_opens_nor_clears(store):
    store.transition_alerts("hospital", "s1", cond(LEAK, WAF), ("webhook",), at(0))
    # The office vantage failed: its pairs are unknown; the WAF verdict is known and gone.
    kept = ("hospital/violation/office->his",)
    opened, cleared = store.transition_alerts(
        "hospital", "s2", {}, ("webhook",), at(1), unevaluated=kept
    )
    assert opened == []
    assert [a.key for a in cleared] == [WAF]
    assert [a.key for a in store.open_alerts("hospital")] == [LEAK]
    # An exact key is kept too, and a prefix only where it ends in "/".
    other = "hospital/waf_gone/portal2"
    store.transition_alerts("hospital", "s3", cond(WAF, other), ("webhook",), at(2))
    _, cleared = store.transition_alerts(
        "hospital", "s4", {}, ("webhook",), at(3), unevaluated=(WAF, "hospital/violation/")
    )
    assert [a.key for a in cleared] == [other]


def test_zones_files_do_not_clear_each_other(store):
    store.transition_alerts("hospital", "s1", cond(LEAK), (), at(0))
    clinic = "clinic/violation/lan->pacs"
    store.transition_alerts("clinic", "c1", cond(clinic), (), at(1))
    assert store.transition_alerts("clinic", "c2", {}, (), at(2))[1][0].key == clinic
    assert [a.key for a in store.open_alerts()] == [LEAK]
    # Without a channel, alerts are kept and nothing is queued.
    assert store.list_deliveries() == []


def test_the_open_key_is_unique_in_the_database(store, store_url):
    """The partial unique index: a second open row of one key is refused by the database
    itself, so no interleaving of collectors can open a condition twice."""
    store.transition_alerts("hospital", "s1", cond(LEAK), (), at(0))
    engine = sa.create_engine(store_url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO alerts (key, kind, zones, detail, opened_at)"
                    " VALUES (:key, 'violation', 'hospital', '{}', :now)"
                ),
                {"key": LEAK, "now": at(1)},
            )
    finally:
        engine.dispose()


def test_concurrent_transitions_open_each_condition_once(store_url):
    """Eight stores (as eight collector processes) stating the same conditions at once."""
    keys = [f"hospital/violation/office->z{n}" for n in range(20)]
    stores = [Store.open(store_url) for _ in range(8)]
    results: list[int] = []
    barrier = threading.Barrier(len(stores))

    def transition(s: Store) -> None:
        barrier.wait()
        opened, _ = s.transition_alerts("hospital", "s1", cond(*keys), ("webhook",), at(0))
        results.append(len(opened))

    threads = [threading.Thread(target=transition, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [0] * 7 + [20]
        assert len(stores[0].list_deliveries()) == 20
    finally:
        for s in stores:
            s.close()


def test_deliveries_are_claimed_under_a_lease_and_settled_under_the_current_claim(store):
    store.transition_alerts("hospital", "s1", cond(LEAK, WAF), BOTH, at(0))
    lease = timedelta(seconds=30)
    assert store.next_delivery_at(["webhook"]) == at(0)
    hooks = store.claim_deliveries(["webhook"], at(0), lease, 10)
    assert sorted(d.alert.key for d in hooks) == sorted([LEAK, WAF])
    assert {(d.channel, d.event, d.attempts) for d in hooks} == {("webhook", "raised", 1)}
    assert hooks[0].scan_id == "s1"
    assert hooks[0].at == at(0)
    # Leased: nobody else gets them until the lease runs out.
    assert store.claim_deliveries(["webhook"], at(0) + lease / 2, lease, 10) == []
    assert store.next_delivery_at(["webhook"]) == at(0) + lease
    # The syslog ones are another channel's.
    assert len(store.claim_deliveries(["syslog"], at(0), lease, 10)) == 2

    first, second = sorted(hooks, key=lambda d: d.alert.key)
    assert store.delivery_sent(first, at(1))
    assert not store.delivery_sent(first, at(1))  # settled once
    # The second's sender died: after its lease another claims it, and the old claim can no
    # longer schedule a retry over the new one.
    again = store.claim_deliveries(["webhook"], at(0) + lease, lease, 10)
    assert [(d.id, d.attempts) for d in again] == [(second.id, 2)]
    assert not store.delivery_failed(second, "HTTP 500", at(5))
    assert store.delivery_failed(again[0], "HTTP 500", at(5))
    assert store.claim_deliveries(["webhook"], at(4), lease, 10) == []
    retried = store.claim_deliveries(["webhook"], at(5), lease, 10)
    assert [(d.id, d.attempts, d.last_error) for d in retried] == [(second.id, 3, "HTTP 500")]
    assert store.delivery_failed(retried[0], "HTTP 500", None)  # given up
    assert store.claim_deliveries(["webhook"], at(60), lease, 10) == []
    states = {(d.alert.key, d.channel): d.state for d in store.list_deliveries()}
    assert states[(first.alert.key, "webhook")] == "sent"
    assert states[(second.alert.key, "webhook")] == "failed"


def test_pruning_deletes_cleared_alerts_only(store):
    store.transition_alerts("hospital", "s1", cond(LEAK, WAF), BOTH, at(0))
    store.transition_alerts("hospital", "s2", cond(LEAK), BOTH, at(10))
    assert store.prune_alerts(at(5)) == 0  # cleared at 10: not before 5
    assert store.prune_alerts(at(11)) == 1
    assert [a.key for a in store.alert_history("hospital")] == [LEAK]
    assert {d.alert.key for d in store.list_deliveries()} == {LEAK}
