"""The probe job queue (`Store` jobs part) on real SQLite files and the real PostgreSQL server:
queueing, claiming under a lease, renewing, finishing once, deadlines and zones; and several OS
processes claiming from one database at once, every job taken exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.envelope import generate_private_key, public_key_pem
from collector.store import AgentRevoked, NotFound, Store
from collector.store.jobs import MAX_REQUEST_BYTES, JobSpec, LeaseLost

NOW = datetime(2026, 5, 10, 8, 0, tzinfo=UTC)
LEASE = timedelta(seconds=2)
HOUR = timedelta(hours=1)
REPO = Path(__file__).resolve().parents[2]


def nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for n in range(depth - 1):
        doc = {"a": doc} if n % 2 else {"a": [doc]}  # a list counts as a level too
    return doc


def spec(zone: str = "his", deadline: datetime = NOW + HOUR, **request: object) -> JobSpec:
    return JobSpec(zone=zone, kind="noop", request=dict(request), deadline=deadline)


def test_jobs_are_claimed_oldest_first_each_once_with_a_fresh_claim(store: Store) -> None:
    first = store.enqueue_jobs([spec(n=1)], NOW)
    later = store.enqueue_jobs([spec(n=2), spec(n=3)], NOW + timedelta(seconds=1))
    claimed = store.claim_jobs("his", "probe-a", NOW + timedelta(seconds=2), LEASE, 2)
    assert claimed[0].id == first[0]
    assert claimed[1].id in later
    assert all(job.state == "claimed" and job.attempts == 1 for job in claimed)
    assert all(job.claimed_by == "probe-a" for job in claimed)
    assert claimed[0].lease_until == NOW + timedelta(seconds=2) + LEASE
    assert len({job.claim_id for job in claimed}) == 2
    rest = store.claim_jobs("his", "probe-b", NOW + timedelta(seconds=2), LEASE, 10)
    assert [job.id for job in rest] == [i for i in later if i != claimed[1].id]
    assert rest[0].request == {"n": 2 if claimed[1].request == {"n": 3} else 3}
    assert store.claim_jobs("his", "probe-b", NOW + timedelta(seconds=2), LEASE, 10) == []


def test_a_finished_job_is_stored_once(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    (job,) = store.claim_jobs("his", "probe-a", NOW, LEASE, 1)
    assert job.claim_id is not None
    done_at = NOW + timedelta(seconds=1)
    result = {"stdout": "ok"}
    assert store.finish_job(job_id, job.claim_id, "probe-a", done_at, result=result, error=None)
    again = {"stdout": "other"}
    assert not store.finish_job(
        job_id, job.claim_id, "probe-a", done_at + HOUR, result=again, error="late"
    )
    (stored,) = store.get_jobs([job_id])
    assert (stored.state, stored.result, stored.error) == ("done", result, None)
    assert (stored.finished_at, stored.finished_by) == (done_at, "probe-a")
    assert store.claim_jobs("his", "probe-a", NOW + HOUR / 2, LEASE, 5) == []


def test_a_result_nested_too_deep_is_refused_and_nothing_changes(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    (job,) = store.claim_jobs("his", "p", NOW, LEASE, 1)
    # 900 levels: more than the store's code could recurse through.
    with pytest.raises(ValueError, match="deeper than 32"):
        store.finish_job(job_id, str(job.claim_id), "p", NOW, result=nested(900), error=None)
    assert store.get_jobs([job_id])[0].state == "claimed"
    assert store.finish_job(job_id, str(job.claim_id), "p", NOW, result=nested(16), error=None)


def test_a_probe_failure_is_kept_with_its_reason(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    (job,) = store.claim_jobs("his", "probe-a", NOW, LEASE, 1)
    assert store.finish_job(
        job_id, str(job.claim_id), "probe-a", NOW, result=None, error="nmap\nexited 1"
    )
    (stored,) = store.get_jobs([job_id])
    assert (stored.state, stored.error, stored.result) == ("failed", "nmap exited 1", None)


def test_a_lapsed_lease_is_claimed_again_and_the_old_claim_is_refused(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    (old,) = store.claim_jobs("his", "probe-a", NOW, LEASE, 1)
    # Still leased: nobody else gets it.
    assert store.claim_jobs("his", "probe-b", NOW + LEASE / 2, LEASE, 1) == []
    later = NOW + LEASE + timedelta(milliseconds=1)
    (new,) = store.claim_jobs("his", "probe-b", later, LEASE, 1)
    assert (new.id, new.attempts, new.claimed_by) == (job_id, 2, "probe-b")
    assert new.claim_id != old.claim_id
    with pytest.raises(LeaseLost):
        store.finish_job(job_id, str(old.claim_id), "probe-a", later, result={}, error=None)
    assert store.renew_leases([(job_id, str(old.claim_id))], "probe-a", later, LEASE) == {
        job_id: None
    }
    assert store.finish_job(
        job_id, str(new.claim_id), "probe-b", later, result={"n": 2}, error=None
    )
    (stored,) = store.get_jobs([job_id])
    assert (stored.state, stored.result, stored.finished_by, stored.attempts) == (
        "done",
        {"n": 2},
        "probe-b",
        2,
    )
    # The old claim's late result, once the job is done: a duplicate, nothing changes.
    assert not store.finish_job(job_id, str(old.claim_id), "probe-a", later, result={}, error=None)


def test_renewing_keeps_a_job_from_being_claimed_again(store: Store) -> None:
    ids = store.enqueue_jobs([spec(), spec()], NOW)
    claimed = store.claim_jobs("his", "probe-a", NOW, LEASE, 2)
    renewed_at = NOW + LEASE - timedelta(milliseconds=500)
    claims = [(job.id, str(job.claim_id)) for job in claimed]
    renewed = store.renew_leases([*claims, ("no-such-job", "x")], "probe-a", renewed_at, LEASE)
    assert renewed == {ids[0]: renewed_at + LEASE, ids[1]: renewed_at + LEASE, "no-such-job": None}
    assert store.claim_jobs("his", "probe-b", NOW + LEASE + timedelta(seconds=1), LEASE, 5) == []
    # Another probe cannot renew what it does not hold, even with the claim ids.
    assert store.renew_leases(claims, "probe-b", renewed_at, LEASE) == dict.fromkeys(ids)
    # A lapsed lease nobody took yet is still the probe's: renewing it works.
    lapsed = renewed_at + LEASE + timedelta(seconds=1)
    assert store.renew_leases(claims[:1], "probe-a", lapsed, LEASE) == {ids[0]: lapsed + LEASE}
    (taken,) = store.claim_jobs("his", "probe-b", lapsed, LEASE, 5)
    assert taken.id == ids[1]


def test_a_queued_job_or_an_unknown_one_has_no_claim_to_finish(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    with pytest.raises(LeaseLost):
        store.finish_job(
            job_id, "00000000-0000-4000-8000-000000000000", "p", NOW, result={}, error=None
        )
    with pytest.raises(NotFound):
        store.finish_job("nope", "x", "p", NOW, result={}, error=None)
    with pytest.raises(NotFound):
        store.finish_job("nul\x00", "x", "p", NOW, result={}, error=None)


def test_probes_see_only_their_zone(store: Store) -> None:
    his, office = store.enqueue_jobs([spec("his"), spec("office")], NOW)
    assert [job.id for job in store.claim_jobs("office", "p-office", NOW, LEASE, 10)] == [office]
    assert [job.id for job in store.claim_jobs("his", "p-his", NOW, LEASE, 10)] == [his]
    assert store.claim_jobs("lab", "p-lab", NOW, LEASE, 10) == []


def test_a_result_for_another_zones_job_is_not_found(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec("office")], NOW)
    (job,) = store.claim_jobs("office", "p-office", NOW, LEASE, 1)
    claim_id = str(job.claim_id)
    # Whatever its state, a probe of another zone learns nothing of it.
    with pytest.raises(NotFound):
        store.finish_job(job_id, claim_id, "p-his", NOW, result={}, error=None, zone="his")
    assert store.finish_job(job_id, claim_id, "p-office", NOW, result={}, error=None, zone="office")
    with pytest.raises(NotFound):
        store.finish_job(job_id, claim_id, "p-his", NOW, result={}, error=None, zone="his")


def test_enrolled_writes_need_an_active_probe_of_the_zone(store: Store) -> None:
    """What the API asks for: the agent's standing checked again in the writing transaction."""
    store.create_enrollment("probe-his", timedelta(hours=1), NOW, probe_zone="his")
    assert store.claim_jobs("his", "probe-his", NOW, LEASE, 5, enrolled=True) == []  # pending
    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    token = store.create_enrollment("probe-his", timedelta(hours=1), NOW, probe_zone="his")
    store.redeem_enrollment(token, "probe-his", "ed25519", key, NOW)
    (job_id,) = store.enqueue_jobs([spec()], NOW)
    assert store.claim_jobs("office", "probe-his", NOW, LEASE, 5, enrolled=True) == []
    (job,) = store.claim_jobs("his", "probe-his", NOW, LEASE, 5, enrolled=True)
    claim = (job_id, str(job.claim_id))
    store.revoke_agent("probe-his", NOW)
    assert store.renew_leases([claim], "probe-his", NOW, LEASE, enrolled=True) == {job_id: None}
    with pytest.raises(AgentRevoked):
        store.finish_job(*claim, "probe-his", NOW, result={}, error=None, enrolled=True)
    assert store.get_jobs([job_id])[0].state == "claimed"
    store.enqueue_jobs([spec()], NOW)
    assert store.claim_jobs("his", "probe-his", NOW, LEASE, 5, enrolled=True) == []


def test_jobs_past_their_deadline_are_failed_never_handed_out(store: Store) -> None:
    soon, later = store.enqueue_jobs(
        [spec(deadline=NOW + timedelta(seconds=5)), spec(deadline=NOW + HOUR)], NOW
    )
    (claimed,) = store.claim_jobs("his", "p", NOW + timedelta(seconds=5), LEASE, 10)
    assert claimed.id == later
    (expired,) = store.get_jobs([soon])
    assert (expired.state, expired.error, expired.attempts) == ("failed", "deadline passed", 0)
    # A claimed job past its deadline: its lease cannot be renewed; expire_jobs fails it.
    assert store.renew_leases([(later, str(claimed.claim_id))], "p", NOW + HOUR, LEASE) == {
        later: None
    }
    assert store.expire_jobs(NOW + HOUR) == 1
    assert store.expire_jobs(NOW + HOUR) == 0
    assert store.get_jobs([later])[0].state == "failed"


def test_a_finished_scan_fails_its_unfinished_jobs(store: Store) -> None:
    scan_a = "11111111-1111-4111-8111-111111111111"
    scan_b = "22222222-2222-4222-8222-222222222222"
    done, claimed, queued, other = store.enqueue_jobs(
        [
            JobSpec("his", "nmap", {"argv": ["-sT"]}, NOW + HOUR, scan_a),
            JobSpec("his", "nmap", {"argv": ["-sU"]}, NOW + HOUR, scan_a),
            JobSpec("his", "probe", {"url": "https://198.18.0.1/"}, NOW + HOUR, scan_a),
            JobSpec("his", "noop", {}, NOW + HOUR, scan_b),
        ],
        NOW,
    )
    first, second = store.claim_jobs("his", "p", NOW, LEASE, 2)
    assert (first.id, second.id) == (done, claimed)
    assert store.finish_job(done, str(first.claim_id), "p", NOW, result={"xml": "<x/>"}, error=None)
    assert store.fail_jobs_of_scan(scan_a, NOW, "the scan ended") == 2
    states = {job.id: (job.state, job.error) for job in store.get_jobs([done, claimed, queued])}
    assert states == {
        done: ("done", None),
        claimed: ("failed", "the scan ended"),
        queued: ("failed", "the scan ended"),
    }
    # The probe still working on it learns its result is not wanted (a duplicate: not stored).
    assert not store.finish_job(claimed, str(second.claim_id), "p", NOW, result={}, error=None)
    assert store.get_jobs([other])[0].state == "queued"


def test_pruning_removes_finished_jobs_only(store: Store) -> None:
    finished, waiting = store.enqueue_jobs([spec(), spec()], NOW)
    (job, _) = store.claim_jobs("his", "p", NOW, LEASE, 2)
    assert store.finish_job(job.id, str(job.claim_id), "p", NOW, result={}, error=None)
    assert store.prune_jobs(NOW + timedelta(seconds=1)) == 1
    assert [j.id for j in store.get_jobs([finished, waiting])] == [
        waiting if job.id == finished else finished
    ]


def test_get_jobs_keeps_the_order_asked(store: Store) -> None:
    ids = store.enqueue_jobs([spec(n=i) for i in range(5)], NOW)
    asked = [ids[3], "missing", ids[0], ids[3]]
    assert [job.id for job in store.get_jobs(asked)] == [ids[3], ids[0]]
    assert [job.request for job in store.get_jobs(ids)] == [{"n": i} for i in range(5)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (JobSpec("his zone", "noop", {}, NOW), "not a zone name"),
        (JobSpec("../etc", "noop", {}, NOW), "not a zone name"),
        (JobSpec("his", "shell", {}, NOW), "job kind"),  # type: ignore[arg-type]
        (JobSpec("his", "noop", {"x": "a" * MAX_REQUEST_BYTES}, NOW), "bytes encoded"),
        (JobSpec("his", "noop", {"x": object()}, NOW), "not JSON"),
        (JobSpec("his", "noop", nested(40), NOW), "deeper than 32"),
    ],
)
def test_bad_jobs_are_refused_and_nothing_is_queued(
    store: Store, bad: JobSpec, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.enqueue_jobs([spec(), bad], NOW)
    assert store.claim_jobs("his", "p", NOW, LEASE, 100) == []


def test_claims_are_bounded(store: Store) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        store.claim_jobs("his", "p", NOW, LEASE, 101)
    with pytest.raises(ValueError, match="not a zone name"):
        store.claim_jobs("", "p", NOW, LEASE, 1)


def test_nul_in_a_request_is_stored_as_replacement(store: Store) -> None:
    (job_id,) = store.enqueue_jobs([spec(text="a\x00b")], NOW)
    assert store.get_jobs([job_id])[0].request == {"text": "a\ufffdb"}


# ------------------------------------------------------------------ several processes at once


def _run_workers(url: str, count: int, *, lease_s: float, finish: bool) -> list[dict[str, object]]:
    start = time.time() + 2.0  # every process is up and connected by then
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.collector.jobs_worker",
                url,
                "his",
                f"probe-{n}",
                str(start),
                str(lease_s),
                *(["--finish"] if finish else []),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    claims: list[dict[str, object]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        claims += [json.loads(line) for line in out.splitlines()]
    return claims


def test_processes_claiming_at_once_take_every_job_exactly_once(
    store: Store, store_url: str
) -> None:
    now = datetime.now(UTC)
    ids = store.enqueue_jobs([spec(deadline=now + HOUR, n=i) for i in range(400)], now)
    claims = _run_workers(store_url, 4, lease_s=60, finish=True)
    taken = Counter(str(claim["id"]) for claim in claims)
    assert sorted(taken) == sorted(ids)  # none lost
    assert max(taken.values()) == 1  # none handed out twice
    jobs = store.get_jobs(ids)
    assert {job.state for job in jobs} == {"done"}
    assert {job.attempts for job in jobs} == {1}
    workers = {job.claimed_by for job in jobs}
    assert len(workers) > 1, "one process took every job: the claims did not overlap"


def test_processes_never_hold_one_job_under_two_live_claims(store: Store, store_url: str) -> None:
    """Nobody finishes and the leases are long: every job is claimed by exactly one process,
    and no process's claim was a second one."""
    now = datetime.now(UTC)
    ids = store.enqueue_jobs([spec(deadline=now + HOUR) for _ in range(200)], now)
    claims = _run_workers(store_url, 4, lease_s=600, finish=False)
    assert sorted(str(claim["id"]) for claim in claims) == sorted(ids)
    assert {claim["attempts"] for claim in claims} == {1}
