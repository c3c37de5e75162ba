"""Differential test: medsec's host firewall verdict against the kernel's, measured with packets.

A few hundred rulesets (tests/inventory/fwgen.py: nft of every IP family, hook and priority,
dormant tables, verdict maps, jumps, gotos and conditional returns; iptables on the nf_tables and
the legacy backend; ufw with every default, with and without IPv6, on both backends; DNAT and
REDIRECT publishing a port to a container namespace) are loaded by the real tools into server
namespaces. From a client namespace (and from the container, for the interface facing it) real
TCP SYNs and UDP datagrams go to a port that no rule names, over IPv4 and IPv6, and to the
published port.

The truth rule, computed from packets alone: a probe to the unnamed port that reaches a listener
(the TCP handshake completes; the UDP datagram is received) means the host accepts a new inbound
connection to a port no rule names on that interface, for that family and protocol; a probe to
the published port that reaches the container means the port is published and let through.
medsec must say `accept` for exactly those paths and published ports (`drop` for the others,
never `unknown`), and `host.firewall_default_deny` must fail exactly when some probe got through.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from checks.facts import HostFacts
from checks.facts.firewall import FirewallFacts
from checks.host.firewall import firewall_default_deny
from checks.model import Status
from checks.runner import run_check
from inventory.host.firewall import collect_firewall
from tests.inventory.fwgen import generate
from tests.inventory.fwlab import PUBLISHED, Case, Lab, LabError, NetnsRunner, Slot, tool

SEED = 20260611
COUNTS = {"nft": 170, "xt-nft": 45, "xt-legacy": 45, "mixed": 25}
BATCH = 64
WORKERS = 4
TOOLS = (
    "ip",
    "nft",
    "iptables-nft-restore",
    "iptables-legacy-restore",
    "ufw",
    "ipset",
    "unshare",
    "sysctl",
)

Key = tuple[str, str, str, str]


def _said(facts: FirewallFacts, key: Key) -> str:
    interface, family, protocol, what = key
    if what == "default":
        found = [
            p.verdict
            for p in facts.paths
            if (p.interface, p.family, p.protocol) == (interface, family, protocol)
        ]
        return found[0] if len(found) == 1 else f"{len(found)} paths"
    published = [
        p.verdict
        for p in facts.published
        if (p.interface, p.family, p.protocol, p.port) == (interface, family, protocol, PUBLISHED)
    ]
    return published[0] if published else "drop"


def _kind(case: Case) -> str:
    """The generator family a case comes from (nft, xt-nft, xt-legacy, mixed, ufw, dnat)."""
    if case.container:
        return "dnat"
    if case.name.startswith("ufw"):
        return "ufw-" + case.name.split("-")[1]
    return case.name.rsplit("-", 1)[0]


def _describe(case: Case) -> str:
    return "\n".join(" | ".join(step) for step in case.steps)


def _run_batch(
    lab: Lab, cases: Sequence[Case], pool: ThreadPoolExecutor
) -> list[tuple[Case, FirewallFacts | str, dict[Key, bool]]]:
    slots = lab.open_slots(cases)
    try:

        def load(pair: tuple[Slot, Case]) -> str | None:
            try:
                lab.load(*pair)
            except LabError as exc:
                return str(exc)
            return None

        failures = list(pool.map(load, zip(slots, cases, strict=True)))
        facts = list(pool.map(lambda s: collect_firewall(NetnsRunner(s.server)), slots))
        seen = lab.probe(slots)
    finally:
        lab.close_slots(slots)
    return [
        (case, failure if failure else found, seen[slot.index])
        for case, slot, found, failure in zip(cases, slots, facts, failures, strict=True)
    ]


@pytest.mark.root
def test_medsec_agrees_with_the_packets(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [t for t in TOOLS if tool(t) is None]
    if missing:
        pytest.skip(
            f"not installed: {', '.join(missing)} (Debian packages iproute2, nftables, "
            "iptables, ufw, ipset, util-linux, procps)"
        )
    cases = generate(SEED, COUNTS)
    started = time.monotonic()
    lab = Lab(tmp_path)
    results: list[tuple[Case, FirewallFacts | str, dict[Key, bool]]] = []
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            for start in range(0, len(cases), BATCH):
                results += _run_batch(lab, cases[start : start + BATCH], pool)
    finally:
        lab.close()
    disagreements: list[str] = []
    unloadable: list[str] = []
    probes = through = 0
    statuses = {Status.PASS: 0, Status.FAIL: 0}
    by_kind: dict[str, dict[Status, int]] = {}
    for case, facts, seen in results:
        if isinstance(facts, str):
            unloadable.append(f"{case.name}: {facts}")
            continue
        for key, reached in sorted(seen.items()):
            probes += 1
            through += reached
            said = _said(facts, key)
            if said != ("accept" if reached else "drop"):
                reason = next(
                    (
                        p.reason
                        for p in facts.paths
                        if (p.interface, p.family, p.protocol) == key[:3]
                    ),
                    "",
                )
                disagreements.append(
                    f"{case.name} {key}: packets {'got through' if reached else 'were stopped'}, "
                    f"medsec said {said} ({reason})\n{_describe(case)}"
                )
        (result,) = run_check(firewall_default_deny, HostFacts(firewall=facts))
        expected = Status.FAIL if any(seen.values()) else Status.PASS
        if result.status is not expected:
            disagreements.append(
                f"{case.name}: check said {result.status.value} ({result.message}), packets say "
                f"{expected.value}\n{_describe(case)}"
            )
        else:
            statuses[result.status] += 1
            counts = by_kind.setdefault(_kind(case), {Status.PASS: 0, Status.FAIL: 0})
            counts[result.status] += 1
    elapsed = time.monotonic() - started
    print(
        f"\nfirewall differential: {len(cases)} rulesets ({len(unloadable)} not loadable), "
        f"{probes} probed paths ({through} got through; {lab.packets} probe packets), "
        "check pass/fail "
        f"{statuses[Status.PASS]}/{statuses[Status.FAIL]}, {len(disagreements)} disagreements, "
        f"{elapsed:.1f} s; pass/fail by kind: "
        + ", ".join(f"{k} {v[Status.PASS]}/{v[Status.FAIL]}" for k, v in sorted(by_kind.items()))
    )
    assert len(unloadable) <= len(cases) // 20, "\n".join(unloadable[:10])
    assert not disagreements, f"{len(disagreements)} disagreements:\n\n" + "\n\n".join(
        disagreements[:8]
    )
    # Both verdicts must occur for every kind of ruleset, or the test could not tell a model
    # that always says one.
    assert all(min(v.values()) > 0 for v in by_kind.values()), by_kind
