"""Precision and recall per role of medsec's device role classifier (`checks.device.roles`) over
the labelled recordings of real devices (../shared/data/snmp-devices, `labels.csv`), beside a
BASELINE computed in the same run: the OS-family approach of LibreNMS and Observium, which type
a device by the operating system its sysObjectID's enterprise number names (Huawei VRP, H3C
Comware, Hillstone StoneOS, Juniper Junos → "network"; Fortinet → "firewall"; net-snmp Linux →
"server", ...), with no product line below it. The baseline's types are mapped to medsec's roles
where one exists (firewall, wireless, server, power, printer, storage); "network" names neither
router nor switch, so it counts as wrong for both (a second accuracy figure forgives that), and
appliance/proxy/load-balancer/environment types count as `other`.

Also the time classify takes per device (the rules loaded once beforehand) and the load time.

Run: `.venv/bin/python benchmarks/snmp_roles.py [--data DIR] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks.device.roles import (  # noqa: E402
    classify,
    default_rules,
    enterprise_number,
    normalise_oid,
)
from checks.facts.devices import ROLES  # noqa: E402
from tests.checks.snmprec import SHARED_RECORDINGS, Identity, identity, read_snmprec  # noqa: E402

BASELINE_OS_TYPE = {
    # enterprise: the type LibreNMS/Observium give the OS family behind the number
    9: "network",  # Cisco IOS/IOS-XE/NX-OS
    15497: "proxy",  # Cisco AsyncOS (IronPort)
    2011: "network",  # Huawei VRP
    25506: "network",  # H3C/HPE Comware
    28557: "network",  # Hillstone StoneOS
    2636: "network",  # Juniper Junos
    3224: "firewall",  # Juniper ScreenOS
    4881: "network",  # Ruijie
    3902: "network",  # ZTE ZXR10
    12356: "firewall",  # Fortinet
    25461: "firewall",  # Palo Alto PAN-OS
    2620: "firewall",  # Check Point
    8741: "firewall",  # SonicWall
    21067: "appliance",  # Cyberoam UTM
    2604: "firewall",  # Sophos
    3097: "firewall",  # WatchGuard
    3375: "loadbalancer",  # F5 BIG-IP
    10704: "firewall",  # Barracuda
    9694: "network",  # Arbor
    8072: "server",  # net-snmp: Linux
    12325: "server",  # bsnmpd: FreeBSD
    10002: "wireless",  # Ubiquiti airOS
    41112: "wireless",  # Ubiquiti UniFi
    4413: "network",  # Broadcom FASTPATH (EdgeSwitch)
    25053: "wireless",  # Ruckus
    44641: "network",  # VyOS
    318: "power",  # APC
    2254: "power",  # Delta
    476: "power",  # Liebert
    1718: "power",  # Server Technology
    13742: "power",  # Raritan
    11: "printer",  # HP (JetDirect)
    367: "printer",  # Ricoh
    37447: "storage",  # Nimble
    6876: "server",  # VMware ESXi
}
_TYPE_TO_ROLE = {
    "firewall": "firewall",
    "wireless": "wireless",
    "server": "server",
    "power": "power",
    "printer": "printer",
    "storage": "storage",
    "network": "network",
    "appliance": "other",
    "proxy": "other",
    "loadbalancer": "other",
    "environment": "other",
}


def baseline(device: Identity) -> str:
    number = enterprise_number(normalise_oid(device.sys_object_id))
    return _TYPE_TO_ROLE[BASELINE_OS_TYPE.get(number, "appliance") if number else "appliance"]


def medsec(device: Identity) -> str:
    return classify(
        device.sys_object_id,
        device.sys_descr,
        sys_name=device.sys_name,
        models=device.models,
        sys_services=device.sys_services,
    ).role


def _decided_by(device: Identity) -> str:
    """Which kind of signal decided: a product-line OID, a product or class named in the
    text, the enterprise's default, or nothing known."""
    found = classify(device.sys_object_id, device.sys_descr, models=device.models)
    if found.rule is None:
        return "enterprise default" if found.confidence > 0.1 else "nothing known"
    signal = found.signals[1]
    return "product-line OID" if signal.startswith("sysObjectID") else "name in sysDescr/entity"


def scores(labels: Sequence[str], predicted: Sequence[str], role: str) -> tuple[str, str]:
    hits = sum(1 for want, got in zip(labels, predicted, strict=True) if want == got == role)
    said, there = predicted.count(role), labels.count(role)
    precision = f"{hits / said:.2f}" if said else "—"
    recall = f"{hits / there:.2f}" if there else "—"
    return precision, recall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_RECORDINGS)
    parser.add_argument("--repeat", type=int, default=200, help="timing passes over the set")
    args = parser.parse_args()
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv in {args.data}", file=sys.stderr)
        return 2
    rows = list(csv.DictReader((args.data / "labels.csv").open(encoding="utf-8")))
    devices = [identity(read_snmprec(args.data / f"{row['name']}.snmprec")) for row in rows]
    labels = [row["role"] for row in rows]

    started = time.perf_counter()
    default_rules.cache_clear()
    default_rules()
    load_ms = (time.perf_counter() - started) * 1000
    ours = [medsec(d) for d in devices]
    theirs = [baseline(d) for d in devices]

    print(f"{len(rows)} labelled recordings from {args.data}")
    header = ("role", "n", "medsec P", "medsec R", "baseline P", "baseline R")
    print("{:<10}{:>4}  {:>9}{:>9}  {:>11}{:>11}".format(*header))
    for role in ROLES:
        n = labels.count(role)
        if not n and role not in ours and role not in theirs:
            continue
        ours_p, ours_r = scores(labels, ours, role)
        base_p, base_r = scores(labels, theirs, role)
        print(f"{role:<10}{n:>4}  {ours_p:>9}{ours_r:>9}  {base_p:>11}{base_r:>11}")
    right = sum(1 for want, got in zip(labels, ours, strict=True) if want == got)
    base_right = sum(1 for want, got in zip(labels, theirs, strict=True) if want == got)
    forgiven = sum(
        1
        for want, got in zip(labels, theirs, strict=True)
        if want == got or (got == "network" and want in ("router", "switch"))
    )
    total = len(rows)
    print(
        f"accuracy: medsec {right}/{total}, baseline {base_right}/{total} "
        f"({forgiven}/{total} counting 'network' right for routers and switches)"
    )
    for name, want, got, base in zip((r["name"] for r in rows), labels, ours, theirs, strict=True):
        if want != got or want != base:
            print(f"  {name}: labelled {want}; medsec {got}; baseline {base}")

    decided = Counter(_decided_by(d) for d in devices)
    print("decided by: " + ", ".join(f"{what} {n}" for what, n in decided.most_common()))

    per_pass = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        for device in devices:
            medsec(device)
        per_pass.append((time.perf_counter() - started) / len(devices))
    print(
        f"classify: median {statistics.median(per_pass) * 1e6:.1f} µs per device, "
        f"best {min(per_pass) * 1e6:.1f} µs ({args.repeat} passes over {len(devices)}); "
        f"rules loaded once in {load_ms:.1f} ms ({len(default_rules().rules)} rules, "
        f"{len(default_rules().vendors)} enterprises)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
