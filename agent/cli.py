"""`medsec-agent`: gather facts on this host, evaluate checks, print the report.

Exit codes (a contract): 0 nothing failed or errored; 1 at least one `fail` or `error`;
2 usage or config error, one line on stderr naming the problem; 3 internal error (a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.config import AgentConfig, ConfigError, load_config
from agent.gather import gather
from agent.render import RENDERERS, RenderOptions
from agent.report import build_report
from checks.catalog import CatalogError, builtin_catalogs
from checks.model import jsonable
from checks.registry import Registry, builtin_registry
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
    facts = sub.add_parser("facts", help="print the gathered facts as JSON")
    facts.add_argument("--config", required=True, type=Path, help="agent config (YAML)")
    sub.add_parser("checks", help="list the checks and the clauses each gives evidence for")
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
    report = build_report(facts, results, __version__)
    color = args.color == "always" or (
        args.color == "auto" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    )
    out = RENDERERS[args.format](report, catalogs, RenderOptions(lang=args.lang, color=color))
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return report.worst_exit


def _cmd_facts(args: argparse.Namespace, registry: Registry) -> int:
    config = load_config(args.config, registry)
    facts = gather(LocalRunner(), config, registry.needs(_selected(registry, config)))
    sys.stdout.write(json.dumps(jsonable(facts), ensure_ascii=False, indent=2) + "\n")
    return EXIT_OK


def _cmd_checks(args: argparse.Namespace, registry: Registry) -> int:
    catalogs = builtin_catalogs()
    for c in registry:
        clauses = ", ".join(catalogs.clause_ids(c.id)) or "-"
        sys.stdout.write(f"{c.id:24} {c.severity.value:8} {c.title_en} [{clauses}]\n")
    return EXIT_OK


_COMMANDS = {"run": _cmd_run, "facts": _cmd_facts, "checks": _cmd_checks}


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
