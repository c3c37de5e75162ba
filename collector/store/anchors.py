"""Which stored host a report belongs to when the DMI value its host id comes from is also
reported by another machine.

An agent derives its host id from the first usable anchor — the DMI system serial, else the DMI
UUID, else /etc/machine-id, else the physical MACs — and skips DMI values it recognises as
placeholders. A filler it does not recognise gives two machines one id. Such a report carries the
evidence to tell them apart (`HostIdentity` in its inventory): the ids its other anchors give, in
order, a digest of its machine-id and its physical MACs.

The decision, made under the host locks of the ingest transaction (`Ingest._host_claims`):
a host id belongs to the agent that reported it first. When another agent reports it, and the id
comes from a DMI anchor, and both reports carry identity evidence that proves two machines — both
machine-ids known and different, and both MAC sets known and disjoint — the DMI value is a
placeholder: the report is stored under the id its next anchor gives (the id the agent itself
derives once it recognises that filler), and so on down its anchors. A reinstall (new machine-id,
same MACs), a NIC swap (same machine-id), a report without evidence, and an id from machine-id
or MACs keep the old rule: the host stays its first agent's (`HostClaimed` for the other) until
that agent is revoked. A revoked agent's host is not taken over by a *different* machine either:
that one goes to its next anchor too, so two machines' evidence never mixes under one id.

Agentless collection (`collector/agentless.py`) stores under the collector's own agent
`medsec-agentless`, which never outranks an agent on the host itself: where an enrolled agent
holds the host id, the agentless report is refused (`Route.held_by` names that agent); where the
agentless collector holds it, the first report of a real agent takes the host over, as from a
revoked agent. A real agent's evidence is never overwritten by the weaker source.

The flag: the stored host's inventory carries a `collector` entry naming the id reported, the id
stored under and the anchors found shared (`collector` is reserved: an agent's own key of that
name is dropped), the ingest outcome names the stored id, and the collector logs a warning. The
first machine's host row is not marked: that would need a column of its own.

Evidence only ever moves a report to an id its own agent derived and could have reported
directly, so a forged report gains nothing by it; ids, MACs and their counts are bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DMI_SOURCES = frozenset(("dmi-serial", "dmi-uuid"))
SOURCES = frozenset((*DMI_SOURCES, "machine-id", "mac"))
YIELDING_AGENTS = frozenset(("medsec-agentless",))
"""The collector's own agents whose hold on a host gives way to any other agent's first report
(agentless SSH collection: evidence gathered from outside, never over an agent's)."""
RESERVED_KEY = "collector"
"""The inventory key the collector writes its note under; an agent's own is dropped."""

_MAX_FALLBACKS = 3
_MAX_MACS = 256
_ID = re.compile(r"sha256:[0-9a-f]{64}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5,19}")


@dataclass(frozen=True)
class Evidence:
    """What tells one machine from another when their DMI values agree."""

    machine: str | None
    """Digest of the machine-id (the id that anchor gives), or None when the host has none."""
    macs: frozenset[str]
    """Physical MACs, lower case."""

    def other_machine(self, other: Evidence) -> bool:
        """Proven to be another machine: both machine-ids known and different, and both MAC sets
        known and disjoint. Anything less (one unknown, a MAC in common) proves nothing."""
        return (
            self.machine is not None
            and other.machine is not None
            and self.machine != other.machine
            and bool(self.macs)
            and bool(other.macs)
            and self.macs.isdisjoint(other.macs)
        )


@dataclass(frozen=True)
class Claim:
    """The ids a report may be stored under, in order, and its evidence."""

    chain: tuple[tuple[str, str | None], ...]
    """(host id, anchor source): the reported id first, then its fallbacks. Only the reported
    id when the report carries no usable identity or its id is not DMI-derived."""
    evidence: Evidence | None

    @property
    def reported(self) -> str:
        return self.chain[0][0]


def evidence_of(identity: object) -> Evidence | None:
    """The evidence in an inventory's `hardware.identity`, or None when it is absent or
    malformed (then nothing is proven and the old rule applies)."""
    if not isinstance(identity, Mapping):
        return None
    machine = identity.get("machine")
    macs = identity.get("macs")
    if machine is not None and not (isinstance(machine, str) and _ID.fullmatch(machine)):
        return None
    if not isinstance(macs, list) or len(macs) > _MAX_MACS:
        return None
    if not all(isinstance(mac, str) and _MAC.fullmatch(mac.lower()) for mac in macs):
        return None
    return Evidence(machine, frozenset(mac.lower() for mac in macs))


def claim_of(host_id: str, inventory: Mapping[str, Any]) -> Claim:
    """The claim a report makes: its host id, and when that id comes from a DMI anchor and the
    inventory's identity is well formed and names that same id, the fallbacks and evidence."""
    alone = Claim(((host_id, None),), None)
    hardware = inventory.get("hardware")
    identity = hardware.get("identity") if isinstance(hardware, Mapping) else None
    if not isinstance(identity, Mapping) or identity.get("id") != host_id:
        return alone
    source = identity.get("source")
    evidence = evidence_of(identity)
    if source not in SOURCES or evidence is None:
        return alone
    if source not in DMI_SOURCES:  # only a DMI value can be a filler two machines share
        return Claim(((host_id, source),), evidence)
    fallbacks = identity.get("fallbacks")
    if not isinstance(fallbacks, list) or len(fallbacks) > _MAX_FALLBACKS:
        return Claim(((host_id, source),), evidence)
    chain: list[tuple[str, str | None]] = [(host_id, source)]
    for anchor in fallbacks:
        if not (
            isinstance(anchor, Mapping)
            and anchor.get("source") in SOURCES
            and isinstance(anchor.get("id"), str)
            and _ID.fullmatch(anchor["id"])
            and anchor["id"] not in {known for known, _ in chain}
        ):
            return Claim(((host_id, source),), evidence)
        chain.append((anchor["id"], anchor["source"]))
    return Claim(tuple(chain), evidence)


@dataclass
class Holder:
    """The agent a host id belongs to, as the batch sees it."""

    agent: int
    name: str
    revoked: bool
    evidence: Evidence | None = None
    """The identity evidence of its stored (or in-batch) report, when it was needed and given."""


@dataclass(frozen=True)
class Route:
    """Where a report goes: `host_id` None means refused (another agent holds the id)."""

    host_id: str | None
    shared: tuple[tuple[str, str, str], ...] = field(default=())
    """(host id, anchor source, holder's name) of each anchor skipped as shared."""
    held_by: str | None = None
    """When refused: the name of the agent holding the id (said only to the collector's own
    agents: an enrolled agent is not told other agents' names)."""


def contested(claim: Claim, agent: int, holders: Mapping[str, Holder]) -> list[str]:
    """The claim's DMI-derived ids another agent holds: their stored evidence decides."""
    if claim.evidence is None:
        return []
    return [
        host
        for host, source in claim.chain
        if source in DMI_SOURCES and host in holders and holders[host].agent != agent
    ]


def route(claim: Claim, agent: int, agent_name: str, holders: dict[str, Holder]) -> Route:
    """The first id of the claim the agent may store under (see the module docstring).
    A new or taken-over id is recorded in `holders`, so the batch's later reports see it."""
    mine = claim.evidence
    shared: list[tuple[str, str, str]] = []
    for position, (host, source) in enumerate(claim.chain):
        holder = holders.get(host)
        if holder is not None and holder.agent == agent:
            return Route(host, tuple(shared))
        if holder is None:
            holders[host] = Holder(agent, agent_name, revoked=False, evidence=mine)
            return Route(host, tuple(shared))
        if (
            source in DMI_SOURCES
            and mine is not None
            and holder.evidence is not None
            and mine.other_machine(holder.evidence)
        ):
            if position + 1 == len(claim.chain):
                # nowhere apart to go: never mix two machines under one id
                return Route(None, held_by=holder.name)
            shared.append((host, source, holder.name))
            continue
        if holder.revoked or yields(holder.name, agent_name):
            # the same machine (or one not proven other) takes the host over
            holders[host] = Holder(agent, agent_name, revoked=False, evidence=mine)
            return Route(host, tuple(shared))
        return Route(None, held_by=holder.name)
    return Route(None)


def yields(holder_name: str, agent_name: str) -> bool:
    """Whether the holder's claim gives way to `agent_name`'s: agentless collection's, to any
    agent that is not itself one of the collector's yielding agents."""
    return holder_name in YIELDING_AGENTS and agent_name not in YIELDING_AGENTS


def note(reported: str, stored_as: str, shared: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The `collector` entry of a host stored under another id than the one reported.
    `shared`: (host id, anchor source, agent holding it) of each anchor skipped."""
    return {
        "host_id": {
            "reported": reported,
            "stored_as": stored_as,
            "shared_anchors": [
                {"host_id": host, "source": source, "held_by": agent}
                for host, source, agent in shared
            ],
            "reason": (
                "another machine (other machine-id, no MAC in common) reports the same DMI "
                "value: it is a placeholder, so this host is kept apart under its next anchor"
            ),
        }
    }
