"""Reading the reachability matrix: zone pairs with their cells (and the ports on which nothing
answered), whether a pair was measured completely, which ports and how many probes it took,
which hosts are live, and how many hops an answer crossed. Shared by the network checks; pure
functions of `NetFacts`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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


def pairs(facts: NetFacts) -> list[Pair]:
    """Every ordered pair of distinct zones, in zones-file order."""
    by_pair: dict[tuple[str, str], list[MatrixCell]] = {}
    for cell in matrix(facts):
        by_pair.setdefault((cell.source, cell.target), []).append(cell)
    silent: dict[tuple[str, str], list[SilentPorts]] = {}
    for record in facts.silent_ports:
        silent.setdefault((record.source, record.target), []).append(record)
    found = []
    for source in facts.zones:
        for target in facts.zones:
            if source.name == target.name:
                continue
            key = (source.name, target.name)
            found.append(
                Pair(
                    source=source,
                    target=target,
                    run=facts.run(source.name),
                    cells=tuple(by_pair.get(key, ())),
                    silent_ports=tuple(silent.get(key, ())),
                )
            )
    return found


def pair(facts: NetFacts, source: str, target: str) -> Pair:
    for candidate in pairs(facts):
        if candidate.source.name == source and candidate.target.name == target:
            return candidate
    raise KeyError(f"{source}->{target}")


def live_hosts(facts: NetFacts) -> dict[str, set[str]]:
    """Addresses that answered (open or closed) from any vantage: address -> source zones."""
    live: dict[str, set[str]] = {}
    for cell in matrix(facts):
        for observation in cell.reachable:
            live.setdefault(observation.address, set()).add(cell.source)
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
