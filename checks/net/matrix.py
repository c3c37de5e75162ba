"""Reading the reachability matrix: zone pairs with their cells (and the ports on which nothing
answered), whether a pair was measured completely, which ports and how many probes it took,
which hosts are live, how many hops an answer crossed, and which answers came from a device in
between rather than from the hosts. Shared by the network checks; pure functions of `NetFacts`.

A router that rejects instead of dropping answers in the hosts' place: a reset (or, for a connect
scan, a refused connection) looks like a closed port. Such answers are told from the hosts' own
by what no host can send: an answer from an address no host can hold (the network or broadcast
address of the zone's CIDR), from nearly every address of the zone alike, or from fewer hops than
the hosts' own SYN-ACKs. Every answer alike (same protocol and reason, same hop count where nmap
gave one) is then the device's: it is re-stated as nmap states an ICMP error from another address,
`filtered`, with the reason `device-<reason>`, so no check reads it as a host answering.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from checks.facts.network import (
    REACHABLE_STATES,
    MatrixCell,
    NetFacts,
    PortObservation,
    SilentPorts,
    VantageRun,
    ZoneFacts,
)
from checks.model import Msg, require

_INITIAL_TTLS = (32, 64, 128, 255)
DEVICE_PREFIX = "device-"
"""Reason prefix of an answer re-stated as a device's (`device-reset`, `device-conn-refused`)."""
CLOSED_ANSWERS = frozenset({"reset", "conn-refused", "port-unreach"})
"""The reasons of a closed port: what a rejecting device sends in a host's place."""
ALIKE_SHARE = 0.9
"""A cell whose closed answers come from at least this share of the addresses probed..."""
ALIKE_MIN = 8
"""...when at least this many were probed, is a device answering for the whole zone."""
MAX_LINES = 10
"""Evidence lists are cut after this many lines (the count says how many there were)."""


def matrix(facts: NetFacts) -> tuple[MatrixCell, ...]:
    cells: tuple[MatrixCell, ...] = require(facts.matrix, tuple)
    return cells


@dataclass(frozen=True)
class Pair:
    """One ordered zone pair as measured from the source zone's vantage."""

    source: ZoneFacts
    target: ZoneFacts
    run: VantageRun | None
    cells: tuple[MatrixCell, ...]
    silent_ports: tuple[SilentPorts, ...] = ()
    """The ports outside the cells on which no address of the target answered."""
    device: tuple[PortObservation, ...] = ()
    """Answers a device in between sent in the hosts' place (re-stated `filtered`, reason
    `device-<reason>`; the cells hold them too)."""
    witnesses: tuple[Msg, ...] = ()
    """Why those answers are the device's: the answers no host could have sent."""
    signatures: tuple[tuple[str, str, int | None], ...] = ()
    """(proto, reason, hops) of the device's answers: an ACK probe's reset alike is its too."""

    def from_device(self, observation: PortObservation) -> bool:
        """Whether an answer (a closed port, or an ACK probe's `unfiltered` reset) is alike
        the device's answers on this pair."""
        if not self.signatures:
            return False
        if observation.state == "unfiltered":
            observation = replace(observation, state="closed")
        return _Matcher(self.signatures)(observation)

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"

    @property
    def measured(self) -> bool:
        return self.source.vantage is not None and self.run is not None

    @property
    def incomplete(self) -> Msg | None:
        """Why the pair was not measured completely; None when it was."""
        run = self.run
        source, target = self.source.name, self.target.name
        if self.source.vantage is None or run is None:
            return Msg(f"zone {source} has no vantage", f"区域 {source} 未配置探测点")
        if run.status in {"error", "cancelled"}:
            return Msg(
                f"the vantage in {source} failed: {run.message}",
                f"{source} 的探测点运行失败：{run.message}",
            )
        if run.status == "timeout":
            return Msg(
                f"the vantage in {source} ran out of time: {run.message}",
                f"{source} 的探测点运行超时：{run.message}",
            )
        unfinished = [h for h in run.unfinished_hosts if _in_zone(h, self.target)]
        if unfinished:
            shown = ", ".join(unfinished[:5])
            return Msg(
                f"{len(unfinished)} hosts of {target} were not finished (--host-timeout): {shown}",
                f"{target} 有 {len(unfinished)} 台主机未完成扫描（--host-timeout）：{shown}",
            )
        if not self.cells and not self.silent_ports:
            return Msg(
                f"no result from {source} toward {target}",
                f"没有从 {source} 到 {target} 的探测结果",
            )
        return None

    @property
    def unscanned(self) -> tuple[str, ...]:
        return self.run.unscanned if self.run is not None else ()

    def observations(self) -> Iterator[PortObservation]:
        for cell in self.cells:
            yield from cell.observations

    def reachable(self) -> list[PortObservation]:
        return [o for o in self.observations() if o.state in REACHABLE_STATES]

    @property
    def probes(self) -> int:
        return sum(c.probed for c in self.cells) + sum(s.probes for s in self.silent_ports)

    @property
    def silent(self) -> int:
        return sum(c.silent for c in self.cells) + sum(s.probes for s in self.silent_ports)

    @property
    def ports_probed(self) -> int:
        """How many ports were probed on this pair (cells and silent ports)."""
        return len({(c.proto, c.port) for c in self.cells}) + sum(
            s.count for s in self.silent_ports
        )

    def port_text(self) -> str:
        """The ports probed, per protocol in nmap's list syntax: `tcp/1,3-4,...; udp/53,161`."""
        numbers: dict[str, set[int]] = {}
        for cell in self.cells:
            numbers.setdefault(cell.proto, set()).add(cell.port)
        for silent in self.silent_ports:
            numbers.setdefault(silent.proto, set()).update(_numbers(silent.ports))
        return "; ".join(
            f"{proto}/{_ranges(numbers[proto])}" for proto in ("tcp", "udp") if proto in numbers
        )


def _numbers(ports: str) -> Iterator[int]:
    for part in ports.split(","):
        low, _, high = part.partition("-")
        if low.strip():
            yield from range(int(low), int(high or low) + 1)


def _ranges(numbers: set[int]) -> str:
    spans: list[list[int]] = []
    for number in sorted(numbers):
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _in_zone(address: str, zone: ZoneFacts) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in zone.cidrs)


_READ: list[tuple[NetFacts, tuple[Pair, ...]]] = []
"""The last facts read into pairs: each check reads the same facts again, and telling a device's
answers apart walks every answer of a scan (hundreds of thousands behind a rejecting router).
Keyed by identity: facts are frozen, and the entry holds them, so the identity is not reused."""


def pairs(facts: NetFacts) -> list[Pair]:
    """Every ordered pair of distinct zones, in zones-file order."""
    for known, found in _READ:
        if known is facts:
            return list(found)
    found = tuple(_read_pairs(facts))
    _READ[:] = [(facts, found)]
    return list(found)


def _read_pairs(facts: NetFacts) -> list[Pair]:
    by_pair: dict[tuple[str, str], list[MatrixCell]] = {}
    for cell in matrix(facts):
        by_pair.setdefault((cell.source, cell.target), []).append(cell)
    silent: dict[tuple[str, str], list[SilentPorts]] = {}
    for record in facts.silent_ports:
        silent.setdefault((record.source, record.target), []).append(record)
    found = []
    hostless = _hostless(facts.zones, by_pair)
    for source in facts.zones:
        for target in facts.zones:
            if source.name == target.name:
                continue
            key = (source.name, target.name)
            cells, device, found_by = device_answers(tuple(by_pair.get(key, ())), target, hostless)
            found.append(
                Pair(
                    source=source,
                    target=target,
                    run=facts.run(source.name),
                    cells=cells,
                    silent_ports=tuple(silent.get(key, ())),
                    device=device,
                    witnesses=tuple(why for _, why in found_by),
                    signatures=tuple(signature for signature, _ in found_by),
                )
            )
    return found


def _no_host(zone: ZoneFacts) -> set[str]:
    """Addresses of the zone no host can hold: each CIDR's network and broadcast address."""
    found: set[str] = set()
    for cidr in zone.cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        if network.version == 4 and network.prefixlen <= 30:
            found |= {str(network.network_address), str(network.broadcast_address)}
    return found


_Signature = tuple[str, str, int | None]
"""(proto, reason, hops or None where nmap gave no TTL) of a closed answer."""


def _signature(observation: PortObservation) -> _Signature:
    return observation.proto, observation.reason, hops(observation.reason_ttl)


class _Matcher:
    """Whether a closed answer is alike one of the witnesses: same protocol and reason, and the
    same hop count where both have one (a witness without one matches every hop count)."""

    def __init__(self, signatures: Iterable[_Signature]) -> None:
        self._hops: dict[tuple[str, str], set[int | None]] = {}
        for proto, reason, count in signatures:
            self._hops.setdefault((proto, reason), set()).add(count)

    def __call__(self, observation: PortObservation) -> bool:
        if not _is_closed(observation):
            return False
        counts = self._hops.get((observation.proto, observation.reason))
        if counts is None:
            return False
        if None in counts or not observation.reason_ttl:
            return True
        return hops(observation.reason_ttl) in counts


def _hostless(
    zones: Iterable[ZoneFacts], by_pair: dict[tuple[str, str], list[MatrixCell]]
) -> dict[str, str]:
    """Addresses shown to hold no host from some vantage: every answer they gave anywhere was a
    device's (address -> the pair that showed it). From another vantage, where nothing else
    tells the device, their answers are the device's too."""
    zone = {z.name: z for z in zones}
    device: dict[str, str] = {}
    host: set[str] = set()
    for (source, target), cells in sorted(by_pair.items()):
        if target not in zone:
            continue
        witnesses = _witnesses(tuple(cells), zone[target], {})
        matcher = _Matcher(signature for signature, _ in witnesses)
        for cell in cells:
            for seen in cell.observations:
                if seen.state == "open":
                    # A SYN-ACK: no rejecting device sends one.
                    host.add(seen.address)
                elif witnesses and matcher(seen):
                    device.setdefault(seen.address, f"{source}->{target}")
                elif witnesses and seen.state in REACHABLE_STATES:
                    # A closed port on a pair where the device's answers were told apart.
                    host.add(seen.address)
    return {a: name for a, name in device.items() if a not in host}


def _witnesses(
    cells: tuple[MatrixCell, ...], zone: ZoneFacts, hostless: dict[str, str]
) -> list[tuple[_Signature, Msg]]:
    """The closed answers no host could have sent, with why."""
    found: list[tuple[_Signature, Msg]] = []
    closed = [o for c in cells for o in c.observations if _is_closed(o)]
    empty = _no_host(zone)
    for observation in closed:
        if observation.address in empty:
            found.append(
                (
                    _signature(observation),
                    Msg(
                        f"{observation.address}, an address no host can hold (network or "
                        f"broadcast address), answers {observation.reason} on {observation.spec}",
                        f"{observation.address} 为网络地址或广播地址，不可能有主机，却对 "
                        f"{observation.spec} 应答 {observation.reason}",
                    ),
                )
            )
            break
    for cell in cells:
        answering = [o for o in cell.observations if _is_closed(o)]
        if cell.probed >= ALIKE_MIN and len(answering) >= ALIKE_SHARE * cell.probed:
            first = answering[0]
            found.append(
                (
                    _signature(first),
                    Msg(
                        f"{len(answering)} of the {cell.probed} addresses probed answer "
                        f"{first.reason} on {cell.spec} alike",
                        f"探测的 {cell.probed} 个地址中有 {len(answering)} 个对 {cell.spec} "
                        f"同样应答 {first.reason}",
                    ),
                )
            )
            break
    nearest = min(
        (h for c in cells for o in c.open if (h := hops(o.reason_ttl)) is not None), default=None
    )
    if nearest is not None:
        for observation in closed:
            signature = _signature(observation)
            if signature[2] is not None and signature[2] < nearest:
                found.append(
                    (
                        signature,
                        Msg(
                            f"{observation.address} answers {observation.reason} on "
                            f"{observation.spec} from {signature[2]} hops, nearer than the hosts' "
                            f"own SYN-ACKs ({nearest} hops)",
                            f"{observation.address} 对 {observation.spec} 的 "
                            f"{observation.reason} 应答来自 {signature[2]} 跳，近于主机自身的 "
                            f"SYN-ACK（{nearest} 跳）",
                        ),
                    )
                )
                break
    for observation in closed:
        if observation.address in hostless:
            found.append(
                (
                    _signature(observation),
                    Msg(
                        f"{observation.address}, which holds no host (every answer it gave on "
                        f"{hostless[observation.address]} was a device's), answers "
                        f"{observation.reason} on {observation.spec}",
                        f"{observation.address} 上没有主机（它在 {hostless[observation.address]} "
                        f"上的应答均来自设备），却对 {observation.spec} 应答 {observation.reason}",
                    ),
                )
            )
            break
    return found


def _is_closed(observation: PortObservation) -> bool:
    return observation.state == "closed" and observation.reason in CLOSED_ANSWERS


def device_answers(
    cells: tuple[MatrixCell, ...], zone: ZoneFacts, hostless: dict[str, str]
) -> tuple[tuple[MatrixCell, ...], tuple[PortObservation, ...], list[tuple[_Signature, Msg]]]:
    """The cells with the device's answers re-stated, those answers, and the witnesses: each
    answer's signature and why no host sent it (`hostless`: addresses known to hold no host,
    with the pair that showed it)."""
    witnesses = _witnesses(cells, zone, hostless)
    if not witnesses:
        return cells, (), []
    matcher = _Matcher(signature for signature, _ in witnesses)
    device: list[PortObservation] = []
    restated: list[MatrixCell] = []
    for cell in cells:
        observations = []
        for seen in cell.observations:
            kept = seen
            if matcher(seen):
                kept = _restated(seen)
                device.append(kept)
            observations.append(kept)
        restated.append(replace(cell, observations=tuple(observations)))
    return tuple(restated), tuple(device), witnesses


def _restated(o: PortObservation) -> PortObservation:
    """A device's answer as nmap states one from another address than the one probed."""
    return PortObservation(
        o.source, o.target, o.address, o.proto, o.port, "filtered", DEVICE_PREFIX + o.reason,
        o.reason_ttl, o.vantage, o.scan,
    )  # fmt: skip


def pair(facts: NetFacts, source: str, target: str) -> Pair:
    for candidate in pairs(facts):
        if candidate.source.name == source and candidate.target.name == target:
            return candidate
    raise KeyError(f"{source}->{target}")


def live_hosts(facts: NetFacts) -> dict[str, set[str]]:
    """Addresses that answered (open or closed) from any vantage: address -> source zones.
    A device's answers in a host's place do not make the address live."""
    live: dict[str, set[str]] = {}
    for measured in pairs(facts):
        for observation in measured.reachable():
            live.setdefault(observation.address, set()).add(measured.source.name)
    return live


def hops(ttl: int) -> int | None:
    """Hops an answer crossed, from its TTL and the usual initial TTLs (64, 128, 255, 32)."""
    if ttl <= 0:
        return None
    initial = next((i for i in _INITIAL_TTLS if ttl <= i), 255)
    return initial - ttl


def lines(observations: Iterable[PortObservation]) -> list[str]:
    return [o.line() for o in observations]


def cut(items: list[str]) -> list[str]:
    if len(items) <= MAX_LINES:
        return items
    return [*items[:MAX_LINES], f"... and {len(items) - MAX_LINES} more"]
