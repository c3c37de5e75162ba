"""`medsec check-config`, `medsec tls self-signed` and `medsec audit new-key`: the collector's
file-level setup steps, one at a time, for a deployment tool (Ansible) that lays the files out
itself instead of running `medsec init`. None opens the database, so none writes an audit entry;
none overwrites a file or creates a folder. Errors are `collector.cli.UsageError` (one line, exit
2), imported when a command runs, as `collector.compliance.cli` does.
"""

from __future__ import annotations

import argparse
import os
import pwd
import tempfile
from pathlib import Path
from typing import Any


def add_setup_parsers(
    sub: argparse._SubParsersAction[Any], parser_class: type[argparse.ArgumentParser]
) -> None:
    """`check-config` and `tls self-signed` on `medsec`'s command line."""
    check = sub.add_parser(
        "check-config",
        help="validate collector settings as `serve` would, without opening the database",
    )
    check.add_argument("file", type=Path, help="collector settings (YAML), any file name")

    tls = sub.add_parser("tls", help="TLS material").add_subparsers(
        dest="action", required=True, parser_class=parser_class
    )
    pair = tls.add_parser(
        "self-signed",
        help="write a self-signed certificate and its key (never overwrites either)",
    )
    pair.add_argument("--cert", required=True, type=Path, help="certificate file to create")
    pair.add_argument("--key", required=True, type=Path, help="private key file to create (0600)")
    pair.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="name or address agents use to reach the collector (repeatable; localhost and"
        " 127.0.0.1 are always in)",
    )
    _owner_arg(pair)


def add_new_key_parser(audit: argparse._SubParsersAction[Any]) -> None:
    """`audit new-key` beside `audit verify` and `audit prune`."""
    new_key = audit.add_parser(
        "new-key",
        help="write a new audit key (mode 0600) for a new database; never overwrites",
    )
    new_key.add_argument("file", type=Path, help="key file to create")
    _owner_arg(new_key)


def _owner_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--owner",
        metavar="USER",
        help="give the new files to USER and their primary group (needs root)",
    )


def check_config(args: argparse.Namespace) -> int:
    from collector.cli import EXIT_OK
    from collector.settings import load_settings

    # Ansible's `template: validate:` runs this on a temporary copy before it replaces the
    # settings; `SettingsError` is the same one line `serve` would print.
    load_settings(args.file)
    print(f"{args.file}: valid")
    return EXIT_OK


def tls_self_signed(args: argparse.Namespace) -> int:
    from collector.cli import EXIT_OK, UsageError
    from collector.settings import check_host
    from collector.tls import make_self_signed

    try:
        hostnames = [check_host(h) for h in args.hostname]
    except ValueError as exc:
        raise UsageError(f"--hostname: {exc}") from None
    owner = _owner(args.owner)
    cert, key = _new_path(args.cert), _new_path(args.key)
    if cert == key:
        raise UsageError(f"--cert and --key are the same file ({cert})")
    # Made under temporary names beside the targets, then hard-linked into place: a link
    # never replaces an existing file, so a file that appears meanwhile is not overwritten
    # either, and a reader never sees half a key.
    with _scratch(key.parent) as key_dir, _scratch(cert.parent) as cert_dir:
        made_key, made_cert = Path(key_dir, "key.pem"), Path(cert_dir, "cert.pem")
        make_self_signed(made_cert, made_key, hostnames)
        for made in (made_key, made_cert):
            _chown(made, owner)
        _link(made_key, key)
        try:
            _link(made_cert, cert)
        except BaseException:
            key.unlink()
            raise
    print(f"certificate: {cert}  (give it to agents as their ca_file)")
    print(f"private key: {key}  (mode 0600)")
    print(f"names:       localhost, 127.0.0.1{''.join(', ' + h for h in hostnames)}")
    return EXIT_OK


def audit_new_key(args: argparse.Namespace) -> int:
    from collector.cli import EXIT_OK, UsageError
    from collector.settings import write_audit_key

    owner = _owner(args.owner)
    path = _new_path(args.file)
    try:
        write_audit_key(path)
    except FileExistsError:
        raise UsageError(f"{path} already exists; not overwriting it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    try:
        _chown(path, owner)
    except BaseException:
        path.unlink()  # a key its collector cannot read is no key: leave nothing behind
        raise
    print(f"audit key: {path}  (mode 0600; back it up: the audit log verifies with it)")
    return EXIT_OK


COMMANDS = {"check-config": check_config, "tls": tls_self_signed}


def _new_path(path: Path) -> Path:
    """`path` made absolute, refused when it exists or its folder does not."""
    from collector.cli import UsageError

    path = path.expanduser()
    folder = path.parent.resolve()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist; create it first"
        raise UsageError(f"{folder} {what}")
    path = folder / path.name
    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists; not overwriting it")
    return path


def _owner(user: str | None) -> tuple[int, int] | None:
    from collector.cli import UsageError

    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"--owner: no user named {user!r} on this host") from None
    return entry.pw_uid, entry.pw_gid


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    from collector.cli import UsageError

    if owner is None:
        return
    try:
        os.chown(path, *owner)
    except OSError as exc:
        raise UsageError(f"--owner: cannot give {path} away: {exc.strerror}") from None


def _scratch(folder: Path) -> tempfile.TemporaryDirectory[str]:
    from collector.cli import UsageError

    try:
        return tempfile.TemporaryDirectory(prefix=".medsec-new.", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write in {folder}: {exc.strerror}") from None


def _link(made: Path, target: Path) -> None:
    from collector.cli import UsageError

    try:
        os.link(made, target)
    except FileExistsError:
        raise UsageError(f"{target} already exists; not overwriting it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
