"""Issue 15, holes 1 and 2, closed for good, on SQLite and on PostgreSQL: a report the store cannot
take fails alone — times no clock could give, a host id too long for the database's index and
nesting too deep for the API are refused at the boundary naming the field, and whatever else breaks
one report's write inside a group-commit batch is retried job by job so that only that report
fails — and enrolment looks the token up before it reads the key, answering every bad key with a
4xx and the JSON error body, never a 500.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import sqlalchemy as sa

from checks import envelope as env
from checks.report import MAX_DEPTH, ReportInvalid, check_received, parse_report, rfc3339
from collector.store import Store, StoreUnavailable
from collector.store.batch import GroupWriter
from collector.store.ingest import IngestJob
from tests.collector.fixtures_api import Creds, Server, TlsFiles, enrol, make_server_tls, serving


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def api_server(store: Store, server_tls: TlsFiles) -> Iterator[Server]:
    with serving(store, server_tls) as server:
        yield server


def report(
    hostname: str, generated_at: str, /, *, report_id: str | None = None, **extra: Any
) -> bytes:
    """A small, valid `medsec.report/v1` document for `hostname` (one result), as JSON bytes;
    `extra` replaces or adds top-level fields."""
    doc = {
        "schema": "medsec.report/v1",
        "report_id": report_id or str(uuid.uuid4()),
        "host": {
            "id": "sha256:" + hashlib.sha256(hostname.encode()).hexdigest(),
            "hostname": hostname,
        },
        "generated_at": generated_at,
        "agent": {"version": "0.0-test"},
        "inventory": {"site": "ward-3"},
        "results": [
            {
                "check_id": "disk.encryption",
                "status": "pass",
                "severity": "high",
                "title": {"en": "Disk encryption", "zh": "磁盘加密"},
                "message": "every disk is encrypted",
            }
        ],
        **extra,
    }
    return msgspec.json.encode(doc)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert body["message"]
    return body


def stored_report_ids(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT report_id FROM reports")).scalars())
    finally:
        engine.dispose()


def last_outcomes(store: Store, n: int) -> list[str]:
    total = store.audit_entries(1, 0).total
    return [e.outcome for e in store.audit_entries(n, max(0, total - n)).items]


# --------------------------------------------------------------------------- 1a: timestamps

_REFUSED = [
    ("0001-01-01T00:00:00+01:00", "outside"),  # the report: in UTC, year 0
    ("1999-12-31T23:59:59Z", "outside"),
    ("2026-03-01T08:00:00+14:01", "offset"),
    ("2026-03-01T08:00:00-23:59", "offset"),
    ("2026-03-01T08:00:00", "time zone"),
    ("9999-12-31T23:59:59-01:00", "outside"),  # in UTC, year 10000
]


@pytest.mark.parametrize(("text", "why"), _REFUSED)
def test_the_contract_refuses_a_time_outside_the_window_naming_generated_at(
    text: str, why: str
) -> None:
    with pytest.raises(ReportInvalid, match="generated_at") as caught:
        check_received(parse_report(report("his-db-01", text)))
    assert why in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "2000-01-01T00:00:00Z",
        "1999-12-31T23:59:59-14:00",  # 2000-01-01 in UTC: the window is judged in UTC
        "2026-03-01T22:00:00+14:00",
        "2026-02-28T20:00:00-12:00",
    ],
)
def test_the_contract_accepts_the_edges_of_the_window(text: str) -> None:
    check_received(parse_report(report("his-db-01", text)))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("0001-01-01T00:00:00+01:00", "invalid_report"),
        ("2026-03-01T08:00:00+15:00", "invalid_report"),
        ("9999-12-31T23:59:59-01:00", "invalid_report"),
    ],
)
def test_a_report_with_an_impossible_time_is_a_400_naming_generated_at(
    api_server: Server, store_url: str, text: str, code: str
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    body = report("his-db-01", text)
    response = server.client(agent.token).post("/api/v1/reports", content=agent.seal(body))
    assert "generated_at" in assert_error(response, 400, code)["message"]
    assert stored_report_ids(store_url) == set()
    assert last_outcomes(server.store, 1) == [f"400 {code}"]
    # The agent and the collector are fine: its next, honest report is stored.
    honest = report("his-db-01", rfc3339(server.clock()))
    ok = server.client(agent.token).post("/api/v1/reports", content=agent.seal(honest))
    assert ok.status_code == 201, ok.text


def nested(depth: int) -> dict[str, Any]:
    """A dict `depth` levels deep (itself the first)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def long_host_id() -> str:
    # Random, so PostgreSQL cannot compress the index entry under its limit (about 2.7 kB).
    return secrets.token_hex(5000) + ":" + "0" * 16


def _result(evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "check_id": "disk.encryption",
        "status": "fail",
        "severity": "high",
        "title": {"en": "Disk encryption", "zh": "磁盘加密"},
        "message": "a disk is not encrypted",
        "evidence": evidence,
    }


_UNHOLDABLE = {
    # Stored on SQLite; on PostgreSQL its index entry fails the whole batch as "unavailable".
    "host.id": lambda: {"host": {"id": long_host_id(), "hostname": "h"}},
    # Stored, then every read of the host or its results answered 500.
    "inventory": lambda: {"inventory": nested(MAX_DEPTH + 1)},
    "results[1].evidence": lambda: {
        "results": [_result({}), _result(nested(MAX_DEPTH + 1)), _result({})]
    },
}


@pytest.mark.parametrize("field", list(_UNHOLDABLE))
def test_the_contract_refuses_what_the_store_or_the_api_could_not_hold(field: str) -> None:
    doc = report("his-db-01", "2026-03-01T08:00:00Z", **_UNHOLDABLE[field]())
    with pytest.raises(ReportInvalid, match=re.escape(field)):
        check_received(parse_report(doc))


def test_the_contract_accepts_what_it_can_hold() -> None:
    ok = {"inventory": nested(MAX_DEPTH), "results": [_result(nested(MAX_DEPTH))]}
    check_received(parse_report(report("his-db-01", "2026-03-01T08:00:00Z", **ok)))
    wide = {"inventory": {"disks": [[{"a": [1]}] for _ in range(2_000)]}}
    check_received(parse_report(report("his-db-01", "2026-03-01T08:00:00Z", **wide)))


@pytest.mark.parametrize("field", list(_UNHOLDABLE))
def test_a_report_the_store_could_not_hold_is_a_400_and_the_batch_goes_on(
    api_server: Server, store_url: str, field: str
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    client = server.client(agent.token)
    now = rfc3339(server.clock())
    bad = client.post(
        "/api/v1/reports",
        content=agent.seal(report("his-db-01", now, **_UNHOLDABLE[field]())),
    )
    assert field in assert_error(bad, 400, "invalid_report")["message"]
    good = report("his-db-01", now)
    assert client.post("/api/v1/reports", content=agent.seal(good)).status_code == 201
    assert len(stored_report_ids(store_url)) == 1


# --------------------------------------------------------------------------- 1b: the batch


class _CountingStore(Store):
    """The real store, counting the reports handed to its group commit, so the test knows when
    every request it sent is queued behind the write it holds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counted = threading.Lock()
        self.submitted = 0

    def submit_ingest(self, *args: Any, **kwargs: Any) -> Any:
        future = super().submit_ingest(*args, **kwargs)
        with self.counted:
            self.submitted += 1
        return future


@contextmanager
def writes_held(url: str) -> Iterator[None]:
    """Another transaction holds what every batch must take first — SQLite's write lock, or on
    PostgreSQL every agent row (as a revocation does) — so that the requests sent meanwhile queue
    up and are written together as one batch once it ends."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as pg:
        pg.execute("SELECT id FROM agents FOR UPDATE")
        yield
        pg.rollback()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_one_bad_report_never_fails_the_others_in_its_batch(
    store_url: str, server_tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """Forty valid reports from eight agents queue up together with three bad ones: two that the
    boundary refuses, and one that passes every check but whose write raises. Every valid report
    is stored; each bad one fails alone, with the JSON error body.

    The write failure is injected (one report's row conversion raises, as the year-1 time's UTC
    conversion did) because every value known to break a write is now refused at the boundary:
    what this proves is that the writer isolates the failure it cannot foresee."""
    store = _CountingStore.open(store_url)
    poisoned_id = str(uuid.uuid4())
    real_row = IngestJob.row

    def row(job: IngestJob) -> dict[str, Any]:
        if job.report.report_id == poisoned_id:
            raise OverflowError("date value out of range")
        return real_row(job)

    try:
        with serving(store, server_tls) as server, pytest.MonkeyPatch.context() as patch:
            patch.setattr(IngestJob, "row", row)
            agents = [enrol(server, f"ward-{n}") for n in range(8)]
            now = server.clock()
            valid: list[tuple[Creds, str, bytes]] = []
            for n, agent in enumerate(agents):
                for k in range(5):
                    rid = str(uuid.uuid4())
                    moment = rfc3339(now - timedelta(minutes=k))
                    valid.append((agent, rid, report(f"host-{n}", moment, report_id=rid)))
            year_one = report("host-0", "0001-01-01T00:00:00+01:00")
            far_offset = report("host-1", "2026-03-01T08:00:00+15:00")
            poisoned = report("host-2", rfc3339(now), report_id=poisoned_id)
            clients = {a.name: server.client(a.token) for a in agents}

            def post(agent: Creds, body: bytes) -> httpx.Response:
                return clients[agent.name].post("/api/v1/reports", content=agent.seal(body))

            with ThreadPoolExecutor(max_workers=len(valid) + 3) as pool:
                with caplog.at_level(logging.WARNING), writes_held(store_url):
                    answers = [pool.submit(post, a, body) for a, _, body in valid]
                    refused = [
                        pool.submit(post, agents[0], year_one),
                        pool.submit(post, agents[1], far_offset),
                    ]
                    wait_for(lambda: store.submitted >= len(valid), "the valid reports queued")
                    failing = pool.submit(post, agents[2], poisoned)
                    wait_for(lambda: store.submitted > len(valid), "the bad report queued")
                statuses = [f.result().status_code for f in answers]
            assert statuses == [201] * len(valid), [
                f.result().text for f in answers if f.result().status_code != 201
            ]
            for f in refused:
                assert "generated_at" in assert_error(f.result(), 400, "invalid_report")["message"]
            answer = failing.result()
            assert_error(answer, 500, "internal_error")
            assert "Traceback" not in answer.text
            assert "OverflowError" not in answer.text
            assert stored_report_ids(store_url) == {rid for _, rid, _ in valid}
            # The bad report shared a batch with valid ones, and only that batch was split.
            retried = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
            assert retried, "the bad report was never in a batch with others"
            assert len(retried) == 1, retried  # a batch of valid reports is written whole
            assert "OverflowError" in retried[0], retried
            outcomes = last_outcomes(store, len(valid) + 3)
            assert outcomes.count("201") == len(valid)
            assert outcomes.count("400 invalid_report") == 2
            assert outcomes.count("500 internal_error") == 1
            assert store.verify_audit().ok
    finally:
        store.close()


# --------------------------------------------------------------------------- 1b: the writer


class _Job:
    def __init__(self, name: str) -> None:
        self.name = name
        self.future: Future[Any] = Future()


def _writer_with_gate(
    fail: Callable[[Sequence[_Job]], BaseException | None],
) -> tuple[GroupWriter, list[list[str]], threading.Event, threading.Event]:
    """A writer whose write records each batch, waits on `gate` for the first one (so what is
    submitted meanwhile forms the next batch), raises what `fail` gives, or settles every job."""
    batches: list[list[str]] = []
    gate, entered = threading.Event(), threading.Event()

    def write(jobs: Sequence[Any]) -> None:
        batches.append([job.name for job in jobs])
        if len(batches) == 1:
            entered.set()
            assert gate.wait(30)
        failure = fail(jobs)
        if failure is not None:
            raise failure
        for job in jobs:
            job.future.set_result(job.name)

    return GroupWriter(write, "test-writer"), batches, gate, entered


def _queue_behind_first(
    writer: GroupWriter, entered: threading.Event, names: list[str]
) -> list[_Job]:
    first = _Job("first")
    writer.submit(first)
    assert entered.wait(30)
    jobs = [_Job(name) for name in names]
    for job in jobs:
        writer.submit(job)
    return [first, *jobs]


@pytest.mark.parametrize("error", [OverflowError, KeyError, RuntimeError, TypeError])
def test_any_error_of_one_job_is_retried_job_by_job(error: type[Exception]) -> None:
    def fail(jobs: Sequence[_Job]) -> BaseException | None:
        return error("bad job") if any(j.name == "bad" for j in jobs) else None

    writer, batches, gate, entered = _writer_with_gate(fail)
    try:
        jobs = _queue_behind_first(writer, entered, ["a", "bad", "b", "c"])
        gate.set()
        for job in jobs:
            if job.name == "bad":
                assert isinstance(job.future.exception(30), error)
            else:
                assert job.future.result(30) == job.name
        assert batches == [["first"], ["a", "bad", "b", "c"], ["a"], ["bad"], ["b"], ["c"]]
    finally:
        writer.close()


def test_an_unreachable_database_fails_the_batch_at_once_without_retries() -> None:
    down = StoreUnavailable("database unavailable: connection refused")

    def fail(jobs: Sequence[_Job]) -> BaseException | None:
        return down if len(jobs) > 1 else None

    writer, batches, gate, entered = _writer_with_gate(fail)
    try:
        jobs = _queue_behind_first(writer, entered, ["a", "b", "c"])
        gate.set()
        assert jobs[0].future.result(30) == "first"
        assert all(job.future.exception(30) is down for job in jobs[1:])
        assert batches == [["first"], ["a", "b", "c"]]
    finally:
        writer.close()


def test_a_retry_that_finds_the_database_gone_fails_the_rest_at_once() -> None:
    down = StoreUnavailable("database unavailable: connection refused")

    def fail(jobs: Sequence[_Job]) -> BaseException | None:
        if len(jobs) > 1:
            return ValueError("one job's data")
        return down if jobs[0].name == "b" else None

    writer, batches, gate, entered = _writer_with_gate(fail)
    try:
        jobs = _queue_behind_first(writer, entered, ["a", "b", "c", "d"])
        gate.set()
        assert [j.future.result(30) for j in jobs[:2]] == ["first", "a"]
        assert all(job.future.exception(30) is down for job in jobs[2:])
        assert batches == [["first"], ["a", "b", "c", "d"], ["a"], ["b"]]
    finally:
        writer.close()


def test_a_caller_giving_up_cannot_break_the_others_outcomes() -> None:
    """A request whose task is cancelled (its client gone) cancels the future it awaited: once
    queued, that must not make the writer's `set_result` raise for the batch."""
    writer, _, gate, entered = _writer_with_gate(lambda jobs: None)
    try:
        jobs = _queue_behind_first(writer, entered, ["a", "gone", "b"])
        assert jobs[2].future.cancel() is False  # queued: it will be written; the caller may leave
        gate.set()
        assert [job.future.result(30) for job in jobs] == ["first", "a", "gone", "b"]
    finally:
        writer.close()


# --------------------------------------------------------------------------- 2: enrolment


def _enrol_body(token: str, public_key: str, name: str = "his-db-01") -> dict[str, str]:
    return {"token": token, "name": name, "alg": "ed25519", "public_key": public_key}


def _good_key() -> str:
    return env.public_key_pem(env.generate_private_key("ed25519"), "ed25519")


def _bad_keys() -> dict[str, str]:
    good = _good_key()
    private = env.generate_private_key("ed25519")
    return {
        "nul after the PEM": good + "\x00",
        "nul inside": good.replace("\n", "\x00\n", 1),
        "text before the PEM": "hello\n" + good,
        "text after the PEM": good + "trailing words\n",
        "two keys": good + _good_key(),
        "a private key": private,
        "an sm2 key": env.public_key_pem(env.generate_private_key("sm2-sm3"), "sm2-sm3"),
        "not base64": good.replace("MCow", "MC*w"),
        "latin-1": good.replace("PUBLIC", "PÜBLIC"),
        "empty body": "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
    }


def test_enrolment_looks_the_token_up_before_reading_the_key(
    api_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server = api_server
    client = server.client()
    store, now = server.store, server.clock()
    expired = store.create_enrollment("ward-expired", timedelta(minutes=1), now)
    used = store.create_enrollment("ward-used", timedelta(minutes=60), now)
    assert client.post(
        "/api/v1/enroll", json=_enrol_body(used, _good_key(), "ward-used")
    ).is_success
    server.clock.advance(timedelta(minutes=5))
    refused = {"unknown": "mse_" + "x" * 43, "expired": expired, "used": used}
    keys = {"a good key": _good_key(), **_bad_keys()}
    with caplog.at_level(logging.WARNING):
        for reason, token in refused.items():
            for what, key in keys.items():
                name = {"expired": "ward-expired", "used": "ward-used"}.get(reason, "his-db-01")
                response = client.post("/api/v1/enroll", json=_enrol_body(token, key, name))
                body = assert_error(response, 401, "enrollment_token_invalid")
                assert reason in body["message"], (reason, what, body)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_every_bad_key_is_a_400_and_leaves_the_token_unspent(
    api_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server = api_server
    client = server.client()
    token = server.store.create_enrollment("his-db-01", timedelta(minutes=60), server.clock())
    with caplog.at_level(logging.WARNING):
        for what, key in _bad_keys().items():
            response = client.post("/api/v1/enroll", json=_enrol_body(token, key))
            body = assert_error(response, 400, "invalid_public_key")
            assert "public_key" in body["message"], (what, body)
            assert "\x00" not in response.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    good = _good_key()
    ok = client.post("/api/v1/enroll", json=_enrol_body(token, good))
    assert ok.status_code == 201, ok.text
    [agent] = server.store.list_agents()
    assert agent.public_key_pem == good


@pytest.mark.parametrize(
    "field", ["token", "name", "public_key", "alg"], ids=lambda f: f"surrogate in {f}"
)
def test_a_lone_surrogate_anywhere_in_an_enrolment_is_a_4xx(api_server: Server, field: str) -> None:
    """JSON may escape a lone UTF-16 surrogate (\\ud800), which no UTF-8 text can hold."""
    server = api_server
    token = server.store.create_enrollment("his-db-01", timedelta(minutes=60), server.clock())
    body = _enrol_body(token, _good_key())
    body[field] = body[field][:4] + "\ud800" + body[field][4:]
    raw = json.dumps(body).encode("ascii")  # ensure_ascii writes the surrogate as \\ud800
    response = server.client().post(
        "/api/v1/enroll", content=raw, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in {
        "invalid_request",
        "invalid_public_key",
        "enrollment_token_invalid",
    }
    ok = server.client().post("/api/v1/enroll", json=_enrol_body(token, _good_key()))
    assert ok.status_code == 201, ok.text


def test_reports_of_many_agents_queued_together_are_written_as_one_batch(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The group commit writes a queue of reports from several agents in one transaction: the
    host upsert runs once for all of them. A statement that cannot run for many rows at once
    (an expanding IN list under executemany did) splits every batch into single writes, which
    stores everything but costs the throughput the batch exists for."""
    store = _CountingStore.open(store_url)
    try:
        store.upgrade()
        now = datetime.now(UTC).replace(microsecond=0)
        agents = []
        for n in range(4):
            token = store.create_enrollment(f"batch-{n}", timedelta(minutes=5), now)
            key = env.generate_private_key("ed25519")
            pem = env.public_key_pem(key, "ed25519")
            agents.append(store.redeem_enrollment(token, f"batch-{n}", "ed25519", pem, now)[0])
        bodies = [
            (agent, report(f"batch-host-{n}", rfc3339(now - timedelta(minutes=k))))
            for k in range(3)
            for n, agent in enumerate(agents)
        ]
        with caplog.at_level(logging.WARNING), writes_held(store_url):
            futures = [store.submit_ingest(a, parse_report(b), b, now) for a, b in bodies]
            wait_for(lambda: store.submitted >= len(bodies), "the reports queued")
        assert all(not f.result(60).duplicate for f in futures)
        split = [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]
        assert split == []
    finally:
        store.close()
