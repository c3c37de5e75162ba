"""`medsec lab up|down|status|fault`: the lab's command line. `add_lab_parser(subparsers)` hangs
it under `medsec`; `main()` serves `python -m collector.lab.cli up|down|status|fault` alone.

Exit codes: 0 done (for `status`: the lab is up and every daemon alive); 1 the lab could not be
built, switched or removed, or `status` found it absent or unhealthy, with one line on stderr;
2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from collector.lab import Lab, LabError, LabStatus, default_prefix
from collector.lab import topology as t


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        dest="lab_dir",
        metavar="LAB",
        help="the lab folder (default: $MEDSEC_LAB_DIR or /run/medsec/<prefix>)",
    )
    common.add_argument(
        "--prefix",
        dest="lab_prefix",
        metavar="PREFIX",
        help=f"namespace prefix (default: $MEDSEC_LAB_PREFIX or {t.DEFAULT_PREFIX!r})",
    )
    return common


def _add_commands(parser: argparse.ArgumentParser) -> None:
    common = _common()
    commands = parser.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)
    up = commands.add_parser("up", parents=[common], help="build the lab")
    up.add_argument(
        "--persona",
        choices=sorted(t.PERSONAS),
        default=t.DEFAULT_PERSONA,
        help="what the border firewall's SNMP agent claims to be",
    )
    down = commands.add_parser("down", parents=[common], help="remove everything the lab made")
    down.add_argument("--keep-logs", action="store_true", help="keep LAB/logs")
    status = commands.add_parser("status", parents=[common], help="namespaces, daemons, faults")
    status.add_argument("--json", action="store_true", help="print JSON")
    fault = commands.add_parser(
        "fault",
        parents=[common],
        help="switch a fault on or off",
        description="\n".join(f"{name}: {text}" for name, text in t.FAULTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fault.add_argument("fault_name", metavar="NAME", choices=sorted(t.FAULTS))
    fault.add_argument("fault_state", metavar="on|off", choices=("on", "off"))


def add_lab_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Add `lab` with its commands; dispatch with `run_lab(args)` when `args.lab_command` is set."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lab", help="the hospital-in-a-box lab", description="the hospital-in-a-box lab"
    )
    _add_commands(parser)
    return parser


def _print_status(status: LabStatus) -> None:
    print(f"lab {status.prefix!r} in {status.directory}: {status.phase}")
    for name, present in status.namespaces.items():
        print(f"  netns  {name:<16} {'present' if present else 'absent'}")
    for daemon in status.daemons:
        state = f"alive (pid {daemon.pid})" if daemon.alive else "dead"
        print(f"  daemon {daemon.name:<16} {daemon.netns:<14} {state}")
    print(f"  faults on: {', '.join(status.faults) or 'none'}")


def run_lab(args: argparse.Namespace) -> int:
    try:
        lab = Lab(
            args.lab_dir, args.lab_prefix, persona=getattr(args, "persona", t.DEFAULT_PERSONA)
        )
        if args.lab_command == "up":
            timings = lab.up()
            print(
                f"lab {lab.prefix!r} up in {timings['total']:.2f} s; zones file {lab.zones_file}; "
                f"SNMP secrets {lab.snmp_file}"
            )
            return 0
        if args.lab_command == "down":
            report = lab.down(keep_logs=args.keep_logs)
            print(
                f"lab {lab.prefix!r} down in {report.seconds:.2f} s: "
                f"{len(report.namespaces)} namespaces deleted, {report.stopped} processes ended"
                + ("" if report.removed_dir else f"; no lab folder at {lab.directory}")
            )
            return 0
        if args.lab_command == "status":
            status = lab.status()
            if args.json:
                print(json.dumps(status.as_json(), indent=2))
            else:
                _print_status(status)
            return 0 if status.healthy else 1
        if args.lab_command == "fault":
            lab.fault(args.fault_name, args.fault_state == "on")
            print(f"fault {args.fault_name} {args.fault_state}")
            return 0
    except LabError as exc:
        print(f"medsec lab: {exc}", file=sys.stderr)
        return 1
    print(f"medsec lab: unknown command {args.lab_command!r}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.lab.cli",
        description=f"the hospital-in-a-box lab (prefix default {default_prefix()!r})",
    )
    _add_commands(parser)
    return run_lab(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
