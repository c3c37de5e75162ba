"""Host ids the agent derived from a DMI value that more than one machine carries: the collector
keeps the machines apart when their reports prove them different, and keeps the old rule (a host
is its first agent's) when they do not. Every storage test runs on SQLite and PostgreSQL.

Reports are built from identities the agent's own `derive_identity` gives, so the evidence the
collector reads is the agent's real output. The truth rule of the table test is stated there and
computed from the machines' own machine-ids and MAC sets, not from the collector's code.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest
import sqlalchemy as sa

from checks.envelope import generate_private_key, parse_report, public_key_pem
from checks.facts import DmiInfo, HostIdentity, Nic
from checks.model import jsonable
from collector.models import Agent, IngestOutcome
from collector.store import HostClaimed, Store
from collector.store.anchors import Evidence, claim_of, evidence_of
from inventory.host.hardware import derive_identity

NOW = datetime(2026, 5, 10, 8, 0, tzinfo=UTC)
# A serial the agent cannot tell from a real one, written to every board of a batch.
SHARED_SERIAL = "QTFC0K7T4Q9X"
MACHINE_A = "3e6a9d0c1b2f48d7a5c4e3f2d1b0a998"
MACHINE_B = "4a1b2c3d4e5f40718293a4b5c6d7e8f9"
MACHINE_C = "5b2c3d4e5f6a41829304b5c6d7e8f9a0"


@cache
def _public_key() -> str:
    return public_key_pem(generate_private_key("ed25519"), "ed25519")


def enrol(store: Store, name: str) -> Agent:
    token = store.create_enrollment(name, timedelta(minutes=15), NOW)
    agent, _ = store.redeem_enrollment(token, name, "ed25519", _public_key(), NOW)
    return agent


def machine(
    machine_id: str | None,
    macs: list[str],
    *,
    serial: str | None = SHARED_SERIAL,
    product_uuid: str | None = None,
) -> HostIdentity:
    """The identity the agent derives for a Quanta board with these anchors."""
    dmi = DmiInfo("Quanta", "S5X", serial, product_uuid, None, None, None, None)
    nics = tuple(Nic(f"eno{i}", mac, (), physical=True) for i, mac in enumerate(macs))
    return derive_identity(dmi, machine_id, nics)


def report(
    identity: HostIdentity | None,
    hostname: str,
    *,
    host_id: str | None = None,
    generated_at: datetime = NOW,
    identity_json: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    hardware = {"identity": identity_json or jsonable(identity)} if identity else {}
    doc = {
        "schema": "medsec.report/v1",
        "report_id": str(uuid.uuid4()),
        "host": {"id": host_id or (identity.id if identity else ""), "hostname": hostname},
        "generated_at": generated_at.isoformat(),
        "agent": {"version": "0.1.0"},
        "inventory": {"hostname": hostname, "hardware": hardware, **(extra or {})},
        "results": [
            {
                "check_id": "disk.encrypted",
                "status": "pass",
                "severity": "high",
                "title": {"en": "Disks are encrypted", "zh": "磁盘已加密"},
                "message": f"written by {hostname}",
                "evidence": {},
                "clauses": [],
            }
        ],
    }
    return json.dumps(doc).encode()


def ingest(store: Store, agent: Agent, data: bytes) -> IngestOutcome:
    return store.ingest(agent, parse_report(data), data, NOW)


def stored(store: Store, host_id: str) -> tuple[str, dict[str, Any], list[str]]:
    """(agent, inventory, hostnames of its reports' results) of a stored host."""
    found = store.get_host(host_id)
    assert found is not None, host_id
    summary, inventory, results = found
    return summary.agent, inventory, [row.message for row in results]


def report_count(store: Store, host_id: str) -> int:
    return store.host_reports(host_id, 100, 0).total


A = machine(MACHINE_A, ["0c:c4:7a:00:00:01", "0c:c4:7a:00:00:02"])
B = machine(MACHINE_B, ["0c:c4:7a:00:00:03"])


# ----------------------------------------------------------------------------- the rule


def test_two_machines_sharing_an_unrecognised_serial_are_kept_apart(store: Store) -> None:
    first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
    assert A.id == B.id  # the filler gives both one id

    ingest(store, first, report(A, "ward-pc-01"))
    outcome = ingest(store, second, report(B, "ward-pc-02"))

    assert outcome.host_id == B.fallbacks[0].id == B.machine
    assert stored(store, A.id)[0] == "ward-pc-01"
    assert stored(store, A.id)[2] == ["written by ward-pc-01"]
    agent, inventory, messages = stored(store, B.machine)
    assert (agent, messages) == ("ward-pc-02", ["written by ward-pc-02"])
    note = inventory["collector"]["host_id"]
    assert (note["reported"], note["stored_as"]) == (A.id, B.machine)
    assert note["shared_anchors"] == [
        {"host_id": A.id, "source": "dmi-serial", "held_by": "ward-pc-01"}
    ]
    assert "collector" not in stored(store, A.id)[1]


def test_the_second_machine_keeps_reporting_to_its_own_host(store: Store) -> None:
    first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
    ingest(store, first, report(A, "ward-pc-01"))
    again = report(B, "ward-pc-02")
    ingest(store, second, report(B, "ward-pc-02", generated_at=NOW - timedelta(hours=1)))

    assert ingest(store, second, again).host_id == B.machine
    assert ingest(store, second, again) == IngestOutcome(
        parse_report(again).report_id, B.machine, duplicate=True
    )
    assert ingest(store, first, report(A, "ward-pc-01")).host_id == A.id
    assert (report_count(store, A.id), report_count(store, B.machine)) == (2, 2)


def test_a_shared_serial_and_a_shared_uuid_fall_through_to_the_machine_id(store: Store) -> None:
    """Three machines cloned with one serial and one UUID: the second goes to the UUID's id,
    the third finds both taken by other machines and goes to its machine-id's."""
    template = "7a3f1c2e-5b8d-11ec-9f2a-b4055d3e8c10"
    one, two, three = (
        machine(mid, [f"52:54:00:00:00:0{n}"], product_uuid=template)
        for n, mid in enumerate((MACHINE_A, MACHINE_B, MACHINE_C))
    )
    agents = [enrol(store, f"ward-pc-0{n}") for n in (1, 2, 3)]

    outcomes = [
        ingest(store, agent, report(m, agent.name)).host_id
        for agent, m in zip(agents, (one, two, three), strict=True)
    ]

    assert outcomes == [one.id, two.fallbacks[0].id, three.machine]
    assert two.fallbacks[0].source == "dmi-uuid"
    note = stored(store, three.machine)[1]["collector"]["host_id"]
    assert [(a["source"], a["held_by"]) for a in note["shared_anchors"]] == [
        ("dmi-serial", "ward-pc-01"),
        ("dmi-uuid", "ward-pc-02"),
    ]


class _HeldStore(Store):
    """The real store, its writer held until a batch has queued."""

    hold: threading.Event
    busy: threading.Event
    batches: list[int]

    @classmethod
    def held(cls, url: str) -> _HeldStore:
        store = cls.open(url)
        store.hold, store.busy, store.batches = threading.Event(), threading.Event(), []
        return store

    def _ingest_batch(self, conn: sa.Connection, jobs: list[Any]) -> Any:
        self.busy.set()
        self.hold.wait(timeout=30)
        self.batches.append(len(jobs))
        return super()._ingest_batch(conn, jobs)


def test_in_one_batch_the_first_machine_keeps_the_id_and_the_second_goes_apart(
    store_url: str,
) -> None:
    store = _HeldStore.held(store_url)
    try:
        first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
        warming = machine(MACHINE_C, ["0c:c4:7a:00:00:09"], serial="WARM0K7T4Q9X")
        warm = store.submit_ingest(first, parse_report(w := report(warming, "x")), w, NOW)
        assert store.busy.wait(timeout=30)
        mine, theirs = report(A, "ward-pc-01"), report(B, "ward-pc-02")
        won = store.submit_ingest(first, parse_report(mine), mine, NOW)
        apart = store.submit_ingest(second, parse_report(theirs), theirs, NOW)
        store.hold.set()
        warm.result(timeout=30)
        assert won.result(timeout=30).host_id == A.id
        assert apart.result(timeout=30).host_id == B.machine
        assert store.batches[:2] == [1, 2]
    finally:
        store.close()


# ----------------------------------------------------------------------------- the old rule holds


def test_a_reinstalled_machine_under_a_new_agent_is_still_refused(store: Store) -> None:
    """Same MACs, new machine-id: the same machine, so the host stays its first agent's."""
    first, second = enrol(store, "his-db-01"), enrol(store, "his-db-01-new")
    ingest(store, first, report(A, "his-db-01"))
    reinstalled = machine(MACHINE_C, list(A.macs))

    with pytest.raises(HostClaimed, match="reported by another agent"):
        ingest(store, second, report(reinstalled, "his-db-01"))

    store.revoke_agent("his-db-01", NOW)  # once the old agent is revoked it takes the host over
    assert ingest(store, second, report(reinstalled, "his-db-01")).host_id == A.id
    assert stored(store, A.id)[0] == "his-db-01-new"


def test_a_machine_with_a_new_nic_under_a_new_agent_is_still_refused(store: Store) -> None:
    first, second = enrol(store, "his-db-01"), enrol(store, "his-db-01-new")
    ingest(store, first, report(A, "his-db-01"))

    with pytest.raises(HostClaimed):
        ingest(store, second, report(machine(MACHINE_A, ["0c:c4:7a:00:00:77"]), "his-db-01"))


def test_a_report_without_identity_evidence_keeps_the_old_rule(store: Store) -> None:
    first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
    ingest(store, first, report(A, "ward-pc-01"))

    with pytest.raises(HostClaimed):
        ingest(store, second, report(None, "ward-pc-02", host_id=A.id))


def test_another_machine_does_not_take_over_a_revoked_agents_host(store: Store) -> None:
    first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
    ingest(store, first, report(A, "ward-pc-01"))
    store.revoke_agent("ward-pc-01", NOW)

    assert ingest(store, second, report(B, "ward-pc-02")).host_id == B.machine
    assert stored(store, A.id)[0] == "ward-pc-01"


def test_with_no_anchor_left_another_machine_is_refused(store: Store) -> None:
    first, second = enrol(store, "ward-pc-01"), enrol(store, "ward-pc-02")
    ingest(store, first, report(A, "ward-pc-01"))
    bare = {**jsonable(B), "fallbacks": []}

    with pytest.raises(HostClaimed):
        ingest(store, second, report(B, "ward-pc-02", identity_json=bare))


def test_a_forged_fallback_gains_nothing(store: Store) -> None:
    """An agent naming another agent's host as its fallback is refused there as everywhere."""
    victim_agent, first, intruder = (enrol(store, n) for n in ("pacs-01", "ward-pc-01", "x-01"))
    victim = machine(MACHINE_C, ["0c:c4:7a:00:00:0c"], serial="VICTIM7T4Q9X")
    ingest(store, victim_agent, report(victim, "pacs-01"))
    ingest(store, first, report(A, "ward-pc-01"))
    forged = {**jsonable(B), "fallbacks": [{"source": "dmi-serial", "id": victim.id}]}

    with pytest.raises(HostClaimed):
        ingest(store, intruder, report(B, "x-01", identity_json=forged))
    assert stored(store, victim.id)[:1] == ("pacs-01",)
    assert report_count(store, victim.id) == 1


def test_an_agents_own_collector_entry_is_not_stored(store: Store) -> None:
    agent = enrol(store, "ward-pc-01")
    fake = {"collector": {"host_id": {"reported": "sha256:" + "0" * 64}}}

    ingest(store, agent, report(A, "ward-pc-01", extra=fake))

    assert "collector" not in stored(store, A.id)[1]


# ----------------------------------------------------------------------------- the table
# Truth: two machines are proven different exactly when both have a machine-id and the two
# differ, and both have MACs and no MAC is common to both. Then the second goes apart under its
# next anchor. Otherwise the host stays with its first agent (refused), unless that agent is
# revoked, when the second takes it over.

_MACHINE_IDS = ("same", "other", "unknown")
_MAC_SETS = {
    "same": ["0c:c4:7a:00:00:01", "0c:c4:7a:00:00:02"],
    "overlap": ["0c:c4:7a:00:00:02", "0c:c4:7a:00:00:05"],
    "disjoint": ["0c:c4:7a:00:00:06"],
    "unknown": [],
}


def test_every_combination_of_evidence_follows_the_rule(store: Store) -> None:
    combos = list(itertools.product(_MACHINE_IDS, _MAC_SETS, (False, True)))
    outcomes = {}
    for n, (mid, macs, revoked) in enumerate(combos):
        # Each pair of machines is new to the store: its own serial and machine-ids.
        serial = f"QTFC{n:04d}T4Q9X"
        mine = f"a{n:031x}"
        theirs = {"same": mine, "other": f"b{n:031x}", "unknown": None}[mid]
        first, second = enrol(store, f"first-{n}"), enrol(store, f"second-{n}")
        one = machine(mine, _MAC_SETS["same"], serial=serial)
        two = machine(theirs, _MAC_SETS[macs], serial=serial)
        ingest(store, first, report(one, f"first-{n}"))
        if revoked:
            store.revoke_agent(f"first-{n}", NOW)
        try:
            outcomes[mid, macs, revoked] = (
                "apart"
                if ingest(store, second, report(two, f"second-{n}")).host_id != one.id
                else "taken over"
            )
        except HostClaimed:
            outcomes[mid, macs, revoked] = "refused"

    def truth(mid: str, macs: str, revoked: bool) -> str:
        other = mid == "other"  # "same": one machine-id; "unknown": the second has none
        shared = set(_MAC_SETS["same"]) & set(_MAC_SETS[macs])
        disjoint = bool(_MAC_SETS[macs]) and not shared
        if other and disjoint:
            return "apart"
        return "taken over" if revoked else "refused"

    assert outcomes == {combo: truth(*combo) for combo in combos}
    assert sorted(set(outcomes.values())) == ["apart", "refused", "taken over"]


# ----------------------------------------------------------------------------- reading evidence


def test_the_claim_of_a_report_follows_the_agents_anchors() -> None:
    inventory = {"hardware": {"identity": jsonable(A)}}

    claim = claim_of(A.id, inventory)

    assert claim.chain == (
        (A.id, "dmi-serial"),
        *((anchor.id, anchor.source) for anchor in A.fallbacks),
    )
    assert claim.evidence == Evidence(A.machine, frozenset(A.macs))


@pytest.mark.parametrize(
    "change",
    [
        {"id": "sha256:" + "1" * 64},  # evidence about another host id than the report's
        {"machine": "not a digest"},
        {"macs": "0c:c4:7a:00:00:01"},
        {"macs": ["not a mac"]},
        {"macs": ["0c:c4:7a:00:00:01"] * 300},
        {"source": "bios-date"},
    ],
)
def test_malformed_evidence_proves_nothing(change: dict[str, Any]) -> None:
    identity = {**jsonable(A), **change}

    claim = claim_of(A.id, {"hardware": {"identity": identity}})

    assert (claim.chain, claim.evidence) == (((A.id, None),), None)


@pytest.mark.parametrize(
    "fallbacks",
    [
        "sha256:" + "1" * 64,
        [{"source": "mac", "id": "sha256:" + "1" * 64}] * 4,
        [{"source": "mac", "id": "not a digest"}],
        [{"source": "dmi-serial"}],
    ],
)
def test_malformed_fallbacks_leave_only_the_reported_id(fallbacks: object) -> None:
    identity = {**jsonable(A), "fallbacks": fallbacks}

    claim = claim_of(A.id, {"hardware": {"identity": identity}})

    assert claim.chain == ((A.id, "dmi-serial"),)


def test_an_id_from_the_machine_id_never_moves() -> None:
    plain = machine(MACHINE_A, ["0c:c4:7a:00:00:01"], serial=None)

    claim = claim_of(plain.id, {"hardware": {"identity": jsonable(plain)}})

    assert claim.chain == ((plain.id, "machine-id"),)


@pytest.mark.parametrize(
    ("one", "two", "other"),
    [
        (("m1", {"a"}), ("m2", {"b"}), True),
        (("m1", {"a"}), ("m1", {"b"}), False),  # the same install with a new NIC
        (("m1", {"a"}), ("m2", {"a", "b"}), False),  # a reinstall keeping a NIC
        ((None, {"a"}), ("m2", {"b"}), False),
        (("m1", set()), ("m2", {"b"}), False),
    ],
)
def test_evidence_proves_another_machine_only_when_everything_differs(
    one: tuple[str | None, set[str]], two: tuple[str | None, set[str]], other: bool
) -> None:
    first, second = (Evidence(m, frozenset(macs)) for m, macs in (one, two))

    assert first.other_machine(second) is other
    assert second.other_machine(first) is other


def test_stored_evidence_absent_from_an_older_report_is_none() -> None:
    assert evidence_of(None) is None
    assert evidence_of({"id": A.id, "source": "dmi-serial"}) is None
