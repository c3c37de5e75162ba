"""`medsec collect ssh`: collect a host's evidence over SSH without an agent, print it, and with
`--store` keep it in the collector under the agentless identity (`collector.agentless`).

One host with `--host`, many with `--hosts FILE` (a YAML list, or `{defaults: {...}, hosts: [...]}`;
each host's keys override the command line's). Exit codes: 0 every host collected and nothing
failed or errored; 1 a finding, or a host could not be collected (its line says why; the other
hosts are still collected and reported); 2 a usage, hosts-file, key or config problem, one line.
A report the store refuses because the host's own agent reports it is said on stderr and does not
change the exit code: the agent's evidence stands, as it should. Key passphrases are never on the
command line: an unencrypted key, MEDSEC_SSH_KEY_PASSPHRASE, or the ssh-agent (SSH_AUTH_SOCK)
when no key file is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import paramiko

    from agent.config import AgentConfig
    from checks.catalog import Catalogs
    from checks.registry import Registry
    from collector.agentless import HostOutcome, HostSpec
    from collector.settings import CollectorSettings
    from collector.store import Store

PASSPHRASE_ENV = "MEDSEC_SSH_KEY_PASSPHRASE"  # noqa: S105 — the variable's name, not a secret
DEFAULT_CONCURRENCY = 8
DEFAULT_HOST_TIMEOUT = 300.0
DEFAULT_CONNECT_TIMEOUT = 10.0
_SECRET_KEY = re.compile(r"pass|secret|private|token|community|credential", re.IGNORECASE)
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")


class HostsFileError(ValueError):
    """The hosts file (or a value on the command line) cannot be used; one line."""


def add_collect_parser(sub: argparse._SubParsersAction[Any], parser_class: type) -> None:
    collect = sub.add_parser(
        "collect", help="collect evidence from servers that have no agent (over SSH)"
    )
    kinds: argparse._SubParsersAction[Any] = collect.add_subparsers(
        dest="transport", required=True, parser_class=parser_class
    )
    ssh = kinds.add_parser(
        "ssh",
        help="run the agent's gatherers and checks on hosts over SSH (read-only commands only)",
    )
    where = ssh.add_mutually_exclusive_group(required=True)
    where.add_argument("--host", help="one host (name or address)")
    where.add_argument("--hosts", type=Path, help="YAML file listing hosts (see docs/agentless.md)")
    ssh.add_argument("--port", type=int, help="SSH port (default 22)")
    ssh.add_argument("--user", help="account to log in as (root, or one allowed sudo -n)")
    ssh.add_argument(
        "--key-file",
        type=Path,
        help=f"private key (mode 0600; encrypted: set {PASSPHRASE_ENV}); "
        "none: the ssh-agent (SSH_AUTH_SOCK)",
    )
    ssh.add_argument(
        "--known-hosts", type=Path, help="known_hosts file (default ~/.ssh/known_hosts)"
    )
    ssh.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="accept and record the key of a host known_hosts does not name (a changed key is "
        "always refused)",
    )
    ssh.add_argument(
        "--sudo", action="store_true", help="run commands and read files through sudo -n"
    )
    ssh.add_argument(
        "--agent-config",
        type=Path,
        help="agent config (YAML) for the gatherers and checks: backups, logs, check selection",
    )
    ssh.add_argument("--format", choices=("table", "json"), default="table")
    ssh.add_argument("--lang", choices=("en", "zh"), default="en", help="table language")
    ssh.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"hosts collected at once (default {DEFAULT_CONCURRENCY})",
    )
    ssh.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_HOST_TIMEOUT,
        help=f"seconds one host may take, login included (default {DEFAULT_HOST_TIMEOUT:g})",
    )
    ssh.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        help=f"seconds to connect and log in (default {DEFAULT_CONNECT_TIMEOUT:g})",
    )
    ssh.add_argument(
        "--store", action="store_true", help="store the reports in the collector's database"
    )
    ssh.add_argument("--config", type=Path, help="collector settings (YAML); needed with --store")


# ------------------------------------------------------------------------------- hosts file


class _Entry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    sudo: bool | None = None
    agent_config: str | None = None


class _HostsFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    hosts: list[_Entry]
    defaults: _Entry = msgspec.field(default_factory=_Entry)


@dataclass(frozen=True)
class _Wanted:
    """One host as asked for, before keys and configs are loaded."""

    host: str
    port: int
    user: str
    key_file: Path | None
    sudo: bool
    agent_config: Path | None
    where: str
    """Where it was asked for, for error lines: `--host` or `FILE: hosts[3]`."""


def _refuse_secrets(data: Any, source: str) -> None:
    sections = [("defaults", data.get("defaults"))] if isinstance(data, dict) else []
    items = data.get("hosts") if isinstance(data, dict) else data
    if isinstance(items, list):
        sections += [(f"hosts[{n}]", item) for n, item in enumerate(items)]
    for name, section in sections:
        if not isinstance(section, dict):
            continue
        for key in section:
            if isinstance(key, str) and _SECRET_KEY.search(key):
                raise HostsFileError(
                    f"{source}: {name}.{key}: secrets are never read from the hosts file "
                    f"(value not shown); use the ssh-agent or {PASSPHRASE_ENV}"
                )


def load_hosts_file(path: Path, args: argparse.Namespace) -> list[_Wanted]:
    """The hosts the file lists, the command line's options as their defaults."""
    from checks.configtext import ConfigFileError, describe, read_yaml

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise HostsFileError(f"{path}: {exc.strerror or exc}") from None
    if mode & 0o022:
        raise HostsFileError(
            f"{path}: mode {stat.S_IMODE(mode):04o} lets others change which key logs in "
            "where (chmod go-w)"
        )
    try:
        data = read_yaml(path, "hosts", "the hosts file")
    except ConfigFileError as exc:
        raise HostsFileError(str(exc)) from None
    _refuse_secrets(data, str(path))
    if isinstance(data, list):
        data = {"hosts": data}
    if not isinstance(data, dict):
        raise HostsFileError(f"{path}: the top level must be a list of hosts or a mapping")
    try:
        parsed = msgspec.convert(data, _HostsFile)
    except msgspec.ValidationError as exc:
        raise HostsFileError(f"{path}: {describe(exc, data)}") from None
    if not parsed.hosts:
        raise HostsFileError(f"{path}: hosts: lists no host")
    base = path.resolve().parent
    seen: dict[tuple[str, int, str], str] = {}
    wanted: list[_Wanted] = []
    for n, entry in enumerate(parsed.hosts):
        where = f"{path}: hosts[{n}]"
        if entry.host is None:
            raise HostsFileError(f"{where}: missing key host")
        one = _wanted(entry, parsed.defaults, args, where, base)
        key = (one.host, one.port, one.user)
        if key in seen:
            raise HostsFileError(f"{where}: {one.user}@{one.host}:{one.port} is also {seen[key]}")
        seen[key] = f"hosts[{n}]"
        wanted.append(one)
    return wanted


def _wanted(
    entry: _Entry, defaults: _Entry, args: argparse.Namespace, where: str, base: Path | None
) -> _Wanted:
    def pick(name: str) -> tuple[Any, bool]:
        """The value and whether the hosts file gave it (its relative paths are its own)."""
        for source in (entry, defaults):
            value = getattr(source, name)
            if value is not None:
                return value, base is not None
        return getattr(args, name), False

    def path_of(name: str) -> Path | None:
        value, from_file = pick(name)
        if value is None:
            return None
        found = Path(value)
        return base / found if from_file and base is not None and not found.is_absolute() else found

    host = str(entry.host)
    if not _HOST.fullmatch(host):
        raise HostsFileError(f"{where}: host {host!r} is not a host name or address")
    port = pick("port")[0] or 22
    if not 1 <= int(port) <= 65535:
        raise HostsFileError(f"{where}: port {port} is not between 1 and 65535")
    user = pick("user")[0]
    if user is None:
        raise HostsFileError(f"{where}: no user (give --user, or user: in the hosts file)")
    if not _USER.fullmatch(str(user)):
        raise HostsFileError(f"{where}: user {user!r} is not an account name")
    return _Wanted(
        host=host,
        port=int(port),
        user=str(user),
        key_file=path_of("key_file"),
        sudo=bool(pick("sudo")[0]),
        agent_config=path_of("agent_config"),
        where=where,
    )


# -------------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Loaded:
    specs: list[HostSpec]
    registry: Registry
    catalogs: Catalogs


def _check_numbers(args: argparse.Namespace) -> None:
    if not 1 <= args.concurrency <= 256:
        raise HostsFileError(f"--concurrency {args.concurrency}: must be between 1 and 256")
    if not 0 < args.timeout <= 86_400:
        raise HostsFileError(f"--timeout {args.timeout:g}: must be between 0 and 86400 seconds")
    if not 0 < args.connect_timeout <= 300:
        raise HostsFileError(
            f"--connect-timeout {args.connect_timeout:g}: must be between 0 and 300 seconds"
        )


def _load(args: argparse.Namespace) -> _Loaded:
    """Every host, key and agent config, loaded and checked before any host is contacted."""
    from agent.config import ConfigError, load_config, parse_config
    from checks.catalog import builtin_catalogs
    from checks.registry import builtin_registry
    from collector.agentless import HostSpec
    from inventory.network.ssh import DEFAULT_KNOWN_HOSTS, SshConnectError, SshTarget, load_key

    _check_numbers(args)
    if args.hosts is not None:
        wanted = load_hosts_file(args.hosts, args)
    else:
        wanted = [_wanted(_Entry(host=args.host), _Entry(), args, "--host", None)]
    registry = builtin_registry()
    catalogs = builtin_catalogs()
    known_hosts = str(args.known_hosts or os.path.expanduser(DEFAULT_KNOWN_HOSTS))
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    keys: dict[Path, paramiko.PKey] = {}
    configs: dict[Path | None, AgentConfig] = {}
    specs: list[HostSpec] = []
    for one in wanted:
        pkey = None
        if one.key_file is not None:
            if one.key_file not in keys:
                try:
                    keys[one.key_file] = load_key(str(one.key_file), passphrase)
                except SshConnectError as exc:
                    raise HostsFileError(f"{one.where}: {exc}") from None
            pkey = keys[one.key_file]
        elif not os.environ.get("SSH_AUTH_SOCK"):
            raise HostsFileError(
                f"{one.where}: no key file and no ssh-agent (SSH_AUTH_SOCK): give --key-file"
            )
        if one.agent_config not in configs:
            try:
                configs[one.agent_config] = (
                    parse_config({}, "defaults", registry)
                    if one.agent_config is None
                    else load_config(one.agent_config, registry)
                )
            except ConfigError as exc:
                raise HostsFileError(f"--agent-config: {exc}") from None
        target = SshTarget(
            host=one.host,
            user=one.user,
            port=one.port,
            key_file=None if one.key_file is None else str(one.key_file),
            known_hosts=known_hosts,
            trust_on_first_use=args.trust_on_first_use,
            sudo=one.sudo,
            connect_timeout=args.connect_timeout,
        )
        specs.append(HostSpec(target, configs[one.agent_config], pkey))
    return _Loaded(specs, registry, catalogs)


@dataclass
class _Stored:
    report_id: str | None = None
    host_id: str | None = None
    refused: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def _store_all(store: Store, outcomes: list[HostOutcome]) -> dict[int, _Stored]:
    from collector.agentless import store_document
    from collector.store import StoreError, StoreUnavailable
    from collector.store.ingest import HeldByAgent

    stored: dict[int, _Stored] = {}
    for n, outcome in enumerate(outcomes):
        if outcome.document is None:
            continue
        label = outcome.spec.label
        try:
            done = store_document(store, outcome.document, datetime.now(UTC))
        except HeldByAgent as exc:
            line = f"reported by its agent {exc.holder}; agentless evidence not stored"
            stored[n] = _Stored(refused=line)
            print(f"{label}: {line}", file=sys.stderr)
            continue
        except StoreUnavailable:
            raise
        except (StoreError, ValueError) as exc:
            stored[n] = _Stored(error=str(exc))
            print(f"{label}: not stored: {exc}", file=sys.stderr)
            continue
        stored[n] = _Stored(report_id=done.report_id, host_id=done.host_id)
        print(f"{label}: stored as report {done.report_id} (host {done.host_id})", file=sys.stderr)
    return stored


def _render(
    args: argparse.Namespace,
    loaded: _Loaded,
    outcomes: list[HostOutcome],
    stored: dict[int, _Stored],
) -> bytes:
    if args.format == "json":
        hosts = []
        for n, o in enumerate(outcomes):
            t = o.spec.target
            item: dict[str, Any] = {
                "host": t.host,
                "port": t.port,
                "user": t.user,
                "sudo": t.sudo,
                "status": "collected" if o.document is not None else "error",
                "error": o.error,
                "seconds": o.seconds,
                "stored": stored[n].as_json() if n in stored else None,
                "report": o.document,
            }
            hosts.append(item)
        return (json.dumps({"hosts": hosts}, ensure_ascii=False, indent=2) + "\n").encode()
    from checks.render import RENDERERS

    parts: list[bytes] = []
    for o in outcomes:
        if o.document is None:
            parts.append(f"{o.error}\n\n".encode())
            continue
        parts.append(f"== {o.spec.label}\n".encode())
        parts.append(RENDERERS["table"](o.document, loaded.catalogs, args.lang) + b"\n")
    failed = sum(o.document is None for o in outcomes)
    parts.append(
        f"{len(outcomes)} host(s): {len(outcomes) - failed} collected, {failed} failed\n".encode()
    )
    return b"".join(parts)


def _collect(args: argparse.Namespace, loaded: _Loaded, store: Store | None) -> int:
    from collector.agentless import collect_hosts

    # paramiko logs a failed login at ERROR with a traceback; each host's line says it once.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    outcomes = collect_hosts(
        loaded.specs,
        loaded.registry,
        loaded.catalogs,
        host_timeout=args.timeout,
        concurrency=args.concurrency,
    )
    stored = _store_all(store, outcomes) if store is not None else {}
    out = _render(args, loaded, outcomes, stored)
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    for o in outcomes:
        if o.error is not None and args.format == "json":
            print(o.error, file=sys.stderr)  # the table shows it; JSON readers see it here too
    return max(o.exit_code for o in outcomes)


def run(args: argparse.Namespace) -> int:
    from collector.cli import UsageError, _with_store

    if args.transport != "ssh":  # argparse allows only ssh; a guard for new transports
        raise UsageError(f"unknown transport {args.transport!r}", "usage")
    if args.store and args.config is None:
        raise UsageError("--store needs --config (the collector settings)", "usage")
    if args.hosts is None and args.user is None:
        raise UsageError("--host needs --user", "usage")
    try:
        loaded = _load(args)
    except HostsFileError as exc:
        raise UsageError(str(exc), "usage") from None
    if not args.store:
        return _collect(args, loaded, None)
    asked = f"--hosts {args.hosts}" if args.hosts is not None else f"--host {args.host}"

    def collect_and_store(store: Store, _: CollectorSettings) -> int:
        return _collect(args, loaded, store)

    return _with_store(args, f"collect ssh {asked} --store", collect_and_store)


__all__ = ["add_collect_parser", "load_hosts_file", "run"]
