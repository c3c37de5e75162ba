"""Which zones a host or a network object is in, from the zones files the collector knows
(`scans.zones` in its settings): a host by its addresses, a zone pair by its two ends, a web app
or critical system by its declared zone, a TLS service or a network device by its address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.scan.zones import Zones


@dataclass(frozen=True)
class ZoneMap:
    files: Iterable[Zones]
    names: frozenset[str] = field(init=False)
    _networks: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = field(
        init=False
    )
    _declared: dict[str, frozenset[str]] = field(init=False)

    def __post_init__(self) -> None:
        files = tuple(self.files)
        networks = tuple(
            (zone.name, network) for z in files for zone in z.zones for network in zone.networks
        )
        declared: dict[str, set[str]] = {}
        for z in files:
            for app in z.web_apps:
                declared.setdefault(app.name, set()).add(app.zone)
            for system in z.critical_systems:
                declared.setdefault(system.name, set()).add(system.zone)
        object.__setattr__(self, "files", files)
        object.__setattr__(self, "names", frozenset(name for name, _ in networks))
        object.__setattr__(self, "_networks", networks)
        object.__setattr__(self, "_declared", {k: frozenset(v) for k, v in declared.items()})

    def of_addresses(self, addresses: Iterable[str]) -> frozenset[str]:
        """The zones any of these addresses falls in."""
        found: set[str] = set()
        for text in addresses:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                continue
            found.update(name for name, network in self._networks if address in network)
        return frozenset(found)

    def of_object(self, kind: str, name: str) -> frozenset[str]:
        """The zones a network object belongs to (empty when it names none)."""
        if kind == "zone_pair":
            for separator in ("<->", "->"):
                if separator in name:
                    return frozenset(name.split(separator, 1))
            return frozenset()
        if kind in ("web_app", "critical_system"):
            return self._declared.get(name, frozenset())
        if kind in ("service", "device"):
            host = name.rsplit(":", 1)[0].strip("[]")
            return self.of_addresses([host])
        return frozenset()
