"""The lab's network: one namespace per zone plus the router (`<prefix><zone>`, `<prefix>rtr`),
each zone's bridge in the router and a veth into the zone, addresses and the one route to the lab
range, and the router's nftables ruleset (the zones file's policy plus the faults switched on).
Nothing is added to the root namespace; deleting the namespaces takes every link with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from collector.lab import netns as ns
from collector.lab import topology as t
from collector.lab.configs import Allow, LabPaths, nft_ruleset
from collector.lab.host import in_netns, run, tool


def namespace_names(prefix: str) -> list[str]:
    """Every namespace of the lab with this prefix, the router's included."""
    return [prefix + suffix for suffix in t.NAMESPACE_SUFFIXES]


def existing(names: Iterable[str]) -> list[str]:
    return [name for name in names if os.path.exists(ns.netns_path(name))]


def build(prefix: str, ip: str) -> None:
    """Create the namespaces and wire them to the router (`ip` is iproute2's program)."""
    names = namespace_names(prefix)
    run([ip, "-batch", "-"], stdin="".join(f"netns add {name}\n" for name in names))
    for name in names:
        ns.write_sysctls(
            name,
            {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        )
    router = prefix + t.ROUTER
    ns.write_sysctls(router, {"net.ipv4.ip_forward": "1"})
    # Bridged frames must not cross the forward chain, or same-zone traffic meets its drop.
    ns.write_sysctls(
        router,
        {
            "net.bridge.bridge-nf-call-iptables": "0",
            "net.bridge.bridge-nf-call-ip6tables": "0",
            "net.bridge.bridge-nf-call-arptables": "0",
        },
        missing_ok=True,
    )
    lines = ["link set lo up"]
    for zone in t.ZONES:
        prefix_len = zone.cidr.split("/")[1]
        lines += [
            f"link add {zone.bridge} type bridge",
            f"addr add {zone.gateway}/{prefix_len} dev {zone.bridge}",
            f"link set {zone.bridge} up",
            f"link add v-{zone.name} type veth peer name eth0 netns {prefix + zone.name}",
            f"link set v-{zone.name} master {zone.bridge} up",
        ]
    run([ip, "-n", router, "-batch", "-"], stdin="\n".join(lines) + "\n")
    for zone in t.ZONES:
        prefix_len = zone.cidr.split("/")[1]
        lines = ["link set lo up"]
        lines += [f"addr add {address}/{prefix_len} dev eth0" for address in zone.addresses]
        lines += ["link set eth0 up", f"route add {t.LAB_RANGE} via {zone.gateway}"]
        run([ip, "-n", prefix + zone.name, "-batch", "-"], stdin="\n".join(lines) + "\n")


def load_ruleset(
    prefix: str, paths: LabPaths, policy: Iterable[Allow], faults: Iterable[str]
) -> None:
    """Replace the router's ruleset (kept as LAB/run/router.nft) in one nft transaction."""
    ruleset = paths.run / "router.nft"
    ruleset.write_text(nft_ruleset(policy, faults))
    run(in_netns(prefix + t.ROUTER, tool("nft"), "-f", str(ruleset)))


def delete(names: Sequence[str]) -> None:
    run([tool("ip"), "-batch", "-"], stdin="".join(f"netns del {n}\n" for n in names))
