"""`medsec users passwd NAME`: set a user's dashboard password. The password is never an argument
(it would show in `ps` and the shell's history): it is asked twice on a terminal, or read as one
line from standard input otherwise (`printf '%s\\n' "$PW" | medsec users passwd alice ...`, or an
Ansible task's `stdin:`). Setting it ends the user's dashboard logins, clears their failed logins
and lockout, and is written to the audit log like every administrative command (the password is
in no entry). Errors are `collector.cli.UsageError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from collector.settings import CollectorSettings
    from collector.store import Store

_MAX_INPUT = 8192
"""More than any password the rules accept (`MAX_PASSWORD` characters of UTF-8), and a bound on
what a mistaken pipe (a whole file) makes the command read."""


def add_passwd_parser(
    users: argparse._SubParsersAction[Any],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`users passwd NAME` beside `users add`, `users list` and `users remove`."""
    passwd = users.add_parser(
        "passwd",
        help="set a user's dashboard password (asked twice, or one line on standard input);"
        " ends their dashboard logins",
    )
    passwd.add_argument("name")
    config_arg(passwd)


def passwd_command(args: argparse.Namespace) -> int:
    from collector import cli as base
    from collector.store import NotFound
    from collector.store.web_auth import PasswordRefused, check_password

    def set_password(store: Store, _: CollectorSettings) -> int:
        name = base._name(args.name, "user")
        try:
            if sys.stdin.isatty():
                password = _asked(name, check_password)
            else:
                password = read_password(sys.stdin.buffer)
            ended = store.set_password(name, password)
        except PasswordRefused as exc:
            raise base.UsageError(str(exc), "password_refused") from None
        except NotFound:
            raise base.UsageError(f"no user named {name!r}", "not_found") from None
        print(
            f"dashboard password of user {name} set;"
            f" {ended} dashboard login{'' if ended == 1 else 's'} ended"
        )
        return base.EXIT_OK

    return base._with_store(args, f"users passwd {args.name}", set_password)


def read_password(stream: BinaryIO) -> str:
    """The one line on `stream` (its line end removed); `UsageError` unless there is exactly
    one, non-empty, in UTF-8."""
    from collector.cli import UsageError

    data = stream.read(_MAX_INPUT + 1)
    if len(data) > _MAX_INPUT:
        raise UsageError(
            f"standard input holds more than {_MAX_INPUT} bytes; give the password on one line",
            "invalid_password_input",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            "the password on standard input is not UTF-8", "invalid_password_input"
        ) from None
    text = text.removesuffix("\n").removesuffix("\r")
    if "\n" in text or "\r" in text:
        raise UsageError(
            "standard input must hold the password on one line, and nothing else",
            "invalid_password_input",
        )
    if not text:
        raise UsageError("no password on standard input", "invalid_password_input")
    return text


def _asked(name: str, check: Callable[[str, str], None]) -> str:
    """The password typed twice at the terminal, checked against the rules after the first."""
    from collector.cli import UsageError

    first = getpass.getpass(f"dashboard password for {name}: ")
    check(name, first)
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed", "password_mismatch")
    return first
