"""`medsec`: set up, run and administer the collector.

Exit codes (a contract): 0 done; 1 a finding (`audit verify` found the log altered); 2 usage,
settings or database error, one line on stderr naming the problem; 3 internal error (a bug);
4 (`scan` only) a vantage failed, so the scan is incomplete and nothing was stored.
Tokens are printed once, as the LAST line of the output, so scripts can take `tail -n 1`.
Every administrative action is itself written to the audit log (actor = the OS user, role
"cli", source "cli"), including the ones that fail. `users list` and `agents list` print JSON
with `--format json` (a list of objects whose keys stay stable: Ansible reads it). The setup
steps that only write or read files (`check-config`, `tls self-signed`, `audit new-key`,
collector/setup_cli.py) open no database and write no audit entry.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from collector.settings import (
    CollectorSettings,
    SettingsError,
    load_settings,
)

if TYPE_CHECKING:
    from collector.models import AuditVerdict
    from collector.store import Store

PROG = "medsec"
VERSION = "0.1.0"
EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
ROLES = ("admin", "operator", "auditor")
# The API's rule (collector.api.schemas.NAME_PATTERN), repeated: admin commands need no FastAPI.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UsageError(Exception):
    """The command cannot run as asked. The message is the one line the user sees; `code` is
    what the audit log records as the outcome."""

    def __init__(self, message: str, code: str = "usage_error") -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: scripts grep for it.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="collector settings (YAML)")


def _list_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: a list of objects, timestamps ISO 8601 UTC or null",
    )
    _config_arg(parser)


def _parser() -> argparse.ArgumentParser:  # noqa: PLR0915 (one list of every command)
    parser = _Parser(prog=PROG, description="medsec collector: reports, audit log, users, agents.")
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = sub.add_parser("init", help="make DIR/collector.yaml, a TLS pair and the database")
    init.add_argument("--dir", required=True, type=Path, help="folder for settings, TLS, data")
    init.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="name or address agents use to reach the collector (repeatable)",
    )

    serve = sub.add_parser("serve", help="run the HTTPS API (migrates the database first)")
    _config_arg(serve)
    serve.add_argument("--listen", help="HOST:PORT, overriding the settings' listen")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes, overriding the settings' workers (one per core at scale)",
    )

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    _config_arg(db.add_parser("upgrade", help="apply the schema migrations"))
    _config_arg(
        db.add_parser(
            "prune",
            help="delete reports and scans older than reports.retention_days (each host's newest"
            " report and each zones file's newest completed scan stay)",
        )
    )

    users = sub.add_parser("users", help="API and dashboard users").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    add = users.add_parser("add", help="add a user; prints their API token (last line)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    _config_arg(add)
    _list_args(users.add_parser("list", help="list users"))
    remove = users.add_parser("remove", help="remove a user (their token stops working)")
    remove.add_argument("name")
    _config_arg(remove)
    from collector.web.cli import add_passwd_parser

    add_passwd_parser(users, _config_arg)

    agents = sub.add_parser("agents", help="agents").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    enroll = agents.add_parser("enroll", help="print a one-time enrolment token (last line)")
    enroll.add_argument("name")
    enroll.add_argument(
        "--probe-zone",
        metavar="ZONE",
        help="enrol a probe: its credential claims the scan jobs of this zone and no other",
    )
    _config_arg(enroll)
    _list_args(agents.add_parser("list", help="list agents"))
    revoke = agents.add_parser("revoke", help="revoke an agent (its token stops working)")
    revoke.add_argument("name")
    _config_arg(revoke)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 if altered")
    verify.add_argument(
        "--expect",
        metavar="SEQ:HASH",
        help="an earlier verify's head, kept elsewhere: exit 1 if that entry is gone or differs"
        " (the log rolled back)",
    )
    _config_arg(verify)
    _config_arg(
        audit.add_parser(
            "prune", help="delete entries older than audit.retention_days (run it daily)"
        )
    )
    from collector.setup_cli import add_new_key_parser, add_setup_parsers

    add_new_key_parser(audit)
    add_setup_parsers(sub, _Parser)
    from collector.compliance.cli import add_compliance_parsers

    add_compliance_parsers(sub, _Parser, _config_arg)
    from collector.lab.cli import add_lab_parser
    from collector.scan.cli import add_scan_parser

    add_lab_parser(sub)
    scan = add_scan_parser(cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub))
    scan.add_argument("--config", type=Path, help="collector settings (YAML); needed with --store")
    _agentless_parsers(sub)
    from collector.alerts_cli import add_alerts_parser
    from collector.scans_cli import add_scans_parser
    from collector.schedules_cli import add_schedules_parser

    add_schedules_parser(sub, _Parser, _config_arg)
    add_scans_parser(sub, _Parser, _config_arg)
    add_alerts_parser(sub, _Parser, _config_arg)
    return parser


def _agentless_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`inventory snmp` and `collect ssh`: what has no agent."""
    from collector.agentless_cli import add_collect_parser
    from collector.inventory_cli import add_inventory_parser

    add_inventory_parser(sub, _Parser)
    add_collect_parser(sub, _Parser)


# --------------------------------------------------------------------------- helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime | None) -> str:
    return _iso(moment) or "-"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _os_user() -> str:
    """Who ran the command, for the audit log: the effective user, and who used sudo."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {sudo})" if sudo and uid == 0 else name


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise UsageError(
            f"{what} name {value!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            "invalid_name",
        )
    return value


def _open_store(settings: CollectorSettings) -> Store:
    from collector.settings import audit_key
    from collector.store import Store

    return Store.open(settings.database, audit_key=audit_key(settings))


def _audit(store: Store, action: str, outcome: str, failed: Exception | None = None) -> None:
    """Record a CLI action. A failure to record is said loudly but does not undo the action
    (said once: not again when it is the very error the action `failed` with)."""
    from collector.store import StoreError

    try:
        store.append_audit(_os_user(), "cli", f"cli {action}", "cli", outcome, _now())
    except StoreError as exc:
        if failed is None or str(exc) != str(failed):
            print(f"{PROG}: warning: the audit entry was not written: {exc}", file=sys.stderr)


def _with_store(
    args: argparse.Namespace, action: str, body: Callable[[Store, CollectorSettings], int]
) -> int:
    """Run `body` on the configured store and audit it, whatever the outcome."""
    from collector.store import StoreError, StoreUnavailable

    settings = load_settings(args.config)
    store = _open_store(settings)
    try:
        try:
            code = body(store, settings)
        except StoreUnavailable:
            raise
        except UsageError as exc:
            _audit(store, action, f"{EXIT_USAGE} {exc.code}")
            raise
        except StoreError as exc:
            _audit(store, action, f"{EXIT_USAGE} {_error_code(exc)}", exc)
            raise
        _audit(store, action, str(code))
        return code
    finally:
        store.close()


def _error_code(exc: Exception) -> str:
    """`UserExists` → `user_exists`: the outcome recorded for a refused CLI action."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


# --------------------------------------------------------------------------- commands


def _expected_head(text: str) -> tuple[int, str]:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise UsageError(f"--expect: not SEQ:HASH as verify prints it (value: {text[:80]!r})")
    return int(seq), digest


def _rollback(store: Store, verdict: AuditVerdict, seq: int, digest: str) -> str | None:
    """Why the verified log cannot be a later state of the one whose head was (seq, digest)."""
    end = 0 if verdict.head is None else verdict.head[0]
    if seq > end:
        return f"entry {seq}, recorded earlier, is gone: the log now ends at entry {end}"
    entry = store.audit_entry(seq)
    if entry is None:  # pruned with the old entries since then: nothing left to compare
        print(f"{PROG}: entry {seq} was pruned since; it cannot be compared", file=sys.stderr)
        return None
    if entry.hash != digest:
        return f"entry {seq} is not the one recorded earlier (its hash differs)"
    return None


def _cmd_db(args: argparse.Namespace) -> int:
    def upgrade(store: Store, settings: CollectorSettings) -> int:
        before, after = store.upgrade()
        shown = settings.database_for_display()
        # "already" is what scripts (the Ansible role's changed_when) look for.
        if before == after:
            print(f"database {shown} is already at the latest schema ({after})")
        else:
            print(
                f"database {shown} upgraded from {before or 'empty'} to the latest schema ({after})"
            )
        return EXIT_OK

    def prune(store: Store, settings: CollectorSettings) -> int:
        days = settings.reports.retention_days
        before = _now() - timedelta(days=days)
        gone, results = store.prune_reports(before)
        # Scans (and their probes' jobs) go with their reports: each zones file's newest
        # completed scan stays, as each host's newest report does.
        scans, jobs = store.prune_scans(before)
        cleared = store.prune_alerts(before)  # alerts still open stay, however old
        print(
            f"pruned {gone} reports ({results} results) received before"
            f" {before.isoformat(timespec='seconds')}, and {scans} scans ({jobs} jobs) and"
            f" {cleared} cleared alerts ended before then (reports.retention_days: {days})"
        )
        return EXIT_OK

    if args.action == "prune":
        return _with_store(args, "db prune", prune)
    settings = load_settings(args.config)
    store = _open_store(settings)
    try:
        code = upgrade(store, settings)  # migrate before auditing: the log's table may be new
        _audit(store, "db upgrade", str(code))
        return code
    finally:
        store.close()


def _cmd_users(args: argparse.Namespace) -> int:
    if args.action == "passwd":
        from collector.web.cli import passwd_command

        return passwd_command(args)
    from collector.models import Role
    from collector.store import NotFound, UserExists

    def add(store: Store, _: CollectorSettings) -> int:
        name = _name(args.name, "user")
        try:
            user, token = store.add_user(name, Role(args.role), _now())
        except UserExists:
            raise UsageError(f"a user named {name!r} already exists", "user_exists") from None
        print(f"user {user.name} added with role {user.role.value}")
        print("API token (shown once; send it as 'Authorization: Bearer TOKEN'):")
        print(token)
        return EXIT_OK

    def list_(store: Store, _: CollectorSettings) -> int:
        users = store.list_users()
        if args.format == "json":
            _json(
                [
                    {"name": u.name, "role": u.role.value, "created_at": _iso(u.created_at)}
                    for u in users
                ]
            )
            return EXIT_OK
        _table(
            ("NAME", "ROLE", "CREATED"),
            [(u.name, u.role.value, _stamp(u.created_at)) for u in users],
        )
        return EXIT_OK

    def remove(store: Store, _: CollectorSettings) -> int:
        try:
            store.remove_user(args.name)
        except NotFound:
            raise UsageError(f"no user named {args.name!r}", "not_found") from None
        print(f"user {args.name} removed")
        return EXIT_OK

    if args.action == "add":
        return _with_store(args, f"users add {args.name} --role {args.role}", add)
    if args.action == "remove":
        return _with_store(args, f"users remove {args.name}", remove)
    return _with_store(args, "users list", list_)


def _cmd_agents(args: argparse.Namespace) -> int:
    from collector.store import AgentExists, NotFound

    def enroll(store: Store, settings: CollectorSettings) -> int:
        name = _name(args.name, "agent")
        ttl = timedelta(minutes=settings.enrollment.token_ttl_minutes)
        now = _now()
        try:
            token = store.create_enrollment(name, ttl, now, probe_zone=args.probe_zone)
        except AgentExists:
            raise UsageError(
                f"agent {name!r} is enrolled and active; revoke it first to enrol it again",
                "agent_exists",
            ) from None
        print(f"enrolment token for agent {name} (single use; shown once)")
        minutes = settings.enrollment.token_ttl_minutes
        print(f"expires {_stamp(now + ttl)} (in {minutes} minutes)")
        print(token)
        return EXIT_OK

    def list_(store: Store, _: CollectorSettings) -> int:
        agents = [
            {
                "name": a.name,
                "state": "revoked" if a.revoked_at else ("active" if a.enrolled_at else "pending"),
                "alg": a.alg.value if a.alg else None,
                "enrolled_at": _iso(a.enrolled_at),
                "last_seen_at": _iso(a.last_seen_at),
                "probe_zone": a.probe_zone,
            }
            for a in store.list_agents()
        ]
        if args.format == "json":
            _json(agents)
            return EXIT_OK
        keys = ("name", "state", "alg", "enrolled_at", "last_seen_at", "probe_zone")
        rows = [tuple(a[k] or "-" for k in keys) for a in agents]
        _table(("NAME", "STATE", "ALG", "ENROLLED", "LAST SEEN", "PROBE ZONE"), rows)
        return EXIT_OK

    def revoke(store: Store, _: CollectorSettings) -> int:
        try:
            agent = store.revoke_agent(args.name, _now())
        except NotFound:
            raise UsageError(f"no agent named {args.name!r}", "not_found") from None
        print(f"agent {agent.name} revoked at {_stamp(agent.revoked_at)}")
        return EXIT_OK

    if args.action == "enroll":
        return _with_store(args, f"agents enroll {args.name}", enroll)
    if args.action == "revoke":
        return _with_store(args, f"agents revoke {args.name}", revoke)
    return _with_store(args, "agents list", list_)


def _cmd_audit(args: argparse.Namespace) -> int:
    if args.action == "new-key":
        from collector.setup_cli import audit_new_key

        return audit_new_key(args)
    expected = _expected_head(args.expect) if getattr(args, "expect", None) else None

    def verify(store: Store, _: CollectorSettings) -> int:
        verdict = store.verify_audit()
        if not verdict.ok:
            problem = f": {verdict.problem}" if verdict.problem else ""
            print(f"audit log altered: first bad entry is seq {verdict.first_bad_seq}{problem}")
            return EXIT_FINDING
        if expected is not None:
            rolled_back = _rollback(store, verdict, *expected)
            if rolled_back is not None:
                print(f"audit log rolled back: {rolled_back}")
                return EXIT_FINDING
        head = "" if verdict.head is None else f"; head {verdict.head[0]}:{verdict.head[1]}"
        print(f"audit log intact: {verdict.entries} entries{head}")
        return EXIT_OK

    def prune(store: Store, settings: CollectorSettings) -> int:
        from collector.store import AuditAltered

        days = settings.audit.retention_days
        before = _now() - timedelta(days=days)
        try:
            pruned = store.prune_audit(before)
        except AuditAltered as exc:
            print(f"{PROG}: {exc}; run `medsec audit verify`", file=sys.stderr)
            return EXIT_FINDING
        print(
            f"pruned {pruned} audit entries older than {before.isoformat(timespec='seconds')}"
            f" (audit.retention_days: {days})"
        )
        return EXIT_OK

    if args.action == "prune":
        return _with_store(args, "audit prune", prune)
    return _with_store(args, "audit verify", verify)


def _cmd_lab(args: argparse.Namespace) -> int:
    from collector.lab.cli import run_lab

    return run_lab(args)


def _cmd_scan(args: argparse.Namespace) -> int:
    from collector.scan.cli import run_scan

    if not args.store:
        return run_scan(args)
    if args.config is None:
        raise UsageError("--store needs --config (the collector settings)", "usage")

    def scan_and_store(store: Store, settings: CollectorSettings) -> int:
        from collector.models import ScanState

        # Recorded like a scan started through the API, so history and `scans diff` have it.
        name = _zones_name(settings, args.zones)
        now = _now()
        deadline = now + timedelta(seconds=settings.scans.timeout_seconds + 60)
        run = store.start_scan(name, _os_user(), now, deadline)
        stored: list[str] = []
        try:
            code = run_scan(args, store=lambda report: stored.append(_store_scan(store, report)))
        except BaseException:
            store.finish_scan(run.id, ScanState.FAILED, _now(), message="the scan did not end")
            raise
        if stored:
            state = ScanState.PASSED if code == 0 else ScanState.FINDINGS
            store.finish_scan(run.id, state, _now(), report_id=stored[0])
        else:
            store.finish_scan(run.id, ScanState.FAILED, _now(), message=f"exited with code {code}")
        return code

    return _with_store(args, f"scan --zones {args.zones} --store", scan_and_store)


def _zones_name(settings: CollectorSettings, zones: str | os.PathLike[str]) -> str:
    """The settings' name for this zones file (`scans.zones`), else its absolute path."""
    wanted = os.path.realpath(zones)
    for name, path in settings.scans.zones.items():
        if os.path.realpath(path) == wanted:
            return name
    return wanted


def _store_scan(store: Store, report: dict[str, Any]) -> str:
    """Store a scan's results like a report, under the collector's own scanner identity."""
    import json

    from collector.scans import store_scan_report

    body = json.dumps(report, ensure_ascii=False).encode("utf-8")
    outcome = store_scan_report(store, body, _now())
    print(f"stored as report {outcome.report_id} (host {outcome.host_id})", file=sys.stderr)
    return outcome.report_id


def _json(rows: list[dict[str, str | None]]) -> None:
    import json

    print(json.dumps(rows, ensure_ascii=False, indent=2))


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": lambda args: _serving("init", args),
    "serve": lambda args: _serving("serve", args),
    "db": _cmd_db,
    "users": _cmd_users,
    "agents": _cmd_agents,
    "audit": _cmd_audit,
    "lab": _cmd_lab,
    "scan": _cmd_scan,
    "check-config": lambda args: _setup("check-config", args),
    "tls": lambda args: _setup("tls", args),
    "report": lambda args: _compliance("report", args),
    "attest": lambda args: _compliance("attest", args),
    "snapshot": lambda args: _compliance("snapshot", args),
    "inventory": lambda args: _agentless("inventory", args),
    "collect": lambda args: _agentless("collect", args),
    "schedules": lambda args: _periodic("schedules", args),
    "scans": lambda args: _periodic("scans", args),
    "alerts": lambda args: _periodic("alerts", args),
}


def _serving(command: str, args: argparse.Namespace) -> int:
    from collector import serve_cli

    return serve_cli.cmd_init(args) if command == "init" else serve_cli.cmd_serve(args)


def _periodic(command: str, args: argparse.Namespace) -> int:
    if command == "schedules":
        from collector import schedules_cli

        return schedules_cli.run(args)
    if command == "alerts":
        from collector import alerts_cli

        return alerts_cli.run(args)
    from collector import scans_cli

    return scans_cli.run(args)


def _agentless(command: str, args: argparse.Namespace) -> int:
    if command == "inventory":
        from collector import inventory_cli

        return inventory_cli.run(args)
    from collector import agentless_cli

    return agentless_cli.run(args)


def _setup(command: str, args: argparse.Namespace) -> int:
    from collector import setup_cli

    return setup_cli.COMMANDS[command](args)


def _compliance(command: str, args: argparse.Namespace) -> int:
    from collector.compliance import cli

    return cli.COMMANDS[command](args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # before the heavy imports: --help stays instant
    from collector.store import StoreError
    from collector.tls import TlsError

    # Everything the collector writes (database, settings, keys) is for its own user only.
    os.umask(0o077)
    try:
        return _COMMANDS[args.command](args)
    except (SettingsError, UsageError, TlsError, StoreError) as exc:
        print(f"{PROG}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `medsec agents list | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # CLI boundary: one line, never a traceback
        print(f"{PROG}: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
