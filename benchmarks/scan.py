"""Wall time of `medsec scan` over the lab, beside bare nmap commands over the same targets and
ports from the same vantages, in the same run.

Run (root): `.venv/bin/python benchmarks/scan.py [--runs N] [--ports top1000|all|listed]`. It
builds its own lab (namespace prefix `bn<pid>-`, addresses 198.18.0.0/15 only) and removes it at
the end. The ports are the zones file's `scan.ports` (default top1000: nmap's 1,000 most common
TCP ports, the listed ones and 7 UDP ports, 1,007 in the lab). Each run measures:

- medsec: `collector.scan.scan()` with every vantage at once — the nmap phase (asking nmap for
  its top-ports list, then until the last vantage is done) and the whole scan (with the HTTP,
  TLS and SNMP probes after it);
- bare, concurrent: the very nmap commands the scanner builds over the very ports it probed
  (`ip netns exec NS nmap ...`; for the SSH vantage, OpenSSH's `ssh` running nmap on the
  vantage host), all started at once, output thrown away: the floor medsec's nmap phase is
  compared with;
- bare, alone: the same commands one after another: the slowest one, and their sum.

Targets (issues): medsec's nmap phase ≤ 1.2 × bare concurrent, the whole scan with its probes
≤ 1.5 × bare concurrent; all vantages together about as long as the slowest one alone, not the
sum of them. `--fault NAME` (repeatable) switches lab faults on for the runs, e.g. `tls-camellia`
so the TLS probes meet a legacy service as well as the lab's modern ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.lab import Lab, LabUnavailable  # noqa: E402
from collector.scan.nmap import build_argv  # noqa: E402
from collector.scan.runner import ProgressEvent, nmap_options, scan  # noqa: E402
from collector.scan.zones import (  # noqa: E402
    NetnsVantageConfig,
    PortSpec,
    SshVantageConfig,
    Zones,
    load_zones,
)
from tests.collector.lab_zones import write_lab_zones  # noqa: E402

CONFINE = ("198.18.0.0/15",)
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def bare_commands(
    zones: Zones, privileged: dict[str, bool], ports: list[PortSpec]
) -> dict[str, list[str]]:
    """Per vantage zone, the nmap command the scanner runs there, as a plain command line."""
    ip, ssh = shutil.which("ip", path=PATH), shutil.which("ssh", path=PATH)
    if ip is None or ssh is None:
        raise SystemExit("benchmarks/scan.py needs iproute2 and openssh-client")
    options = nmap_options(zones)
    commands = {}
    for zone in zones.zones:
        vantage = zone.vantage
        if vantage is None:
            continue
        root = privileged[zone.name]
        kinds = ["syn", "udp"] if root else ["connect"]
        targets = [c for z in zones.zones if z.name != zone.name for c in z.cidrs]
        nmap = vantage.nmap if isinstance(vantage, SshVantageConfig) else "/usr/bin/nmap"
        argv = build_argv(nmap=nmap, scans=kinds, ports=ports, targets=targets,
                          scope=zones.scope(CONFINE), options=options)  # fmt: skip
        if isinstance(vantage, NetnsVantageConfig):
            commands[zone.name] = [ip, "netns", "exec", vantage.netns, *argv]
        elif isinstance(vantage, SshVantageConfig):
            prefix = [ip, "netns", "exec", vantage.via_netns] if vantage.via_netns else []
            commands[zone.name] = [
                *prefix, ssh, "-F", "/dev/null", "-i", vantage.key_file,
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={vantage.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-p", str(vantage.port), f"{vantage.user}@{vantage.host}", shlex.join(argv),
            ]  # fmt: skip
        else:
            commands[zone.name] = argv
    return commands


def run_concurrently(commands: dict[str, list[str]]) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    # Each in its own session, as the scanner starts nmap: with the kernel's autogroup
    # scheduling the CPU is shared per session, so bare commands sharing one session would
    # leave a bigger share to the SSH vantage's remote nmap (in sshd's session) than the scan
    # gets, and the comparison would measure the scheduler, not the scanner.
    running = {
        zone: subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for zone, argv in commands.items()
    }
    each = {}
    for zone, process in running.items():
        if process.wait(timeout=600) != 0:
            raise SystemExit(f"bare nmap from {zone} failed: {shlex.join(commands[zone])}")
        each[zone] = time.perf_counter() - started
    return max(each.values()), each


def run_alone(commands: dict[str, list[str]]) -> dict[str, float]:
    each = {}
    for zone, argv in commands.items():
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                       timeout=600, start_new_session=True)  # fmt: skip
        each[zone] = time.perf_counter() - started
    return each


def run_medsec(zones: Zones) -> tuple[float, float, dict[str, bool], list[PortSpec]]:
    marks: dict[str, float] = {}
    started = time.perf_counter()

    def progress(event: ProgressEvent) -> None:
        if event.phase == "probes" and "nmap" not in marks:
            marks["nmap"] = time.perf_counter() - started

    facts = asyncio.run(scan(zones, progress=progress, confine=CONFINE))
    total = time.perf_counter() - started
    bad = [f"{r.zone}: {r.message}" for r in facts.runs if r.status != "ok"]
    if bad:
        raise SystemExit("medsec scan did not finish cleanly: " + "; ".join(bad))
    ports = [PortSpec.parse(p) for p in facts.ports]
    return marks["nmap"], total, {r.zone: bool(r.privileged) for r in facts.runs}, ports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ports", choices=("top1000", "all", "listed"), default="top1000", help="scan.ports"
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="NAME", help="a lab fault to switch on"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/scan.py needs root (network namespaces)", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="medsec-bench-scan-")
    os.chmod(folder, 0o755)  # noqa: S103 — the lab's daemons read it as other users
    lab = Lab(Path(folder) / "lab", f"bn{os.getpid() % 10000}-")
    try:
        lab.up()
    except LabUnavailable as exc:
        print(f"the lab cannot be built here: {exc}", file=sys.stderr)
        return 2
    try:
        path = write_lab_zones(lab, Path(folder) / "zones")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["scan"]["ports"] = args.ports
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        zones = load_zones(path, confine=CONFINE)
        for fault in args.fault:
            lab.fault(fault, True)
        rows = []
        for number in range(1, args.runs + 1):
            nmap_phase, total, privileged, ports = run_medsec(zones)
            commands = bare_commands(zones, privileged, ports)
            together, _ = run_concurrently(commands)
            alone = run_alone(commands)
            rows.append((nmap_phase, total, together, max(alone.values()), sum(alone.values())))
            print(
                f"run {number}: medsec nmap phase {nmap_phase:.2f} s (whole scan {total:.2f} s); "
                f"bare nmap all at once {together:.2f} s; alone: slowest {max(alone.values()):.2f}"
                f" s, sum {sum(alone.values()):.2f} s "
                f"({', '.join(f'{z} {t:.2f}' for z, t in alone.items())})"
            )
        median = [statistics.median(column) for column in zip(*rows, strict=True)]
        nmap_phase, total, together, slowest, summed = median
        print()
        faults = f"; faults on: {', '.join(args.fault)}" if args.fault else ""
        print(f"scan.ports {args.ports}: {len(ports)} ports from each vantage{faults}")
        print(f"{'median of ' + str(args.runs) + ' runs':<34}{'seconds':>9}")
        print(f"{'medsec scan, nmap phase':<34}{nmap_phase:>9.2f}")
        print(f"{'medsec scan, with probes':<34}{total:>9.2f}")
        print(f"{'bare nmap, all vantages at once':<34}{together:>9.2f}")
        print(f"{'bare nmap, slowest vantage alone':<34}{slowest:>9.2f}")
        print(f"{'bare nmap, sum of vantages alone':<34}{summed:>9.2f}")
        print()
        ratio = nmap_phase / together
        whole = total / together
        print(f"medsec / bare (same vantages, at once): {ratio:.2f} (target <= 1.2)")
        print(f"medsec with probes / bare (same vantages, at once): {whole:.2f} (target <= 1.5); "
              f"the probes add {total - nmap_phase:.2f} s")  # fmt: skip
        print(f"medsec / slowest vantage alone: {nmap_phase / slowest:.2f}; "
              f"/ sum of vantages: {nmap_phase / summed:.2f}")  # fmt: skip
        return 0 if ratio <= 1.2 and whole <= 1.5 else 1
    finally:
        lab.down()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
