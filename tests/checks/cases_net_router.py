"""Recorded network facts for a router that rejects instead of dropping (fault `router-reset`),
one that does not filter at all (`router-unfiltered`), and rejects lost to an ICMP rate limit:
what `net.border_firewall` and `net.internet_isolation` must say of each (same shape as
tests/checks/cases_net.py, whose clean lab these vary; tests/checks/all_cases.py gathers both).
"""

from __future__ import annotations

from dataclasses import replace

from checks.facts.network import MatrixCell, NetFacts
from checks.model import Status
from tests.checks.cases_net import (
    ADDRESSES,
    CLEAN,
    HOSTS,
    PORTS,
    ZONES,
    matrix,
    observation,
    with_open,
)


def rejecting(cells: tuple[MatrixCell, ...], ttl: int = 64) -> tuple[MatrixCell, ...]:
    """Fault router-reset: every TCP probe the router does not let through is answered by the
    router itself, for every address of the zone (its network address included, not its own
    address or the broadcast), with a reset at its TTL (`ttl`; 0: nmap folded the port), or a
    refused connection for a connect scan; UDP rejects are lost to the ICMP rate limit."""
    restated = []
    for cell in cells:
        if cell.proto != "tcp":
            restated.append(cell)
            continue
        cidr = next(z.cidrs[0] for z in ZONES if z.name == cell.target)
        base = cidr.rsplit(".", 1)[0]
        answered = {o.address for o in cell.observations}
        reason = "conn-refused" if cell.scan == "connect" else "reset"
        added = tuple(
            observation(cell.source, cell.target, address, cell.spec, "closed", reason, ttl)
            for number in (0, *range(2, ADDRESSES - 1))
            if (address := f"{base}.{number}") not in answered
        )
        restated.append(
            replace(
                cell,
                observations=cell.observations + added,
                silent=cell.silent - len(added),
            )
        )
    return tuple(restated)


ROUTER_RESET = replace(CLEAN, matrix=rejecting(matrix()))
ROUTER_RESET_FOLDED = replace(CLEAN, matrix=rejecting(matrix(), ttl=0))
# The same router rejecting, but only six addresses of his probed (its network address not
# among them): the device is told by its resets' TTL, nearer than the hosts' SYN-ACKs.
PROBED_SIX = {"2", "3", "4", "10", "20", "30"}
ROUTER_RESET_NEARER = replace(
    CLEAN,
    matrix=tuple(
        replace(
            c,
            observations=(kept := tuple(
                o for o in c.observations if o.address.split(".", 3)[3] in PROBED_SIX
            )),
            probed=6,
            silent=6 - len(kept),
        )
        if c.proto == "tcp" and c.target == "his"
        else c
        for c in rejecting(matrix())
    ),
)  # fmt: skip
# A routed path with no rule at all, behind an agent that says "firewall": hosts answer for
# themselves (TTL 63), the address with no host stays silent, ACKs pass.
UNFILTERED = replace(
    with_open(("internet", "his")),
    ack=tuple(
        replace(observation("internet", "his", address, spec, "unfiltered", "reset"), scan="ack")
        for address in HOSTS["his"]
        for spec in PORTS
        if spec.startswith("tcp")
    ),
)
# ACK probes: the rejecting router resets them as it resets SYNs (TTL 64); a stateless filter
# lets them reach the hosts (TTL 63).
ACK_RESET = replace(
    ROUTER_RESET,
    ack=(
        replace(
            observation("internet", "his", "198.18.2.10", "tcp/22", "unfiltered", "reset", 64),
            scan="ack",
        ),
    ),
)
ACK_STATELESS = replace(CLEAN, ack=(
    replace(observation("dmz", "his", "198.18.2.10", "tcp/5432", "unfiltered", "reset"),
            scan="ack"),
))  # fmt: skip
# The router rejects with ICMP, rate-limited: one reject seen, the rest of the probes silent.
RATE_LIMITED = replace(
    CLEAN,
    matrix=tuple(
        replace(
            c,
            observations=(
                observation("internet", "his", "198.18.2.10", "tcp/22", "filtered",
                            "admin-prohibited", 64),
            ),
            silent=c.silent - 1,
        )
        if (c.source, c.target, c.spec) == ("internet", "his", "tcp/22")
        else c
        for c in matrix()
    ),
)  # fmt: skip

CASES: dict[str, list[tuple[str, NetFacts, Status, str]]] = {
    "net.internet_isolation": [
        ("router-reset", ROUTER_RESET, Status.PASS,
         "his and internet do not reach each other: no host answer to 32,320 probes in"),
        ("router-unfiltered", UNFILTERED, Status.FAIL,
         "his is reachable from internet: internet -> his 198.18.2.10 tcp/22 closed (reset"),
    ],
    "net.border_firewall": [
        ("all answered, routed via a firewall", with_open(("office", "his")), Status.FAIL,
         "office->his: nothing filters: every probe to 2 live hosts answered (office -> his "
         "198.18.2.10 tcp/22 closed (conn-refused; connect scan from ssh:probe@198.18.3.5)), "
         "though the path is routed through SonicWALL"),
        ("router-unfiltered, agent says firewall", UNFILTERED, Status.FAIL,
         "internet->his: nothing filters: every probe to 2 live hosts answered"),
        ("router-unfiltered, ACKs pass", UNFILTERED, Status.FAIL,
         "a device's identity is no evidence that it filters; unsolicited ACKs pass"),
        ("router-reset", ROUTER_RESET, Status.PASS,
         "internet->his: filtered: 150 answers sent by a device in between, not by the hosts "
         "(198.18.2.0, an address no host can hold (network or broadcast address), answers "
         "reset on tcp/22"),
        ("router-reset, unprivileged vantage", ROUTER_RESET, Status.PASS,
         "office->his: filtered: 150 answers sent by a device in between"),
        ("router-reset, ports folded (no TTL)", ROUTER_RESET_FOLDED, Status.PASS,
         "dmz->his: filtered: 148 answers sent by a device in between"),
        ("router-reset, told by TTL", ROUTER_RESET_NEARER, Status.PASS,
         "dmz->his: filtered: 26 answers sent by a device in between, not by the hosts "
         "(198.18.2.2 answers reset on tcp/22 from 0 hops, nearer than the hosts' own "
         "SYN-ACKs (1 hops)"),
        ("router-reset, an address seen to hold no host", ROUTER_RESET_NEARER, Status.PASS,
         "internet->his: filtered: 30 answers sent by a device in between, not by the hosts "
         "(198.18.2.2, which holds no host (every answer it gave on dmz->his was a device's)"),
        ("router-reset, ACKs reset alike", ACK_RESET, Status.PASS,
         "unsolicited ACKs rejected by the device, alike its other answers (internet -> his "
         "198.18.2.10 tcp/22 unfiltered (reset ttl 64"),
        ("drops, but ACKs pass", ACK_STATELESS, Status.PASS,
         "dmz->his: filtered: 6 probes to live hosts dropped (dmz->his 198.18.2.10 tcp/22: no "
         "answer, while 198.18.2.10 answers other ports from dmz) (though unsolicited ACKs pass, "
         "so the filter is not stateful: dmz -> his 198.18.2.10 tcp/5432 unfiltered (reset ttl "
         "63; ack scan from netns:lab-dmz))"),
        ("rejects rate-limited", RATE_LIMITED, Status.PASS,
         "internet->his: filtered: 1 probes to live hosts dropped (internet->his 198.18.2.20: "
         "no host answer on any port, though it answers from dmz (a device on this path "
         "rejects, 1 rejects seen: the others were likely lost to its ICMP rate limit)"),
    ],
}  # fmt: skip
