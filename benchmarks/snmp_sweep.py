"""The SNMP inventory at a hospital's scale: 200 simulated devices (the 32 shared recordings of
real devices, copied under 200 community names into a temporary data folder and served by
snmpsim on loopback) asked by `collect_devices` for the system group and the ENTITY-MIB (and, as
it always does, interfaces, addresses and an SNMPv3 engine discovery), beside net-snmp asking
the same devices with the same concurrency in the same run: a pool of N workers, each running
`snmpget` (the system group) and `snmpbulkwalk` (entPhysicalEntry) per device, and a second
net-snmp figure walking everything medsec reads (ifDescr, ifName and the ipAddrTable columns
too). Rounds alternate the order; the best and the median of each are printed.

Targets on 2 cores (issue 16): at least 50 devices/s, and at least 1× net-snmp with the same
concurrency. Well-known communities are not tried here (`well_known_communities: false`): that
is an access test, not gathering, and against snmpsim every unknown community costs the
simulator a lookup and the client a timeout.

The simulated communities are the recordings' names, not secrets, so net-snmp gets them with
`-c`. The in-process figure leaves Python's start and medsec's imports out (about 0.5 s once).

Run: `.venv/bin/python benchmarks/snmp_sweep.py [--devices 200] [--concurrency 64]
[--rounds 3] [--data DIR]`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inventory.network.snmp import collect_devices  # noqa: E402
from inventory.network.targets import load_targets  # noqa: E402
from tests.inventory.snmp_agents import (  # noqa: E402
    RECORDINGS,
    Snmpsim,
    run_snmpsim,
    write_private,
)

Figures = tuple[float, float, int, float]
"""Seconds, the client's CPU seconds, devices failed, the simulator's CPU seconds."""

SNMPGET = shutil.which("snmpget") or "/usr/bin/snmpget"
SNMPBULKWALK = shutil.which("snmpbulkwalk") or "/usr/bin/snmpbulkwalk"
SYSTEM = [f"1.3.6.1.2.1.1.{n}.0" for n in range(1, 8)]
ENTITY = "1.3.6.1.2.1.47.1.1.1.1"
MORE = [
    "1.3.6.1.2.1.2.2.1.2",  # ifDescr
    "1.3.6.1.2.1.31.1.1.1.1",  # ifName
    "1.3.6.1.2.1.4.20.1.2",  # ipAdEntIfIndex
    "1.3.6.1.2.1.4.20.1.3",  # ipAdEntNetMask
]
TARGET_RATE = 50.0


def make_data(source: Path, folder: Path, devices: int) -> list[str]:
    """`devices` copies of the recordings, round robin, each under its own community."""
    recordings = sorted(source.glob("*.snmprec"))
    if not recordings:
        sys.exit(f"no .snmprec recording in {source}")
    folder.mkdir()
    names = []
    for number in range(devices):
        recording = recordings[number % len(recordings)]
        name = f"d{number:03d}-{recording.stem}"
        shutil.copyfile(recording, folder / f"{name}.snmprec")
        names.append(name)
    return names


def medsec(targets: Path, simulator: Snmpsim) -> Figures:
    """One collect_devices run (in this process: its imports are not timed)."""
    loaded = load_targets(targets)
    served = simulator.cpu_seconds()
    cpu = time.process_time()
    started = time.perf_counter()
    run = collect_devices(loaded)
    seconds = time.perf_counter() - started
    failed = sum(d.error is not None for d in run.devices)
    return seconds, time.process_time() - cpu, failed, simulator.cpu_seconds() - served


def net_snmp(
    simulator: Snmpsim, names: list[str], concurrency: int, walks: list[str], env: dict[str, str]
) -> Figures:
    """net-snmp over every device: a pool of `concurrency` workers, one device each at a time
    (`snmpget` of the system group, then one `snmpbulkwalk` per subtree)."""
    common = ["-v2c", "-On", "-t", "2", "-r", "1"]
    agent = f"127.0.0.1:{simulator.port}"

    def one(name: str) -> bool:
        ok = True
        argvs = [[SNMPGET, *common, "-c", name, agent, *SYSTEM]]
        argvs += [[SNMPBULKWALK, *common, "-Cr10", "-c", name, agent, oid] for oid in walks]
        for argv in argvs:
            done = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
            ok = ok and done.returncode == 0
        return ok

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = simulator.cpu_seconds()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, names))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, results.count(False), simulator.cpu_seconds() - served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=RECORDINGS)
    args = parser.parse_args()
    for tool in (SNMPGET, SNMPBULKWALK):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing (Debian package snmp)")

    with tempfile.TemporaryDirectory(prefix="medsec-snmp-bench-") as tmp:
        work = Path(tmp)
        names = make_data(args.data, work / "data", args.devices)
        env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(work / "net-snmp")}
        with run_snmpsim(work / "cache", work / "data") as simulator:
            text = (
                f"well_known_communities: false\nconcurrency: {args.concurrency}\n"
                "defaults: {timeout: 2, retries: 1}\ndevices:\n"
            )
            text += "".join(
                f"  - {{address: 127.0.0.1, port: {simulator.port}, community: '{n}'}}\n"
                for n in names
            )
            targets = write_private(work / "targets.yaml", text)
            net_snmp(simulator, names, args.concurrency, [], env)  # warm snmpsim's files up

            runs: dict[str, list[Figures]] = {}
            jobs: dict[str, Callable[[], Figures]] = {
                "medsec": lambda: medsec(targets, simulator),
                "net-snmp": lambda: net_snmp(simulator, names, args.concurrency, [ENTITY], env),
                "net-snmp-all": lambda: net_snmp(
                    simulator, names, args.concurrency, [ENTITY, *MORE], env
                ),
            }
            for number in range(args.rounds):
                order = list(jobs) if number % 2 == 0 else list(reversed(jobs))
                for name in order:
                    runs.setdefault(name, []).append(jobs[name]())

    labels = {
        "medsec": "medsec collect_devices: system, ENTITY-MIB, interfaces, addresses, "
        "SNMPv3 discovery (one process)",
        "net-snmp": "net-snmp snmpget + snmpbulkwalk: system, ENTITY-MIB",
        "net-snmp-all": "net-snmp, everything medsec reads: + ifDescr, ifName, ipAddrTable walks",
    }
    print(
        f"{args.devices} devices ({len(list(args.data.glob('*.snmprec')))} recordings) served "
        f"by snmpsim on 127.0.0.1; concurrency {args.concurrency}; {args.rounds} rounds; "
        f"{os.cpu_count()} cores"
    )
    rates = {}
    for name, label in labels.items():
        seconds = [r[0] for r in runs[name]]
        best, median = min(seconds), statistics.median(seconds)
        rates[name] = args.devices / median
        cpu = statistics.median(r[1] for r in runs[name])
        failed = max(r[2] for r in runs[name])
        served = statistics.median(r[3] for r in runs[name])
        print(f"  {label}")
        print(
            f"    best {best:.2f} s, median {median:.2f} s = {args.devices / median:.1f} "
            f"devices/s (best {args.devices / best:.1f}); client CPU {cpu:.2f} s, snmpsim CPU "
            f"{served:.2f} s; devices failed {failed}"
        )
    ratio = rates["medsec"] / rates["net-snmp"]
    print(
        f"medsec / net-snmp (system + ENTITY-MIB): {ratio:.2f}x; "
        f"medsec / net-snmp (everything medsec reads): "
        f"{rates['medsec'] / rates['net-snmp-all']:.2f}x"
    )
    print(
        f"targets: >= {TARGET_RATE:g} devices/s: "
        f"{'met' if rates['medsec'] >= TARGET_RATE else 'MISSED'}; >= 1x net-snmp: "
        f"{'met' if ratio >= 1 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
