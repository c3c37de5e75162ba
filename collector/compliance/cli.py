"""`medsec report`, `medsec attest` and `medsec snapshot create|verify`: the collector's
compliance commands. They run through `collector.cli`'s store handling (audited, one-line
errors, exit codes), imported when a command runs; parsing needs nothing heavy."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from collector.store import Store

STANDARDS = ("gbt22239-2019-l3", "mnds")  # service.STANDARDS, without importing it
REPORT_FORMATS = ("summary", "json", "csv", "html", "xlsx", "pdf")
_BINARY_FORMATS = ("xlsx", "pdf")


def _filter_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", help="only hosts whose agent names this site")
    parser.add_argument("--zone", help="only hosts (and network objects) in this zone")
    parser.add_argument("--host", help="only this host (its id or hostname)")
    parser.add_argument(
        "--as-of",
        metavar="TIME",
        help="the newest evidence received by TIME (RFC 3339), judged at TIME",
    )


def add_compliance_parsers(
    sub: argparse._SubParsersAction[Any],
    parser_class: type[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`report`, `attest` and `snapshot create|verify` on `medsec`'s command line."""
    report = sub.add_parser(
        "report", help="clause-by-clause compliance report of a standard, from stored evidence"
    )
    report.add_argument("--standard", required=True, choices=STANDARDS)
    report.add_argument(
        "--format",
        choices=REPORT_FORMATS,
        default="summary",
        help="summary (one screen) or a report file: json, csv, html, xlsx, pdf",
    )
    report.add_argument("--out", type=Path, help="file to write (default: standard output)")
    report.add_argument("--lang", choices=("zh", "en"), default="zh")
    report.add_argument(
        "--since",
        type=Path,
        metavar="FILE",
        help="an earlier JSON report or snapshot: list the clauses and objects that changed",
    )
    _filter_args(report)
    config_arg(report)

    attest = sub.add_parser(
        "attest", help="record a person's judgement on a manual clause (with its document)"
    )
    attest.add_argument("clause", help="the clause id, e.g. '8.1.1.2' or '8.1.1.3 a'")
    attest.add_argument("--standard", required=True, help="gbt22239-2019-l3 or mnds")
    attest.add_argument("--status", required=True, choices=("pass", "fail", "not_applicable"))
    attest.add_argument("--note", required=True, help="what was seen, and where")
    attest.add_argument("--file", type=Path, help="the document behind it (its SHA-256 is kept)")
    attest.add_argument(
        "--valid-days", type=int, default=365, help="after this, the clause is manual again"
    )
    attest.add_argument("--as", dest="user", required=True, help="the user making the statement")
    config_arg(attest)

    snapshot = sub.add_parser("snapshot", help="signed auditor snapshots").add_subparsers(
        dest="action", required=True, parser_class=parser_class
    )
    create = snapshot.add_parser(
        "create", help="freeze hosts' hardware, results, reports and signed envelopes in a zip"
    )
    create.add_argument("--out", type=Path, required=True, help="the zip to write")
    _filter_args(create)
    config_arg(create)
    verify = snapshot.add_parser(
        "verify", help="check a snapshot's signature, every hash and every host envelope"
    )
    verify.add_argument("file", type=Path)
    verify.add_argument(
        "--expect-key", metavar="FINGERPRINT", help="the collector key the auditor trusts"
    )


def _scope(args: argparse.Namespace) -> Any:
    from collector.compliance.model import Scope

    return Scope(site=args.site, zone=args.zone, host=args.host, as_of=args.as_of)


def report_command(args: argparse.Namespace) -> int:
    from collector import cli as base
    from collector.compliance.aggregate import ScopeError
    from collector.compliance.render import render
    from collector.compliance.render.json import write_json
    from collector.compliance.service import (
        ComplianceError,
        build,
        previous_statuses,
        with_changes,
        write_atomically,
    )

    if args.out is None and args.format in _BINARY_FORMATS:
        raise base.UsageError(f"--format {args.format} needs --out FILE", "usage")

    def report(store: Store, settings: CollectorSettings) -> int:
        try:
            since = None if args.since is None else previous_statuses(args.since, args.standard)
            compliance = build(store, settings, [args.standard], _scope(args), base._now())[
                args.standard
            ]
            if since is not None:
                compliance = with_changes(compliance, *since)
            to_file = args.out is not None and str(args.out) != "-"
            if to_file and args.format == "json":  # hundreds of MB at scale: streamed
                write_atomically(args.out, functools.partial(write_json, compliance))
            elif to_file:
                write_atomically(args.out, render(compliance, args.format, args.lang))
            else:
                sys.stdout.buffer.write(render(compliance, args.format, args.lang))
                sys.stdout.flush()
        except (ComplianceError, ScopeError) as exc:
            raise base.UsageError(str(exc), "invalid_report") from None
        if args.out is not None and str(args.out) != "-":
            counts = compliance.summary.clauses.by_status
            said = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            print(f"wrote {args.out} ({args.standard}, {args.format}): {said}", file=sys.stderr)
        return base.EXIT_OK

    return base._with_store(
        args, f"report --standard {args.standard} --format {args.format}", report
    )


def attest_command(args: argparse.Namespace) -> int:
    from checks.catalog import builtin_catalogs
    from collector import cli as base
    from collector.compliance.attest import AttestationRequest, file_digest, record
    from collector.compliance.service import ComplianceError

    def attest(store: Store, _: CollectorSettings) -> int:
        users = {u.name: u for u in store.list_users()}
        if args.user not in users:
            raise base.UsageError(f"--as: no user named {args.user!r}", "not_found")
        try:
            name, digest = (None, None) if args.file is None else file_digest(args.file)
            request = AttestationRequest(
                args.standard, args.clause, args.status, args.note, args.valid_days, name, digest
            )
            made = record(store, request, args.user, base._now(), builtin_catalogs())
        except ComplianceError as exc:
            raise base.UsageError(str(exc), getattr(exc, "code", "invalid_attestation")) from None
        print(
            f"attestation {made.id}: {made.standard} {made.clause} {made.status}"
            f" by {made.created_by}, valid until {base._stamp(made.valid_until)}"
            + (f"; {made.file_name} sha256 {made.file_sha256}" if made.file_name else "")
        )
        return base.EXIT_OK

    action = f"attest {args.standard} {args.clause!r} {args.status} --as {args.user}"
    return base._with_store(args, action, attest)


def snapshot_command(args: argparse.Namespace) -> int:
    from collector import cli as base
    from collector.compliance.aggregate import ScopeError
    from collector.compliance.service import ComplianceError
    from collector.compliance.snapshot_cli import create_command, verify_command

    if args.action == "verify":
        return verify_command(args.file, args.expect_key)

    def create(store: Store, settings: CollectorSettings) -> int:
        try:
            return create_command(
                store,
                settings,
                scope=_scope(args),
                out=args.out,
                created_by=base._os_user(),
                now=base._now(),
            )
        except (ComplianceError, ScopeError) as exc:
            raise base.UsageError(str(exc), "invalid_snapshot") from None

    return base._with_store(args, "snapshot create", create)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "report": report_command,
    "attest": attest_command,
    "snapshot": snapshot_command,
}
