"""`medsec-agent`: gather facts on this host, evaluate checks, print the report, push it.

Exit codes (a contract): 0 nothing failed or errored; 1 at least one `fail` or `error`, or the
push needs a person (not enrolled, spool full, report rejected: see agent/push.py); 2 usage or
config error, one line on stderr naming the problem; 3 internal error (a bug). A report that waits
in the spool because the collector is down keeps the report's exit code, with a loud stderr line.
`enroll`: 0 enrolled; 1 the collector refused or could not be reached; 2 usage or config error.
`check-config FILE`: 0 and `FILE: valid` on stdout; 2 and the one line `run` would print.
`probe`: 0 stopped (SIGTERM) or, with `--once`, the round done; 1 a person must act (not
enrolled, not enrolled as a probe of `probe.zone`); 2 usage or config error (see agent/probe.py).
With a `probe:` section, `run` also makes one probe round after pushing (agent/probe_round.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.config import AgentConfig, ConfigError, load_config
from agent.gather import gather
from agent.report import build_report
from checks.catalog import CatalogError, builtin_catalogs
from checks.model import jsonable
from checks.registry import Registry, builtin_registry
from checks.render import RENDERERS, render_json
from checks.runner import evaluate
from inventory.runner import LocalRunner

PROG = "medsec-agent"
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep for it.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="medsec host agent: evidence for GB/T 22239-2019 L3 and MNDS from this server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="gather facts, evaluate checks, print the report")
    run.add_argument("--config", required=True, type=Path, help="agent config (YAML)")
    run.add_argument("--format", choices=sorted(RENDERERS), default="table")
    run.add_argument("--lang", choices=("en", "zh"), default="en", help="table language")
    run.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    run.add_argument(
        "--no-push", action="store_true", help="print only; do not send to the collector"
    )
    enroll = sub.add_parser("enroll", help="register this agent with the collector (once)")
    enroll.add_argument("--config", required=True, type=Path, help="agent config (YAML)")
    enroll.add_argument("--collector", required=True, help="collector URL, https://HOST:PORT")
    enroll.add_argument(
        "--token",
        required=True,
        help="one-time enrolment token (medsec agents enroll NAME); '-' reads it from stdin, "
        "keeping it out of the process list",
    )
    enroll.add_argument("--ca-file", help="CA the collector's TLS certificate is verified with")
    enroll.add_argument("--name", help="agent name (default: this host's name)")
    enroll.add_argument(
        "--force", action="store_true", help="replace an existing credential (new key)"
    )
    facts = sub.add_parser("facts", help="print the gathered facts as JSON")
    facts.add_argument("--config", required=True, type=Path, help="agent config (YAML)")
    check_config = sub.add_parser(
        "check-config",
        help="validate a config as `run` would, without gathering anything (exit 0 or 2)",
    )
    check_config.add_argument("file", type=Path, help="agent config (YAML), any file name")
    probe = sub.add_parser(
        "probe",
        help="serve as the probe of a zone: claim its scan jobs from the collector, run them, "
        "post the results (needs the config's probe section)",
    )
    probe.add_argument("--config", required=True, type=Path, help="agent config (YAML)")
    probe.add_argument(
        "--once", action="store_true", help="one claim round (waiting up to probe.wait_seconds)"
    )
    listing = sub.add_parser(
        "checks", help="list the checks, the clauses each gives evidence for, and its parameters"
    )
    listing.add_argument("--lang", choices=("en", "zh"), default="en", help="title language")
    return parser


def _selected(registry: Registry, config: AgentConfig) -> list[str]:
    return config.checks.selected(registry.ids())


def _cmd_run(args: argparse.Namespace, registry: Registry) -> int:
    config = load_config(args.config, registry)
    catalogs = builtin_catalogs()
    chosen = [registry.get(c) for c in _selected(registry, config)]
    facts = gather(LocalRunner(), config, registry.needs(c.id for c in chosen))
    overrides = {k: v for k, v in config.check_overrides().items() if k in registry}
    results = evaluate(chosen, facts, overrides)
    report = build_report(facts, results, __version__, site=config.site)
    color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    document = report.to_dict(catalogs)
    out = RENDERERS[args.format](document, catalogs, args.lang, color=color)
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    except BrokenPipeError:
        # `run | head`: the reader left; the report is still pushed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.no_push or config.collector is None:
        return report.worst_exit
    from agent.push import PushJob, push

    # What is sealed is exactly what the JSON renderer produces, whatever was printed (the JSON
    # renderer ignores language and colour, so a printed JSON report is that already).
    sealed = out if args.format == "json" else render_json(document, catalogs)
    job = PushJob.of(config, report.report_id, socket.gethostname(), report.worst_exit)
    if config.probe is not None:
        from agent.probe_round import push_then_probe

        # The timer's run serves as a probe too: after the report, one round of the zone's jobs.
        return push_then_probe(job, config.probe, sealed)
    return push(job, sealed)


def _cmd_enroll(args: argparse.Namespace, registry: Registry) -> int:
    from agent.enroll import EnrollError, EnrollRequest, enroll

    config = load_config(args.config, registry)
    from_stdin = args.token == "-"  # noqa: S105 — "-" is the stdin marker, not a secret
    token = sys.stdin.readline().strip() if from_stdin else args.token
    request = EnrollRequest(
        collector=args.collector,
        token=token,
        ca_file=args.ca_file,
        name=args.name,
        force=args.force,
    )
    try:
        return enroll(config, str(args.config), request, sys.stdout, sys.stderr)
    except EnrollError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code


def _cmd_facts(args: argparse.Namespace, registry: Registry) -> int:
    config = load_config(args.config, registry)
    facts = gather(LocalRunner(), config, registry.needs(_selected(registry, config)))
    sys.stdout.write(json.dumps(jsonable(facts), ensure_ascii=False, indent=2) + "\n")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace, registry: Registry) -> int:
    # Ansible's `template: validate:` calls this on a temporary copy before it replaces the
    # config: it must judge the file alone, with no root, no facts and no collector.
    load_config(args.file, registry)
    print(f"{args.file}: valid")
    return EXIT_OK


def _cmd_probe(args: argparse.Namespace, registry: Registry) -> int:
    config = load_config(args.config, registry)
    if config.probe is None:
        raise ConfigError(f"{args.config}: probe: no probe section (zone, targets) in the config")
    from agent.probe import run_probe

    return run_probe(config, once=args.once)


def _cmd_checks(args: argparse.Namespace, registry: Registry) -> int:
    catalogs = builtin_catalogs()
    lang = "zh" if args.lang == "zh" else "en"
    for c in registry:
        clauses = ", ".join(catalogs.clause_ids(c.id)) or "-"
        title = c.title_zh if lang == "zh" else c.title_en
        sys.stdout.write(f"{c.id:24} {c.severity.value:8} {title} [{clauses}]\n")
        for name, default in c.params.items():
            owner = c.shares.get(name)
            where = f"  (shared: set it on {owner})" if owner else ""
            sys.stdout.write(f"{'':24} {name} = {json.dumps(default)}{where}\n")
    return EXIT_OK


_COMMANDS = {
    "run": _cmd_run,
    "enroll": _cmd_enroll,
    "facts": _cmd_facts,
    "check-config": _cmd_check_config,
    "checks": _cmd_checks,
    "probe": _cmd_probe,
}


def main(argv: Sequence[str] | None = None) -> int:
    # libtss2 logs every failed TCTI probe to stderr; the facts carry what was looked at, so the
    # user sees one clear result instead of TSS noise. An operator may still set TSS2_LOG.
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args, builtin_registry())
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CatalogError as exc:
        print(f"{PROG}: installation is broken: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        # `medsec-agent run | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # CLI boundary: one line, never a traceback
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
