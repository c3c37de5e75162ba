"""The collector's `Store` against real SQLite files and the real PostgreSQL server (every storage
test runs on both): enrolment, users, ingestion, reads, the audit chain and the migrations; plus
a process killed mid-ingest, and a PostgreSQL of our own restarted and stopped under the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from checks.envelope import generate_private_key, parse_report, public_key_pem
from collector.models import Agent, AuditKey, Role
from collector.store import (
    AgentExists,
    AuditAltered,
    EnrollmentInvalid,
    HostClaimed,
    NotFound,
    ReplayedReport,
    Store,
    StoreError,
    StoreUnavailable,
    UserExists,
)
from collector.store.audit import entry_hash
from collector.store.schema import GENESIS_HASH, metadata
from tests.pg import PgUnavailable, TempPostgres

NOW = datetime(2026, 5, 10, 8, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)
REPO = Path(__file__).resolve().parents[2]
STATUSES = ("pass", "fail", "error", "not_applicable", "manual")


# ----------------------------------------------------------------------------- helpers


@cache
def public_key() -> str:
    return public_key_pem(generate_private_key("ed25519"), "ed25519")


def enrol(store: Store, name: str, now: datetime = NOW) -> tuple[Agent, str]:
    token = store.create_enrollment(name, TTL, now)
    return store.redeem_enrollment(token, name, "ed25519", public_key(), now)


def host_id(hostname: str) -> str:
    return "machine-id:" + hashlib.sha256(hostname.encode()).hexdigest()[:32]


def make_report(
    hostname: str = "his-db-01",
    *,
    generated_at: datetime = NOW,
    report_id: str | None = None,
    checks: Sequence[tuple[str, str]] | None = None,
    message: str = "observed",
    inventory: dict[str, Any] | None = None,
) -> bytes:
    """A `medsec.report/v1` body: by default 40 results over 10 checks and every status."""
    if checks is None:
        checks = [(f"disk.check_{i % 10}", STATUSES[i % 5]) for i in range(40)]
    results = [
        {
            "check_id": check_id,
            "status": status,
            "severity": "high",
            "title": {"en": "A check", "zh": "检查"},
            "message": f"{message} #{i}",
            "target": f"/dev/sd{chr(97 + i % 26)}{i}",
            "evidence": {"index": i, "mounts": ["/", "/var"], "cipher": "aes-xts-plain64"},
            "clauses": ["GB/T 22239-2019 8.1.4.6", "MNDS 6.1.1"],
        }
        for i, (check_id, status) in enumerate(checks)
    ]
    doc = {
        "schema": "medsec.report/v1",
        "report_id": report_id or str(uuid.uuid4()),
        "host": {"id": host_id(hostname), "hostname": hostname},
        "generated_at": generated_at.isoformat(),
        "agent": {"version": "0.1.0"},
        "inventory": inventory or {"hostname": hostname, "cpu": {"model": "Xeon", "cores": 16}},
        "results": results,
    }
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def ingest(store: Store, agent: Agent, data: bytes, now: datetime = NOW) -> Any:
    return store.ingest(agent, parse_report(data), data, now)


@pytest.fixture
def raw(store_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the store's database, for looking behind the store's back."""
    engine = sa.create_engine(store_url)
    yield engine
    engine.dispose()


def count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar())


def all_text(engine: sa.Engine) -> str:
    """Every value of every table, as one string."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                parts.extend(str(value) for value in row)
    return "\n".join(parts)


# ----------------------------------------------------------------------------- enrolment


def test_enrolment_token_is_single_use(store: Store) -> None:
    token = store.create_enrollment("his-db-01", TTL, NOW)
    assert token.startswith("mse_")
    agent, api_token = store.redeem_enrollment(token, "his-db-01", "ed25519", public_key(), NOW)
    assert api_token.startswith("msa_")
    assert agent.name == "his-db-01"
    assert agent.alg == "ed25519"
    assert agent.public_key_pem == public_key()
    assert agent.enrolled_at == NOW
    assert agent.active
    assert store.agent_by_token(api_token) == agent
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment(token, "his-db-01", "ed25519", public_key(), NOW)
    assert info.value.reason == "used"
    assert "\n" not in str(info.value)
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment("mse_nonsense", "his-db-01", "ed25519", public_key(), NOW)
    assert info.value.reason == "unknown"


def test_enrolment_token_expires(store: Store) -> None:
    token = store.create_enrollment("his-db-01", TTL, NOW)
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment(token, "his-db-01", "ed25519", public_key(), NOW + TTL)
    assert info.value.reason == "expired"
    # Within its lifetime (and given in another time zone) it still works.
    shanghai = timezone(timedelta(hours=8))
    late = (NOW + TTL - timedelta(seconds=1)).astimezone(shanghai)
    agent, _ = store.redeem_enrollment(token, "his-db-01", "sm2-sm3", public_key(), late)
    assert agent.enrolled_at == late
    assert agent.enrolled_at.tzinfo == UTC
    assert agent.alg == "sm2-sm3"


def test_enrolment_name_mismatch_does_not_spend_the_token(store: Store) -> None:
    token = store.create_enrollment("his-db-01", TTL, NOW)
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment(token, "pacs-01", "ed25519", public_key(), NOW)
    assert info.value.reason == "name_mismatch"
    agent, _ = store.redeem_enrollment(token, "his-db-01", "ed25519", public_key(), NOW)
    assert agent.active
    assert [a.name for a in store.list_agents()] == ["his-db-01"]


def test_active_agent_cannot_be_enrolled_again(store: Store) -> None:
    enrol(store, "his-db-01")
    with pytest.raises(AgentExists, match="his-db-01"):
        store.create_enrollment("his-db-01", TTL, NOW)


@pytest.mark.parametrize("name", ["medsec-scanner", "medsec-snmp", "medsec-agentless"])
def test_the_collectors_own_identities_cannot_be_enrolled(store: Store, name: str) -> None:
    # An agent enrolled as `medsec-agentless` would have its hosts taken over by any agent, and
    # its reports counted as the collector's own: the names are refused before anything exists.
    with pytest.raises(AgentExists, match="reserved"):
        store.create_enrollment(name, TTL, NOW)
    assert store.list_agents() == []


def test_a_new_enrolment_token_voids_the_unused_one(store: Store) -> None:
    first = store.create_enrollment("his-db-01", TTL, NOW)
    second = store.create_enrollment("his-db-01", TTL, NOW)
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment(first, "his-db-01", "ed25519", public_key(), NOW)
    assert info.value.reason == "unknown"
    agent, _ = store.redeem_enrollment(second, "his-db-01", "ed25519", public_key(), NOW)
    assert agent.active


def test_revoked_agent_re_enrols_with_a_new_key_and_token(store: Store) -> None:
    agent, old_token = enrol(store, "his-db-01")
    with pytest.raises(NotFound):
        store.revoke_agent("nobody", NOW)
    later = NOW + timedelta(days=1)
    revoked = store.revoke_agent("his-db-01", later)
    assert revoked.revoked_at == later
    assert not revoked.active
    # Revoked agents are still found by their token, so the API can say "agent_revoked".
    found = store.agent_by_token(old_token)
    assert found is not None
    assert found.revoked_at == later
    # Revoking twice keeps the first time.
    assert store.revoke_agent("his-db-01", later + TTL).revoked_at == later

    new_key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    token = store.create_enrollment("his-db-01", TTL, later)
    again, new_token = store.redeem_enrollment(token, "his-db-01", "ed25519", new_key, later)
    assert again.id == agent.id
    assert again.active
    assert again.public_key_pem == new_key
    assert new_token != old_token
    assert store.agent_by_token(old_token) is None
    assert store.agent_by_token(new_token) == again


def test_the_collectors_own_agent_is_created_once_even_by_processes_at_once(
    store_url: str,
) -> None:
    stores = [Store.open(store_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            made = list(
                pool.map(lambda s: s.service_agent("medsec-scanner", public_key(), NOW), stores)
            )
        assert len({a.id for a in made}) == 1
        assert all(a.active for a in made)
        assert [a.name for a in stores[0].list_agents()] == ["medsec-scanner"]
    finally:
        for opened in stores:
            opened.close()


def test_revoking_a_pending_agent_voids_its_enrolment_token(store: Store) -> None:
    token = store.create_enrollment("his-db-01", TTL, NOW)
    store.revoke_agent("his-db-01", NOW)
    with pytest.raises(EnrollmentInvalid) as info:
        store.redeem_enrollment(token, "his-db-01", "ed25519", public_key(), NOW)
    assert info.value.reason == "unknown"


def test_tokens_are_stored_only_as_hashes(store: Store, raw: sa.Engine) -> None:
    pending = store.create_enrollment("pending-01", TTL, NOW)
    spent = store.create_enrollment("his-db-01", TTL, NOW)
    _, api_token = store.redeem_enrollment(spent, "his-db-01", "ed25519", public_key(), NOW)
    _, user_token = store.add_user("alice", Role.ADMIN, NOW)
    stored = all_text(raw)
    for token in (pending, spent, api_token, user_token):
        assert token not in stored
        assert token.split("_", 1)[1] not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    # Each kind of token only opens its own door.
    assert store.agent_by_token(user_token) is None
    assert store.user_by_token(api_token) is None


# ----------------------------------------------------------------------------- users


def test_users_add_lookup_list_remove(store: Store) -> None:
    bob, bob_token = store.add_user("bob", Role.AUDITOR, NOW)
    alice, alice_token = store.add_user("alice", Role.ADMIN, NOW)
    assert bob_token.startswith("msu_")
    assert alice.role is Role.ADMIN
    assert alice.created_at == NOW
    assert store.user_by_token(bob_token) == bob
    assert store.user_by_token(alice_token) == alice
    assert store.user_by_token("msu_unknown") is None
    assert [u.name for u in store.list_users()] == ["alice", "bob"]
    with pytest.raises(UserExists, match="bob"):
        store.add_user("bob", Role.OPERATOR, NOW)
    store.remove_user("bob")
    assert store.user_by_token(bob_token) is None
    assert [u.name for u in store.list_users()] == ["alice"]
    with pytest.raises(NotFound, match="bob"):
        store.remove_user("bob")


# ----------------------------------------------------------------------------- ingestion


def test_ingest_stores_report_results_and_inventory(store: Store, raw: sa.Engine) -> None:
    agent, _ = enrol(store, "his-db-01")
    shanghai = timezone(timedelta(hours=8))
    generated = (NOW - timedelta(minutes=1)).astimezone(shanghai)
    data = make_report(generated_at=generated)
    report = parse_report(data)
    received = NOW + timedelta(seconds=2)
    outcome = store.ingest(agent, report, data, received)
    assert (outcome.report_id, outcome.duplicate) == (report.report_id, False)
    assert outcome.host_id == host_id("his-db-01")

    found = store.get_host(outcome.host_id)
    assert found is not None
    summary, inventory, results = found
    assert summary.hostname == "his-db-01"
    assert summary.agent == "his-db-01"
    assert summary.last_report_id == report.report_id
    assert summary.last_report_at == generated
    assert summary.last_report_at.tzinfo == UTC
    assert summary.counts == dict.fromkeys(STATUSES, 8)
    assert inventory == report.inventory
    assert len(results) == 40
    first = results[0]
    assert (first.check_id, first.status, first.target) == ("disk.check_0", "pass", "/dev/sda0")
    assert first.message == "observed #0"
    assert first.evidence == {"index": 0, "mounts": ["/", "/var"], "cipher": "aes-xts-plain64"}
    assert first.clauses == ("GB/T 22239-2019 8.1.4.6", "MNDS 6.1.1")
    assert first.generated_at == generated
    assert [r.evidence["index"] for r in results] == list(range(40))

    seen = store.list_agents()[0].last_seen_at
    assert seen == received
    with raw.connect() as conn:
        body, digest = conn.execute(sa.text("SELECT body, sha256 FROM reports")).one()
    assert body.encode("utf-8") == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_the_same_report_twice_is_stored_once(store: Store, raw: sa.Engine) -> None:
    agent, _ = enrol(store, "his-db-01")
    data = make_report()
    assert not ingest(store, agent, data).duplicate
    again = ingest(store, agent, data, NOW + timedelta(minutes=5))
    assert again.duplicate
    assert again.host_id == host_id("his-db-01")
    assert (count(raw, "reports"), count(raw, "results"), count(raw, "hosts")) == (1, 40, 1)
    # "Nothing written": not even the agent's last sighting.
    assert store.list_agents()[0].last_seen_at == NOW


def test_replayed_report_id_is_refused(store: Store, raw: sa.Engine) -> None:
    agent, _ = enrol(store, "his-db-01")
    other, _ = enrol(store, "pacs-01")
    report_id = str(uuid.uuid4())
    data = make_report(report_id=report_id)
    ingest(store, agent, data)
    with pytest.raises(ReplayedReport, match=report_id):
        ingest(store, agent, make_report(report_id=report_id, message="altered"))
    with pytest.raises(ReplayedReport):  # the id again, from another agent about its own host
        ingest(store, other, make_report("pacs-01", report_id=report_id))
    assert (count(raw, "reports"), count(raw, "results")) == (1, 40)


def test_concurrent_copies_of_a_report_are_stored_once(store: Store, raw: sa.Engine) -> None:
    agent, _ = enrol(store, "his-db-01")
    data = make_report()
    report = parse_report(data)
    start = threading.Barrier(4)
    outcomes: list[bool] = []

    def post() -> None:
        start.wait()
        outcomes.append(store.ingest(agent, report, data, NOW).duplicate)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False, True, True, True]
    assert (count(raw, "reports"), count(raw, "results")) == (1, 40)


class _PoisonedStore(Store):
    """The real store, made to fail the way one report's bad data would fail its transaction
    (any report from host "poison"), and able to hold its writer until a batch has queued."""

    hold: threading.Event
    busy: threading.Event
    batches: list[int]

    @classmethod
    def held(cls, url: str) -> _PoisonedStore:
        store = cls.open(url)
        store.hold, store.busy, store.batches = threading.Event(), threading.Event(), []
        return store

    def _ingest_batch(self, conn: sa.Connection, jobs: list[Any]) -> Any:
        self.busy.set()
        self.hold.wait(timeout=30)
        self.batches.append(len(jobs))
        if any(job.report.host.hostname == "poison" for job in jobs):
            raise ValueError("boom: this report's data breaks the transaction")
        return super()._ingest_batch(conn, jobs)


def test_reports_queued_together_share_a_transaction_and_a_bad_one_fails_alone(
    store_url: str, raw: sa.Engine
) -> None:
    """Reports that arrive while the writer is busy are written in one transaction; if one of
    them breaks it, that one fails and every other report of the batch is still stored."""
    store = _PoisonedStore.held(store_url)
    try:
        agent, _ = enrol(store, "his-db-01")
        first = store.submit_ingest(agent, parse_report(data := make_report("h0")), data, NOW)
        assert store.busy.wait(timeout=30)  # the writer holds the first; the rest queue up
        names = ["h1", "h2", "poison", "h3", "h4"]
        queued = [(make_report(name), name) for name in names]
        futures = [store.submit_ingest(agent, parse_report(d), d, NOW) for d, _ in queued]
        entry = store.submit_audit("alice", "auditor", "GET /api/v1/hosts", "::1", "200", NOW)
        store.hold.set()
        assert first.result(timeout=30).duplicate is False
        outcomes = {}
        for (_, name), future in zip(queued, futures, strict=True):
            try:
                outcomes[name] = future.result(timeout=30).duplicate
            except ValueError as exc:
                outcomes[name] = str(exc)
        assert entry.result(timeout=30).outcome == "200"
    finally:
        store.close()
    assert store.batches[:2] == [1, 5]  # the five queued reports were tried as one batch
    assert outcomes == {
        "h1": False,
        "h2": False,
        "h3": False,
        "h4": False,
        "poison": "boom: this report's data breaks the transaction",
    }
    assert (count(raw, "reports"), count(raw, "results"), count(raw, "hosts")) == (5, 200, 5)
    assert count(raw, "audit_log") == 1


def test_a_host_is_reported_only_by_its_own_agent_until_that_agent_is_revoked(
    store: Store, raw: sa.Engine
) -> None:
    """One compromised agent must not rewrite another host's evidence (mark it compliant, say)."""
    owner, _ = enrol(store, "his-db-01")
    intruder, _ = enrol(store, "pacs-01")
    ingest(store, owner, make_report("his-db-01", inventory={"written_by": "owner"}))
    forged = make_report(
        "his-db-01",
        generated_at=NOW - timedelta(hours=1),  # older than the owner's: a takeover still counts
        inventory={"written_by": "intruder"},
        checks=[("disk.encrypted", "pass")],
    )
    with pytest.raises(HostClaimed, match="reported by another agent"):
        ingest(store, intruder, forged)
    found = store.get_host(host_id("his-db-01"))
    assert found is not None
    assert (found[0].agent, found[1], len(found[2])) == ("his-db-01", {"written_by": "owner"}, 40)
    assert (count(raw, "reports"), count(raw, "results")) == (1, 40)
    ingest(store, intruder, make_report("pacs-01"))  # its own host is its own

    # The host's server was rebuilt and enrolled under a new name: once the old agent is
    # revoked, the new one takes the host over; the old one, enrolled again, cannot take it back.
    store.revoke_agent("his-db-01", NOW)
    assert ingest(store, intruder, forged).duplicate is False
    found = store.get_host(host_id("his-db-01"))
    assert found is not None
    assert (found[0].agent, found[1], found[0].counts) == (
        "pacs-01",
        {"written_by": "intruder"},
        {"pass": 1},
    )
    again, _ = enrol(store, "his-db-01")
    with pytest.raises(HostClaimed):
        ingest(store, again, make_report("his-db-01", generated_at=NOW + timedelta(minutes=10)))
    assert count(raw, "reports") == 3


def test_two_agents_claiming_a_new_host_in_one_batch_the_first_wins(
    store_url: str, raw: sa.Engine
) -> None:
    store = _PoisonedStore.held(store_url)
    try:
        first, _ = enrol(store, "his-db-01")
        second, _ = enrol(store, "pacs-01")
        warm = store.submit_ingest(first, parse_report(data := make_report("web-01")), data, NOW)
        assert store.busy.wait(timeout=30)
        mine = make_report("his-db-01", inventory={"written_by": "first"})
        theirs = make_report(
            "his-db-01", generated_at=NOW + timedelta(minutes=1), inventory={"written_by": "2nd"}
        )
        won = store.submit_ingest(first, parse_report(mine), mine, NOW)
        lost = store.submit_ingest(second, parse_report(theirs), theirs, NOW)
        store.hold.set()
        warm.result(timeout=30)
        assert won.result(timeout=30).duplicate is False
        with pytest.raises(HostClaimed):
            lost.result(timeout=30)
        found = store.get_host(host_id("his-db-01"))
    finally:
        store.close()
    assert store.batches[:2] == [1, 2]
    assert found is not None
    assert (found[0].agent, found[1]) == ("his-db-01", {"written_by": "first"})
    assert count(raw, "reports") == 2


class _PausingStore(Store):
    """A collector that pauses after deciding who owns the batch's hosts, its locks held."""

    checked: threading.Event
    resume: threading.Event

    def _host_claims(self, conn: sa.Connection, jobs: list[Any]) -> Any:
        claims = super()._host_claims(conn, jobs)
        self.checked.set()
        self.resume.wait(timeout=30)
        return claims


def test_collectors_claiming_one_new_host_take_turns_and_the_first_wins(
    store_url: str, raw: sa.Engine
) -> None:
    """Two collectors on one PostgreSQL, each with a report about the same new host from a
    different agent: the second waits for the first's decision (it neither deadlocks nor
    steals the host), then is refused."""
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite runs one write transaction at a time: the two cannot overlap there")
    slow = _PausingStore.open(store_url)
    slow.checked, slow.resume = threading.Event(), threading.Event()
    fast = Store.open(store_url)
    try:
        first, _ = enrol(fast, "his-db-01")
        second, _ = enrol(fast, "pacs-01")
        mine = make_report("his-db-01", inventory={"written_by": "first"})
        pending = slow.submit_ingest(first, parse_report(mine), mine, NOW)
        assert slow.checked.wait(timeout=30)  # the host is new: the first agent claims it
        theirs = make_report("his-db-01", inventory={"written_by": "second"})
        waiting = fast.submit_ingest(second, parse_report(theirs), theirs, NOW)
        with pytest.raises(FutureTimeout):
            waiting.result(timeout=0.5)  # it waits on the first collector's claim
        slow.resume.set()
        assert pending.result(timeout=30).duplicate is False
        with pytest.raises(HostClaimed):
            waiting.result(timeout=30)
        found = fast.get_host(host_id("his-db-01"))
    finally:
        slow.resume.set()
        slow.close()
        fast.close()
    assert found is not None
    assert (found[0].agent, found[1]) == ("his-db-01", {"written_by": "first"})
    assert (count(raw, "reports"), count(raw, "results")) == (1, 40)


def test_host_keeps_its_newest_report(store: Store) -> None:
    agent, _ = enrol(store, "his-db-01")
    newer = make_report(generated_at=NOW, inventory={"generation": "newer"})
    older = make_report(
        generated_at=NOW - timedelta(hours=1),
        inventory={"generation": "older"},
        checks=[("disk.encrypted", "fail")],
    )
    ingest(store, agent, newer)
    ingest(store, agent, older)  # spooled by the agent, arrives late
    found = store.get_host(host_id("his-db-01"))
    assert found is not None
    summary, inventory, results = found
    assert summary.last_report_id == parse_report(newer).report_id
    assert inventory == {"generation": "newer"}
    assert len(results) == 40
    page = store.host_reports(host_id("his-db-01"), limit=10, offset=0)
    assert page.total == 2
    assert [r.generated_at for r in page.items] == [NOW, NOW - timedelta(hours=1)]
    assert page.items[1].counts == {"fail": 1}
    assert page.items[0].agent == "his-db-01"
    assert page.items[0].received_at == NOW
    # A report newer still takes over.
    newest = make_report(generated_at=NOW + timedelta(hours=1), checks=[("disk.encrypted", "pass")])
    ingest(store, agent, newest)
    found = store.get_host(host_id("his-db-01"))
    assert found is not None
    assert found[0].last_report_id == parse_report(newest).report_id
    assert found[0].counts == {"pass": 1}


def test_pruning_reports_keeps_the_young_and_each_hosts_newest(
    store: Store, raw: sa.Engine
) -> None:
    agent, _ = enrol(store, "his-db-01")
    for age in (500, 450, 10):  # days since the collector received it
        received = NOW - timedelta(days=age)
        ingest(store, agent, make_report("his-db-01", generated_at=received), received)
    quiet = NOW - timedelta(days=500)  # a host that stopped reporting long ago
    kept_newest = make_report("pacs-01", generated_at=quiet)
    ingest(store, agent, kept_newest, quiet)
    assert store.prune_reports(NOW - timedelta(days=400), chunk=1) == (2, 80)
    assert (count(raw, "reports"), count(raw, "results")) == (2, 80)
    assert store.host_reports(host_id("his-db-01"), 10, 0).total == 1
    quiet_host = store.get_host(host_id("pacs-01"))
    assert quiet_host is not None
    assert quiet_host[0].last_report_id == parse_report(kept_newest).report_id
    assert len(quiet_host[2]) == 40  # its results are what the API still shows
    assert store.prune_reports(NOW - timedelta(days=400)) == (0, 0)


def test_lists_and_queries_paginate_and_filter(store: Store) -> None:
    agent, _ = enrol(store, "his-db-01")
    for hostname in ("web-02", "db-01", "pacs-03"):
        old = [("fw.default_deny", "fail"), ("disk.encrypted", "fail")]
        ingest(
            store, agent, make_report(hostname, generated_at=NOW - timedelta(hours=1), checks=old)
        )
        new = [("fw.default_deny", "pass"), ("disk.encrypted", "fail"), ("tpm.present", "error")]
        ingest(store, agent, make_report(hostname, checks=new))

    page = store.list_hosts(limit=2, offset=0)
    assert page.total == 3
    assert (page.limit, page.offset) == (2, 0)
    assert [h.hostname for h in page.items] == ["db-01", "pacs-03"]
    assert [h.hostname for h in store.list_hosts(limit=2, offset=2).items] == ["web-02"]
    assert store.list_hosts(limit=2, offset=3).items == ()
    assert page.items[0].counts == {"pass": 1, "fail": 1, "error": 1}

    everything = store.query_results(None, None, limit=500, offset=0)
    assert everything.total == 9  # the newest report of each host only
    assert {r.generated_at for r in everything.items} == {NOW}
    assert [r.hostname for r in everything.items][:3] == ["db-01"] * 3

    failing = store.query_results(None, "fail", limit=500, offset=0)
    assert failing.total == 3
    assert {(r.check_id, r.status) for r in failing.items} == {("disk.encrypted", "fail")}
    firewall = store.query_results("fw.default_deny", None, limit=2, offset=1)
    assert firewall.total == 3
    assert [(r.hostname, r.status) for r in firewall.items] == [
        ("pacs-03", "pass"),
        ("web-02", "pass"),
    ]
    assert store.query_results("fw.default_deny", "fail", limit=10, offset=0).total == 0
    assert store.query_results("no.such_check", None, limit=10, offset=0).items == ()

    reports = store.host_reports(host_id("web-02"), limit=1, offset=1)
    assert reports.total == 2
    assert [r.counts for r in reports.items] == [{"fail": 2}]
    assert store.get_host("machine-id:" + "0" * 32) is None
    assert store.host_reports("machine-id:" + "0" * 32, limit=10, offset=0).total == 0
    with pytest.raises(ValueError, match="negative"):
        store.list_hosts(limit=-1, offset=0)
    huge = 10**30  # beyond BIGINT: still just "past the end"
    assert store.list_hosts(limit=huge, offset=0).total == 3
    assert store.query_results(None, None, limit=10, offset=huge).items == ()
    assert store.host_reports(host_id("web-02"), limit=10, offset=huge).items == ()
    assert store.audit_entries(limit=huge, offset=huge).items == ()


def test_nul_characters_are_stored_on_both_backends(store: Store, raw: sa.Engine) -> None:
    """PostgreSQL text and jsonb refuse U+0000; a report carrying one must still be stored."""
    agent, _ = enrol(store, "his-db-01")
    data = make_report(message="nul\u0000here", inventory={"odd\u0000key": "v\u0000"})
    assert b"\\u0000" in data
    ingest(store, agent, data)
    found = store.get_host(host_id("his-db-01"))
    assert found is not None
    assert found[2][0].message == "nul\ufffdhere #0"
    assert found[1] == {"odd\ufffdkey": "v\ufffd"}
    with raw.connect() as conn:
        assert conn.execute(sa.text("SELECT body FROM reports")).scalar_one().encode() == data


def test_duplicate_keys_are_read_as_the_validator_read_them(store: Store) -> None:
    """A repeated key means its last value to msgspec, which validated the report and counted
    its statuses; the stored result must say the same (SQLite's JSON functions take the first)."""
    agent, _ = enrol(store, "his-db-01")
    data = make_report(checks=[("disk.encrypted", "pass")])
    data = data.replace(b'"status": "pass"', b'"status": "fail", "status": "pass"', 1)
    assert parse_report(data).results[0].status == "pass"
    ingest(store, agent, data)
    assert [r.status for r in store.query_results(None, None, limit=10, offset=0).items] == ["pass"]


def test_keys_with_nul_name_nothing_on_both_backends(store: Store) -> None:
    """PostgreSQL refuses U+0000 even in a WHERE clause; a lookup key carrying one (a fuzzed
    query string, a path) finds nothing instead of failing, and names with one are refused."""
    agent, _ = enrol(store, "his-db-01")
    ingest(store, agent, make_report())
    assert store.get_host(host_id("his-db-01") + "\x00") is None
    assert store.host_reports("x\x00", limit=10, offset=0).total == 0
    assert store.query_results("disk.check_0\x00", None, limit=10, offset=0).total == 0
    assert store.query_results(None, "pass\x00", limit=10, offset=0).items == ()
    with pytest.raises(NotFound):
        store.remove_user("alice\x00")
    with pytest.raises(NotFound):
        store.revoke_agent("his-db-01\x00", NOW)
    with pytest.raises(ValueError, match="NUL"):
        store.add_user("alice\x00", Role.ADMIN, NOW)
    with pytest.raises(ValueError, match="NUL"):
        store.create_enrollment("pacs\x00", TTL, NOW)
    assert store.agent_by_token("msa_\x00") is None
    assert store.user_by_token("msu_\x00") is None
    with pytest.raises(EnrollmentInvalid):
        store.redeem_enrollment("mse_\x00", "his-db-01", "ed25519", public_key(), NOW)


CRASH = """
import os, sys
from datetime import UTC, datetime
import sqlalchemy as sa
from checks.envelope import parse_report
from collector.store import Store

def die(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith("INSERT INTO RESULTS"):
        os._exit(1)  # the power goes out between the report row and its results

sa.event.listen(sa.Engine, "before_cursor_execute", die)
store = Store.open(sys.argv[1])
agent = store.agent_by_token(os.environ["MEDSEC_TEST_AGENT_TOKEN"])
data = open(sys.argv[2], "rb").read()
store.ingest(agent, parse_report(data), data, datetime.now(UTC))
sys.exit(0)
"""


def test_a_crash_mid_ingest_leaves_nothing(
    store: Store, store_url: str, raw: sa.Engine, tmp_path: Path
) -> None:
    agent, api_token = enrol(store, "his-db-01")
    data = make_report()
    (tmp_path / "report.json").write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, store_url, str(tmp_path / "report.json")],
        env={**os.environ, "MEDSEC_TEST_AGENT_TOKEN": api_token},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # 0 would mean the hook never fired
    assert (count(raw, "reports"), count(raw, "results"), count(raw, "hosts")) == (0, 0, 0)
    assert store.list_agents()[0].last_seen_at is None
    # The report id was not taken: the agent's retry is stored normally.
    assert not ingest(store, agent, data).duplicate
    assert (count(raw, "reports"), count(raw, "results"), count(raw, "hosts")) == (1, 40, 1)


# ----------------------------------------------------------------------------- availability


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[TempPostgres]:
    try:
        server = TempPostgres()
    except PgUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def test_postgres_restart_and_outage(own_postgres: TempPostgres) -> None:
    # A password in the URL (trust auth ignores it) must never appear in an error.
    url = own_postgres.url.replace("postgres@", "postgres:hunter2-secret@")
    store = Store.open(url)
    try:
        store.upgrade()
        agent, _ = enrol(store, "his-db-01")
        assert not ingest(store, agent, make_report()).duplicate
        own_postgres.restart()
        assert not ingest(store, agent, make_report()).duplicate  # pooled connections were dead
        own_postgres.stop()
        try:
            assert store.ping() is False
            with pytest.raises(StoreUnavailable) as info:
                ingest(store, agent, make_report())
            with pytest.raises(StoreUnavailable):
                store.append_audit("-", "-", "GET /healthz", "127.0.0.1", "503", NOW)
        finally:
            own_postgres.start()
        message = str(info.value)
        assert message.startswith("database unavailable: ")
        assert "\n" not in message
        assert "hunter2" not in message
        assert store.ping() is True
        assert not ingest(store, agent, make_report()).duplicate
        assert store.host_reports(host_id("his-db-01"), limit=10, offset=0).total == 3
        store.append_audit("-", "-", "GET /healthz", "127.0.0.1", "200", NOW)
        assert (store.verify_audit().ok, store.verify_audit().entries) == (True, 1)
    finally:
        store.close()


def test_sqlite_unreachable_and_bad_urls(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'missing' / 'collector.db'}")
    assert store.ping() is False
    with pytest.raises(StoreUnavailable) as info:
        store.list_users()
    assert "\n" not in str(info.value)
    store.close()
    for url in ("mysql://root:hunter2@127.0.0.1/medsec", "not a url", "sqlite://"):
        with pytest.raises(StoreError) as bad:
            Store.open(url)
        assert "hunter2" not in str(bad.value)
        assert "\n" not in str(bad.value)


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    store = Store.open(url)
    try:
        store.upgrade()
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "collector.db") as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# ----------------------------------------------------------------------------- audit


def append(store: Store, n: int, actor: str = "alice") -> None:
    for i in range(n):
        store.append_audit(
            actor, "admin", "GET /api/v1/hosts", "127.0.0.1", "200", NOW + timedelta(seconds=i)
        )


def test_audit_chain_links_every_entry(store: Store) -> None:
    assert store.verify_audit().ok
    first = store.append_audit(
        "-", "-", "GET /api/v1/hosts", "127.0.0.1", "401 unauthenticated", NOW
    )
    assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
    assert first.hash == entry_hash(
        GENESIS_HASH,
        seq=1,
        at=NOW,
        actor="-",
        role="-",
        action="GET /api/v1/hosts",
        source="127.0.0.1",
        outcome="401 unauthenticated",
    )
    append(store, 4)
    page = store.audit_entries(limit=2, offset=1)
    assert page.total == 5
    assert [e.seq for e in page.items] == [2, 3]
    assert page.items[0].prev_hash == first.hash
    assert page.items[0].at == NOW
    assert page.items[0].at.tzinfo == UTC
    verdict = store.verify_audit()
    assert (verdict.ok, verdict.entries) == (True, 5)


def test_audit_detects_an_edited_entry(store: Store, raw: sa.Engine) -> None:
    append(store, 5)
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET outcome = '403 forbidden' WHERE seq = 3"))
    verdict = store.verify_audit()
    assert not verdict.ok
    assert verdict.first_bad_seq == 3
    assert verdict.problem is not None
    assert "entry 3" in verdict.problem


def test_audit_detects_a_deleted_entry(store: Store, raw: sa.Engine) -> None:
    append(store, 5)
    with raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 3"))
    verdict = store.verify_audit()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    assert verdict.problem is not None
    assert "missing" in verdict.problem


def test_audit_detects_a_deleted_last_entry(store: Store, raw: sa.Engine) -> None:
    append(store, 5)
    with raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 5"))
    verdict = store.verify_audit()
    assert (verdict.ok, verdict.first_bad_seq, verdict.entries) == (False, 5, 4)
    assert verdict.problem is not None
    assert "head" in verdict.problem


def test_pruning_keeps_young_entries_and_a_verifiable_chain(store: Store, raw: sa.Engine) -> None:
    """Entries past the retention are deleted; what stays still verifies, and a gap after the
    pruned part is still found."""
    days = [400, 300, 200, 10, 250, 5, 1]  # the 5th is old but follows a young one: it stays
    for n, age in enumerate(days):
        store.append_audit("alice", "auditor", f"GET /{n}", "::1", "200", NOW - timedelta(days=age))
    assert store.prune_audit(NOW - timedelta(days=183), chunk=2) == 3  # in two transactions
    with raw.connect() as conn:
        kept = conn.execute(sa.text("SELECT seq FROM audit_log ORDER BY seq")).scalars().all()
    assert kept == [4, 5, 6, 7]
    assert (store.verify_audit().ok, store.verify_audit().entries) == (True, 4)
    assert store.prune_audit(NOW - timedelta(days=183)) == 0  # nothing more is old enough
    store.append_audit("alice", "auditor", "GET /later", "::1", "200", NOW)
    assert store.verify_audit().ok
    with raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 4"))
    verdict = store.verify_audit()
    assert (verdict.ok, verdict.first_bad_seq) == (False, 4)


def test_pruning_refuses_to_erase_the_trace_of_an_edit(store: Store, raw: sa.Engine) -> None:
    """Someone edits an old entry; verify says so, and a prune must not delete that evidence
    (nor may back-dating young entries make them look old enough to go)."""
    for age in (400, 300, 200, 1):
        store.append_audit("alice", "auditor", "GET /", "::1", "200", NOW - timedelta(days=age))
    with raw.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET outcome = '403 forbidden' WHERE seq = 2"))
    with pytest.raises(AuditAltered, match="altered at seq 2"):
        store.prune_audit(NOW - timedelta(days=183))
    assert count(raw, "audit_log") == 4
    assert store.verify_audit().first_bad_seq == 2
    with raw.begin() as conn:  # the edit undone; now a young entry is made to look old
        conn.execute(sa.text("UPDATE audit_log SET outcome = '200' WHERE seq = 2"))
        conn.execute(
            sa.text("UPDATE audit_log SET at = :old WHERE seq = 4"),
            {"old": NOW - timedelta(days=999)},
        )
    with pytest.raises(AuditAltered, match="altered at seq 4"):
        store.prune_audit(NOW - timedelta(days=183))
    assert count(raw, "audit_log") == 4  # the chunk is checked whole before any of it goes


def test_pruning_every_entry_leaves_a_chain_that_goes_on(store: Store) -> None:
    append(store, 3)
    assert store.prune_audit(NOW + timedelta(days=1)) == 3
    assert (store.verify_audit().ok, store.verify_audit().entries) == (True, 0)
    entry = store.append_audit("bob", "admin", "GET /api/v1/users", "::1", "200", NOW)
    assert entry.seq == 4
    assert (store.verify_audit().ok, store.verify_audit().entries) == (True, 1)


AUDIT_KEY = AuditKey(bytes(range(32)), keyed_from=1)


@pytest.fixture
def keyed(store_url: str, store: Store) -> Iterator[Store]:
    """The store with the collector's audit key (`store` has migrated and emptied the database)."""
    with_key = Store.open(store_url, audit_key=AUDIT_KEY)
    yield with_key
    with_key.close()


def test_a_keyed_chain_cannot_be_rewritten_without_the_key(keyed: Store, raw: sa.Engine) -> None:
    """Someone who can write the database edits entry 2 and re-links every later entry and the
    head with plain SHA-256, as they could on an unkeyed chain."""
    append(keyed, 4)
    assert keyed.verify_audit().ok
    entries = keyed.audit_entries(10, 0).items
    prev = entries[0].hash
    with raw.begin() as conn:
        for entry in entries[1:]:
            outcome = "403 forbidden" if entry.seq == 2 else entry.outcome
            digest = entry_hash(
                prev,
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                role=entry.role,
                action=entry.action,
                source=entry.source,
                outcome=outcome,
            )
            conn.execute(
                sa.text(
                    "UPDATE audit_log SET outcome = :o, prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {"o": outcome, "p": prev, "h": digest, "s": entry.seq},
            )
            prev = digest
        conn.execute(sa.text("UPDATE audit_head SET hash = :h"), {"h": prev})
    verdict = keyed.verify_audit()
    assert not verdict.ok
    assert verdict.problem is not None
    assert "MAC" in verdict.problem  # the head no longer matches its MAC


def test_a_keyed_chains_ends_cannot_be_moved(keyed: Store, raw: sa.Engine) -> None:
    append(keyed, 4)
    third = keyed.audit_entries(1, 2).items[0]
    with raw.begin() as conn:  # drop the last entry and point the head at the one before
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 4"))
        conn.execute(sa.text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": third.hash})
    assert not keyed.verify_audit().ok
    with pytest.raises(AuditAltered, match="head row was altered"):
        keyed.append_audit("bob", "admin", "GET /", "::1", "200", NOW)


def test_keying_cannot_be_turned_off_nor_the_log_extended_without_the_key(
    store: Store, keyed: Store, raw: sa.Engine
) -> None:
    append(keyed, 2)
    with raw.connect() as conn:
        assert conn.execute(sa.text("SELECT keyed_from FROM audit_head")).scalar() == 1
    with pytest.raises(StoreError, match="audit log is keyed"):
        store.append_audit("bob", "admin", "GET /", "::1", "200", NOW)  # a store without it
    with pytest.raises(StoreError, match="audit log is keyed"):
        store.verify_audit()
    # Switched off in the database, the chain re-linked with plain SHA-256: the key file still
    # says where keying starts, so neither a check nor the next append accepts it.
    first = keyed.audit_entries(1, 0).items[0]
    plain = entry_hash(
        GENESIS_HASH,
        seq=1,
        at=first.at,
        actor=first.actor,
        role=first.role,
        action=first.action,
        source=first.source,
        outcome="403 forbidden",
    )
    with raw.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 2"))
        conn.execute(
            sa.text("UPDATE audit_log SET outcome = '403 forbidden', hash = :h WHERE seq = 1"),
            {"h": plain},
        )
        conn.execute(
            sa.text("UPDATE audit_head SET seq = 1, hash = :h, keyed_from = NULL, mac = NULL"),
            {"h": plain},
        )
    verdict = keyed.verify_audit()
    assert (verdict.ok, verdict.problem is not None and "switched off" in verdict.problem) == (
        False,
        True,
    )
    with pytest.raises(AuditAltered, match="switched off"):
        keyed.append_audit("bob", "admin", "GET /", "::1", "200", NOW)
    assert not keyed.verify_audit().ok


def test_a_key_that_starts_later_keeps_the_earlier_plain_links(
    store: Store, store_url: str
) -> None:
    append(store, 2)  # before the collector had its key
    later = Store.open(store_url, audit_key=AuditKey(bytes(range(32)), keyed_from=3))
    try:
        append(later, 2)
        verdict = later.verify_audit()
        assert (verdict.ok, verdict.entries) == (True, 4)
    finally:
        later.close()


def test_a_keyed_chain_prunes_and_still_verifies(keyed: Store) -> None:
    for age in (400, 300, 1):
        keyed.append_audit("alice", "auditor", "GET /", "::1", "200", NOW - timedelta(days=age))
    assert keyed.prune_audit(NOW - timedelta(days=183)) == 2
    assert (keyed.verify_audit().ok, keyed.verify_audit().entries) == (True, 1)
    keyed.append_audit("alice", "auditor", "GET /", "::1", "200", NOW)
    assert keyed.verify_audit().ok


def test_audit_fields_are_hashed_as_stored(store: Store) -> None:
    """A NUL (from a decoded request path) cannot be stored on PostgreSQL: like every control
    character it is escaped before hashing, so the entry is still written and still verifies."""
    entry = store.append_audit("bob", "auditor", "GET /api/v1/\x00x", "::1", "404", NOW)
    assert entry.action == "GET /api/v1/\\x00x"
    assert store.verify_audit().ok


def run_writers(stores: Sequence[Store], per_writer: int) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def writer(own: Store, name: str) -> None:
        try:
            start.wait()
            append(own, per_writer, actor=name)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(own, f"writer-{i}")) for i, own in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_appends_never_fork_the_chain(store: Store, store_url: str) -> None:
    """4 writers × 50, each with its own engine (as separate collector processes would be);
    then 8 threads × 25 sharing one store, whose appends are committed in batches."""
    stores = [Store.open(store_url) for _ in range(4)]
    try:
        run_writers(stores, 50)
    finally:
        for own in stores:
            own.close()
    run_writers([store] * 8, 25)
    verdict = store.verify_audit()
    assert (verdict.ok, verdict.entries) == (True, 400)
    page = store.audit_entries(limit=500, offset=0)
    assert [e.seq for e in page.items] == list(range(1, 401))
    assert {e.actor for e in page.items} == {f"writer-{i}" for i in range(8)}
    # Every entry links to the one before it, whichever writer made it.
    assert all(b.prev_hash == a.hash for a, b in zip(page.items, page.items[1:], strict=False))


# ----------------------------------------------------------------------------- migrations


def test_migrations_create_the_schema_once_without_drift(empty_url: str) -> None:
    """upgrade() on an empty database creates every table, again is a no-op, and the result
    matches schema.py exactly (what `alembic check` would report, via compare_metadata)."""
    engine = sa.create_engine(empty_url)
    store = Store.open(empty_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        # Several collectors starting at once on the same empty database: one migrates.
        starting = [Store.open(empty_url) for _ in range(3)]
        with ThreadPoolExecutor(3) as pool:
            for future in [pool.submit(s.upgrade) for s in starting]:
                future.result()
        for started in starting:
            started.close()
        tables = set(sa.inspect(engine).get_table_names())
        assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
        store.append_audit("root", "cli", "cli db upgrade", "cli", "0", NOW)
        store.upgrade()  # at head already: nothing happens
        assert store.verify_audit().entries == 1
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                ("0009",)
            ]
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
            if engine.dialect.name == "postgresql":  # large values are compressed with LZ4
                methods = conn.execute(
                    sa.text(
                        "SELECT attrelid::regclass::text, attname, attcompression"
                        " FROM pg_attribute WHERE attname IN ('body', 'inventory', 'evidence')"
                        " AND attrelid::regclass::text IN ('reports', 'hosts', 'results')"
                    )
                ).all()
                assert sorted(methods) == [
                    ("hosts", "inventory", "l"),
                    ("reports", "body", "l"),
                    ("results", "evidence", "l"),
                ]
    finally:
        store.close()
        engine.dispose()
